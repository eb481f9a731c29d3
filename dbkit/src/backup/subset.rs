//! Subsets: which rows of each table a streamed copy takes so that every foreign key still holds.
//!
//! The rule, table by table:
//! 1. a table named by `--where 'TABLE: CONDITION'`: the rows the condition picks;
//! 2. else, with `--sample P`: a P % sample of its rows (Bernoulli, the same rows for the same
//!    data), except a table no foreign key leaves or reaches: all of its rows;
//! 3. else: all of its rows;
//!
//! then every row a chosen row references, transitively (foreign keys followed to their parents
//! until nothing new comes: cycles end there too). Rows are told apart by `ctid`, stable within
//! the copy's snapshot; the choice is made by the source server, and only the chosen rows' ctids
//! come to this process (in memory).

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

/// The rows of one table a copy takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    All,
    /// These ctids (text, `(page,item)`).
    Rows(BTreeSet<String>),
    /// The rows a clause after `FROM ONLY table` picks (its sample or `--where`; no parent row was
    /// added to them), and how many.
    Picked {
        clause: String,
        rows: usize,
    },
}

impl Choice {
    /// What follows `SELECT ... FROM ONLY table` to take these rows.
    pub fn clause(&self) -> String {
        match self {
            Choice::All => String::new(),
            Choice::Rows(rows) if rows.is_empty() => " WHERE false".into(),
            Choice::Rows(rows) => format!(" WHERE ctid = ANY ('{}'::tid[])", tid_array(rows.iter())),
            Choice::Picked { clause, .. } => clause.clone(),
        }
    }
}

/// `{"(0,1)","(0,2)"}`: an array of ctids as Postgres reads it.
fn tid_array<'a>(rows: impl Iterator<Item = &'a String>) -> String {
    let items: Vec<String> = rows.map(|r| format!("\"{r}\"")).collect();
    format!("{{{}}}", items.join(","))
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
    let key = |schema: &str, name: &str| format!("{schema}.{name}");
    let known: BTreeSet<String> = tables.iter().map(|t| key(&t.schema, &t.name)).collect();
    for (table, _) in &subset.conditions {
        if !known.contains(table) {
            bail!(hint!("--where names {}, which is not a table of the source", crate::error::escaped(table);
                "name a table as `table` (schema public) or `schema.table`"));
        }
    }
    for fk in foreign_keys {
        for side in [&fk.child, &fk.parent] {
            if !known.contains(&key(&side.0, &side.1)) {
                bail!(
                    hint!("foreign key {} is on {}.{}, a partitioned table or one left out: a subset does not follow it yet", fk.name, side.0, side.1;
                    "copy it whole (no --sample or --where), or leave that schema out with --exclude-schema")
                );
            }
        }
    }
    let linked: BTreeSet<String> =
        foreign_keys.iter().flat_map(|fk| [key(&fk.child.0, &fk.child.1), key(&fk.parent.0, &fk.parent.1)]).collect();
    let mut chosen = BTreeMap::new();
    // The clause that picked a table's first rows, and the tables that got parent rows since.
    let (mut bases, mut grown) = (BTreeMap::new(), BTreeSet::new());
    // The rows each table added in the last round: only those are followed in the next.
    let mut added: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for table in tables {
        let name = key(&table.schema, &table.name);
        let quoted = format!("{}.{}", ident(&table.schema), ident(&table.name));
        let condition = subset.conditions.iter().find(|(t, _)| *t == name).map(|(_, c)| c.clone());
        let clause = match (&condition, subset.sample) {
            (Some(condition), _) => format!(" WHERE ({condition})"),
            (None, Some(percent)) if linked.contains(&name) => {
                format!(" TABLESAMPLE BERNOULLI ({percent}) REPEATABLE (0)")
            }
            _ => {
                chosen.insert(name, Choice::All);
                continue;
            }
        };
        let rows: BTreeSet<String> = session
            .query_column(&format!("SELECT ctid::text FROM ONLY {quoted}{clause}"))
            .map_err(|e| anyhow!(e))
            .with_context(|| format!("choose the rows of {}", crate::error::escaped(&name)))?
            .into_iter()
            .collect();
        added.insert(name.clone(), rows.clone());
        bases.insert(name.clone(), clause);
        chosen.insert(name, Choice::Rows(rows));
    }
    // A table taken whole: every parent row its rows reference.
    for fk in foreign_keys {
        let (child, parent) = (key(&fk.child.0, &fk.child.1), key(&fk.parent.0, &fk.parent.1));
        if chosen.get(&child) != Some(&Choice::All) {
            continue;
        }
        let parents = session
            .query_column(&follow(fk, false))
            .map_err(|e| anyhow!(e))
            .with_context(|| format!("follow foreign key {}", crate::error::escaped(&fk.name)))?;
        if let Some(Choice::Rows(have)) = chosen.get_mut(&parent) {
            for row in parents {
                if have.insert(row.clone()) {
                    grown.insert(parent.clone());
                    added.entry(parent.clone()).or_default().insert(row);
                }
            }
        }
    }
    let mut rounds = 0;
    while added.values().any(|rows| !rows.is_empty()) {
        rounds += 1;
        let mut next: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for fk in foreign_keys {
            let (child, parent) = (key(&fk.child.0, &fk.child.1), key(&fk.parent.0, &fk.parent.1));
            if chosen.get(&parent) == Some(&Choice::All) {
                continue;
            }
            let Some(new_children) = added.get(&child).filter(|rows| !rows.is_empty()) else { continue };
            let parents = session
                .query_column_with(&follow(fk, true), &[&tid_array(new_children.iter())])
                .map_err(|e| anyhow!(e))
                .with_context(|| format!("follow foreign key {}", crate::error::escaped(&fk.name)))?;
            let Some(Choice::Rows(have)) = chosen.get_mut(&parent) else { continue };
            for row in parents {
                if have.insert(row.clone()) {
                    grown.insert(parent.clone());
                    next.entry(parent.clone()).or_default().insert(row);
                }
            }
        }
        added = next;
    }
    // A table the closure left as its clause picked it is copied by that clause, not a ctid list.
    for (table, clause) in bases {
        if let (false, Some(Choice::Rows(rows))) = (grown.contains(&table), chosen.get(&table)) {
            let rows = rows.len();
            chosen.insert(table, Choice::Picked { clause, rows });
        }
    }
    let described: Vec<String> = chosen
        .iter()
        .map(|(table, choice)| match choice {
            Choice::All => format!("{table}: all rows"),
            Choice::Rows(rows) => format!("{table}: {} rows", rows.len()),
            Choice::Picked { rows, .. } => format!("{table}: {rows} rows"),
        })
        .collect();
    eprintln!(
        "subset: {}; then every row those reference, to a fixed point ({rounds} round(s), {:.1}s)\n  {}",
        match subset.sample {
            Some(percent) => format!(
                "a {percent} % sample of each table with a foreign key in or out (those --where names: what it picks; the others: all rows)"
            ),
            None => "the rows --where picks (the other tables: all rows)".into(),
        },
        started.elapsed().as_secs_f64(),
        crate::error::escaped(&described.join(", "))
    );
    Ok(chosen)
}

/// The ctids of the parent rows that the child rows (those whose ctids are `$1` when
/// `some_children`, else all) reference through `fk`.
fn follow(fk: &ForeignKey, some_children: bool) -> String {
    let quote = |(schema, name): &(String, String)| format!("{}.{}", ident(schema), ident(name));
    let columns = |alias: &str, list: &[String]| {
        list.iter().map(|c| format!("{alias}.{}", ident(c))).collect::<Vec<_>>().join(", ")
    };
    format!(
        "SELECT p.ctid::text FROM ONLY {} p WHERE ({}) IN (SELECT {} FROM ONLY {} c{})",
        quote(&fk.parent),
        columns("p", &fk.parent_columns),
        columns("c", &fk.child_columns),
        quote(&fk.child),
        if some_children { " WHERE c.ctid = ANY ($1::tid[])" } else { "" }
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
        let rows: BTreeSet<String> = ["(0,1)".to_string(), "(2,3)".to_string()].into();
        assert_eq!(Choice::Rows(rows).clause(), " WHERE ctid = ANY ('{\"(0,1)\",\"(2,3)\"}'::tid[])");
        assert_eq!(Choice::Rows(BTreeSet::new()).clause(), " WHERE false");
        assert_eq!(Choice::All.clause(), "");
    }
}
