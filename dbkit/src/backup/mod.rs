//! Backups, restores and provider moves: pg_dump's plain SQL in verified gzip files, judged
//! statement by statement and loaded in one transaction by a role with no more rights than the
//! data needs ([`load`]), and the pg_dump/psql they run ([`pgtools`]).

pub mod bucket;
pub mod copy;
pub mod drill;
pub mod dump;
pub mod dumpfile;
pub mod inventory;
pub mod load;
pub mod lockwatch;
pub mod manifest;
pub mod mask;
pub mod masked_dump;
pub mod pgtools;
pub mod progress;
pub mod restore;
pub mod retention;
pub mod sampled;
pub mod scan;
pub mod sealed;
pub mod session;
pub mod settings;
pub mod statement;
pub mod stream;
pub mod subset;
pub mod table;
