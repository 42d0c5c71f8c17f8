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
        "admin",
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

/// The mode bits of `path`.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Makes `path` readable by everyone, as an older version or a careless copy would have left it.
fn make_world_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_url_password_is_never_printed() {
    let data = tempfile::tempdir().expect("dir");
    let data_dir = data.path().to_str().expect("utf-8");
    let cli = Cli {
        host: "http://127.0.0.1:1".to_owned(),
        token: String::new(),
        config_file: data.path().join("cli-login.json"),
    };
    // A misspelt scheme (refused by the argument parser), and a server that does not answer
    // (refused by the driver).
    for (store, code) in [
        ("postgress://app:hunter2@localhost/manman", 2),
        ("postgres://app:hunter2@127.0.0.1:1/manman", 1),
    ] {
        let output = cli
            .run_as(
                &[
                    "up",
                    "--no-demo",
                    "--bind",
                    "127.0.0.1:0",
                    "--data-dir",
                    data_dir,
                    "--store",
                    store,
                ],
                None,
            )
            .await;
        failed(&output, code, "app:***@");
        assert!(
            !text(&output).contains("hunter2"),
            "the password was printed: {}",
            text(&output)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_control_characters_escaped_and_json_stays_exact() {
    let data = tempfile::tempdir().expect("dir");
    let (running, cli) = start_host(data.path()).await;
    let started = cli.json(&["start", "demo"]).await;
    let id = started["instance_id"].as_i64().expect("instance id");
    wait_status(&cli, id, "running").await;
    // A line that would retitle the terminal, clear it, and carries a C1 CSI and a DEL; the
    // fake game server prints it back.
    let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m\u{7f}\ttab kept";
    ok(
        &cli.run(&["send", &id.to_string(), hostile]).await,
        &["send"],
    );

    let mut console = cli
        .command(&["console", &id.to_string()], Some(&cli.token))
        .stdout(Stdio::piped())
        .spawn()
        .expect("console");
    let mut lines = BufReader::new(console.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    let echoed = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.expect("read") {
            seen.push(line.clone());
            if line.contains("echo:") {
                return line;
            }
        }
        panic!("the console ended: {seen:#?}");
    })
    .await
    .unwrap_or_else(|_| panic!("the console showed the echo: {seen:#?}"));
    let _ = console.kill().await;
    assert!(
        echoed.ends_with("echo: \\x1b]0;pwned\\x07\\x1b[2J\\u{9b}31m\\x7f\ttab kept"),
        "{echoed:?}"
    );
    for line in &seen {
        assert!(
            !line.chars().any(|c| c != '\t' && c.is_control()),
            "a raw control character reached the terminal: {line:?}"
        );
    }

    // `--json` stays JSON, the text exactly as the game printed it.
    let mut console = cli
        .command(&["--json", "console", &id.to_string()], Some(&cli.token))
        .stdout(Stdio::piped())
        .spawn()
        .expect("console");
    let mut lines = BufReader::new(console.stdout.take().expect("stdout")).lines();
    let line: Value = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.expect("read") {
            let line: Value = serde_json::from_str(&line).expect("a JSON line");
            if line["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("echo:"))
            {
                return line;
            }
        }
        panic!("the console ended");
    })
    .await
    .expect("the JSON console showed the echo");
    let _ = console.kill().await;
    assert_eq!(line["text"], format!("echo: {hostile}"));
    ok(&cli.run(&["stop", &id.to_string()]).await, &["stop"]);
    wait_status(&cli, id, "complete").await;
    running.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_file_is_sent_to_its_own_host_only() {
    let data = tempfile::tempdir().expect("dir");
    let (running, cli) = start_host(data.path()).await;
    let token_file = data.path().join("admin-token");
    assert_eq!(
        std::fs::read_to_string(data.path().join("admin-token.host")).expect("host file"),
        format!("{}\n", cli.host),
        "the host is kept beside the token"
    );
    let with_file = |host: &str, args: &[&str]| {
        let mut command = cli.command(args, None);
        command
            .env("MANMAN_HOST_URL", host)
            .env("MANMAN_TOKEN_FILE", &token_file);
        command
    };
    let output = with_file(&cli.host, &["workers"])
        .output()
        .await
        .expect("run");
    ok(&output, &["workers with the token file"]);
    let localhost = cli.host.replace("127.0.0.1", "localhost");
    let output = with_file(&localhost, &["workers"])
        .output()
        .await
        .expect("run");
    ok(&output, &["workers through localhost"]);

    // Another host (one that listens and keeps whatever it is sent): refused before anything
    // is sent, with what to do.
    let other = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let other_host = format!("http://{}", other.local_addr().expect("addr"));
    let received = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Ok(Ok((mut socket, _))) =
            tokio::time::timeout(std::time::Duration::from_secs(2), other.accept()).await
        {
            let mut buffer = vec![0; 8192];
            if let Ok(Ok(n)) = tokio::time::timeout(
                std::time::Duration::from_secs(1),
                tokio::io::AsyncReadExt::read(&mut socket, &mut buffer),
            )
            .await
            {
                all.extend_from_slice(&buffer[..n]);
            }
        }
        all
    });
    let output = with_file(&other_host, &["workers"])
        .output()
        .await
        .expect("run");
    failed(&output, 1, "pass --token");
    failed(&output, 1, &other_host);
    let received = received.await.expect("listener");
    assert!(
        !String::from_utf8_lossy(&received).contains(&cli.token),
        "the admin token was sent to another host"
    );
    assert!(!text(&output).contains(&cli.token), "nor printed");

    // No token anywhere: the 401 says where the command line looked.
    let output = cli.run_as(&["workers"], None).await;
    failed(&output, 1, "no token was found");
    failed(&output, 1, "/nonexistent/admin-token");
    failed(&output, 1, &cli.config_file.display().to_string());
    running.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_files_are_0600_even_when_they_were_0644_and_login_replaces_a_broken_file() {
    let data = tempfile::tempdir().expect("dir");
    let token_file = data.path().join("admin-token");
    let database = data.path().join("manman.db");
    std::fs::write(&token_file, "mm_no-longer-valid\n").expect("write");
    make_world_readable(&token_file);
    std::fs::write(&database, "").expect("write");
    make_world_readable(&database);
    let options = UpOptions {
        bind: "127.0.0.1:0".parse().expect("addr"),
        data_dir: data.path().to_owned(),
        demo_executable: None,
        worker_name: "local".to_owned(),
        capacity: 1,
        steamcmd: "steamcmd".into(),
        store: StoreChoice::Sqlite(None),
    };
    let running = up::start(options.clone()).await.expect("up");
    assert!(running.admin.created, "the stale token was replaced");
    let token = running.admin.token.clone();
    // The token, its host, the database and (while it is open) its -wal and -shm files.
    let files = || {
        [
            "admin-token",
            "admin-token.host",
            "manman.db",
            "manman.db-wal",
            "manman.db-shm",
        ]
        .map(|name| data.path().join(name))
        .into_iter()
        .filter(|file| file.exists())
        .collect::<Vec<_>>()
    };
    assert!(files().len() >= 3, "{:?}", files());
    for file in files() {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    running.stop().await.expect("clean stop");

    // A kept token and database whose modes were widened meanwhile: narrowed again.
    for file in files() {
        make_world_readable(&file);
    }
    let running = up::start(options).await.expect("up again");
    assert!(!running.admin.created, "the valid token was kept");
    for file in files() {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }

    // `manman login` over a broken, world-readable login file: replaced, 0600.
    let cli = Cli {
        host: format!("http://{}", running.addr),
        token: token.clone(),
        config_file: data.path().join("cli-login.json"),
    };
    std::fs::write(&cli.config_file, "{ not a login").expect("write");
    make_world_readable(&cli.config_file);
    failed(
        &cli.run_as(&["workers"], None).await,
        1,
        "run `manman login` again",
    );
    ok(
        &cli.run_as(&["login", "--token", &token], None).await,
        &["login over a broken file"],
    );
    assert_eq!(mode(&cli.config_file), 0o600);
    let saved: Value =
        serde_json::from_slice(&std::fs::read(&cli.config_file).expect("read")).expect("JSON");
    assert_eq!(saved["host"], cli.host.as_str());
    ok(
        &cli.run_as(&["workers"], None).await,
        &["workers after login"],
    );
    running.stop().await.expect("clean stop");
}
