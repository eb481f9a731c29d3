//! The database follows git: a real repository in a temp folder, the real post-checkout hook
//! (git runs it), the real xtask and a real server (the test server; each test's databases are
//! named after it and dropped at the end). Migrations applied on another branch (phantoms) are
//! named and reverted from what was recorded when they were applied.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use tests::Run;

/// A git repository of the test's own: diesel.toml, `migrations/`, `src/schema.rs`, and a `.env`
/// whose DATABASE_URL names a database of its own on the test server (made here, dropped on drop
/// with every branch database and snapshot made from it).
struct Repo {
    dir: PathBuf,
    base: String,
}

impl Repo {
    fn new(tag: &str) -> Repo {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let base = format!("rgbr_{tag}_{}_{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("railgun-branch-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("migrations")).unwrap();
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(
            dir.join("diesel.toml"),
            "[print_schema]\nfile = \"src/schema.rs\"\n\n[migrations_directory]\ndir = \"migrations\"\n",
        )
        .unwrap();
        std::fs::write(dir.join(".gitignore"), ".env\n").unwrap();
        admin().batch_execute(&format!("CREATE DATABASE {base}")).unwrap();
        let url = url_of(&base);
        std::fs::write(dir.join(".env"), format!("DATABASE_URL={url}\n")).unwrap();
        let repo = Repo { dir, base };
        repo.git(&["init", "-q", "-b", "main"]).assert_ok();
        repo.migration(
            "2024-01-01-000001_users",
            "CREATE TABLE users (id serial PRIMARY KEY, name text);",
            "DROP TABLE users;",
        );
        repo.xtask(&["migration", "run"]).assert_ok();
        repo.commit("users");
        repo
    }

    /// `git ARGS` in the repository (hooks run as they would for the user).
    fn git(&self, args: &[&str]) -> Run {
        self.command("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .output()
            .unwrap()
            .into()
    }

    /// `cargo xtask ARGS` in the repository, reading its `.env`.
    fn xtask(&self, args: &[&str]) -> Run {
        self.command(tests::xtask_bin().to_str().unwrap()).args(args).output().unwrap().into()
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.dir)
            .env("RAILGUN_CHECKOUT", &self.dir)
            .env_remove("RAILGUN_ENV_FILE")
            .env_remove("DATABASE_URL")
            .env_remove("DIRECT_URL")
            .env_remove("APP_ENV")
            .env_remove("DIESEL_CONFIG_FILE")
            .env_remove("RAILGUN_PROJECT")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .stdin(std::process::Stdio::null());
        cmd
    }

    fn migration(&self, name: &str, up: &str, down: &str) {
        let folder = self.dir.join("migrations").join(name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("up.sql"), up).unwrap();
        std::fs::write(folder.join("down.sql"), down).unwrap();
    }

    fn commit(&self, message: &str) {
        self.git(&["add", "-A"]).assert_ok();
        self.git(&["commit", "-q", "-m", message]).assert_ok();
    }

    /// A setting of the repository's `.env`.
    fn env(&self, key: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.join(".env")).unwrap();
        text.lines().find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_owned))
    }

    /// The database `.env` names.
    fn database(&self) -> String {
        let url = self.env("DATABASE_URL").unwrap();
        url.rsplit('/').next().unwrap().to_string()
    }

    /// A connection to the database `.env` names.
    fn conn(&self) -> PgConnection {
        PgConnection::establish(&self.env("DATABASE_URL").unwrap()).unwrap()
    }

    /// The column names of `users` in the database `.env` names.
    fn columns(&self) -> Vec<String> {
        strings(
            &mut self.conn(),
            "SELECT column_name::text AS s FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position",
        )
    }

    fn schema(&self) -> String {
        std::fs::read_to_string(self.dir.join("src/schema.rs")).unwrap()
    }

    /// `git status --short`: empty when the tree is as committed.
    fn status(&self) -> String {
        self.git(&["status", "--short"]).stdout
    }

    /// The databases of the server made for this test: the base and every branch database and
    /// snapshot whose family began there (or named after it).
    fn databases(&self) -> Vec<String> {
        strings(
            &mut admin(),
            &format!(
                "SELECT datname::text AS s FROM pg_database WHERE datname LIKE '{0}%' \
                 OR shobj_description(oid, 'pg_database') LIKE '%\"root\":\"{0}%' ORDER BY 1",
                self.base
            ),
        )
    }

    /// The avatar migration on a new branch `feature-avatar`, applied, with a row, committed.
    fn avatar_branch(&self) {
        self.git(&["checkout", "-q", "-b", "feature-avatar"]).assert_ok();
        self.migration(
            "2024-01-02-000001_add_avatar",
            "ALTER TABLE users ADD COLUMN avatar_url text;",
            "ALTER TABLE users DROP COLUMN avatar_url;",
        );
        self.xtask(&["migration", "run"]).assert_ok();
        self.conn().batch_execute("INSERT INTO users (name, avatar_url) VALUES ('ann', 'ann.png')").unwrap();
        self.commit("avatar");
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let mut admin = admin();
        for database in self.databases() {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"));
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn admin() -> PgConnection {
    PgConnection::establish(db::testing::server_url().unwrap().as_str()).unwrap()
}

fn url_of(database: &str) -> String {
    let mut url = db::testing::server_url().unwrap();
    url.set_path(&format!("/{database}"));
    url.to_string()
}

fn strings(conn: &mut PgConnection, query: &str) -> Vec<String> {
    #[derive(QueryableByName)]
    struct S {
        #[diesel(sql_type = diesel::sql_types::Text)]
        s: String,
    }
    diesel::sql_query(query).load::<S>(conn).unwrap().into_iter().map(|r| r.s).collect()
}

/// The scenario, with branch databases on: the branch's column never reaches main's
/// database or main's schema.rs, no checkout is refused, and the branch's rows are there when
/// you come back.
#[test]
fn the_database_follows_git() {
    let repo = Repo::new("follow");
    let on = repo.xtask(&["branch", "on"]);
    on.assert_ok();
    assert!(on.stderr.contains("branch `main`"), "{}", on.stderr);
    let main_db = repo.database();
    assert_eq!(main_db, repo.base, "main keeps the database it had");

    repo.avatar_branch();
    let branch_db = repo.database();
    assert_ne!(branch_db, main_db, "the branch got a database of its own");
    assert!(branch_db.starts_with(&format!("{}_b_feature_avatar_", repo.base)), "{branch_db}");
    assert!(repo.schema().contains("avatar_url"));

    let checkout = repo.git(&["checkout", "main"]);
    checkout.assert_ok();
    assert!(checkout.stderr.contains("railgun: branch `main`"), "the hook ran:\n{}", checkout.stderr);
    assert_eq!(repo.database(), main_db);
    assert_eq!(repo.columns(), ["id", "name"], "main's database never had the column");
    assert!(!repo.schema().contains("avatar_url"), "main's schema.rs is main's");
    assert_eq!(repo.status(), "", "nothing dirty");
    repo.xtask(&["migration", "show", "--check"]).assert_ok();
    let doctor = repo.xtask(&["doctor"]);
    assert!(doctor.stdout.contains("every migration on disk is applied"), "{}", doctor.all());
    assert!(doctor.stdout.contains("pass  branch      the database follows git"), "{}", doctor.all());

    repo.git(&["checkout", "feature-avatar"]).assert_ok();
    assert_eq!(repo.database(), branch_db);
    assert_eq!(strings(&mut repo.conn(), "SELECT name || ' ' || avatar_url AS s FROM users"), ["ann ann.png"]);
    repo.xtask(&["migration", "show", "--check"]).assert_ok();

    let list = repo.xtask(&["branch", "list", "--json"]);
    list.assert_ok();
    let listed: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{listed}");
    let row = |branch: &str| rows.iter().find(|r| r["branch"] == branch).unwrap().clone();
    assert_eq!(row("main")["migrations"], 1);
    assert_eq!(row("feature-avatar")["migrations"], 2);
    assert_eq!(row("feature-avatar")["current"], true);
    assert_eq!(row("feature-avatar")["parent"], main_db.as_str());
}

/// A new branch made from main while the branch database of another is current clones that one
/// (the branch it came from), and a migration main gained meanwhile is reverted from the clone
/// when it is not in the new branch's checkout.
#[test]
fn a_new_branch_clones_the_branch_it_came_from_and_reverts_what_it_lacks() {
    let repo = Repo::new("parent");
    repo.xtask(&["branch", "on"]).assert_ok();
    repo.avatar_branch();
    // From feature-avatar, a branch made at main's commit: the clone comes from feature-avatar's
    // database, whose avatar migration is not in this checkout: reverted from what was recorded.
    let checkout = repo.git(&["checkout", "-b", "other", "main"]);
    checkout.assert_ok();
    assert!(checkout.stderr.contains("1 phantom migration(s) reverted"), "{}", checkout.stderr);
    assert_eq!(repo.columns(), ["id", "name"]);
    assert_eq!(strings(&mut repo.conn(), "SELECT name AS s FROM users"), ["ann"], "the rows came along");
    assert_eq!(repo.status(), "");
    repo.xtask(&["migration", "show", "--check"]).assert_ok();
}

/// Without branch databases: what another branch applied is a phantom, named by show, run and
/// doctor (which fails); run leaves schema.rs alone; `revert --phantom` asks, then reverts it
/// from its recorded down.sql.
#[test]
fn phantoms_are_named_and_reverted_from_what_was_recorded() {
    let repo = Repo::new("phantom");
    repo.avatar_branch();
    repo.git(&["checkout", "-q", "main"]).assert_ok();
    assert_eq!(repo.status(), "", "checkout is clean");
    assert!(!repo.schema().contains("avatar_url"));

    let show = repo.xtask(&["migration", "show"]);
    assert!(show.stdout.contains("a phantom, 2024-01-02-000001_add_avatar"), "{}", show.stdout);
    assert!(show.stderr.contains("migration revert --phantom"), "{}", show.stderr);
    let json: serde_json::Value = serde_json::from_str(&repo.xtask(&["migration", "show", "--json"]).stdout).unwrap();
    assert_eq!(json["migrations"][1]["phantom_revertible"], true, "{json}");
    assert_eq!(json["migrations"][1]["phantom_name"], "2024-01-02-000001_add_avatar");
    repo.xtask(&["migration", "show", "--check"]).assert_fails_with("not on disk");
    let doctor = repo.xtask(&["doctor"]);
    assert!(!doctor.ok());
    assert!(
        doctor.stdout.contains("this checkout lacks (from another branch or checkout): 2024-01-02-000001_add_avatar"),
        "{}",
        doctor.all()
    );

    let run = repo.xtask(&["migration", "run"]);
    run.assert_ok();
    assert!(run.stderr.contains("the schema files were not rewritten"), "{}", run.stderr);
    assert!(!repo.schema().contains("avatar_url"), "another branch's column never goes into main's schema.rs");
    assert_eq!(repo.status(), "");

    repo.xtask(&["migration", "revert", "--phantom"]).assert_fails_with("no terminal");
    assert!(repo.columns().contains(&"avatar_url".to_string()), "nothing reverted without an answer");
    let revert = repo.xtask(&["migration", "revert", "--phantom", "--yes"]);
    revert.assert_ok();
    assert!(
        revert.stderr.contains("Rolling back migration 2024-01-02-000001_add_avatar (its recorded down.sql)"),
        "{}",
        revert.stderr
    );
    assert_eq!(repo.columns(), ["id", "name"]);
    repo.xtask(&["migration", "show", "--check"]).assert_ok();
    assert_eq!(repo.status(), "");
}

/// A phantom applied before its files were recorded (by diesel_cli, or an older runner) cannot
/// be reverted without its folder: refused before anything runs, naming it.
#[test]
fn a_phantom_without_recorded_files_is_refused() {
    let repo = Repo::new("unrecorded");
    repo.avatar_branch();
    repo.git(&["checkout", "-q", "main"]).assert_ok();
    repo.conn().batch_execute("UPDATE __railgun_migration_checksums SET down_sql = NULL").unwrap();
    repo.xtask(&["migration", "revert", "--phantom", "--yes"]).assert_fails_with("no down.sql was recorded");
    assert!(repo.columns().contains(&"avatar_url".to_string()));
}

/// On a branch, reverting a committed migration leaves schema.rs as committed, so the next
/// checkout is not refused; --write-schema rewrites it.
#[test]
fn a_revert_leaves_committed_files_as_git_has_them() {
    let repo = Repo::new("revert");
    repo.avatar_branch();
    let revert = repo.xtask(&["migration", "revert"]);
    revert.assert_ok();
    assert!(revert.stderr.contains("left as git has them"), "{}", revert.stderr);
    assert_eq!(repo.status(), "");
    repo.git(&["checkout", "-q", "main"]).assert_ok();
    repo.git(&["checkout", "-q", "feature-avatar"]).assert_ok();
    repo.xtask(&["migration", "run"]).assert_ok();
    repo.xtask(&["migration", "revert", "--write-schema"]).assert_ok();
    assert!(!repo.schema().contains("avatar_url"));
    assert_eq!(repo.status(), " M src/schema.rs\n");
}

/// A post-checkout hook that was there is kept and runs first; `branch off` puts it back.
#[test]
fn a_hook_already_there_is_kept() {
    let repo = Repo::new("hook");
    let hooks = repo.dir.join(".git/hooks");
    let marker = repo.dir.join("theirs-ran");
    std::fs::write(hooks.join("post-checkout"), format!("#!/bin/sh\necho \"$3\" >> '{}'\n", marker.display())).unwrap();
    make_executable(&hooks.join("post-checkout"));
    repo.xtask(&["branch", "on"]).assert_ok();
    let checkout = repo.git(&["checkout", "-b", "next"]);
    checkout.assert_ok();
    assert!(checkout.stderr.contains("railgun: branch `next`"), "{}", checkout.stderr);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "1\n", "their hook ran, with git's arguments");
    let off = repo.xtask(&["branch", "off"]);
    off.assert_ok();
    let hook = std::fs::read_to_string(hooks.join("post-checkout")).unwrap();
    assert!(hook.contains("theirs-ran") && !hook.contains("the database follows git"), "theirs is back:\n{hook}");
    let checkout = repo.git(&["checkout", "main"]);
    assert!(!checkout.stderr.contains("railgun"), "{}", checkout.stderr);
    assert_eq!(repo.env("RAILGUN_BRANCHES").as_deref(), Some("off"));
}

/// A failed switch never fails the checkout; the next command says what is wrong and how to
/// fix it; `branch switch` then does it. The failure here: a session on the database to clone.
#[test]
fn a_failed_switch_is_named_by_the_next_command() {
    let repo = Repo::new("failed");
    repo.xtask(&["branch", "on"]).assert_ok();
    let app = repo.conn();
    let checkout = repo.git(&["checkout", "-b", "busy"]);
    checkout.assert_ok();
    assert!(checkout.stderr.contains("other session(s) are connected to it"), "{}", checkout.stderr);
    assert_eq!(repo.database(), repo.base, ".env stays where it was");
    let show = repo.xtask(&["migration", "show"]);
    show.assert_fails_with("this checkout is on branch `busy`, but .env names branch `main`'s database");
    assert!(show.stderr.contains("other session(s) are connected"), "the reason is given:\n{}", show.stderr);
    assert!(show.stderr.contains("cargo xtask branch switch"), "{}", show.stderr);
    let doctor = repo.xtask(&["doctor"]);
    assert!(!doctor.ok());
    assert!(doctor.stdout.contains("FAIL  branch"), "{}", doctor.all());
    drop(app);
    let switch = repo.xtask(&["branch", "switch"]);
    switch.assert_ok();
    assert!(repo.database().contains("_b_busy_"), "{}", repo.database());
    repo.xtask(&["migration", "show", "--check"]).assert_ok();
}

/// A detached HEAD (a commit checked out, a bisect, a rebase) keeps the database; a rebase of a
/// branch ends on the branch's database.
#[test]
fn detached_head_and_rebase_keep_the_database() {
    let repo = Repo::new("detached");
    repo.xtask(&["branch", "on"]).assert_ok();
    repo.avatar_branch();
    let branch_db = repo.database();
    let checkout = repo.git(&["checkout", "main~0"]);
    checkout.assert_ok();
    assert!(checkout.stderr.contains("HEAD is detached"), "{}", checkout.stderr);
    assert_eq!(repo.database(), branch_db);
    repo.git(&["checkout", "-q", "main"]).assert_ok();
    std::fs::write(repo.dir.join("README"), "main moves on\n").unwrap();
    repo.commit("readme");
    repo.git(&["checkout", "-q", "feature-avatar"]).assert_ok();
    repo.git(&["rebase", "-q", "main"]).assert_ok();
    assert_eq!(repo.database(), branch_db);
    repo.xtask(&["migration", "show", "--check"]).assert_ok();
    let bisect = repo.git(&["bisect", "start", "feature-avatar", "main~1"]);
    bisect.assert_ok();
    repo.git(&["bisect", "reset"]).assert_ok();
    assert_eq!(repo.database(), branch_db, "a bisect ends where it began");
}

/// Long and unicode branch names get databases of at most 63 bytes, distinct from each other.
#[test]
fn long_and_unicode_branch_names() {
    let repo = Repo::new("names");
    repo.xtask(&["branch", "on"]).assert_ok();
    let long = format!("feature/{}", "very-long-name-".repeat(8));
    for name in [long.as_str(), "fonctionnalité/été", "fonctionnalite/ete"] {
        repo.git(&["checkout", "-q", "-b", name, "main"]).assert_ok();
        let database = repo.database();
        assert!(database.len() <= 63, "{database}");
        repo.xtask(&["migration", "show", "--check"]).assert_ok();
    }
    assert_eq!(repo.databases().len(), 4, "{:?}", repo.databases());
}

/// Snapshots (git stash for data), reset from the parent, prune of deleted branches.
#[test]
fn snapshot_restore_reset_and_prune() {
    let repo = Repo::new("manage");
    repo.xtask(&["branch", "on"]).assert_ok();
    repo.avatar_branch();
    repo.xtask(&["branch", "snapshot", "before"]).assert_ok();
    repo.xtask(&["branch", "snapshot", "before"]).assert_fails_with("has a snapshot before already");
    repo.conn().batch_execute("DELETE FROM users").unwrap();
    repo.xtask(&["branch", "restore", "before"]).assert_fails_with("no terminal");
    repo.xtask(&["branch", "restore", "before", "--yes"]).assert_ok();
    assert_eq!(strings(&mut repo.conn(), "SELECT name AS s FROM users"), ["ann"]);
    repo.xtask(&["branch", "restore", "nope", "--yes"]).assert_fails_with("has no snapshot nope (it has: before)");

    // Reset: a new clone of main's database (no row), brought to the branch's migrations.
    repo.xtask(&["branch", "reset", "--yes"]).assert_ok();
    assert_eq!(repo.columns(), ["id", "name", "avatar_url"]);
    assert!(strings(&mut repo.conn(), "SELECT name AS s FROM users").is_empty());

    repo.git(&["checkout", "-q", "main"]).assert_ok();
    repo.git(&["branch", "-q", "-D", "feature-avatar"]).assert_ok();
    let dry = repo.xtask(&["branch", "prune", "--dry-run"]);
    dry.assert_ok();
    assert!(dry.stderr.contains("branch `feature-avatar`"), "{}", dry.stderr);
    assert_eq!(repo.databases().len(), 3, "branch, snapshot and main: {:?}", repo.databases());
    repo.xtask(&["branch", "prune", "--yes"]).assert_ok();
    assert_eq!(repo.databases(), std::slice::from_ref(&repo.base));
}

/// Two switches at once (a script and a terminal) take turns: one database, both succeed.
#[test]
fn two_switches_at_once() {
    let repo = Repo::new("twice");
    repo.xtask(&["branch", "on"]).assert_ok();
    repo.git(&["-c", "core.hooksPath=/dev/null", "checkout", "-q", "-b", "both"]).assert_ok();
    let spawn = || repo.command(tests::xtask_bin().to_str().unwrap()).args(["branch", "switch"]).spawn().unwrap();
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let run = Run::from(child.wait_with_output().unwrap());
        run.assert_ok();
    }
    assert_eq!(repo.databases().len(), 2, "{:?}", repo.databases());
    assert!(repo.database().contains("_b_both_"));
}

/// Each worktree is a checkout of its own: the hook (shared by git) switches the worktree it
/// runs in, by that worktree's `.env`; one without branch databases is left alone.
#[test]
fn worktrees_switch_on_their_own() {
    let repo = Repo::new("worktree");
    repo.xtask(&["branch", "on"]).assert_ok();
    let other = repo.dir.with_extension("wt");
    let _ = std::fs::remove_dir_all(&other);
    let add = repo.git(&["worktree", "add", "-q", "-b", "side", other.to_str().unwrap()]);
    add.assert_ok();
    assert!(!add.stderr.contains("railgun: branch"), "no .env there: left alone\n{}", add.stderr);
    assert_eq!(repo.database(), repo.base, "the first checkout did not move");
    let side_base = format!("{}_side", repo.base);
    admin().batch_execute(&format!("CREATE DATABASE {side_base}")).unwrap();
    std::fs::write(other.join(".env"), format!("DATABASE_URL={}\n", url_of(&side_base))).unwrap();
    let in_other = |program: &str, args: &[&str]| -> Run {
        let mut cmd = repo.command(program);
        cmd.current_dir(&other).env("RAILGUN_CHECKOUT", &other);
        cmd.args(args).output().unwrap().into()
    };
    let xtask = tests::xtask_bin().to_str().unwrap();
    in_other(xtask, &["migration", "run"]).assert_ok();
    in_other(xtask, &["branch", "on"]).assert_ok();
    let checkout = in_other("git", &["checkout", "-b", "side2"]);
    checkout.assert_ok();
    assert!(checkout.stderr.contains("railgun: branch `side2`"), "{}", checkout.stderr);
    let text = std::fs::read_to_string(other.join(".env")).unwrap();
    assert!(text.contains("_b_side2_") && text.contains("RAILGUN_BRANCH=side2"), "{text}");
    assert_eq!(repo.database(), repo.base, "the first checkout did not move");
    let _ = std::fs::remove_dir_all(&other);
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// With `up --pooler`'s two URLs (the app's DATABASE_URL, the tools' DIRECT_URL), both follow
/// the branch; every other line of `.env` stays as it was.
#[test]
fn both_urls_follow_and_other_lines_stay() {
    let repo = Repo::new("direct");
    let url = repo.env("DATABASE_URL").unwrap();
    std::fs::write(repo.dir.join(".env"), format!("# mine\nDATABASE_URL={url}\nDIRECT_URL={url}\nOTHER=1\n")).unwrap();
    repo.xtask(&["branch", "on"]).assert_ok();
    repo.git(&["checkout", "-q", "-b", "pooled"]).assert_ok();
    let (app, direct) = (repo.env("DATABASE_URL").unwrap(), repo.env("DIRECT_URL").unwrap());
    assert!(app.contains("_b_pooled_") && app == direct, "{app} {direct}");
    let text = std::fs::read_to_string(repo.dir.join(".env")).unwrap();
    assert!(text.starts_with("# mine\n") && text.contains("\nOTHER=1\n"), "{text}");
}

/// A switch killed between its clone and the comment that registers it leaves an unregistered
/// clone under the branch's name: the next switch takes it, never stuck on "already exists".
#[test]
fn a_clone_left_by_a_killed_switch_is_taken() {
    let repo = Repo::new("killed");
    repo.xtask(&["branch", "on"]).assert_ok();
    let left = dbkit::branch::database_for(&repo.base, "after-kill");
    admin().batch_execute(&format!("CREATE DATABASE \"{left}\" TEMPLATE {}", repo.base)).unwrap();
    let checkout = repo.git(&["checkout", "-b", "after-kill"]);
    checkout.assert_ok();
    assert!(checkout.stderr.contains("by a switch that was interrupted"), "{}", checkout.stderr);
    assert_eq!(repo.database(), left);
    repo.xtask(&["migration", "show", "--check"]).assert_ok();
}

/// A branch name someone else chose (quotes, `$`, `#`: git takes them) goes into `.env` so that
/// it reads back as written: the file still parses, nothing expands, the next command follows.
#[test]
fn a_branch_name_with_quotes_and_dollars_keeps_env_readable() {
    let repo = Repo::new("quotes");
    repo.xtask(&["branch", "on"]).assert_ok();
    let name = "it's-\"$HOME#x";
    repo.git(&["checkout", "-q", "-b", name]).assert_ok();
    repo.xtask(&["migration", "show", "--check"]).assert_ok();
    let list = repo.xtask(&["branch", "list", "--json"]);
    list.assert_ok();
    assert!(list.stdout.contains("it's-\\\"$HOME#x"), "{}", list.stdout);
}
