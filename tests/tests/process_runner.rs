//! The real process runner with the real fake game server: stdin, both output streams, exit
//! codes, and the stop sequence down to SIGKILL with nothing left behind.

use manman_core::config::{StopPolicy, StopSignal};
use manman_core::ports::{OutputLine, OutputStream, ProcessRunner, ProcessSpec, SpawnedProcess};
use manman_core::process::{MAX_LINE_BYTES, StopStep, TokioProcessRunner, kill, stop};
use manman_tests::{eventually, pid_alive};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

const FAKE: &str = env!("CARGO_BIN_EXE_e2e-fake-game-server");
const WAIT: Duration = Duration::from_secs(10);

fn spec(program: &str, args: &[&str]) -> ProcessSpec {
    ProcessSpec {
        program: PathBuf::from(program),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        env: BTreeMap::from([("PATH".to_owned(), std::env::var("PATH").unwrap_or_default())]),
        cwd: std::env::temp_dir(),
        user: None,
    }
}

async fn spawn(args: &[&str]) -> SpawnedProcess {
    TokioProcessRunner::new()
        .spawn(&spec(FAKE, args))
        .await
        .expect("spawn the fake game server")
}

/// Reads lines until one satisfies `want`; returns it.
async fn line_matching(
    output: &mut mpsc::Receiver<OutputLine>,
    want: impl Fn(&OutputLine) -> bool,
) -> OutputLine {
    tokio::time::timeout(WAIT, async {
        loop {
            let line = output
                .recv()
                .await
                .expect("output ended before the expected line");
            if want(&line) {
                return line;
            }
        }
    })
    .await
    .expect("the expected line within 10 s")
}

#[tokio::test]
async fn stdin_reaches_the_process_and_both_streams_come_back() {
    let SpawnedProcess { handle, mut output } = spawn(&[]).await;
    line_matching(&mut output, |l| l.text == "Server is ready").await;
    handle.write_line("hello there").expect("write");
    let echo = line_matching(&mut output, |l| l.text.starts_with("echo:")).await;
    assert_eq!(echo.text, "echo: hello there");
    assert_eq!(echo.stream, OutputStream::Stdout);
    handle.write_line("stderr oops").expect("write");
    let err = line_matching(&mut output, |l| l.stream == OutputStream::Stderr).await;
    assert_eq!(err.text, "oops");
    handle.write_line("quit").expect("write");
    let status = tokio::time::timeout(WAIT, handle.wait())
        .await
        .expect("exits");
    assert_eq!(status.code, Some(0));
    assert!(
        handle.write_line("too late").is_err(),
        "writing to an exited process is an error"
    );
}

#[tokio::test]
async fn exit_codes_and_partial_last_lines_are_kept() {
    let SpawnedProcess { handle, mut output } = spawn(&[]).await;
    handle.write_line("crash 3").expect("write");
    let status = tokio::time::timeout(WAIT, handle.wait())
        .await
        .expect("exits");
    assert_eq!((status.code, status.signal), (Some(3), None));
    assert!(!status.success());
    let _ = &mut output;

    let SpawnedProcess { handle, mut output } = TokioProcessRunner::new()
        .spawn(&spec("/bin/sh", &["-c", "printf 'no newline at the end'"]))
        .await
        .expect("spawn sh");
    let line = line_matching(&mut output, |_| true).await;
    assert_eq!(line.text, "no newline at the end");
    assert_eq!(handle.wait().await.code, Some(0));
}

#[tokio::test]
async fn spawn_failure_names_the_program() {
    let err = TokioProcessRunner::new()
        .spawn(&spec("/nonexistent/server", &[]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/server"), "{err}");
}

#[tokio::test]
async fn stop_by_stdin_line() {
    let SpawnedProcess { handle, mut output } = spawn(&[]).await;
    line_matching(&mut output, |l| l.text == "Server is ready").await;
    let policy = StopPolicy {
        stdin_line: Some("quit".to_owned()),
        timeout_s: 10,
        ..StopPolicy::default()
    };
    let stopped = stop(&handle, &policy).await;
    assert_eq!(stopped.step, StopStep::StdinLine);
    assert_eq!(stopped.status.code, Some(0));
    assert!(!pid_alive(handle.pid()));
}

#[tokio::test]
async fn stop_by_signal_when_there_is_no_stdin_line() {
    let SpawnedProcess { handle, mut output } = spawn(&[]).await;
    line_matching(&mut output, |l| l.text == "Server is ready").await;
    let policy = StopPolicy {
        stdin_line: None,
        signal: StopSignal::Term,
        signal_grace_s: 10,
        ..StopPolicy::default()
    };
    let stopped = stop(&handle, &policy).await;
    assert_eq!(stopped.step, StopStep::Signal);
    assert_eq!(stopped.status.signal, Some(15), "ended by SIGTERM");
}

#[tokio::test]
async fn a_server_ignoring_sigterm_is_killed_with_its_children() {
    let SpawnedProcess { handle, mut output } = spawn(&["--ignore-sigterm"]).await;
    line_matching(&mut output, |l| l.text == "Server is ready").await;
    handle.write_line("spawn-child").expect("write");
    let child_line = line_matching(&mut output, |l| l.text.starts_with("child ")).await;
    let child: u32 = child_line.text["child ".len()..].parse().expect("a pid");
    assert!(pid_alive(child), "the grandchild runs");

    let policy = StopPolicy {
        stdin_line: Some("not a stop command".to_owned()),
        timeout_s: 1,
        signal: StopSignal::Term,
        signal_grace_s: 1,
    };
    let stopped = stop(&handle, &policy).await;
    assert_eq!(
        stopped.step,
        StopStep::Kill,
        "neither the line nor SIGTERM ended it"
    );
    assert_eq!(stopped.status.signal, Some(9));
    let ignored = line_matching(&mut output, |l| l.text == "Ignoring SIGTERM").await;
    assert_eq!(ignored.stream, OutputStream::Stdout);
    assert!(!pid_alive(handle.pid()), "the server is gone");
    eventually("the grandchild to be gone", WAIT, || async {
        (!pid_alive(child)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn kill_is_immediate() {
    let SpawnedProcess { handle, mut output } = spawn(&["--ignore-sigterm"]).await;
    line_matching(&mut output, |l| l.text == "Server is ready").await;
    let stopped = tokio::time::timeout(Duration::from_secs(2), kill(&handle))
        .await
        .expect("kill is quick");
    assert_eq!(stopped.step, StopStep::Kill);
    assert_eq!(stopped.status.signal, Some(9));
    assert!(!pid_alive(handle.pid()));
}

#[tokio::test]
async fn a_line_without_end_is_split_at_the_cap() {
    let script = "head -c 150000 /dev/zero | tr '\\0' x; printf '\\nshort\\n'";
    let SpawnedProcess { handle, mut output } = TokioProcessRunner::new()
        .spawn(&spec("/bin/sh", &["-c", script]))
        .await
        .expect("spawn sh");
    let mut lengths = Vec::new();
    loop {
        let line = line_matching(&mut output, |_| true).await;
        if line.text == "short" {
            break;
        }
        lengths.push(line.text.len());
    }
    assert_eq!(
        lengths,
        [MAX_LINE_BYTES, MAX_LINE_BYTES, 150_000 - 2 * MAX_LINE_BYTES]
    );
    assert_eq!(handle.wait().await.code, Some(0));
}

#[tokio::test]
async fn children_inherit_only_stdio_and_a_clean_environment() {
    // A descriptor this process holds without close-on-exec (nix's pipe() sets no flag) must
    // not reach the child, and neither must this process's environment.
    let (read, _write) = nix::unistd::pipe().expect("pipe");
    let leaked = std::os::fd::AsRawFd::as_raw_fd(&read);
    assert!(leaked > 2);
    assert!(
        std::env::var("CARGO_MANIFEST_DIR").is_ok(),
        "cargo sets this for tests"
    );
    let script = "ls /proc/$$/fd; echo ENV=${CARGO_MANIFEST_DIR:-unset}";
    let SpawnedProcess { handle, mut output } = TokioProcessRunner::new()
        .spawn(&spec("/bin/sh", &["-c", script]))
        .await
        .expect("spawn sh");
    let mut fds = Vec::new();
    loop {
        let line = line_matching(&mut output, |_| true).await;
        if let Some(value) = line.text.strip_prefix("ENV=") {
            assert_eq!(value, "unset", "the worker's environment is not inherited");
            break;
        }
        fds.push(line.text.parse::<i32>().expect("a descriptor number"));
    }
    fds.sort_unstable();
    assert_eq!(fds[..3], [0, 1, 2]);
    assert!(
        !fds.contains(&leaked),
        "descriptor {leaked} leaked into the child: {fds:?}"
    );
    assert!(
        fds.len() <= 4,
        "only stdio (and the shell's own directory handle): {fds:?}"
    );
    handle.wait().await;
}

/// Fields of `/proc/<pid>/stat` after the command name: state, ppid, pgrp, session, tty_nr, …
fn stat_fields(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_name = &stat[stat.rfind(')').expect("a command name") + 2..];
    after_name.split(' ').map(str::to_owned).collect()
}

#[tokio::test]
async fn a_server_has_a_session_of_its_own_and_no_terminal() {
    let SpawnedProcess { handle, mut output } = spawn(&[]).await;
    line_matching(&mut output, |l| l.text == "Server is ready").await;
    let fields = stat_fields(handle.pid());
    let pid = handle.pid().to_string();
    assert_eq!(fields[2], pid, "its own process group");
    assert_eq!(
        fields[3], pid,
        "its own session: it cannot reach the worker's terminal"
    );
    assert_eq!(fields[4], "0", "no controlling terminal");
    kill(&handle).await;
}

#[tokio::test]
async fn a_server_runs_as_its_user_without_supplementary_groups() {
    if !manman_core::worker_service::running_as_root() {
        eprintln!("skipped: only root can start a process as another user");
        return;
    }
    let user = manman_core::worker_service::lookup_server_user("nobody").expect("nobody");
    // The program where the user can reach it (the build directory may not be).
    let dir = manman_test_support::game_files::reachable_tempdir();
    let program = dir.path().join("fake-game-server");
    manman_test_support::game_files::install_program(FAKE, &program);
    let mut spec = spec(program.to_str().expect("a UTF-8 path"), &[]);
    spec.user = Some(user.clone());
    let SpawnedProcess { handle, mut output } =
        TokioProcessRunner::new().spawn(&spec).await.expect("spawn");
    line_matching(&mut output, |l| l.text == "Server is ready").await;
    handle.write_line("whoami").expect("stdin");
    let who = line_matching(&mut output, |l| l.text.starts_with("uid ")).await;
    assert_eq!(
        who.text,
        format!("uid {} gid {} groups []", user.uid, user.gid)
    );
    assert_eq!(
        stat_fields(handle.pid())[3],
        handle.pid().to_string(),
        "switching users keeps the session of its own"
    );
    kill(&handle).await;
}

#[tokio::test]
async fn closing_stdin_writes_what_is_queued_then_ends_the_input() {
    // `cat` echoes its input and exits at end-of-file: the closed pipe is what ends it.
    let spawned = TokioProcessRunner::new()
        .spawn(&spec("/bin/cat", &[]))
        .await
        .expect("spawn cat");
    let (handle, mut output) = (spawned.handle, spawned.output);
    handle.write_line("first").expect("write");
    handle.write_line("second").expect("write");
    handle.close_stdin();
    let mut lines = Vec::new();
    while let Ok(Some(line)) = tokio::time::timeout(WAIT, output.recv()).await {
        lines.push(line.text);
    }
    assert_eq!(lines, ["first", "second"]);
    let status = tokio::time::timeout(WAIT, handle.wait())
        .await
        .expect("cat exits at end of input");
    assert_eq!(status.code, Some(0));
}
