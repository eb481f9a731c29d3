//! Errors that say how to fix them. A hint is a value the error carries ([`Hinted`], or the
//! connection error's [`Failure`](crate::connect::Failure)), found by [`hint_of`]: never text
//! split back out of a message.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// An error message and the fix for it, shown as `hint:` after the whole chain.
#[derive(Debug)]
pub struct Hinted {
    pub message: String,
    pub hint: String,
}

impl Hinted {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Hinted {
        Hinted { message: message.into(), hint: hint.into() }
    }
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Hinted {}

/// `hint!("message {}", arg; "fix {}", arg)`: a [`Hinted`], for `bail!`, `anyhow!` and `.with_context`.
#[macro_export]
macro_rules! hint {
    ($message:literal $(, $arg:expr)* $(,)? ; $hint:literal $(, $hint_arg:expr)* $(,)?) => {
        $crate::error::Hinted::new(format!($message $(, $arg)*), format!($hint $(, $hint_arg)*))
    };
}

/// Every fix the error carries, outermost first: [`Hinted`] contexts and causes, the connection
/// error's, and the guide's fix for an external program's words (pg_dump, psql).
pub fn hints_of(error: &anyhow::Error) -> Vec<String> {
    let mut hints: Vec<String> = Vec::new();
    let add = |hints: &mut Vec<String>, hint: &str| {
        if !hints.iter().any(|h| h == hint) {
            hints.push(hint.to_string());
        }
    };
    if let Some(hinted) = error.downcast_ref::<Hinted>() {
        add(&mut hints, &hinted.hint);
    }
    for cause in error.chain() {
        if let Some(hinted) = cause.downcast_ref::<Hinted>() {
            add(&mut hints, &hinted.hint);
        }
        if let Some(failed) = cause.downcast_ref::<crate::connect::ConnectError>()
            && let Some(hint) = failed.failure.hint()
        {
            add(&mut hints, hint);
        }
    }
    if let Some(failed) = error.downcast_ref::<crate::connect::ConnectError>()
        && let Some(hint) = failed.failure.hint()
    {
        add(&mut hints, hint);
    }
    if hints.is_empty() {
        let text = format!("{error:#}");
        if let Some(fix) = crate::connect::known_fix(&text) {
            add(&mut hints, fix);
        }
    }
    hints
}

/// The first fix the error carries, if any.
pub fn hint_of(error: &anyhow::Error) -> Option<String> {
    hints_of(error).into_iter().next()
}

/// `text` with every control character written out: `\x1b` for C0 controls (ESC, newline, ...)
/// and DEL, `\u{9b}` for C1 controls and the bidirectional overrides. A file or migration name
/// comes from disk: printed as it is, it could recolour or clear the terminal, move the cursor,
/// or forge a line of output.
pub fn escaped(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// [`escaped`], keeping newlines and tabs: for whole messages, whose lines are ours.
fn escape(text: &str, keep_lines: bool) -> Cow<'_, str> {
    let kept = |c: char| keep_lines && matches!(c, '\n' | '\t');
    let unsafe_char = |c: char| (c.is_control() && !kept(c)) || is_bidi_control(c);
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !unsafe_char(c) => out.push(c),
            c if c.is_ascii() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// Characters that reorder what the terminal shows (the "Trojan Source" ones).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The error as a user reads it: `error: ...`, each cause, then the hints; every URL's
/// password redacted, every control character but newlines and tabs escaped (a name from disk
/// may hold them).
pub fn render(error: &anyhow::Error) -> String {
    let mut text = format!("error: {error}");
    for cause in error.chain().skip(1) {
        text.push_str(&format!("\n  caused by: {cause}"));
    }
    for hint in hints_of(error) {
        text.push_str(&format!("\n  hint: {hint}"));
    }
    escape(&crate::url::redact_str(&text), true).into_owned()
}

/// The error on one line group without the `error:` prefix (message, causes, hints), for
/// messages that embed another's failure.
pub fn describe(error: &anyhow::Error) -> String {
    let mut text = format!("{error:#}");
    for hint in hints_of(error) {
        text.push_str(&format!("\n  hint: {hint}"));
    }
    escape(&crate::url::redact_str(&text), true).into_owned()
}

#[cfg(test)]
mod tests {
    use anyhow::{Context, anyhow};

    use super::*;

    #[test]
    fn hints_are_found_through_contexts_and_shown_last() {
        let inner: anyhow::Error = anyhow!(hint!("disk {} full", "/x"; "free {} MB", 5));
        let outer = Err::<(), _>(inner).context("write the backup").unwrap_err();
        assert_eq!(hint_of(&outer).as_deref(), Some("free 5 MB"));
        assert_eq!(render(&outer), "error: write the backup\n  caused by: disk /x full\n  hint: free 5 MB");
        let as_context = Err::<(), _>(anyhow!("boom")).with_context(|| hint!("read a"; "fix a")).unwrap_err();
        assert_eq!(hints_of(&as_context), ["fix a"]);
    }

    #[test]
    fn control_characters_are_written_out() {
        assert_eq!(escaped("2026_add_users"), "2026_add_users");
        assert_eq!(
            escaped("red\x1b[31m\nline\r\x7f\u{9b}2J\u{202e}é"),
            "red\\x1b[31m\\x0aline\\x0d\\x7f\\u{9b}2J\\u{202e}é"
        );
        let error = anyhow!("read /tmp/a\x1b]0;pwned\x07b");
        assert_eq!(
            render(&error.context("line one\n\tline two")),
            "error: line one\n\tline two\n  caused by: read /tmp/a\\x1b]0;pwned\\x07b"
        );
    }
}
