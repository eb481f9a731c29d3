//! Personal data told by its values: a text column whose name says nothing (`contact`, `note`,
//! `ref`) but whose sampled values mostly look like emails, phone numbers, IP addresses or
//! tokens. The sample is bounded (the first [`SAMPLE`] rows of each table, read in the copy's
//! read-only snapshot), classified in memory and dropped: never written, never printed.

use std::net::IpAddr;

use super::mask::Rule;

/// Rows read per table.
pub const SAMPLE: usize = 200;

/// The share of a column's non-empty sampled values that must look alike.
const MOSTLY: f64 = 0.8;

/// What a value looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Email,
    Phone,
    Ip,
    Token,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Email, Kind::Phone, Kind::Ip, Kind::Token];

    /// The rule to suggest for a column of such values.
    pub fn rule(self) -> Rule {
        match self {
            Kind::Email => Rule::Email,
            Kind::Phone => Rule::Phone,
            Kind::Ip => Rule::Null,
            Kind::Token => Rule::Hash,
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Kind::Email => "emails",
            Kind::Phone => "phone numbers",
            Kind::Ip => "IP addresses",
            Kind::Token => "tokens",
        }
    }

    fn matches(self, value: &str) -> bool {
        match self {
            Kind::Email => is_email(value),
            Kind::Phone => is_phone(value),
            Kind::Ip => is_ip(value),
            Kind::Token => is_token(value),
        }
    }
}

/// The column types whose values are sampled.
pub fn is_text_type(type_name: &str) -> bool {
    matches!(type_name, "text" | "varchar" | "bpchar" | "citext")
}

/// What most of `values` (NULLs and empty strings left out) look like, if anything does.
pub fn classify<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Kind> {
    let values: Vec<&str> = values.into_iter().map(str::trim).filter(|v| !v.is_empty()).collect();
    if values.is_empty() {
        return None;
    }
    Kind::ALL.into_iter().find(|kind| {
        let hits = values.iter().filter(|v| kind.matches(v)).count();
        hits as f64 >= MOSTLY * values.len() as f64
    })
}

/// `local@domain.tld`: one `@`, no spaces, a dot in the domain.
pub fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else { return false };
    let allowed = |c: char| !c.is_whitespace() && !matches!(c, '@' | '<' | '>' | ',' | ';' | '"' | '(' | ')');
    value.len() <= 254
        && !local.is_empty()
        && local.chars().all(allowed)
        && domain.chars().all(|c| c.is_alphanumeric() || c == '.' || c == '-')
        && domain.split('.').count() >= 2
        && domain.split('.').all(|label| !label.is_empty())
}

/// 7 to 15 digits in the characters phone numbers are written with, starting with `+` or `(`, or
/// in at least three groups (`030 1234 5678`, `555-123-4567`); not a date or a time.
pub fn is_phone(value: &str) -> bool {
    if !value.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.')) {
        return false;
    }
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let groups: Vec<&str> = value.split(|c: char| !c.is_ascii_digit()).filter(|g| !g.is_empty()).collect();
    let date = groups.len() == 3
        && ((groups[0].len() == 4 && groups[1].len() <= 2 && groups[2].len() <= 2)
            || (groups[0].len() <= 2 && groups[1].len() <= 2 && groups[2].len() == 4));
    (7..=15).contains(&digits)
        && value.matches('+').count() <= 1
        && (value.starts_with('+') || value.starts_with('(') || groups.len() >= 3)
        && !date
}

/// An IPv4 or IPv6 address, with or without a prefix length (`10.0.0.0/8`).
pub fn is_ip(value: &str) -> bool {
    let address = value.split_once('/').map_or(value, |(address, prefix)| match prefix.parse::<u8>() {
        Ok(_) => address,
        Err(_) => "",
    });
    address.parse::<IpAddr>().is_ok()
}

/// A secret-looking string: a JWT (`eyJ...` in three parts), 32 or more hex digits, or 20 or more
/// characters of base64url with upper case, lower case and digits (`sk_live_4eC39HqLyjWDarjtT1zdp7dc`).
/// UUIDs are identifiers, not tokens.
pub fn is_token(value: &str) -> bool {
    let base64url = |v: &str| v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if value.starts_with("eyJ")
        && value.split('.').count() == 3
        && value.split('.').all(|p| !p.is_empty() && base64url(p))
    {
        return true;
    }
    if value.len() < 20 || value.len() > 4096 || !base64url(value) || is_uuid(value) {
        return false;
    }
    let hex = value.chars().all(|c| c.is_ascii_hexdigit());
    let mixed = value.chars().any(|c| c.is_ascii_uppercase())
        && value.chars().any(|c| c.is_ascii_lowercase())
        && value.chars().any(|c| c.is_ascii_digit());
    (hex && value.len() >= 32) || mixed
}

fn is_uuid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for yes in ["ada@example.com", "a.b+tag@mail.co.uk", "person12@mail3.test", "x@y.z"] {
            assert!(is_email(yes), "{yes}");
        }
        for no in ["@example.com", "ada@", "ada@localhost", "ada at example.com", "a@b..c", "Ada <ada@x.com>", "free"] {
            assert!(!is_email(no), "{no}");
        }
    }

    #[test]
    fn phones() {
        for yes in ["+44 20 7946 0018", "+15551234567", "(030) 1234-5678", "555-123-4567", "06 12 34 56 78"] {
            assert!(is_phone(yes), "{yes}");
        }
        for no in ["2024-05-01", "01.05.2024", "12345678", "555-1234", "12:30:00", "+1", "1.5", "42", "1 2 3"] {
            assert!(!is_phone(no), "{no}");
        }
    }

    #[test]
    fn ip_addresses() {
        for yes in ["192.168.1.20", "10.0.0.0/8", "::1", "2001:db8::ff00:42:8329", "fe80::1/64"] {
            assert!(is_ip(yes), "{yes}");
        }
        for no in ["192.168.1", "1.2.3.4.5", "10.0.0.0/x", "localhost", "1.5", "300.1.1.1"] {
            assert!(!is_ip(no), "{no}");
        }
    }

    #[test]
    fn tokens() {
        for yes in [
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        ] {
            assert!(is_token(yes), "{yes}");
        }
        for no in [
            "550e8400-e29b-41d4-a716-446655440000",
            "order_confirmation_email",
            "deadbeef",
            "a perfectly ordinary sentence of text",
            "uploads/2024/05/Photo123.png",
            "ORDER-2024-000123",
        ] {
            assert!(!is_token(no), "{no}");
        }
    }

    #[test]
    fn a_column_is_what_most_of_its_values_are() {
        let emails = ["ada@example.com", "grace@example.org", "alan@example.net", "", "linus@example.fi", "x@y.z"];
        assert_eq!(classify(emails), Some(Kind::Email));
        assert_eq!(classify(["ada@example.com", "call me", "later", "no"]), None);
        assert_eq!(classify(["10.0.0.1", "10.0.0.2", "::1", "192.168.0.1", "2001:db8::1"]), Some(Kind::Ip));
        assert_eq!(classify(["+44 20 7946 0001", "+44 20 7946 0002"]), Some(Kind::Phone));
        assert_eq!(classify(["paid", "open", "shipped"]), None);
        assert_eq!(classify(["", " "]), None);
        assert_eq!(Kind::Email.rule(), Rule::Email);
    }
}
