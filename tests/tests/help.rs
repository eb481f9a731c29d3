//! Every command's `--help`, held to the text committed in tests/snapshots/help/: a change of a
//! flag, a default or a doc comment shows in the pull request's diff, where a reviewer reads it.
//! `RAILGUN_BLESS=1 cargo nextest run -p xtask -E 'test(/^help::/)'` rewrites the files after a change.

use std::path::PathBuf;

use tests::{Run, isolated, root};

/// `cargo xtask PATH... --help`.
fn help(path: &[String]) -> String {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let run: Run = isolated(&args).output().unwrap().into();
    run.assert_ok();
    run.stdout
}

/// The subcommands a help text lists under `Commands:` (but `help`).
fn subcommands(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|name| name != "help")
        .collect()
}

fn snapshot(path: &[String]) -> PathBuf {
    let name = if path.is_empty() { "xtask".to_string() } else { path.join("_") };
    root().join("tests/snapshots/help").join(format!("{name}.txt"))
}

#[test]
fn every_help_text_is_the_committed_one() {
    let bless = std::env::var_os("RAILGUN_BLESS").is_some();
    let mut queue: Vec<Vec<String>> = vec![Vec::new()];
    let mut seen = Vec::new();
    let mut stale = Vec::new();
    while let Some(path) = queue.pop() {
        let text = help(&path);
        for sub in subcommands(&text) {
            let mut next = path.clone();
            next.push(sub);
            queue.push(next);
        }
        let file = snapshot(&path);
        seen.push(file.clone());
        if bless {
            std::fs::write(&file, &text).unwrap();
        } else if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
            stale.push(file.display().to_string());
        }
    }
    assert!(seen.len() > 40, "every command was reached: {}", seen.len());
    assert!(
        stale.is_empty(),
        "--help changed (or is new) for:\n{}\nreview, then RAILGUN_BLESS=1 cargo nextest run -p xtask -E 'test(/^help::/)'",
        stale.join("\n")
    );
    let committed: Vec<PathBuf> = std::fs::read_dir(root().join("tests/snapshots/help"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !seen.contains(p))
        .collect();
    assert!(committed.is_empty(), "snapshots of commands that are gone: {committed:?}");
}
