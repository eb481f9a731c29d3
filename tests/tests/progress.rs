//! Progress of `db backup` and `db restore`: plain lines per stage when stderr is not a
//! terminal (CI logs), a bar redrawn in place when it is (a pseudo-terminal from `script`).

use std::path::PathBuf;

use diesel::connection::SimpleConnection;
use tests::{Folder, Run};

const DATA: &str = r#"
CREATE TABLE things (id bigserial PRIMARY KEY, name text NOT NULL, body bytea);
CREATE TABLE empty (id int);
CREATE INDEX things_name ON things (name);
INSERT INTO things (name, body) SELECT 'thing ' || g, decode(md5(g::text), 'hex') FROM generate_series(1, 200000) g;
"#;

fn lines<'a>(run: &'a Run, task: &str) -> Vec<&'a str> {
    let prefix = format!("{task}: ");
    run.stderr.lines().filter(|l| l.starts_with(&prefix)).collect()
}

#[test]
fn off_a_terminal_each_stage_is_one_plain_line() {
    let source = Folder::new("progress-source", None);
    source.db.conn().unwrap().batch_execute(DATA).unwrap();
    let backup = source.xtask(&["db", "backup"]);
    backup.assert_ok();
    let shown = lines(&backup, "backup");
    assert!(shown[0].starts_with("backup: dumping the schema (2 tables, ~"), "{}", backup.stderr);
    assert!(shown[0].ends_with(" MiB of SQL estimated from their size on disk)"), "{}", backup.stderr);
    assert!(shown.contains(&"backup: dumping the data"), "{}", backup.stderr);
    let done = shown.iter().find(|l| l.starts_with("backup: done, 2 tables, ")).expect(&backup.stderr);
    assert!(done.contains(" MiB of SQL in ") && done.ends_with(" s"), "{done}");
    // Lines, not a redrawn bar, and no line per row.
    assert!(!backup.stderr.contains('\r') && !backup.stderr.contains('\x1b'), "{:?}", backup.stderr);
    assert!(shown.len() <= 8, "{}", backup.stderr);
    let file = PathBuf::from(backup.stdout.lines().last().unwrap());

    let target = Folder::new("progress-target", None);
    let restore = target.xtask(&["db", "restore", file.to_str().unwrap(), "--yes", "--no-safety-backup"]);
    restore.assert_ok();
    let shown = lines(&restore, "restore");
    for stage in [
        "restore: creating the schema (2 tables)",
        "restore: loading the data",
        "restore: building indexes and constraints",
        "restore: committing",
    ] {
        assert!(shown.contains(&stage), "{stage}:\n{}", restore.stderr);
    }
    assert!(shown.iter().any(|l| l.starts_with("restore: done, 2 tables, ")), "{}", restore.stderr);
    assert!(!restore.stderr.contains('\r'), "{:?}", restore.stderr);
    let password = source.db.direct_url().password().unwrap().to_string();
    assert!(!backup.all().contains(&password) && !restore.all().contains(&password));
}

#[test]
fn on_a_terminal_a_bar_is_drawn_in_place_and_cleared() {
    let source = Folder::new("progress-tty", None);
    source.db.conn().unwrap().batch_execute(DATA).unwrap();
    // `script` runs the command on a pseudo-terminal and copies what it wrote to stdout.
    let command = source.command(&["db", "backup"]);
    let mut words = vec![command.get_program().to_str().unwrap().to_string()];
    words.extend(command.get_args().map(|a| a.to_str().unwrap().to_string()));
    assert!(words.iter().all(|w| !w.contains('\'')), "{words:?}");
    let line = words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" ");
    let mut script = std::process::Command::new("script");
    script.args(["-qec", &line, "/dev/null"]).current_dir(&source.dir).stdin(std::process::Stdio::null());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => script.env(key, value),
            None => script.env_remove(key),
        };
    }
    let run: Run = script.output().expect("run script (util-linux)").into();
    run.assert_ok();
    let screen = run.stdout;
    assert!(screen.contains("backup [") && screen.contains("dumping the"), "{screen:?}");
    assert!(screen.contains("\x1b[2K") || screen.contains('\r'), "not redrawn in place: {screen:?}");
    assert!(screen.contains(" MiB/~") && screen.contains(" MiB/s ETA "), "{screen:?}");
    // The plain lines are for logs only.
    assert!(!screen.contains("backup: done,"), "{screen:?}");
    assert!(screen.contains("backup verified: "), "{screen:?}");
}
