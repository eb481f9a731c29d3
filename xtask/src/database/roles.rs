//! `cargo xtask db roles`: the security checklist's two database users, made idempotently.

use anyhow::Result;
use dbkit::roles::{Options, set_up};

use crate::context::Context;

/// Create the least-privilege app role and the migrator role
///
/// The app role may read and write rows of the app's tables (and use their sequences), nothing
/// else: no CREATE, ALTER or DROP. The migrator role owns the schema's objects and runs the
/// DDL. Both log in with passwords taken from the environment (or .env), never from the
/// command line: RAILGUN_APP_DB_PASSWORD and RAILGUN_MIGRATOR_DB_PASSWORD. Run it as the
/// database's admin (DATABASE_URL); running it again changes nothing but the passwords.
#[derive(clap::Args)]
pub struct Roles {
    /// Name of the app's role (DML only)
    #[arg(long, default_value = "railgun_app", value_name = "ROLE")]
    app_role: String,
    /// Name of the migrations' role (DDL; owns the tables)
    #[arg(long, default_value = "railgun_migrator", value_name = "ROLE")]
    migrator_role: String,
    /// The schema holding the app's tables
    #[arg(long, default_value = "public", value_name = "SCHEMA")]
    schema: String,
}

impl Roles {
    pub fn run(self, cx: &Context) -> Result<()> {
        set_up(cx, &Options { app_role: self.app_role, migrator_role: self.migrator_role, schema: self.schema })
    }
}
