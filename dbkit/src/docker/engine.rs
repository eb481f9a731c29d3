//! Finding the Docker engine before anything talks to it, so that "no Docker" is one clear error.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};

/// Checks that a Docker engine answers, trying `DOCKER_HOST` and then the usual socket paths.
pub fn check_engine() -> Result<()> {
    let mut tried = vec!["DOCKER_HOST (not set)".to_string()];
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        match host.strip_prefix("unix://") {
            Some(path) if ping(path) => return Ok(()),
            Some(_) => bail!(
                hint!("no Docker engine answers at DOCKER_HOST={host}"; "start Docker there, or unset DOCKER_HOST to use the default socket /var/run/docker.sock")
            ),
            // A TCP or SSH engine: let the Docker client itself report on it.
            None => return Ok(()),
        }
    }
    for path in socket_paths() {
        if ping(&path.to_string_lossy()) {
            if std::env::var_os("DOCKER_HOST").is_none() && path != Path::new("/var/run/docker.sock") {
                // testcontainers and the docker CLI look for the default socket; point them here.
                // SAFETY: set once at start-up, before any other thread reads the environment.
                unsafe { std::env::set_var("DOCKER_HOST", format!("unix://{}", path.display())) };
            }
            return Ok(());
        }
        tried.push(format!("{} ({})", path.display(), if path.exists() { "no answer" } else { "missing" }));
    }
    bail!(
        hint!("no Docker engine answers; tried: {}", tried.join(", "); "start Docker (`sudo systemctl start docker`, or Docker Desktop), or point DOCKER_HOST at a running engine; `cargo xtask up` is only for local development: every other command works against any DATABASE_URL")
    )
}

fn socket_paths() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("/var/run/docker.sock")];
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR") {
        paths.push(PathBuf::from(runtime).join("docker.sock"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        paths.push(PathBuf::from(&home).join(".docker/run/docker.sock"));
        paths.push(PathBuf::from(home).join(".docker/desktop/docker.sock"));
    }
    paths
}

fn ping(path: &str) -> bool {
    let Ok(mut stream) = UnixStream::connect(path) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"HTTP/1.") && buf[..n].windows(3).any(|w| w == b"200"))
}
