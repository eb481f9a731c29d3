//! Database and Redis URLs: parsing with actionable errors, redaction, and where they point.

use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use url::Url;

/// What stands in for a password wherever a URL is shown.
pub const REDACTED: &str = "****";

/// Postgres's longest identifier (NAMEDATALEN - 1 bytes): a longer one is cut, with only a NOTICE.
pub const MAX_IDENTIFIER: usize = 63;

/// The form every message about a bad URL ends with.
const FORM: &str = "the form is postgres://USER:PASSWORD@HOST:5432/DATABASE[?sslmode=require]; percent-encode special characters in the user and password (@ %40, : %3A, / %2F, # %23, ? %3F, % %25)";

/// Parses a `postgres://` / `postgresql://` URL. When it is wrong, says which part is (scheme,
/// host, port, a character the password needs percent-encoded) and never shows the text: it
/// may hold a password.
pub fn parse_database_url(raw: &str) -> Result<Url> {
    let raw = raw.trim();
    if raw.is_empty() {
        bail!(
            hint!("the database URL is empty"; "start local Postgres with `cargo xtask up` (it writes .env), or set DATABASE_URL / pass --database-url")
        );
    }
    let bad = |what: String| -> anyhow::Error {
        anyhow::Error::new(crate::error::Hinted::new(format!("malformed database URL: it {what}"), FORM))
    };
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err(bad("has no scheme: expected postgres:// or postgresql://".into()));
    };
    if !matches!(scheme, "postgres" | "postgresql") {
        let shown = if scheme.len() <= 16 && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b)) {
            format!("`{scheme}`")
        } else {
            "that is not a scheme".into()
        };
        return Err(bad(format!("has scheme {shown}, expected postgres:// or postgresql://")));
    }
    // Where the authority (user, password, host, port) would end if the password were encoded.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    if !authority.contains('@') && after.contains('@') {
        let cut = after.chars().next().unwrap_or('/');
        return Err(bad(format!(
            "has an `@` after its host part: the password holds an unencoded `{cut}` (write it as {})",
            encoded(cut)
        )));
    }
    if let Some(at) = authority.rfind('@') {
        let userinfo = &authority[..at];
        if userinfo.contains('@') {
            return Err(bad("has two `@`: the user or password holds an unencoded `@` (write it as %40)".into()));
        }
        if let Some(bad_percent) = bad_percent(userinfo) {
            return Err(bad(format!("has {bad_percent} in its user or password (write a literal `%` as %25)")));
        }
    }
    let url = Url::parse(raw).map_err(|e| bad(format!("does not parse ({e})")))?;
    if url.host_str().is_none_or(str::is_empty) && !url.query_pairs().any(|(k, _)| k == "host") {
        return Err(bad("names no host (postgres://USER@HOST/DATABASE, or ?host=/path/to/socket/dir)".into()));
    }
    // Postgres cuts a longer name to 63 bytes with no error: the URL would name one database and
    // every command act on another (the one whose name is the cut), maybe someone else's.
    let database = database_name(&url);
    if database.len() > MAX_IDENTIFIER {
        bail!(hint!(
            "the database URL names a database of {} bytes: Postgres keeps {MAX_IDENTIFIER} and would use the name cut there, which may be another database",
            database.len()
        ; "use a database name of at most {MAX_IDENTIFIER} bytes"));
    }
    Ok(url)
}

/// How `c` is written inside a URL's password.
fn encoded(c: char) -> String {
    let mut buf = [0u8; 4];
    c.encode_utf8(&mut buf).bytes().map(|b| format!("%{b:02X}")).collect()
}

/// A `%` not followed by two hex digits, described (without the text around it).
fn bad_percent(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(i + 2 < bytes.len() + 1
                && bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)))
        {
            return Some("a `%` that is not followed by two hex digits".into());
        }
    }
    None
}

/// The URL with its password replaced by `****`.
pub fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some(REDACTED));
    }
    for (key, _) in url.query_pairs() {
        if SECRET_PARAMS.contains(&key.as_ref()) {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if SECRET_PARAMS.contains(&k.as_ref()) { REDACTED.into() } else { v.into_owned() };
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
            // The placeholder in the hints' `postgres://USER:PASSWORD@HOST` is not a secret.
            (Some(at), Some(colon)) if colon < at && &authority[colon + 1..at] != "PASSWORD" => {
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

/// The database name in the URL's path (`postgres` when none is given, as libpq does with the user).
pub fn database_name(url: &Url) -> String {
    let name = url.path().trim_start_matches('/');
    if name.is_empty() { url.username().to_string() } else { percent_decode(name) }
}

/// True when every host the URL names is this machine (see [`remote_hosts`]).
pub fn is_local(url: &Url) -> bool {
    remote_hosts(url).is_empty()
}

/// The hosts the URL names that are not this machine, as libpq reads a URL: the authority's
/// comma-separated `host[:port]` list, `?host=` (a list too; a value starting with `/` or `@`
/// is a Unix socket), `?hostaddr=` (addresses libpq connects to instead of resolving the
/// host), and, for what the URL leaves out, `PGHOST`, `PGHOSTADDR` and `PGSERVICE`. A service
/// names hosts in pg_service.conf, which is not read here: it counts as remote. Local are
/// localhost, loopback addresses and sockets (an empty entry is libpq's default, the socket).
pub fn remote_hosts(url: &Url) -> Vec<String> {
    remote_hosts_with(url, &|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
}

/// [`remote_hosts`] with libpq's environment read from `env`.
pub fn remote_hosts_with(url: &Url, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let query = |key: &str| -> Vec<String> {
        url.query_pairs().filter(|(k, _)| k == key).map(|(_, v)| v.into_owned()).collect()
    };
    let list = |values: Vec<String>| -> Vec<String> {
        values.iter().flat_map(|v| v.split(',').map(|h| h.trim().to_string())).collect()
    };
    let (authority_hosts, host_params) = (authority_hosts(url), query("host"));
    let mut hosts = authority_hosts.clone();
    hosts.extend(list(host_params.clone()));
    if authority_hosts.iter().all(String::is_empty) && host_params.is_empty() {
        hosts.extend(list(env("PGHOST").into_iter().collect()));
    }
    let mut addresses = list(query("hostaddr"));
    if addresses.is_empty() {
        addresses = list(env("PGHOSTADDR").into_iter().collect());
    }
    let mut remote: Vec<String> = hosts.into_iter().filter(|h| !is_local_host(h)).collect();
    remote.extend(addresses.into_iter().filter(|a| !a.is_empty() && !is_loopback(a)));
    let service = query("service").into_iter().last().or_else(|| env("PGSERVICE"));
    remote.extend(service.map(|name| format!("service {name}")));
    remote.dedup();
    remote
}

/// The hosts of the URL's authority (`user@h1,h2:5433,[::1]:5434`), percent-decoded, without
/// their ports; one empty entry when it names none.
fn authority_hosts(url: &Url) -> Vec<String> {
    let text = url.as_str();
    let rest = text.split_once("://").map_or(text, |(_, rest)| rest);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let hostspec = authority.rsplit_once('@').map_or(authority, |(_, hosts)| hosts);
    hostspec
        .split(',')
        .map(|entry| match entry.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default().to_string(),
            None => percent_decode(entry.split(':').next().unwrap_or_default()),
        })
        .collect()
}

/// localhost, a loopback address, a Unix socket's directory (`/...`) or abstract name (`@...`),
/// or nothing (libpq's default socket).
fn is_local_host(host: &str) -> bool {
    host.is_empty()
        || host.starts_with('/')
        || host.starts_with('@')
        || host.eq_ignore_ascii_case("localhost")
        || is_loopback(host)
}

fn is_loopback(address: &str) -> bool {
    address.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The `sslmode` query parameter, if any.
pub fn sslmode(url: &Url) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == "sslmode").map(|(_, v)| v.into_owned())
}

/// libpq's connection parameters that hold a secret: they never reach a command line (`ps`
/// shows every process's to every user) nor a message.
pub const SECRET_PARAMS: &[&str] = &["password", "sslpassword", "oauth_client_secret"];

/// How an external libpq program (pg_dump, psql, pgbench) reaches the URL's database: the URL
/// without its secrets, for its command line; the password for `PGPASSWORD`; and the secrets
/// libpq reads from no environment variable (`sslpassword`, `oauth_client_secret`), which the
/// caller hands over in a connection service file (see `backup::pgtools`).
#[derive(Debug)]
pub struct LibpqTarget {
    pub conninfo: String,
    pub env: Vec<(&'static str, String)>,
    pub secrets: Vec<(String, String)>,
}

/// Splits `url` into a [`LibpqTarget`]: the user-info password, else the last `?password=`,
/// goes to `PGPASSWORD`; every other secret parameter to `secrets`; the query keeps everything
/// else, in order.
pub fn libpq_target(url: &Url) -> Result<LibpqTarget> {
    let mut conninfo = url.clone();
    if url.password().is_some() {
        conninfo.set_password(None).ok().context("this URL cannot carry a password")?;
    }
    let mut env = Vec::new();
    if let Some(password) = url.password() {
        env.push(("PGPASSWORD", percent_decode(password)));
    }
    let mut secrets: Vec<(String, String)> = Vec::new();
    if url.query_pairs().any(|(k, _)| SECRET_PARAMS.contains(&k.as_ref())) {
        let (secret, rest): (Vec<_>, Vec<_>) =
            url.query_pairs().into_owned().partition(|(k, _)| SECRET_PARAMS.contains(&k.as_str()));
        for (key, value) in secret {
            match key.as_str() {
                "password" if url.password().is_none() => {
                    env.retain(|(k, _)| *k != "PGPASSWORD");
                    env.push(("PGPASSWORD", value));
                }
                "password" => {}
                _ => {
                    secrets.retain(|(k, _)| *k != key);
                    secrets.push((key, value));
                }
            }
        }
        conninfo.set_query(None);
        if !rest.is_empty() {
            conninfo.query_pairs_mut().extend_pairs(rest);
        }
    }
    Ok(LibpqTarget { conninfo: conninfo.to_string(), env, secrets })
}

/// libpq environment for external programs: the password travels in `PGPASSWORD`, never on a
/// command line. A URL with another secret parameter is refused (it would need
/// [`libpq_target`]'s service file).
pub fn libpq_env(url: &Url) -> Result<(String, Vec<(&'static str, String)>)> {
    let target = libpq_target(url)?;
    if !target.secrets.is_empty() {
        let keys: Vec<&str> = target.secrets.iter().map(|(k, _)| k.as_str()).collect();
        let keys = keys.join(", ");
        bail!(
            hint!("the URL's {keys} would reach this command's tool on its command line: refused"; "remove {keys} from the URL for this command (an SSL key without a passphrase, or the secret in a pg_service.conf entry named with ?service=)")
        );
    }
    Ok((target.conninfo, target.env))
}

pub(crate) fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
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
    fn a_database_name_postgres_would_cut_is_refused() {
        let long = "d".repeat(64);
        let e = parse_database_url(&format!("postgres://app:hunter2@localhost/{long}")).unwrap_err();
        let text = crate::error::describe(&e);
        assert!(text.contains("64 bytes") && text.contains("at most 63"), "{text}");
        assert!(!text.contains("hunter2") && !text.contains(&long), "{text}");
        parse_database_url(&format!("postgres://app@localhost/{}", "d".repeat(63))).unwrap();
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
    fn a_bad_url_says_which_part_is_wrong_and_never_shows_itself() {
        for (raw, says) in [
            ("postgres://adv:2024/Summer!@host/db", "unencoded `/`"),
            ("postgres://adv:pa?ss@host/db", "unencoded `?`"),
            ("postgres://adv:pa#ss@host/db", "unencoded `#`"),
            ("postgres://adv:p@ss@host/db", "two `@`"),
            ("postgres://adv:50%offSale@host/db", "a `%` that is not followed by two hex digits"),
            ("mysql://adv:Summer2024@host/db", "has scheme `mysql`"),
            ("adv:Summer2024@host/db", "has no scheme"),
            ("postgres://adv:Summer2024@host:99999/db", "does not parse (invalid port number)"),
            ("postgres://adv:Summer2024@/db", "host"),
        ] {
            let err = parse_database_url(raw).unwrap_err();
            let text = crate::error::describe(&err);
            assert!(text.contains(says), "{raw}: {text}");
            for secret in ["Summer", "2024", "50%off", "offSale", "pa?ss", "pa#ss", "p@ss"] {
                assert!(!text.contains(secret), "{raw} leaks `{secret}`: {text}");
            }
            assert!(text.contains("percent-encode"), "{text}");
        }
        assert!(parse_database_url("postgres://adv:p%40ss%2F@host/db").is_ok());
        assert!(parse_database_url("postgres:///db?host=/var/run/postgresql").is_ok());
    }

    #[test]
    fn a_query_password_goes_to_the_environment_too() {
        let url = parse_database_url("postgres://app@localhost/db?sslmode=disable&password=s3cret&application_name=x")
            .unwrap();
        let (conninfo, env) = libpq_env(&url).unwrap();
        assert_eq!(conninfo, "postgres://app@localhost/db?sslmode=disable&application_name=x");
        assert_eq!(env, vec![("PGPASSWORD", "s3cret".to_string())]);
    }

    #[test]
    fn unix_sockets_are_local() {
        for local in ["postgres://u@%2Fvar%2Frun%2Fpostgresql:5432/db", "postgres:///db?host=/var/run/postgresql"] {
            assert!(is_local(&parse_database_url(local).unwrap()), "{local}");
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
    fn every_secret_parameter_leaves_the_conninfo() {
        let url = parse_database_url(
            "postgres://app@db.example.com/db?sslmode=require&sslpassword=k3y&password=pw&oauth_client_secret=c&sslpassword=k4y&application_name=x",
        )
        .unwrap();
        let target = libpq_target(&url).unwrap();
        assert_eq!(target.conninfo, "postgres://app@db.example.com/db?sslmode=require&application_name=x");
        assert_eq!(target.env, vec![("PGPASSWORD", "pw".to_string())]);
        assert_eq!(
            target.secrets,
            vec![("oauth_client_secret".to_string(), "c".to_string()), ("sslpassword".to_string(), "k4y".to_string())]
        );
        assert!(!redact(&url).contains("k3y") && !redact(&url).contains("k4y") && !redact(&url).contains("=c&"));
        assert!(crate::error::describe(&libpq_env(&url).unwrap_err()).contains("sslpassword"));
    }

    #[test]
    fn password_goes_to_the_environment() {
        let url = parse_database_url("postgres://app:p%40ss@localhost/db").unwrap();
        let (conninfo, env) = libpq_env(&url).unwrap();
        assert_eq!(conninfo, "postgres://app@localhost/db");
        assert_eq!(env, vec![("PGPASSWORD", "p@ss".to_string())]);
    }
}
