//! What the tools ask git about the checkout: the branch checked out, where its git folder is,
//! whether files are committed. Each question is one `git` process (a few milliseconds); no
//! answer (no git, not a repository) is an answer of its own, never an error in a command that
//! works without git.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use xshell::cmd;

use crate::context::Context;

/// Whether every one of `paths` is tracked by git in the checkout (committed or staged); false
/// when git or the repository is missing.
pub fn all_tracked(cx: &Context, paths: impl IntoIterator<Item = PathBuf>) -> bool {
    let paths: Vec<PathBuf> = paths.into_iter().collect();
    let sh = &cx.sh;
    !paths.is_empty()
        && cmd!(sh, "git ls-files --error-unmatch -- {paths...}").quiet().ignore_stdout().ignore_stderr().run().is_ok()
}

/// What HEAD is in the checkout at `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// A branch, by its short name (`feature/avatar`).
    Branch(String),
    /// A commit, not a branch (a bisect, a rebase in progress, `git checkout SHA`).
    Detached,
}

/// HEAD of the checkout at `root`, read as git reads it (a worktree's own HEAD); `None` when
/// `root` is not in a git repository.
pub fn head(root: &Path) -> Result<Option<Head>> {
    let sh = xshell::Shell::new()?;
    sh.change_dir(root);
    if cmd!(sh, "git rev-parse --git-dir").quiet().ignore_stdout().ignore_stderr().run().is_err() {
        return Ok(None);
    }
    let branch = cmd!(sh, "git symbolic-ref --quiet --short HEAD").quiet().ignore_stderr().read();
    Ok(Some(match branch {
        Ok(name) if !name.trim().is_empty() => Head::Branch(name.trim().to_string()),
        _ => Head::Detached,
    }))
}

/// The git folder of the checkout at `root` (a worktree's own, not the shared one), absolute.
pub fn git_dir(root: &Path) -> Result<PathBuf> {
    let sh = xshell::Shell::new()?;
    sh.change_dir(root);
    let dir = cmd!(sh, "git rev-parse --absolute-git-dir").quiet().read().context("find the checkout's git folder")?;
    Ok(PathBuf::from(dir.trim()))
}

/// The folder git runs hooks from for the checkout at `root` (`core.hooksPath`, else the shared
/// `hooks` folder of every worktree), absolute.
pub fn hooks_dir(root: &Path) -> Result<PathBuf> {
    let sh = xshell::Shell::new()?;
    sh.change_dir(root);
    let dir = cmd!(sh, "git rev-parse --path-format=absolute --git-path hooks")
        .quiet()
        .read()
        .context("find the checkout's git hooks folder")?;
    Ok(PathBuf::from(dir.trim()))
}

/// The local branches of the repository at `root`.
pub fn branches(root: &Path) -> Result<Vec<String>> {
    let sh = xshell::Shell::new()?;
    sh.change_dir(root);
    let out = cmd!(sh, "git for-each-ref --format=%(refname:short) refs/heads")
        .quiet()
        .read()
        .context("list git branches")?;
    Ok(out.lines().map(str::to_owned).collect())
}
