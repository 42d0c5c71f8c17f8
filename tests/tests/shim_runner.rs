//! The shim runner with the real `manman-shim`: it passes the process suite (servers started
//! through shims behave as direct children do), and a server left by one runner is taken up
//! by another — its console replayed from where the new one asks, numbered on, stdin working —
//! or, once it ended unheard, reported from its shim's exit file.

use async_trait::async_trait;
use manman_core::config::StopPolicy;
use manman_core::id::InstanceId;
use manman_core::ports::{
    OutputLine, OutputStream, ProcessError, ProcessRunner, ProcessSpec, Reattached, ServerLaunch,
    SpawnedProcess,
};
use manman_core::process::ShimProcessRunner;
use manman_core::testing::process::{self, ProcessFixture, Program, shell_script};
use manman_tests::{eventually, pid_alive};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

const SHIM: &str = env!("CARGO_BIN_EXE_e2e-shim");
const WAIT: Duration = Duration::from_secs(10);

/// Every spawn is a game server's, through a shim, as a new instance.
#[derive(Debug)]
struct ThroughShims {
    runner: ShimProcessRunner,
    next: AtomicI64,
}

#[async_trait]
impl ProcessRunner for ThroughShims {
    async fn spawn(&self, spec: &ProcessSpec) -> Result<SpawnedProcess, ProcessError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let launch = ServerLaunch {
            instance_id: InstanceId(id),
            spawn: id.unsigned_abs(),
            first_seq: 1,
            stop: StopPolicy::default(),
        };
        self.runner.spawn_server(spec, &launch).await
    }
}

struct Scripts(ThroughShims);

impl ProcessFixture for Scripts {
    fn runner(&self) -> &dyn ProcessRunner {
        &self.0
    }

    fn spec(&self, program: Program) -> ProcessSpec {
        shell_script(program)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_through_shims_pass_the_process_suite() {
    let dir = tempfile::tempdir().expect("dir");
    process::run_all(&Scripts(ThroughShims {
        // Nothing releases the suite's servers: their shims go a second after it let go.
        runner: ShimProcessRunner::new(SHIM, dir.path()).unattended_grace(Duration::from_secs(1)),
        next: AtomicI64::new(1),
    }))
    .await;
}

fn launch(id: i64, first_seq: u64) -> ServerLaunch {
    ServerLaunch {
        instance_id: InstanceId(id),
        spawn: spawn_of(id),
        first_seq,
        stop: StopPolicy {
            stdin_line: Some("quit".into()),
            ..StopPolicy::default()
        },
    }
}

/// The start number the tests give instance `id`.
fn spawn_of(id: i64) -> u64 {
    0xabc0 + id.unsigned_abs()
}

/// A file the shim runner keeps for instance `id`'s server.
fn shim_file(dir: &std::path::Path, id: i64, extension: &str) -> std::path::PathBuf {
    dir.join(format!("instance-{id}-{:016x}.{extension}", spawn_of(id)))
}

async fn next(output: &mut mpsc::Receiver<OutputLine>) -> OutputLine {
    tokio::time::timeout(WAIT, output.recv())
        .await
        .expect("a line in time")
        .expect("a line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_let_go_by_one_runner_is_taken_up_by_the_next() {
    let dir = tempfile::tempdir().expect("dir");
    let first = ShimProcessRunner::new(SHIM, dir.path());
    let spec = shell_script(Program::Echo);
    let SpawnedProcess { handle, mut output } = first
        .spawn_server(&spec, &launch(7, 41))
        .await
        .expect("spawned");
    let pid = handle.pid();
    assert!(handle.numbers_console());
    let ready = next(&mut output).await;
    assert_eq!(
        (ready.text.as_str(), ready.numbered.map(|n| n.0)),
        ("ready", Some(41))
    );
    handle.write_line("one").expect("write");
    let sent = next(&mut output).await;
    assert_eq!(
        (sent.stream, sent.text.as_str(), sent.numbered.map(|n| n.0)),
        (OutputStream::Stdin, "one", Some(42)),
        "the shim numbers what it writes"
    );
    let echo = next(&mut output).await;
    assert_eq!(
        (echo.text.as_str(), echo.numbered.map(|n| n.0)),
        ("one", Some(43))
    );

    // The worker lets go (it leaves the server running), and the lines it had not logged yet
    // are asked for again by the next one.
    drop((handle, output));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(pid_alive(pid), "the server outlives the runner that let go");
    let second = ShimProcessRunner::new(SHIM, dir.path());
    let Reattached::Running(held) = second.reattach(InstanceId(7), spawn_of(7)).await else {
        panic!("the server is taken up");
    };
    assert_eq!(held.pid(), pid);
    // A second worker process on the same state directory is refused, not given the server.
    match first.reattach(InstanceId(7), spawn_of(7)).await {
        Reattached::Busy(why) => assert!(why.contains("another worker"), "{why}"),
        other => panic!("busy, not {other:?}"),
    }
    let SpawnedProcess { handle, mut output } = held.resume(42).await.expect("resumed");
    assert_eq!(handle.pid(), pid, "the same server");
    let replayed: Vec<(u64, String)> = [next(&mut output).await, next(&mut output).await]
        .into_iter()
        .map(|l| (l.numbered.expect("numbered").0, l.text))
        .collect();
    assert_eq!(replayed, [(42, "one".to_owned()), (43, "one".to_owned())]);
    handle.write_line("two").expect("write after the restart");
    assert_eq!(next(&mut output).await.numbered.map(|n| n.0), Some(44));
    assert_eq!(next(&mut output).await.text, "two");
    handle.close_stdin();
    let exit = tokio::time::timeout(WAIT, handle.wait())
        .await
        .expect("exit");
    assert_eq!(exit.code, Some(0));
    assert!(handle.lost().is_none());
    // The shim keeps the exit until the worker has recorded it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        shim_file(dir.path(), 7, "sock").exists(),
        "kept until released"
    );
    handle.release();
    eventually(
        "the shim to go once its exit was recorded",
        WAIT,
        || async { (!shim_file(dir.path(), 7, "sock").exists()).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ends_unheard_is_reported_from_its_exit_file() {
    let dir = tempfile::tempdir().expect("dir");
    let runner = ShimProcessRunner::new(SHIM, dir.path()).unattended_grace(Duration::from_secs(1));
    let spec = shell_script(Program::QuitOnLine);
    let SpawnedProcess { handle, output } = runner
        .spawn_server(&spec, &launch(8, 1))
        .await
        .expect("spawned");
    let pid = handle.pid();
    drop((handle, output));
    // After the grace time the shim writes `quit`: the server exits 0, and the shim with it.
    eventually("the shim to stop its server", WAIT, || async {
        (!pid_alive(pid) && shim_file(dir.path(), 8, "exit").exists()).then_some(())
    })
    .await;
    eventually("the shim to go", WAIT, || async {
        (!shim_file(dir.path(), 8, "sock").exists()).then_some(())
    })
    .await;
    match runner.reattach(InstanceId(8), spawn_of(8)).await {
        Reattached::Ended {
            exit,
            stopped_unattended,
        } => {
            assert_eq!(exit.code, Some(0));
            assert!(stopped_unattended, "stopped by its shim");
        }
        other => panic!("ended, not {other:?}"),
    }
    assert!(
        matches!(
            runner.reattach(InstanceId(8), spawn_of(8)).await,
            Reattached::Ended { .. }
        ),
        "kept until forgotten (a worker dying before it reported finds it again)"
    );
    runner.forget(InstanceId(8), spawn_of(8)).await;
    assert!(
        matches!(
            runner.reattach(InstanceId(8), spawn_of(8)).await,
            Reattached::Gone(_)
        ),
        "forgotten once reported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shim_told_to_terminate_stops_its_server_by_its_stop_policy_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    // A grace far beyond the test: only the SIGTERM can end the server in time.
    let runner =
        ShimProcessRunner::new(SHIM, dir.path()).unattended_grace(Duration::from_secs(3600));
    let spec = shell_script(Program::QuitOnLine);
    let SpawnedProcess { handle, mut output } = runner
        .spawn_server(&spec, &launch(9, 1))
        .await
        .expect("spawned");
    assert_eq!(next(&mut output).await.text, "ready");
    let pid = handle.pid();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let shim: i32 = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .expect("the server's parent, its shim");
    // The machine shuts down: systemd sends SIGTERM to what is left of the worker's unit.
    drop((handle, output));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM the shim");
    eventually("the shim to stop its server and go", WAIT, || async {
        (!pid_alive(pid) && !shim_file(dir.path(), 9, "sock").exists()).then_some(())
    })
    .await;
    match runner.reattach(InstanceId(9), spawn_of(9)).await {
        Reattached::Ended {
            exit,
            stopped_unattended,
        } => {
            assert_eq!(exit.code, Some(0), "by its stop line `quit`");
            assert!(stopped_unattended);
        }
        other => panic!("ended, not {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_environment_reaches_the_server_and_never_the_shim() {
    let dir = tempfile::tempdir().expect("dir");
    let runner = ShimProcessRunner::new(SHIM, dir.path()).unattended_grace(Duration::from_secs(1));
    let mut spec = shell_script(Program::WaitForSignal);
    // What a Steam config sets: a directory the game's user writes. The shim, which runs as
    // the worker's user, must never load a library from it.
    spec.env
        .insert("LD_LIBRARY_PATH".into(), dir.path().display().to_string());
    spec.env
        .insert("MOTD".into(), "two words = and ünïcode".into());
    let SpawnedProcess { handle, mut output } = runner
        .spawn_server(&spec, &launch(10, 1))
        .await
        .expect("spawned");
    assert_eq!(next(&mut output).await.text, "ready");
    let environ = |pid: u32| -> Vec<String> {
        std::fs::read(format!("/proc/{pid}/environ"))
            .expect("environ")
            .split(|b| *b == 0)
            .filter(|v| !v.is_empty())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    };
    let server = environ(handle.pid());
    assert!(
        server.contains(&"MOTD=two words = and ünïcode".to_owned()),
        "{server:?}"
    );
    assert!(
        server.iter().any(|v| v.starts_with("LD_LIBRARY_PATH=")),
        "{server:?}"
    );
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", handle.pid())).expect("stat");
    let shim: u32 = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .expect("the server's parent, its shim");
    assert_eq!(
        environ(shim),
        Vec::<String>::new(),
        "the shim has no environment at all"
    );
    handle
        .signal(manman_core::ports::ProcessSignal::Kill)
        .expect("kill");
    tokio::time::timeout(WAIT, handle.wait())
        .await
        .expect("exit");
    handle.release();
}
