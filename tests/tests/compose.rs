//! infra/docker-compose.yml runs the same services as `cargo xtask up --pooler`: same images,
//! command, environment, loopback ports, volumes and labels (PgBouncer in the `pooler` profile). Compose runs here as `docker-compose` (v1)
//! or `docker compose` (v2), whichever the machine has.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::{Project, root};

/// What must agree between the two ways of running a service.
fn settings(container: &str) -> Value {
    let out = Command::new("docker").args(["inspect", container]).output().unwrap();
    assert!(out.status.success(), "docker inspect {container}: {}", String::from_utf8_lossy(&out.stderr));
    let inspect: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &inspect[0];
    let mut env: Vec<String> = c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .filter(|e| {
            const POOLER: [&str; 10] = [
                "DB_HOST=",
                "DB_PORT=",
                "DB_USER=",
                "DB_PASSWORD=",
                "POOL_MODE=",
                "LISTEN_PORT=",
                "AUTH_TYPE=",
                "MAX_CLIENT_CONN=",
                "DEFAULT_POOL_SIZE=",
                "ADMIN_USERS=",
            ];
            e.starts_with("POSTGRES_") || POOLER.iter().any(|p| e.starts_with(p))
        })
        .map(str::to_owned)
        .collect();
    env.sort();
    let mounts: Vec<Value> = c["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| serde_json::json!([m["Type"], m["Name"], m["Destination"]]))
        .collect();
    let bindings: Vec<Value> = c["HostConfig"]["PortBindings"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(port, b)| serde_json::json!([port, b[0]["HostIp"]]))
        .collect();
    serde_json::json!({
        "image": c["Config"]["Image"],
        "cmd": c["Config"]["Cmd"],
        "env": env,
        "mounts": mounts,
        "ports": bindings,
        "label": c["Config"]["Labels"]["org.railgun.project"],
    })
}

fn compose(p: &Project, images: &(String, String, String), args: &[&str]) -> Command {
    let v2 = Command::new("docker").args(["compose", "version"]).output().is_ok_and(|o| o.status.success());
    let mut cmd = if v2 {
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    } else {
        Command::new("docker-compose")
    };
    cmd.args(["-p", &p.name, "--profile", "pooler", "-f"])
        .arg(root().join("infra/docker-compose.yml"))
        .args(args)
        .env("RAILGUN_PROJECT", &p.name)
        .env("RAILGUN_POSTGRES_PASSWORD", p.setting("RAILGUN_POSTGRES_PASSWORD").unwrap())
        .env("RAILGUN_POSTGRES_IMAGE", &images.0)
        .env("RAILGUN_REDIS_IMAGE", &images.1)
        .env("RAILGUN_PGBOUNCER_IMAGE", &images.2)
        .env("RAILGUN_POOLER_PORT", "0")
        .env("RAILGUN_POSTGRES_PORT", "0")
        .env("RAILGUN_REDIS_PORT", "0");
    cmd
}

#[test]
fn compose_file_runs_what_up_runs() {
    let p = Project::new("compose");
    p.run(&["up", "--no-migrate", "--pooler"]).assert_ok();
    let pg = format!("{}-postgres", p.name);
    let redis = format!("{}-redis", p.name);
    let pgbouncer = format!("{}-pgbouncer", p.name);
    let ours = (settings(&pg), settings(&redis), settings(&pgbouncer));
    let image = |s: &Value| s["image"].as_str().unwrap().to_string();
    let images = (image(&ours.0), image(&ours.1), image(&ours.2));
    p.run(&["down"]).assert_ok();

    let up = compose(&p, &images, &["up", "-d"])
        .output()
        .expect("docker-compose is installed (apt-get install docker-compose)");
    assert!(up.status.success(), "compose up failed: {}", String::from_utf8_lossy(&up.stderr));
    let theirs = (settings(&pg), settings(&redis), settings(&pgbouncer));
    assert_eq!(ours.0, theirs.0, "postgres differs between `cargo xtask up` and infra/docker-compose.yml");
    assert_eq!(ours.1, theirs.1, "redis differs between `cargo xtask up` and infra/docker-compose.yml");
    assert_eq!(ours.2, theirs.2, "pgbouncer differs between `cargo xtask up --pooler` and infra/docker-compose.yml");

    // The compose file's healthchecks pass on these images.
    let deadline = Instant::now() + Duration::from_secs(90);
    for container in [&pg, &redis, &pgbouncer] {
        loop {
            let out = Command::new("docker")
                .args(["inspect", "--format", "{{.State.Health.Status}}", container])
                .output()
                .unwrap();
            let health = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if health == "healthy" {
                break;
            }
            assert!(Instant::now() < deadline, "{container} never became healthy under compose (last: {health})");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let down = compose(&p, &images, &["down"]).output().unwrap();
    assert!(down.status.success(), "compose down failed: {}", String::from_utf8_lossy(&down.stderr));
}
