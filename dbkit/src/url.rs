//! Database and Redis URLs: parsing with actionable errors, redaction, and where they point.

use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use url::Url;

/// What stands in for a password wherever a URL is shown.
pub const REDACTED: &str = "****";

/// Parses a `postgres://` / `postgresql://` URL, naming what is wrong without echoing the secret.
pub fn parse_database_url(raw: &str) -> Result<Url> {
    const FORM: &str = "\n  hint: the form is postgres://USER:PASSWORD@HOST:5432/DATABASE[?sslmode=require]; percent-encode special characters in the password";
    if raw.trim().is_empty() {
        bail!(
            hint!("the database URL is empty"; "start local Postgres with `cargo xtask up` (it writes .env), or set DATABASE_URL / pass --database-url")
        );
    }
    let url = Url::parse(raw.trim())
        .map_err(|e| anyhow::anyhow!("malformed database URL `{}`: {e}{FORM}", redact_unparsed(raw)))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        bail!(
            "database URL `{}` has scheme `{}`, expected postgres:// or postgresql://{FORM}",
            redact_unparsed(&redact(&url)),
            url.scheme()
        );
    }
    if url.host_str().is_none_or(str::is_empty) {
        bail!("database URL `{}` names no host{FORM}", redact_unparsed(&redact(&url)));
    }
    Ok(url)
}

/// The URL with its password replaced by `****`.
pub fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some(REDACTED));
    }
    for (key, _) in url.query_pairs() {
        if key == "password" || key == "sslpassword" {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "password" || k == "sslpassword" { REDACTED.into() } else { v.into_owned() };
                    (k.into_owned(), v)
                })
                .collect();
            shown.query_pairs_mut().clear().extend_pairs(pairs);
            break;
        }
    }
    shown.to_string()
}

/// Redacts every URL-looking password in free text (error messages of libpq, pg_dump, psql...).
pub fn redact_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let (head, tail) = rest.split_at(scheme_end + 3);
        out.push_str(head);
        let authority_end = tail.find(['/', '?', '#', ' ', '\n', '\'', '"', '`']).unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..=colon]);
                out.push_str(REDACTED);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// Hides the password of text that did not parse as a URL (`user:secret@host/db`, a scheme
/// typo...): everything between the user's `:` and the last `@`.
fn redact_unparsed(raw: &str) -> String {
    let raw = redact_str(raw);
    let Some(at) = raw.rfind('@') else { return raw };
    let start = raw[..at].find("://").map_or(0, |i| i + 3);
    match raw[start..at].find(':') {
        Some(colon) => format!("{}{REDACTED}{}", &raw[..start + colon + 1], &raw[at..]),
        None => raw,
    }
}

/// The database name in the URL's path (`postgres` when none is given, as libpq does with the user).
pub fn database_name(url: &Url) -> String {
    let name = url.path().trim_start_matches('/');
    if name.is_empty() { url.username().to_string() } else { percent_decode(name) }
}

/// True when the URL's host is this machine: localhost, 127.0.0.0/8, ::1 or a Unix socket.
pub fn is_local(url: &Url) -> bool {
    if url.query_pairs().any(|(k, v)| k == "host" && v.starts_with('/')) {
        return true;
    }
    match url.host() {
        // postgres:// is not a "special" scheme to the url crate: an IPv4 address arrives as a domain.
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => true,
    }
}

/// The `sslmode` query parameter, if any.
pub fn sslmode(url: &Url) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == "sslmode").map(|(_, v)| v.into_owned())
}

/// libpq environment for external programs (pg_dump, psql): the password travels in
/// `PGPASSWORD`, never on a command line another user could read with `ps`.
pub fn libpq_env(url: &Url) -> Result<(String, Vec<(&'static str, String)>)> {
    let mut without_password = url.clone();
    without_password.set_password(None).ok().context("this URL cannot carry a password")?;
    let mut env = Vec::new();
    if let Some(password) = url.password() {
        env.push(("PGPASSWORD", percent_decode(password)));
    }
    Ok((without_password.to_string(), env))
}

pub(crate) fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_everywhere() {
        let url = parse_database_url("postgres://app:s3cr%40t@db.example.com:5432/rail?sslmode=require").unwrap();
        let shown = redact(&url);
        assert_eq!(shown, "postgres://app:****@db.example.com:5432/rail?sslmode=require");
        let text = "could not connect to postgresql://app:hunter2@10.0.0.1/x and redis://:pw@localhost:6379/0";
        let shown = redact_str(text);
        assert!(!shown.contains("hunter2") && !shown.contains(":pw@"), "{shown}");
        assert!(shown.contains("postgresql://app:****@10.0.0.1/x"));
    }

    #[test]
    fn malformed_url_error_hides_the_password() {
        let err = parse_database_url("postgres://app:topsecret@host:99999/db").unwrap_err().to_string();
        assert!(!err.contains("topsecret"), "{err}");
        assert!(err.contains("malformed database URL"));
    }

    #[test]
    fn unparsable_url_error_hides_the_password() {
        for raw in
            ["railgun:topsecret@localhost/db", "postgres//app:topsecret@h/db", "postgres://app:top secret@h:99999/d"]
        {
            let err = parse_database_url(raw).unwrap_err().to_string();
            assert!(!err.contains("topsecret") && !err.contains("top secret"), "{err}");
        }
    }

    #[test]
    fn locality() {
        for local in ["postgres://a@localhost/x", "postgres://a@127.0.0.9/x", "postgres://a@[::1]/x"] {
            assert!(is_local(&parse_database_url(local).unwrap()), "{local}");
        }
        assert!(!is_local(&parse_database_url("postgres://a@db.supabase.co/x").unwrap()));
    }

    #[test]
    fn password_goes_to_the_environment() {
        let url = parse_database_url("postgres://app:p%40ss@localhost/db").unwrap();
        let (conninfo, env) = libpq_env(&url).unwrap();
        assert_eq!(conninfo, "postgres://app@localhost/db");
        assert_eq!(env, vec![("PGPASSWORD", "p@ss".to_string())]);
    }
}
