//! Masking rules (`railgun.toml`'s `[mask]`) and what they become: one SQL expression per
//! column, run by the source inside `COPY (SELECT ...) TO STDOUT`, so unmasked rows never leave
//! the source server.
//!
//! ```toml
//! [mask]
//! "users.email" = "email"          # u<16 hex>@example.invalid: unique for distinct inputs
//! "users.name" = "name"            # a made-up first and last name
//! "users.phone" = "phone"          # +1 555 and 7 digits
//! "users.bio" = "text"             # hex of the same length
//! "users.token" = "hash"           # 64 hex
//! "users.last_ip" = "null"
//! "users.country" = "keep"         # not personal: copied as it is
//! "users.plan" = { value = "free" }              # a constant
//! "audit.events.payload" = { sql = "'{}'::jsonb" }  # any expression over the row's columns
//! ```
//!
//! Every rule but `sql` is a function of the value alone, keyed by `RAILGUN_MASK_KEY`: the same
//! value gives the same output in every table and every run (joins on masked values still
//! match), and NULL stays NULL. The key is `sha256(key || value)`, computed by the source
//! server (built in since Postgres 11; no extension); the key reaches the server as a
//! parameter of `set_config`, never in a statement's text.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use crate::context::Context;

/// The setting that holds the masking key.
pub const KEY_SETTING: &str = "RAILGUN_MASK_KEY";

/// The server setting the key is in, for the copy's transaction only.
pub const KEY_GUC: &str = "railgun.mask_key";

/// What a column becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    Email,
    Name,
    Phone,
    Text,
    Null,
    Hash,
    Keep,
    /// A constant (a TOML scalar, rendered as SQL text).
    Constant(String),
    /// An SQL expression over the row's columns.
    Sql(String),
}

const WORDS: &str = "email, name, phone, text, null, hash, keep, { value = ... } or { sql = \"...\" }";

impl Rule {
    /// A rule as `[mask]` writes it.
    pub fn parse(value: &toml::Value) -> Result<Rule, String> {
        match value {
            toml::Value::String(word) => match word.as_str() {
                "email" => Ok(Rule::Email),
                "name" => Ok(Rule::Name),
                "phone" => Ok(Rule::Phone),
                "text" => Ok(Rule::Text),
                "null" => Ok(Rule::Null),
                "hash" => Ok(Rule::Hash),
                "keep" => Ok(Rule::Keep),
                other => Err(format!("`{other}` is not a rule")),
            },
            toml::Value::Table(table) if table.len() == 1 => match table.iter().next() {
                Some((key, toml::Value::String(sql))) if key == "sql" && !sql.trim().is_empty() => {
                    Ok(Rule::Sql(sql.clone()))
                }
                Some((key, value)) if key == "value" => match value {
                    toml::Value::String(s) => Ok(Rule::Constant(s.clone())),
                    toml::Value::Integer(i) => Ok(Rule::Constant(i.to_string())),
                    toml::Value::Float(f) => Ok(Rule::Constant(f.to_string())),
                    toml::Value::Boolean(b) => Ok(Rule::Constant(b.to_string())),
                    toml::Value::Datetime(d) => Ok(Rule::Constant(d.to_string())),
                    _ => Err("a constant is a string, number, boolean or date".into()),
                },
                _ => Err("a table rule is { value = ... } or { sql = \"...\" }".into()),
            },
            _ => Err("not a rule".into()),
        }
    }

    /// The rule as `[mask]` writes it.
    pub fn render(&self) -> String {
        match self {
            Rule::Email => "\"email\"".into(),
            Rule::Name => "\"name\"".into(),
            Rule::Phone => "\"phone\"".into(),
            Rule::Text => "\"text\"".into(),
            Rule::Null => "\"null\"".into(),
            Rule::Hash => "\"hash\"".into(),
            Rule::Keep => "\"keep\"".into(),
            Rule::Constant(value) => format!("{{ value = {} }}", toml_string(value)),
            Rule::Sql(sql) => format!("{{ sql = {} }}", toml_string(sql)),
        }
    }

    /// Distinct inputs give distinct outputs (for `email`, but for a 64-bit hash collision),
    /// NULL stays NULL: a column of a unique index keeps it.
    fn keeps_unique(&self) -> bool {
        matches!(self, Rule::Email | Rule::Hash | Rule::Keep | Rule::Null)
    }

    /// The SQL expression for `column` (an identifier, quoted).
    pub fn expression(&self, column: &str) -> String {
        let hash = keyed_hash(column);
        match self {
            Rule::Email => format!("'u' || left({hash}, 16) || '@example.invalid'"),
            Rule::Name => {
                let pick = |list: &[&str], from: usize| {
                    let list = list.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(",");
                    format!("(ARRAY[{list}])[1 + (('x' || substr({hash}, {from}, 2))::bit(8)::int % 32)]")
                };
                format!("{} || ' ' || {}", pick(&FIRST_NAMES, 1), pick(&LAST_NAMES, 3))
            }
            Rule::Phone => {
                format!("'+1 555 ' || lpad(((('x' || left({hash}, 7))::bit(28)::int) % 10000000)::text, 7, '0')")
            }
            Rule::Text => {
                format!("substr(repeat({hash}, 1 + length(({column})::text) / 64), 1, length(({column})::text))")
            }
            Rule::Null => "NULL".into(),
            Rule::Hash => hash,
            Rule::Keep => column.into(),
            Rule::Constant(value) => format!("CASE WHEN {column} IS NULL THEN NULL ELSE {} END", literal(value)),
            Rule::Sql(sql) => format!("({sql})"),
        }
    }
}

/// `text` as a TOML basic string (JSON's escapes are TOML's).
fn toml_string(text: &str) -> String {
    serde_json::Value::String(text.into()).to_string()
}

/// sha256 of the key and the value's text, as 64 hex digits; NULL for NULL.
fn keyed_hash(column: &str) -> String {
    format!("encode(sha256(convert_to(current_setting('{KEY_GUC}') || ({column})::text, 'UTF8')), 'hex')")
}

const FIRST_NAMES: [&str; 32] = [
    "Ada", "Alan", "Barbara", "Brian", "Carol", "Dennis", "Edsger", "Frances", "Grace", "Guido", "Hedy", "Ivan",
    "Joan", "John", "Ken", "Linus", "Margaret", "Niklaus", "Olga", "Peter", "Radia", "Rob", "Sophie", "Tim", "Ursula",
    "Vint", "Wendy", "Xavier", "Yukihiro", "Zoe", "Annie", "Bjarne",
];
const LAST_NAMES: [&str; 32] = [
    "Abbott", "Baker", "Clarke", "Dalton", "Ellis", "Fowler", "Garner", "Hughes", "Irwin", "Jarvis", "Keller", "Lowe",
    "Mercer", "Norris", "Osborne", "Porter", "Quinn", "Reeves", "Sutton", "Turner", "Upton", "Vaughn", "Walsh",
    "Yates", "Archer", "Bishop", "Carver", "Doyle", "Emery", "Finch", "Gibbs", "Holt",
];

/// The rules of `[mask]`, by `schema.table.column`.
#[derive(Clone, Debug, Default)]
pub struct Rules(BTreeMap<String, Rule>);

impl Rules {
    /// Reads `[mask]` (`"table.column"` for the `public` schema, else `"schema.table.column"`).
    pub fn parse(table: &toml::Table) -> Result<Rules> {
        let mut rules = BTreeMap::new();
        for (key, value) in table {
            let column = match key.split('.').collect::<Vec<_>>().as_slice() {
                [table, column] => format!("public.{table}.{column}"),
                [schema, table, column] => format!("{schema}.{table}.{column}"),
                _ => bail!(
                    hint!("[mask] key `{key}` names no column"; "write \"table.column\" (schema public) or \"schema.table.column\"")
                ),
            };
            let rule = Rule::parse(value)
                .map_err(|why| anyhow::Error::new(hint!("[mask] \"{key}\": {why}"; "a rule is one of {WORDS}")))?;
            rules.insert(column, rule);
        }
        Ok(Rules(rules))
    }

    /// The rules of the project's `railgun.toml` (none when it has no `[mask]`).
    pub fn load(cx: &Context) -> Result<Rules> {
        let settings = crate::migration::settings::load(cx)?;
        match &settings.mask {
            Some(table) => Rules::parse(table).with_context(|| format!("read {}", settings.path.display())),
            None => Ok(Rules::default()),
        }
    }

    pub fn get(&self, schema: &str, table: &str, column: &str) -> Option<&Rule> {
        self.0.get(&format!("{schema}.{table}.{column}"))
    }
}

/// How `[mask]` names a column.
pub fn rule_key(schema: &str, table: &str, column: &str) -> String {
    match schema {
        "public" => format!("{table}.{column}"),
        _ => format!("{schema}.{table}.{column}"),
    }
}

/// The rule to suggest for an unruled column that looks personal; `None` when it does not.
pub fn personal(column: &str, type_name: &str) -> Option<Rule> {
    if matches!(type_name, "inet" | "cidr" | "macaddr" | "macaddr8") {
        return Some(Rule::Null);
    }
    let lower = column.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let has =
        |list: &[&str]| words.iter().any(|w| list.contains(w)) || list.iter().any(|l| l.len() > 4 && lower.contains(l));
    if has(&["email", "mail"]) {
        Some(Rule::Email)
    } else if has(&["phone", "mobile", "fax"]) {
        Some(Rule::Phone)
    } else if has(&["name", "firstname", "lastname", "surname", "fullname", "username"]) {
        Some(Rule::Name)
    } else if has(&["token", "password", "secret", "ssn", "passwd", "apikey"]) {
        Some(Rule::Hash)
    } else if has(&["address", "street", "city", "zip", "zipcode", "postal", "postcode"]) {
        Some(Rule::Text)
    } else if has(&["birth", "birthday", "birthdate", "dob", "ip"]) {
        Some(Rule::Null)
    } else {
        None
    }
}

/// A table of the source, as the catalog says.
#[derive(Clone, Debug, Deserialize)]
pub struct Table {
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Column {
    pub name: String,
    /// The type's name (`text`, `inet`, ...), without modifiers.
    #[serde(rename = "type")]
    pub type_name: String,
    /// What a sample of its values mostly looks like (see [`super::sampled`]), when it was sampled.
    #[serde(skip)]
    pub looks_like: Option<super::sampled::Kind>,
}

impl Column {
    /// The rule to suggest when it has none and looks personal (by name, type or values), and why.
    pub fn suspected(&self) -> Option<(Rule, String)> {
        if let Some(rule) = personal(&self.name, &self.type_name) {
            return Some((rule, String::new()));
        }
        self.looks_like.map(|kind| (kind.rule(), format!("its values look like {}", kind.plural())))
    }
}

/// A column that looks personal: how `[mask]` names it, the rule to add, and why when its name
/// does not say (its values do).
#[derive(Clone, Debug, PartialEq)]
pub struct Suspect {
    pub key: String,
    pub rule: Rule,
    pub why: String,
}

impl Suspect {
    /// `"users.email" = "email"`, with the reason as a TOML comment when there is one.
    pub fn line(&self) -> String {
        let why = if self.why.is_empty() { String::new() } else { format!("   # {}", self.why) };
        format!("  \"{}\" = {}{why}", crate::error::escaped(&self.key), self.rule.render())
    }
}

/// The columns of `tables` that look personal and for which `allowed` says no (given the rule
/// `[mask]` has for them, if any).
pub fn suspects(rules: &Rules, tables: &[Table], allowed: impl Fn(Option<&Rule>) -> bool) -> Vec<Suspect> {
    let mut found = Vec::new();
    for table in tables {
        for column in &table.columns {
            let rule = rules.get(&table.schema, &table.name, &column.name);
            if allowed(rule) {
                continue;
            }
            if let Some((suggested, why)) = column.suspected() {
                let key = rule_key(&table.schema, &table.name, &column.name);
                found.push(Suspect { key, rule: rule.cloned().unwrap_or(suggested), why });
            }
        }
    }
    found
}

/// A copy that moves every value as it is (no `--mask`) from a source that is not this machine:
/// refused, before any row moves, when a column looks personal and `[mask]` does not say
/// `"keep"` for it, each named with its rule (the one `[mask]` has, else one to add); with
/// `unmasked`, allowed, and the columns returned to be named.
pub fn check_unmasked_copy(rules: &Rules, tables: &[Table], unmasked: bool) -> Result<Vec<String>> {
    let exposed = suspects(rules, tables, |rule| rule == Some(&Rule::Keep));
    if exposed.is_empty() || unmasked {
        return Ok(exposed.into_iter().map(|s| s.key).collect());
    }
    let listed: Vec<String> = exposed.iter().map(Suspect::line).collect();
    bail!(hint!(
        "the source is not on this machine and {} column(s) look like personal data; a copy without --mask would bring them here as they are:\n{}",
        exposed.len(), listed.join("\n");
        "put those rules in railgun.toml's [mask] (the ones above are suggestions; \"keep\" copies a column as it is) and copy with --mask, or pass --unmasked to copy them as they are; nothing was copied"
    ))
}

/// A foreign key: `child.columns` reference `parent.columns`, pairwise.
#[derive(Clone, Debug, Deserialize)]
pub struct ForeignKey {
    pub name: String,
    pub child: (String, String),
    pub child_columns: Vec<String>,
    pub parent: (String, String),
    pub parent_columns: Vec<String>,
    /// Every child column is NOT NULL: each row references a parent row.
    pub required: bool,
}

/// A unique index (or primary key): the columns it covers, expressions' included.
#[derive(Clone, Debug, Deserialize)]
pub struct Unique {
    pub name: String,
    pub table: (String, String),
    pub columns: Vec<String>,
}

/// What the copy will select: each table's columns, and their expressions.
#[derive(Debug)]
pub struct Plan {
    /// Per table: (column identifiers, select expressions).
    pub tables: Vec<(Table, Vec<String>)>,
    /// What the user should read before the rows move: notes on foreign keys kept.
    pub notes: Vec<String>,
    /// Personal-data columns copied as they are (`--unmasked`).
    pub unmasked: Vec<String>,
}

/// Turns `rules` into each table's select list. Refused, before any row moves: a rule for a
/// column the source lacks; a rule that would break a unique index or a foreign key; and,
/// unless `unmasked`, a column that looks personal and has no rule (each named with the rule to add).
pub fn plan(
    rules: &Rules,
    tables: Vec<Table>,
    foreign_keys: &[ForeignKey],
    uniques: &[Unique],
    unmasked: bool,
) -> Result<Plan> {
    let unruled = suspects(rules, &tables, |rule| rule.is_some());
    let planned = select_lists(rules, tables)?;
    let mut broken = unique_breaks(rules, uniques);
    let mut notes = Vec::new();
    foreign_key_checks(rules, foreign_keys, &mut broken, &mut notes);
    if !broken.is_empty() {
        let shown: Vec<String> = broken.iter().map(|b| format!("  {}", crate::error::escaped(b))).collect();
        bail!(hint!("[mask] would break the source's constraints:\n{}", shown.join("\n");
            "change those rules in railgun.toml; nothing was copied"));
    }
    let listed: Vec<String> = unruled.iter().map(Suspect::line).collect();
    if !unruled.is_empty() && !unmasked {
        bail!(
            hint!("{} column(s) look like personal data and have no rule in railgun.toml's [mask]:\n{}", unruled.len(), listed.join("\n");
            "add a rule for each to [mask] (the ones above are suggestions; \"keep\" copies a column as it is), or pass --unmasked to copy them as they are; nothing was copied")
        );
    }
    Ok(Plan { tables: planned, notes, unmasked: unruled.into_iter().map(|s| s.key).collect() })
}

/// Each table's select list: every column, through its rule when it has one. Refused when a
/// rule names a column the source does not have.
fn select_lists(rules: &Rules, tables: Vec<Table>) -> Result<Vec<(Table, Vec<String>)>> {
    let mut known = BTreeSet::new();
    let mut planned = Vec::new();
    for table in tables {
        let mut expressions = Vec::new();
        for column in &table.columns {
            known.insert(format!("{}.{}.{}", table.schema, table.name, column.name));
            let quoted = ident(&column.name);
            let rule = rules.get(&table.schema, &table.name, &column.name);
            expressions.push(match rule {
                Some(rule) => format!("{} AS {quoted}", rule.expression(&quoted)),
                None => quoted,
            });
        }
        planned.push((table, expressions));
    }
    let unknown: Vec<&String> = rules.0.keys().filter(|k| !known.contains(*k)).collect();
    if !unknown.is_empty() {
        let shown: Vec<String> = unknown.iter().map(|k| crate::error::escaped(k).into_owned()).collect();
        bail!(hint!("[mask] has rules for columns the source does not have: {}", shown.join(", ");
            "fix or remove them in railgun.toml (keys are \"table.column\" for schema public, else \"schema.table.column\"); nothing was copied"));
    }
    Ok(planned)
}

/// The rule `[mask]` has for a column of the table `(schema, table)`.
fn rule_of(rules: &Rules, (schema, table): &(String, String), column: &str) -> Option<Rule> {
    rules.get(schema, table, column).cloned()
}

/// Rules that can give two rows of a unique index one value, each said with the rules that keep it.
fn unique_breaks(rules: &Rules, uniques: &[Unique]) -> Vec<String> {
    let mut broken = Vec::new();
    for unique in uniques {
        for column in &unique.columns {
            if let Some(rule) = rule_of(rules, &unique.table, column)
                && !rule.keeps_unique()
                && !matches!(rule, Rule::Sql(_))
            {
                broken.push(format!(
                    "{} = {} is in unique index {}: that rule can give two rows one value; use \"email\", \"hash\", \"null\" or \"keep\"",
                    rule_key(&unique.table.0, &unique.table.1, column),
                    rule.render(),
                    unique.name
                ));
            }
        }
    }
    broken
}

/// Each foreign key's column pairs: masked differently on the two sides, or with an `sql` rule,
/// it breaks (into `broken`); masked alike, it still matches, and the user is told (into `notes`).
fn foreign_key_checks(rules: &Rules, foreign_keys: &[ForeignKey], broken: &mut Vec<String>, notes: &mut Vec<String>) {
    for fk in foreign_keys {
        for (child, parent) in fk.child_columns.iter().zip(&fk.parent_columns) {
            let (child_rule, parent_rule) = (rule_of(rules, &fk.child, child), rule_of(rules, &fk.parent, parent));
            let named = |side: &(String, String), column: &str| rule_key(&side.0, &side.1, column);
            let (c, p) = (named(&fk.child, child), named(&fk.parent, parent));
            let shown = |r: &Option<Rule>| r.as_ref().map_or("no rule".to_string(), Rule::render);
            let same = child_rule.clone().unwrap_or(Rule::Keep) == parent_rule.clone().unwrap_or(Rule::Keep);
            match (&child_rule, &parent_rule) {
                _ if !same => broken.push(format!(
                    "{c} references {p} (foreign key {}), masked differently ({} and {}): give both the same rule, \"{c}\" = {} ",
                    fk.name,
                    shown(&child_rule),
                    shown(&parent_rule),
                    parent_rule.as_ref().or(child_rule.as_ref()).map_or("\"keep\"".into(), Rule::render)
                )),
                (Some(Rule::Sql(_)), _) => broken.push(format!(
                    "{c} references {p} (foreign key {}): an sql rule may not give both sides one value; use \"hash\", \"email\" or \"keep\"",
                    fk.name
                )),
                (Some(rule), _) if *rule != Rule::Keep => notes.push(format!(
                    "{c} → {p} (foreign key {}): both masked with {}, the same value on both sides, so they still match",
                    fk.name,
                    rule.render()
                )),
                _ => {}
            }
        }
    }
}

/// The masking key: `RAILGUN_MASK_KEY` from the environment or `.env`; when there is none, a new
/// one written to `.env` (never printed).
pub fn key(cx: &Context) -> Result<String> {
    if let Some(key) = cx.setting(KEY_SETTING)?.filter(|k| !k.trim().is_empty()) {
        return Ok(key);
    }
    let key = crate::secret::random_hex(32)?;
    let env = cx.env_file();
    crate::env_file::set(&env, None, &[(KEY_SETTING, &key)]).with_context(|| {
        hint!("save a new masking key in {}", env.display(); "set {KEY_SETTING} in the environment or .env yourself (any long random text)")
    })?;
    eprintln!(
        "made a masking key: {KEY_SETTING} in {} (kept there: the same key gives the same masked values next time; it is never printed)",
        crate::error::escaped(&env.display().to_string())
    );
    Ok(key)
}

pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip() {
        let table: toml::Table = toml::from_str(
            r#"
"users.email" = "email"
"users.name" = "name"
"app.users.phone" = "phone"
"users.bio" = "text"
"users.ip" = "null"
"users.token" = "hash"
"users.country" = "keep"
"users.plan" = { value = "it's free" }
"users.n" = { value = 3 }
"users.payload" = { sql = "'{}'::jsonb" }
"#,
        )
        .unwrap();
        let rules = Rules::parse(&table).unwrap();
        assert_eq!(rules.get("app", "users", "phone"), Some(&Rule::Phone));
        assert_eq!(rules.get("public", "users", "n"), Some(&Rule::Constant("3".into())));
        for (key, value) in &table {
            let (schema, rest) =
                if key.matches('.').count() == 2 { key.split_once('.').unwrap() } else { ("public", key.as_str()) };
            let (t, c) = rest.split_once('.').unwrap();
            let rule = rules.get(schema, t, c).unwrap();
            let again: toml::Table = toml::from_str(&format!("x = {}", rule.render())).unwrap();
            assert_eq!(Rule::parse(&again["x"]).unwrap(), Rule::parse(value).unwrap(), "{key}");
        }
        assert_eq!(
            Rule::Constant("it's free".into()).expression("\"plan\""),
            "CASE WHEN \"plan\" IS NULL THEN NULL ELSE 'it''s free' END"
        );
        for bad in [
            r#""users" = "email""#,
            r#""users.email" = "mail""#,
            r#""users.email" = { sql = "" }"#,
            r#""users.email" = 3"#,
        ] {
            let table: toml::Table = toml::from_str(bad).unwrap();
            assert!(Rules::parse(&table).is_err(), "{bad}");
        }
    }

    #[test]
    fn personal_columns_by_name_and_type() {
        for (column, rule) in [
            ("email", Rule::Email),
            ("billing_email", Rule::Email),
            ("EmailAddress", Rule::Email),
            ("phone_number", Rule::Phone),
            ("first_name", Rule::Name),
            ("name", Rule::Name),
            ("api_token", Rule::Hash),
            ("password_digest", Rule::Hash),
            ("street", Rule::Text),
            ("zip", Rule::Text),
            ("date_of_birth", Rule::Null),
            ("dob", Rule::Null),
            ("last_ip", Rule::Null),
        ] {
            assert_eq!(personal(column, "text"), Some(rule), "{column}");
        }
        assert_eq!(personal("seen_from", "inet"), Some(Rule::Null));
        for column in ["id", "shipping_fee", "user_id", "created_at", "total_cents", "zipper_size", "status"] {
            assert_eq!(personal(column, "text"), None, "{column}");
        }
    }

    fn users(columns: &[&str]) -> Table {
        Table {
            schema: "public".into(),
            name: "users".into(),
            columns: columns
                .iter()
                .map(|c| Column { name: c.to_string(), type_name: "text".into(), looks_like: None })
                .collect(),
        }
    }

    #[test]
    fn columns_personal_by_their_values_and_copies_from_elsewhere() {
        let rules = Rules::parse(&toml::from_str("\"users.email\" = \"email\"\n\"users.country\" = \"keep\"").unwrap())
            .unwrap();
        let mut table = users(&["id", "email", "country", "contact"]);
        table.columns[3].looks_like = Some(super::super::sampled::Kind::Email);
        let err = |r: Result<Plan>| crate::error::render(&r.unwrap_err());
        let refused = err(plan(&rules, vec![table.clone()], &[], &[], false));
        assert!(refused.contains("\"users.contact\" = \"email\"   # its values look like emails"), "{refused}");
        assert!(refused.contains("1 column(s)"), "{refused}");
        // Without --mask from elsewhere: every personal column [mask] does not keep, ruled or not.
        let exposed = check_unmasked_copy(&rules, std::slice::from_ref(&table), false).unwrap_err();
        let shown = crate::error::render(&exposed);
        assert!(shown.contains("2 column(s)") && shown.contains("\"users.email\" = \"email\"\n"), "{shown}");
        assert!(!shown.contains("users.country"), "{shown}");
        assert_eq!(check_unmasked_copy(&rules, &[table], true).unwrap(), ["users.email", "users.contact"]);
    }

    #[test]
    fn plans_refuse_what_would_leak_or_break() {
        let rules = |text: &str| Rules::parse(&toml::from_str(text).unwrap()).unwrap();
        let err = |r: Result<Plan>| crate::error::render(&r.unwrap_err());
        let leak = err(plan(&rules(""), vec![users(&["id", "email", "phone"])], &[], &[], false));
        assert!(leak.contains("\"users.email\" = \"email\"") && leak.contains("\"users.phone\" = \"phone\""), "{leak}");
        let plan_ok = plan(&rules(""), vec![users(&["id", "email"])], &[], &[], true).unwrap();
        assert_eq!(plan_ok.unmasked, ["users.email"]);
        let typo = err(plan(&rules(r#""users.mail" = "email""#), vec![users(&["id"])], &[], &[], false));
        assert!(typo.contains("users.mail"), "{typo}");
        let unique = Unique {
            name: "users_phone_key".into(),
            table: ("public".into(), "users".into()),
            columns: vec!["phone".into()],
        };
        let broken = err(plan(&rules(r#""users.phone" = "phone""#), vec![users(&["phone"])], &[], &[unique], false));
        assert!(broken.contains("users_phone_key"), "{broken}");
        let fk = ForeignKey {
            name: "orders_email_fkey".into(),
            child: ("public".into(), "orders".into()),
            child_columns: vec!["email".into()],
            parent: ("public".into(), "users".into()),
            parent_columns: vec!["email".into()],
            required: false,
        };
        let orders = Table { name: "orders".into(), ..users(&["email"]) };
        let half = err(plan(
            &rules(r#""users.email" = "email""#),
            vec![users(&["email"]), orders.clone()],
            std::slice::from_ref(&fk),
            &[],
            false,
        ));
        assert!(half.contains("orders_email_fkey") && half.contains("\"orders.email\" = \"email\""), "{half}");
        let both = plan(
            &rules("\"users.email\" = \"email\"\n\"orders.email\" = \"email\""),
            vec![users(&["email"]), orders],
            &[fk],
            &[],
            false,
        )
        .unwrap();
        assert!(both.notes[0].contains("still match"), "{:?}", both.notes);
    }
}
