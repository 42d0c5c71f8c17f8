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
        let launch = ServerLaunch {
            instance_id: InstanceId(self.next.fetch_add(1, Ordering::Relaxed)),
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
        runner: ShimProcessRunner::new(SHIM, dir.path()),
        next: AtomicI64::new(1),
    }))
    .await;
}

fn launch(id: i64, first_seq: u64) -> ServerLaunch {
    ServerLaunch {
        instance_id: InstanceId(id),
        first_seq,
        stop: StopPolicy {
            stdin_line: Some("quit".into()),
            ..StopPolicy::default()
        },
    }
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
    let Reattached::Running(SpawnedProcess { handle, mut output }) =
        second.reattach(InstanceId(7), 42).await
    else {
        panic!("the server is taken up");
    };
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
    eventually("the shim to go once its exit was heard", WAIT, || async {
        (!dir.path().join("instance-7.sock").exists()).then_some(())
    })
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
        (!pid_alive(pid) && dir.path().join("instance-8.exit").exists()).then_some(())
    })
    .await;
    eventually("the shim to go", WAIT, || async {
        (!dir.path().join("instance-8.sock").exists()).then_some(())
    })
    .await;
    match runner.reattach(InstanceId(8), 1).await {
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
        matches!(runner.reattach(InstanceId(8), 1).await, Reattached::Gone(_)),
        "reported once"
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
        (!pid_alive(pid) && !dir.path().join("instance-9.sock").exists()).then_some(())
    })
    .await;
    match runner.reattach(InstanceId(9), 1).await {
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
