//! Encrypted backups: the backup's gzip sealed with age (<https://age-encryption.org/v1>) to the
//! X25519 recipients railgun.toml lists; opened with the identities in the file that
//! `RAILGUN_BACKUP_IDENTITY` names. Any `age -d -i KEY` decrypts one too. age's STREAM
//! authenticates every 64 KiB chunk and the end: a wrong key, a changed byte or a cut file fails
//! here, before any of its SQL is used.
//!
//! The identity is a secret: it is read from its file only, and no error or message of ours
//! quotes that file's content.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::context::Context;

/// An encrypted backup's name: the backup's own with this appended.
pub const SUFFIX: &str = ".age";
/// How every age file starts.
pub const MAGIC: &[u8] = b"age-encryption.org/v1\n";
/// The setting (environment or `.env`) naming the identity file.
pub const IDENTITY_SETTING: &str = "RAILGUN_BACKUP_IDENTITY";

/// True when the open file is age-encrypted (by its first bytes, whatever its name).
pub fn is_sealed(file: &File) -> Result<bool> {
    let mut head = [0u8; MAGIC.len()];
    let mut got = 0;
    while got < head.len() {
        match file.read_at(&mut head[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("read the backup's first bytes"),
        }
    }
    Ok(got == head.len() && head == MAGIC)
}

/// Checks an encrypted backup's age header, which needs no key: what can be known of a file's
/// completeness without decrypting it.
pub fn check_header(file: File) -> Result<()> {
    age::Decryptor::new(io::BufReader::new(file)).map(|_| ()).map_err(|e| anyhow!("its age header does not read: {e}"))
}

/// The public keys backups are encrypted to, from `[backup] recipients` (each `age1...`).
pub fn recipients(listed: &[String]) -> Result<Vec<age::x25519::Recipient>> {
    if listed.is_empty() {
        bail!(
            hint!("no recipients to encrypt the backup to"; "list the public keys in railgun.toml: [backup] recipients = [\"age1...\"] (age-keygen -y KEYFILE prints one)")
        );
    }
    listed
        .iter()
        .map(|key| {
            key.trim().parse::<age::x25519::Recipient>().map_err(|why| {
                anyhow!(hint!("`{}` in [backup] recipients is not an age public key ({why})", crate::error::escaped(key); "each recipient is an X25519 public key, age1... (age-keygen -y KEYFILE prints it)"))
            })
        })
        .collect()
}

/// Wraps `out` so that what is written to it is encrypted to `recipients`; the returned writer's
/// `finish` must be called to seal the last chunk.
pub fn seal<W: Write>(out: W, recipients: &[age::x25519::Recipient]) -> Result<age::stream::StreamWriter<W>> {
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| anyhow!("encrypt the backup: {e}"))?;
    encryptor.wrap_output(out).context("write the encrypted backup's header")
}

/// The private keys that open backups, read from the file `RAILGUN_BACKUP_IDENTITY` names.
/// No `Debug`: it is never printed, not even by mistake.
#[derive(Clone)]
pub struct Identities {
    keys: Vec<age::x25519::Identity>,
}

impl Identities {
    /// The identities in the file the `RAILGUN_BACKUP_IDENTITY` setting names (a relative path is
    /// taken from the current directory).
    pub fn from_setting(cx: &Context) -> Result<Identities> {
        let Some(path) = cx.setting(IDENTITY_SETTING)?.filter(|p| !p.trim().is_empty()) else {
            bail!(
                hint!("the backup is encrypted and {IDENTITY_SETTING} is not set"; "set {IDENTITY_SETTING} (environment or .env) to the path of the age identity file whose public key is in [backup] recipients (made by age-keygen -o FILE)")
            );
        };
        Identities::from_file(&cx.user_path(Path::new(&path)))
    }

    /// The `AGE-SECRET-KEY-1...` lines of the file at `path` (`#` comments and blank lines
    /// skipped, as age's identity files have them). Errors name the line, never its content.
    pub fn from_file(path: &Path) -> Result<Identities> {
        let shown = path.display();
        let mut text = String::new();
        File::open(path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .with_context(|| hint!("read the backup identity file {shown}"; "{IDENTITY_SETTING} names the age identity file (age-keygen -o FILE makes one)"))?;
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.parse::<age::x25519::Identity>() {
                Ok(key) => keys.push(key),
                Err(_) => bail!(
                    hint!("line {} of {shown} is not an age X25519 identity", n + 1; "{IDENTITY_SETTING} must name a file made by age-keygen; SSH keys and plugins are not supported")
                ),
            }
        }
        text.clear();
        if keys.is_empty() {
            bail!(
                hint!("{shown} holds no age identity"; "{IDENTITY_SETTING} must name a file made by age-keygen -o FILE")
            );
        }
        Ok(Identities { keys })
    }

    /// The plaintext of the age file `input`, decrypted as it is read. A key that does not open
    /// it, or a damaged header, fails here; a damaged or cut payload fails the read that reaches it.
    pub fn open<R: Read>(&self, input: R, shown: &Path) -> Result<Opened<R>> {
        let decryptor = age::Decryptor::new(input).map_err(|e| header_error(e, shown))?;
        let reader =
            decryptor.decrypt(self.keys.iter().map(|k| k as &dyn age::Identity)).map_err(|e| header_error(e, shown))?;
        Ok(Opened { inner: reader })
    }
}

fn header_error(e: age::DecryptError, shown: &Path) -> anyhow::Error {
    let shown = shown.display();
    match e {
        age::DecryptError::NoMatchingKeys => anyhow!(
            hint!("no identity in {IDENTITY_SETTING}'s file opens the encrypted backup {shown}: it was encrypted to other keys"; "set {IDENTITY_SETTING} to the identity file whose public key was in [backup] recipients when the backup was made")
        ),
        age::DecryptError::InvalidMac | age::DecryptError::InvalidHeader | age::DecryptError::DecryptionFailed => {
            anyhow!(
                hint!("the encrypted backup {shown} was damaged or tampered with: its header fails age's authentication ({e})"; "use another backup; nothing was restored from this one")
            )
        }
        // A bit flipped in the header's lines (its base64 MAC, say) may leave it no header at
        // all to authenticate: the file is damaged or tampered with, or was never age's.
        e => anyhow!(
            hint!("{shown} is not a readable age file: its header was damaged or tampered with, or it is not an age file ({e})"; "use another backup; nothing was restored from this one")
        ),
    }
}

/// An age file's plaintext; a chunk that fails its authentication reads as an error that says so.
pub struct Opened<R> {
    inner: age::stream::StreamReader<R>,
}

impl<R: Read> Read for Opened<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the encrypted backup was damaged, cut short or tampered with: a chunk fails age's authentication ({e})"),
            ),
            _ => e,
        })
    }
}

/// Counts and checksums what goes through to `inner`, so that the file can be read back and
/// compared with what was written without the key to decrypt it.
pub struct Tally<W> {
    pub inner: W,
    pub bytes: u64,
    pub crc: flate2::Crc,
}

impl<W: Write> Tally<W> {
    pub fn new(inner: W) -> Tally<W> {
        Tally { inner, bytes: 0, crc: flate2::Crc::new() }
    }
}

impl<W: Write> Write for Tally<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads `file` back from disk whole and checks it holds exactly `bytes` bytes with `crc`.
pub fn read_back(file: &File, bytes: u64, crc: u32) -> Result<()> {
    let mut check = flate2::Crc::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = file.read_at(&mut buf, at).context("read the encrypted backup back")?;
        if n == 0 {
            break;
        }
        check.update(&buf[..n]);
        at += n as u64;
    }
    if at != bytes || check.sum() != crc {
        bail!("the encrypted backup reads back as {at} bytes unlike the {bytes} written: the disk did not keep them");
    }
    Ok(())
}
