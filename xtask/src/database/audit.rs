//! `cargo xtask db audit`: the guide's security checklist, checked against a live database.

use anyhow::Result;
use dbkit::audit::{Options, audit};
use dbkit::url::redact;

use crate::context::Context;

/// Check the security checklist against a live database
///
/// SSL enforced, the app role neither superuser nor owner (nor able to become one through role
/// membership, nor a member of pg_read_server_files and the like), tables without row level security,
/// columns that look like plaintext secrets, superuser (service_role-style) use by
/// DATABASE_URL. One line a check, each failure with its fix; exits non-zero on a failure.
#[derive(clap::Args)]
pub struct Audit {
    /// The app's least-privilege role (see `cargo xtask db roles`)
    #[arg(long, default_value = "railgun_app", value_name = "ROLE")]
    app_role: String,
    /// The schema holding the app's tables
    #[arg(long, default_value = "public", value_name = "SCHEMA")]
    schema: String,
}

impl Audit {
    pub fn run(self, cx: &Context) -> Result<()> {
        let url = cx.database_url()?;
        let mut conn = dbkit::connect::establish(&url)?;
        eprintln!("auditing {}", redact(&url));
        let checks = audit(&mut conn, &url, &Options { app_role: self.app_role, schema: self.schema })?;
        print!("{checks}");
        checks.verdict()
    }
}
