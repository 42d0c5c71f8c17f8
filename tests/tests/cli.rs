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
        steam_credentials: Vec::new(),
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
    for (store, code, said) in [
        (
            "postgress://app:hunter2@localhost/manman",
            2,
            "\"postgress\" is not a store",
        ),
        ("postgres://app:hunter2@127.0.0.1:1/manman", 1, "app:***@"),
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
        failed(&output, code, said);
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
        steam_credentials: Vec::new(),
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

/// Writes `text` to `name` in `dir`; its path.
fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("utf-8").to_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_show_history_and_waiting_for_the_outcome() {
    let data = tempfile::tempdir().expect("dir");
    let (running, cli) = start_host(data.path()).await;
    ok(
        &cli.run(&["game", "create", "fake", "--local", "games/demo"])
            .await,
        &["game create"],
    );
    let file = write_file(
        data.path(),
        "main.toml",
        "executable = \"fake-game-server\"\nready_pattern = \"Server is ready\"\n\n[stop]\nstdin_line = \"quit\"\n",
    );
    ok(
        &cli.run(&["config", "create", "fake", "main", "-f", &file])
            .await,
        &["config create -f"],
    );

    // start --wait: back when it is running, with the instance.
    let started = cli.json(&["start", "fake/main", "--wait"]).await;
    assert_eq!(started["status"], "running", "{started}");
    assert_eq!(started["cause"], "ready", "{started}");
    let id = started["id"].as_i64().expect("id");
    let ids = id.to_string();

    let shown = cli.json(&["instance", "show", &ids]).await;
    assert_eq!(shown["status"], "running", "{shown}");
    assert_eq!(shown["config"], "fake/main", "{shown}");
    assert_eq!(shown["worker"], "local", "{shown}");
    assert!(shown["ready_at"].is_string(), "{shown}");
    assert!(shown["exit_code"].is_null(), "{shown}");
    let shown_text = cli.run(&["instance", "show", &ids]).await;
    ok(&shown_text, &["instance show"]);
    for says in [
        "status:",
        "running",
        "cause:",
        "ready",
        "fake/main",
        "restarts:",
    ] {
        assert!(
            stdout(&shown_text).contains(says),
            "{says}: {}",
            stdout(&shown_text)
        );
    }

    // stop --wait: back when it has ended, exit 0 for a stop that went as asked.
    let stopped = cli.json(&["stop", &ids, "--wait"]).await;
    assert_eq!(stopped["status"], "complete", "{stopped}");
    assert_eq!(stopped["cause"], "user", "{stopped}");
    assert!(stopped["ended_at"].is_string(), "{stopped}");

    let history = cli.json(&["history", &ids]).await;
    let statuses: Vec<&str> = history
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["status"].as_str())
        .collect();
    assert_eq!(statuses.first().copied(), Some("created"), "{history}");
    assert!(statuses.contains(&"running"), "{history}");
    assert_eq!(statuses.last().copied(), Some("complete"), "{history}");
    let history_text = cli.run(&["history", &ids]).await;
    ok(&history_text, &["history"]);
    assert!(
        stdout(&history_text).contains("running → complete"),
        "{}",
        stdout(&history_text)
    );
    failed(&cli.run(&["history", "999"]).await, 1, "instance 999");

    // The console of an ended instance prints what is kept, then how it ended.
    let console = cli.run(&["console", &ids]).await;
    ok(&console, &["console of an ended instance"]);
    assert!(
        stderr(&console).contains(&format!("instance {id} ended: complete (user)")),
        "{}",
        text(&console)
    );

    // A server that cannot be spawned: start --wait fails, naming the cause and the error.
    let broken = data.path().join("games").join("broken");
    std::fs::create_dir_all(&broken).expect("dir");
    write_file(&broken, "server.sh", "#!/bin/sh\necho never\n");
    ok(
        &cli.run(&["game", "create", "broken", "--local", "games/broken"])
            .await,
        &["game create broken"],
    );
    ok(
        &cli.run(&[
            "config",
            "create",
            "broken",
            "main",
            "--executable",
            "server.sh",
            "--default",
        ])
        .await,
        &["config create broken"],
    );
    let output = cli.run(&["start", "broken", "--wait"]).await;
    failed(&output, 1, "did not become running: crashed (spawn-failed)");
    failed(&output, 1, "ermission denied");

    // The list shows each instance's cause.
    let list = cli.run(&["instances"]).await;
    ok(&list, &["instances"]);
    let list = stdout(&list);
    assert!(
        list.lines().next().is_some_and(|l| l.contains("CAUSE")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.contains("crashed") && l.contains("spawn-failed")),
        "{list}"
    );
    let listed = cli.json(&["instances"]).await;
    assert!(
        listed
            .as_array()
            .expect("array")
            .iter()
            .any(|i| i["id"] == id && i["cause"] == "user"),
        "{listed}"
    );

    // A server that never gets ready: --timeout gives up, says so, leaves it running.
    ok(
        &cli.run(&[
            "config",
            "create",
            "fake",
            "slow",
            "--executable",
            "fake-game-server",
            "--ready-pattern",
            "never printed",
        ])
        .await,
        &["config create slow"],
    );
    let output = cli
        .run(&["start", "fake/slow", "--wait", "--timeout", "1"])
        .await;
    failed(&output, 1, "is still initializing after 1 s");
    let slow = cli.json(&["instances", "--status", "initializing"]).await;
    let slow_id = slow[0]["id"].as_i64().expect("the slow one still runs");
    ok(&cli.run(&["kill", &slow_id.to_string()]).await, &["kill"]);
    eventually("the slow one to end", WAIT, || async {
        let shown = cli.json(&["instance", "show", &slow_id.to_string()]).await;
        shown["ended_at"].is_string().then_some(())
    })
    .await;
    running.stop().await.expect("clean stop");
}

/// `config show` in `format`, parsed as JSON (YAML and TOML through their own parsers).
async fn show_config(cli: &Cli, target: &str, format: &str) -> (String, Value) {
    let output = cli
        .run(&["config", "show", target, "--format", format])
        .await;
    ok(&output, &["config show", format]);
    let text = stdout(&output);
    let value = match format {
        "json" => serde_json::from_str(&text).expect("JSON"),
        "yaml" => serde_yaml_ng::from_str(&text).expect("YAML"),
        // TOML is read back by the round trips below.
        _ => Value::Null,
    };
    (text, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_from_files_and_flags_round_trip() {
    let data = tempfile::tempdir().expect("dir");
    let dir = data.path();
    let (running, cli) = start_host(dir).await;
    ok(
        &cli.run(&["game", "create", "fake", "--local", "games/demo"])
            .await,
        &["game create"],
    );

    // JSON in, flags over it, JSON out.
    let file = write_file(
        dir,
        "web.json",
        r#"{
  "name": "web",
  "executable": "fake-game-server",
  "args": ["--port", "27015"],
  "env": {"GAME_MODE": "coop"},
  "ready_pattern": "Server is ready",
  "stop": {"stdin_line": "quit", "signal": "INT", "timeout_s": 5},
  "restart": {"mode": "on-crash", "max_restarts": 2}
}
"#,
    );
    ok(
        &cli.run(&[
            "config",
            "create",
            "fake",
            "-f",
            &file,
            "--stop-signal-grace",
            "4",
        ])
        .await,
        &["config create -f json"],
    );
    let (json_text, shown) = show_config(&cli, "fake/web", "json").await;
    assert_eq!(shown["name"], "web");
    assert_eq!(shown["args"], serde_json::json!(["--port", "27015"]));
    assert_eq!(shown["env"]["GAME_MODE"], "coop");
    assert_eq!(shown["stop"]["signal"], "INT");
    assert_eq!(shown["stop"]["timeout_s"], 5);
    assert_eq!(shown["stop"]["signal_grace_s"], 4, "the flag over the file");
    assert_eq!(shown["restart"]["mode"], "on-crash");
    assert_eq!(shown["restart"]["max_restarts"], 2);
    assert_eq!(shown["restart"]["window_s"], 600, "a default");
    assert!(shown.get("id").is_none(), "only what a file holds: {shown}");

    // show → update of the same file changes nothing.
    let same = write_file(dir, "same.json", &json_text);
    ok(
        &cli.run(&["config", "update", "fake/web", "-f", &same])
            .await,
        &["config update -f same"],
    );
    assert_eq!(show_config(&cli, "fake/web", "json").await.0, json_text);

    // TOML: show, edit, update, and a flag over the file.
    let (toml_text, _) = show_config(&cli, "fake/web", "toml").await;
    assert!(toml_text.contains("[stop]"), "{toml_text}");
    let edited = toml_text.replace("timeout_s = 5", "timeout_s = 9");
    assert_ne!(edited, toml_text, "{toml_text}");
    let edited = write_file(dir, "web.toml", &edited);
    let updated = cli
        .json(&[
            "config",
            "update",
            "fake/web",
            "-f",
            &edited,
            "--ready-timeout",
            "77",
        ])
        .await;
    assert_eq!(updated["stop"]["timeout_s"], 9, "{updated}");
    assert_eq!(updated["ready_timeout_s"], 77, "{updated}");
    assert_eq!(
        updated["stop"]["signal"], "INT",
        "kept from the file: {updated}"
    );

    // YAML out and back in.
    let (yaml_text, yaml) = show_config(&cli, "fake/web", "yaml").await;
    assert_eq!(yaml["stop"]["timeout_s"], 9, "{yaml_text}");
    let yaml_file = write_file(
        dir,
        "web.yaml",
        &yaml_text.replace("GAME_MODE: coop", "GAME_MODE: pvp"),
    );
    ok(
        &cli.run(&["config", "update", "fake/web", "-f", &yaml_file])
            .await,
        &["config update -f yaml"],
    );
    let (_, shown) = show_config(&cli, "fake/web", "json").await;
    assert_eq!(shown["env"]["GAME_MODE"], "pvp");
    assert_eq!(shown["ready_timeout_s"], 77);

    // Flags alone change single fields and keep the rest.
    ok(
        &cli.run(&[
            "config",
            "update",
            "fake/web",
            "--stop-signal",
            "TERM",
            "--ready-pattern",
            "",
        ])
        .await,
        &["config update with flags"],
    );
    let (_, shown) = show_config(&cli, "fake/web", "json").await;
    assert_eq!(shown["stop"]["signal"], "TERM");
    assert!(shown.get("ready_pattern").is_none(), "{shown}");
    assert_eq!(shown["env"]["GAME_MODE"], "pvp");
    assert_eq!(shown["stop"]["timeout_s"], 9);

    // Unknown fields are refused, with their line.
    let bad_yaml = write_file(
        dir,
        "bad.yaml",
        "name: bad\nexecutable: fake-game-server\nstop:\n  stdin_line: quit\n  signall: INT\n",
    );
    let output = cli
        .run(&["config", "create", "fake", "-f", &bad_yaml])
        .await;
    failed(&output, 1, "unknown field `signall`");
    failed(&output, 1, "line 5");
    let bad_toml = write_file(
        dir,
        "bad.toml",
        "name = \"bad\"\nexecutable = \"fake-game-server\"\nready_patern = \"x\"\n",
    );
    let output = cli
        .run(&["config", "update", "fake/web", "-f", &bad_toml])
        .await;
    failed(&output, 1, "ready_patern");
    failed(&output, 1, "line 3");
    let bad_json = write_file(
        dir,
        "bad.json",
        "{\n  \"name\": \"bad\",\n  \"exe\": \"x\"\n}\n",
    );
    let output = cli
        .run(&["config", "create", "fake", "-f", &bad_json])
        .await;
    failed(&output, 1, "unknown field `exe`");
    failed(&output, 1, "line 3");
    assert_eq!(
        cli.json(&["config", "list", "fake"])
            .await
            .as_array()
            .map(Vec::len),
        Some(1),
        "nothing bad was stored"
    );
    running.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reconnects_after_the_host_restarts() {
    let data = tempfile::tempdir().expect("dir");
    // SQLite: the admin token is the same after the restart.
    let first = up::start(manman_tests::up_options(data.path(), FAKE))
        .await
        .expect("manman up");
    let addr = first.addr;
    let cli = Cli {
        host: format!("http://{addr}"),
        token: first.admin.token.clone(),
        config_file: data.path().join("cli-login.json"),
    };
    let mut watch = cli
        .command(&["--json", "watch"], Some(&cli.token))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch");
    let mut events = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let mut said = BufReader::new(watch.stderr.take().expect("stderr")).lines();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = cli.json(&["start", "demo"]).await;
    let first_id = started["instance_id"].as_i64().expect("id");
    seen_instance(&mut events, first_id).await;

    first.stop().await.expect("clean stop");
    let mut options = manman_tests::up_options(data.path(), FAKE);
    options.bind = addr;
    let second = up::start(options).await.expect("manman up again");
    assert_eq!(second.admin.token, cli.token);

    // The watch says the host went away, comes back by itself, and shows what happens next.
    let went_away = tokio::time::timeout(WAIT, async {
        while let Some(line) = said.next_line().await.expect("read") {
            if line.contains("host went away") && line.contains("reconnecting in") {
                return line;
            }
        }
        panic!("watch's stderr ended");
    })
    .await
    .expect("watch said the host went away");
    assert!(went_away.contains("reconnecting in 1 s"), "{went_away}");
    // Events while it was away are not replayed: start the next one once it is back.
    tokio::time::timeout(WAIT, async {
        while let Some(line) = said.next_line().await.expect("read") {
            if line.starts_with("reconnected to the host") {
                return;
            }
        }
        panic!("watch's stderr ended");
    })
    .await
    .expect("watch said it reconnected");
    let started = eventually("a start on the restarted host", WAIT, || async {
        let output = cli.run(&["--json", "start", "demo"]).await;
        output
            .status
            .success()
            .then(|| serde_json::from_slice::<Value>(&output.stdout).expect("JSON"))
    })
    .await;
    let second_id = started["instance_id"].as_i64().expect("id");
    assert!(second_id > first_id);
    seen_instance(&mut events, second_id).await;
    assert!(
        watch.try_wait().expect("wait").is_none(),
        "watch still runs"
    );
    let _ = watch.kill().await;
    ok(
        &cli.run(&["stop", &second_id.to_string(), "--wait"]).await,
        &["stop --wait"],
    );
    second.stop().await.expect("clean stop");
}

/// Reads `manman --json watch` until a status of instance `id` shows up.
async fn seen_instance(
    events: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    id: i64,
) {
    tokio::time::timeout(WAIT, async {
        while let Some(line) = events.next_line().await.expect("read") {
            let event: Value = serde_json::from_str(&line).expect("a JSON event per line");
            if event["type"] == "status" && event["entity"]["instance"] == id {
                return;
            }
        }
        panic!("watch ended");
    })
    .await
    .unwrap_or_else(|_| panic!("watch showed instance {id}"));
}
