//! The two ends of a backup's SQL: pg_dump's header first, and last its completion marker,
//! its closing lines and the manifest line `db backup` appends ([`Tail`]).

use anyhow::{Result, anyhow, bail};

use super::{HEADER, MARKER};
use crate::backup::manifest::{self, Manifest};

/// pg_dump's header, at the start of the SQL (`head`: its first bytes).
pub(in crate::backup) fn check_header(head: &[u8]) -> Result<()> {
    if !head.starts_with(HEADER) {
        bail!(
            hint!("it is gzip, but not a pg_dump SQL dump (no `-- PostgreSQL database dump` header)"; "restore only files written by `cargo xtask db backup` or `pg_dump | gzip`")
        );
    }
    Ok(())
}

/// The end of a backup's SQL as it streams by: pg_dump's completion marker followed by nothing
/// but pg_dump's closing lines (`--`, blank lines, `\unrestrict KEY`), then, as the very last
/// line, the manifest `db backup` appends (see [`manifest`]), or nothing (a backup made before
/// manifests, or by `pg_dump | gzip`). Anything else there is refused.
#[derive(Default)]
pub struct Tail {
    bytes: Vec<u8>,
    /// Bytes before `bytes` went by.
    cut: bool,
}

/// The end kept: the longest manifest line and the KiB before it that holds the marker.
const TAIL_KEEP: usize = manifest::LINE_MAX + 2048;

impl Tail {
    pub fn push(&mut self, chunk: &[u8]) {
        if chunk.len() >= TAIL_KEEP {
            self.bytes.clear();
            self.bytes.extend_from_slice(&chunk[chunk.len() - TAIL_KEEP..]);
            self.cut = true;
            return;
        }
        self.bytes.extend_from_slice(chunk);
        // Trimmed now and then, not at every chunk: each byte is moved about once.
        if self.bytes.len() > 2 * TAIL_KEEP {
            self.bytes.drain(..self.bytes.len() - TAIL_KEEP);
            self.cut = true;
        }
    }

    /// Checks the end as the type says; the manifest, when the backup has one.
    pub fn finish(&self) -> Result<Option<Manifest>> {
        let (body, json) = match self.bytes.strip_suffix(b"\n") {
            Some(text) => {
                let start = text.iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1);
                if (start == 0 && self.cut) || text.len() - start > manifest::LINE_MAX {
                    bail!(
                        hint!("the backup's last line is longer than a manifest may be ({} KiB)", manifest::LINE_MAX >> 10; "this file is not what pg_dump or `cargo xtask db backup` wrote: do not restore it; take a new backup")
                    );
                }
                match text[start..].strip_prefix(manifest::LINE_PREFIX) {
                    Some(json) => (&self.bytes[..start], Some(json)),
                    None => (&self.bytes[..], None),
                }
            }
            None => (&self.bytes[..], None),
        };
        check_marker(&body[body.len().saturating_sub(1024)..])?;
        json.map(|json| {
            Manifest::parse(json).map_err(|e| {
                anyhow!(hint!("the backup's manifest (its last line) is malformed: {e:#}"; "this file is not what `cargo xtask db backup` wrote (edited or crafted): do not restore it; take a new backup"))
            })
        })
        .transpose()
    }
}

/// pg_dump's completion marker, near the end of the SQL (`tail`: its last KiB), followed only by
/// pg_dump's closing lines.
fn check_marker(tail: &[u8]) -> Result<()> {
    let Some(at) = tail.windows(MARKER.len()).rposition(|w| w == MARKER) else {
        bail!(
            hint!("truncated: pg_dump's completion marker `{}` is missing, so the dump stopped early", String::from_utf8_lossy(MARKER); "use another backup; this one was written by a pg_dump that did not finish")
        );
    };
    let after = &tail[at + MARKER.len()..];
    let closing = |line: &[u8]| line.is_empty() || line == b"--" || line.starts_with(b"\\unrestrict ");
    if !after.split(|&b| b == b'\n').all(closing) {
        bail!(
            hint!("the backup has text after pg_dump's completion marker that neither pg_dump nor `cargo xtask db backup` writes"; "this file was edited or crafted: do not restore it; take a new backup")
        );
    }
    Ok(())
}

/// Keeps the last `keep` bytes of what went by in `tail`.
pub(in crate::backup) fn keep_tail(tail: &mut Vec<u8>, chunk: &[u8], keep: usize) {
    if chunk.len() >= keep {
        tail.clear();
        tail.extend_from_slice(&chunk[chunk.len() - keep..]);
    } else {
        tail.extend_from_slice(chunk);
        if tail.len() > keep {
            tail.drain(..tail.len() - keep);
        }
    }
}
