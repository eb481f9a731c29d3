//! `cargo xtask up / down / status` against real containers.

use std::net::TcpListener;

use dbkit::redis::{self, Reply};
use diesel::{Connection, PgConnection, RunQueryDsl};
use tests::{Project, containers_labelled};

fn connect(p: &Project) -> PgConnection {
    let url = p.setting("DATABASE_URL").expect("up writes DATABASE_URL to .env");
    PgConnection::establish(&url).expect("connect with diesel to the URL up wrote")
}

fn count_rows(conn: &mut PgConnection) -> Result<i64, diesel::result::Error> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let rows: Vec<Count> = diesel::sql_query("SELECT count(*) AS n FROM survivor").load(conn)?;
    Ok(rows[0].n)
}

#[test]
fn up_reuses_keeps_data_and_down_volumes_wipes_it() {
    let p = Project::new("up");
    let managed = "postgres://app:remote-secret@db.example.com:5432/prod?sslmode=require";
    std::fs::write(
        p.env_file(),
        format!("# my notes\nAPP_ENV=development\nMY_SETTING=\"keep me\"\nDATABASE_URL={managed}\n"),
    )
    .unwrap();

    let first = p.run(&["up"]);
    first.assert_ok();
    let password = p.setting("RAILGUN_POSTGRES_PASSWORD").expect("up keeps the password in .env");
    assert!(first.stdout.contains("DATABASE_URL=postgres://railgun:****@127.0.0.1:"), "{}", first.stdout);
    assert!(!first.all().contains(&password), "the password leaked:\n{}", first.all());
    assert!(!first.all().contains("remote-secret"), "the managed URL's password leaked:\n{}", first.all());
    let env = std::fs::read_to_string(p.env_file()).unwrap();
    let kept = format!("#DATABASE_URL={managed}");
    for line in ["# my notes", "APP_ENV=development", "MY_SETTING=\"keep me\"", "REDIS_URL=redis://127.0.0.1:", &kept] {
        assert!(env.contains(line), ".env lost `{line}`:\n{env}");
    }

    // Usable: diesel connects and migrations ran; Redis answers.
    let mut conn = connect(&p);
    diesel::sql_query("CREATE TABLE survivor (id int primary key)").execute(&mut conn).unwrap();
    diesel::sql_query("INSERT INTO survivor VALUES (1), (2)").execute(&mut conn).unwrap();
    drop(conn);
    let redis = p.setting("REDIS_URL").unwrap();
    redis::ping(&redis).unwrap();
    redis::command(&redis, &["SET", "survivor", "yes"]).unwrap();

    let status = p.run(&["status", "--json"]);
    status.assert_ok();
    let rows: serde_json::Value = serde_json::from_str(&status.stdout).expect("status --json prints JSON");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in rows {
        assert_eq!(row["healthy"], true, "{row}");
        assert!(!row.to_string().contains(&password));
    }
    assert!(p.run(&["status"]).assert_ok().stdout.contains("healthy"));

    // A second up finds the same containers.
    let ids = (p.container_id("postgres"), p.container_id("redis"));
    p.run(&["up"]).assert_ok();
    assert_eq!(ids, (p.container_id("postgres"), p.container_id("redis")), "second up made new containers");

    // A fresh clone (no .env) finds the password the data was made with.
    std::fs::remove_file(p.env_file()).unwrap();
    p.run(&["up", "--no-migrate"]).assert_ok();
    assert_eq!(p.setting("RAILGUN_POSTGRES_PASSWORD").as_deref(), Some(password.as_str()));

    // down keeps the data: up again sees it.
    p.run(&["down"]).assert_ok();
    assert!(p.containers().is_empty(), "down left {:?}", p.containers());
    assert_eq!(p.volumes().len(), 2, "down must keep the volumes");
    p.run(&["up", "--no-migrate"]).assert_ok();
    assert_eq!(count_rows(&mut connect(&p)).unwrap(), 2, "data did not survive down/up");
    assert_eq!(
        redis::command(&p.setting("REDIS_URL").unwrap(), &["GET", "survivor"]).unwrap(),
        Reply::Bulk(Some("yes".into())),
        "Redis data did not survive down/up"
    );

    // down --volumes asks; without a terminal and without --yes it refuses and keeps everything.
    p.run(&["down", "--volumes"]).assert_fails_with("refused");
    assert_eq!(p.volumes().len(), 2);
    p.run(&["down", "--volumes", "--yes"]).assert_ok();
    assert!(p.volumes().is_empty(), "down --volumes left {:?}", p.volumes());
    p.run(&["up", "--no-migrate"]).assert_ok();
    assert!(count_rows(&mut connect(&p)).is_err(), "down --volumes did not wipe the data");
    p.run(&["down", "--volumes", "--yes"]).assert_ok();
}

#[test]
fn no_docker_engine_says_what_was_tried() {
    let p = Project::new("nodocker");
    for cmd in [&["up"][..], &["status"], &["down"]] {
        let run = p.command(cmd).env("DOCKER_HOST", "unix:///nonexistent/docker.sock").output().unwrap();
        let run = tests::Run::from(run);
        run.assert_fails_with("no Docker engine answers");
        assert!(run.stderr.contains("DOCKER_HOST=unix:///nonexistent/docker.sock"), "{}", run.stderr);
        assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    }
}

#[test]
fn port_in_use_is_named_and_nothing_stays_behind() {
    let p = Project::new("port");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let run = p.command(&["up", "--no-migrate"]).env("RAILGUN_POSTGRES_PORT", &port).output().unwrap();
    let run = tests::Run::from(run);
    run.assert_fails_with(&format!("host port {port} is in use"));
    assert!(run.stderr.contains("--postgres-port 0"), "{}", run.stderr);
    assert!(
        !p.containers().contains(&format!("{}-postgres", p.name)),
        "half-made container left: {:?}",
        p.containers()
    );
}

#[test]
fn missing_image_without_registry_says_how_to_build() {
    let p = Project::new("noimage");
    let run = p.run(&["up", "--postgres-image", "railgun-local/no-such-image:1"]);
    run.assert_fails_with("could not be pulled");
    assert!(run.stderr.contains("cargo xtask images build"), "{}", run.stderr);
    assert!(p.containers().is_empty(), "{:?}", p.containers());
}

#[test]
fn a_container_that_fails_to_start_is_removed() {
    let p = Project::new("crash");
    // The Redis image cannot run Postgres (it would run as root): the container exits at once.
    let run = p.run(&["up", "--postgres-image", "railgun-local/redis:7-bookworm"]);
    run.assert_fails_with("cannot start");
    assert!(
        !p.containers().contains(&format!("{}-postgres", p.name)),
        "half-made container left: {:?}",
        p.containers()
    );
}

/// Run by `a_panicking_test_leaves_no_container`, in a child process: brings a project up, panics.
#[test]
#[ignore = "run by a_panicking_test_leaves_no_container"]
fn panicking_helper() {
    let Ok(name) = std::env::var("RAILGUN_TEST_PANIC_PROJECT") else { return };
    let p = Project::named(&name);
    p.run(&["up", "--no-migrate"]).assert_ok();
    assert_eq!(p.containers().len(), 2);
    panic!("on purpose, with containers running");
}

#[test]
fn a_panicking_test_leaves_no_container() {
    let name = format!("railgun-test-panic-{}", std::process::id());
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", tests::qualified(module_path!(), "panicking_helper").as_str(), "--ignored", "--nocapture"])
        .env("RAILGUN_TEST_PANIC_PROJECT", &name)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("on purpose"), "the helper should have panicked:\n{stderr}");
    let left = containers_labelled(&format!("org.railgun.project={name}"));
    assert!(left.is_empty(), "a panicking test left containers: {left:?}");
}
