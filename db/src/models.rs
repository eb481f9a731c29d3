//! The app's rows, as Rust types. Secrets only ever appear here as argon2 hashes (PHC strings,
//! `$argon2id$...`); the database refuses anything else, and `Debug` never prints them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::schema::{api_tokens, billing_accounts, users};

/// An account.
#[derive(Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct User {
    pub id: i64,
    /// Lowercased; unique.
    pub email: String,
    pub display_name: String,
    /// argon2 PHC string.
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `active` unless the app says otherwise.
    pub status: Option<String>,
    /// The account's billing surrogate: billing never sees `id`.
    pub billing_ref: Option<String>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("display_name", &self.display_name)
            .field("password_hash", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("status", &self.status)
            .field("billing_ref", &self.billing_ref)
            .finish()
    }
}

/// A user to create; `password_hash` must already be an argon2 hash.
#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
}

/// What billing knows of an account: its surrogate, never a user id.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = billing_accounts, primary_key(billing_ref), check_for_backend(diesel::pg::Pg))]
pub struct BillingAccount {
    /// `bill_` and 32 hex digits, made by the database.
    pub billing_ref: String,
    /// `free`, `pro` or `team`.
    pub plan: String,
    pub provider_customer_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A billing account to create; the database picks its `billing_ref`.
#[derive(Insertable)]
#[diesel(table_name = billing_accounts)]
pub struct NewBillingAccount<'a> {
    pub plan: &'a str,
    pub provider_customer_id: Option<&'a str>,
}

/// An API token: found by its public `prefix`, checked against `token_hash`.
#[derive(Clone, Queryable, Selectable, Identifiable, Associations)]
#[diesel(table_name = api_tokens, belongs_to(User), check_for_backend(diesel::pg::Pg))]
pub struct ApiToken {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    /// `rg_` and 8 to 16 letters or digits; shown to the user, safe to log.
    pub prefix: String,
    /// argon2 PHC string of the token's secret part.
    pub token_hash: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("token_hash", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("last_used_at", &self.last_used_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A token to store; `token_hash` must already be an argon2 hash.
#[derive(Insertable)]
#[diesel(table_name = api_tokens)]
pub struct NewApiToken<'a> {
    pub user_id: i64,
    pub name: &'a str,
    pub prefix: &'a str,
    pub token_hash: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
}
