//! Reading and updating `.env` without losing a line the user wrote.

use std::path::Path;

use anyhow::{Context, Result};

/// The value of `key` in the env file, if the file and the key exist. A line that does not
/// parse is named by its number, never shown: it may hold a password.
pub fn get(path: &Path, key: &str) -> Result<Option<String>> {
    let Some(text) = read(path)? else { return Ok(None) };
    // Editors on Windows start files with a byte-order mark; it is not part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        let (k, v) = item.map_err(|e| unparsable(path, text, e))?;
        if k == key {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// The file's text, `None` when there is none. Anything but a regular file (a symlink to one is
/// fine) is refused before it is opened: every command reads `.env`, and a FIFO would block each
/// one until something writes to it, a device could be read without end.
fn read(path: &Path) -> Result<Option<String>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("read {}", shown(path))),
    };
    refuse_unless_regular(path, &metadata)?;
    // Opened without blocking and looked at again: a FIFO put in its place meanwhile neither
    // hangs the open nor is read.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("read {}", shown(path)))?;
    refuse_unless_regular(path, &file.metadata().with_context(|| format!("read {}", shown(path)))?)?;
    let mut text = String::new();
    file.read_to_string(&mut text).with_context(|| format!("read {}", shown(path)))?;
    Ok(Some(text))
}

fn refuse_unless_regular(path: &Path, metadata: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    let what = match () {
        _ if kind.is_file() => return Ok(()),
        _ if kind.is_dir() => "a directory",
        _ if kind.is_fifo() => "a FIFO (named pipe): reading it would wait for a writer",
        _ if kind.is_socket() => "a socket",
        _ if kind.is_char_device() => "a character device",
        _ if kind.is_block_device() => "a block device",
        _ => "of an unknown kind",
    };
    anyhow::bail!(hint!("{} is {what}, not a regular file: refused as the settings file", shown(path);
        "replace it with a regular file of KEY=value lines (`cargo xtask up` writes one where none is), or point RAILGUN_ENV_FILE at one"))
}

/// A path for messages, control characters escaped.
fn shown(path: &Path) -> String {
    crate::error::escaped(&path.display().to_string()).into_owned()
}

/// dotenvy's error quotes the line: say where it is instead.
fn unparsable(path: &Path, text: &str, error: dotenvy::Error) -> anyhow::Error {
    let line = match &error {
        dotenvy::Error::LineParse(content, _) => {
            text.lines().position(|l| l == content || l.contains(content.as_str()))
        }
        _ => None,
    };
    let at = line.map(|n| format!(" line {}", n + 1)).unwrap_or_default();
    anyhow::Error::new(
        hint!("{}{at} does not parse as KEY=value (its text is not shown: it may hold a password)", shown(path);
        "one KEY=value a line; quote values with spaces or #: KEY=\"two words\"; percent-encode special characters inside URLs"),
    )
}

/// Sets `key=value` for each pair: replaces the line that sets it, or appends one. Every
/// other line, comments and blank lines included, stays as it was. Creates the file from
/// `template` when it is missing. The file is written whole, then renamed over the old one.
pub fn set(path: &Path, template: Option<&Path>, pairs: &[(&str, &str)]) -> Result<()> {
    let original = match read(path)? {
        Some(text) => text,
        None => match template {
            Some(t) if t.exists() => read(t)?.unwrap_or_default(),
            _ => String::new(),
        },
    };
    let updated = update(&original, pairs);
    if updated == original && path.exists() {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    write_private(&tmp, &updated)?;
    std::fs::rename(&tmp, path).with_context(|| format!("replace {}", shown(path)))
}

fn update(text: &str, pairs: &[(&str, &str)]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for (key, value) in pairs {
        let line = format!("{key}={}", quoted(value));
        let sets_key = |l: &String| {
            let l = l.trim_start();
            let l = l.strip_prefix("export ").unwrap_or(l).trim_start();
            l.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='))
        };
        match lines.iter().position(sets_key) {
            Some(i) => lines[i] = line,
            None => lines.push(line),
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// `value` as dotenv reads it back unchanged: as it is when plain (every URL and password the
/// tools write), else single-quoted (literal), else double-quoted with `\`, `"` and `$` escaped.
/// A value from elsewhere (a git branch may be named `it's$HOME#x`) never breaks the file or
/// expands into something else.
fn quoted(value: &str) -> std::borrow::Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:@%+=,~?&!*()[]{}^|;<>".contains(c);
    if value.chars().all(plain) {
        return value.into();
    }
    if !value.contains('\'') && !value.contains('\n') {
        return format!("'{value}'").into();
    }
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$").replace('\n', "\\n");
    format!("\"{escaped}\"").into()
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", shown(path)))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::update;

    #[test]
    fn keeps_every_other_line() {
        let text = "# mine\nAPP_ENV=development\nexport DATABASE_URL=old\n\nOTHER=1";
        let out = update(text, &[("DATABASE_URL", "new"), ("REDIS_URL", "r")]);
        assert_eq!(out, "# mine\nAPP_ENV=development\nDATABASE_URL=new\n\nOTHER=1\nREDIS_URL=r\n");
    }

    #[test]
    fn comments_out_by_key() {
        let out = update(
            "DATABASE_URL=postgres://a:b@db.example.com/x\n",
            &[("#DATABASE_URL", "postgres://a:b@db.example.com/x")],
        );
        assert_eq!(
            out,
            "DATABASE_URL=postgres://a:b@db.example.com/x\n#DATABASE_URL=postgres://a:b@db.example.com/x\n"
        );
    }

    #[test]
    fn values_read_back_as_written() {
        for value in [
            "postgres://u:p%40ss@127.0.0.1:5432/db?sslmode=disable",
            "we\"ird",
            "it's$HOME#x",
            "a b",
            "back\\slash",
            "both'\"$x",
            "",
            "l\nine",
        ] {
            let text = update("", &[("K", value)]);
            let read: Vec<(String, String)> = dotenvy::from_read_iter(text.as_bytes()).map(|r| r.unwrap()).collect();
            assert_eq!(read, [("K".to_string(), value.to_string())], "{text}");
        }
        assert_eq!(update("", &[("K", "postgres://u:p@h/db")]), "K=postgres://u:p@h/db\n", "plain stays plain");
    }

    #[test]
    fn does_not_confuse_prefixes() {
        let out = update("DATABASE_URL_RO=x\n", &[("DATABASE_URL", "y")]);
        assert_eq!(out, "DATABASE_URL_RO=x\nDATABASE_URL=y\n");
    }
}
