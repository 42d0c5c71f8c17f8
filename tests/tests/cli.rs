//! The `manman` command line, the real binary, against a host started in this process (`manman
//! up`'s host and worker on the memory adapters): every subcommand, `--json` parsed, exit codes.

use manman::up::{self, StoreChoice, UpOptions};
use manman_tests::eventually;
use manman_tests::harness::WAIT;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const MANMAN: &str = env!("CARGO_BIN_EXE_e2e-manman");
const FAKE: &str = env!("CARGO_BIN_EXE_e2e-fake-game-server");

/// How the command line reaches the host in these tests.
struct Cli {
    host: String,
    token: String,
    /// A login file of the test's own (never the user's).
    config_file: PathBuf,
}

impl Cli {
    fn command(&self, args: &[&str], token: Option<&str>) -> Command {
        let mut command = Command::new(MANMAN);
        command
            .args(args)
            .env("MANMAN_HOST_URL", &self.host)
            .env("MANMAN_CONFIG_FILE", &self.config_file)
            .env("MANMAN_TOKEN_FILE", "/nonexistent/admin-token")
            .env("RUST_LOG", "error")
            .env_remove("MANMAN_TOKEN")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(token) = token {
            command.env("MANMAN_TOKEN", token);
        }
        command
    }

    /// Runs `manman ARGS` as the admin.
    async fn run(&self, args: &[&str]) -> Output {
        self.run_as(args, Some(&self.token)).await
    }

    async fn run_as(&self, args: &[&str], token: Option<&str>) -> Output {
        tokio::time::timeout(WAIT, self.command(args, token).output())
            .await
            .unwrap_or_else(|_| panic!("manman {args:?} hung"))
            .expect("run manman")
    }

    /// Runs `manman --json ARGS`, which must succeed, and parses what it printed.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let output = self.run(&all).await;
        ok(&output, args);
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("manman {args:?} printed no JSON ({e}): {}", text(&output)))
    }
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn ok(output: &Output, args: &[&str]) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "manman {args:?}: {}",
        text(output)
    );
}

fn failed(output: &Output, code: i32, says: &str) {
    assert_eq!(output.status.code(), Some(code), "{}", text(output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(says),
        "stderr should say {says:?}: {stderr}"
    );
}

async fn start_host(data: &Path) -> (up::Running, Cli) {
    let running = up::start(UpOptions {
        bind: "127.0.0.1:0".parse().expect("addr"),
        data_dir: data.to_owned(),
        demo_executable: Some(FAKE.into()),
        worker_name: "local".to_owned(),
        capacity: 8,
        steamcmd: "steamcmd".into(),
        store: StoreChoice::Memory,
    })
    .await
    .expect("manman up starts");
    let cli = Cli {
        host: format!("http://{}", running.addr),
        token: running.admin.token.clone(),
        config_file: data.join("cli-login.json"),
    };
    (running, cli)
}

/// Waits until instance `id` has `status`, asking through the command line.
async fn wait_status(cli: &Cli, id: i64, status: &str) {
    eventually(&format!("instance {id} to be {status}"), WAIT, || async {
        let instances = cli.json(&["instances"]).await;
        instances
            .as_array()?
            .iter()
            .any(|i| i["id"] == id && i["status"] == status)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_against_a_real_host() {
    let data = tempfile::tempdir().expect("dir");
    let (running, cli) = start_host(data.path()).await;

    // Catalogue.
    ok(
        &cli.run(&["game", "create", "fake", "--local", "games/demo"])
            .await,
        &["game create"],
    );
    let games = cli.json(&["game", "list"]).await;
    let names: Vec<&str> = games
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(names, ["demo", "fake"]);
    let config = cli
        .json(&[
            "config",
            "create",
            "fake",
            "main",
            "--executable",
            "fake-game-server",
            "--ready-pattern",
            "Server is ready",
            "--stop-line",
            "quit",
            "--default",
        ])
        .await;
    assert_eq!(config["name"], "main");
    assert_eq!(
        cli.json(&["config", "list", "fake"])
            .await
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let workers = cli.json(&["workers"]).await;
    assert_eq!(workers[0]["name"], "local");
    assert_eq!(workers[0]["status"], "running");

    // An instance: start, stdin, console (attached: typed lines go in), restart, command record.
    let started = cli.json(&["start", "fake"]).await;
    let id = started["instance_id"].as_i64().expect("instance id");
    wait_status(&cli, id, "running").await;
    ok(
        &cli.run(&["send", &id.to_string(), "hello", "there"]).await,
        &["send"],
    );
    let mut console = cli
        .command(&["console", &id.to_string()], Some(&cli.token))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("console");
    let mut typed = console.stdin.take().expect("stdin");
    typed.write_all(b"typed line\n").await.expect("type");
    typed.flush().await.expect("flush");
    let mut lines = BufReader::new(console.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.expect("read") {
            seen.push(line);
            if seen.iter().any(|l| l.ends_with("echo: hello there"))
                && seen.iter().any(|l| l.ends_with("echo: typed line"))
            {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the console showed the sent and the typed line: {seen:#?}"));
    drop(typed);
    let _ = console.kill().await;

    let restart = cli.json(&["restart", &id.to_string()]).await;
    let command_id = restart["command_id"]
        .as_str()
        .expect("command id")
        .to_owned();
    eventually("the restart to succeed", WAIT, || async {
        let record = cli.json(&["command", &command_id]).await;
        (record["state"] == "succeeded").then_some(())
    })
    .await;
    wait_status(&cli, id, "running").await;

    // watch: the stop shows up as it happens.
    let mut watch = cli
        .command(&["--json", "watch"], Some(&cli.token))
        .stdout(Stdio::piped())
        .spawn()
        .expect("watch");
    let mut events = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    // The watcher's queue exists once the host answered its request: give it a moment.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    ok(&cli.run(&["stop", &id.to_string()]).await, &["stop"]);
    let completed = tokio::time::timeout(WAIT, async {
        while let Some(line) = events.next_line().await.expect("read") {
            let event: Value = serde_json::from_str(&line).expect("a JSON event per line");
            if event["type"] == "status" && event["status"] == "complete" {
                return event;
            }
        }
        panic!("watch ended");
    })
    .await
    .expect("watch showed the stop");
    assert_eq!(completed["entity"]["instance"], id, "{completed}");
    let _ = watch.kill().await;
    wait_status(&cli, id, "complete").await;

    // Errors: exit 1 with the host's reason; usage errors exit 2.
    failed(&cli.run(&["kill", &id.to_string()]).await, 1, "ended");
    failed(&cli.run(&["stop", "999"]).await, 1, "instance 999");
    failed(&cli.run(&["frobnicate"]).await, 2, "frobnicate");
    failed(&cli.run(&["stop", "not-a-number"]).await, 2, "not-a-number");
    failed(
        &cli.run(&["game", "delete", "fake"]).await,
        1,
        "delete them first",
    );

    // Tokens and worker credentials (admin).
    let created = cli
        .json(&["tokens", "create", "ci", "--scope", "read"])
        .await;
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let token_id = created["token"]["id"].as_i64().expect("id");
    let listed = cli.json(&["tokens", "list"]).await;
    assert!(
        listed
            .as_array()
            .expect("array")
            .iter()
            .any(|t| t["name"] == "ci")
    );
    ok(
        &cli.run_as(&["workers"], Some(&secret)).await,
        &["workers as ci"],
    );
    failed(
        &cli.run_as(&["game", "create", "x", "--local", "x"], Some(&secret))
            .await,
        1,
        "operate",
    );
    ok(
        &cli.run(&["tokens", "revoke", &token_id.to_string()]).await,
        &["tokens revoke"],
    );
    failed(&cli.run_as(&["workers"], Some(&secret)).await, 1, "revoked");
    let credential = cli.json(&["credentials", "create", "box-1"]).await;
    let client_id = credential["credential"]["client_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(
        credential["client_secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("mms_"))
    );
    let listed = cli.json(&["credentials", "list"]).await;
    assert!(
        listed
            .as_array()
            .expect("array")
            .iter()
            .any(|c| c["client_id"] == client_id.as_str())
    );
    ok(
        &cli.run(&["credentials", "revoke", &client_id]).await,
        &["credentials revoke"],
    );
    failed(&cli.run_as(&["workers"], None).await, 1, "Bearer");

    // login: the token is checked, then kept (0600) for later commands without one.
    failed(
        &cli.run_as(&["login", "--token", "mm_wrong"], None).await,
        1,
        "does not work",
    );
    ok(
        &cli.run_as(&["login", "--token", &cli.token], None).await,
        &["login"],
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&cli.config_file)
            .expect("login file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    ok(
        &cli.run_as(&["workers"], None).await,
        &["workers after login"],
    );

    // Cleaning up the catalogue.
    ok(
        &cli.run(&["config", "delete", "fake/main"]).await,
        &["config delete"],
    );
    ok(
        &cli.run(&["game", "delete", "fake"]).await,
        &["game delete"],
    );
    let games = cli.json(&["game", "list"]).await;
    assert_eq!(games.as_array().map(Vec::len), Some(1));
    running.stop().await.expect("clean stop");
}
