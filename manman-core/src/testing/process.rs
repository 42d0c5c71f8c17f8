//! The process-port conformance suite: what a [`ProcessRunner`] and the [`ProcessHandle`]s it
//! hands out do, stated on a few small programs every adapter can run.
//!
//! An adapter says how to run each [`Program`] with a [`ProcessFixture`] (a shell script, a
//! fake game server, a script of [`crate::memory::MemoryProcessRunner`]…) and calls
//! [`run_all`], or each case as a test of its own. Cases wait in real time (a few seconds at
//! most in all); a process that never does what it should fails its case after
//! [`PATIENCE`] instead of hanging.

use crate::config::{StopPolicy, StopSignal};
use crate::ports::{
    ExitStatus, OutputLine, OutputStream, ProcessError, ProcessHandle, ProcessRunner,
    ProcessSignal, ProcessSpec, SpawnedProcess,
};
use crate::process::{self, StopStep};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// How long a case waits for anything it expects.
pub const PATIENCE: Duration = Duration::from_secs(10);
/// How long a case waits to be sure something does not happen.
const QUIET: Duration = Duration::from_millis(300);
/// The line the programs that wait print once they are ready for input and signals.
pub const READY: &str = "ready";

/// The programs the suite runs. Each adapter's [`ProcessFixture`] makes a [`ProcessSpec`] for
/// each.
///
/// Not `non_exhaustive`: a program added here must be given by every fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Program {
    /// Prints [`READY`] on stdout, then echoes each stdin line back on stdout until its stdin
    /// ends; then exits with code 0. SIGTERM ends it.
    Echo,
    /// Prints `out 1` on stdout, `err 1` on stderr and `out 2` on stdout, then exits with
    /// code 3.
    PrintAndExit,
    /// Prints [`READY`] on stdout, then waits for ever; SIGTERM ends it (by the signal).
    WaitForSignal,
    /// Ignores SIGTERM, prints [`READY`] on stdout, then waits for ever: only SIGKILL ends it.
    IgnoreTerm,
    /// Prints [`READY`] on stdout, then reads stdin until the line `quit`, and exits with
    /// code 0.
    QuitOnLine,
    /// Exits with code 1 at once, printing nothing (a server that crashes at start).
    Crash,
    /// A program that cannot be started (e.g. a file that does not exist).
    Missing,
}

/// Each [`Program`] as a `/bin/sh` script: the fixture of runners that start real processes.
pub fn shell_script(program: Program) -> ProcessSpec {
    let script = match program {
        Program::Echo => "echo ready; while IFS= read -r line; do printf '%s\\n' \"$line\"; done",
        Program::PrintAndExit => "echo 'out 1'; echo 'err 1' >&2; echo 'out 2'; exit 3",
        Program::WaitForSignal => "echo ready; exec sleep 600",
        // An ignored signal stays ignored across exec.
        Program::IgnoreTerm => "trap '' TERM; echo ready; exec sleep 600",
        Program::QuitOnLine => {
            "echo ready; while IFS= read -r line; do [ \"$line\" = quit ] && exit 0; done; exit 0"
        }
        Program::Crash => "exit 1",
        Program::Missing => {
            return script_spec("/nonexistent/manman-conformance/missing", Vec::new());
        }
    };
    script_spec("/bin/sh", vec!["-c".to_owned(), script.to_owned()])
}

fn script_spec(program: &str, args: Vec<String>) -> ProcessSpec {
    ProcessSpec {
        program: program.into(),
        args,
        env: std::collections::BTreeMap::from([("PATH".to_owned(), "/usr/bin:/bin".to_owned())]),
        cwd: std::env::temp_dir(),
        user: None,
    }
}

/// How an adapter runs the suite's programs.
pub trait ProcessFixture: Send + Sync {
    /// The runner under test.
    fn runner(&self) -> &dyn ProcessRunner;
    /// What to spawn for `program`.
    fn spec(&self, program: Program) -> ProcessSpec;
}

async fn spawn(fixture: &dyn ProcessFixture, program: Program) -> SpawnedProcess {
    let spec = fixture.spec(program);
    match fixture.runner().spawn(&spec).await {
        Ok(spawned) => spawned,
        Err(e) => panic!(
            "{program:?} ({}) did not spawn: {e}",
            spec.program.display()
        ),
    }
}

async fn next_line(output: &mut mpsc::Receiver<OutputLine>) -> Option<OutputLine> {
    timeout(PATIENCE, output.recv())
        .await
        .expect("a line or the end of the output within the patience")
}

/// Reads until the [`READY`] line.
async fn ready(output: &mut mpsc::Receiver<OutputLine>) {
    loop {
        match next_line(output).await {
            Some(line) if line.stream == OutputStream::Stdout && line.text == READY => return,
            Some(_) => {}
            None => panic!("the output ended before {READY:?}"),
        }
    }
}

/// Reads every line until the output closes.
async fn all_lines(output: &mut mpsc::Receiver<OutputLine>) -> Vec<OutputLine> {
    let mut lines = Vec::new();
    while let Some(line) = next_line(output).await {
        lines.push(line);
    }
    lines
}

async fn exit(handle: &ProcessHandle) -> ExitStatus {
    timeout(PATIENCE, handle.wait())
        .await
        .expect("the process ends within the patience")
}

fn by_signal(signal: i32) -> ExitStatus {
    ExitStatus {
        code: None,
        signal: Some(signal),
    }
}

fn by_code(code: i32) -> ExitStatus {
    ExitStatus {
        code: Some(code),
        signal: None,
    }
}

/// Output comes line by line, each stream in its order; the output closes when the process
/// ends; the exit keeps its code.
pub async fn output_is_read_by_line_and_the_exit_code_kept(fixture: &dyn ProcessFixture) {
    let SpawnedProcess { handle, mut output } = spawn(fixture, Program::PrintAndExit).await;
    assert_ne!(handle.pid(), 0, "a pid");
    let lines = all_lines(&mut output).await;
    let of = |stream| {
        lines
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(of(OutputStream::Stdout), ["out 1", "out 2"]);
    assert_eq!(of(OutputStream::Stderr), ["err 1"]);
    let status = exit(&handle).await;
    assert_eq!(status, by_code(3));
    assert!(!status.success());
    assert_eq!(handle.try_exit(), Some(status), "try_exit agrees with wait");
}

/// Lines written to stdin reach the process in order; closing stdin (from any clone of the
/// handle) writes what was queued first, then the process reads end-of-file.
pub async fn stdin_lines_arrive_in_order_and_closing_stdin_ends_input(
    fixture: &dyn ProcessFixture,
) {
    let SpawnedProcess { handle, mut output } = spawn(fixture, Program::Echo).await;
    ready(&mut output).await;
    assert!(handle.try_exit().is_none(), "it runs");
    for line in ["one", "two", "three"] {
        handle
            .write_line(line)
            .expect("a write to a running process");
    }
    handle.clone().close_stdin();
    let echoed: Vec<String> = all_lines(&mut output)
        .await
        .into_iter()
        .filter(|l| l.stream == OutputStream::Stdout)
        .map(|l| l.text)
        .collect();
    assert_eq!(echoed, ["one", "two", "three"], "queued lines come first");
    assert_eq!(exit(&handle).await, by_code(0), "end of input ends it");
}

/// A process that crashes at start spawned: its end is an exit, with its code, and no output.
pub async fn a_crash_at_start_is_an_exit(fixture: &dyn ProcessFixture) {
    let SpawnedProcess { handle, mut output } = spawn(fixture, Program::Crash).await;
    assert!(all_lines(&mut output).await.is_empty(), "no output");
    assert_eq!(exit(&handle).await, by_code(1));
}

/// A program that cannot start is a spawn error.
pub async fn a_missing_program_is_a_spawn_error(fixture: &dyn ProcessFixture) {
    let spec = fixture.spec(Program::Missing);
    match fixture.runner().spawn(&spec).await {
        Err(ProcessError::Spawn { program, .. }) => assert_eq!(program, spec.program),
        Err(other) => panic!("a spawn error, not {other}"),
        Ok(spawned) => {
            let _ = spawned.handle.signal(ProcessSignal::Kill);
            panic!("{} spawned", spec.program.display());
        }
    }
}

/// Once a process has ended, writing to it fails (`Exited`), and signalling its group is no
/// error.
pub async fn an_ended_process_takes_no_input_and_signals_are_harmless(
    fixture: &dyn ProcessFixture,
) {
    let SpawnedProcess { handle, output } = spawn(fixture, Program::Crash).await;
    drop(output);
    exit(&handle).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match handle.write_line("anyone there?") {
            Err(ProcessError::Exited { pid }) => {
                assert_eq!(pid, handle.pid());
                break;
            }
            // The pipe may take a moment to close after the exit.
            Ok(()) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => panic!("a write after the exit: {other:?}"),
        }
    }
    for signal in [ProcessSignal::Term, ProcessSignal::Kill] {
        handle
            .signal(signal)
            .expect("signalling a group that is gone is not an error");
    }
}

/// SIGTERM ends a process that does not handle it, and its exit names the signal (15); its
/// output closes.
pub async fn sigterm_ends_the_process_and_the_exit_names_it(fixture: &dyn ProcessFixture) {
    let SpawnedProcess { handle, mut output } = spawn(fixture, Program::WaitForSignal).await;
    ready(&mut output).await;
    handle.signal(ProcessSignal::Term).expect("signal");
    assert_eq!(exit(&handle).await, by_signal(15));
    assert!(all_lines(&mut output).await.is_empty(), "the output closes");
}

/// A process that ignores SIGTERM runs on after it; SIGKILL ends it whatever it does (9).
pub async fn sigkill_ends_a_process_that_ignores_sigterm(fixture: &dyn ProcessFixture) {
    let SpawnedProcess { handle, mut output } = spawn(fixture, Program::IgnoreTerm).await;
    ready(&mut output).await;
    handle.signal(ProcessSignal::Term).expect("signal");
    tokio::time::sleep(QUIET).await;
    assert!(handle.try_exit().is_none(), "SIGTERM was ignored");
    handle.signal(ProcessSignal::Kill).expect("signal");
    assert_eq!(exit(&handle).await, by_signal(9));
    assert!(all_lines(&mut output).await.is_empty(), "the output closes");
}

fn quick_stop(stdin_line: Option<&str>) -> StopPolicy {
    StopPolicy {
        stdin_line: stdin_line.map(str::to_owned),
        signal: StopSignal::Term,
        timeout_s: 1,
        signal_grace_s: 1,
    }
}

/// The stop sequence on this runner: a server that quits on its stop line ends at that step,
/// one that ends on SIGTERM at the signal, and one that ignores both is killed.
pub async fn the_stop_sequence_ends_each_at_its_step(fixture: &dyn ProcessFixture) {
    let cases = [
        (Program::QuitOnLine, StopStep::StdinLine, by_code(0)),
        (Program::WaitForSignal, StopStep::Signal, by_signal(15)),
        (Program::IgnoreTerm, StopStep::Kill, by_signal(9)),
    ];
    for (program, step, status) in cases {
        let SpawnedProcess { handle, mut output } = spawn(fixture, program).await;
        ready(&mut output).await;
        let stopped = timeout(PATIENCE, process::stop(&handle, &quick_stop(Some("quit"))))
            .await
            .expect("the stop sequence ends");
        assert_eq!(stopped.step, step, "{program:?}");
        assert_eq!(stopped.status, status, "{program:?}");
        assert_eq!(handle.try_exit(), Some(status), "{program:?}");
    }
}

/// Each process has a pid of its own, and a signal reaches only its own group.
pub async fn each_process_is_its_own_group(fixture: &dyn ProcessFixture) {
    let mut first = spawn(fixture, Program::WaitForSignal).await;
    let mut second = spawn(fixture, Program::WaitForSignal).await;
    ready(&mut first.output).await;
    ready(&mut second.output).await;
    assert_ne!(first.handle.pid(), second.handle.pid());
    first.handle.signal(ProcessSignal::Term).expect("signal");
    assert_eq!(exit(&first.handle).await, by_signal(15));
    tokio::time::sleep(QUIET).await;
    assert!(
        second.handle.try_exit().is_none(),
        "the other process was not signalled"
    );
    second.handle.signal(ProcessSignal::Kill).expect("signal");
    assert_eq!(exit(&second.handle).await, by_signal(9));
}

/// Runs every case, in turn.
pub async fn run_all(fixture: &dyn ProcessFixture) {
    output_is_read_by_line_and_the_exit_code_kept(fixture).await;
    stdin_lines_arrive_in_order_and_closing_stdin_ends_input(fixture).await;
    a_crash_at_start_is_an_exit(fixture).await;
    a_missing_program_is_a_spawn_error(fixture).await;
    an_ended_process_takes_no_input_and_signals_are_harmless(fixture).await;
    sigterm_ends_the_process_and_the_exit_names_it(fixture).await;
    sigkill_ends_a_process_that_ignores_sigterm(fixture).await;
    the_stop_sequence_ends_each_at_its_step(fixture).await;
    each_process_is_its_own_group(fixture).await;
}
