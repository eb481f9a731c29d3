//! Off-site backups: `db backup --encrypt` (age), verified and restored with the identity that
//! `RAILGUN_BACKUP_IDENTITY` names, driven through the real binary against real Postgres.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use diesel::connection::SimpleConnection;
use tests::{Folder, Run};

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

    let mut header = bytes.clone();
    let at = bytes.windows(3).position(|w| w == b"---").unwrap() + 5; // the header's MAC
    header[at] ^= 0x01;
    std::fs::write(&tampered, &header).unwrap();
    restore(&tampered, &key.file).assert_fails_with("tampered");

    std::fs::write(&tampered, &bytes[..bytes.len() - 100]).unwrap();
    restore(&tampered, &key.file).assert_fails_with("cut short");

    for run in [&wrong, &refused] {
        assert!(!run.stderr.contains("safety backup"), "{}", run.stderr);
    }
    assert_eq!(keep(), "7", "the target is untouched");
    assert!(!target.dir.join("backups").exists(), "no safety backup was taken");
    no_secret(&key, &[&wrong, &refused]);
}
