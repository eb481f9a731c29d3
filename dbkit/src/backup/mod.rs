//! Backups, restores and provider moves: pg_dump's plain SQL in verified gzip files, restored
//! by psql in one transaction, and the pg_dump/psql they run ([`pgtools`]).

pub mod copy;
pub mod dump;
pub mod dumpfile;
pub mod lockwatch;
pub mod pgtools;
pub mod restore;
pub mod scan;
