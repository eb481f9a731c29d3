//! `cargo xtask migration check` and `migration rebase`, driven through the real binary on a real
//! git repository in a temporary folder (commits on main, a feature branch) and the test's own
//! database on the test server (the confirmation by applying, the rebase's bookkeeping).

use std::path::{Path, PathBuf};
use std::process::Command;

use diesel::sql_types::Text;
use diesel::{QueryableByName, RunQueryDsl};
use tests::Run;

/// A project folder that is a git repository: main has `create_users`, the branch `feature`
/// is checked out from it.
struct Repo(tests::Folder);

impl std::ops::Deref for Repo {
    type Target = tests::Folder;
    fn deref(&self) -> &tests::Folder {
        &self.0
    }
}

const CREATE_USERS: &str = "CREATE TABLE users (\n  id serial PRIMARY KEY,\n  email text,\n  name text\n);\n";

impl Repo {
    fn new() -> Repo {
        let repo = Repo(tests::Folder::new("migration-check", None));
        repo.git(&["init", "-q", "-b", "main"]);
        std::fs::write(repo.dir.join(".gitignore"), "schema.rs\n").unwrap();
        repo.migration("2024-01-01-000000_create_users", CREATE_USERS);
        repo.commit("create users");
        repo.git(&["checkout", "-q", "-b", "feature"]);
        repo
    }

    fn migrations(&self) -> PathBuf {
        self.dir.join("migrations")
    }

    fn migration(&self, name: &str, up: &str) -> PathBuf {
        let dir = self.migrations().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("up.sql"), up).unwrap();
        std::fs::write(dir.join("down.sql"), "SELECT 1;\n").unwrap();
        dir
    }

    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(&self.dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn commit(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
    }

    /// Commits `migrations` on main, then comes back to the branch.
    fn on_main(&self, migrations: &[(&str, &str)]) {
        self.git(&["checkout", "-q", "main"]);
        for (name, up) in migrations {
            self.migration(name, up);
        }
        self.commit("main's migrations");
        self.git(&["checkout", "-q", "feature"]);
    }

    fn check(&self, args: &[&str]) -> Run {
        self.xtask(&[&["migration", "check"], args].concat())
    }

    fn folders(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.migrations())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The throwaway databases a run named that still exist on the test server (none may).
    fn left_over(&self, run: &Run) -> Vec<String> {
        let named: Vec<String> = run
            .stderr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("railgun_check_"))
            .map(|word| format!("'{word}'"))
            .collect();
        assert!(!named.is_empty(), "the run names its throwaway databases:\n{}", run.stderr);
        strings(self, &format!("SELECT datname AS s FROM pg_database WHERE datname IN ({})", named.join(", ")))
    }
}

#[derive(QueryableByName)]
struct S {
    #[diesel(sql_type = Text)]
    s: String,
}

fn strings(repo: &Repo, query: &str) -> Vec<String> {
    diesel::sql_query(query).load::<S>(&mut repo.db.connect().unwrap()).unwrap().into_iter().map(|r| r.s).collect()
}

fn up(name: &str) -> String {
    format!("migrations/{name}/up.sql")
}

#[test]
fn a_branch_without_conflicts_passes_and_names_its_uncommitted_migrations() {
    let repo = Repo::new();
    repo.on_main(&[("2024-02-01-000000_create_orgs", "CREATE TABLE orgs (id serial PRIMARY KEY);\n")]);
    // Another column of the same table, an index on another: no conflict.
    repo.migration("2024-03-01-000000_add_bio", "ALTER TABLE users ADD COLUMN bio text;\n");
    repo.commit("bio");
    repo.migration("2024-03-02-000000_index_email", "CREATE INDEX users_email ON users (email);\n");
    let run = repo.check(&["--against", "main"]);
    run.assert_ok();
    let all = run.all();
    assert!(all.contains("this branch adds 2 migration(s), main adds 1"), "{all}");
    assert!(all.contains("uncommitted migration(s) of the work tree: 2024-03-02-000000_index_email"), "{all}");
    assert!(all.contains("no conflicts with main"), "{all}");
    assert!(!all.contains("applied the merge base"), "no overlap, no --apply: nothing applied\n{all}");

    // --apply applies both sides anyway, in a throwaway database that is dropped.
    let run = repo.check(&["--against", "main", "--apply"]);
    run.assert_ok();
    assert!(
        run.stderr.contains("applied the merge base's 1 migration(s), then main's 1, then this branch's 2"),
        "{}",
        run.stderr
    );
    assert_eq!(repo.left_over(&run), Vec::<String>::new());

    // The default REF is main when there is no origin; --verbose says what each statement touches.
    let run = repo.check(&["--verbose"]);
    run.assert_ok();
    assert!(
        run.stderr.contains(&format!("{}:1: creates column users.bio", up("2024-03-01-000000_add_bio"))),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("{}:1: uses column users.email", up("2024-03-02-000000_index_email"))),
        "{}",
        run.stderr
    );
}

#[test]
fn duplicate_versions_and_names_are_conflicts() {
    let repo = Repo::new();
    repo.on_main(&[
        ("2024-02-01-000000_create_orgs", "CREATE TABLE orgs (id serial PRIMARY KEY);\n"),
        ("2024-02-02-000000_create_teams", "CREATE TABLE teams (id serial PRIMARY KEY);\n"),
    ]);
    repo.migration("2024-02-01-000000_create_tags", "CREATE TABLE tags (id serial PRIMARY KEY);\n");
    repo.migration("2024-03-01-000000_create_teams", "CREATE TABLE squads (id serial PRIMARY KEY);\n");
    repo.commit("branch");
    let run = repo.check(&["--against", "main"]);
    run.assert_fails_with("conflict(s) with main");
    assert_eq!(run.code, Some(1));
    let out = &run.stdout;
    assert!(out.contains("conflict: duplicate version 20240201000000"), "{out}");
    assert!(
        out.contains(&format!(
            "  this branch: {}:1: 2024-02-01-000000_create_tags",
            up("2024-02-01-000000_create_tags")
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("  main: {}:1: 2024-02-01-000000_create_orgs", up("2024-02-01-000000_create_orgs"))),
        "{out}"
    );
    assert!(out.contains("conflict: duplicate name create_teams"), "{out}");
    assert!(out.contains(&up("2024-02-02-000000_create_teams")), "{out}");
}

#[test]
fn a_migration_that_sorts_before_refs_newest_is_out_of_order() {
    let repo = Repo::new();
    repo.on_main(&[("2024-05-01-000000_create_orgs", "CREATE TABLE orgs (id serial PRIMARY KEY);\n")]);
    repo.migration("2024-03-01-000000_create_tags", "CREATE TABLE tags (id serial PRIMARY KEY);\n");
    repo.commit("branch");
    let run = repo.check(&["--against", "main"]);
    run.assert_fails_with("migration rebase --onto main");
    assert!(
        run.stdout.contains("conflict: out of order: 2024-03-01-000000_create_tags sorts before main's newest, 2024-05-01-000000_create_orgs"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("main: {}:1: version 20240501000000", up("2024-05-01-000000_create_orgs"))),
        "{}",
        run.stdout
    );

    // Older than a migration the merge base has: out of order too, though main added nothing.
    let repo = Repo::new();
    repo.migration("2023-12-01-000000_create_tags", "CREATE TABLE tags (id serial PRIMARY KEY);\n");
    let run = repo.check(&["--against", "main"]);
    run.assert_fails_with("1 conflict(s) with main");
    assert!(run.stdout.contains("sorts before main's newest, 2024-01-01-000000_create_users"), "{}", run.stdout);
}

#[test]
fn both_sides_touching_one_table_is_a_conflict_confirmed_by_applying() {
    let repo = Repo::new();
    repo.on_main(&[(
        "2024-02-01-000000_rename_users",
        "-- users are accounts now\nALTER TABLE users RENAME TO accounts;\n",
    )]);
    repo.migration("2024-03-01-000000_seed_users", "INSERT INTO users (email)\nVALUES ('a@example.com');\n");
    repo.commit("branch");
    let run = repo.check(&["--against", "main"]);
    run.assert_fails_with("1 conflict(s) with main");
    let out = &run.stdout;
    assert!(out.contains("conflict: both sides touch table users"), "{out}");
    assert!(
        out.contains(&format!("this branch: {}:1: writes rows of table users", up("2024-03-01-000000_seed_users"))),
        "{out}"
    );
    assert!(out.contains(&format!("main: {}:2: renames table users", up("2024-02-01-000000_rename_users"))), "{out}");
    assert!(out.contains("confirmed by applying: 2024-03-01-000000_seed_users fails after main's"), "{out}");
    assert!(out.contains("relation \"users\" does not exist"), "Postgres's words: {out}");
    assert_eq!(repo.left_over(&run), Vec::<String>::new(), "the throwaway databases are dropped");
}

#[test]
fn both_sides_changing_one_column_is_a_conflict_even_when_both_apply() {
    let repo = Repo::new();
    repo.on_main(&[("2024-02-01-000000_email_default", "ALTER TABLE users ALTER COLUMN email SET DEFAULT 'x';\n")]);
    repo.migration(
        "2024-03-01-000000_email_not_null",
        "ALTER TABLE users\n  ADD COLUMN bio text,\n  ALTER COLUMN \"email\" SET NOT NULL;\n",
    );
    let run = repo.check(&["--against", "main"]);
    run.assert_fails_with("1 conflict(s) with main");
    let out = &run.stdout;
    assert!(out.contains("conflict: both sides touch column users.email"), "{out}");
    assert!(
        out.contains(&format!("this branch: {}:3: alters column users.email", up("2024-03-01-000000_email_not_null"))),
        "{out}"
    );
    assert!(
        out.contains(&format!("main: {}:1: alters column users.email", up("2024-02-01-000000_email_default"))),
        "{out}"
    );
    assert!(out.contains("not confirmed by applying: both apply"), "{out}");
    assert!(run.stderr.contains("uncommitted"), "{}", run.stderr);
}

#[test]
fn a_conflict_only_applying_finds() {
    let repo = Repo::new();
    // A table's row type takes the name of the type main creates: the statements name
    // different kinds of objects, Postgres refuses the second.
    repo.on_main(&[("2024-02-01-000000_create_mood", "CREATE TYPE mood AS ENUM ('happy', 'sad');\n")]);
    repo.migration("2024-03-01-000000_create_mood_table", "CREATE TABLE mood (\n  id serial PRIMARY KEY\n);\n");
    repo.commit("branch");
    let run = repo.check(&["--against", "main"]);
    run.assert_ok();
    let run = repo.check(&["--against", "main", "--apply"]);
    run.assert_fails_with("1 conflict(s) with main");
    let out = &run.stdout;
    assert!(
        out.contains("conflict: found by applying: 2024-03-01-000000_create_mood_table fails after main's migrations, and applies without them"),
        "{out}"
    );
    assert!(out.contains(&format!("this branch: {}:1:", up("2024-03-01-000000_create_mood_table"))), "{out}");
    assert!(out.contains("type \"mood\" already exists"), "{out}");
    assert!(
        out.contains(&format!(
            "main: {}:1: main's migrations, applied before it (1)",
            up("2024-02-01-000000_create_mood")
        )),
        "{out}"
    );
    assert_eq!(repo.left_over(&run), Vec::<String>::new());
}

#[test]
fn a_ref_that_is_no_commit_is_refused_with_the_fix() {
    let repo = Repo::new();
    repo.migration("2024-03-01-000000_create_tags", "CREATE TABLE tags (id serial PRIMARY KEY);\n");
    let run = repo.check(&["--against", "origin/nope"]);
    run.assert_fails_with("origin/nope is not a commit");
    assert!(run.stderr.contains("hint: fetch it"), "{}", run.stderr);
    assert_eq!(run.code, Some(1));
}

#[test]
fn rebase_renames_after_refs_newest_mends_the_bookkeeping_and_regenerates_schema() {
    let repo = Repo::new();
    repo.migration("2024-03-01-000000_create_tags", "CREATE TABLE tags (id serial PRIMARY KEY);\n");
    repo.migration("2024-03-02-000000_add_tag_name", "ALTER TABLE tags ADD COLUMN name text;\n");
    repo.commit("branch");
    repo.xtask(&["migration", "run"]).assert_ok();
    repo.on_main(&[("2024-05-01-000000_create_orgs", "CREATE TABLE orgs (id serial PRIMARY KEY);\n")]);
    repo.check(&["--against", "main"]).assert_fails_with("migration rebase --onto main");
    let checksum_before =
        strings(&repo, "SELECT checksum AS s FROM __railgun_migration_checksums WHERE version = '20240302000000'");

    // A dirty migrations folder (an edit of a migration the merge base has) is refused.
    let users = repo.migrations().join("2024-01-01-000000_create_users/up.sql");
    std::fs::write(&users, format!("{CREATE_USERS}-- edited\n")).unwrap();
    repo.xtask(&["migration", "rebase", "--onto", "main"])
        .assert_fails_with("uncommitted changes besides this branch's new migrations: 2024-01-01-000000_create_users");
    std::fs::write(&users, CREATE_USERS).unwrap();

    let dry = repo.xtask(&["migration", "rebase", "--onto", "main", "--dry-run"]);
    dry.assert_ok();
    assert_eq!(dry.stdout.lines().count(), 2, "{}", dry.stdout);
    assert_eq!(repo.folders().len(), 3, "a dry run renames nothing");

    std::fs::remove_file(repo.dir.join("schema.rs")).unwrap();
    let run = repo.xtask(&["migration", "rebase", "--onto", "main"]);
    run.assert_ok();
    assert_eq!(run.stdout, dry.stdout, "the dry run showed what was done");
    let folders = repo.folders();
    assert_eq!(folders[0], "2024-01-01-000000_create_users");
    let (tags, name) = (&folders[1], &folders[2]);
    assert!(tags.ends_with("_create_tags") && name.ends_with("_add_tag_name"), "order kept: {folders:?}");
    let version = |folder: &str| folder.split('_').next().unwrap().replace('-', "");
    assert!(version(tags).as_str() > "20240501000000" && version(name) > version(tags), "{folders:?}");
    assert!(run.stdout.contains(&format!("2024-03-01-000000_create_tags -> {tags}")), "{}", run.stdout);

    // Tracked folders were moved with git mv: staged as renames.
    let status = repo.git(&["status", "--porcelain"]);
    assert!(
        status.contains(&format!("R  migrations/2024-03-01-000000_create_tags/up.sql -> migrations/{tags}/up.sql")),
        "{status}"
    );

    // The local bookkeeping follows, checksum and folder name with it.
    assert_eq!(
        strings(&repo, "SELECT version AS s FROM __diesel_schema_migrations ORDER BY version"),
        ["20240101000000".to_string(), version(tags), version(name)]
    );
    assert_eq!(
        strings(
            &repo,
            &format!("SELECT name AS s FROM __railgun_migration_checksums WHERE version = '{}'", version(name))
        ),
        [name.as_str()]
    );
    assert_eq!(
        strings(
            &repo,
            &format!("SELECT checksum AS s FROM __railgun_migration_checksums WHERE version = '{}'", version(name))
        ),
        checksum_before
    );
    let schema = std::fs::read_to_string(repo.dir.join("schema.rs")).expect("schema.rs regenerated");
    assert!(schema.contains("tags (id)"), "{schema}");
    let show = repo.xtask(&["migration", "show", "--check"]);
    show.assert_ok();

    repo.check(&["--against", "main"]).assert_ok();
    repo.commit("rebased");
    repo.check(&["--against", "main"]).assert_ok();
    let again = repo.xtask(&["migration", "rebase", "--onto", "main"]);
    again.assert_ok();
    assert!(again.stderr.contains("nothing to rename"), "{}", again.stderr);
}

#[test]
fn rebase_renames_untracked_migrations_without_git() {
    let repo = Repo::new();
    repo.on_main(&[("2024-05-01-000000_create_orgs", "CREATE TABLE orgs (id serial PRIMARY KEY);\n")]);
    repo.migration("2024-03-01-000000_create_tags", "CREATE TABLE tags (id serial PRIMARY KEY);\n");
    let run = repo.xtask(&["migration", "rebase", "--onto", "main", "--files-only"]);
    run.assert_ok();
    let folders = repo.folders();
    assert!(folders[1].ends_with("_create_tags") && folders[1].as_str() > "2024-05-01", "{folders:?}");
    let status = repo.git(&["status", "--porcelain", "--untracked-files=all"]);
    assert!(status.contains(&format!("?? migrations/{}/up.sql", folders[1])), "{status}");
    assert!(!Path::new(&repo.migrations().join("2024-03-01-000000_create_tags")).exists());
}

#[test]
fn a_migration_failing_on_its_own_is_told_from_a_conflict() {
    let repo = Repo::new();
    repo.on_main(&[("2024-02-01-000000_create_orgs", "CREATE TABLE orgs (id serial PRIMARY KEY);\n")]);
    repo.migration(
        "2024-03-01-000000_broken",
        "CREATE TABLE tags (id serial PRIMARY KEY);\nALTER TABLE nope ADD COLUMN x int;\n",
    );
    let run = repo.check(&["--against", "main", "--apply"]);
    run.assert_fails_with("1 conflict(s) with main");
    assert!(
        run.stdout.contains("conflict: 2024-03-01-000000_broken fails on its own (not a conflict with main)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("this branch: {}:2: fails on the merge base's schema", up("2024-03-01-000000_broken"))),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("relation \"nope\" does not exist"), "{}", run.stdout);
}

#[test]
fn without_a_server_the_confirmation_is_skipped_and_said() {
    let repo = Repo::new();
    repo.on_main(&[("2024-02-01-000000_drop_name", "ALTER TABLE users DROP COLUMN name;\n")]);
    repo.migration("2024-03-01-000000_name_default", "ALTER TABLE users ALTER COLUMN name SET DEFAULT '';\n");
    let out = Command::new(tests::xtask_bin())
        .args(["--database-url", "postgres://nobody:secret@127.0.0.1:1/none", "--config-file"])
        .arg(repo.dir.join("diesel.toml"))
        .args(["migration", "check", "--against", "main"])
        .current_dir(&repo.dir)
        .env("RAILGUN_ENV_FILE", repo.dir.join("no.env"))
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let run = Run::from(out);
    run.assert_fails_with("not confirmed by applying: no server answered");
    assert!(run.stdout.contains("conflict: both sides touch column users.name"), "{}", run.stdout);
    assert!(!run.all().contains("secret"), "the password is never shown:\n{}", run.all());
}
