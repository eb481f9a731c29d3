//! Random secrets: passwords for local services and the restore's role, the restore's key.

use anyhow::{Result, anyhow};

/// `bytes` random bytes from the operating system, as lowercase hex (URL- and shell-safe).
pub fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow!("read random bytes from the operating system: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
