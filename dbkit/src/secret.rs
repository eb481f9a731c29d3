//! Random secrets: passwords for local services and the restore's role, the restore's key.

use anyhow::{Result, anyhow};

/// `bytes` random bytes from the operating system, as lowercase hex (URL- and shell-safe).
pub fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow!("read random bytes from the operating system: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The password as a SCRAM-SHA-256 verifier, hashed here by libpq as psql's `\password` does:
/// the server, its logs (`log_statement = ddl`, failed statements) never see the password.
#[cfg(feature = "tools")]
pub fn scram_verifier(role: &str, password: &str) -> Result<String> {
    use std::ffi::{CStr, CString};
    let password = CString::new(password).map_err(|_| anyhow!("the password holds a NUL byte"))?;
    let role = CString::new(role).map_err(|_| anyhow!("the role holds a NUL byte"))?;
    // SAFETY: every pointer passed is a live NUL-terminated string or the PGconn made here;
    // libpq's results are copied out before being freed, and the PGconn is finished once.
    unsafe {
        // A PGconn that never connects: given the algorithm, libpq hashes without a server.
        let conn = pq_sys::PQconnectStart(c"host=/nonexistent/railgun".as_ptr());
        if conn.is_null() {
            anyhow::bail!("libpq could not allocate a connection object");
        }
        let hashed = pq_sys::PQencryptPasswordConn(conn, password.as_ptr(), role.as_ptr(), c"scram-sha-256".as_ptr());
        let verifier = if hashed.is_null() {
            let why = CStr::from_ptr(pq_sys::PQerrorMessage(conn)).to_string_lossy().trim().to_string();
            Err(anyhow::anyhow!("libpq could not hash the password: {why}"))
        } else {
            let verifier = CStr::from_ptr(hashed).to_string_lossy().into_owned();
            pq_sys::PQfreemem(hashed.cast());
            Ok(verifier)
        };
        pq_sys::PQfinish(conn);
        verifier
    }
}

#[cfg(all(test, feature = "tools"))]
mod tests {
    use super::*;

    #[test]
    fn passwords_leave_as_scram_verifiers() {
        let verifier = scram_verifier("railgun_app", "hunter2-canary").unwrap();
        assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");
        assert!(!verifier.contains("hunter2"));
        assert_ne!(verifier, scram_verifier("railgun_app", "hunter2-canary").unwrap(), "a fresh salt each time");
    }
}
