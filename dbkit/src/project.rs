//! What a checkout's Docker objects are called: one [`Project`] names its containers and
//! volumes (`<project>-postgres`, `<project>-postgres-data`, ...), so no other code builds them.

use std::fmt;

/// A project: the prefix of a checkout's containers and volumes (RAILGUN_PROJECT), and the
/// value of the label they carry ([`PROJECT_LABEL`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Project(String);

/// The label every container and volume of ours carries, valued with the project name.
pub const PROJECT_LABEL: &str = "org.railgun.project";

impl Project {
    pub fn new(name: impl Into<String>) -> Project {
        Project(name.into())
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// The Postgres container.
    pub fn postgres(&self) -> String {
        format!("{}-postgres", self.0)
    }

    /// The Redis container.
    pub fn redis(&self) -> String {
        format!("{}-redis", self.0)
    }

    /// The PgBouncer container in front of Postgres.
    pub fn pgbouncer(&self) -> String {
        format!("{}-pgbouncer", self.0)
    }

    /// A PgBouncer of the test harness, in front of the test container, named by a hash of its
    /// settings.
    pub fn pgbouncer_with(&self, settings: u32) -> String {
        format!("{}-{settings:08x}", self.pgbouncer())
    }

    /// The data volumes: Postgres's, then Redis's.
    pub fn volumes(&self) -> [String; 2] {
        [format!("{}-postgres-data", self.0), format!("{}-redis-data", self.0)]
    }

    /// The label its containers and volumes carry, as `docker run --label` takes it.
    pub fn label(&self) -> String {
        format!("{PROJECT_LABEL}={}", self.0)
    }

    /// `docker ps --filter`'s value for this project's containers.
    pub fn label_filter(&self) -> String {
        format!("label={}", self.label())
    }

    /// A container's service name (`postgres` for `<project>-postgres`), if it is one of ours.
    pub fn service_of<'a>(&self, container: &'a str) -> Option<&'a str> {
        container.strip_prefix(self.0.as_str())?.strip_prefix('-')
    }
}

impl fmt::Display for Project {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_object() {
        let p = Project::new("railgun-app-1a2b");
        assert_eq!(p.postgres(), "railgun-app-1a2b-postgres");
        assert_eq!(p.redis(), "railgun-app-1a2b-redis");
        assert_eq!(p.pgbouncer(), "railgun-app-1a2b-pgbouncer");
        assert_eq!(p.pgbouncer_with(0xab), "railgun-app-1a2b-pgbouncer-000000ab");
        assert_eq!(p.volumes(), ["railgun-app-1a2b-postgres-data", "railgun-app-1a2b-redis-data"]);
        assert_eq!(p.label_filter(), "label=org.railgun.project=railgun-app-1a2b");
        assert_eq!(p.service_of("railgun-app-1a2b-redis"), Some("redis"));
        assert_eq!(p.service_of("other-redis"), None);
    }
}
