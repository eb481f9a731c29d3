//! SQL names to Rust names, exactly as diesel_cli 2.3 makes them (`infer_schema_internals::inference`
//! and heck's `ToUpperCamelCase`), so the generated schema.rs matches `diesel print-schema`.

/// Names diesel's `table!` macro reserves on top of Rust's keywords.
const RESERVED_NAMES: &[&str] = &["table", "columns", "is_nullable"];

/// What syn refuses as an identifier (diesel_cli asks syn): Rust's keywords, strict and reserved.
const KEYWORDS: &[&str] = &[
    "_", "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate", "do", "dyn",
    "else", "enum", "extern", "false", "final", "fn", "for", "if", "impl", "in", "let", "loop", "macro", "match",
    "mod", "move", "mut", "override", "priv", "pub", "ref", "return", "Self", "self", "static", "struct", "super",
    "trait", "true", "try", "type", "typeof", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// The Rust name for a table, column or schema: unmappable characters become `_`, and a
/// keyword, a reserved name or the table's own name gets a trailing `_`.
pub fn rust_name_for_sql_name(sql_name: &str, table_rust_name: Option<&str>) -> String {
    let name = replace_unmappable_chars(sql_name);
    if is_reserved_name(&name) || Some(name.as_str()) == table_rust_name { format!("{name}_") } else { name }
}

pub fn is_reserved_name(name: &str) -> bool {
    !is_identifier(name)
        || RESERVED_NAMES.contains(&name)
        // Names ending in `_` are never reserved, so appending one always works.
        || (name.starts_with("__") && !name.ends_with('_'))
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c == '_' || c.is_alphabetic());
    starts_well && chars.all(|c| c == '_' || c.is_alphanumeric()) && !KEYWORDS.contains(&name)
}

fn unmappable(c: char) -> bool {
    !(c.is_ascii_alphanumeric() || c == '_')
}

fn replace_unmappable_chars(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    let mut last_was_underscore = false;
    for (idx, c) in name.char_indices() {
        if idx == 0 && c.is_ascii_digit() {
            // Identifiers never start with a digit.
            out.push('_');
            last_was_underscore = true;
        }
        if unmappable(c) {
            if !last_was_underscore {
                out.push('_');
            }
            last_was_underscore = true;
        } else {
            // Before the first replacement diesel copies the name as is (`a__b` stays `a__b`).
            last_was_underscore = false;
            out.push(c);
        }
    }
    out
}

/// heck 0.5's `ToUpperCamelCase`: `my_enum` -> `MyEnum`, `int4` -> `Int4`, `XMLData` -> `XmlData`.
pub fn upper_camel_case(s: &str) -> String {
    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Boundary,
        Lowercase,
        Uppercase,
    }
    let mut out = String::new();
    let mut capitalize = |word: &str| {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            let rest = chars.as_str();
            let mut rest_chars = rest.chars().peekable();
            while let Some(c) = rest_chars.next() {
                if c == 'Σ' && rest_chars.peek().is_none() {
                    out.push('ς');
                } else {
                    out.extend(c.to_lowercase());
                }
            }
        }
    };
    for word in s.split(|c: char| !c.is_alphanumeric()) {
        let mut chars = word.char_indices().peekable();
        let (mut init, mut mode) = (0, Mode::Boundary);
        while let Some((i, c)) = chars.next() {
            let Some(&(next_i, next)) = chars.peek() else {
                capitalize(&word[init..]);
                break;
            };
            let next_mode = if c.is_lowercase() {
                Mode::Lowercase
            } else if c.is_uppercase() {
                Mode::Uppercase
            } else {
                mode
            };
            if next_mode == Mode::Lowercase && next.is_uppercase() {
                capitalize(&word[init..next_i]);
                init = next_i;
                mode = Mode::Boundary;
            } else if mode == Mode::Uppercase && c.is_uppercase() && next.is_lowercase() {
                capitalize(&word[init..i]);
                init = i;
                mode = Mode::Boundary;
            } else {
                mode = next_mode;
            }
        }
    }
    out
}

/// A Rust string literal for `input`, raw (`r#"..."#`) when it holds a quote, as diesel writes it.
pub fn escape_rust_string(input: &str) -> String {
    let quotes = input.chars().filter(|&c| c == '"').count();
    let hashes = input.chars().filter(|&c| c == '#').count();
    if quotes > 0 {
        let fence = "#".repeat(hashes + 1);
        format!("r{fence}\"{input}\"{fence}")
    } else {
        format!("\"{input}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_names_follow_diesel() {
        assert_eq!(rust_name_for_sql_name("type", None), "type_");
        assert_eq!(rust_name_for_sql_name("table", None), "table_");
        assert_eq!(rust_name_for_sql_name("Mixed Case", None), "Mixed_Case");
        assert_eq!(rust_name_for_sql_name("a--b", None), "a_b");
        assert_eq!(rust_name_for_sql_name("1st", None), "_1st");
        assert_eq!(rust_name_for_sql_name("__x", None), "__x_");
        assert_eq!(rust_name_for_sql_name("users", Some("users")), "users_");
        assert_eq!(rust_name_for_sql_name("a__b", None), "a__b");
        assert_eq!(rust_name_for_sql_name("a-__b", None), "a___b");
    }

    #[test]
    fn camel_case_follows_heck() {
        assert_eq!(upper_camel_case("int4"), "Int4");
        assert_eq!(upper_camel_case("my_enum"), "MyEnum");
        assert_eq!(upper_camel_case("XMLData"), "XmlData");
        assert_eq!(upper_camel_case("timestamptz"), "Timestamptz");
        assert_eq!(upper_camel_case("Mood Type"), "MoodType");
    }

    #[test]
    fn strings_with_quotes_are_raw() {
        assert_eq!(escape_rust_string("plain"), "\"plain\"");
        assert_eq!(escape_rust_string("a\"b#"), "r##\"a\"b#\"##");
    }
}
