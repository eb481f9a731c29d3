//! Off-site backups: `db backup --encrypt` (age), verified and restored with the identity that
//! `RAILGUN_BACKUP_IDENTITY` names, driven through the real binary against real Postgres.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use diesel::connection::SimpleConnection;
use tests::{Folder, Run, S3, S3_SECRET as SECRET, with_s3};

const DATA: &str = r#"
CREATE TABLE things (id bigserial PRIMARY KEY, name text NOT NULL, body bytea, meta jsonb);
CREATE INDEX things_name ON things (name);
INSERT INTO things (name, body, meta)
SELECT 'thing ' || g || E'\ttab ünïcode', decode(md5(g::text), 'hex'), jsonb_build_object('g', g)
FROM generate_series(1, 5000) g;
"#;

/// An age key pair: the identity's file and its public key.
struct Key {
    file: PathBuf,
    secret: String,
    public: String,
}

impl Key {
    fn new(dir: &Path, name: &str) -> Key {
        let identity = age::x25519::Identity::generate();
        let secret = identity.to_string().expose_secret().to_string();
        let public = identity.to_public().to_string();
        let file = dir.join(name);
        std::fs::write(&file, format!("# created: by the test\n# public key: {public}\n{secret}\n")).unwrap();
        Key { file, secret, public }
    }
}

/// A folder whose railgun.toml encrypts to `recipients`.
fn folder(tag: &str, recipients: &[&str], encrypt: bool) -> Folder {
    let folder = Folder::new(tag, None);
    let listed = recipients.iter().map(|r| format!("\"{r}\"")).collect::<Vec<_>>().join(", ");
    std::fs::write(
        folder.dir.join("railgun.toml"),
        format!("[backup]\nencrypt = {encrypt}\nrecipients = [{listed}]\n"),
    )
    .unwrap();
    folder
}

fn run(folder: &Folder, key: Option<&Path>, args: &[&str]) -> Run {
    let mut cmd = folder.command(args);
    cmd.env_remove("RAILGUN_BACKUP_IDENTITY");
    if let Some(key) = key {
        cmd.env("RAILGUN_BACKUP_IDENTITY", key);
    }
    cmd.output().unwrap().into()
}

/// Row count and md5 of the ordered rows of `things`.
fn things(folder: &Folder) -> BTreeMap<&'static str, String> {
    let sum = tests::text(
        &folder.db,
        "SELECT count(*)::text || ' ' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t.id)), '') AS text FROM things t",
    );
    BTreeMap::from([("things", sum)])
}

fn no_secret(key: &Key, runs: &[&Run]) {
    for run in runs {
        let all = run.all();
        assert!(!all.contains(&key.secret), "the identity was printed:\n{all}");
        assert!(!all.contains("AGE-SECRET-KEY"), "an identity was printed:\n{all}");
    }
}

#[test]
fn encrypted_backups_round_trip_and_the_identity_is_never_shown() {
    let source = folder("seal-source", &[], false);
    let key = Key::new(&source.dir, "backup.key");
    let other = Key::new(&source.dir, "other.key");
    std::fs::write(
        source.dir.join("railgun.toml"),
        format!("[backup]\nrecipients = [\"{}\", \"{}\"]\n", other.public, key.public),
    )
    .unwrap();
    source.db.conn().unwrap().batch_execute(DATA).unwrap();

    let backup = run(&source, None, &["db", "backup", "--encrypt"]);
    backup.assert_ok();
    let file = PathBuf::from(backup.stdout.lines().last().unwrap());
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("railgun_backup_") && name.ends_with(".sql.gz.age"), "{name}");
    assert!(dbkit::backup::dump::is_backup_name(name), "{name}");
    assert!(backup.stderr.contains("encrypted to 2 recipients"), "{}", backup.stderr);
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"), "not an age file");
    assert!(!bytes.windows(6).any(|w| w == b"things"), "plaintext in the encrypted file");
    assert_eq!(
        std::fs::read_dir(file.parent().unwrap()).unwrap().count(),
        1,
        "only the encrypted backup is left, no plaintext beside it"
    );

    // Without the key: refused with the fix; with either key: whole.
    run(&source, None, &["db", "verify", name_of(&file)]).assert_fails_with("RAILGUN_BACKUP_IDENTITY");
    let verified = run(&source, Some(&key.file), &["db", "verify", name_of(&file)]);
    verified.assert_ok();
    assert!(verified.stderr.contains("backup is whole, decrypted"), "{}", verified.stderr);
    run(&source, Some(&other.file), &["db", "verify", name_of(&file)]).assert_ok();

    let target = Folder::new("seal-target", None);
    let restored = run(&target, Some(&key.file), &["db", "restore", name_of(&file), "--yes", "--no-safety-backup"]);
    restored.assert_ok();
    assert_eq!(things(&target), things(&source));
    assert!(things(&source)["things"].starts_with("5000 "), "{:?}", things(&source));

    // `encrypt = true` in railgun.toml encrypts without the flag.
    std::fs::write(
        source.dir.join("railgun.toml"),
        format!("[backup]\nencrypt = true\nrecipients = [\"{}\"]\n", key.public),
    )
    .unwrap();
    let by_config = run(&source, None, &["db", "backup"]);
    by_config.assert_ok();
    assert!(by_config.stdout.trim_end().ends_with(".sql.gz.age"), "{}", by_config.stdout);

    // A malformed identity file is refused by line, without its content.
    let broken = source.dir.join("broken.key");
    std::fs::write(&broken, format!("{}x\n", key.secret)).unwrap();
    let refused = run(&source, Some(&broken), &["db", "verify", name_of(&file)]);
    refused.assert_fails_with("line 1 of");
    no_secret(&key, &[&backup, &verified, &restored, &by_config, &refused]);
}

fn name_of(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_wrong_key_or_a_tampered_file_is_refused_before_anything_is_restored() {
    let dir_key = Folder::new("seal-keys", None);
    let key = Key::new(&dir_key.dir, "backup.key");
    let stranger = Key::new(&dir_key.dir, "stranger.key");
    let source = folder("seal-tamper", &[&key.public], true);
    source.db.conn().unwrap().batch_execute(DATA).unwrap();
    let backup = run(&source, None, &["db", "backup"]);
    backup.assert_ok();
    let file = PathBuf::from(backup.stdout.lines().last().unwrap());

    let target = Folder::new("seal-untouched", None);
    target.db.conn().unwrap().batch_execute("CREATE TABLE keep (id int); INSERT INTO keep VALUES (7);").unwrap();
    let keep = || tests::text(&target.db, "SELECT string_agg(id::text, ',') AS text FROM keep");
    let restore = |path: &Path, key: &Path| run(&target, Some(key), &["db", "restore", name_of(path), "--yes"]);

    let wrong = restore(&file, &stranger.file);
    wrong.assert_fails_with("no identity in RAILGUN_BACKUP_IDENTITY's file opens the encrypted backup");
    run(&source, Some(&stranger.file), &["db", "verify", name_of(&file)]).assert_fails_with("encrypted to other keys");

    let bytes = std::fs::read(&file).unwrap();
    let mut changed = bytes.clone();
    let middle = changed.len() / 2;
    changed[middle] ^= 0x01;
    let tampered = source.dir.join("railgun_backup_20250101_000000.sql.gz.age");
    std::fs::write(&tampered, &changed).unwrap();
    let refused = restore(&tampered, &key.file);
    refused.assert_fails_with("tampered");
    run(&source, Some(&key.file), &["db", "verify", name_of(&tampered)]).assert_fails_with("tampered");

    // Each of the header MAC's first characters: a flipped bit may leave valid base64 (the MAC
    // fails) or not (no header parses); either is named as tampering, whatever the key drew.
    let at = bytes.windows(3).position(|w| w == b"---").unwrap() + 4; // the header's MAC
    for offset in 0..8 {
        let mut header = bytes.clone();
        header[at + offset] ^= 0x01;
        std::fs::write(&tampered, &header).unwrap();
        restore(&tampered, &key.file).assert_fails_with("tampered");
    }

    std::fs::write(&tampered, &bytes[..bytes.len() - 100]).unwrap();
    restore(&tampered, &key.file).assert_fails_with("cut short");

    for run in [&wrong, &refused] {
        assert!(!run.stderr.contains("safety backup"), "{}", run.stderr);
    }
    assert_eq!(keep(), "7", "the target is untouched");
    assert!(!target.dir.join("backups").exists(), "no safety backup was taken");
    no_secret(&key, &[&wrong, &refused]);
}

#[test]
fn retention_keeps_days_weeks_and_months_and_touches_nothing_else() {
    let source = Folder::new("retention", None);
    source.db.conn().unwrap().batch_execute(DATA).unwrap();
    let made = run(&source, None, &["db", "backup"]);
    made.assert_ok();
    let newest = PathBuf::from(made.stdout.lines().last().unwrap());
    let dir = newest.parent().unwrap().to_path_buf();
    let bytes = std::fs::read(&newest).unwrap();
    // Two a day, 2025-01-01 to 2025-03-10, every other one encrypted-looking by name only: the
    // rules count names, and `.age` names count as backups too (an age header is all that can
    // be checked without the key, so these are real encrypted backups).
    let key = Key::new(&source.dir, "backup.key");
    std::fs::write(source.dir.join("railgun.toml"), format!("[backup]\nrecipients = [\"{}\"]\n", key.public)).unwrap();
    let sealed = run(&source, None, &["db", "backup", "--encrypt", "elsewhere"]);
    sealed.assert_ok();
    let sealed_bytes = std::fs::read(sealed.stdout.lines().last().unwrap()).unwrap();
    write_twice_daily(&dir, &bytes, &sealed_bytes);
    let decoys = [
        "notes.txt",
        "railgun_backup_20250102_030000.sql.gz.bak",
        "my_railgun_backup_20250102_030000.sql.gz",
        "railgun_pre_restore_20250102_030000.sql.gz",
    ];
    for decoy in decoys {
        std::fs::write(dir.join(decoy), &bytes).unwrap();
    }
    std::fs::write(dir.join("railgun_backup_20250105_000000.sql.gz"), b"").unwrap();
    let listing = || {
        let mut names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    };
    let before = listing();
    let rules = ["--keep-daily", "3", "--keep-weekly", "2", "--keep-monthly", "3"];
    let dir_arg = dir.to_str().unwrap();
    let dry = run(&source, None, &[&["db", "prune", dir_arg, "--dry-run"][..], &rules].concat());
    dry.assert_ok();
    assert_eq!(listing(), before, "a dry run deletes nothing");
    let would: Vec<&str> = dry.stdout.lines().collect();
    assert!(dry.stderr.contains("left alone, not counted as a backup"), "{}", dry.stderr);

    let pruned = run(&source, None, &[&["db", "prune", dir_arg][..], &rules].concat());
    pruned.assert_ok();
    let gone: Vec<&str> = pruned.stdout.lines().collect();
    assert_eq!(gone, would, "the dry run listed exactly what goes");
    let newest_name = newest.file_name().unwrap().to_str().unwrap().to_string();
    let mut expected: Vec<String> = [
        "railgun_backup_20250310_150000.sql.gz.age",
        "railgun_backup_20250309_150000.sql.gz.age",
        "railgun_backup_20250228_150000.sql.gz.age",
        "railgun_backup_20250105_000000.sql.gz",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(decoys.iter().map(|s| s.to_string()))
    .chain([newest_name])
    .collect();
    expected.sort();
    // Daily 3: today's new backup, 03-10, 03-09; weekly 2: today's week, the week of 03-10;
    // monthly 3: this month, March and February 2025.
    assert_eq!(listing(), expected, "{}", pruned.stderr);

    // `--keep N` still counts the newest N, the new one included.
    let again = run(&source, None, &["db", "backup", "--keep", "2"]);
    again.assert_ok();
    let backups: Vec<String> = listing().into_iter().filter(|n| dbkit::backup::dump::is_backup_name(n)).collect();
    assert_eq!(backups.len(), 3, "two kept and the unfinished one left alone: {backups:?}");
    run(&source, None, &["db", "prune", dir_arg]).assert_fails_with("no retention rule given");
}

/// Two backups a day in `dir`, 2025-01-01 to 2025-03-10: `plain` and `sealed` in turn, the
/// sealed ones named `.age`.
fn write_twice_daily(dir: &std::path::Path, plain: &[u8], sealed: &[u8]) {
    let mut day = chrono_day(2025, 1, 1);
    let mut n = 0;
    while day <= chrono_day(2025, 3, 10) {
        for time in ["030000", "150000"] {
            n += 1;
            let name = format!("railgun_backup_{day}_{time}.sql.gz");
            if n % 2 == 0 {
                std::fs::write(dir.join(format!("{name}.age")), sealed).unwrap();
            } else {
                std::fs::write(dir.join(name), plain).unwrap();
            }
        }
        day = next_day(&day);
    }
}

fn chrono_day(year: i32, month: u32, day: u32) -> String {
    format!("{year:04}{month:02}{day:02}")
}

/// The next day of a `YYYYMMDD` day (enough calendar for 2025's first quarter).
fn next_day(day: &str) -> String {
    let (y, m, d): (i32, u32, u32) = (day[..4].parse().unwrap(), day[4..6].parse().unwrap(), day[6..].parse().unwrap());
    let last = match m {
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if d < last {
        chrono_day(y, m, d + 1)
    } else if m < 12 {
        chrono_day(y, m + 1, 1)
    } else {
        chrono_day(y + 1, 1, 1)
    }
}

#[test]
fn backups_lists_size_age_encryption_and_what_checks_out() {
    let dir_key = Folder::new("list-keys", None);
    let key = Key::new(&dir_key.dir, "backup.key");
    let source = folder("list", &[&key.public], false);
    source.db.conn().unwrap().batch_execute(DATA).unwrap();
    let plain = PathBuf::from(run(&source, None, &["db", "backup"]).assert_ok().stdout.lines().last().unwrap());
    let sealed =
        PathBuf::from(run(&source, None, &["db", "backup", "--encrypt"]).assert_ok().stdout.lines().last().unwrap());
    let dir = plain.parent().unwrap();
    let bytes = std::fs::read(&plain).unwrap();
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    std::fs::write(dir.join("railgun_backup_20250101_000000.sql.gz"), &damaged).unwrap();
    std::fs::write(dir.join("railgun_backup_20240101_000000.sql.gz"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(dir.join("railgun_pre_restore_20230101_000000.sql.gz"), &bytes).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a backup").unwrap();

    let listed = |key: Option<&Path>, extra: &[&str]| -> Vec<serde_json::Value> {
        let run = run(&source, key, &[&["db", "backups", "--json"][..], extra].concat());
        run.assert_ok();
        serde_json::from_str::<serde_json::Value>(&run.stdout).unwrap().as_array().unwrap().clone()
    };
    let field = |rows: &[serde_json::Value], f: &str| -> Vec<String> {
        rows.iter().map(|r| r[f].to_string().trim_matches('"').to_string()).collect()
    };
    let cheap = listed(None, &[]);
    let names = field(&cheap, "name");
    let plain_name = plain.file_name().unwrap().to_str().unwrap();
    let sealed_name = sealed.file_name().unwrap().to_str().unwrap();
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(
        names[2..],
        [
            "railgun_backup_20250101_000000.sql.gz",
            "railgun_backup_20240101_000000.sql.gz",
            "railgun_pre_restore_20230101_000000.sql.gz"
        ]
    );
    assert!(names[..2].contains(&plain_name.to_string()) && names[..2].contains(&sealed_name.to_string()), "{names:?}");
    let row = |rows: &[serde_json::Value], name: &str| rows.iter().find(|r| r["name"] == name).unwrap().clone();
    let p = row(&cheap, plain_name);
    assert_eq!(
        (p["encrypted"].as_bool(), p["check"].as_str(), p["verified"].as_bool()),
        (Some(false), Some("complete"), Some(true))
    );
    assert_eq!(p["bytes"].as_u64(), Some(bytes.len() as u64));
    assert!(p["age_seconds"].as_i64().unwrap() < 600, "{p}");
    let s = row(&cheap, sealed_name);
    assert_eq!((s["encrypted"].as_bool(), s["check"].as_str()), (Some(true), Some("header")));
    // The cheap check sees a backup cut short (a changed byte only when it is in the last two
    // members: this backup has no others).
    assert_eq!(row(&cheap, "railgun_backup_20240101_000000.sql.gz")["check"], "failed");
    assert_eq!(row(&cheap, "railgun_pre_restore_20230101_000000.sql.gz")["kind"], "safety");

    let whole = listed(Some(&key.file), &["--verify"]);
    assert_eq!(row(&whole, sealed_name)["check"], "whole");
    assert_eq!(row(&whole, plain_name)["check"], "whole");
    let damaged = row(&whole, "railgun_backup_20250101_000000.sql.gz");
    assert_eq!(damaged["verified"], false);
    assert!(damaged["problem"].as_str().unwrap().contains("corrupt"), "{damaged}");
    // Without the key, --verify says so for the encrypted one only.
    let keyless = listed(None, &["--verify"]);
    assert!(row(&keyless, sealed_name)["problem"].as_str().unwrap().contains("RAILGUN_BACKUP_IDENTITY"));
    assert_eq!(row(&keyless, plain_name)["check"], "whole");

    let table = run(&source, None, &["db", "backups"]);
    table.assert_ok();
    assert!(table.stdout.starts_with("NAME"), "{}", table.stdout);
    assert!(
        table.stdout.contains("FAILED") && table.stderr.contains("railgun_backup_20240101_000000.sql.gz: "),
        "{}",
        table.all()
    );
}

#[test]
fn backups_upload_to_a_bucket_encrypted_and_restore() {
    let s3 = S3::start();
    s3.create_bucket("backups");
    let dir_key = Folder::new("s3-keys", None);
    let key = Key::new(&dir_key.dir, "backup.key");
    let source = folder("s3-source", &[&key.public], true);
    source.db.conn().unwrap().batch_execute(DATA).unwrap();
    let mut cmd = source.command(&["db", "backup", "--to", "s3://backups/nightly/db"]);
    with_s3(&mut cmd, &s3);
    let run: Run = cmd.output().unwrap().into();
    run.assert_ok();
    let shown = run.stdout.lines().last().unwrap().to_string();
    let name = shown.strip_prefix("s3://backups/nightly/db/").expect(&shown);
    assert!(dbkit::backup::dump::is_backup_name(name) && name.ends_with(".sql.gz.age"), "{name}");
    assert_eq!(s3.keys("backups"), [format!("nightly/db/{name}")], "the backup and nothing else (no marker)");
    assert_eq!(s3.uploads("backups"), 0);
    assert!(!run.all().contains(SECRET) && !run.all().contains("X-Amz-Signature"), "{}", run.all());

    // The object is the encrypted backup: it verifies and restores with the key.
    let downloaded = source.dir.join(name);
    std::fs::write(&downloaded, s3.curl(&[], &format!("/backups/nightly/db/{name}"))).unwrap();
    let target = Folder::new("s3-target", None);
    run_key(&target, &key, &["db", "restore", downloaded.to_str().unwrap(), "--yes", "--no-safety-backup"]).assert_ok();
    assert_eq!(things(&target), things(&source));
    // Restored from the bucket directly.
    let direct = Folder::new("s3-direct", None);
    let mut cmd = direct.command(&["db", "restore", &shown, "--yes", "--no-safety-backup"]);
    with_s3(&mut cmd, &s3);
    cmd.env("RAILGUN_BACKUP_IDENTITY", &key.file);
    let restored: Run = cmd.output().unwrap().into();
    restored.assert_ok();
    assert!(restored.stderr.contains("into an unnamed temporary file"), "{}", restored.stderr);
    assert!(restored.stderr.contains("\ndownload: done, "), "{}", restored.stderr);
    assert_eq!(things(&direct), things(&source));
    assert!(!restored.all().contains(SECRET) && !restored.all().contains(&key.secret), "{}", restored.all());

    // A second one within the second gets a name of its own, never replacing the first.
    let mut cmd = source.command(&["db", "backup", "--to", "s3://backups/nightly/db"]);
    with_s3(&mut cmd, &s3);
    let again: Run = cmd.output().unwrap().into();
    again.assert_ok();
    assert_eq!(s3.keys("backups").len(), 2, "{:?}", s3.keys("backups"));

    // Wrong credentials: the store's refusal with the fix, no secret shown.
    let mut cmd = source.command(&["db", "backup", "--to", "s3://missing-bucket/x"]);
    with_s3(&mut cmd, &s3);
    let refused: Run = cmd.output().unwrap().into();
    refused.assert_fails_with("check the bucket's name");
    assert!(!refused.all().contains(SECRET), "{}", refused.all());
}

fn run_key(folder: &Folder, key: &Key, args: &[&str]) -> Run {
    run(folder, Some(&key.file), args)
}

#[test]
fn a_killed_upload_leaves_no_object_and_the_next_run_aborts_it() {
    let s3 = S3::start();
    s3.create_bucket("backups");
    let source = Folder::new("s3-kill", None);
    source
        .db
        .conn()
        .unwrap()
        .batch_execute(
            "CREATE TABLE big (id int, a text, b text);
             INSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text), md5((g * 3)::text) FROM generate_series(1, 600000) g;",
        )
        .unwrap();
    let mut cmd = source.command(&["db", "backup", "--to", "s3://backups/db"]);
    with_s3(&mut cmd, &s3);
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while s3.uploads("backups") == 0 {
        assert!(std::time::Instant::now() < deadline, "the upload never started");
        assert!(child.try_wait().unwrap().is_none(), "the backup ended before it could be killed");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let keys = s3.keys("backups");
    assert!(keys.iter().all(|k| !dbkit::backup::dump::is_backup_name(k.trim_start_matches("db/"))), "{keys:?}");
    assert_eq!(s3.uploads("backups"), 1, "the killed upload is still open");

    let mut cmd = source.command(&["db", "backup", "--to", "s3://backups/db"]);
    with_s3(&mut cmd, &s3);
    let next: Run = cmd.output().unwrap().into();
    next.assert_ok();
    assert!(next.stderr.contains("aborted an unfinished upload"), "{}", next.stderr);
    assert_eq!(s3.uploads("backups"), 0, "no parts left");
    let keys = s3.keys("backups");
    assert_eq!(keys.len(), 1, "only the new backup, no marker: {keys:?}");
    assert!(keys[0].ends_with(".sql.gz"), "{keys:?}");
}

#[test]
fn a_bucket_is_listed_and_pruned_like_a_folder() {
    let s3 = S3::start();
    s3.create_bucket("backups");
    let source = Folder::new("s3-prune", None);
    source.db.conn().unwrap().batch_execute(DATA).unwrap();
    let xtask = |args: &[&str]| -> Run {
        let mut cmd = source.command(args);
        with_s3(&mut cmd, &s3);
        cmd.output().unwrap().into()
    };
    let made = xtask(&["db", "backup", "--to", "s3://backups/db/"]);
    made.assert_ok();
    let newest = made.stdout.lines().last().unwrap().strip_prefix("s3://backups/db/").unwrap().to_string();
    let copy = source.dir.join("copy.sql.gz");
    std::fs::write(&copy, s3.curl(&[], &format!("/backups/db/{newest}"))).unwrap();
    let put = |name: &str, file: &Path| {
        let file = file.display().to_string();
        s3.curl(
            &["-H", "Content-Type: application/octet-stream", "-H", "Expect:", "-T", &file],
            &format!("/backups/db/{name}"),
        );
    };
    for day in ["20250301", "20250302", "20250303", "20250304"] {
        put(&format!("railgun_backup_{day}_030000.sql.gz"), &copy);
    }
    let mut damaged = std::fs::read(&copy).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    let bad = source.dir.join("bad.sql.gz");
    std::fs::write(&bad, &damaged).unwrap();
    put("railgun_backup_20250201_030000.sql.gz", &bad);
    put("notes.txt", &copy);
    put("other/railgun_backup_20250101_030000.sql.gz", &copy);

    let rows = |args: &[&str]| -> Vec<serde_json::Value> {
        let run = xtask(&[&["db", "backups", "--to", "s3://backups/db", "--json"][..], args].concat());
        run.assert_ok();
        serde_json::from_str::<serde_json::Value>(&run.stdout).unwrap().as_array().unwrap().clone()
    };
    let listed = rows(&[]);
    let names: Vec<&str> = listed.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 6, "ours only, not db/other/ nor notes.txt: {names:?}");
    assert_eq!(names[0], newest);
    assert!(listed.iter().all(|r| r["check"] == "stored"), "{listed:?}");
    let verified = rows(&["--verify"]);
    let failed: Vec<&str> =
        verified.iter().filter(|r| r["verified"] == false).map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(failed, ["railgun_backup_20250201_030000.sql.gz"], "{verified:?}");

    let dry = xtask(&["db", "prune", "--to", "s3://backups/db", "--keep-daily", "2", "--dry-run"]);
    dry.assert_ok();
    assert_eq!(s3.keys("backups").len(), 8, "a dry run deletes nothing");
    let pruned = xtask(&["db", "prune", "--to", "s3://backups/db", "--keep-daily", "2"]);
    pruned.assert_ok();
    assert_eq!(pruned.stdout, dry.stdout, "the dry run listed exactly what goes");
    let mut keys = s3.keys("backups");
    keys.sort();
    let mut expected = vec![
        "db/notes.txt".to_string(),
        format!("db/{newest}"),
        "db/railgun_backup_20250304_030000.sql.gz".to_string(),
        "db/other/railgun_backup_20250101_030000.sql.gz".to_string(),
    ];
    expected.sort();
    assert_eq!(keys, expected);
    // Retention right after an upload counts the new backup first.
    xtask(&["db", "backup", "--to", "s3://backups/db", "--keep", "1"]).assert_ok();
    assert_eq!(s3.keys("backups").iter().filter(|k| k.starts_with("db/railgun_backup_")).count(), 1);
}
