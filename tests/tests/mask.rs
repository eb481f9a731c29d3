//! `cargo xtask db copy --mask`, driven through the real binary: a generated source with
//! personal data, masked on its way into other databases, then read back whole with pg_dump.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use db::testing::TestDb;
use diesel::connection::SimpleConnection;
use tests::{Run, text, xtask_bin};

/// Users with emails, names and phones; orders referencing users by id and by email; teams and
/// users referencing each other (a foreign key cycle); unique emails, also case-insensitively.
const SOURCE: &str = r#"
CREATE TABLE teams (id bigserial PRIMARY KEY, label text NOT NULL, owner_id bigint);
CREATE TABLE users (
    id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, name text NOT NULL, phone text,
    country text NOT NULL, team_id bigint REFERENCES teams, created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));
ALTER TABLE teams ADD FOREIGN KEY (owner_id) REFERENCES users;
CREATE TABLE orders (
    id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES users,
    contact_email text REFERENCES users (email), total_cents int NOT NULL
);
INSERT INTO teams (label) SELECT 'team ' || g FROM generate_series(1, 20) g;
INSERT INTO users (email, name, phone, country, team_id)
SELECT 'person' || g || '@mail' || g % 7 || '.test', 'Firstname' || g || ' Lastname' || g,
       CASE WHEN g % 10 = 0 THEN NULL ELSE '+44 20 7946 ' || lpad(g::text, 4, '0') END,
       (ARRAY['NL', 'FR', 'US'])[1 + g % 3], 1 + g % 20
FROM generate_series(1, 2000) g;
UPDATE teams SET owner_id = id * 3;
INSERT INTO orders (user_id, contact_email, total_cents)
SELECT 1 + g % 2000, CASE WHEN g % 3 = 0 THEN 'person' || (1 + g % 2000) || '@mail' || (1 + g % 2000) % 7 || '.test' END, g
FROM generate_series(1, 6000) g;
"#;

const RULES: &str = r#"[mask]
"users.email" = "email"
"users.name" = "name"
"users.phone" = "phone"
"users.country" = "keep"
"orders.contact_email" = "email"
"#;

/// A folder of the test's own (diesel.toml, railgun.toml, .env, an empty migrations folder),
/// removed when the test passes.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str, rules: &str) -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("railgun-mask-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("migrations")).unwrap();
        std::fs::write(dir.join("diesel.toml"), "").unwrap();
        std::fs::write(dir.join("railgun.toml"), rules).unwrap();
        Dir(dir)
    }

    /// The xtask in this folder, with its config, migrations and `.env`; no key in the environment.
    fn xtask(&self, args: &[&str]) -> Run {
        let config = self.0.join("diesel.toml");
        let migrations = self.0.join("migrations");
        Command::new(xtask_bin())
            .args(["--config-file", config.to_str().unwrap(), "--migration-dir", migrations.to_str().unwrap()])
            .args(args)
            .current_dir(&self.0)
            .env("RAILGUN_ENV_FILE", self.0.join(".env"))
            .env_remove("RAILGUN_MASK_KEY")
            .env_remove("DATABASE_URL")
            .env_remove("APP_ENV")
            .env_remove("DIESEL_CONFIG_FILE")
            .env_remove("RAILGUN_PGTOOLS")
            .stdin(Stdio::null())
            .output()
            .expect("run xtask")
            .into()
    }

    fn copy(&self, from: &TestDb, to: &TestDb, extra: &[&str]) -> Run {
        let mut args = vec![
            "db",
            "copy",
            "--from",
            from.direct_url().as_str(),
            "--to",
            to.direct_url().as_str(),
            "--yes",
            "--mask",
        ];
        args.extend_from_slice(extra);
        self.xtask(&args)
    }

    /// Files pg_dump's backups would have left in `backups/`.
    fn backups(&self) -> Vec<String> {
        std::fs::read_dir(self.0.join("backups"))
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    }

    /// The whole of `db` as pg_dump's plain SQL (through `db backup`).
    fn dump(&self, db: &TestDb) -> String {
        let out = self.0.join("dumps");
        let run = self.xtask(&["--database-url", db.direct_url().as_str(), "db", "backup", out.to_str().unwrap()]);
        run.assert_ok();
        let path = Path::new(run.stdout.lines().last().unwrap()).to_path_buf();
        let mut sql = String::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(&path).unwrap()).read_to_string(&mut sql).unwrap();
        std::fs::remove_file(path).unwrap();
        sql
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn exec(db: &TestDb, sql: &str) {
    db.conn().unwrap().batch_execute(sql).unwrap();
}

/// Each table's row count and a digest of its rows in id order.
fn contents(db: &TestDb) -> String {
    ["teams", "users", "orders"]
        .iter()
        .map(|t| {
            let sql = format!(
                "SELECT format('{t}: %s rows, %s', count(*), md5(string_agg(x::text, E'\\n' ORDER BY x.id))) AS text FROM {t} x"
            );
            text(db, &sql)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_masked_copy_leaves_no_personal_data_and_keeps_every_constraint() {
    let dir = Dir::new("copy", RULES);
    let source = TestDb::empty().unwrap();
    exec(&source, SOURCE);
    let (target, again) = (TestDb::empty().unwrap(), TestDb::empty().unwrap());

    let run = dir.copy(&source, &target, &[]);
    run.assert_ok();
    // No key anywhere: one was made and kept in .env, never shown.
    let env = std::fs::read_to_string(dir.0.join(".env")).unwrap();
    let key = env.lines().find_map(|l| l.strip_prefix("RAILGUN_MASK_KEY=")).expect("a key in .env").to_string();
    assert!(key.len() >= 32, "{env}");
    assert!(!run.all().contains(&key), "the key was printed:\n{}", run.all());
    assert!(run.stderr.contains("made a masking key"), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "orders.contact_email → users.email (foreign key orders_contact_email_fkey): both masked with \"email\""
        ),
        "{}",
        run.stderr
    );
    // The source's rows never reached this machine's disk: no backup of it was written.
    assert_eq!(dir.backups(), Vec::<String>::new());

    // Nothing of a source email, name or phone is anywhere in the target, in any form.
    let dumped = dir.dump(&target);
    assert!(dumped.contains("COPY public.users"), "{dumped}");
    for fragment in ["person", "@mail", ".test", "Firstname", "Lastname", "+44 20 7946"] {
        assert!(!dumped.contains(fragment), "`{fragment}` of the source is in the masked copy");
    }
    // Every row is there, every constraint exists and holds, and masked values still join.
    let source_contents = contents(&source);
    let counts = |c: &str| c.lines().map(|l| l.split(',').next().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(counts(&contents(&target)), counts(&source_contents));
    let constraints = "SELECT string_agg(format('%s %s %s', conrelid::regclass, conname, convalidated), ', ' ORDER BY conrelid::regclass::text, conname) AS text FROM pg_constraint WHERE conrelid IN ('users'::regclass, 'orders'::regclass, 'teams'::regclass)";
    assert_eq!(text(&target, constraints), text(&source, constraints));
    assert!(text(&target, constraints).contains("orders orders_contact_email_fkey t"));
    let indexes = "SELECT string_agg(indexdef, E'\\n' ORDER BY indexname) AS text FROM pg_indexes WHERE tablename IN ('users', 'orders', 'teams')";
    assert_eq!(text(&target, indexes), text(&source, indexes));
    let joined =
        "SELECT count(*)::text AS text FROM orders o JOIN users u ON u.email = o.contact_email AND u.id = o.user_id";
    assert_eq!(text(&target, joined), "2000");
    assert_eq!(
        text(&target, "SELECT count(*)::text AS text FROM users WHERE email !~ '^u[0-9a-f]{16}@example\\.invalid$'"),
        "0"
    );
    assert_eq!(text(&target, "SELECT count(*)::text AS text FROM users WHERE phone IS NULL"), "200");
    assert_eq!(
        text(&target, "SELECT string_agg(country, ',' ORDER BY id) AS text FROM users"),
        text(&source, "SELECT string_agg(country, ',' ORDER BY id) AS text FROM users")
    );
    // Sequences go on where the source's are.
    let next = "SELECT nextval('users_id_seq')::text AS text";
    assert_eq!(text(&target, next), text(&source, next));

    // Another run (the key now from .env) gives the same data.
    let run = dir.copy(&source, &again, &[]);
    run.assert_ok();
    assert!(!run.stderr.contains("made a masking key"), "{}", run.stderr);
    assert_eq!(contents(&again), contents(&target));
    assert_ne!(contents(&again), source_contents);
}

#[test]
fn an_unruled_personal_column_stops_the_copy_before_anything_moves() {
    let rules =
        "[mask]\n\"users.email\" = \"email\"\n\"users.country\" = \"keep\"\n\"orders.contact_email\" = \"email\"\n";
    let dir = Dir::new("refuse", rules);
    let source = TestDb::empty().unwrap();
    exec(&source, SOURCE);
    let target = TestDb::empty().unwrap();
    exec(&target, "CREATE TABLE keep_me (note text); INSERT INTO keep_me VALUES ('untouched');");

    let run = dir.copy(&source, &target, &[]);
    run.assert_fails_with("2 column(s) look like personal data and have no rule");
    assert!(run.stderr.contains("\"users.name\" = \"name\""), "{}", run.stderr);
    assert!(run.stderr.contains("\"users.phone\" = \"phone\""), "{}", run.stderr);
    assert!(run.stderr.contains("--unmasked"), "{}", run.stderr);
    assert_eq!(text(&target, "SELECT string_agg(note, ',') AS text FROM keep_me"), "untouched");
    assert_eq!(text(&target, "SELECT count(*)::text AS text FROM pg_tables WHERE tablename = 'users'"), "0");
    assert_eq!(dir.backups(), Vec::<String>::new());
    assert!(!dir.0.join(".env").exists(), "no key is made for a refused copy");

    // A rule for a column the source lacks, or two sides of a foreign key masked differently: refused too.
    std::fs::write(dir.0.join("railgun.toml"), format!("{rules}\"users.nmae\" = \"name\"\n")).unwrap();
    dir.copy(&source, &target, &["--unmasked"]).assert_fails_with("users.nmae");
    std::fs::write(dir.0.join("railgun.toml"), "[mask]\n\"users.email\" = \"email\"\n").unwrap();
    dir.copy(&source, &target, &["--unmasked"]).assert_fails_with("orders_contact_email_fkey");
    assert_eq!(text(&target, "SELECT string_agg(note, ',') AS text FROM keep_me"), "untouched");

    // --unmasked copies them as they are, and says which.
    std::fs::write(dir.0.join("railgun.toml"), rules).unwrap();
    let run = dir.copy(&source, &target, &["--unmasked", "--no-safety-backup"]);
    run.assert_ok();
    assert!(
        run.stderr.contains("copying 2 personal-data column(s) unmasked, as --unmasked asked: users.name, users.phone"),
        "{}",
        run.stderr
    );
    assert_eq!(
        text(&target, "SELECT name AS text FROM users WHERE id = 5"),
        text(&source, "SELECT name AS text FROM users WHERE id = 5")
    );
}

/// Rows of `table` in `db`.
fn count(db: &TestDb, table: &str) -> i64 {
    text(db, &format!("SELECT count(*)::text AS text FROM {table}")).parse().unwrap()
}

/// Rows whose reference finds no parent, through every foreign key of the test's tables.
fn orphans(db: &TestDb) -> String {
    text(
        db,
        "SELECT format('%s %s %s', (SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = o.user_id)),
                (SELECT count(*) FROM orders o WHERE o.contact_email IS NOT NULL AND NOT EXISTS (SELECT 1 FROM users u WHERE u.email = o.contact_email)),
                (SELECT count(*) FROM users u WHERE u.team_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM teams t WHERE t.id = u.team_id))
                + (SELECT count(*) FROM teams t WHERE t.owner_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = t.owner_id))) AS text",
    )
}

#[test]
fn a_ten_percent_sample_keeps_every_constraint() {
    let dir = Dir::new("sample", RULES);
    let source = TestDb::empty().unwrap();
    exec(&source, SOURCE);
    let (target, again) = (TestDb::empty().unwrap(), TestDb::empty().unwrap());

    let run = dir.copy(&source, &target, &["--sample", "10"]);
    run.assert_ok();
    assert!(run.stderr.contains("subset: a 10 % sample"), "{}", run.stderr);
    let orders = count(&target, "orders");
    assert!((400..=800).contains(&orders), "{orders} orders of 6000");
    let users = count(&target, "users");
    assert!(users < 2000 && users >= count(&target, "(SELECT DISTINCT user_id FROM orders) x"), "{users} users");
    assert_eq!(orphans(&target), "0 0 0");
    let constraints = "SELECT string_agg(format('%s %s %s', conrelid::regclass, conname, convalidated), ', ' ORDER BY conrelid::regclass::text, conname) AS text FROM pg_constraint WHERE conrelid IN ('users'::regclass, 'orders'::regclass, 'teams'::regclass)";
    assert_eq!(text(&target, constraints), text(&source, constraints));
    let dumped = dir.dump(&target);
    for fragment in ["person", "Firstname", "+44 20 7946"] {
        assert!(!dumped.contains(fragment), "`{fragment}` of the source is in the masked sample");
    }
    // The same rows for the same data.
    dir.copy(&source, &again, &["--sample", "10"]).assert_ok();
    assert_eq!(contents(&again), contents(&target));

    // --where, unmasked: exactly those orders, and what they reference (teams, not named, whole,
    // with every user owning one).
    let run = dir.xtask(&[
        "db",
        "copy",
        "--from",
        source.direct_url().as_str(),
        "--to",
        again.direct_url().as_str(),
        "--yes",
        "--no-safety-backup",
        "--where",
        "orders: id <= 30",
    ]);
    run.assert_ok();
    assert_eq!(count(&again, "orders"), 30);
    assert_eq!(count(&again, "teams"), 20);
    assert_eq!(orphans(&again), "0 0 0");
    assert_eq!(
        text(&again, "SELECT string_agg(email, ',' ORDER BY id) AS text FROM users WHERE id IN (2, 3, 60)"),
        text(&source, "SELECT string_agg(email, ',' ORDER BY id) AS text FROM users WHERE id IN (2, 3, 60)")
    );
    dir.xtask(&[
        "db",
        "copy",
        "--from",
        source.direct_url().as_str(),
        "--to",
        again.direct_url().as_str(),
        "--yes",
        "--where",
        "nope: true",
    ])
    .assert_fails_with("--where names public.nope");
}

/// Users (in one of 5 countries, some referred by another), 5 orders each (a few a gift for
/// another user), 3 items per order (each of 1200 products: a parent big enough to follow, but
/// smaller than orders).
const SHOP: &str = r#"
CREATE TABLE countries (id int PRIMARY KEY, code text NOT NULL);
CREATE TABLE products (id int PRIMARY KEY, label text NOT NULL);
CREATE TABLE users (id int PRIMARY KEY, country_id int NOT NULL REFERENCES countries, referrer_id int REFERENCES users);
CREATE TABLE orders (id int PRIMARY KEY, user_id int NOT NULL REFERENCES users, gift_for int REFERENCES users);
CREATE TABLE items (id int PRIMARY KEY, order_id int NOT NULL REFERENCES orders, product_id int NOT NULL REFERENCES products);
INSERT INTO countries SELECT g, 'C' || g FROM generate_series(1, 5) g;
INSERT INTO products SELECT g, 'P' || g FROM generate_series(1, 1200) g;
INSERT INTO users SELECT g, 1 + g % 5, CASE WHEN g % 50 = 0 THEN g / 2 END FROM generate_series(1, 3000) g;
INSERT INTO orders SELECT g, 1 + g % 3000, CASE WHEN g % 100 = 0 THEN 1 + g * 7 % 3000 END FROM generate_series(1, 15000) g;
INSERT INTO items SELECT g, 1 + g % 15000, 1 + g % 1200 FROM generate_series(1, 45000) g;
"#;

/// Rows of the shop whose reference finds no parent, through each of its foreign keys.
fn shop_orphans(db: &TestDb) -> String {
    text(
        db,
        "SELECT format('%s %s %s %s %s %s',
                (SELECT count(*) FROM users u WHERE NOT EXISTS (SELECT 1 FROM countries c WHERE c.id = u.country_id)),
                (SELECT count(*) FROM users u WHERE u.referrer_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM users r WHERE r.id = u.referrer_id)),
                (SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = o.user_id)),
                (SELECT count(*) FROM orders o WHERE o.gift_for IS NOT NULL AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = o.gift_for)),
                (SELECT count(*) FROM items i WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = i.order_id)),
                (SELECT count(*) FROM items i WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.id = i.product_id))) AS text",
    )
}

#[test]
fn a_sample_keeps_about_its_share_of_each_table() {
    let dir = Dir::new("share", "");
    let source = TestDb::empty().unwrap();
    exec(&source, SHOP);
    let target = TestDb::empty().unwrap();
    let copy = |extra: &[&str]| {
        let args =
            ["db", "copy", "--from", source.direct_url().as_str(), "--to", target.direct_url().as_str(), "--yes"];
        dir.xtask(&[&args[..], &["--no-safety-backup"], extra].concat())
    };

    // 10 % of the users, their orders and those orders' items: each table near 10 %, not the
    // users of 10 % of the orders (4 in 10 users); the small tables whole as far as referenced.
    let run = copy(&["--sample", "10"]);
    run.assert_ok();
    for said in [
        "public.orders: the rows of the chosen public.users (orders_user_id_fkey)",
        "public.items: the rows of the chosen public.orders (items_order_id_fkey)",
        "public.users: a 10 % sample and ",
        "public.countries: a 10 % sample and ",
    ] {
        assert!(run.stderr.contains(said), "{said}\n{}", run.stderr);
    }
    let users = count(&target, "users");
    assert!((200..=450).contains(&users), "{users} users of 3000");
    let orders = count(&target, "orders");
    assert!((1000..=2000).contains(&orders), "{orders} orders of 15000");
    assert_eq!(count(&target, "items"), 3 * orders, "every item of every order taken");
    assert_eq!(count(&target, "countries"), 5);
    assert_eq!(shop_orphans(&target), "0 0 0 0 0 0");
    let constraints = "SELECT string_agg(format('%s %s %s', conrelid::regclass, conname, convalidated), ', ' ORDER BY conrelid::regclass::text, conname) AS text FROM pg_constraint WHERE contype = 'f'";
    assert_eq!(text(&target, constraints), text(&source, constraints));

    // --where on the parent: its rows, all their orders and items, and what those reference.
    copy(&["--sample", "10", "--where", "users: id <= 100"]).assert_ok();
    assert_eq!(count(&target, "orders"), 500);
    assert_eq!(count(&target, "items"), 1500);
    assert_eq!(count(&target, "users WHERE id <= 100"), 100);
    assert_eq!(shop_orphans(&target), "0 0 0 0 0 0");
}

#[test]
fn a_masked_copy_into_a_database_of_an_ordinary_role_replaces_what_is_there() {
    let role = format!("mask_owner_{}", std::process::id());
    // Declared first, dropped last: after the database that belongs to the role is gone.
    let _role = tests::RoleCleanup { server: TestDb::empty().unwrap(), roles: vec![role.clone()] };
    let dir = Dir::new("owner", RULES);
    let source = TestDb::empty().unwrap();
    exec(&source, SOURCE);
    // A provider's database: owned by an ordinary role, which the load then runs as.
    let target = TestDb::empty().unwrap();
    let to = tests::owned_by_new_role(&target, &role);
    let copy = |extra: &[&str]| {
        let mut args =
            vec!["db", "copy", "--from", source.direct_url().as_str(), "--to", to.as_str(), "--yes", "--mask"];
        args.extend_from_slice(extra);
        dir.xtask(&args)
    };
    copy(&[]).assert_ok();
    let first = contents(&target);
    // Again over the copy (its foreign keys dropped before its tables), then a sample over that.
    copy(&["--no-safety-backup"]).assert_ok();
    assert_eq!(contents(&target), first);
    copy(&["--no-safety-backup", "--sample", "10"]).assert_ok();
    assert!(count(&target, "orders") < 1000);
    assert_eq!(orphans(&target), "0 0 0");
    assert_eq!(text(&target, "SELECT tableowner AS text FROM pg_tables WHERE tablename = 'users'"), role);
}

#[test]
fn a_masked_backup_holds_no_personal_data_and_restores() {
    let dir = Dir::new("backup", RULES);
    let source = TestDb::empty().unwrap();
    exec(&source, SOURCE);
    let out = dir.0.join("masked");
    let run =
        dir.xtask(&["--database-url", source.direct_url().as_str(), "db", "backup", "--mask", out.to_str().unwrap()]);
    run.assert_ok();
    let path = PathBuf::from(run.stdout.lines().last().unwrap());
    assert!(path.starts_with(&out), "{}", run.stdout);

    // gunzip and look: pg_dump's format, the rows there, nothing of a source email, name or phone.
    let mut sql = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&path).unwrap()).read_to_string(&mut sql).unwrap();
    assert!(sql.starts_with("--\n-- PostgreSQL database dump\n"), "{}", &sql[..200.min(sql.len())]);
    assert!(sql.contains("COPY \"public\".\"users\" (") && sql.contains("@example.invalid"), "{sql}");
    for fragment in ["person", "@mail", ".test", "Firstname", "Lastname", "+44 20 7946"] {
        assert!(!sql.contains(fragment), "`{fragment}` of the source is in the masked backup");
    }
    // The unmasked rows were never on disk: the backup folder holds the backup alone.
    let files: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files.len(), 1, "{files:?}");

    // It verifies and restores like any backup, constraints and all.
    dir.xtask(&["db", "verify", path.to_str().unwrap()]).assert_ok();
    let target = TestDb::empty().unwrap();
    exec(&target, "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);");
    let run = dir.xtask(&[
        "--database-url",
        target.direct_url().as_str(),
        "db",
        "restore",
        path.to_str().unwrap(),
        "--yes",
        "--no-safety-backup",
    ]);
    run.assert_ok();
    // Again over what it restored: its --clean prelude drops the foreign keys before their tables.
    let args = ["--database-url", target.direct_url().as_str(), "db", "restore", path.to_str().unwrap(), "--yes"];
    dir.xtask(&[&args[..], &["--no-safety-backup"]].concat()).assert_ok();
    let counts = |c: &str| c.lines().map(|l| l.split(',').next().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(counts(&contents(&target)), counts(&contents(&source)));
    assert_eq!(orphans(&target), "0 0 0");
    let constraints = "SELECT string_agg(format('%s %s %s', conrelid::regclass, conname, convalidated), ', ' ORDER BY conrelid::regclass::text, conname) AS text FROM pg_constraint WHERE conrelid IN ('users'::regclass, 'orders'::regclass, 'teams'::regclass)";
    assert_eq!(text(&target, constraints), text(&source, constraints));
    let joined =
        "SELECT count(*)::text AS text FROM orders o JOIN users u ON u.email = o.contact_email AND u.id = o.user_id";
    assert_eq!(text(&target, joined), "2000");
    let next = "SELECT nextval('users_id_seq')::text AS text";
    assert_eq!(text(&target, next), text(&source, next));
    // The same data as a masked copy gives (one key, one masking).
    let copied = TestDb::empty().unwrap();
    dir.copy(&source, &copied, &[]).assert_ok();
    assert_eq!(contents(&target), contents(&copied));

    // Into a provider's database (an ordinary role's, which loads it itself), twice: the second
    // time its --clean prelude drops the foreign keys before the tables they reference.
    let role = format!("mask_backup_{}", std::process::id());
    let _role = tests::RoleCleanup { server: TestDb::empty().unwrap(), roles: vec![role.clone()] };
    let owned = TestDb::empty().unwrap();
    let as_owner = tests::owned_by_new_role(&owned, &role);
    for _ in 0..2 {
        let args = ["--database-url", as_owner.as_str(), "db", "restore", path.to_str().unwrap(), "--yes"];
        dir.xtask(&[&args[..], &["--no-safety-backup"]].concat()).assert_ok();
    }
    assert_eq!(contents(&owned), contents(&target));
    assert_eq!(orphans(&owned), "0 0 0");

    // Refused like a masked copy, before anything is written.
    let rules =
        "[mask]\n\"users.email\" = \"email\"\n\"users.country\" = \"keep\"\n\"orders.contact_email\" = \"email\"\n";
    std::fs::write(dir.0.join("railgun.toml"), rules).unwrap();
    let refused = dir.0.join("refused");
    let run = dir.xtask(&[
        "--database-url",
        source.direct_url().as_str(),
        "db",
        "backup",
        "--mask",
        refused.to_str().unwrap(),
    ]);
    run.assert_fails_with("look like personal data and have no rule");
    assert!(!refused.exists() || std::fs::read_dir(&refused).unwrap().next().is_none());
}

/// A table whose column's name says nothing, holding emails.
const LEADS: &str = "CREATE TABLE leads (id serial PRIMARY KEY, contact text, status text NOT NULL);
INSERT INTO leads (contact, status)
SELECT CASE WHEN g % 9 = 0 THEN NULL ELSE 'lead' || g || '@mail' || g % 5 || '.test' END, 'open'
FROM generate_series(1, 500) g;";

#[test]
fn a_column_of_emails_with_a_silent_name_stops_the_masked_copy() {
    let dir = Dir::new("contact", RULES);
    let source = TestDb::empty().unwrap();
    exec(&source, SOURCE);
    exec(&source, LEADS);
    let target = TestDb::empty().unwrap();
    let run = dir.copy(&source, &target, &[]);
    run.assert_fails_with("1 column(s) look like personal data and have no rule");
    assert!(run.stderr.contains("\"leads.contact\" = \"email\"   # its values look like emails"), "{}", run.stderr);
    assert!(!run.stderr.contains("leads.status"), "{}", run.stderr);
    assert_eq!(text(&target, "SELECT count(*)::text AS text FROM pg_tables WHERE tablename = 'leads'"), "0");

    // With the rule it suggests, the copy goes through and the emails are masked.
    std::fs::write(dir.0.join("railgun.toml"), format!("{RULES}\"leads.contact\" = \"email\"\n")).unwrap();
    dir.copy(&source, &target, &[]).assert_ok();
    assert_eq!(
        text(&target, "SELECT count(*)::text AS text FROM leads WHERE contact !~ '^u[0-9a-f]{16}@example\\.invalid$'"),
        "0"
    );
    assert_eq!(count(&target, "leads"), 500);
}

/// `url` with its host replaced by the server's own address on its network, as the server sees
/// it (`inet_server_addr()` over TCP: Docker's port proxy connects to the container's address).
/// That address is not this machine's loopback: `dbkit::url::is_local` calls it remote, and the
/// connection really goes over a network interface (the Docker bridge) to the server.
fn non_local(db: &TestDb) -> Option<url::Url> {
    use diesel::{Connection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct Addr {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        addr: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Text)]
        port: String,
    }
    let mut conn = diesel::PgConnection::establish(db.direct_url().as_str()).unwrap();
    let found: Addr = diesel::sql_query("SELECT host(inet_server_addr()) AS addr, current_setting('port') AS port")
        .get_result(&mut conn)
        .unwrap();
    let addr: std::net::IpAddr = found.addr?.parse().ok()?;
    if addr.is_loopback() {
        return None;
    }
    let mut url = db.direct_url().clone();
    url.set_host(Some(&addr.to_string())).unwrap();
    url.set_port(Some(found.port.parse().unwrap())).unwrap();
    // Reachable from here (Linux's Docker bridge routes to containers; Docker Desktop does not).
    diesel::PgConnection::establish(url.as_str()).ok()?;
    Some(url)
}

#[test]
fn a_copy_from_a_source_elsewhere_refuses_personal_columns_even_without_mask() {
    let dir = Dir::new("remote", RULES);
    let source = TestDb::empty().unwrap();
    exec(&source, SOURCE);
    exec(&source, LEADS);
    let Some(remote) = non_local(&source) else {
        eprintln!("skipped: the test server has no address other than loopback that this machine reaches");
        return;
    };
    let target = TestDb::empty().unwrap();
    let copy = |extra: &[&str]| {
        let mut args = vec!["db", "copy", "--from", remote.as_str(), "--to", target.direct_url().as_str(), "--yes"];
        args.extend_from_slice(extra);
        dir.xtask(&args)
    };
    let run = copy(&[]);
    run.assert_fails_with("the source is not on this machine and 5 column(s) look like personal data");
    for line in [
        "\"users.email\" = \"email\"",
        "\"users.name\" = \"name\"",
        "\"users.phone\" = \"phone\"",
        "\"orders.contact_email\" = \"email\"",
        "\"leads.contact\" = \"email\"   # its values look like emails",
    ] {
        assert!(run.stderr.contains(line), "{line}:\n{}", run.stderr);
    }
    assert!(!run.stderr.contains("users.country"), "kept by [mask]:\n{}", run.stderr);
    assert!(run.stderr.contains("--unmasked") && run.stderr.contains("--mask"), "{}", run.stderr);
    assert_eq!(dir.backups(), Vec::<String>::new(), "nothing was dumped");
    assert_eq!(text(&target, "SELECT count(*)::text AS text FROM pg_tables WHERE tablename = 'users'"), "0");
    // The same source through loopback is this machine's: no refusal.
    let local = dir.xtask(&[
        "db",
        "copy",
        "--from",
        source.direct_url().as_str(),
        "--to",
        target.direct_url().as_str(),
        "--yes",
        "--no-safety-backup",
    ]);
    local.assert_ok();
    assert!(!local.stderr.contains("personal"), "{}", local.stderr);

    // --unmasked copies them as they are, and says so.
    let run = copy(&["--unmasked", "--no-safety-backup"]);
    run.assert_ok();
    assert!(
        run.stderr.contains(
            "copying 5 personal-data column(s) unmasked, as --unmasked asked: leads.contact, orders.contact_email, users.email, users.name, users.phone"
        ),
        "{}",
        run.stderr
    );
    // With --mask, the rules apply (and leads.contact, ruled now, is masked).
    std::fs::write(dir.0.join("railgun.toml"), format!("{RULES}\"leads.contact\" = \"email\"\n")).unwrap();
    copy(&["--mask", "--no-safety-backup"]).assert_ok();
    assert_eq!(text(&target, "SELECT count(*)::text AS text FROM users WHERE email LIKE 'person%'"), "0");
}
