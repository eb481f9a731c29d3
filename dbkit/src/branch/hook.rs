//! The git `post-checkout` hook that runs the switch. A hook already there is kept: moved aside
//! and run first by ours, with its exit status kept, and put back by [`remove`]. Ours never
//! fails a checkout: git has switched the files by then; a failed switch is recorded for the
//! next command to name.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

/// The line that marks the hook as ours.
const MARK: &str = "# railgun: the database follows git";
/// Where a hook that was there before ours goes, beside it.
const KEPT: &str = "post-checkout.before-railgun";

/// What [`install`] did.
pub struct Installed {
    pub path: PathBuf,
    /// A hook that was there before, now run first by ours.
    pub kept: Option<PathBuf>,
}

/// Installs the hook in `hooks_dir`, running `xtask` (this program) on each branch checkout.
/// Idempotent: ours is rewritten (the binary may have moved), another one is kept.
pub fn install(hooks_dir: &Path, xtask: &Path) -> Result<Installed> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(hooks_dir).with_context(|| format!("create {}", hooks_dir.display()))?;
    let path = hooks_dir.join("post-checkout");
    let kept_path = hooks_dir.join(KEPT);
    let mut kept = kept_path.exists().then(|| kept_path.clone());
    if path.exists() && !is_ours(&path) {
        if kept.is_some() {
            bail!(
                hint!("{} is not railgun's, and {} is taken: both were there before", path.display(), kept_path.display();
                "merge them into one hook (or remove one), then run `cargo xtask branch on` again")
            );
        }
        std::fs::rename(&path, &kept_path).with_context(|| format!("move {} aside", path.display()))?;
        kept = Some(kept_path);
    }
    let xtask = xtask.to_str().context("the xtask's path is not UTF-8: the hook could not name it")?;
    let script = format!(
        r#"#!/bin/sh
{MARK} (`cargo xtask branch on`; `cargo xtask branch off` removes this hook).
# A hook that was here before is {KEPT}, run first.
status=0
kept="$(dirname "$0")/{KEPT}"
if [ -x "$kept" ]; then "$kept" "$@" || status=$?; fi
# $3 is 1 for a checkout of a branch or commit, 0 for files.
if [ "$3" = 1 ]; then
    xtask={xtask}
    if [ -x "$xtask" ]; then
        RAILGUN_CHECKOUT="$(pwd)" "$xtask" branch switch --hook
    else
        echo "railgun: $xtask is gone (cargo clean?): the database did not follow; run cargo xtask branch switch" >&2
    fi
fi
exit $status
"#,
        xtask = shell_quoted(xtask)
    );
    let tmp = hooks_dir.join("post-checkout.railgun-tmp");
    std::fs::write(&tmp, script).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("install {}", path.display()))?;
    Ok(Installed { path, kept })
}

/// Removes our hook and puts back the one it kept; another program's hook is left alone.
/// Returns what it did, for the message.
pub fn remove(hooks_dir: &Path) -> Result<String> {
    let path = hooks_dir.join("post-checkout");
    let kept = hooks_dir.join(KEPT);
    if path.exists() && !is_ours(&path) {
        return Ok(format!("{} is not railgun's: left alone", path.display()));
    }
    if path.exists() {
        std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
    }
    if kept.exists() {
        std::fs::rename(&kept, &path).with_context(|| format!("put back {}", path.display()))?;
        return Ok(format!("removed the hook; the one that was there before is back at {}", path.display()));
    }
    Ok(format!("removed {}", path.display()))
}

/// Whether the hook at `path` is ours.
pub fn is_ours(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes.windows(MARK.len()).any(|w| w == MARK.as_bytes()))
}

/// `text` in single quotes for sh, its own quotes escaped.
fn shell_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
