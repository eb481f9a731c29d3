//! The git questions of `migration check` and `rebase`, each one `git` process: which commit a
//! ref is, the merge base, the migration folders a commit has (`git ls-tree`), their files
//! (`git cat-file --batch`, all in one process), and what the working tree changed. REF is read
//! from git's objects: it need not be checked out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use xshell::{Shell, cmd};

use crate::migration::source::{self, MigrationFiles, shown};

/// The repository holding the migrations folder.
pub struct Repo {
    sh: Shell,
    /// The work tree's top folder.
    pub top: PathBuf,
    /// The migrations folder, relative to `top`, with `/` (empty: the top itself).
    pub rel: String,
    /// The migrations folder as it is on disk.
    pub dir: PathBuf,
}

/// A migration folder in a commit: the blob of each file it has.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub up: Option<String>,
    pub down: Option<String>,
    pub metadata: Option<String>,
}

impl Repo {
    /// The repository the migrations folder `dir` is in.
    pub fn open(dir: &Path) -> Result<Repo> {
        let dir = std::fs::canonicalize(dir).with_context(|| {
            hint!("read the migrations folder {}", shown(dir); "point --migration-dir (or diesel.toml's [migrations_directory]) at the migrations folder")
        })?;
        let sh = Shell::new()?;
        sh.change_dir(&dir);
        let top = cmd!(sh, "git rev-parse --show-toplevel").quiet().ignore_stderr().read().map_err(|_| {
            hint!("{} is not in a git repository", shown(&dir); "run the check in a clone of the project (git clone), where both branches are")
        })?;
        let top = std::fs::canonicalize(top.trim()).context("find the repository's top folder")?;
        let rel = dir.strip_prefix(&top).unwrap_or(Path::new("")).to_string_lossy().replace('\\', "/");
        sh.change_dir(&top);
        Ok(Repo { sh, top, rel, dir })
    }

    /// `path/` inside the migrations folder, as git names it from the top.
    pub fn path(&self, inside: &str) -> String {
        match self.rel.is_empty() {
            true => inside.to_string(),
            false => format!("{}/{inside}", self.rel),
        }
    }

    /// The commit `reference` names, refused with the fix when it names none.
    pub fn commit(&self, reference: &str) -> Result<String> {
        let sh = &self.sh;
        let spec = format!("{reference}^{{commit}}");
        match cmd!(sh, "git rev-parse --verify --quiet --end-of-options {spec}").quiet().ignore_stderr().read() {
            Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
            _ => bail!(
                hint!("{reference} is not a commit in the repository at {}", self.top.display(); "fetch it (git fetch origin), or pass --against with a branch, tag or commit that exists")
            ),
        }
    }

    /// What a branch is compared with by default: the remote's default branch (`origin/HEAD`),
    /// else `origin/main`, else `main`.
    pub fn default_target(&self) -> Result<String> {
        let sh = &self.sh;
        if let Ok(head) =
            cmd!(sh, "git symbolic-ref --quiet --short refs/remotes/origin/HEAD").quiet().ignore_stderr().read()
            && !head.trim().is_empty()
        {
            return Ok(head.trim().to_string());
        }
        for candidate in ["refs/remotes/origin/main", "refs/heads/main"] {
            if cmd!(sh, "git rev-parse --verify --quiet {candidate}")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run()
                .is_ok()
            {
                return Ok(candidate.trim_start_matches("refs/remotes/").trim_start_matches("refs/heads/").to_string());
            }
        }
        bail!(
            hint!("no default branch to compare with: neither origin/main nor main exists"; "pass the branch to compare with: --against REF")
        )
    }

    /// The merge base of HEAD and `commit`.
    pub fn merge_base(&self, commit: &str, label: &str) -> Result<String> {
        let sh = &self.sh;
        let base = cmd!(sh, "git merge-base HEAD {commit}").quiet().ignore_stderr().read().map_err(|_| {
            hint!("HEAD and {label} have no common history (no merge base)"; "compare with a branch this one was made from: --against REF")
        })?;
        Ok(base.trim().to_string())
    }

    /// The migration folders of `commit` by name (a folder with no up.sql is no migration, as
    /// on disk; a file beside the folders, a README, is none either).
    pub fn migrations_at(&self, commit: &str) -> Result<BTreeMap<String, Tree>> {
        let sh = &self.sh;
        let prefix = self.path("");
        let pathspec = if prefix.is_empty() { ".".to_string() } else { prefix.clone() };
        let out = cmd!(sh, "git ls-tree -r -z {commit} -- {pathspec}")
            .quiet()
            .read()
            .with_context(|| format!("list the migrations of {commit}"))?;
        let mut trees: BTreeMap<String, Tree> = BTreeMap::new();
        for entry in out.split('\0').filter(|e| !e.is_empty()) {
            let Some((meta, path)) = entry.split_once('\t') else { continue };
            let Some(blob) = meta.split(' ').nth(2) else { continue };
            let Some((folder, file)) = path.strip_prefix(&prefix).and_then(|rest| rest.split_once('/')) else {
                continue;
            };
            let tree = trees.entry(folder.to_string()).or_default();
            let slot = match file {
                "up.sql" => &mut tree.up,
                "down.sql" => &mut tree.down,
                "metadata.toml" => &mut tree.metadata,
                _ => continue,
            };
            *slot = Some(blob.to_string());
        }
        trees.retain(|_, tree| tree.up.is_some());
        Ok(trees)
    }

    /// The migrations named, with their files, read from git's objects in one process: each
    /// `dir` is where the folder is in the work tree (for messages), its SQL held in memory.
    pub fn materialize(&self, trees: &[(&String, &Tree)]) -> Result<Vec<MigrationFiles>> {
        let mut ids = Vec::new();
        for (_, tree) in trees {
            ids.extend([&tree.up, &tree.down, &tree.metadata].into_iter().flatten().cloned());
        }
        let mut texts = self.blobs(&ids)?.into_iter();
        let mut next = |id: &Option<String>| id.as_ref().map(|_| texts.next().unwrap_or_default());
        let mut migrations = Vec::new();
        for (name, tree) in trees {
            let (up, down, metadata) = (next(&tree.up), next(&tree.down), next(&tree.metadata));
            migrations.push(source::held(self.dir.join(name), up.unwrap_or_default(), down, metadata.as_deref())?);
        }
        migrations.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(migrations)
    }

    /// The text of each blob, in order.
    fn blobs(&self, ids: &[String]) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sh = &self.sh;
        let input = ids.join("\n") + "\n";
        let out = cmd!(sh, "git cat-file --batch").quiet().stdin(input).output().context("read migrations from git")?;
        let mut rest: &[u8] = &out.stdout;
        let mut texts = Vec::with_capacity(ids.len());
        for id in ids {
            let header_end = rest.iter().position(|&b| b == b'\n').context("git cat-file's answer ended early")?;
            let header = String::from_utf8_lossy(&rest[..header_end]).into_owned();
            let size: usize = match header.split(' ').collect::<Vec<_>>().as_slice() {
                [_, "blob", size] => size.parse().context("git cat-file's size")?,
                _ => bail!("git has no blob {id}: {header}"),
            };
            let body = rest.get(header_end + 1..header_end + 1 + size).context("git cat-file's answer ended early")?;
            texts.push(String::from_utf8_lossy(body).into_owned());
            rest = rest.get(header_end + 2 + size..).unwrap_or_default();
        }
        Ok(texts)
    }

    /// The migration folders with changes git has not committed (new, edited, deleted, renamed),
    /// by name.
    pub fn uncommitted(&self) -> Result<Vec<String>> {
        let sh = &self.sh;
        let prefix = self.path("");
        let pathspec = if prefix.is_empty() { ".".to_string() } else { prefix.clone() };
        let out = cmd!(sh, "git status --porcelain -z --untracked-files=all -- {pathspec}")
            .quiet()
            .read()
            .context("ask git what changed in the migrations folder")?;
        let mut folders: Vec<String> = Vec::new();
        let mut entries = out.split('\0').filter(|e| !e.is_empty());
        while let Some(entry) = entries.next() {
            let (status, path) = entry.split_at(3.min(entry.len()));
            let mut paths = vec![path.to_string()];
            if status.starts_with('R') || status.starts_with('C') {
                paths.extend(entries.next().map(str::to_string));
            }
            for path in paths {
                let folder =
                    path.strip_prefix(&prefix).unwrap_or(&path).split('/').next().unwrap_or_default().to_string();
                if !folders.contains(&folder) {
                    folders.push(folder);
                }
            }
        }
        Ok(folders)
    }

    /// Whether git tracks any file of the migration folder `name`.
    pub fn tracked(&self, name: &str) -> Result<bool> {
        let sh = &self.sh;
        let path = self.path(name);
        let out = cmd!(sh, "git ls-files -- {path}").quiet().read().context("ask git what it tracks")?;
        Ok(!out.trim().is_empty())
    }

    /// `git mv` of a migration folder.
    pub fn git_mv(&self, from: &str, to: &str) -> Result<()> {
        let sh = &self.sh;
        let (from, to) = (self.path(from), self.path(to));
        cmd!(sh, "git mv -- {from} {to}").quiet().run().with_context(|| format!("git mv {from} {to}"))?;
        Ok(())
    }
}
