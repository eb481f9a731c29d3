//! Subsets: which rows of each table a streamed copy takes so that every foreign key still holds.
//!
//! The rule, table by table:
//! 1. a table named by `--where 'TABLE: CONDITION'`: the rows the condition picks;
//! 2. else, with `--sample P`, a table a foreign key leaves or reaches:
//!    - when it has a NOT NULL foreign key to a parent of at least [`parent_rows`] rows that does
//!      not reference it back, transitively (the parent with the most rows when several): the
//!      rows whose parent row this rule chose. The orders of the sampled users, so that each
//!      table keeps about P % of its rows: a sample of the orders would bring the users of every
//!      one of them (with 5 orders a user, 10 % of the orders reference 41 % of the users);
//!    - else a P % sample of its rows (Bernoulli, the same rows for the same data);
//!
//!    a table no foreign key leaves or reaches: all of its rows;
//! 3. else: all of its rows;
//!
//! then every row a chosen row references, transitively (foreign keys followed to their parents
//! until nothing new comes: cycles end there too). Each rule is a clause the source evaluates
//! in the copy's snapshot; the closure's first round is one query per foreign key, run by the
//! source, that returns only the parent rows their own rule left out (by `ctid`, stable within
//! the snapshot), and the later rounds follow those. Only added rows' ctids come to this process.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, Result, anyhow, bail};

use super::mask::{ForeignKey, Table, ident};
use super::session::Session;

/// What a copy takes of each table.
#[derive(Clone, Debug, Default)]
pub struct Subset {
    /// `--sample`: a percentage, above 0 and at most 100.
    pub sample: Option<f64>,
    /// `--where`: `schema.table` and a condition on its rows.
    pub conditions: Vec<(String, String)>,
}

impl Subset {
    /// `--where`'s `TABLE: CONDITION` (`table` for schema public, else `schema.table`).
    pub fn parse_where(text: &str) -> Result<(String, String)> {
        let Some((table, condition)) = text.split_once(':') else {
            bail!(
                hint!("--where `{text}` has no `TABLE:`"; "write --where 'orders: created_at > now() - interval '30 days''")
            );
        };
        let (table, condition) = (table.trim(), condition.trim());
        if table.is_empty() || condition.is_empty() {
            bail!(hint!("--where `{text}` names no table or no condition"; "write --where 'TABLE: CONDITION'"));
        }
        let table = if table.contains('.') { table.to_string() } else { format!("public.{table}") };
        Ok((table, condition.to_string()))
    }

    pub fn is_whole(&self) -> bool {
        self.sample.is_none() && self.conditions.is_empty()
    }
}

/// The least rows a table must have for its children to follow its sample: its P % sample then
/// holds about 100 rows or more. A smaller table (a lookup: countries, plans) is sampled like
/// any other and completed by the rows its children reference; following it would give each
/// child the rows of a handful of parents, or none.
pub fn parent_rows(percent: f64) -> u64 {
    (10_000.0 / percent).ceil() as u64
}

/// The rows of one table a copy takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    All,
    /// The rows `rule` picks (what follows `FROM ONLY table`), and the rows (ctids, text,
    /// `(page,item)`) it left out that other chosen rows reference.
    Some {
        rule: String,
        added: BTreeSet<String>,
    },
}

impl Choice {
    /// `SELECT columns FROM ONLY table ...` that gives these rows (the added ones after the
    /// rule's: the two never meet).
    pub fn select(&self, columns: &str, table: &str) -> String {
        let from = format!("SELECT {columns} FROM ONLY {table}");
        match self {
            Choice::All => from,
            Choice::Some { rule, added } if added.is_empty() => format!("{from}{rule}"),
            Choice::Some { rule, added } => {
                format!("{from}{rule} UNION ALL {from} WHERE ctid = ANY ('{}'::tid[])", tid_array(added.iter()))
            }
        }
    }
}

/// `{"(0,1)","(0,2)"}`: an array of ctids as Postgres reads it.
fn tid_array<'a>(rows: impl Iterator<Item = &'a String>) -> String {
    let items: Vec<String> = rows.map(|r| format!("\"{r}\"")).collect();
    format!("{{{}}}", items.join(","))
}

/// How a table's rows are picked before the closure adds what they reference.
#[derive(Clone, Debug)]
struct Rule {
    /// What follows `FROM ONLY table`; empty: every row.
    clause: String,
    /// The foreign key whose parent's rule this one follows (its name): every row it picks
    /// references a row the parent's rule picks, so the closure's first round skips it.
    follows: Option<String>,
    /// The rule, said.
    said: String,
}

/// Chooses the rows of `tables` by `subset`'s rule, then closes the choice under
/// `foreign_keys` (children's references to parents) to a fixed point. Said on stderr: the rule
/// and what it chose.
pub fn choose(
    session: &mut Session,
    subset: &Subset,
    tables: &[Table],
    foreign_keys: &[ForeignKey],
) -> Result<BTreeMap<String, Choice>> {
    let started = std::time::Instant::now();
    check(subset, tables, foreign_keys)?;
    let parents = match subset.sample {
        Some(percent) => parents(session, percent, subset, foreign_keys)?,
        None => BTreeMap::new(),
    };
    let linked: BTreeSet<String> = foreign_keys.iter().flat_map(|fk| [name(&fk.child), name(&fk.parent)]).collect();
    let mut rules = BTreeMap::new();
    for table in tables {
        rule(&table_name(table), subset, &linked, &parents, &mut rules);
    }
    let (added, rounds) = close(session, &rules, foreign_keys)?;
    let mut chosen = BTreeMap::new();
    let mut described = Vec::new();
    for (table, rule) in rules {
        let added = added.get(&table).cloned().unwrap_or_default();
        described.push(match added.len() {
            0 => format!("{table}: {}", rule.said),
            n => format!("{table}: {} and {n} rows referenced", rule.said),
        });
        let choice = if rule.clause.is_empty() { Choice::All } else { Choice::Some { rule: rule.clause, added } };
        chosen.insert(table, choice);
    }
    eprintln!(
        "subset: {}; then every row those reference, to a fixed point ({rounds} round(s), {:.1}s)\n  {}",
        match subset.sample {
            Some(percent) => format!(
                "a {percent} % sample of each table with a foreign key in or out, or the rows of its parent's (those --where names: what it picks; the others: all rows)"
            ),
            None => "the rows --where picks (the other tables: all rows)".into(),
        },
        started.elapsed().as_secs_f64(),
        crate::error::escaped(&described.join(", "))
    );
    Ok(chosen)
}

/// `schema.table`, the key of every map here.
fn name((schema, table): &(String, String)) -> String {
    format!("{schema}.{table}")
}

fn table_name(table: &Table) -> String {
    format!("{}.{}", table.schema, table.name)
}

/// `"schema"."table"`.
fn quoted((schema, table): &(String, String)) -> String {
    format!("{}.{}", ident(schema), ident(table))
}

/// Refuses a `--where` on a table the source lacks, and a foreign key a subset cannot follow.
fn check(subset: &Subset, tables: &[Table], foreign_keys: &[ForeignKey]) -> Result<()> {
    let known: BTreeSet<String> = tables.iter().map(table_name).collect();
    for (table, _) in &subset.conditions {
        if !known.contains(table) {
            bail!(hint!("--where names {}, which is not a table of the source", crate::error::escaped(table);
                "name a table as `table` (schema public) or `schema.table`"));
        }
    }
    for fk in foreign_keys {
        for side in [&fk.child, &fk.parent] {
            if !known.contains(&name(side)) {
                bail!(
                    hint!("foreign key {} is on {}.{}, a partitioned table or one left out: a subset does not follow it yet", fk.name, side.0, side.1;
                    "copy it whole (no --sample or --where), or leave that schema out with --exclude-schema")
                );
            }
        }
    }
    Ok(())
}

/// Under `--sample percent`, the foreign key each table follows (see the module's rule): NOT
/// NULL, to a table that does not reference it back and has at least [`parent_rows`] rows (the
/// one with the most; then the first by name). Tables `--where` names follow nothing. Parents
/// are counted up to the threshold, and in full only to pick one of several.
fn parents<'a>(
    session: &mut Session,
    percent: f64,
    subset: &Subset,
    foreign_keys: &'a [ForeignKey],
) -> Result<BTreeMap<String, &'a ForeignKey>> {
    let least = parent_rows(percent);
    let mut big_enough: BTreeMap<String, bool> = BTreeMap::new();
    let mut candidates: BTreeMap<String, Vec<&ForeignKey>> = BTreeMap::new();
    for fk in foreign_keys {
        let (child, parent) = (name(&fk.child), name(&fk.parent));
        if !fk.required || subset.conditions.iter().any(|(t, _)| *t == child) || reaches(foreign_keys, &parent, &child)
        {
            continue;
        }
        if let Entry::Vacant(slot) = big_enough.entry(parent.clone()) {
            slot.insert(count(session, &fk.parent, Some(least))? >= least);
        }
        if big_enough[&parent] {
            candidates.entry(child).or_default().push(fk);
        }
    }
    let mut rows: BTreeMap<String, u64> = BTreeMap::new();
    let mut parents = BTreeMap::new();
    for (child, mut fks) in candidates {
        if fks.len() > 1 {
            for fk in &fks {
                if let Entry::Vacant(slot) = rows.entry(name(&fk.parent)) {
                    slot.insert(count(session, &fk.parent, None)?);
                }
            }
            fks.sort_by(|a, b| rows[&name(&b.parent)].cmp(&rows[&name(&a.parent)]).then(a.name.cmp(&b.name)));
        }
        parents.insert(child, fks[0]);
    }
    Ok(parents)
}

/// The rows of `table`, counted up to `limit` when there is one.
fn count(session: &mut Session, table: &(String, String), limit: Option<u64>) -> Result<u64> {
    let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
    session
        .query_column(&format!("SELECT count(*) FROM (SELECT FROM ONLY {}{limit}) x", quoted(table)))
        .map_err(|e| anyhow!(e))
        .with_context(|| format!("count the rows of {}", crate::error::escaped(&name(table))))?
        .pop()
        .context("a count")?
        .parse()
        .context("a count")
}

/// Whether `from` references `to`, through foreign keys followed to their parents (a table
/// reaches itself).
fn reaches(foreign_keys: &[ForeignKey], from: &str, to: &str) -> bool {
    let (mut seen, mut next) = (BTreeSet::from([from.to_string()]), vec![from.to_string()]);
    while let Some(table) = next.pop() {
        if table == to {
            return true;
        }
        for fk in foreign_keys.iter().filter(|fk| name(&fk.child) == table) {
            if seen.insert(name(&fk.parent)) {
                next.push(name(&fk.parent));
            }
        }
    }
    false
}

/// `table`'s rule (and, first, its parent's: what it follows), into `rules`.
fn rule(
    table: &str,
    subset: &Subset,
    linked: &BTreeSet<String>,
    parents: &BTreeMap<String, &ForeignKey>,
    rules: &mut BTreeMap<String, Rule>,
) -> Rule {
    if let Some(known) = rules.get(table) {
        return known.clone();
    }
    let condition = subset.conditions.iter().find(|(t, _)| t == table).map(|(_, c)| c);
    let rule = match (condition, subset.sample, parents.get(table)) {
        (Some(condition), _, _) => {
            Rule { clause: format!(" WHERE ({condition})"), follows: None, said: "the rows --where picks".into() }
        }
        (None, Some(_), Some(fk)) => {
            let parent = rule(&name(&fk.parent), subset, linked, parents, rules);
            let columns = |list: &[String]| list.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
            Rule {
                clause: format!(
                    " WHERE ({}) IN (SELECT {} FROM ONLY {}{})",
                    columns(&fk.child_columns),
                    columns(&fk.parent_columns),
                    quoted(&fk.parent),
                    parent.clause
                ),
                follows: Some(fk.name.clone()),
                said: format!("the rows of the chosen {} ({})", name(&fk.parent), fk.name),
            }
        }
        (None, Some(percent), None) if linked.contains(table) => Rule {
            clause: format!(" TABLESAMPLE BERNOULLI ({percent}) REPEATABLE (0)"),
            follows: None,
            said: format!("a {percent} % sample"),
        },
        _ => Rule { clause: String::new(), follows: None, said: "all rows".into() },
    };
    rules.insert(table.to_string(), rule.clone());
    rule
}

/// The rows the rules left out that chosen rows reference, transitively: each table's ctids;
/// and how many rounds that took. The first round follows each foreign key from its child's
/// rule, the later ones from the rows the round before added.
fn close(
    session: &mut Session,
    rules: &BTreeMap<String, Rule>,
    foreign_keys: &[ForeignKey],
) -> Result<(BTreeMap<String, BTreeSet<String>>, usize)> {
    let mut added: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut fresh: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let mut next: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for fk in foreign_keys {
            let (child, parent) = (&rules[&name(&fk.child)], &rules[&name(&fk.parent)]);
            let (children, rows) = if parent.clause.is_empty() {
                continue;
            } else if rounds == 1 && child.follows.as_ref() != Some(&fk.name) {
                (child.clause.as_str(), String::new())
            } else if let Some(rows) = fresh.get(&name(&fk.child)) {
                (" WHERE ctid = ANY ($1::tid[])", tid_array(rows.iter()))
            } else {
                continue;
            };
            let sql = referenced(fk, children, &parent.clause);
            let params: &[&str] = if rows.is_empty() { &[] } else { &[&rows] };
            let rows = session
                .query_column_with(&sql, params)
                .map_err(|e| anyhow!(e))
                .with_context(|| format!("follow foreign key {}", crate::error::escaped(&fk.name)))?;
            let have = added.entry(name(&fk.parent)).or_default();
            for row in rows {
                if have.insert(row.clone()) {
                    next.entry(name(&fk.parent)).or_default().push(row);
                }
            }
        }
        if next.is_empty() {
            return Ok((added, rounds));
        }
        fresh = next;
    }
}

/// The ctids of the parent rows that the child rows `FROM ONLY child{children}` picks reference
/// through `fk`, but that `FROM ONLY parent{parent_rule}` leaves out. The references are
/// gathered first (materialized: the planner cannot tell how few rows a sample or a rule keeps,
/// and would hash the wrong side), then only the missing ones are looked up, by the parent's key.
fn referenced(fk: &ForeignKey, children: &str, parent_rule: &str) -> String {
    let list = |prefix: &str, columns: &[String], suffix: &str, glue: &str| {
        columns.iter().map(|c| format!("{prefix}{}{suffix}", ident(c))).collect::<Vec<_>>().join(glue)
    };
    let parent = quoted(&fk.parent);
    let keys = list("", &fk.parent_columns, "", ", ");
    format!(
        "WITH refs AS MATERIALIZED (SELECT DISTINCT {} FROM (SELECT {} FROM ONLY {}{children}) c WHERE {})
         SELECT ctid::text FROM ONLY {parent} WHERE ({keys}) IN (SELECT * FROM refs EXCEPT SELECT {keys} FROM ONLY {parent}{parent_rule})",
        list("c.", &fk.child_columns, "", ", "),
        list("", &fk.child_columns, "", ", "),
        quoted(&fk.child),
        list("c.", &fk.child_columns, " IS NOT NULL", " AND "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_names_a_table_and_a_condition() {
        assert_eq!(
            Subset::parse_where("orders: total > 10 AND note <> 'a:b'").unwrap(),
            ("public.orders".into(), "total > 10 AND note <> 'a:b'".into())
        );
        assert_eq!(Subset::parse_where("shop.orders:id < 5").unwrap().0, "shop.orders");
        for bad in ["orders", ": id < 5", "orders:  "] {
            assert!(Subset::parse_where(bad).is_err(), "{bad}");
        }
        let added: BTreeSet<String> = ["(0,1)".to_string(), "(2,3)".to_string()].into();
        let some = Choice::Some { rule: " WHERE (id < 5)".into(), added };
        assert_eq!(
            some.select("a", "t"),
            "SELECT a FROM ONLY t WHERE (id < 5) UNION ALL SELECT a FROM ONLY t WHERE ctid = ANY ('{\"(0,1)\",\"(2,3)\"}'::tid[])"
        );
        let none = Choice::Some { rule: " WHERE (id < 5)".into(), added: BTreeSet::new() };
        assert_eq!(none.select("a", "t"), "SELECT a FROM ONLY t WHERE (id < 5)");
        assert_eq!(Choice::All.select("a", "t"), "SELECT a FROM ONLY t");
        assert_eq!(parent_rows(10.0), 1000);
        assert_eq!(parent_rows(3.0), 3334);
    }

    #[test]
    fn a_table_reaches_what_it_references_transitively() {
        let fk = |child: &str, parent: &str| ForeignKey {
            name: format!("{child}_fkey"),
            child: ("public".into(), child.into()),
            child_columns: vec!["x".into()],
            parent: ("public".into(), parent.into()),
            parent_columns: vec!["id".into()],
            required: true,
        };
        let keys = [fk("orders", "users"), fk("users", "teams"), fk("teams", "users")];
        assert!(reaches(&keys, "public.orders", "public.teams"));
        assert!(reaches(&keys, "public.teams", "public.users") && reaches(&keys, "public.users", "public.teams"));
        assert!(!reaches(&keys, "public.users", "public.orders"));
        assert!(reaches(&keys, "public.orders", "public.orders"));
    }
}
