//! The end-to-end tests of `cargo xtask`: real Docker, real Postgres, the real binary. One
//! integration-test binary, a module per area (cargo links each binary whole: 27 binaries
//! linked diesel, testcontainers and the rest 27 times). A child test a test starts again by
//! name takes its module path: see [`tests::qualified`].

mod architecture;
mod backup;
mod bad_input;
mod branch;
mod compose;
mod connection;
mod diesel_interop;
mod doctor;
mod drill;
mod harness;
mod help;
mod mask;
mod migration_check;
mod migration_generate;
mod migration_lifecycle;
mod migrations;
mod offsite;
mod pooler;
mod print_schema;
mod progress;
mod rehearse;
mod restore_rights;
mod roles_audit;
mod schema_review;
mod security;
mod seeds;
mod ssl;
mod trust;
mod up;
