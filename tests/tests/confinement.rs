//! Issue 14: nothing a config says, and nothing the host sends, makes a worker run a program
//! outside a game's directory, hook a loader or an interpreter, hand a game server the worker's
//! secrets, or run it as root. The host refuses what it can see in the text (422 naming the
//! field); the worker checks again on disk, links resolved, before every install and spawn, and
//! ends what it refuses `crashed` with cause `refused` — never restarted, nothing executed.

use chrono::Utc;
use manman::up::{self};
use manman_core::config::{ConfigSpec, RestartMode};
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::host::StartRequest;
use manman_core::id::{ConfigId, GameServerId};
use manman_core::process::TokioProcessRunner;
use manman_core::status::{Cause, Status};
use manman_core::worker_service::running_as_root;
use manman_http::{Client, ClientError};
use manman_test_support::game_files::reachable_tempdir;
use manman_tests::harness::{Harness, RunningWorker, WAIT};
use manman_tests::{eventually, up_options, wait_instance_status};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

const FAKE: &str = env!("CARGO_BIN_EXE_e2e-fake-game-server");

/// A script that leaves `marker` behind when it runs.
fn marker_script(path: &Path, marker: &Path) {
    std::fs::write(path, format!("#!/bin/sh\ntouch '{}'\n", marker.display())).expect("script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A directory outside the install directory, writable by the servers' user (so that a marker
/// would appear if anything ran), holding `escape.sh`.
struct Outside {
    dir: tempfile::TempDir,
}

impl Outside {
    fn new() -> Self {
        let dir = reachable_tempdir();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        marker_script(
            &dir.path().join("escape.sh"),
            &dir.path().join("ran-escape"),
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn marker(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Starts `config` and waits for its end: it must be `crashed` with cause `refused`, at once
/// (no restart), with a detail that contains `says`.
async fn refused(h: &Harness, config: ConfigId, says: &str) {
    let id = h.start(config).await;
    let instance = h.wait_status(id, Status::Crashed).await;
    let history = h.history(id).await;
    let last = history.last().expect("history");
    assert_eq!(last.cause, Cause::Refused, "{history:#?}");
    let detail = last.detail.clone().unwrap_or_default();
    assert!(detail.contains(says), "{detail:?} should say {says:?}");
    assert_eq!(instance.restart_count, 0, "a refusal is never retried");
    assert!(
        history.iter().all(|e| e.cause != Cause::CrashPolicy),
        "{history:#?}"
    );
}

/// A config written straight into the store, past the API's checks (as a compromised or older
/// host could send it).
async fn stored_config(h: &Harness, game: GameServerId, spec: &ConfigSpec) -> ConfigId {
    h.host
        .store()
        .catalogue
        .create_config(game, spec, Utc::now())
        .await
        .expect("stored config")
        .id
}

/// A host with one worker, a directory outside its install directory, and the fake game's
/// directory.
async fn scene() -> (Harness, RunningWorker, Outside, PathBuf) {
    let h = Harness::new(FAKE.as_ref()).await;
    let worker = h
        .spawn_worker(h.worker(h.settings("w1"), TokioProcessRunner::new()))
        .await;
    let game_dir = h.install_dir.join("games/fake");
    (h, worker, Outside::new(), game_dir)
}

#[tokio::test]
async fn links_out_of_the_install_directory_are_refused_and_nothing_runs() {
    let (h, worker, outside, game_dir) = scene().await;

    // The control: a script inside the game's directory runs, and its marker appears — so a
    // missing marker below means nothing ran, not that the marker could not be written.
    marker_script(&game_dir.join("inside.sh"), &outside.marker("ran-inside"));
    let inside = h
        .config("inside", |c| c.executable = "inside.sh".into())
        .await;
    let id = h.start(inside).await;
    h.wait_status(id, Status::Complete).await;
    assert!(outside.marker("ran-inside").exists(), "the control ran");

    // The game's directory is a link out of the install directory.
    symlink(outside.path(), h.install_dir.join("games/out")).expect("link");
    let game = h
        .host
        .catalogue()
        .create_game(&NewGameServer {
            name: "out".into(),
            server_type: ServerType::Local {
                path: "games/out".into(),
            },
        })
        .await
        .expect("the text of the path is fine");
    let mut spec = ConfigSpec::new("escape", "escape.sh");
    spec.restart.mode = RestartMode::OnCrash;
    let config = h
        .host
        .catalogue()
        .create_config(game.id, &spec)
        .await
        .expect("config")
        .id;
    refused(&h, config, "outside").await;

    // The executable is a link out of the game's directory.
    symlink(outside.path().join("escape.sh"), game_dir.join("linked.sh")).expect("link");
    let config = h
        .config("linked", |c| c.executable = "linked.sh".into())
        .await;
    refused(&h, config, "outside").await;

    // The working dir is a link out.
    symlink(outside.path(), game_dir.join("wd")).expect("link");
    let config = h
        .config("workdir", |c| {
            c.executable = "inside.sh".into();
            c.working_dir = Some("wd".into());
        })
        .await;
    refused(&h, config, "working_dir").await;

    // A library directory that leads out through the link.
    let config = h
        .config("libs", |c| {
            c.executable = "inside.sh".into();
            c.env.insert("LD_LIBRARY_PATH".into(), "wd".into());
        })
        .await;
    refused(&h, config, "LD_LIBRARY_PATH").await;

    assert!(
        !outside.marker("ran-escape").exists(),
        "nothing outside the install directory ran"
    );
    worker.stop().await;
}

#[tokio::test]
async fn configs_that_bypassed_the_api_are_refused_by_the_worker() {
    let (h, worker, outside, game_dir) = scene().await;
    let marker = outside.marker("ran");
    marker_script(&game_dir.join("server.sh"), &marker);
    let sh = |args: &str| {
        let mut spec = ConfigSpec::new("x", "/bin/sh");
        spec.args = vec!["-c".into(), args.into()];
        spec
    };
    let with_env = |name: &str, key: &str, value: &str| {
        let mut spec = ConfigSpec::new(name, "server.sh");
        spec.env.insert(key.into(), value.into());
        spec
    };
    let touch = format!("touch '{}'", marker.display());
    let cases: Vec<(ConfigSpec, &str)> = vec![
        (
            ConfigSpec {
                name: "absolute".into(),
                ..sh(&touch)
            },
            "absolute",
        ),
        (ConfigSpec::new("dotdot", "../fake/server.sh"), ".."),
        (ConfigSpec::new("nul", "server.sh\0x"), "control"),
        (
            with_env("preload", "LD_PRELOAD", "./server.sh"),
            "LD_PRELOAD",
        ),
        (with_env("bashenv", "BASH_ENV", "./server.sh"), "BASH_ENV"),
        (
            with_env("libpath", "LD_LIBRARY_PATH", "/usr/lib"),
            "LD_LIBRARY_PATH",
        ),
        (
            with_env("secret", "S", "$MANMAN_WORKER_SA_CLIENT_SECRET"),
            "MANMAN_WORKER_PASS_ENV",
        ),
    ];
    for (spec, says) in cases {
        assert!(spec.validate().is_err(), "the API would refuse {spec:?}");
        let config = stored_config(&h, h.game.id, &spec).await;
        refused(&h, config, says).await;
    }

    // A local game whose path is absolute, stored past the API.
    let game = h
        .host
        .store()
        .catalogue
        .create_game(
            &NewGameServer {
                name: "bin".into(),
                server_type: ServerType::Local {
                    path: "/bin".into(),
                },
            },
            Utc::now(),
        )
        .await
        .expect("stored game");
    let config = stored_config(&h, game.id, &sh(&touch)).await;
    refused(&h, config, "absolute").await;

    assert!(!marker.exists(), "nothing ran");
    worker.stop().await;
}

/// The field a 422 names.
fn refused_field(outcome: Result<impl std::fmt::Debug, ClientError>) -> String {
    match outcome {
        Err(ClientError::Problem(problem)) if problem.status == 422 => problem
            .errors
            .first()
            .map(|e| e.field.clone())
            .unwrap_or_default(),
        other => panic!("expected a 422, got {other:?}"),
    }
}

#[tokio::test]
async fn the_api_refuses_each_escape_naming_the_field() {
    let data = tempfile::tempdir().expect("dir");
    let up = up::start(up_options(data.path(), FAKE)).await.expect("up");
    let client = Client::new(&format!("http://{}", up.addr)).with_token(&up.admin.token);
    for path in [
        "/bin",
        "../x",
        "games/../../x",
        "games/a\0b",
        "games/\u{1b}]0;x",
    ] {
        let outcome = client
            .create_game(&NewGameServer {
                name: "escape".into(),
                server_type: ServerType::Local { path: path.into() },
            })
            .await;
        assert_eq!(refused_field(outcome), "server_type.path", "{path:?}");
    }
    let demo = client
        .list_games()
        .await
        .expect("games")
        .into_iter()
        .find(|g| g.name == "demo")
        .expect("the demo game");
    let mut cases: Vec<(ConfigSpec, &str)> = Vec::new();
    for executable in ["/bin/sh", "../../../bin/sh", "a\0b"] {
        cases.push((ConfigSpec::new("x", executable), "executable"));
    }
    let mut wd = ConfigSpec::new("x", "fake-game-server");
    wd.working_dir = Some("/".into());
    cases.push((wd, "working_dir"));
    for (key, value, field) in [
        ("LD_PRELOAD", "./x.so", "env.LD_PRELOAD"),
        ("LD_AUDIT", "./x.so", "env.LD_AUDIT"),
        ("BASH_ENV", "console.log", "env.BASH_ENV"),
        ("PYTHONSTARTUP", "x.py", "env.PYTHONSTARTUP"),
        ("LD_LIBRARY_PATH", "/tmp", "env.LD_LIBRARY_PATH"),
        ("PATH", "/tmp:$PATH", "env.PATH"),
        ("S", "$MANMAN_WORKER_SA_CLIENT_SECRET", "env.S"),
    ] {
        let mut spec = ConfigSpec::new("x", "fake-game-server");
        spec.env.insert(key.into(), value.into());
        cases.push((spec, field));
    }
    for (spec, field) in cases {
        let outcome = client.create_config(demo.id, &spec).await;
        assert_eq!(refused_field(outcome), field, "{spec:?}");
    }
    // What a game's servers legitimately need is accepted.
    let mut fine = ConfigSpec::new("fine", "fake-game-server");
    fine.env.insert(
        "LD_LIBRARY_PATH".into(),
        "{install_dir}/linux64:./bin".into(),
    );
    fine.env
        .insert("PATH".into(), "{install_dir}/bin:$PATH".into());
    client
        .create_config(demo.id, &fine)
        .await
        .expect("a config inside its game");
    up.stop().await.expect("stop");
}

/// The last line of an instance's console log that starts with `prefix` (after its
/// `<seq> <stream> ` header).
async fn console_line(data: &Path, id: i64, prefix: &str) -> String {
    let log = data.join(format!(".manman/logs/instance-{id}.log"));
    eventually(&format!("{prefix:?} on the console"), WAIT, || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.find(prefix).map(|at| l[at..].to_owned()))
            .next_back()
    })
    .await
}

#[tokio::test]
async fn game_servers_never_run_as_root_nor_read_the_workers_secrets() {
    if !running_as_root() {
        eprintln!("skipped: the worker switches users only when it runs as root (CI does)");
        return;
    }
    let data = tempfile::tempdir().expect("dir");
    let up = up::start(up_options(data.path(), FAKE)).await.expect("up");
    let client = Client::new(&format!("http://{}", up.addr)).with_token(&up.admin.token);
    let demo = client
        .list_configs(None)
        .await
        .expect("configs")
        .into_iter()
        .find(|c| c.spec.name == "default")
        .expect("the demo config");
    let id = client
        .start(&StartRequest::new(demo.id))
        .await
        .expect("start")
        .instance_id;
    wait_instance_status(&client, id, Status::Running).await;

    client.stdin(id, "whoami").await.expect("stdin");
    let nobody = manman_core::worker_service::lookup_server_user("nobody").expect("nobody");
    let who = console_line(data.path(), id.get(), "uid ").await;
    assert_eq!(
        who,
        format!("uid {} gid {} groups []", nobody.uid, nobody.gid),
        "the server runs as nobody, with no supplementary group"
    );

    let secrets = [
        data.path().join("admin-token"),
        data.path().join("manman.db"),
        data.path().join(".manman/processes"),
        PathBuf::from(format!("/proc/{}/environ", std::process::id())),
    ];
    for secret in &secrets {
        assert!(secret.exists(), "{} is there", secret.display());
        client
            .stdin(id, &format!("read {}", secret.display()))
            .await
            .expect("stdin");
        let answer = console_line(
            data.path(),
            id.get(),
            &format!("read {}:", secret.display()),
        )
        .await;
        assert!(
            answer.contains("failed") && answer.contains("denied"),
            "the game server must not read {}: {answer}",
            secret.display()
        );
    }
    client
        .stdin(id, "env MANMAN_WORKER_INSTALL_DIRECTORY")
        .await
        .expect("stdin");
    let env = console_line(
        data.path(),
        id.get(),
        "env MANMAN_WORKER_INSTALL_DIRECTORY ",
    )
    .await;
    assert!(env.ends_with("is not set"), "{env}");
    up.stop().await.expect("stop");
}
