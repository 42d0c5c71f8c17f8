//! The per-instance supervisor, a state machine over the status lifecycle:
//!
//! ```text
//! created ─► initializing ─► running ─► complete | crashed
//!               ▲   │  ▲         │
//!               │   └──┴─────────┘  crash policy: restart after backoff (cause crash-policy)
//! ```
//!
//! Each attempt prepares (config, install), spawns, waits for readiness and supervises until
//! the process exits; the crash policy then decides between a restart and a final status.
//! Every status change goes through the transition table and is reported with its cause.

use crate::config::{GameServerConfig, RestartPolicy, StopPolicy};
use crate::confined_path::ConfinedPath;
use crate::console::ConsoleStream;
use crate::event::StatusReport;
use crate::game_server::NewGameServer;
use crate::id::{ConfigId, InstanceId, WorkerId};
use crate::ports::{
    ConfigBundle, ExitStatus, GameInstaller, HeldServer, HostApi, HostApiError, InstallError,
    InstallRequest, OutputLine, OutputStream, ProcessHandle, ProcessRunner, ProcessSignal,
    ProcessSpec, ProcessUser, ServerLaunch, SpawnedProcess,
};
use crate::process::{self, StopStep, Stopped};
use crate::status::{Cause, Entity, Status, can_transition};
use crate::worker_service::console_log::LogRotation;
use crate::worker_service::console_sink::ConsoleSink;
use crate::worker_service::console_tail::send_tail;
use crate::worker_service::directories::WorkerDirectories;
use crate::worker_service::install_progress::ProgressPublisher;
use crate::worker_service::launch::{ServerEnvironment, process_spec};
use crate::worker_service::process_records::{KeptServer, ProcessRecords};
use crate::worker_service::reporter::Reporter;
use crate::worker_service::restart_policy::{CrashTracker, Decision};
use crate::worker_service::server_user::hand_over;
use futures::future::BoxFuture;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Lines sent before the server is ready that are kept for it.
pub(crate) const STDIN_QUEUE: usize = 256;
/// How long output is still read after the process exited.
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);
/// How long the live console may take to send its last lines.
const LIVE_CONSOLE_GRACE: Duration = Duration::from_secs(2);

/// The answer to a request, for the command result.
pub(crate) type Reply = oneshot::Sender<Result<String, String>>;

/// What the worker asks of a supervisor.
#[derive(Debug)]
pub(crate) enum Request {
    /// Write a console line (queued until ready).
    Stdin { line: String, reply: Reply },
    /// Stop gracefully.
    Stop { reply: Reply },
    /// SIGKILL now.
    Kill { reply: Reply },
    /// Stop gracefully and start again, as the same instance.
    Restart { reply: Reply },
}

/// What the worker sees of an instance (for the heartbeat's inventory).
#[derive(Debug)]
pub(crate) struct InstanceState {
    pub(crate) config_id: ConfigId,
    pub(crate) status: Status,
    pub(crate) pid: Option<u32>,
    pub(crate) restart_count: u32,
    pub(crate) console_dropped: Arc<AtomicU64>,
}

/// Everything a supervisor needs from its worker.
#[derive(Debug, Clone)]
pub(crate) struct SupervisorContext {
    /// This worker.
    pub(crate) worker_id: WorkerId,
    pub(crate) host: Arc<dyn HostApi>,
    pub(crate) installer: Arc<dyn GameInstaller>,
    pub(crate) runner: Arc<dyn ProcessRunner>,
    pub(crate) reporter: Reporter,
    pub(crate) install_root: PathBuf,
    pub(crate) log_dir: PathBuf,
    pub(crate) log_rotation: LogRotation,
    pub(crate) live_console_buffer: usize,
    pub(crate) records: ProcessRecords,
    /// Cancelled on a second shutdown signal: SIGKILL now, no graceful stop.
    pub(crate) kill_now: CancellationToken,
    /// The user servers run as (when the worker runs as root).
    pub(crate) run_as: Option<ProcessUser>,
    /// What servers' environments start from and `$VAR` may read.
    pub(crate) server_env: ServerEnvironment,
    /// The install and state directories, resolved.
    pub(crate) directories: WorkerDirectories,
    /// The instances ended lately, for the heartbeat's inventory.
    pub(crate) ends: super::recent_ends::RecentEnds,
    /// Cancelled when the worker begins to shut down.
    pub(crate) stopping: CancellationToken,
    /// At the worker's shutdown, servers the runner keeps across worker restarts are left
    /// running (for the next run to take up) instead of stopped. Cleared when the worker ends
    /// for another reason (superseded by a newer registration, its bus closed): no run of it
    /// will take them up.
    pub(crate) leave_running: Arc<std::sync::atomic::AtomicBool>,
}

/// The status an instance ends in.
#[derive(Debug)]
struct Final {
    status: Status,
    cause: Cause,
    detail: Option<String>,
    exit: Option<ExitStatus>,
}

impl Final {
    fn complete(cause: Cause, detail: impl Into<String>, exit: Option<ExitStatus>) -> Self {
        Self {
            status: Status::Complete,
            cause,
            detail: Some(detail.into()),
            exit,
        }
    }
}

/// An attempt that ended without being asked to: the crash policy decides what follows.
#[derive(Debug)]
struct Failure {
    cause: Cause,
    detail: String,
    exit: Option<ExitStatus>,
    /// Exit code 0.
    clean: bool,
    uptime: Duration,
    /// A start that was refused (a config that leaves its directory, hooks a loader…): it can
    /// never succeed as it is, so the crash policy does not try again.
    refused: bool,
    /// An install that failed in a way no new attempt can fix (the installer's class, e.g.
    /// `login-failed`): the crash policy does not try again either.
    unrecoverable: Option<String>,
}

/// How one attempt ended.
#[derive(Debug)]
enum AttemptEnd {
    /// Asked to end (stop, kill, worker shutdown): final.
    Ended(Final),
    /// Ended by itself or failed to start.
    Failed(Failure),
    /// Stopped to be started again (an operator's restart).
    Restart {
        detail: String,
        exit: Option<ExitStatus>,
    },
    /// Left running at the worker's shutdown, for its next run to take up.
    LeftRunning,
}

/// Why the supervisor is ending the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// An operator's stop.
    Stop,
    /// An operator's kill.
    Kill,
    /// The worker is shutting down (gracefully, or killing on a second signal).
    Shutdown,
    /// It never became ready in time.
    ReadyTimeout,
    /// An operator's restart.
    Restart,
}

/// One instance's supervisor. Runs until the instance is `complete` or `crashed`.
pub(crate) struct Supervisor {
    instance_id: InstanceId,
    config_id: ConfigId,
    context: SupervisorContext,
    requests: mpsc::Receiver<Request>,
    requests_open: bool,
    state: Arc<Mutex<InstanceState>>,
    console: ConsoleSink,
    pending_stdin: VecDeque<String>,
    config: Option<GameServerConfig>,
    crashes: Option<CrashTracker>,
    /// The game and config the start command carried, for the first attempt only (taken by
    /// it); every later attempt fetches them.
    carried: Option<ConfigBundle>,
    /// A server a previous run of the worker left, taken up again: the first attempt
    /// supervises it instead of starting one.
    taken_up: Option<Box<dyn HeldServer>>,
    /// Which start of the instance the current server is (see [`ServerLaunch::spawn`]).
    spawn: u64,
    /// The server of the last attempt, ended but not yet released: its record and what its
    /// runner keeps of it stay until the status that follows its end has been reported, so
    /// that a worker dying in between finds the end again.
    unsettled: Option<ProcessHandle>,
}

impl Supervisor {
    pub(crate) fn new(
        instance_id: InstanceId,
        config_id: ConfigId,
        context: SupervisorContext,
        requests: mpsc::Receiver<Request>,
        state: Arc<Mutex<InstanceState>>,
    ) -> Self {
        let dropped = Arc::clone(&lock(&state).console_dropped);
        let console = ConsoleSink::new(
            instance_id,
            &context.log_dir,
            context.log_rotation,
            context.live_console_buffer,
            context.reporter.clone(),
            dropped,
        );
        Self {
            instance_id,
            config_id,
            context,
            requests,
            requests_open: true,
            state,
            console,
            pending_stdin: VecDeque::new(),
            config: None,
            crashes: None,
            carried: None,
            taken_up: None,
            spawn: 0,
            unsettled: None,
        }
    }

    /// Supervises `server`, which a previous run of the worker left running (`kept` as it
    /// recorded it), instead of starting one: the instance goes on in the status it had,
    /// its console after line `last_seq`.
    pub(crate) fn taking_up(
        mut self,
        server: Box<dyn HeldServer>,
        kept: &KeptServer,
        last_seq: u64,
    ) -> Self {
        {
            let mut state = lock(&self.state);
            state.status = if kept.ready {
                Status::Running
            } else {
                Status::Initializing
            };
            state.restart_count = kept.restart_count;
            state.pid = Some(server.pid());
        }
        self.console.continue_after(last_seq);
        self.taken_up = Some(server);
        self.spawn = kept.spawn;
        self.config = Some((*kept.config).clone());
        self
    }

    /// Lets go of the last attempt's ended server, once what followed its end was reported.
    fn settle(&mut self) {
        if let Some(server) = self.unsettled.take() {
            server.release();
            self.context.records.remove(self.instance_id);
        }
    }

    /// Starts with `bundle`, the game and config the start command carried, rather than
    /// fetching them from the host (`None`: fetched, as for a command of an older host).
    ///
    /// Only the first attempt uses it. A restart in place (an operator's, or the crash
    /// policy's) fetches them as before: the host then confirms again that the instance is
    /// still this registration's and not ended, and the attempt runs the config as it is now.
    pub(crate) fn with_carried_bundle(mut self, bundle: Option<ConfigBundle>) -> Self {
        self.carried = bundle;
        self
    }

    fn status(&self) -> Status {
        lock(&self.state).status
    }

    /// Moves to `to` if the transition table allows it, and reports it.
    async fn transition(
        &self,
        to: Status,
        cause: Cause,
        detail: Option<String>,
        exit: Option<ExitStatus>,
    ) {
        if let Some(report) = self.enter(to, cause, detail, exit) {
            self.context.reporter.status(report).await;
        }
    }

    /// Moves the instance to `to` and makes the report of it (`None` when the move is
    /// forbidden); [`Self::transition`] publishes it.
    fn enter(
        &self,
        to: Status,
        cause: Cause,
        detail: Option<String>,
        exit: Option<ExitStatus>,
    ) -> Option<StatusReport> {
        let from = self.status();
        if !can_transition(&Entity::Instance(self.instance_id), from, to) {
            tracing::error!(instance_id = self.instance_id.get(), %from, %to, "supervisor refused a forbidden transition");
            return None;
        }
        let restart_count = {
            let mut state = lock(&self.state);
            state.status = to;
            if to != Status::Running {
                state.pid = None;
            }
            state.restart_count
        };
        let mut report = StatusReport::new(
            Entity::Instance(self.instance_id),
            to,
            cause,
            self.context.reporter.now(),
        );
        report.detail = detail;
        report.exit_code = exit.and_then(|e| e.code);
        report.exit_signal = exit.and_then(|e| e.signal);
        report.restart_count = restart_count;
        tracing::info!(instance_id = self.instance_id.get(), %from, %to, ?cause, detail = report.detail.as_deref().unwrap_or(""), "instance status");
        Some(report)
    }

    /// Runs the instance to its end.
    pub(crate) async fn run(mut self) {
        // `initializing` is numbered first and published while the config is fetched and the
        // game installed: the spawn does not wait for the broker to confirm it (the host puts
        // the instance's reports in the order of their numbers).
        let initializing = if self.taken_up.is_some() {
            None
        } else {
            self.enter(Status::Initializing, Cause::User, None, None)
        };
        let reporter = self.context.reporter.clone();
        let announce = async move {
            if let Some(report) = initializing {
                reporter.status(report).await;
            }
        };
        let ((), end) = tokio::join!(announce, self.lifecycle());
        let Some(end) = end else {
            // Left running for the worker's next run: no end to report, and its record stays.
            self.console.close(LIVE_CONSOLE_GRACE).await;
            tracing::info!(
                instance_id = self.instance_id.get(),
                "left running for the next run of the worker"
            );
            return;
        };
        // Listed as ended (with how) before it leaves the live inventory, so that a heartbeat
        // never leaves it out while its final report may not have been recorded.
        self.context.ends.record(
            self.instance_id,
            end.status,
            lock(&self.state).restart_count,
            crate::worker::InventoryEnd {
                cause: end.cause,
                detail: end.detail.clone(),
                exit_code: end.exit.and_then(|e| e.code),
                exit_signal: end.exit.and_then(|e| e.signal),
                ended_at: self.context.reporter.now(),
            },
        );
        // From here the worker counts the instance as ended: a new start of its config is
        // accepted even while the last report is on its way.
        self.requests.close();
        self.console.close(LIVE_CONSOLE_GRACE).await;
        self.transition(end.status, end.cause, end.detail, end.exit)
            .await;
        self.settle();
        // The log is flushed: its last lines outlive the live console, on the host.
        send_tail(
            Arc::clone(&self.context.host),
            self.context.worker_id,
            self.instance_id,
            self.context.log_dir.clone(),
            self.context.stopping.clone(),
        )
        .await;
    }

    /// Attempts until one ends for good (`None`: its server was left running at the worker's
    /// shutdown); restarts per the crash policy.
    async fn lifecycle(&mut self) -> Option<Final> {
        loop {
            let failure = match self.attempt().await {
                AttemptEnd::Ended(end) => return Some(end),
                AttemptEnd::LeftRunning => return None,
                AttemptEnd::Failed(failure) => failure,
                AttemptEnd::Restart { detail, exit } => {
                    let restart = {
                        let mut state = lock(&self.state);
                        state.restart_count += 1;
                        state.restart_count
                    };
                    let detail = format!("{detail}; restart {restart}, as asked");
                    self.transition(Status::Initializing, Cause::User, Some(detail), exit)
                        .await;
                    self.settle();
                    continue;
                }
            };
            let tracker = self.crashes.get_or_insert_with(|| {
                let (policy, clean_is_complete) = self
                    .config
                    .as_ref()
                    .map_or((RestartPolicy::default(), true), |c| {
                        (c.spec.restart.clone(), c.spec.clean_exit_is_complete)
                    });
                CrashTracker::new(policy, clean_is_complete)
            });
            let Failure {
                cause,
                detail,
                exit,
                clean,
                uptime,
                refused,
                unrecoverable,
            } = failure;
            if let Some(class) = unrecoverable {
                return Some(Final {
                    status: Status::Crashed,
                    cause,
                    detail: Some(format!(
                        "{detail}; not restarted: a {class} install failure cannot succeed by \
                         trying again (each try would be another Steam login) — do what it says, \
                         then start the server again"
                    )),
                    exit,
                });
            }
            if refused {
                return Some(Final {
                    status: Status::Crashed,
                    cause,
                    detail: Some(format!(
                        "{detail}; not restarted: an admin must fix the config or the game's files"
                    )),
                    exit,
                });
            }
            match tracker.on_exit(Instant::now(), clean, uptime) {
                Decision::Complete => return Some(Final::complete(Cause::Exited, detail, exit)),
                Decision::Crashed => {
                    return Some(Final {
                        status: Status::Crashed,
                        cause,
                        detail: Some(detail),
                        exit,
                    });
                }
                Decision::CrashLoop => {
                    let window = self.config.as_ref().map_or(0, |c| c.spec.restart.window_s);
                    return Some(Final {
                        status: Status::Crashed,
                        cause: Cause::CrashLoop,
                        detail: Some(format!(
                            "{detail}; too many restarts within {window} s: giving up"
                        )),
                        exit,
                    });
                }
                Decision::Restart { after, restart } => {
                    lock(&self.state).restart_count = restart;
                    let detail = format!("{detail}; restart {restart} in {} ms", after.as_millis());
                    self.transition(Status::Initializing, Cause::CrashPolicy, Some(detail), exit)
                        .await;
                    self.settle();
                    if let Some(end) = self.wait_before_restart(after).await {
                        return Some(end);
                    }
                }
            }
        }
    }

    /// Waits out the backoff; a stop, a kill or the worker's shutdown end the instance instead.
    async fn wait_before_restart(&mut self, pause: Duration) -> Option<Final> {
        let sleep = tokio::time::sleep(pause);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return None,
                () = self.context.kill_now.cancelled() => return Some(Final::complete(Cause::WorkerShutdown, "the worker stopped while it waited to restart", None)),
                request = self.requests.recv(), if self.requests_open => match request {
                    Some(Request::Stdin { line, reply }) => {
                        let _ = reply.send(self.queue_stdin(line));
                    }
                    Some(Request::Stop { reply }) => {
                        let _ = reply.send(Ok("stopped while waiting to restart".to_owned()));
                        return Some(Final::complete(Cause::User, "stopped while waiting to restart", None));
                    }
                    Some(Request::Kill { reply }) => {
                        let _ = reply.send(Ok("killed while waiting to restart".to_owned()));
                        return Some(Final::complete(Cause::Killed, "killed while waiting to restart", None));
                    }
                    Some(Request::Restart { reply }) => {
                        let _ = reply.send(Ok("restarting now instead of after the backoff".to_owned()));
                        return None;
                    }
                    None => return Some(Final::complete(Cause::WorkerShutdown, "the worker stopped while it waited to restart", None)),
                },
            }
        }
    }

    /// One attempt: prepare, spawn, supervise (or supervise the server taken up).
    async fn attempt(&mut self) -> AttemptEnd {
        if let Some(server) = self.taken_up.take() {
            return self.take_up(server).await;
        }
        let began = Instant::now();
        let prepare = prepare(
            self.context.clone(),
            self.instance_id,
            self.config_id,
            self.carried.take(),
        );
        tokio::pin!(prepare);
        let prepared = loop {
            tokio::select! {
                prepared = &mut prepare => break prepared,
                () = self.context.kill_now.cancelled() => {
                    return AttemptEnd::Ended(Final::complete(Cause::WorkerShutdown, "the worker stopped while it was initializing", None));
                }
                request = self.requests.recv(), if self.requests_open => match request {
                    Some(Request::Stdin { line, reply }) => {
                        let _ = reply.send(self.queue_stdin(line));
                    }
                    Some(Request::Stop { reply }) => {
                        let _ = reply.send(Ok("stopped before it started".to_owned()));
                        return AttemptEnd::Ended(Final::complete(Cause::User, "stopped while initializing", None));
                    }
                    Some(Request::Kill { reply }) => {
                        let _ = reply.send(Ok("killed before it started".to_owned()));
                        return AttemptEnd::Ended(Final::complete(Cause::Killed, "killed while initializing", None));
                    }
                    Some(Request::Restart { reply }) => {
                        let _ = reply.send(Ok("it is starting already".to_owned()));
                    }
                    None => {
                        return AttemptEnd::Ended(Final::complete(Cause::WorkerShutdown, "the worker stopped while it was initializing", None));
                    }
                },
            }
        };
        let failed = |cause, detail: String, refused, unrecoverable| {
            AttemptEnd::Failed(Failure {
                cause,
                detail,
                exit: None,
                clean: false,
                uptime: Duration::ZERO,
                refused,
                unrecoverable,
            })
        };
        let spec = match prepared {
            Ok((config, spec)) => {
                self.config = Some(config);
                spec
            }
            Err(failure) => {
                if failure.config.is_some() {
                    self.config = failure.config;
                }
                tracing::warn!(instance_id = self.instance_id.get(), cause = ?failure.cause, detail = %failure.detail, "could not start");
                return failed(
                    failure.cause,
                    failure.detail,
                    failure.refused,
                    failure.unrecoverable,
                );
            }
        };
        let prepared_in = began.elapsed();
        let config = self.config.clone().expect("set above");
        self.spawn = fastrand::u64(..);
        let launch = ServerLaunch {
            instance_id: self.instance_id,
            spawn: self.spawn,
            first_seq: self.console.next_seq(),
            stop: config.spec.stop.clone(),
        };
        let spawned = match self.context.runner.spawn_server(&spec, &launch).await {
            Ok(spawned) => spawned,
            Err(e) => return failed(Cause::SpawnFailed, e.to_string(), false, None),
        };
        let pid = spawned.handle.pid();
        lock(&self.state).pid = Some(pid);
        self.record(pid, false);
        // How long preparing (config, install) and the spawn itself took: a spawn costs more
        // the more memory the worker has touched (fork copies its page tables), and waits for
        // a core when the machine is busy.
        tracing::info!(instance_id = self.instance_id.get(), pid, ?prepared_in, spawned_in = ?(began.elapsed() - prepared_in), "spawned");
        self.supervised(&config, spawned, false).await
    }

    /// Supervises a server a previous run of the worker left running, with its config as the
    /// host has it now (the host took the instance over for this registration when the worker
    /// registered). A host that does not confirm the instance is this worker's gets it killed.
    async fn take_up(&mut self, server: Box<dyn HeldServer>) -> AttemptEnd {
        let ready = self.status() == Status::Running;
        let pid = server.pid();
        // Its shim holds the console meanwhile (the server is never held up by it).
        let fetched = fetch_config(&self.context, self.instance_id, self.config_id).await;
        let resumed = match server.resume(self.console.next_seq()).await {
            Ok(resumed) => resumed,
            Err(e) => {
                return AttemptEnd::Failed(Failure {
                    cause: Cause::ShimLost,
                    detail: format!("its shim could not be taken up again: {e}"),
                    exit: None,
                    clean: false,
                    uptime: Duration::ZERO,
                    refused: false,
                    unrecoverable: None,
                });
            }
        };
        let recorded = self.config.clone().expect("taken up with its config");
        match fetched {
            Ok(bundle) => {
                self.config = Some(bundle.config.clone());
                tracing::info!(
                    instance_id = self.instance_id.get(),
                    pid,
                    "took up a server the last run of the worker left running"
                );
                self.supervised(&bundle.config, resumed, ready).await
            }
            Err(e) if e.is_transient() => {
                // The host is away: the server goes on under the config it was started with.
                tracing::warn!(instance_id = self.instance_id.get(), pid, error = %e, "took up a server the last run of the worker left running; the host could not confirm it yet, so it runs on under the config it was started with");
                self.supervised(&recorded, resumed, ready).await
            }
            Err(e) => {
                let SpawnedProcess { handle, mut output } = resumed;
                let _ = handle.signal(ProcessSignal::Kill);
                // Its last lines are logged while it goes (a full channel would hold up the
                // news of its exit).
                while let Some(line) = output.recv().await {
                    self.output(line);
                }
                let exit = handle.wait().await;
                self.unsettled = Some(handle);
                AttemptEnd::Ended(Final {
                    status: Status::Crashed,
                    cause: Cause::WorkerRestart,
                    detail: Some(format!(
                        "its server outlived a restart of the worker, but the host does not \
                         confirm it is this worker's: {e}; it was killed"
                    )),
                    exit: Some(exit),
                })
            }
        }
    }

    /// Records the server's process group (and, when the runner keeps servers across worker
    /// restarts, what the next run needs to take it up).
    fn record(&self, pid: u32, ready: bool) {
        let kept = self
            .context
            .runner
            .keeps_servers()
            .then(|| self.config.clone())
            .flatten()
            .map(|config| KeptServer {
                config_id: self.config_id,
                spawn: self.spawn,
                config: Box::new(config),
                restart_count: lock(&self.state).restart_count,
                ready,
            });
        if let Err(e) = self.context.records.record(self.instance_id, pid, kept) {
            tracing::error!(instance_id = self.instance_id.get(), pid, error = %e, "could not record the process group; a worker restart could not end it or take it up");
        }
    }

    /// Supervises a spawned server to its exit (`ready`: it is already `running`); an ended one
    /// is settled once what follows is reported ([`Self::settle`]).
    async fn supervised(
        &mut self,
        config: &GameServerConfig,
        server: SpawnedProcess,
        ready: bool,
    ) -> AttemptEnd {
        let end = self
            .supervise(config, &server.handle, server.output, ready)
            .await;
        if !matches!(end, AttemptEnd::LeftRunning) {
            self.unsettled = Some(server.handle);
        }
        end
    }

    fn queue_stdin(&mut self, line: String) -> Result<String, String> {
        if self.pending_stdin.len() >= STDIN_QUEUE {
            return Err(format!(
                "{} is not ready and already has {STDIN_QUEUE} lines waiting",
                self.instance_id
            ));
        }
        self.pending_stdin.push_back(line);
        Ok("queued until the server is ready".to_owned())
    }

    /// Numbers the stop line the stop sequence is about to write in the console, as an `in`
    /// line, like any line written to the server (a runner that numbers the console echoes it
    /// itself).
    fn echo_stop_line(&mut self, handle: &ProcessHandle, policy: &StopPolicy) {
        if let Some(line) = &policy.stdin_line
            && !handle.numbers_console()
        {
            self.console.line(ConsoleStream::Stdin, line.clone());
        }
    }

    fn write_stdin(&mut self, handle: &ProcessHandle, line: String) -> Result<String, String> {
        handle.write_line(&line).map_err(|e| e.to_string())?;
        if !handle.numbers_console() {
            self.console.line(ConsoleStream::Stdin, line);
        }
        Ok("written".to_owned())
    }

    async fn became_ready(&mut self, handle: &ProcessHandle) {
        self.transition(Status::Running, Cause::Ready, None, None)
            .await;
        if self.context.runner.keeps_servers() {
            self.record(handle.pid(), true);
        }
        while let Some(line) = self.pending_stdin.pop_front() {
            if let Err(e) = self.write_stdin(handle, line) {
                tracing::warn!(instance_id = self.instance_id.get(), error = %e, "a queued console line was not delivered");
            }
        }
    }

    fn output(&mut self, line: OutputLine) {
        let stream = match line.stream {
            OutputStream::Stdout => ConsoleStream::Stdout,
            OutputStream::Stderr => ConsoleStream::Stderr,
            OutputStream::Stdin => ConsoleStream::Stdin,
        };
        match line.numbered {
            Some((seq, at)) => self.console.numbered(seq, at, stream, line.text),
            None => self.console.line(stream, line.text),
        }
    }

    /// From spawn to exit: output, readiness, requests, and the stop sequence. `already_ready`:
    /// a server taken up again that was `running`.
    async fn supervise(
        &mut self,
        config: &GameServerConfig,
        handle: &ProcessHandle,
        mut output: mpsc::Receiver<OutputLine>,
        already_ready: bool,
    ) -> AttemptEnd {
        let spawned_at = Instant::now();
        let ready_pattern = config
            .spec
            .ready_pattern
            .as_deref()
            .and_then(|p| regex::Regex::new(p).ok());
        let mut ready = already_ready || ready_pattern.is_none();
        if ready && !already_ready {
            self.became_ready(handle).await;
        }
        let ready_timeout = (config.spec.ready_timeout_s > 0 && !ready)
            .then(|| Duration::from_secs(u64::from(config.spec.ready_timeout_s)));
        let ready_deadline = tokio::time::sleep(ready_timeout.unwrap_or(Duration::MAX / 4));
        tokio::pin!(ready_deadline);
        let exit = handle.wait();
        tokio::pin!(exit);
        let mut reason: Option<Ending> = None;
        let mut ending: Option<BoxFuture<'static, Stopped>> = None;
        let mut stopped: Option<Stopped> = None;
        let mut output_open = true;
        let mut killing_now = false;
        let status = loop {
            tokio::select! {
                status = &mut exit => break status,
                line = output.recv(), if output_open => match line {
                    Some(line) => {
                        let matched = !ready && ready_pattern.as_ref().is_some_and(|p| p.is_match(&line.text));
                        self.output(line);
                        if matched {
                            ready = true;
                            self.became_ready(handle).await;
                        }
                        if output.is_empty() {
                            self.console.flush();
                        }
                    }
                    None => output_open = false,
                },
                () = &mut ready_deadline, if !ready && reason.is_none() && ready_timeout.is_some() => {
                    tracing::warn!(instance_id = self.instance_id.get(), "not ready in time: killing it");
                    reason = Some(Ending::ReadyTimeout);
                    ending = Some(Box::pin(kill_future(handle.clone())));
                }
                () = self.context.kill_now.cancelled(), if !killing_now => {
                    killing_now = true;
                    reason = Some(Ending::Shutdown);
                    ending = Some(Box::pin(kill_future(handle.clone())));
                }
                request = self.requests.recv(), if self.requests_open => match request {
                    Some(Request::Stdin { line, reply }) => {
                        let answer = if ready { self.write_stdin(handle, line) } else { self.queue_stdin(line) };
                        let _ = reply.send(answer);
                    }
                    Some(Request::Stop { reply }) => {
                        if reason.is_none() {
                            reason = Some(Ending::Stop);
                            self.echo_stop_line(handle, &config.spec.stop);
                            ending = Some(Box::pin(stop_future(handle.clone(), config.spec.stop.clone())));
                        }
                        let _ = reply.send(Ok("stopping".to_owned()));
                    }
                    Some(Request::Kill { reply }) => {
                        // Kill wins over a stop in progress.
                        if reason != Some(Ending::Kill) {
                            reason = Some(Ending::Kill);
                            ending = Some(Box::pin(kill_future(handle.clone())));
                        }
                        let _ = reply.send(Ok("killing".to_owned()));
                    }
                    Some(Request::Restart { reply }) => {
                        let answer = if reason.is_none() {
                            reason = Some(Ending::Restart);
                            self.echo_stop_line(handle, &config.spec.stop);
                            ending = Some(Box::pin(stop_future(handle.clone(), config.spec.stop.clone())));
                            Ok("restarting".to_owned())
                        } else {
                            Err("it is already ending: start its config again once it has".to_owned())
                        };
                        let _ = reply.send(answer);
                    }
                    None if self.context.leave_running.load(std::sync::atomic::Ordering::Relaxed) && self.context.runner.keeps_servers() && reason.is_none() => {
                        // The worker is shutting down and leaves its servers to its next run.
                        self.console.flush();
                        return AttemptEnd::LeftRunning;
                    }
                    None => {
                        // The worker is shutting down: stop gracefully, within the stop policy.
                        self.requests_open = false;
                        if reason.is_none() {
                            reason = Some(Ending::Shutdown);
                            self.echo_stop_line(handle, &config.spec.stop);
                            ending = Some(Box::pin(stop_future(handle.clone(), config.spec.stop.clone())));
                        }
                    }
                },
                done = async { ending.as_mut().expect("guarded by is_some").await }, if ending.is_some() => {
                    // The stop sequence is done; the exit branch reports it.
                    stopped = Some(done);
                    ending = None;
                }
            }
        };
        // The exit may win the race with the stop sequence that caused it: let the sequence
        // finish (the process is gone, so it does at once), for the step that ended it.
        if let Some(rest) = ending.take()
            && let Ok(done) = tokio::time::timeout(STOP_SEQUENCE_SETTLE, rest).await
        {
            stopped = Some(done);
        }
        self.drain(&mut output).await;
        self.console.flush();
        if reason.is_none()
            && let Some(lost) = handle.lost()
        {
            return AttemptEnd::Failed(Failure {
                cause: Cause::ShimLost,
                detail: lost.to_owned(),
                exit: None,
                clean: false,
                uptime: spawned_at.elapsed(),
                refused: false,
                unrecoverable: None,
            });
        }
        let detail = match reason {
            Some(Ending::Stop | Ending::Shutdown | Ending::Restart) => {
                stop_detail(&config.spec.stop, stopped.map(|s| s.step), status)
            }
            _ => format!("exited with {status}"),
        };
        match reason {
            Some(Ending::Stop) => {
                AttemptEnd::Ended(Final::complete(Cause::User, detail, Some(status)))
            }
            Some(Ending::Kill) => {
                AttemptEnd::Ended(Final::complete(Cause::Killed, detail, Some(status)))
            }
            Some(Ending::Shutdown) => {
                AttemptEnd::Ended(Final::complete(Cause::WorkerShutdown, detail, Some(status)))
            }
            Some(Ending::Restart) => AttemptEnd::Restart {
                detail,
                exit: Some(status),
            },
            Some(Ending::ReadyTimeout) => AttemptEnd::Failed(Failure {
                cause: Cause::ReadyTimeout,
                detail: format!(
                    "not ready within {} s (no line matched the ready pattern); killed",
                    config.spec.ready_timeout_s
                ),
                exit: Some(status),
                clean: false,
                uptime: spawned_at.elapsed(),
                refused: false,
                unrecoverable: None,
            }),
            None => AttemptEnd::Failed(Failure {
                cause: Cause::Exited,
                detail,
                exit: Some(status),
                clean: status.success(),
                uptime: spawned_at.elapsed(),
                refused: false,
                unrecoverable: None,
            }),
        }
    }

    /// Reads what the process printed before it exited.
    async fn drain(&mut self, output: &mut mpsc::Receiver<OutputLine>) {
        let deadline = Instant::now() + OUTPUT_DRAIN;
        while let Ok(Some(line)) = tokio::time::timeout_at(deadline, output.recv()).await {
            self.output(line);
        }
    }
}

fn lock(state: &Mutex<InstanceState>) -> MutexGuard<'_, InstanceState> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long the stop sequence may take to settle once the process has exited.
const STOP_SEQUENCE_SETTLE: Duration = Duration::from_secs(1);

/// How a graceful stop went, for a person: which step ended the server, and what it ignored on
/// the way.
fn stop_detail(policy: &StopPolicy, step: Option<StopStep>, status: ExitStatus) -> String {
    let signal = match policy.signal {
        crate::config::StopSignal::Term => "SIGTERM",
        crate::config::StopSignal::Int => "SIGINT",
    };
    let line = policy.stdin_line.as_deref();
    match (step, line) {
        (Some(StopStep::Kill), Some(line)) => format!(
            "exited with {status}: stop escalated — it ignored the stop line {line:?} for {} s \
             and {signal} for {} s, and was killed",
            policy.timeout_s, policy.signal_grace_s
        ),
        (Some(StopStep::Kill), None) => format!(
            "exited with {status}: stop escalated — it ignored {signal} for {} s, and was killed",
            policy.signal_grace_s
        ),
        (Some(StopStep::Signal), Some(line)) => format!(
            "exited with {status} on {signal}: it ignored the stop line {line:?} for {} s",
            policy.timeout_s
        ),
        _ => format!("exited with {status}"),
    }
}

async fn stop_future(handle: ProcessHandle, policy: StopPolicy) -> Stopped {
    process::stop(&handle, &policy).await
}

async fn kill_future(handle: ProcessHandle) -> Stopped {
    process::kill(&handle).await
}

/// Why an attempt could not spawn: the config (when it was fetched, so its crash policy
/// applies), the cause, a detail for the operator, and whether it was refused (never retried).
#[derive(Debug)]
struct PrepareError {
    config: Option<GameServerConfig>,
    cause: Cause,
    detail: String,
    refused: bool,
    /// The installer's class of an install failure no new attempt can fix.
    unrecoverable: Option<String>,
}

impl PrepareError {
    fn failed(config: Option<GameServerConfig>, cause: Cause, detail: String) -> Self {
        Self {
            config,
            cause,
            detail,
            refused: false,
            unrecoverable: None,
        }
    }

    fn refused(config: Option<GameServerConfig>, detail: &str) -> Self {
        Self {
            config,
            cause: Cause::Refused,
            detail: format!("refused: {detail}"),
            refused: true,
            unrecoverable: None,
        }
    }
}

/// How long a start keeps asking for its config while the host is unavailable (a host restart,
/// its database reconnecting) before the attempt fails.
const FETCH_PATIENCE: Duration = Duration::from_secs(60);

/// The config from the host; an unavailable host is asked again (200 ms, doubling up to 5 s)
/// for up to [`FETCH_PATIENCE`]. (A stop or kill meanwhile ends the wait: `prepare` runs beside
/// the supervisor's requests.)
async fn fetch_config(
    context: &SupervisorContext,
    instance_id: InstanceId,
    config_id: ConfigId,
) -> Result<ConfigBundle, HostApiError> {
    let deadline = tokio::time::Instant::now() + FETCH_PATIENCE;
    let mut pause = Duration::from_millis(200);
    loop {
        match context
            .host
            .fetch_instance_config(context.worker_id, instance_id)
            .await
        {
            Err(e) if e.is_transient() && tokio::time::Instant::now() + pause < deadline => {
                tracing::warn!(instance_id = instance_id.get(), %config_id, error = %e, retry_in = ?pause, "the host is unavailable; asking for the config again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            outcome => return outcome,
        }
    }
}

/// Takes the game and config the start command carried (`carried`) or else fetches them,
/// checks them again (the worker trusts nothing), installs the game, hands its directory to
/// the servers' user and builds the process to spawn, confined to the game's directory.
///
/// A carried bundle came in a command the host sealed for this worker's current registration
/// (the command loop refuses any other), so the host vouched for it as it does for a fetched
/// one; the checks below are the same for both.
async fn prepare(
    context: SupervisorContext,
    instance_id: InstanceId,
    config_id: ConfigId,
    carried: Option<ConfigBundle>,
) -> Result<(GameServerConfig, ProcessSpec), PrepareError> {
    let fetched = match carried {
        Some(bundle) => Ok(bundle),
        None => fetch_config(&context, instance_id, config_id).await,
    };
    let bundle = match fetched {
        Ok(bundle) => bundle,
        // The host says it is not this worker's to start: never retried.
        Err(
            e @ (HostApiError::NotFound { .. }
            | HostApiError::Invalid { .. }
            | HostApiError::Unauthorized { .. }),
        ) => {
            return Err(PrepareError::refused(
                None,
                &format!("the host does not confirm {instance_id} is this worker's to start: {e}"),
            ));
        }
        Err(e) => {
            return Err(PrepareError::failed(
                None,
                Cause::InstallFailed,
                format!("could not fetch the config of {instance_id}: {e}"),
            ));
        }
    };
    if bundle.config.id != config_id {
        let detail = format!(
            "the start command names {config_id}, but the host sent {} for {instance_id}",
            bundle.config.id
        );
        return Err(PrepareError::refused(Some(bundle.config), &detail));
    }
    let ConfigBundle { game, config } = bundle;
    let game_rules = NewGameServer {
        name: game.name.clone(),
        server_type: game.server_type.clone(),
    }
    .validate();
    if let Err(e) = game_rules.and_then(|()| config.spec.validate()) {
        return Err(PrepareError::refused(
            Some(config),
            &format!("the host sent a game or config that breaks the rules: {e}"),
        ));
    }
    let request = InstallRequest {
        game,
        config,
        install_root: context.install_root.clone(),
        run_as: context.run_as.clone(),
    };
    let (progress, publishing) = ProgressPublisher::start(instance_id, context.reporter.clone());
    let installed = context.installer.install(&request, &progress).await;
    drop(progress);
    if tokio::time::timeout(LIVE_CONSOLE_GRACE, publishing)
        .await
        .is_err()
    {
        tracing::debug!(
            instance_id = instance_id.get(),
            "install progress still unsent was dropped"
        );
    }
    let config = request.config;
    let installation = match installed {
        Ok(installation) => installation,
        Err(e @ InstallError::Refused { .. }) => {
            return Err(PrepareError::refused(Some(config), &e.to_string()));
        }
        Err(InstallError::Unrecoverable {
            game,
            class,
            detail,
        }) => {
            // The same words as the error's own Display.
            return Err(PrepareError {
                config: Some(config),
                cause: Cause::InstallFailed,
                detail: format!("{game}: install failed: {detail}"),
                refused: false,
                unrecoverable: Some(class),
            });
        }
        Err(e) => {
            return Err(PrepareError::failed(
                Some(config),
                Cause::InstallFailed,
                e.to_string(),
            ));
        }
    };
    let game_dir = match ConfinedPath::root(&context.directories.install)
        .and_then(|root| root.contain(&installation.dir, "the game's directory"))
    {
        Ok(dir) => dir,
        Err(e) => return Err(PrepareError::refused(Some(config), &e.to_string())),
    };
    if let Err(e) = context.directories.check_game_dir(game_dir.as_path()) {
        return Err(PrepareError::refused(Some(config), &e));
    }
    if let Some(user) = &context.run_as {
        let (dir, user) = (game_dir.as_path().to_path_buf(), user.clone());
        let handed = tokio::task::spawn_blocking(move || hand_over(&dir, &user))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = handed {
            return Err(PrepareError::failed(
                Some(config),
                Cause::SpawnFailed,
                format!(
                    "could not hand the game's directory {game_dir} over to the servers' user: {e}"
                ),
            ));
        }
    }
    match process_spec(
        &config,
        &game_dir,
        &context.server_env,
        context.run_as.as_ref(),
    ) {
        Ok(spec) => Ok((config, spec)),
        Err(e) => Err(PrepareError::refused(Some(config), &e.to_string())),
    }
}

#[cfg(all(test, feature = "memory"))]
#[path = "supervisor_tests.rs"]
mod tests;
