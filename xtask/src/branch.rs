//! `cargo xtask branch`: a database per git branch, switched on checkout.

use anyhow::Result;
use dbkit::branch::manage::{self, Listed};
use dbkit::branch::switch::{self, Outcome};

use crate::context::Context;
use crate::guard::GuardArgs;

/// A database per git branch, switched on checkout
///
/// `branch on` (once per checkout) installs a git post-checkout hook. From then on each branch
/// has its own database on this checkout's server: made on its first checkout by cloning the
/// database of the branch you came from, then brought to the branch's migrations (another
/// branch's reverted from their recorded down.sql, pending ones applied). .env's DATABASE_URL
/// (and DIRECT_URL) name it, so the app, every command and the tests follow git.
#[derive(clap::Subcommand)]
pub enum Branch {
    On(On),
    Off(Off),
    Switch(Switch),
    List(List),
    Reset(Reset),
    Snapshot(Snapshot),
    Restore(Restore),
    Prune(Prune),
}

impl Branch {
    pub fn run(self, cx: &Context) -> Result<()> {
        match self {
            Branch::On(_) => {
                let xtask = std::env::current_exe()?;
                let (installed, outcome) = manage::on(cx, &xtask)?;
                eprintln!(
                    "branch databases on: {ENABLED}=on in {}",
                    cx.env_file().display(),
                    ENABLED = dbkit::branch::ENABLED
                );
                eprintln!("installed {}", installed.path.display());
                if let Some(kept) = installed.kept {
                    eprintln!("the hook that was there runs first, from {}", kept.display());
                }
                report(&outcome, "");
                Ok(())
            }
            Branch::Off(_) => {
                eprintln!("branch databases off; .env stays on the database it names, the others stay on the server");
                eprintln!("{}", manage::off(cx)?);
                Ok(())
            }
            Branch::Switch(cmd) => cmd.run(cx),
            Branch::List(cmd) => cmd.run(cx),
            Branch::Reset(cmd) => {
                eprintln!("{}", manage::reset(cx, &cmd.guard.guard())?);
                Ok(())
            }
            Branch::Snapshot(cmd) => {
                eprintln!("{}", manage::snapshot(cx, &cmd.name, cmd.replace)?);
                Ok(())
            }
            Branch::Restore(cmd) => {
                eprintln!("{}", manage::restore(cx, &cmd.name, &cmd.guard.guard())?);
                Ok(())
            }
            Branch::Prune(cmd) => {
                let names = manage::prune(cx, &cmd.guard.guard(), cmd.dry_run)?;
                match (names.is_empty(), cmd.dry_run) {
                    (true, _) => eprintln!("no database of a deleted branch"),
                    (false, true) => eprintln!("would drop: {}", names.join(", ")),
                    (false, false) => eprintln!("dropped: {}", names.join(", ")),
                }
                Ok(())
            }
        }
    }
}

/// Follow git in this checkout: record it in .env, install the post-checkout hook (a hook
/// already there is kept and runs first), and switch
#[derive(clap::Args)]
pub struct On {}

/// Stop following git: remove the hook (putting back the one it kept); .env stays on the
/// database it names and the branch databases stay on the server
#[derive(clap::Args)]
pub struct Off {}

/// Switch .env to the checked-out branch's database, making it if needed (what the hook runs)
#[derive(clap::Args)]
pub struct Switch {
    /// Run as the hook: never fail the checkout; a failure is said, and recorded for the next
    /// command to name
    #[arg(long, hide = true)]
    hook: bool,
}

impl Switch {
    fn run(self, cx: &Context) -> Result<()> {
        let prefix = if self.hook { "railgun: " } else { "" };
        match switch::switch(cx) {
            Ok(outcome) => {
                if matches!(outcome, Outcome::Off) && !self.hook {
                    anyhow::bail!(
                        hint!("branch databases are off in this checkout"; "`cargo xtask branch on` turns them on")
                    );
                }
                report(&outcome, prefix);
                Ok(())
            }
            Err(error) if self.hook => {
                eprintln!("railgun: the database did not follow the checkout");
                crate::context::report(&error);
                eprintln!("railgun: the checkout itself is done; the next cargo xtask command will say this again");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

fn report(outcome: &Outcome, prefix: &str) {
    match outcome {
        Outcome::Off => {}
        Outcome::Detached { database, branch } => eprintln!(
            "{prefix}HEAD is detached (a rebase, a bisect, a commit checked out): .env stays on {database}{}",
            branch.as_ref().map(|b| format!(", branch `{b}`'s database")).unwrap_or_default()
        ),
        Outcome::Switched(s) => {
            let made = match &s.created_from {
                Some((source, took)) => format!(", made from {source} in {:.2} s", took.as_secs_f64()),
                None => String::new(),
            };
            let mut moved = Vec::new();
            if s.reverted > 0 {
                moved.push(format!("{} phantom migration(s) reverted", s.reverted));
            }
            if s.applied > 0 {
                moved.push(format!("{} migration(s) applied", s.applied));
            }
            let moved = if moved.is_empty() { String::new() } else { format!("; {}", moved.join(", ")) };
            eprintln!("{prefix}branch `{}`: database {}{made}{moved}", s.branch, s.database);
        }
    }
}

/// List the branch databases and snapshots of this server: branch, database, size, applied
/// migrations, last used; `*` marks the one .env names, `gone` those of deleted branches
#[derive(clap::Args)]
pub struct List {
    /// JSON on stdout instead
    #[arg(long)]
    json: bool,
}

impl List {
    fn run(self, cx: &Context) -> Result<()> {
        let listed = manage::list(cx)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&listed)?);
            return Ok(());
        }
        for l in &listed {
            println!("{}", line(l));
        }
        Ok(())
    }
}

fn line(l: &Listed) -> String {
    let mark = if l.current { '*' } else { ' ' };
    let branch = match &l.snapshot {
        Some(name) => format!("{} @ snapshot {name}", l.branch),
        None => l.branch.clone(),
    };
    let gone = if l.gone { " (gone)" } else { "" };
    let size = l.size_bytes.map_or("?".to_string(), |b| format!("{:.1} MB", b as f64 / 1_048_576.0));
    let migrations = l.migrations.map_or("?".to_string(), |n| n.to_string());
    format!("{mark} {branch}{gone}  {}  {size}  {migrations} migrations  last used {}", l.database, l.last_used)
}

/// Clone the branch's database again from its parent (asks first), then apply the branch's
/// migrations
#[derive(clap::Args)]
pub struct Reset {
    #[command(flatten)]
    guard: GuardArgs,
}

/// Save the branch's database as a named snapshot (a clone kept on the server)
#[derive(clap::Args)]
pub struct Snapshot {
    /// The snapshot's name (letters, digits, - _ .)
    name: String,
    /// Take it again if the branch has a snapshot of that name
    #[arg(long)]
    replace: bool,
}

/// Replace the branch's database with one of its snapshots (asks first; the snapshot stays)
#[derive(clap::Args)]
pub struct Restore {
    /// The snapshot's name (`branch list` shows them)
    name: String,
    #[command(flatten)]
    guard: GuardArgs,
}

/// Drop the databases and snapshots of branches git no longer has (asks first)
#[derive(clap::Args)]
pub struct Prune {
    /// List them, drop nothing
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    guard: GuardArgs,
}
