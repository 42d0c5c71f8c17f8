//! [`MemoryProcessRunner`]: scripted processes without an operating-system process.

use crate::ports::{
    ExitStatus, OutputLine, OutputStream, ProcessControl, ProcessError, ProcessHandle,
    ProcessRunner, ProcessSignal, ProcessSpec, SpawnedProcess,
};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Lines queued for a process's stdin before [`ProcessHandle::write_line`] answers
/// [`ProcessError::StdinFull`] (as [`crate::process::TokioProcessRunner`]).
const STDIN_BUFFER: usize = 256;
/// Output lines buffered before the process waits for its reader.
const OUTPUT_BUFFER: usize = 4096;
/// The first pid a runner hands out (far from real pids, so a mistake signals nothing real:
/// no signal of this runner reaches the operating system anyway).
const FIRST_PID: u32 = 4_000_000;

/// Runs scripted processes in tasks: a real [`ProcessRunner`] with the semantics of
/// [`crate::process::TokioProcessRunner`] but no process of the operating system, for fast
/// tests (with paused tokio time too) and demos.
///
/// Each program (the [`ProcessSpec::program`] of a spawn) runs the [`Script`] given for it with
/// [`MemoryProcessRunner::script`]; a program without one fails to spawn, as a missing file
/// does. Like a real process, a scripted one has piped stdin, stdout and stderr, is signalled
/// as a group, ends by SIGKILL whatever it does, closes its output when it ends and is always
/// "reaped" (its [`ExitStatus`] carries a code, or the number of the signal that ended it:
/// 2, 9 or 15).
///
/// Everything that happens is kept for tests to see: [`MemoryProcessRunner::processes`] lists
/// each spawned process as a [`MemoryProcess`] (its spec, the signals it got, the stdin lines
/// written to it, its exit and when, in tokio time), and the runner counts spawn attempts.
/// [`ProcessSpec::user`] is recorded, not acted on: nothing runs outside this process.
///
/// Clones share their scripts and records.
#[derive(Debug, Clone, Default)]
pub struct MemoryProcessRunner {
    inner: Arc<Mutex<Inner>>,
    spawns: Arc<watch::Sender<usize>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Per program, the scripts still to run: the front is used, and popped unless it is the
    /// last.
    scripts: HashMap<PathBuf, VecDeque<Script>>,
    processes: Vec<MemoryProcess>,
    attempts: usize,
    next_pid: u32,
}

impl MemoryProcessRunner {
    /// A runner without scripts: every spawn fails until a program is given one.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives `program` a script. Several scripts given to one program run in turn, one per
    /// spawn; the last one runs for every spawn after (so one script is the program's for
    /// good).
    pub fn script(&self, program: impl Into<PathBuf>, script: Script) -> &Self {
        self.lock()
            .scripts
            .entry(program.into())
            .or_default()
            .push_back(script);
        self
    }

    /// Every process spawned so far, oldest first.
    pub fn processes(&self) -> Vec<MemoryProcess> {
        self.lock().processes.clone()
    }

    /// The process spawned last.
    pub fn last(&self) -> Option<MemoryProcess> {
        self.lock().processes.last().cloned()
    }

    /// How many processes were spawned (spawns that failed not counted).
    pub fn spawn_count(&self) -> usize {
        self.lock().processes.len()
    }

    /// How many spawns were asked for, failed ones included.
    pub fn spawn_attempts(&self) -> usize {
        self.lock().attempts
    }

    /// Waits until at least `count` processes were spawned, and answers the `count`th (counted
    /// from 1; 0 is taken as 1).
    pub async fn wait_for_spawn(&self, count: usize) -> MemoryProcess {
        let count = count.max(1);
        let mut spawns = self.spawns.subscribe();
        // The sender lives as long as `self`.
        let _ = spawns.wait_for(|spawned| *spawned >= count).await;
        self.lock().processes[count - 1].clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_script(&self, program: &Path) -> Option<Script> {
        let mut inner = self.lock();
        inner.attempts += 1;
        let scripts = inner.scripts.get_mut(program)?;
        if scripts.len() > 1 {
            scripts.pop_front()
        } else {
            scripts.front().cloned()
        }
    }
}

/// What a scripted process does: its steps in order, then exit code 0 (unless a step ended it),
/// and how it takes SIGTERM and SIGINT (by default they end it, as they end most programs).
/// SIGKILL always ends it.
///
/// ```
/// # use manman_core::memory::Script;
/// # use manman_core::ports::ProcessSignal;
/// # use std::time::Duration;
/// // A server that loads for 2 s, says it is ready, echoes its console, and shrugs off SIGTERM.
/// let server = Script::new()
///     .stdout("loading")
///     .sleep(Duration::from_secs(2))
///     .stdout("Server is ready")
///     .echo_stdin()
///     .ignore(ProcessSignal::Term);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Script {
    steps: Vec<Step>,
    on_term: OnSignal,
    on_int: OnSignal,
    spawn_error: Option<String>,
}

/// One step of a [`Script`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Print(OutputStream, String),
    Sleep(Duration),
    /// Echoes each stdin line on stdout until stdin ends.
    Echo,
    /// Reads stdin until this line (or the end of stdin).
    ReadUntil(String),
    /// Waits for ever (until a signal ends it).
    Hang,
    Exit(i32),
}

/// What a scripted process does on SIGTERM or SIGINT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnSignal {
    /// Ends, by the signal (no exit code).
    #[default]
    Terminate,
    /// Goes on as if nothing happened.
    Ignore,
    /// Exits with this code (a program that handles the signal and quits cleanly).
    Exit(i32),
}

impl Script {
    /// A script that does nothing: the process exits with code 0 at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// A program that cannot be started: spawning it fails with `detail`.
    pub fn fail_to_spawn(detail: impl Into<String>) -> Self {
        Self {
            spawn_error: Some(detail.into()),
            ..Self::default()
        }
    }

    /// Prints a line on stdout.
    pub fn stdout(self, line: impl Into<String>) -> Self {
        self.step(Step::Print(OutputStream::Stdout, line.into()))
    }

    /// Prints a line on stderr.
    pub fn stderr(self, line: impl Into<String>) -> Self {
        self.step(Step::Print(OutputStream::Stderr, line.into()))
    }

    /// Waits (in tokio time).
    pub fn sleep(self, pause: Duration) -> Self {
        self.step(Step::Sleep(pause))
    }

    /// Echoes each stdin line back on stdout until stdin is closed, then goes on.
    pub fn echo_stdin(self) -> Self {
        self.step(Step::Echo)
    }

    /// Reads stdin until `line` comes (e.g. `quit`) or stdin is closed, then goes on.
    pub fn read_until(self, line: impl Into<String>) -> Self {
        self.step(Step::ReadUntil(line.into()))
    }

    /// Waits until a signal ends it.
    pub fn hang(self) -> Self {
        self.step(Step::Hang)
    }

    /// Exits with `code` (the steps after it never run).
    pub fn exit(self, code: i32) -> Self {
        self.step(Step::Exit(code))
    }

    /// What SIGTERM or SIGINT does to it (SIGKILL always ends it).
    pub fn on_signal(mut self, signal: ProcessSignal, action: OnSignal) -> Self {
        match signal {
            ProcessSignal::Term => self.on_term = action,
            ProcessSignal::Int => self.on_int = action,
            ProcessSignal::Kill => {}
        }
        self
    }

    /// Ignores SIGTERM or SIGINT, so a stop must escalate to SIGKILL.
    pub fn ignore(self, signal: ProcessSignal) -> Self {
        self.on_signal(signal, OnSignal::Ignore)
    }

    fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    fn action(&self, signal: ProcessSignal) -> OnSignal {
        match signal {
            ProcessSignal::Term => self.on_term,
            ProcessSignal::Int => self.on_int,
            ProcessSignal::Kill => OnSignal::Terminate,
        }
    }
}

/// The signal numbers a real exit status carries.
fn signal_number(signal: ProcessSignal) -> i32 {
    match signal {
        ProcessSignal::Int => 2,
        ProcessSignal::Kill => 9,
        ProcessSignal::Term => 15,
    }
}

/// A signal sent to a scripted process's group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentSignal {
    /// Which.
    pub signal: ProcessSignal,
    /// When (tokio time).
    pub at: Instant,
    /// Whether the process was still running (a signal to an ended group reaches nobody).
    pub while_running: bool,
}

/// What a test sees of one scripted process. Clones share it.
#[derive(Debug, Clone)]
pub struct MemoryProcess {
    pid: u32,
    spec: ProcessSpec,
    spawned_at: Instant,
    record: Arc<Mutex<Record>>,
    exit: watch::Receiver<Option<ExitStatus>>,
}

#[derive(Debug, Default)]
struct Record {
    signals: Vec<SentSignal>,
    stdin: Vec<String>,
    stdin_closed: bool,
    ended: Option<(ExitStatus, Instant)>,
}

impl MemoryProcess {
    /// Its pid (and process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What it was spawned with.
    pub fn spec(&self) -> &ProcessSpec {
        &self.spec
    }

    /// When it was spawned (tokio time).
    pub fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    /// The signals sent to its group, in order.
    pub fn signals(&self) -> Vec<SentSignal> {
        self.lock().signals.clone()
    }

    /// The signals it got while it ran, in order.
    pub fn signals_received(&self) -> Vec<ProcessSignal> {
        self.lock()
            .signals
            .iter()
            .filter(|s| s.while_running)
            .map(|s| s.signal)
            .collect()
    }

    /// The lines written to its stdin, in order.
    pub fn stdin_lines(&self) -> Vec<String> {
        self.lock().stdin.clone()
    }

    /// Whether its stdin was closed (by [`ProcessHandle::close_stdin`] or its end).
    pub fn stdin_closed(&self) -> bool {
        self.lock().stdin_closed
    }

    /// How it ended, and when (tokio time); `None` while it runs.
    pub fn ended(&self) -> Option<(ExitStatus, Instant)> {
        self.lock().ended
    }

    /// Waits until it has ended.
    pub async fn wait(&self) -> (ExitStatus, Instant) {
        let mut exit = self.exit.clone();
        // The sender lives until the status is sent.
        let _ = exit.wait_for(Option::is_some).await;
        self.ended().unwrap_or((
            ExitStatus {
                code: None,
                signal: None,
            },
            Instant::now(),
        ))
    }

    fn lock(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Signals a scripted process: records the signal and hands it to the process's task.
#[derive(Debug)]
struct MemoryControl {
    record: Arc<Mutex<Record>>,
    signals: mpsc::UnboundedSender<ProcessSignal>,
}

impl ProcessControl for MemoryControl {
    fn signal_group(&self, signal: ProcessSignal) -> Result<(), ProcessError> {
        let mut record = self.record.lock().unwrap_or_else(PoisonError::into_inner);
        let while_running = record.ended.is_none() && self.signals.send(signal).is_ok();
        record.signals.push(SentSignal {
            signal,
            at: Instant::now(),
            while_running,
        });
        // A group that is gone is not an error.
        Ok(())
    }
}

#[async_trait]
impl ProcessRunner for MemoryProcessRunner {
    async fn spawn(&self, spec: &ProcessSpec) -> Result<SpawnedProcess, ProcessError> {
        let script = self.next_script(&spec.program);
        let script = match script {
            None => {
                return Err(ProcessError::Spawn {
                    program: spec.program.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no script for this program",
                    ),
                });
            }
            Some(Script {
                spawn_error: Some(detail),
                ..
            }) => {
                return Err(ProcessError::Spawn {
                    program: spec.program.clone(),
                    source: std::io::Error::other(detail),
                });
            }
            Some(script) => script,
        };
        let record = Arc::new(Mutex::new(Record::default()));
        let (signal_tx, signal_rx) = mpsc::unbounded_channel();
        let control = Arc::new(MemoryControl {
            record: Arc::clone(&record),
            signals: signal_tx,
        });
        let (exit_tx, exit_rx) = watch::channel(None);
        let (stdin_tx, stdin_rx) = mpsc::channel(STDIN_BUFFER);
        let (output_tx, output_rx) = mpsc::channel(OUTPUT_BUFFER);
        let (pipe_tx, pipe_rx) = mpsc::unbounded_channel();
        let process = {
            let mut inner = self.lock();
            let pid = FIRST_PID + inner.next_pid;
            inner.next_pid += 1;
            let process = MemoryProcess {
                pid,
                spec: spec.clone(),
                spawned_at: Instant::now(),
                record: Arc::clone(&record),
                exit: exit_rx.clone(),
            };
            inner.processes.push(process.clone());
            process
        };
        let handle = ProcessHandle::new(process.pid, stdin_tx, exit_rx.clone(), control);
        tokio::spawn(write_stdin(
            stdin_rx,
            handle.stdin_closed(),
            exit_rx,
            pipe_tx,
            Arc::clone(&record),
        ));
        tokio::spawn(async move {
            let status = run(&script, pipe_rx, output_tx, signal_rx).await;
            // The output closed with the process (the sender is gone); now it is reaped.
            let mut record = record.lock().unwrap_or_else(PoisonError::into_inner);
            record.ended = Some((status, Instant::now()));
            record.stdin_closed = true;
            drop(record);
            let _ = exit_tx.send(Some(status));
        });
        self.spawns.send_modify(|spawned| *spawned += 1);
        Ok(SpawnedProcess {
            handle,
            output: output_rx,
        })
    }
}

/// The stdin pipe: moves the handle's lines to the process (recording them) until stdin is
/// closed — after what was queued before the close — or the process ends.
async fn write_stdin(
    mut lines: mpsc::Receiver<String>,
    mut closed: watch::Receiver<bool>,
    mut exit: watch::Receiver<Option<ExitStatus>>,
    pipe: mpsc::UnboundedSender<String>,
    record: Arc<Mutex<Record>>,
) {
    let write = |line: String| {
        record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stdin
            .push(line.clone());
        pipe.send(line).is_ok()
    };
    loop {
        tokio::select! {
            biased;
            line = lines.recv() => {
                let Some(line) = line else { break };
                if !write(line) {
                    break;
                }
            }
            _ = async { closed.wait_for(|closed| *closed).await.is_ok() } => {
                while let Ok(line) = lines.try_recv() {
                    if !write(line) {
                        break;
                    }
                }
                break;
            }
            _ = async { exit.wait_for(Option::is_some).await.is_ok() } => break,
        }
    }
    record
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .stdin_closed = true;
}

/// Runs a script to its end: its steps, raced against the signals it gets.
async fn run(
    script: &Script,
    mut stdin: mpsc::UnboundedReceiver<String>,
    output: mpsc::Sender<OutputLine>,
    mut signals: mpsc::UnboundedReceiver<ProcessSignal>,
) -> ExitStatus {
    let steps = run_steps(&script.steps, &mut stdin, &output);
    tokio::pin!(steps);
    loop {
        tokio::select! {
            biased;
            Some(signal) = signals.recv() => match script.action(signal) {
                OnSignal::Ignore => {}
                OnSignal::Terminate => {
                    return ExitStatus { code: None, signal: Some(signal_number(signal)) };
                }
                OnSignal::Exit(code) => return ExitStatus { code: Some(code), signal: None },
            },
            code = &mut steps => return ExitStatus { code: Some(code), signal: None },
        }
    }
}

async fn run_steps(
    steps: &[Step],
    stdin: &mut mpsc::UnboundedReceiver<String>,
    output: &mpsc::Sender<OutputLine>,
) -> i32 {
    let print = |stream, text: String| output.send(OutputLine::new(stream, text));
    for step in steps {
        match step {
            Step::Print(stream, text) => {
                // A reader that went away is a closed pipe: the line is lost.
                let _ = print(*stream, text.clone()).await;
            }
            Step::Sleep(pause) => tokio::time::sleep(*pause).await,
            Step::Echo => {
                while let Some(line) = stdin.recv().await {
                    let _ = print(OutputStream::Stdout, line).await;
                }
            }
            Step::ReadUntil(wanted) => {
                while let Some(line) = stdin.recv().await {
                    if line == *wanted {
                        break;
                    }
                }
            }
            Step::Hang => std::future::pending::<()>().await,
            Step::Exit(code) => return *code,
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec(program: &str) -> ProcessSpec {
        ProcessSpec {
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: "/".into(),
            user: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn scripts_run_in_turn_and_the_last_one_stays() {
        let runner = MemoryProcessRunner::new();
        runner
            .script("/srv/game", Script::new().exit(1))
            .script("/srv/game", Script::new().sleep(Duration::from_secs(5)));
        let codes = [Some(1), Some(0), Some(0)];
        for (n, code) in codes.into_iter().enumerate() {
            let started = Instant::now();
            let spawned = runner.spawn(&spec("/srv/game")).await.expect("spawn");
            assert_eq!(spawned.handle.wait().await.code, code, "spawn {n}");
            if n > 0 {
                assert_eq!(started.elapsed(), Duration::from_secs(5));
            }
        }
        assert_eq!(runner.spawn_count(), 3);
        assert!(runner.spawn(&spec("/srv/other")).await.is_err());
        assert_eq!(runner.spawn_attempts(), 4);
        let pids: Vec<u32> = runner.processes().iter().map(MemoryProcess::pid).collect();
        assert_eq!(pids.len(), 3);
        assert!(
            pids.windows(2).all(|p| p[0] != p[1]),
            "pids differ: {pids:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_signal_it_handles_ends_it_with_its_code_and_is_recorded() {
        let runner = MemoryProcessRunner::new();
        runner.script(
            "/srv/game",
            Script::new()
                .stdout("up")
                .hang()
                .on_signal(ProcessSignal::Term, OnSignal::Exit(0))
                .ignore(ProcessSignal::Int),
        );
        let mut spawned = runner.spawn(&spec("/srv/game")).await.expect("spawn");
        assert_eq!(spawned.output.recv().await.expect("a line").text, "up");
        spawned.handle.signal(ProcessSignal::Int).expect("signal");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(spawned.handle.try_exit().is_none(), "SIGINT is ignored");
        spawned.handle.signal(ProcessSignal::Term).expect("signal");
        assert_eq!(
            spawned.handle.wait().await,
            ExitStatus {
                code: Some(0),
                signal: None
            }
        );
        assert!(spawned.output.recv().await.is_none(), "the output closed");
        spawned
            .handle
            .signal(ProcessSignal::Kill)
            .expect("a gone group is fine");
        let process = runner.last().expect("spawned");
        assert_eq!(
            process.signals_received(),
            [ProcessSignal::Int, ProcessSignal::Term]
        );
        let all = process.signals();
        assert_eq!(all.len(), 3);
        assert!(!all[2].while_running);
        assert_eq!(all[1].at - all[0].at, Duration::from_secs(1));
    }
}
