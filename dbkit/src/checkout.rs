//! Which checkout of the repository a tool works on: the one it runs in, not the one it was
//! compiled in. Two clones sharing one `CARGO_TARGET_DIR` share one binary, and cargo sees it as
//! fresh in both: a path compiled in would point the second clone's `up` and `down --volumes`
//! at the first clone's `.env` and data.

use std::path::{Path, PathBuf};

/// The checkout to work on: `RAILGUN_CHECKOUT` if set; else the workspace of the package cargo
/// runs (its `CARGO_MANIFEST_DIR` at run time, the binary's package folder); else the nearest
/// folder at or above the current one that is this workspace; only last `compiled_in`, the
/// workspace the binary was built from.
pub fn root(compiled_in: &Path) -> PathBuf {
    if let Some(path) = std::env::var_os("RAILGUN_CHECKOUT").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let from_cargo = std::env::var_os("CARGO_MANIFEST_DIR")
        .filter(|p| !p.is_empty())
        .and_then(|package| Path::new(&package).parent().map(Path::to_path_buf))
        .filter(|dir| is_workspace(dir));
    if let Some(root) = from_cargo {
        return root;
    }
    let from_cwd = std::env::current_dir()
        .ok()
        .and_then(|cwd| cwd.ancestors().find(|dir| is_workspace(dir)).map(Path::to_path_buf));
    from_cwd.unwrap_or_else(|| compiled_in.to_path_buf())
}

/// Whether `dir` is a checkout of this repository: a Cargo.toml with a `[workspace]` whose
/// members include the `xtask` folder beside it.
pub fn is_workspace(dir: &Path) -> bool {
    if !dir.join("xtask").is_dir() {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else { return false };
    let Ok(manifest) = toml::from_str::<toml::Table>(&text) else { return false };
    let members = manifest.get("workspace").and_then(|w| w.get("members")).and_then(toml::Value::as_array);
    members
        .is_some_and(|members| members.iter().any(|m| m.as_str().is_some_and(|m| m.trim_end_matches('/') == "xtask")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workspace_lists_xtask_and_has_its_folder() {
        let dir = std::env::temp_dir().join(format!("railgun-checkout-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("xtask")).unwrap();
        std::fs::write(dir.join("Cargo.toml"), "[package]\nname = \"other\"\n").unwrap();
        assert!(!is_workspace(&dir), "a package, not a workspace");
        std::fs::write(dir.join("Cargo.toml"), "[workspace]\nmembers = [\"app\"]\n").unwrap();
        assert!(!is_workspace(&dir), "a workspace without xtask");
        std::fs::write(dir.join("Cargo.toml"), "[workspace]\nmembers = [\"xtask\", \"db\"]\n").unwrap();
        assert!(is_workspace(&dir));
        std::fs::remove_dir(dir.join("xtask")).unwrap();
        assert!(!is_workspace(&dir), "xtask listed but missing");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
