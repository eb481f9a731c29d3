//! Rail Gun's database workflow as a library: what `cargo xtask`, the app and its tests share.
//!
//! Without features it is what an app needs to migrate at start-up: URLs ([`url`]),
//! connections with the guide's troubleshooting ([`connect`]) and the migration runner that
//! holds a Postgres advisory lock ([`migration`]). Features add the rest:
//! - `tools`: diesel.toml, `.env`, the production guard, schema.rs printing and diffing,
//!   backup / verify / restore / copy;
//! - `docker`: the local services and the offline images;
//! - `testing`: the test harness (a migrated database per test, in milliseconds);
//! - `lint`: `migration lint`, on Postgres's own parser (libpg_query, compiled from C).
//!
//! It never depends on an app's schema.rs, models or embedded migrations: a tool built on it
//! builds whatever state those files are in.

#[macro_use]
pub mod error;

pub mod checkout;
pub mod connect;
pub mod duration;
pub mod lock;
pub mod migration;
pub mod pooler;
pub mod url;

#[cfg(feature = "tools")]
pub mod audit;
#[cfg(feature = "tools")]
pub mod backup;
#[cfg(feature = "tools")]
pub mod branch;
#[cfg(feature = "tools")]
pub mod catalog;
#[cfg(feature = "tools")]
pub mod checks;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "tools")]
pub mod context;
#[cfg(feature = "tools")]
pub mod diesel_config;
#[cfg(feature = "docker")]
pub mod docker;
#[cfg(all(feature = "tools", feature = "docker"))]
pub mod doctor;
#[cfg(any(feature = "tools", feature = "testing"))]
pub mod env_file;
#[cfg(feature = "tools")]
pub mod generate;
#[cfg(feature = "tools")]
pub mod git;
#[cfg(feature = "tools")]
pub mod guard;
#[cfg(feature = "lint")]
pub mod lint;
#[cfg(any(feature = "tools", feature = "docker"))]
pub mod project;
#[cfg(any(feature = "docker", feature = "testing"))]
pub mod redis;
#[cfg(feature = "tools")]
pub mod roles;
#[cfg(feature = "tools")]
pub mod schema;
#[cfg(feature = "tools")]
pub mod scratch;
#[cfg(any(feature = "tools", feature = "docker"))]
pub mod secret;
#[cfg(feature = "tools")]
pub mod seed;
#[cfg(feature = "testing")]
pub mod testing;
