//! The production guard: destructive commands ask first, and refuse production or remote
//! targets unless forced with the database name typed back. It decides before anything
//! connects, and without a terminal every question is answered "no", never a hang.

use crate::connect::Environment;
use crate::url::{database_name, redact, remote_hosts_with};
use anyhow::{Result, bail};
use url::Url;

use crate::context::{Context, prompt};

/// What a destructive operation was told: the answers the user gave on the command line.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    /// Do not ask (local, non-production targets only).
    pub yes: bool,
    /// Allow a production or remote target; the database name must be typed back.
    pub force: bool,
    /// The target database's name, typed back in advance (scripts).
    pub confirm_db: Option<String>,
    /// The protected target `check_target` cleared: `check` does not ask twice about it.
    cleared: std::cell::RefCell<Option<Url>>,
}

/// What the guard knows about the target.
struct Target {
    shown: String,
    name: String,
    /// Why the target is protected: production, or not on this machine.
    protected: Option<String>,
}

impl Guard {
    pub fn new(yes: bool, force: bool, confirm_db: Option<String>) -> Guard {
        Guard { yes, force, confirm_db, cleared: Default::default() }
    }

    /// Decides, before anything connects, whether `what` may happen to the database at `url`.
    pub fn check(&self, cx: &Context, url: &Url, what: &str) -> Result<()> {
        if self.cleared.borrow().as_ref() == Some(url) {
            return Ok(());
        }
        let target = self.target(cx, url)?;
        self.decide(&target, what, prompt)
    }

    /// The part of `check` for production and remote targets, for commands that connect before
    /// asking (to show what would go): call it before connecting, and `check` after the listing.
    /// A local target passes here and is asked about in `check`.
    pub fn check_target(&self, cx: &Context, url: &Url, what: &str) -> Result<()> {
        let target = self.target(cx, url)?;
        if target.protected.is_none() {
            return Ok(());
        }
        self.decide(&target, what, prompt)?;
        self.cleared.replace(Some(url.clone()));
        Ok(())
    }

    fn target(&self, cx: &Context, url: &Url) -> Result<Target> {
        let app_env = cx.setting("APP_ENV")?;
        let protected = match Environment::parse(app_env.as_deref()) {
            Err(unknown) => {
                Some(format!("{} (treated as production)", unknown.to_string().lines().next().unwrap_or_default()))
            }
            Ok(Environment::Production) => Some(format!("APP_ENV={}", app_env.unwrap_or_default().trim())),
            Ok(Environment::Development) => {
                remote(&cx.project, url, &|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
                    .map(|hosts| format!("it is not a local database ({hosts})"))
            }
        };
        Ok(Target { shown: redact(url), name: database_name(url), protected })
    }

    fn decide(&self, target: &Target, what: &str, ask: impl FnOnce(&str) -> Result<Option<String>>) -> Result<()> {
        let Target { shown, name, protected } = target;
        if let Some(typed) = &self.confirm_db
            && typed != name
        {
            bail!(
                hint!("refused to {what}: --confirm-db `{typed}` does not match the target database `{name}` ({shown})"; "check DATABASE_URL / --database-url: is this the database you meant?")
            );
        }
        if let Some(why) = protected {
            if !self.force {
                bail!(
                    hint!("refused to {what} on {shown}: {why}"; "this destroys data; if you really mean it, add --force and type the database name back (or --force --confirm-db {name} in scripts)")
                );
            }
            if self.confirm_db.is_some() {
                return Ok(());
            }
            let typed = ask(&format!("{what} on {shown} ({why}). Type the database name `{name}` to go on:"))?;
            return match typed {
                Some(typed) if typed == *name => Ok(()),
                Some(_) => bail!("refused to {what}: the name typed back is not `{name}`"),
                None => bail!(
                    hint!("refused to {what} on {shown}: no terminal to type the database name back"; "in scripts pass --force --confirm-db {name}")
                ),
            };
        }
        if self.yes || self.confirm_db.is_some() {
            return Ok(());
        }
        let answer = ask(&format!("{what} on {shown}? [y/N]"))?;
        if answer.is_some_and(|a| matches!(a.to_ascii_lowercase().as_str(), "y" | "yes")) {
            return Ok(());
        }
        bail!(
            hint!("refused to {what} on {shown}: not confirmed"; "answer y at the prompt, or pass --yes in scripts (no terminal means no)")
        );
    }
}

/// The hosts of `url` that are not this machine, listed, unless there are none: every host the
/// URL names counts (a list, `?host=`, `?hostaddr=`, libpq's environment; see
/// [`crate::url::remote_hosts`]), the app's view of the xtask's own Postgres, by its container
/// name, being local.
fn remote(project: &str, url: &Url, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let ours = crate::project::Project::new(project).postgres();
    let remote: Vec<String> = remote_hosts_with(url, env).into_iter().filter(|host| *host != ours).collect();
    (!remote.is_empty()).then(|| remote.join(", "))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn target(protected: bool) -> Target {
        Target {
            shown: "postgres://app:****@db.example.com/rail".into(),
            name: "rail".into(),
            protected: protected.then(|| "APP_ENV=production".to_string()),
        }
    }

    fn guard(yes: bool, force: bool, confirm_db: Option<&str>) -> Guard {
        Guard { yes, force, confirm_db: confirm_db.map(str::to_owned), ..Guard::default() }
    }

    /// Runs the guard with `answer` at any prompt; returns the outcome and whether it asked.
    fn run(g: &Guard, protected: bool, answer: Option<&str>) -> (Result<()>, bool) {
        let asked = Cell::new(false);
        let result = g.decide(&target(protected), "drop every table", |_| {
            asked.set(true);
            Ok(answer.map(str::to_owned))
        });
        (result, asked.get())
    }

    fn refused(outcome: (Result<()>, bool), needle: &str) {
        let err = crate::error::describe(&outcome.0.expect_err("should refuse"));
        assert!(err.contains("refused to drop every table") && err.contains(needle), "{err}");
    }

    #[test]
    fn protected_targets_need_force_and_the_name() {
        refused(run(&guard(true, false, None), true, Some("rail")), "add --force");
        refused(run(&guard(false, false, Some("rail")), true, None), "add --force");
        refused(run(&guard(false, true, None), true, None), "--confirm-db rail");
        refused(run(&guard(false, true, None), true, Some("rai")), "not `rail`");
        refused(run(&guard(false, true, Some("other")), true, None), "does not match");
        assert!(run(&guard(false, true, Some("rail")), true, None).0.is_ok());
        let (result, asked) = run(&guard(false, true, None), true, Some("rail"));
        assert!(result.is_ok() && asked);
    }

    #[test]
    fn local_targets_ask_once() {
        refused(run(&guard(false, false, None), false, None), "no terminal means no");
        refused(run(&guard(false, false, None), false, Some("n")), "not confirmed");
        let (result, asked) = run(&guard(false, false, None), false, Some("y"));
        assert!(result.is_ok() && asked);
        let (result, asked) = run(&guard(true, false, None), false, None);
        assert!(result.is_ok() && !asked);
        refused(run(&guard(true, false, Some("other")), false, None), "does not match");
    }

    /// The remote hosts the guard sees in `url`, with libpq's environment `env`.
    fn remote_in(url: &str, env: &[(&str, &str)]) -> Option<String> {
        let url = Url::parse(url).unwrap();
        let env = |key: &str| env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string());
        remote("railgun-x-123456", &url, &env)
    }

    #[test]
    fn the_apps_container_is_local() {
        assert_eq!(remote_in("postgres://u@railgun-x-123456-postgres:5432/d", &[]), None);
        assert_eq!(remote_in("postgres://u@db.example.com/d", &[]).as_deref(), Some("db.example.com"));
    }

    #[test]
    fn every_host_a_url_names_is_read() {
        let local = [
            "postgres://u@localhost/d",
            "postgres://u@127.0.0.1:5433/d",
            "postgres://u@[::1]:5433/d",
            "postgres://u@localhost,127.0.0.2:5433/d",
            "postgres:///d?host=/var/run/postgresql",
            "postgres://u@%2Ftmp%2Fsockets/d",
            "postgres://u@localhost/d?host=/tmp,localhost&hostaddr=127.0.0.1,::1",
            "postgres://u@localhost/d?hostaddr=,127.0.0.1",
            "postgres:///d?host=@abstract",
        ];
        for url in local {
            assert_eq!(remote_in(url, &[]), None, "{url}");
        }
        let remote = [
            ("postgres://u@localhost/d?host=db.prod.example.com", "db.prod.example.com"),
            ("postgres://u@localhost/d?host=/tmp,db.prod.example.com", "db.prod.example.com"),
            ("postgres://u@localhost,db.prod.example.com:5433/d", "db.prod.example.com"),
            ("postgres://u@db.prod.example.com,localhost:5433/d", "db.prod.example.com"),
            ("postgres://u@localhost/d?hostaddr=10.0.0.5", "10.0.0.5"),
            ("postgres://u@localhost/d?host=localhost&hostaddr=127.0.0.1,10.0.0.6", "10.0.0.6"),
            ("postgres://u@[2001:db8::1]:5432/d", "2001:db8::1"),
            ("postgres://u@localhost/d?service=prod", "service prod"),
        ];
        for (url, host) in remote {
            assert_eq!(remote_in(url, &[]).as_deref(), Some(host), "{url}");
        }
    }

    #[test]
    fn libpqs_environment_fills_in_what_the_url_leaves_out() {
        let prod = [("PGHOST", "db.prod.example.com")];
        assert_eq!(remote_in("postgres:///d?user=u&dbname=d", &prod).as_deref(), Some("db.prod.example.com"));
        assert_eq!(remote_in("postgres://u@localhost/d", &prod), None, "the URL's host wins");
        assert_eq!(remote_in("postgres://u@localhost/d", &[("PGHOSTADDR", "10.0.0.7")]).as_deref(), Some("10.0.0.7"));
        assert_eq!(remote_in("postgres://u@localhost/d", &[("PGSERVICE", "prod")]).as_deref(), Some("service prod"));
    }
}
