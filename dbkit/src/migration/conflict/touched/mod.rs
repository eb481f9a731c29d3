//! What a migration's statements touch, read from their keywords: the tables and columns (and
//! indexes, views, types, functions, triggers...) each statement creates, alters, drops,
//! renames, writes rows of, or only uses. The statements come from the project's lexer
//! ([`sql::statements`], [`sql::tokens`]); this reads the few shapes migrations are made of and
//! says which statements it could not read (a `DO` block, a `SELECT`, a `COPY`), never guessing.
//! Function bodies are not read: they run later, not when the migration does.
//!
//! Here: what a reading is made of ([`Kind`], [`Object`], [`Access`], [`Touch`], [`Reading`]),
//! [`read`] and [`clash`]. `reader` reads one statement's shape; `cursor` holds the moves over
//! its tokens that every shape is read with.

mod cursor;
mod reader;

use std::fmt;

use crate::migration::sql;
use reader::Reader;

/// Which names an object shares: Postgres keeps tables, indexes, views and sequences in one
/// namespace (`pg_class`), so a view and a table of the same name collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Table,
    Column,
    Index,
    View,
    Sequence,
    Type,
    Function,
    Trigger,
    Policy,
    Schema,
    Extension,
}

impl Kind {
    fn namespace(self) -> Kind {
        match self {
            Kind::Table | Kind::Index | Kind::View | Kind::Sequence => Kind::Table,
            other => other,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Kind::Table => "table",
            Kind::Column => "column",
            Kind::Index => "index",
            Kind::View => "view",
            Kind::Sequence => "sequence",
            Kind::Type => "type",
            Kind::Function => "function",
            Kind::Trigger => "trigger",
            Kind::Policy => "policy",
            Kind::Schema => "schema",
            Kind::Extension => "extension",
        }
    }
}

/// A named object: `users`, `billing.invoices` (schema `public` left out), a column
/// `users.email`, a trigger or policy `users.audit` (by its table).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Object {
    pub kind: Kind,
    pub name: String,
}

impl Object {
    fn new(kind: Kind, name: impl Into<String>) -> Object {
        Object { kind, name: name.into() }
    }

    /// The table of a column, trigger or policy.
    fn table(&self) -> Option<&str> {
        match self.kind {
            Kind::Column | Kind::Trigger | Kind::Policy => self.name.rsplit_once('.').map(|(table, _)| table),
            _ => None,
        }
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.word(), self.name)
    }
}

/// What a statement does to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    Creates,
    Alters,
    Drops,
    Renames,
    /// Inserts, updates, deletes or truncates its rows.
    Writes,
    /// Names it without changing it: an index on it, a foreign key to it, a view over it.
    Uses,
}

impl Access {
    fn changes(self) -> bool {
        !matches!(self, Access::Writes | Access::Uses)
    }

    fn verb(self) -> &'static str {
        match self {
            Access::Creates => "creates",
            Access::Alters => "alters",
            Access::Drops => "drops",
            Access::Renames => "renames",
            Access::Writes => "writes rows of",
            Access::Uses => "uses",
        }
    }
}

/// One object one statement touches, at the line that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    pub object: Object,
    pub access: Access,
    pub line: usize,
}

impl fmt::Display for Touch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.access.verb(), self.object)
    }
}

/// What a file's statements touch, and the statements this could not read.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Reading {
    pub touches: Vec<Touch>,
    /// Line and first words of each statement not read.
    pub unread: Vec<(usize, String)>,
}

/// Reads every statement of a migration file.
pub fn read(sql_text: &str) -> Reading {
    let mut reading = Reading::default();
    for statement in sql::statements(sql_text) {
        let mut reader = Reader::new(statement.text, statement.line);
        if reader.statement().is_none() || reader.unread {
            let words = statement.keywords.iter().take(3).cloned().collect::<Vec<_>>().join(" ");
            reading.unread.push((statement.line, words));
        }
        reading.touches.append(&mut reader.touches);
    }
    reading
}

/// Whether `a` (one side's) and `b` (the other's) clash, and on which object: the same object
/// (or a table and one of its columns, triggers or policies) where at least one side changes
/// it, or both write its rows. A table's rows written where the other side changes one of its
/// columns clash too (a new NOT NULL column); two indexes on one column, or an index on a
/// table where the other side changes another of its columns, do not.
pub fn clash(a: &Touch, b: &Touch) -> Option<Object> {
    let (oa, ob) = (&a.object, &b.object);
    if oa.kind.namespace() == ob.kind.namespace() && oa.name == ob.name {
        let both_write = a.access == Access::Writes && b.access == Access::Writes;
        return (a.access.changes() || b.access.changes() || both_write).then(|| oa.clone());
    }
    let part_of = |part: &Object, whole: &Object| {
        whole.kind.namespace() == Kind::Table && part.table() == Some(whole.name.as_str())
    };
    if part_of(oa, ob) || part_of(ob, oa) {
        let (part, whole) = if part_of(oa, ob) { (a, b) } else { (b, a) };
        // A use of the table as a whole (an index, a foreign key, a trigger on it) needs the
        // table, none of its columns: what reads a column names it.
        if whole.access.changes() || (whole.access == Access::Writes && part.access.changes()) {
            return Some(whole.object.clone());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clashes() {
        let t = |kind, name: &str, access| Touch { object: Object::new(kind, name), access, line: 1 };
        let col = |access| t(Kind::Column, "users.email", access);
        assert!(clash(&col(Access::Alters), &col(Access::Drops)).is_some());
        assert!(clash(&col(Access::Uses), &col(Access::Uses)).is_none(), "two indexes on one column");
        assert!(
            clash(&t(Kind::Column, "users.a", Access::Creates), &t(Kind::Column, "users.b", Access::Creates)).is_none()
        );
        assert_eq!(
            clash(&t(Kind::Table, "users", Access::Drops), &col(Access::Creates)).map(|o| o.to_string()).as_deref(),
            Some("table users")
        );
        assert!(clash(&t(Kind::Table, "users", Access::Writes), &col(Access::Uses)).is_none());
        assert!(
            clash(&t(Kind::Table, "users", Access::Uses), &col(Access::Drops)).is_none(),
            "an index on another column"
        );
        assert!(clash(&t(Kind::Table, "users", Access::Uses), &t(Kind::Table, "users", Access::Drops)).is_some());
        assert!(clash(&t(Kind::Table, "users", Access::Writes), &col(Access::Creates)).is_some(), "a NOT NULL column");
        assert!(clash(&t(Kind::Table, "users", Access::Writes), &t(Kind::Table, "users", Access::Writes)).is_some());
        assert!(clash(&t(Kind::View, "active", Access::Creates), &t(Kind::Table, "active", Access::Creates)).is_some());
        assert!(clash(&t(Kind::Type, "mood", Access::Creates), &t(Kind::Table, "mood", Access::Creates)).is_none());
    }
}
