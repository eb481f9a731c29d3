//! `down`: stop and remove a checkout's containers, and with `volumes` its data.

use anyhow::{Result, bail};
use xshell::cmd;

use crate::context::{Context, confirm};

/// What `down` removes besides the containers, and whether it asks first.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Also delete the data volumes.
    pub volumes: bool,
    /// Do not ask before deleting data.
    pub yes: bool,
}

/// Stops and removes the containers of `cx`'s project (fast shutdown first); with
/// `options.volumes`, deletes its data volumes too, having asked unless `options.yes`.
pub fn down(cx: &Context, options: &Options) -> Result<()> {
    super::check_engine()?;
    let sh = &cx.sh;
    let project = cx.project();
    let volumes = project.volumes();
    if options.volumes
        && !options.yes
        && !confirm(&format!("delete the data volumes {} for good?", volumes.join(", ")))?
    {
        bail!(hint!("refused: the data volumes were not deleted"; "pass --yes to delete them without asking"));
    }
    let filter = project.label_filter();
    let ids = cmd!(sh, "docker ps -aq --filter {filter}").quiet().read()?;
    let ids: Vec<&str> = ids.lines().collect();
    if ids.is_empty() {
        eprintln!("no containers of project `{project}`");
    } else {
        let ids = &ids;
        // SIGINT is Postgres's fast shutdown (SIGTERM waits for idle clients to leave).
        cmd!(sh, "docker kill --signal SIGINT {ids...}")
            .quiet()
            .ignore_status()
            .ignore_stdout()
            .ignore_stderr()
            .run()?;
        cmd!(sh, "docker stop --time 10 {ids...}").quiet().ignore_stdout().run()?;
        cmd!(sh, "docker rm --volumes {ids...}").quiet().ignore_stdout().run()?;
        eprintln!("removed {} containers of project `{project}`", ids.len());
    }
    if options.volumes {
        let existing = cmd!(sh, "docker volume ls -q").quiet().read()?;
        let doomed: Vec<&String> = volumes.iter().filter(|v| existing.lines().any(|l| l == v.as_str())).collect();
        if !doomed.is_empty() {
            let doomed = &doomed;
            cmd!(sh, "docker volume rm {doomed...}").quiet().ignore_stdout().run()?;
        }
        eprintln!("deleted {} data volumes", doomed.len());
    }
    Ok(())
}
