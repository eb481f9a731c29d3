//! The rules, by squawk's names and meanings (squawk.dev/rules), checked on the parse tree.

use std::collections::HashSet;

use pg_query::NodeEnum;
use pg_query::protobuf::{
    AlterTableCmd, AlterTableType, ColumnDef, ConstrType, Constraint, CreateStmt, DropStmt, IndexStmt, Node,
    ObjectType, RangeVar, RenameStmt, TransactionStmt, TransactionStmtKind, TypeName,
};

use super::{Expectation, Finding, Rule, Settings, Statement};

pub const RULES: &[Rule] = &[
    Rule {
        name: "adding-field-with-default",
        why: "a volatile default (or any default before Postgres 11, or a stored generated column) rewrites the whole table under an ACCESS EXCLUSIVE lock: no reads or writes until it is done",
        fix: "add the column without a default, set the default in a second statement, then backfill existing rows in batches",
    },
    Rule {
        name: "adding-foreign-key-constraint",
        why: "adding a foreign key takes SHARE ROW EXCLUSIVE on both tables and scans the table to validate it, blocking writes to both meanwhile",
        fix: "add it NOT VALID (only new rows are checked), then `ALTER TABLE ... VALIDATE CONSTRAINT ...` in a later migration: that takes SHARE UPDATE EXCLUSIVE, which lets writes go on",
    },
    Rule {
        name: "adding-not-nullable-field",
        why: "SET NOT NULL takes ACCESS EXCLUSIVE and scans the whole table to check it, blocking reads and writes meanwhile",
        fix: "ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT c in a later migration; then SET NOT NULL (Postgres 12+ uses the valid check and skips the scan) and drop the check",
    },
    Rule {
        name: "adding-required-field",
        why: "a NOT NULL column without a default fails on a table with rows, and code still running that inserts without it breaks",
        fix: "add it nullable (or with a constant default), backfill, then make it NOT NULL the safe way",
    },
    Rule {
        name: "changing-column-type",
        why: "changing a column's type mostly rewrites the table and its indexes under ACCESS EXCLUSIVE, and code still running may break on the new type",
        fix: "add a new column of the new type, write both, backfill in batches, switch reads, then drop the old column",
    },
    Rule {
        name: "constraint-missing-not-valid",
        why: "a new CHECK constraint without NOT VALID scans the whole table under ACCESS EXCLUSIVE; validating it in the transaction that added it does the same",
        fix: "add it NOT VALID, then VALIDATE CONSTRAINT in a later migration (SHARE UPDATE EXCLUSIVE: reads and writes go on)",
    },
    Rule {
        name: "disallowed-unique-constraint",
        why: "adding a UNIQUE (or PRIMARY KEY) constraint builds its index under ACCESS EXCLUSIVE: no reads or writes until it is built",
        fix: "CREATE UNIQUE INDEX CONCURRENTLY in a migration without a transaction, then ALTER TABLE ... ADD CONSTRAINT ... UNIQUE USING INDEX ...",
    },
    Rule {
        name: "require-concurrent-index-creation",
        why: "CREATE INDEX without CONCURRENTLY takes a SHARE lock: no writes to the table until the index is built",
        fix: "CREATE INDEX CONCURRENTLY, in a migration of its own with `run_in_transaction = false` in its metadata.toml",
    },
    Rule {
        name: "require-concurrent-index-deletion",
        why: "DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on the table",
        fix: "DROP INDEX CONCURRENTLY, in a migration of its own with `run_in_transaction = false` in its metadata.toml",
    },
    Rule {
        name: "ban-concurrent-index-creation-in-transaction",
        why: "CONCURRENTLY cannot run in a transaction: the migration fails. Our runner wraps each migration in one unless metadata.toml says run_in_transaction = false, and even then the file goes to the server as one batch, an implicit transaction when it holds more than one statement",
        fix: "put the statement alone in a migration of its own whose metadata.toml says `run_in_transaction = false`",
    },
    Rule {
        name: "renaming-column",
        why: "code still running (the previous release, during a deploy) uses the old name and breaks",
        fix: "add the new column, write both, backfill, move the readers, then drop the old one; or a view with the old name",
    },
    Rule {
        name: "renaming-table",
        why: "code still running (the previous release, during a deploy) uses the old name and breaks",
        fix: "create the new table (or a view with the old name over it) and move the code first",
    },
    Rule {
        name: "ban-drop-column",
        why: "code still running that selects or inserts the column breaks, and the data is gone",
        fix: "stop using the column in the code and deploy that first; drop it in a later release",
    },
    Rule {
        name: "ban-drop-table",
        why: "code still running that uses the table breaks, and the data is gone",
        fix: "stop using the table in the code and deploy that first; drop it in a later release (keep a backup)",
    },
    Rule {
        name: "ban-drop-database",
        why: "a migration that drops a database destroys everything in it",
        fix: "drop databases by hand, never in a migration",
    },
    Rule {
        name: "require-lock-timeout",
        why: "a statement that needs ACCESS EXCLUSIVE on a busy table queues behind long transactions, and every query on the table queues behind it: an outage without a lock timeout",
        fix: "set lock_timeout for migrations in railgun.toml's [migrations] (the runner retries with backoff), or in this migration's metadata.toml, or `SET lock_timeout = '5s';` before the statement",
    },
    Rule {
        name: "prefer-robust-stmts",
        why: "this migration runs outside a transaction: when it fails half-way, what ran stays, and running it again fails on it",
        fix: "make each statement safe to run twice: IF NOT EXISTS / IF EXISTS (CREATE INDEX CONCURRENTLY IF NOT EXISTS, DROP INDEX CONCURRENTLY IF EXISTS)",
    },
    Rule {
        name: "prefer-bigint-over-int",
        why: "an int (int4, serial) key runs out at 2^31; widening it later rewrites the table",
        fix: "use bigint (or bigint GENERATED ALWAYS AS IDENTITY)",
    },
    Rule {
        name: "prefer-identity",
        why: "serial makes a sequence the table does not own by the standard, with permissions and dumps to keep in step; identity columns are the SQL-standard replacement",
        fix: "bigint GENERATED ALWAYS AS IDENTITY (or BY DEFAULT)",
    },
    Rule {
        name: "prefer-timestamp-tz",
        why: "timestamp without time zone stores wall-clock time: the instant depends on the session's time zone",
        fix: "use timestamptz",
    },
    Rule {
        name: "prefer-text-field",
        why: "varchar(n)'s limit can only be raised with ALTER COLUMN TYPE, which locks the table; Postgres stores text and varchar alike",
        fix: "use text, with a CHECK (char_length(col) <= n) if the limit matters (a check can be replaced NOT VALID)",
    },
    Rule {
        name: "ban-char-field",
        why: "char(n) pads with spaces, compares surprisingly, and is no faster than text",
        fix: "use text (or varchar)",
    },
    Rule {
        name: "identifier-too-long",
        why: "Postgres cuts identifiers to 63 bytes without an error: two long names can become the same one, and code using the full name finds nothing",
        fix: "use a name of at most 63 bytes",
    },
    Rule {
        name: "transaction-nesting",
        why: "the runner already wraps this migration in a transaction: BEGIN inside it only warns, and COMMIT ends the runner's transaction early, so the bookkeeping is no longer atomic with the change",
        fix: "remove BEGIN/COMMIT; for a migration that must manage its own transactions, set `run_in_transaction = false` in its metadata.toml",
    },
];

fn rule(name: &str) -> &'static Rule {
    RULES.iter().find(|r| r.name == name).expect("a rule the linter knows")
}

/// What one file's statements do, statement by statement.
struct Checker<'a> {
    file: &'a str,
    settings: &'a Settings,
    transactional: bool,
    statement_count: usize,
    /// Tables created earlier in this file: empty, nobody else uses them yet.
    created: HashSet<String>,
    /// Constraints added NOT VALID earlier in this file.
    not_valid: HashSet<String>,
    lock_timeout_set: bool,
    findings: Vec<Finding>,
    index: usize,
    line: usize,
}

pub fn check(statements: &[Statement], transactional: bool, settings: &Settings, file: &str) -> Vec<Finding> {
    let mut checker = Checker {
        file,
        settings,
        transactional,
        statement_count: statements.len(),
        created: HashSet::new(),
        not_valid: HashSet::new(),
        lock_timeout_set: settings.lock_timeout_configured,
        findings: Vec::new(),
        index: 0,
        line: 0,
    };
    for (index, statement) in statements.iter().enumerate() {
        checker.index = index;
        checker.line = statement.line;
        for name in &statement.long_identifiers {
            checker.flag("identifier-too-long", format!("{name} is {} bytes: Postgres keeps 63", name.len()), None);
        }
        if let Some(node) = &statement.node {
            checker.statement(node);
        }
    }
    checker.findings
}

impl Checker<'_> {
    fn flag(&mut self, name: &'static str, message: String, expect: Option<Expectation>) {
        let rule = rule(name);
        self.findings.push(Finding {
            file: self.file.to_string(),
            line: self.line,
            statement: self.index,
            rule: rule.name,
            message,
            why: rule.why,
            fix: rule.fix.to_string(),
            expect,
        });
    }

    fn existing(&self, table: &str) -> bool {
        !self.created.contains(table)
    }

    /// ACCESS EXCLUSIVE on an existing table wants a lock timeout (once per statement).
    fn exclusive(&mut self, table: &str) {
        if self.existing(table) {
            let expect = Expectation { locks: vec![(table.to_string(), "AccessExclusiveLock")], rewrite: None };
            self.wants_lock_timeout(table, Some(expect));
        }
    }

    fn wants_lock_timeout(&mut self, what: &str, expect: Option<Expectation>) {
        if !self.lock_timeout_set
            && !self.findings.iter().any(|f| f.statement == self.index && f.rule == "require-lock-timeout")
        {
            self.flag("require-lock-timeout", format!("takes ACCESS EXCLUSIVE on {what} with no lock_timeout"), expect);
        }
    }

    fn statement(&mut self, node: &NodeEnum) {
        match node {
            NodeEnum::CreateStmt(create) => self.create_table(create),
            NodeEnum::AlterTableStmt(alter) => {
                let table = relation(alter.relation.as_ref());
                for cmd in &alter.cmds {
                    if let Some(NodeEnum::AlterTableCmd(cmd)) = cmd.node.as_ref() {
                        self.alter(&table, cmd);
                    }
                }
            }
            NodeEnum::IndexStmt(index) => self.create_index(index),
            NodeEnum::DropStmt(drop) => self.drop(drop),
            NodeEnum::DropdbStmt(drop) => {
                self.flag("ban-drop-database", format!("DROP DATABASE {}", drop.dbname), None);
            }
            NodeEnum::RenameStmt(rename) => self.rename(rename),
            NodeEnum::TransactionStmt(tx) => self.transaction(tx),
            NodeEnum::VariableSetStmt(set) if set.name == "lock_timeout" => self.lock_timeout_set = true,
            _ => {}
        }
    }

    fn create_table(&mut self, create: &CreateStmt) {
        let table = relation(create.relation.as_ref());
        if !self.transactional && !create.if_not_exists {
            self.flag("prefer-robust-stmts", format!("CREATE TABLE {table} without IF NOT EXISTS"), None);
        }
        for element in &create.table_elts {
            if let Some(NodeEnum::ColumnDef(column)) = element.node.as_ref() {
                self.column_types(column);
            }
        }
        self.created.insert(table);
    }

    fn create_index(&mut self, index: &IndexStmt) {
        let table = relation(index.relation.as_ref());
        let name = if index.idxname.is_empty() { "(unnamed)".to_string() } else { index.idxname.clone() };
        if index.concurrent {
            self.concurrently(&format!("CREATE INDEX CONCURRENTLY {name}"));
            if !self.transactional && !index.if_not_exists {
                self.flag("prefer-robust-stmts", format!("CREATE INDEX CONCURRENTLY {name} without IF NOT EXISTS (a failed build leaves an invalid index behind)"), None);
            }
        } else if self.existing(&table) {
            self.flag(
                "require-concurrent-index-creation",
                format!("CREATE INDEX {name} ON {table} without CONCURRENTLY"),
                Some(Expectation { locks: vec![(table.clone(), "ShareLock")], rewrite: Some(false) }),
            );
        }
    }

    /// `ALTER TABLE ... RENAME [COLUMN]`.
    fn rename(&mut self, rename: &RenameStmt) {
        let table = relation(rename.relation.as_ref());
        match ObjectType::try_from(rename.rename_type) {
            Ok(ObjectType::ObjectColumn) => {
                self.flag(
                    "renaming-column",
                    format!("renames {table}.{} to {}", rename.subname, rename.newname),
                    Some(Expectation { locks: vec![(table.clone(), "AccessExclusiveLock")], rewrite: Some(false) }),
                );
                self.exclusive(&table);
            }
            Ok(ObjectType::ObjectTable) => {
                self.flag(
                    "renaming-table",
                    format!("renames {table} to {}", rename.newname),
                    Some(Expectation { locks: vec![(table.clone(), "AccessExclusiveLock")], rewrite: Some(false) }),
                );
                self.exclusive(&table);
            }
            _ => {}
        }
    }

    /// BEGIN, COMMIT or ROLLBACK inside the runner's transaction.
    fn transaction(&mut self, tx: &TransactionStmt) {
        let kind = TransactionStmtKind::try_from(tx.kind).unwrap_or(TransactionStmtKind::Undefined);
        let word = match kind {
            TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart => Some("BEGIN"),
            TransactionStmtKind::TransStmtCommit => Some("COMMIT"),
            TransactionStmtKind::TransStmtRollback => Some("ROLLBACK"),
            _ => None,
        };
        if let Some(word) = word
            && self.transactional
        {
            self.flag(
                "transaction-nesting",
                format!("{word} inside the transaction the runner opens for this migration"),
                None,
            );
        }
    }

    /// One subcommand of an `ALTER TABLE`; what takes ACCESS EXCLUSIVE wants a lock timeout.
    fn alter(&mut self, table: &str, cmd: &AlterTableCmd) {
        let existing = self.existing(table);
        let def = cmd.def.as_ref().and_then(|d| d.node.as_ref());
        let kind = AlterTableType::try_from(cmd.subtype).unwrap_or(AlterTableType::Undefined);
        match kind {
            AlterTableType::AtAddColumn => {
                if let Some(NodeEnum::ColumnDef(column)) = def {
                    self.add_column(table, cmd, column);
                }
            }
            AlterTableType::AtSetNotNull if existing => {
                self.flag(
                    "adding-not-nullable-field",
                    format!("ALTER COLUMN {} SET NOT NULL on {table}", cmd.name),
                    Some(Expectation { locks: vec![(table.to_string(), "AccessExclusiveLock")], rewrite: Some(false) }),
                );
                self.exclusive(table);
            }
            AlterTableType::AtAlterColumnType if existing => {
                if let Some(NodeEnum::ColumnDef(column)) = def {
                    self.type_name(&cmd.name, column.type_name.as_ref());
                }
                self.flag(
                    "changing-column-type",
                    format!("ALTER COLUMN {} TYPE on {table}", cmd.name),
                    Some(Expectation { locks: vec![(table.to_string(), "AccessExclusiveLock")], rewrite: Some(true) }),
                );
                self.exclusive(table);
            }
            AlterTableType::AtAddConstraint => {
                if let Some(NodeEnum::Constraint(constraint)) = def {
                    self.add_constraint(table, constraint);
                }
            }
            AlterTableType::AtValidateConstraint => {
                if self.transactional && self.not_valid.contains(&cmd.name) {
                    self.flag(
                        "constraint-missing-not-valid",
                        format!("VALIDATE CONSTRAINT {} in the transaction that added it NOT VALID: the scan holds the lock taken to add it", cmd.name),
                        None,
                    );
                }
            }
            AlterTableType::AtDropColumn => {
                self.flag(
                    "ban-drop-column",
                    format!("DROP COLUMN {} from {table}", cmd.name),
                    Some(Expectation { locks: vec![(table.to_string(), "AccessExclusiveLock")], rewrite: Some(false) }),
                );
                self.exclusive(table);
            }
            // These take less than ACCESS EXCLUSIVE.
            AlterTableType::AtSetStatistics
            | AlterTableType::AtClusterOn
            | AlterTableType::AtDropCluster
            | AlterTableType::AtSetRelOptions
            | AlterTableType::AtResetRelOptions
            | AlterTableType::AtReplaceRelOptions
            | AlterTableType::AtAttachPartition
            | AlterTableType::AtDetachPartitionFinalize => {}
            _ => self.exclusive(table),
        }
    }

    /// `ADD COLUMN`: its types, and on a table that existed before this file what its default,
    /// NOT NULL, foreign key or unique constraint costs.
    fn add_column(&mut self, table: &str, cmd: &AlterTableCmd, column: &ColumnDef) {
        self.column_types(column);
        if !self.transactional && !cmd.missing_ok {
            self.flag("prefer-robust-stmts", format!("ADD COLUMN {} without IF NOT EXISTS", column.colname), None);
        }
        if !self.existing(table) {
            return;
        }
        let constraints: Vec<&Constraint> = column
            .constraints
            .iter()
            .filter_map(|c| match c.node.as_ref() {
                Some(NodeEnum::Constraint(c)) => Some(&**c),
                _ => None,
            })
            .collect();
        let has = |t: ConstrType| constraints.iter().copied().find(|c| c.contype == t as i32);
        let default =
            has(ConstrType::ConstrDefault).and_then(|c| c.raw_expr.as_deref()).or(column.raw_default.as_deref());
        let column_name = &column.colname;
        self.rewrites(table, column_name, default, has(ConstrType::ConstrGenerated));
        if has(ConstrType::ConstrNotnull).is_some()
            && default.is_none()
            && has(ConstrType::ConstrGenerated).is_none()
            && has(ConstrType::ConstrIdentity).is_none()
        {
            self.flag("adding-required-field", format!("ADD COLUMN {column_name} NOT NULL without a default"), None);
        }
        if let Some(fk) = has(ConstrType::ConstrForeign) {
            let target = relation(fk.pktable.as_ref());
            let mut locks = vec![(table.to_string(), "ShareRowExclusiveLock")];
            // A table created in this migration is nobody else's yet (and invisible to --measure's observer).
            if self.existing(&target) {
                locks.push((target.clone(), "ShareRowExclusiveLock"));
            }
            self.flag(
                "adding-foreign-key-constraint",
                format!("ADD COLUMN {column_name} REFERENCES {target}"),
                Some(Expectation { locks, rewrite: None }),
            );
        }
        if has(ConstrType::ConstrUnique).or(has(ConstrType::ConstrPrimary)).is_some() {
            self.flag(
                "disallowed-unique-constraint",
                format!("ADD COLUMN {column_name} UNIQUE builds its index under the table's lock"),
                Some(Expectation { locks: vec![(table.to_string(), "AccessExclusiveLock")], rewrite: None }),
            );
        }
        self.exclusive(table);
    }

    /// A new column whose value is computed for every row, rewriting the table: any default
    /// before Postgres 11, a volatile one since, a stored generated column.
    fn rewrites(&mut self, table: &str, column_name: &str, default: Option<&Node>, generated: Option<&Constraint>) {
        if let Some(default) = default {
            let text = deparse_expr(default);
            if self.settings.postgres_major < 11 {
                self.flag(
                    "adding-field-with-default",
                    format!(
                        "ADD COLUMN {column_name} DEFAULT {text}: before Postgres 11 every default rewrites the table"
                    ),
                    Some(Expectation { locks: vec![(table.to_string(), "AccessExclusiveLock")], rewrite: Some(true) }),
                );
            } else if !is_non_volatile(default) {
                self.flag(
                    "adding-field-with-default",
                    format!("ADD COLUMN {column_name} DEFAULT {text}: a default that may be volatile is computed for every row"),
                    Some(Expectation { locks: vec![(table.to_string(), "AccessExclusiveLock")], rewrite: Some(true) }),
                );
            }
        }
        if let Some(generated) = generated
            && generated.generated_kind != "v"
        {
            self.flag(
                "adding-field-with-default",
                format!("ADD COLUMN {column_name} GENERATED ... STORED computes every row"),
                Some(Expectation { locks: vec![(table.to_string(), "AccessExclusiveLock")], rewrite: Some(true) }),
            );
        }
    }

    /// `ADD CONSTRAINT`: remembered when NOT VALID; on a table that existed before this file, a
    /// foreign key or check without NOT VALID scans it, a unique one builds its index.
    fn add_constraint(&mut self, table: &str, constraint: &Constraint) {
        let name = if constraint.conname.is_empty() { "(unnamed)" } else { &constraint.conname };
        if constraint.skip_validation {
            self.not_valid.insert(constraint.conname.clone());
        }
        if !self.existing(table) {
            return;
        }
        match ConstrType::try_from(constraint.contype) {
            Ok(ConstrType::ConstrForeign) => {
                let target = relation(constraint.pktable.as_ref());
                if !constraint.skip_validation {
                    self.flag(
                        "adding-foreign-key-constraint",
                        format!("ADD CONSTRAINT {name} FOREIGN KEY ... REFERENCES {target} without NOT VALID"),
                        Some(Expectation {
                            locks: vec![
                                (table.to_string(), "ShareRowExclusiveLock"),
                                (target, "ShareRowExclusiveLock"),
                            ],
                            rewrite: Some(false),
                        }),
                    );
                }
            }
            Ok(ConstrType::ConstrCheck) => {
                if !constraint.skip_validation {
                    self.flag(
                        "constraint-missing-not-valid",
                        format!("ADD CONSTRAINT {name} CHECK without NOT VALID scans {table}"),
                        Some(Expectation {
                            locks: vec![(table.to_string(), "AccessExclusiveLock")],
                            rewrite: Some(false),
                        }),
                    );
                }
                self.exclusive(table);
            }
            Ok(ConstrType::ConstrUnique | ConstrType::ConstrPrimary | ConstrType::ConstrExclusion) => {
                if constraint.indexname.is_empty() {
                    self.flag(
                        "disallowed-unique-constraint",
                        format!("ADD CONSTRAINT {name} builds its index on {table} under ACCESS EXCLUSIVE"),
                        Some(Expectation {
                            locks: vec![(table.to_string(), "AccessExclusiveLock")],
                            rewrite: Some(false),
                        }),
                    );
                }
                self.exclusive(table);
            }
            _ => self.exclusive(table),
        }
    }

    fn drop(&mut self, drop: &DropStmt) {
        let names: Vec<String> = drop.objects.iter().map(object_name).collect();
        match ObjectType::try_from(drop.remove_type) {
            Ok(ObjectType::ObjectTable) => {
                for name in &names {
                    if self.existing(name) {
                        self.flag(
                            "ban-drop-table",
                            format!("DROP TABLE {name}"),
                            Some(Expectation { locks: vec![(name.clone(), "AccessExclusiveLock")], rewrite: None }),
                        );
                        self.exclusive(name);
                    }
                }
                if !self.transactional && !drop.missing_ok {
                    self.flag(
                        "prefer-robust-stmts",
                        format!("DROP TABLE {} without IF EXISTS", names.join(", ")),
                        None,
                    );
                }
            }
            Ok(ObjectType::ObjectIndex) => {
                if drop.concurrent {
                    self.concurrently(&format!("DROP INDEX CONCURRENTLY {}", names.join(", ")));
                } else {
                    self.flag(
                        "require-concurrent-index-deletion",
                        format!("DROP INDEX {} without CONCURRENTLY", names.join(", ")),
                        None,
                    );
                    // The parser knows the index, not its table: nothing for --measure to check by name.
                    self.wants_lock_timeout(&format!("the table of {}", names.join(", ")), None);
                }
                if !self.transactional && !drop.missing_ok {
                    self.flag(
                        "prefer-robust-stmts",
                        format!("DROP INDEX {} without IF EXISTS", names.join(", ")),
                        None,
                    );
                }
            }
            _ => {}
        }
    }

    fn concurrently(&mut self, what: &str) {
        if self.transactional {
            self.flag(
                "ban-concurrent-index-creation-in-transaction",
                format!("{what} in a migration that runs in a transaction (no metadata.toml with run_in_transaction = false)"),
                None,
            );
        } else if self.statement_count > 1 {
            self.flag(
                "ban-concurrent-index-creation-in-transaction",
                format!("{what} with {} other statement(s) in the file: sent as one batch, they run as one implicit transaction", self.statement_count - 1),
                None,
            );
        }
    }

    fn column_types(&mut self, column: &ColumnDef) {
        self.type_name(&column.colname, column.type_name.as_ref());
    }

    fn type_name(&mut self, column: &str, type_name: Option<&TypeName>) {
        let Some(type_name) = type_name else { return };
        let name = type_name.names.iter().filter_map(string_of).next_back().unwrap_or_default();
        match name.as_str() {
            "int4" | "serial" | "serial4" => {
                self.flag("prefer-bigint-over-int", format!("{column} is {}", shown_type(&name)), None)
            }
            "timestamp" => self.flag("prefer-timestamp-tz", format!("{column} is timestamp without time zone"), None),
            "varchar" if !type_name.typmods.is_empty() => {
                self.flag("prefer-text-field", format!("{column} is varchar with a length limit"), None)
            }
            "bpchar" => self.flag("ban-char-field", format!("{column} is char(n)"), None),
            _ => {}
        }
        if matches!(name.as_str(), "serial" | "serial4" | "bigserial" | "serial8" | "smallserial" | "serial2") {
            self.flag("prefer-identity", format!("{column} is {name}"), None);
        }
    }
}

fn shown_type(name: &str) -> &str {
    if name == "int4" { "int (int4)" } else { name }
}

fn string_of(node: &pg_query::protobuf::Node) -> Option<String> {
    match node.node.as_ref() {
        Some(NodeEnum::String(s)) => Some(s.sval.clone()),
        _ => None,
    }
}

/// A relation as written, schema included when given.
fn relation(range: Option<&RangeVar>) -> String {
    match range {
        Some(r) if !r.schemaname.is_empty() => format!("{}.{}", r.schemaname, r.relname),
        Some(r) => r.relname.clone(),
        None => String::new(),
    }
}

fn object_name(node: &pg_query::protobuf::Node) -> String {
    match node.node.as_ref() {
        Some(NodeEnum::List(list)) => list.items.iter().filter_map(string_of).collect::<Vec<_>>().join("."),
        Some(NodeEnum::String(s)) => s.sval.clone(),
        _ => String::new(),
    }
}

/// Functions that are not volatile (so a default of them does not rewrite since Postgres 11).
const NON_VOLATILE: &[&str] = &[
    "now",
    "transaction_timestamp",
    "statement_timestamp",
    "current_date",
    "current_timestamp",
    "localtimestamp",
    "lower",
    "upper",
    "length",
    "coalesce",
    "to_timestamp",
    "make_interval",
    "jsonb_build_object",
    "json_build_object",
    "array_fill",
];

/// Whether an expression is sure not to be volatile: constants, casts of them, CURRENT_*
/// keywords and known stable or immutable functions over such arguments. Anything else might
/// be volatile (the parser does not know functions' volatility; `--measure` finds out).
fn is_non_volatile(node: &pg_query::protobuf::Node) -> bool {
    match node.node.as_ref() {
        Some(NodeEnum::AConst(_)) | Some(NodeEnum::SqlvalueFunction(_)) => true,
        Some(NodeEnum::TypeCast(cast)) => cast.arg.as_deref().is_none_or(is_non_volatile),
        Some(NodeEnum::FuncCall(call)) => {
            let name = call.funcname.iter().filter_map(string_of).next_back().unwrap_or_default();
            NON_VOLATILE.contains(&name.as_str()) && call.args.iter().all(is_non_volatile)
        }
        Some(NodeEnum::AArrayExpr(array)) => array.elements.iter().all(is_non_volatile),
        _ => false,
    }
}

/// An expression as SQL again, for messages.
fn deparse_expr(node: &pg_query::protobuf::Node) -> String {
    match node.node.as_ref() {
        Some(NodeEnum::FuncCall(call)) => {
            format!("{}(...)", call.funcname.iter().filter_map(string_of).collect::<Vec<_>>().join("."))
        }
        Some(NodeEnum::AConst(_)) => "a constant".into(),
        _ => "an expression".into(),
    }
}
