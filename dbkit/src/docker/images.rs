//! Which images run the services, and how to build them offline.
//!
//! The official `postgres`, `redis` and `edoburu/pgbouncer` images are the default. A machine
//! without a registry (CI here, air-gapped offices) cannot pull them, so [`build_offline`] makes
//! equivalent images from Debian packages: debootstrap, our entry points, `docker import`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

/// Official Postgres 17: 18's images moved PGDATA, which breaks volumes made for earlier majors.
pub const POSTGRES_OFFICIAL: &str = "postgres:17-alpine";
pub const REDIS_OFFICIAL: &str = "redis:7-alpine";
/// PgBouncer from the official registry: edoburu's image is configured from the environment
/// (DB_HOST, POOL_MODE, ...), small (Alpine), and kept current with PgBouncer's releases;
/// Bitnami's stopped being published freely in 2025.
pub const PGBOUNCER_OFFICIAL: &str = "edoburu/pgbouncer:v1.24.1-p1";
/// Tagged with the real majors of Debian bookworm's packages.
pub const POSTGRES_OFFLINE: &str = "railgun-local/postgres:15-bookworm";
pub const REDIS_OFFLINE: &str = "railgun-local/redis:7-bookworm";
pub const PGBOUNCER_OFFLINE: &str = "railgun-local/pgbouncer:1.18-bookworm";

const POSTGRES_ENTRYPOINT: &str = include_str!("../../../infra/images/postgres-entrypoint.sh");
const REDIS_ENTRYPOINT: &str = include_str!("../../../infra/images/redis-entrypoint.sh");
const PGBOUNCER_ENTRYPOINT: &str = include_str!("../../../infra/images/pgbouncer-entrypoint.sh");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Postgres,
    Redis,
    Pgbouncer,
}

impl Service {
    fn env_var(self) -> &'static str {
        match self {
            Service::Postgres => "RAILGUN_POSTGRES_IMAGE",
            Service::Redis => "RAILGUN_REDIS_IMAGE",
            Service::Pgbouncer => "RAILGUN_PGBOUNCER_IMAGE",
        }
    }
    fn official(self) -> &'static str {
        match self {
            Service::Postgres => POSTGRES_OFFICIAL,
            Service::Redis => REDIS_OFFICIAL,
            Service::Pgbouncer => PGBOUNCER_OFFICIAL,
        }
    }
    pub fn offline(self) -> &'static str {
        match self {
            Service::Postgres => POSTGRES_OFFLINE,
            Service::Redis => REDIS_OFFLINE,
            Service::Pgbouncer => PGBOUNCER_OFFLINE,
        }
    }
    /// Every service, in the order `images build` reports them.
    pub const ALL: [Service; 3] = [Service::Postgres, Service::Redis, Service::Pgbouncer];
}

/// The image to run for `service`: the one asked for (flag, then `RAILGUN_*_IMAGE`), else the
/// official one if present or pullable, else the offline build (made now if the tools are here).
pub fn resolve(sh: &Shell, service: Service, asked: Option<&str>) -> Result<String> {
    let asked = asked.map(str::to_owned).or_else(|| std::env::var(service.env_var()).ok().filter(|s| !s.is_empty()));
    if let Some(image) = asked {
        if present(sh, &image) || pull(sh, &image).is_ok() {
            return Ok(image);
        }
        if image == service.offline() {
            build_offline(sh, &[service])?;
            return Ok(image);
        }
        bail!(
            hint!("image `{image}` is not present and could not be pulled (no registry?)"; "run `cargo xtask images build` and use {}={} instead, or `docker load` the image", service.env_var(), service.offline())
        );
    }
    let official = service.official();
    if present(sh, official) {
        return Ok(official.to_owned());
    }
    if present(sh, service.offline()) {
        return Ok(service.offline().to_owned());
    }
    match pull(sh, official) {
        Ok(()) => Ok(official.to_owned()),
        Err(pull_error) => {
            eprintln!(
                "note: cannot pull {official} ({pull_error:#}); building the offline images from Debian packages instead (about a minute, once)"
            );
            build_offline(sh, &[service])
                .context(format!("{official} is not present, cannot be pulled, and the offline build failed"))?;
            Ok(service.offline().to_owned())
        }
    }
}

/// True when the image is in the local engine.
pub fn present(sh: &Shell, image: &str) -> bool {
    let format = "{{.Id}}";
    cmd!(sh, "docker image inspect --format {format} {image}").quiet().ignore_stdout().ignore_stderr().run().is_ok()
}

fn pull(sh: &Shell, image: &str) -> Result<()> {
    let out = cmd!(sh, "docker pull --quiet {image}").quiet().ignore_status().output()?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    bail!("{}", err.lines().last().unwrap_or("docker pull failed").trim())
}

/// Builds the offline images of `services` from Debian bookworm's packages (root, debootstrap
/// and docker needed): Postgres and Redis share one root file system, PgBouncer has its own.
pub fn build_offline(sh: &Shell, services: &[Service]) -> Result<()> {
    let euid = cmd!(sh, "id -u").quiet().read()?;
    if euid.trim() != "0" {
        bail!(
            hint!("building the offline images needs root (debootstrap makes device nodes)"; "run `sudo cargo xtask images build` once, or `docker load` images built elsewhere")
        );
    }
    if which::which("debootstrap").is_err() {
        if which::which("apt-get").is_err() {
            bail!(
                hint!("building the offline images needs debootstrap"; "install it (Debian/Ubuntu: `apt-get install debootstrap`), then `cargo xtask images build`")
            );
        }
        // Root on a Debian-like machine already: the one missing package is ours to fetch.
        eprintln!("$ apt-get install debootstrap");
        cmd!(sh, "apt-get update -qq").quiet().ignore_stdout().run().context("apt-get update")?;
        cmd!(sh, "apt-get install -y -qq debootstrap")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .quiet()
            .ignore_stdout()
            .run()
            .context(
                hint!("install debootstrap"; "`apt-get install debootstrap` by hand, then `cargo xtask images build`"),
            )?;
    }
    if services.iter().any(|s| matches!(s, Service::Postgres | Service::Redis)) {
        build_rootfs(sh, "postgresql-15,redis-server", |sh, rootfs, tarball| {
            prepare_postgres_redis(sh, rootfs)?;
            pack(sh, rootfs, tarball)?;
            let postgres = [
                "ENV PGDATA=/var/lib/postgresql/data",
                "VOLUME /var/lib/postgresql/data",
                "EXPOSE 5432",
                "ENTRYPOINT [\"docker-entrypoint.sh\"]",
                "CMD [\"postgres\"]",
            ];
            let redis = [
                "WORKDIR /data",
                "VOLUME /data",
                "EXPOSE 6379",
                "ENTRYPOINT [\"redis-entrypoint.sh\"]",
                "CMD [\"redis-server\"]",
            ];
            import(sh, tarball, POSTGRES_OFFLINE, COMMON.iter().chain(&postgres))?;
            import(sh, tarball, REDIS_OFFLINE, COMMON.iter().chain(&redis))
        })?;
    }
    if services.contains(&Service::Pgbouncer) {
        // postgresql-client-15 for pg_isready, the healthcheck (edoburu's image has it too).
        build_rootfs(sh, "pgbouncer,postgresql-client-15", |sh, rootfs, tarball| {
            if !rootfs.join("usr/sbin/pgbouncer").exists() {
                bail!("the Debian packages did not bring PgBouncer");
            }
            strip_rootfs(rootfs, &["etc/pgbouncer/pgbouncer.ini", "etc/pgbouncer/userlist.txt"]);
            // The user the entry point runs PgBouncer as (postgresql-common makes it, when present).
            let ensure_user =
                "id -u postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres";
            cmd!(sh, "chroot {rootfs} sh -c {ensure_user}").quiet().run().context("create the postgres user")?;
            write_executable(&rootfs.join("usr/local/bin/pgbouncer-entrypoint.sh"), PGBOUNCER_ENTRYPOINT)?;
            pack(sh, rootfs, tarball)?;
            let pgbouncer = [
                "EXPOSE 6432",
                "ENTRYPOINT [\"pgbouncer-entrypoint.sh\"]",
                "CMD [\"pgbouncer\", \"/etc/pgbouncer/pgbouncer.ini\"]",
            ];
            import(sh, tarball, PGBOUNCER_OFFLINE, COMMON.iter().chain(&pgbouncer))
        })?;
    }
    Ok(())
}

const COMMON: [&str; 3] = [
    "ENV LANG=C.UTF-8",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/lib/postgresql/15/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LABEL org.railgun.offline-image=true",
];

/// debootstrap with `packages` into a fresh folder, then `finish(rootfs, tarball)`; the folder goes after.
fn build_rootfs(sh: &Shell, packages: &str, finish: impl FnOnce(&Shell, &Path, &Path) -> Result<()>) -> Result<()> {
    let mirror = std::env::var("RAILGUN_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let work = std::env::temp_dir().join(format!("railgun-images-{}", std::process::id()));
    let rootfs = work.join("rootfs");
    let result = (|| {
        let include = format!("--include={packages}");
        eprintln!("$ debootstrap --variant=minbase {include} bookworm {} {mirror}", rootfs.display());
        cmd!(sh, "debootstrap --variant=minbase {include} bookworm {rootfs} {mirror}")
            .quiet()
            .ignore_stdout()
            .run()
            .context(
                "debootstrap failed; is the Debian mirror reachable? (set RAILGUN_DEBIAN_MIRROR to use another)",
            )?;
        finish(sh, &rootfs, &work.join("rootfs.tar"))
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn pack(sh: &Shell, rootfs: &Path, tarball: &Path) -> Result<()> {
    cmd!(sh, "tar -C {rootfs} -cf {tarball} .").quiet().run().context("pack the root file system")
}

/// Caches, docs and `extra` paths are dead weight in an image.
fn strip_rootfs(rootfs: &Path, extra: &[&str]) {
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale"] {
        let _ = std::fs::remove_dir_all(rootfs.join(dir));
    }
    for file in extra {
        let _ = std::fs::remove_file(rootfs.join(file));
    }
}

fn prepare_postgres_redis(sh: &Shell, rootfs: &Path) -> Result<()> {
    if !rootfs.join("usr/lib/postgresql/15/bin/postgres").exists() {
        bail!("the Debian packages did not bring Postgres 15; the image would be mislabelled");
    }
    // The package's own cluster is dead weight: the entry point runs initdb.
    for dir in ["var/lib/postgresql/15", "etc/postgresql/15"] {
        let _ = std::fs::remove_dir_all(rootfs.join(dir));
    }
    strip_rootfs(rootfs, &[]);
    let bin = rootfs.join("usr/local/bin");
    write_executable(&bin.join("docker-entrypoint.sh"), POSTGRES_ENTRYPOINT)?;
    write_executable(&bin.join("redis-entrypoint.sh"), REDIS_ENTRYPOINT)?;
    for dir in ["docker-entrypoint-initdb.d", "var/lib/postgresql/data", "var/run/postgresql", "data"] {
        std::fs::create_dir_all(rootfs.join(dir))?;
    }
    cmd!(sh, "chroot {rootfs} chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql").quiet().run()?;
    cmd!(sh, "chroot {rootfs} chown redis:redis /data").quiet().run()?;
    Ok(())
}

fn write_executable(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn import<'a>(sh: &Shell, tarball: &Path, tag: &str, changes: impl Iterator<Item = &'a &'a str>) -> Result<()> {
    let args: Vec<String> = changes.flat_map(|c| ["--change".to_string(), c.to_string()]).collect();
    eprintln!("$ docker import ... {tag}");
    cmd!(sh, "docker import {args...} {tarball} {tag}")
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("docker import {tag}"))?;
    Ok(())
}
