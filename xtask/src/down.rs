//! `cargo xtask down`: stop and remove the local containers.

use anyhow::{Result, bail};
use dbkit::docker::services::PROJECT_LABEL;
use xshell::cmd;

use crate::context::{Context, confirm};

/// Stop and remove the local Postgres and Redis containers; their data stays on its volumes.
#[derive(clap::Args)]
pub struct Down {
    /// Also delete the data volumes (asks first)
    #[arg(long)]
    volumes: bool,
    /// Do not ask before deleting data
    #[arg(long, short)]
    yes: bool,
}

impl Down {
    pub fn run(self, cx: &Context) -> Result<()> {
        dbkit::docker::check_engine()?;
        let sh = &cx.sh;
        let project = cx.project.clone();
        let volumes = [format!("{project}-postgres-data"), format!("{project}-redis-data")];
        if self.volumes && !self.yes && !confirm(&format!("delete the data volumes {} for good?", volumes.join(", ")))?
        {
            bail!(hint!("refused: the data volumes were not deleted"; "pass --yes to delete them without asking"));
        }
        let filter = format!("label={PROJECT_LABEL}={project}");
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
        if self.volumes {
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
}
