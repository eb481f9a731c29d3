//! Where pg_dump and psql come from: the host's when they are at least the server's major
//! version, else the project's Postgres container, else a throwaway container of a local
//! Postgres image. `RAILGUN_PGTOOLS=host|container|image` forces one.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use diesel::RunQueryDsl;
use url::Url;
use xshell::{Shell, cmd};

/// How pg_dump and psql are run.
#[derive(Clone, Debug)]
enum Runner {
    /// The host's binaries, in this folder.
    Host { bindir: PathBuf },
    /// `docker exec -i` in a running container (the project's Postgres).
    Exec { container: String, inside: Option<Url> },
    /// `docker run --rm -i --network host` of an image, so the URL means what it means here.
    Run { image: String },
}

/// pg_dump and psql of a major version that can talk to the server at hand.
#[derive(Clone, Debug)]
pub struct PgTools {
    runner: Runner,
    pub server_major: u32,
    pub tools_major: u32,
}

impl PgTools {
    /// Picks the tools for the server at `url` (connects once to ask its version).
    /// The first source (host, project container, local image) whose tools are new enough.
    pub fn find(sh: &Shell, project: &str, url: &Url) -> Result<PgTools> {
        let server_major = server_major(url)?;
        let forced = std::env::var("RAILGUN_PGTOOLS").ok().filter(|s| !s.is_empty());
        let mut tried = Vec::new();
        if matches!(forced.as_deref(), None | Some("host")) {
            match host_tools(sh) {
                Some((bindir, major)) if major >= server_major || forced.is_some() => {
                    return Ok(PgTools { runner: Runner::Host { bindir }, server_major, tools_major: major });
                }
                Some((_, major)) => tried.push(format!("the host's pg_dump is version {major}")),
                None => tried.push("the host has no pg_dump/psql".to_string()),
            }
        }
        if matches!(forced.as_deref(), None | Some("container")) {
            if let Some((container, inside)) = project_container(sh, project, url) {
                match container_major(sh, &container) {
                    Some(major) if major >= server_major => {
                        return Ok(PgTools {
                            runner: Runner::Exec { container, inside },
                            server_major,
                            tools_major: major,
                        });
                    }
                    Some(major) => tried.push(format!("container {container} has pg_dump {major}")),
                    None => tried.push(format!("container {container} has no pg_dump")),
                }
            } else if forced.is_some() {
                bail!("RAILGUN_PGTOOLS=container, but no running project container can reach this database");
            }
        }
        if matches!(forced.as_deref(), None | Some("image")) {
            if let Some((image, major)) = local_images(sh).into_iter().find(|(_, major)| *major >= server_major) {
                return Ok(PgTools { runner: Runner::Run { image }, server_major, tools_major: major });
            }
            tried.push(format!("no local Postgres image of version {server_major} or newer"));
        }
        if let Some(other) = forced.as_deref().filter(|f| !matches!(*f, "host" | "container" | "image")) {
            bail!("RAILGUN_PGTOOLS={other} is not one of host, container, image");
        }
        bail!(
            hint!("the server runs Postgres {server_major}, and no pg_dump/psql of version {server_major} or newer is at hand ({})", tried.join("; "); "install the client tools of version {server_major} or newer (e.g. `apt-get install postgresql-client-{server_major}`, `brew install libpq`), or `docker pull postgres:{server_major}-alpine` so they can run in a container")
        )
    }

    /// Where the tools run, for messages.
    pub fn describe(&self) -> String {
        match &self.runner {
            Runner::Host { bindir } => {
                format!("pg_dump/psql {} from {} (server {})", self.tools_major, bindir.display(), self.server_major)
            }
            Runner::Exec { container, .. } => format!("pg_dump/psql {} in container {container}", self.tools_major),
            Runner::Run { image } => format!("pg_dump/psql {} in a throwaway {image} container", self.tools_major),
        }
    }

    /// pg_dump's output for `args` on `url`, read into memory (a schema, a section): stderr kept
    /// (its URLs redacted) for the error, which says `what` failed.
    pub fn pg_dump_output(&self, sh: &Shell, url: &Url, args: &[String], what: &str) -> Result<Vec<u8>> {
        use std::io::Read;
        use std::process::Stdio;
        let mut child = self
            .command(sh, "pg_dump", url, args)?
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("start pg_dump")?;
        let errors = collect_errors(child.stderr.take().context("pg_dump's errors")?);
        let mut out = Vec::new();
        child.stdout.take().context("pg_dump's output")?.read_to_end(&mut out).context("read pg_dump's output")?;
        let status = child.wait().context("wait for pg_dump")?;
        let errors = crate::url::redact_str(errors.join().unwrap_or_default().trim());
        if !status.success() {
            bail!(
                hint!("pg_dump failed ({status}) with {}: {what}\n{errors}", self.describe(); "fix what pg_dump says above and run again")
            );
        }
        Ok(out)
    }

    /// `tool` (pg_dump or psql) with `args`, connected to `url`: the password only in the
    /// environment, stdin/stdout free for streams (no TTY).
    pub fn command(&self, sh: &Shell, tool: &str, url: &Url, args: &[String]) -> Result<Command> {
        let url = match &self.runner {
            Runner::Exec { inside: Some(inside), .. } => {
                let mut moved = url.clone();
                moved.set_host(inside.host_str()).ok().context("rewrite the URL for the container")?;
                moved.set_port(inside.port()).ok().context("rewrite the URL for the container")?;
                moved
            }
            _ => url.clone(),
        };
        let target = crate::url::libpq_target(&url)?;
        let dbname = format!("--dbname={}", target.conninfo);
        // Never a password prompt: libpq would open /dev/tty and hang a script.
        let cmd = match &self.runner {
            Runner::Host { bindir } => {
                let tool = bindir.join(tool);
                cmd!(sh, "{tool} --no-password {dbname} {args...}")
            }
            Runner::Exec { container, .. } => cmd!(
                sh,
                "docker exec -i -e PGPASSWORD -e PGOPTIONS {container} {tool} --no-password {dbname} {args...}"
            ),
            Runner::Run { image } => cmd!(
                sh,
                "docker run --rm -i --network host -e PGPASSWORD -e PGOPTIONS --entrypoint {tool} {image} --no-password {dbname} {args...}"
            ),
        };
        let mut command: Command = cmd.into();
        // docker passes `-e NAME` through from our environment: the value never reaches argv.
        for (key, value) in target.env {
            command.env(key, value);
        }
        if self.server_major >= 14 {
            // The tool's session ends within a second of its client going, even while it waits
            // for a lock (it would otherwise wait on, holding the locks it has, until granted).
            let mut options = std::env::var("PGOPTIONS").unwrap_or_default();
            options.push_str(" -c client_connection_check_interval=1000");
            command.env("PGOPTIONS", options.trim_start());
        }
        die_with_us(&mut command);
        if let Some((key, _)) = target.secrets.first() {
            if !matches!(self.runner, Runner::Host { .. }) {
                bail!(
                    hint!("the URL's {key} can reach {tool} only on this machine, and {} runs elsewhere", self.describe();
                    "install the client tools of Postgres {} or later here (apt-get install postgresql-client-{}) and run with RAILGUN_PGTOOLS=host", self.server_major, self.server_major)
                );
            }
            if url.query_pairs().any(|(k, _)| k == "service") || std::env::var_os("PGSERVICE").is_some() {
                bail!(
                    hint!("the URL names a service and passes {key} itself: {tool} could be given only one of them"; "put {key} in that service's entry of pg_service.conf and remove it from the URL")
                );
            }
            pass_in_service_file(&mut command, &target.secrets)?;
        }
        Ok(command)
    }
}

/// The tool (or the docker client that runs it) is killed when we are, even by SIGKILL: a
/// killed xtask leaves no pg_dump or psql behind on the user's database. The kernel sends the
/// signal when the thread that started the child ends; every caller waits for the tool on that
/// thread. (A tool inside a container outlives its docker client until it next writes.)
fn die_with_us(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: prctl and getppid are async-signal-safe; this runs in the child between fork and
    // exec and touches no memory of the parent's.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // We died between the fork and the prctl: nobody is left to signal it.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::other("the xtask ended before its tool started"));
            }
            Ok(())
        });
    }
}

/// The service that [`pass_in_service_file`] writes.
const SECRETS_SERVICE: &str = "railgun-secrets";

/// Hands `secrets` (libpq parameters such as `sslpassword`, which no environment variable
/// carries) to the libpq program `command` starts, in a connection service file that exists only
/// as a memory file open in it: never on a command line (`ps` shows those to every user), never
/// on disk. libpq reads `PGSERVICEFILE` (`/dev/fd/N`) for the `PGSERVICE` entry, and only for
/// parameters the conninfo lacks.
fn pass_in_service_file(command: &mut Command, secrets: &[(String, String)]) -> Result<()> {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::process::CommandExt;
    let mut text = format!("[{SECRETS_SERVICE}]\n");
    for (key, value) in secrets {
        // libpq's service file has no quoting: a line ends the value, trailing blanks are cut,
        // and libpq 15 and older take lines of up to 255 bytes.
        if value.contains(['\n', '\r', '\0']) || value.ends_with(char::is_whitespace) || value.len() > 200 {
            bail!(
                hint!("the URL's {key} cannot be passed to libpq's tools as it is: it holds a line break, ends in a blank or is over 200 bytes"; "use a passphrase without those, or put it in a pg_service.conf entry named with ?service=")
            );
        }
        text.push_str(&format!("{key}={value}\n"));
    }
    let name = c"railgun-libpq-secrets";
    // SAFETY: a NUL-terminated name; the descriptor returned is ours alone.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("create the service file for libpq's secrets");
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    (&file).write_all(text.as_bytes()).context("write the service file for libpq's secrets")?;
    let raw = file.as_raw_fd();
    command.env("PGSERVICEFILE", format!("/dev/fd/{raw}")).env("PGSERVICE", SECRETS_SERVICE);
    // SAFETY: fcntl is async-signal-safe; it runs in the child between fork and exec, and only
    // keeps this descriptor (which the closure holds open as long as `command` lives) open
    // across exec.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(file.as_raw_fd(), libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// A 1 MiB pipe instead of 64 KiB: the tool and we wake each other far less often.
pub fn widen_pipe(pipe: &impl std::os::fd::AsRawFd) {
    // SAFETY: F_SETPIPE_SZ on a pipe we own; failure only leaves the default size.
    unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
}

/// Reads a tool's stderr to the end on a thread of its own (a full pipe would stall the tool).
pub fn collect_errors(stderr: std::process::ChildStderr) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut { stderr }, &mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[derive(diesel::QueryableByName)]
struct Setting {
    #[diesel(sql_type = diesel::sql_types::Text)]
    setting: String,
}

/// The server's major version (`server_version_num` / 10000; 90600 style before 10).
pub fn server_major(url: &Url) -> Result<u32> {
    server_major_on(&mut crate::connect::establish(url)?)
}

/// [`server_major`] on a connection at hand.
pub fn server_major_on(conn: &mut diesel::PgConnection) -> Result<u32> {
    let row: Setting = diesel::sql_query("SELECT current_setting('server_version_num') AS setting")
        .get_result(conn)
        .context("ask the server's version")?;
    let num: u32 = row.setting.trim().parse().context("parse server_version_num")?;
    Ok(num / 10000)
}

/// The major version in `pg_dump (PostgreSQL) 15.18 (Debian ...)`.
fn parse_major(version: &str) -> Option<u32> {
    let number = version.split_whitespace().find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let digits: String = number.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The host's newest pg_dump and psql: Debian's versioned folders (/usr/lib/postgresql/N/bin)
/// first, since `/usr/bin/pg_dump` there is a Perl wrapper that costs ~60 ms a call; else `PATH`'s.
pub fn host_tools(sh: &Shell) -> Option<(PathBuf, u32)> {
    let mut bindirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    bindirs.retain(|dir| dir.join("pg_dump").is_file() && dir.join("psql").is_file());
    if bindirs.is_empty() {
        bindirs.extend(which::which("pg_dump").ok().and_then(|dump| dump.parent().map(Path::to_path_buf)));
    }
    bindirs
        .into_iter()
        .filter(|dir| dir.join("pg_dump").is_file() && dir.join("psql").is_file())
        .filter_map(|dir| {
            let (dump, psql) = (dir.join("pg_dump"), dir.join("psql"));
            let dump = cmd!(sh, "{dump} --version").quiet().ignore_stderr().read().ok()?;
            let psql = cmd!(sh, "{psql} --version").quiet().ignore_stderr().read().ok()?;
            Some((dir, parse_major(&dump)?.min(parse_major(&psql)?)))
        })
        .max_by_key(|(_, major)| *major)
}

fn container_major(sh: &Shell, container: &str) -> Option<u32> {
    let out = cmd!(sh, "docker exec {container} pg_dump --version").quiet().ignore_stderr().read().ok()?;
    parse_major(&out)
}

/// A running container with pg_dump that can reach `url`: for a local URL, the container that
/// publishes its port (the server itself, reached as localhost inside); for a remote host, the
/// project's Postgres container.
fn project_container(sh: &Shell, project: &str, url: &Url) -> Option<(String, Option<Url>)> {
    which::which("docker").ok()?;
    if !crate::url::is_local(url) {
        let container = crate::project::Project::new(project).postgres();
        let format = "{{.State.Running}}";
        let running = cmd!(sh, "docker inspect -f {format} {container}").quiet().ignore_stderr().read().ok()?;
        return (running.trim() == "true").then_some((container, None));
    }
    let port = url.port().unwrap_or(5432).to_string();
    let publish = format!("publish={port}");
    let format = "{{.Names}}";
    let names = cmd!(sh, "docker ps --filter {publish} --format {format}").quiet().ignore_stderr().read().ok()?;
    let container = names.lines().next()?.trim().to_string();
    // Lines like `5432/tcp -> 127.0.0.1:54321`: the container's side of the URL's port.
    let mappings = cmd!(sh, "docker port {container}").quiet().ignore_stderr().read().ok()?;
    let inside = mappings.lines().find_map(|line| {
        let (inner, outer) = line.split_once(" -> ")?;
        (outer.rsplit(':').next()?.trim() == port).then(|| inner.split('/').next().map(str::to_owned))?
    })?;
    Some((container, Url::parse(&format!("postgres://127.0.0.1:{inside}/")).ok()))
}

/// Local images named `*postgres` whose tag starts with a major version, newest major first.
fn local_images(sh: &Shell) -> Vec<(String, u32)> {
    if which::which("docker").is_err() {
        return Vec::new();
    }
    let format = "{{.Repository}}:{{.Tag}}";
    let Ok(out) = cmd!(sh, "docker images --format {format}").quiet().ignore_stderr().read() else {
        return Vec::new();
    };
    let mut images: Vec<(String, u32)> = out
        .lines()
        .filter_map(|line| {
            let (repo, tag) = line.rsplit_once(':')?;
            if !repo.ends_with("postgres") {
                return None;
            }
            let digits: String = tag.chars().take_while(char::is_ascii_digit).collect();
            let major = digits.parse().ok()?;
            Some((line.to_string(), major))
        })
        .collect();
    images.sort_by_key(|image| std::cmp::Reverse(image.1));
    images
}

#[cfg(test)]
mod tests {
    use super::parse_major;

    #[test]
    fn versions() {
        assert_eq!(parse_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"), Some(15));
        assert_eq!(parse_major("psql (PostgreSQL) 17beta1"), Some(17));
        assert_eq!(parse_major("pg_dump (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(parse_major("psql (PostgreSQL) 17.2"), Some(17));
        assert_eq!(parse_major("nonsense"), None);
    }
}
