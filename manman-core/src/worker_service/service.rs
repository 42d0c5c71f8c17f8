//! [`WorkerService`]: registration, heartbeat, the command loop and shutdown.

use crate::bus::Bus;
use crate::command::{Command, CommandEnvelope, CommandOutcome};
use crate::event::StatusReport;
use crate::id::{InstanceId, WorkerId};
use crate::ports::{
    BusError, Clock, Delivery, GameInstaller, HostApi, HostApiError, ProcessRunner, ProcessUser,
};
use crate::signing::{Purpose, WorkerKey};
use crate::status::{Cause, Entity, Status};
use crate::worker::{Heartbeat, InventoryItem, Registered, WorkerRegistration};
use crate::worker_service::console_log::LogRotation;
use crate::worker_service::console_tail::send_tail;
use crate::worker_service::dedup::RecentIds;
use crate::worker_service::directories;
use crate::worker_service::launch::ServerEnvironment;
use crate::worker_service::leftovers::{TakenUp, take_up_or_end};
use crate::worker_service::log_retention::{LogRetention, run_log_retention};
use crate::worker_service::process_records::ProcessRecords;
use crate::worker_service::recent_ends::RecentEnds;
use crate::worker_service::reporter::Reporter;
use crate::worker_service::server_user::{running_as_root, server_user};
use crate::worker_service::supervisor::{InstanceState, Request, Supervisor, SupervisorContext};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// How a worker is set up.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Unique, stable name.
    pub name: String,
    /// Software version it reports.
    pub version: String,
    /// Most instances at once.
    pub capacity: u32,
    /// Placement labels.
    pub labels: BTreeMap<String, String>,
    /// Where games are installed (`local` game paths are relative to it).
    pub install_dir: PathBuf,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// Commands taken from the queue before earlier ones are settled.
    pub command_prefetch: u16,
    /// Longest wait for the instances to stop at shutdown.
    pub shutdown_timeout: Duration,
    /// Where the worker keeps its own files: console logs (`logs/`) and the process groups of
    /// its servers (`processes/`, for ending them after a crash of the worker).
    pub state_dir: PathBuf,
    /// Size cap and rotation of console logs.
    pub log_rotation: LogRotation,
    /// Live console lines buffered per instance before lines are dropped from the live stream.
    pub live_console_buffer: usize,

    /// The user game servers (and SteamCMD) run as. Required when the worker runs as root —
    /// game servers never run as root; `new` sets `nobody` then — and `None` otherwise (servers
    /// run as the worker's own user).
    pub run_as: Option<ProcessUser>,
    /// Variables of the worker's environment that configs may read with `$VAR`
    /// (`MANMAN_WORKER_PASS_ENV`); ManMan's own `MANMAN_…` settings are refused.
    pub pass_env: Vec<String>,
    /// How long the console logs of ended instances are kept (after they were last written)
    /// before the worker deletes them, and how often it looks.
    pub log_retention: LogRetention,
    /// What becomes of the game servers when the worker shuts down.
    pub on_shutdown: OnShutdown,
}

/// What becomes of the game servers when the worker shuts down (`MANMAN_WORKER_ON_SHUTDOWN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnShutdown {
    /// Each is stopped by its stop policy and reported ended: for a machine that goes away.
    #[default]
    StopServers,
    /// They run on, held by their shims, for the worker's next run to take up: for an upgrade
    /// or a restart of the worker. Needs a runner that keeps servers across worker restarts.
    LeaveRunning,
}

impl WorkerSettings {
    /// Defaults for everything but the name and install dir: capacity 16, heartbeat 2 s.
    ///
    /// The state dir is `<install_dir>/.manman`; console logs are capped at 10 MiB with 5
    /// rotated files, and deleted 14 days after their instance's log was last written once the
    /// instance has ended. Game servers run as `nobody` when this process runs as root.
    pub fn new(name: impl Into<String>, install_dir: impl Into<PathBuf>) -> Self {
        let install_dir = install_dir.into();
        Self {
            name: name.into(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            capacity: 16,
            labels: BTreeMap::new(),
            state_dir: install_dir.join(".manman"),
            install_dir,
            heartbeat_interval: Duration::from_secs(2),
            command_prefetch: 16,
            shutdown_timeout: Duration::from_secs(90),
            log_rotation: LogRotation::default(),
            live_console_buffer: 1_024,
            run_as: server_user(None).ok().flatten(),
            pass_env: Vec::new(),
            log_retention: LogRetention::default(),
            on_shutdown: OnShutdown::default(),
        }
    }
}

/// Why a worker stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerExit {
    /// Asked to (signal or `ShutdownWorker`); its instances were stopped.
    Shutdown,
    /// A newer registration of the same name exists; its instances were stopped.
    Superseded,
}

/// Why a worker could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Its settings or directories are not safe to run game servers with.
    #[error("worker {name:?} cannot start: {detail}")]
    Setup {
        /// The worker's name.
        name: String,
        /// What is wrong and what to do.
        detail: String,
    },
    /// The host refused the registration.
    #[error("the host refused worker {name:?}: {source}")]
    Registration {
        /// The worker's name.
        name: String,
        /// Why.
        #[source]
        source: HostApiError,
    },
    /// The command queue could not be set up, or the bus was closed. (A command queue that is
    /// deleted while the worker runs is declared and consumed again, not an error.)
    #[error("worker {worker_id}: the message bus failed: {source}")]
    Bus {
        /// The worker.
        worker_id: WorkerId,
        /// Why.
        #[source]
        source: BusError,
    },
}

/// First pause before subscribing to the command queue again after it was lost; it doubles up
/// to [`RESUBSCRIBE_MAX_PAUSE`].
const RESUBSCRIBE_FIRST_PAUSE: Duration = Duration::from_millis(100);
/// Longest pause between attempts to subscribe to the command queue again.
const RESUBSCRIBE_MAX_PAUSE: Duration = Duration::from_secs(5);

/// What became of an attempt to consume the command queue again.
enum Resubscribed {
    /// Consuming again.
    Consumer(Box<dyn crate::ports::Consumer>),
    /// Shut down or superseded meanwhile.
    Ended(WorkerExit),
    /// The bus was closed (by this process): there is nothing to consume from.
    Closed,
}

/// A supervisor as the worker's command loop sees it.
#[derive(Debug)]
struct Supervised {
    requests: mpsc::Sender<Request>,
    state: Arc<Mutex<InstanceState>>,
}

type Supervisors = Arc<Mutex<HashMap<InstanceId, Supervised>>>;

/// The worker: registers, heartbeats, takes commands, supervises instances.
#[derive(Debug)]
pub struct WorkerService {
    settings: WorkerSettings,
    host: Arc<dyn HostApi>,
    bus: Bus,
    installer: Arc<dyn GameInstaller>,
    runner: Arc<dyn ProcessRunner>,
    clock: Arc<dyn Clock>,
    kill_now: CancellationToken,
}

impl WorkerService {
    /// A worker with its ports.
    pub fn new(
        settings: WorkerSettings,
        host: Arc<dyn HostApi>,
        bus: Bus,
        installer: Arc<dyn GameInstaller>,
        runner: Arc<dyn ProcessRunner>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            settings,
            host,
            bus,
            installer,
            runner,
            clock,
            kill_now: CancellationToken::new(),
        }
    }

    /// A token that, when cancelled, SIGKILLs every server at once instead of stopping them
    /// gracefully (a second Ctrl-C). The worker still reports each one and exits.
    pub fn kill_switch(&self) -> CancellationToken {
        self.kill_now.clone()
    }

    /// Runs until `shutdown` is cancelled, a `ShutdownWorker` command arrives, or the worker is
    /// superseded. Every instance is stopped before it returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<WorkerExit, WorkerError> {
        let setup = |detail: String| WorkerError::Setup {
            name: self.settings.name.clone(),
            detail,
        };
        if running_as_root() && self.settings.run_as.is_none() {
            return Err(setup(
                "it runs as root, and game servers never do: name an unprivileged user for them \
                 (MANMAN_WORKER_RUN_AS, default nobody)"
                    .to_owned(),
            ));
        }
        let server_env =
            ServerEnvironment::of_this_process(&self.settings.pass_env).map_err(setup)?;
        let directories = directories::prepare(
            &self.settings.install_dir,
            &self.settings.state_dir,
            self.settings.run_as.as_ref(),
        )
        .map_err(setup)?;
        if let Some(user) = &self.settings.run_as {
            tracing::info!(user = %user, "game servers run as an unprivileged user");
        }
        let leave_running = self.settings.on_shutdown == OnShutdown::LeaveRunning;
        if leave_running && !self.runner.keeps_servers() {
            return Err(setup(
                "MANMAN_WORKER_ON_SHUTDOWN=leave-running needs game servers that outlive the \
                 worker: run them through shims (MANMAN_WORKER_SHIM), or stop them on shutdown"
                    .to_owned(),
            ));
        }
        let records = ProcessRecords::new(&self.settings.state_dir);
        let seen = RecentIds::persisted(
            &self.settings.state_dir.join(HANDLED_COMMANDS_FILE),
            HANDLED_COMMANDS_REMEMBERED,
        )
        .map_err(setup)?;
        // The servers the last run left are attended at once (their shims hold their consoles
        // and no longer count the grace time, however long the host takes to register this
        // run), named when registering (the host makes them this registration's), and
        // supervised once it has.
        let log_dir = self.settings.state_dir.join("logs");
        let (taken_up, ended) = take_up_or_end(&records, self.runner.as_ref(), &log_dir).await;
        let kept: Vec<InstanceId> = taken_up.iter().map(|t| t.instance_id).collect();
        let Some(registered) = self.register(&shutdown, kept).await? else {
            return Ok(WorkerExit::Shutdown);
        };
        let worker_id = registered.worker_id;
        let bus_error = |source| WorkerError::Bus { worker_id, source };
        // The host declared the shared topology before it answered the registration; the
        // worker declares only its own command queue, so a broker user with rights on that
        // queue alone is enough (docs/security.md).
        let mut commands = self
            .bus
            .consume_commands(worker_id, self.settings.command_prefetch)
            .await
            .map_err(bus_error)?;
        let reporter = Reporter::new(
            self.bus.clone(),
            Arc::clone(&self.clock),
            registered.worker_key(),
        );
        let left_over: Vec<InstanceId> = ended.iter().map(|e| e.instance_id).collect();
        for end in ended {
            reporter.status(end.report(self.clock.now())).await;
            // Reported: what was kept of it can go.
            if let Some(spawn) = end.kept_spawn {
                records.remove(end.instance_id);
                self.runner.forget(end.instance_id, spawn).await;
            }
        }
        reporter
            .status(StatusReport::new(
                Entity::Worker(worker_id),
                Status::Running,
                Cause::Ready,
                self.clock.now(),
            ))
            .await;
        tracing::info!(worker_id = worker_id.get(), epoch = registered.epoch, name = %self.settings.name, "worker running");

        let supervisors: Supervisors = Arc::default();
        let ends = RecentEnds::default();
        let tracker = TaskTracker::new();
        let stop = shutdown.child_token();
        let superseded = CancellationToken::new();
        tracker.spawn(heartbeat_loop(
            Arc::clone(&self.host),
            registered.clone(),
            (
                Arc::clone(&supervisors),
                ends.clone(),
                Arc::clone(&self.clock),
            ),
            self.settings.heartbeat_interval,
            stop.clone(),
            superseded.clone(),
        ));
        // The consoles of the instances the last run left: their tails go to the host too.
        tracker.spawn({
            let host = Arc::clone(&self.host);
            let log_dir = self.settings.state_dir.join("logs");
            let stopping = stop.clone();
            async move {
                for instance in left_over {
                    send_tail(
                        Arc::clone(&host),
                        worker_id,
                        instance,
                        log_dir.clone(),
                        stopping.clone(),
                    )
                    .await;
                }
            }
        });
        tracker.spawn(run_log_retention(
            self.settings.state_dir.join("logs"),
            self.settings.log_retention,
            {
                let supervisors = Arc::clone(&supervisors);
                move || lock(&supervisors).keys().copied().collect()
            },
            stop.clone(),
        ));

        let context = SupervisorContext {
            worker_id,
            host: Arc::clone(&self.host),
            installer: Arc::clone(&self.installer),
            runner: Arc::clone(&self.runner),
            reporter: reporter.clone(),
            install_root: self.settings.install_dir.clone(),
            log_dir: self.settings.state_dir.join("logs"),
            log_rotation: self.settings.log_rotation,
            live_console_buffer: self.settings.live_console_buffer,
            records,
            kill_now: self.kill_now.clone(),
            run_as: self.settings.run_as.clone(),
            server_env,
            directories,
            ends,
            stopping: stop.clone(),
            leave_running: Arc::new(std::sync::atomic::AtomicBool::new(leave_running)),
        };
        let leaving_running = Arc::clone(&context.leave_running);
        for server in taken_up {
            take_up(server, &context, &supervisors, &tracker);
        }
        let mut loop_state = CommandLoop {
            worker_id,
            key: registered.worker_key(),
            capacity: self.settings.capacity,
            supervisors: Arc::clone(&supervisors),
            tracker: tracker.clone(),
            context,
            reporter: reporter.clone(),
            clock: Arc::clone(&self.clock),
            seen,
            shutdown_requested: false,
        };
        let exit = loop {
            let next = tokio::select! {
                () = stop.cancelled() => break WorkerExit::Shutdown,
                () = superseded.cancelled() => break WorkerExit::Superseded,
                next = commands.next() => next,
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(e)) => {
                    tracing::warn!(worker_id = worker_id.get(), error = %e, "receiving commands failed; retrying in 1 s");
                    tokio::select! {
                        () = stop.cancelled() => break WorkerExit::Shutdown,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
                // The queue is gone (deleted) or the broker cancelled the consumer: a bus fault,
                // never a reason to stop the game servers. Declare, bind and consume it again.
                None => match self.resubscribe(worker_id, &stop, &superseded).await {
                    Resubscribed::Consumer(again) => {
                        commands = again;
                        continue;
                    }
                    Resubscribed::Ended(exit) => break exit,
                    Resubscribed::Closed => {
                        leaving_running.store(false, std::sync::atomic::Ordering::Relaxed);
                        stop.cancel();
                        self.shut_down(
                            worker_id,
                            &supervisors,
                            &tracker,
                            &reporter,
                            WorkerExit::Shutdown,
                        )
                        .await;
                        return Err(bus_error(BusError::Closed));
                    }
                },
            };
            loop_state.handle(delivery).await;
            if loop_state.shutdown_requested {
                break WorkerExit::Shutdown;
            }
        };
        drop(commands);
        if exit == WorkerExit::Superseded {
            // A newer registration of this name runs elsewhere: nobody will take these up.
            leaving_running.store(false, std::sync::atomic::Ordering::Relaxed);
        }
        stop.cancel();
        self.shut_down(worker_id, &supervisors, &tracker, &reporter, exit)
            .await;
        Ok(exit)
    }

    /// Subscribes to the worker's command queue again after it was lost, declaring and binding
    /// it first, pausing between attempts (100 ms doubling to 5 s) for as long as it takes.
    /// The game servers run on meanwhile; the heartbeat goes on, so the host keeps the worker.
    async fn resubscribe(
        &self,
        worker_id: WorkerId,
        stop: &CancellationToken,
        superseded: &CancellationToken,
    ) -> Resubscribed {
        let queue = self.bus.topology().worker_commands_queue(worker_id);
        tracing::warn!(worker_id = worker_id.get(), %queue, "the command queue is gone (deleted?) or its consumer was cancelled: declaring, binding and consuming it again; the game servers run on");
        let mut pause = RESUBSCRIBE_FIRST_PAUSE;
        loop {
            tokio::select! {
                () = stop.cancelled() => return Resubscribed::Ended(WorkerExit::Shutdown),
                () = superseded.cancelled() => return Resubscribed::Ended(WorkerExit::Superseded),
                () = tokio::time::sleep(pause) => {}
            }
            let attempt = tokio::select! {
                () = stop.cancelled() => return Resubscribed::Ended(WorkerExit::Shutdown),
                () = superseded.cancelled() => return Resubscribed::Ended(WorkerExit::Superseded),
                attempt = self.bus.consume_commands(worker_id, self.settings.command_prefetch) => attempt,
            };
            match attempt {
                Ok(consumer) => {
                    tracing::info!(worker_id = worker_id.get(), %queue, "consuming commands again");
                    return Resubscribed::Consumer(consumer);
                }
                Err(BusError::Closed) => return Resubscribed::Closed,
                Err(e) => {
                    tracing::warn!(worker_id = worker_id.get(), %queue, error = %e, retry_in = ?pause, "cannot consume the command queue yet; trying again");
                }
            }
            pause = (pause * 2).min(RESUBSCRIBE_MAX_PAUSE);
        }
    }

    /// Registers, retrying while the host is unavailable. `None` when shut down first.
    ///
    /// `taken_up`: the instances the last run left running that this one takes up (the host
    /// makes them this registration's).
    async fn register(
        &self,
        shutdown: &CancellationToken,
        taken_up: Vec<InstanceId>,
    ) -> Result<Option<Registered>, WorkerError> {
        let registration = WorkerRegistration {
            name: self.settings.name.clone(),
            version: self.settings.version.clone(),
            capacity: self.settings.capacity,
            labels: self.settings.labels.clone(),
            taken_up,
        };
        let mut pause = Duration::from_millis(200);
        loop {
            match self.host.register(&registration).await {
                Ok(registered) => return Ok(Some(registered)),
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, retry_in = ?pause, "could not register with the host; retrying");
                }
                Err(source) => {
                    return Err(WorkerError::Registration {
                        name: self.settings.name.clone(),
                        source,
                    });
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(None),
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    }

    /// Stops every instance in parallel, waits (bounded), reports the worker `complete`.
    async fn shut_down(
        &self,
        worker_id: WorkerId,
        supervisors: &Supervisors,
        tracker: &TaskTracker,
        reporter: &Reporter,
        exit: WorkerExit,
    ) {
        let count = {
            let mut supervisors = lock(supervisors);
            let count = supervisors.len();
            // Dropping the request senders tells each supervisor to stop gracefully.
            supervisors.clear();
            count
        };
        tracing::info!(
            worker_id = worker_id.get(),
            instances = count,
            "worker shutting down"
        );
        tracker.close();
        if tokio::time::timeout(self.settings.shutdown_timeout, tracker.wait())
            .await
            .is_err()
        {
            tracing::error!(worker_id = worker_id.get(), timeout = ?self.settings.shutdown_timeout, "instances did not stop within the shutdown timeout: killing them");
            self.kill_now.cancel();
            if tokio::time::timeout(KILL_WAIT, tracker.wait())
                .await
                .is_err()
            {
                tracing::error!(
                    worker_id = worker_id.get(),
                    "instances still not ended after SIGKILL"
                );
            }
        }
        // A superseded worker says nothing about the worker: the status is the newer
        // registration's now. One that leaves its servers running will be back: meanwhile the
        // host sees its lease run out, as for a worker it cannot reach.
        if exit == WorkerExit::Shutdown && self.settings.on_shutdown == OnShutdown::StopServers {
            reporter
                .status(StatusReport::new(
                    Entity::Worker(worker_id),
                    Status::Complete,
                    Cause::WorkerShutdown,
                    self.clock.now(),
                ))
                .await;
        }
    }
}

/// The supervisors map, without the supervisors whose instance has ended.
fn lock(supervisors: &Supervisors) -> MutexGuard<'_, HashMap<InstanceId, Supervised>> {
    let mut map = supervisors
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // A supervisor closes its request channel when its instance ends.
    map.retain(|_, s| !s.requests.is_closed());
    map
}

/// The state of the command loop.
struct CommandLoop {
    worker_id: WorkerId,
    /// This registration's key: a command not sealed with it is not from the host, or not for
    /// this registration.
    key: WorkerKey,
    capacity: u32,
    supervisors: Supervisors,
    tracker: TaskTracker,
    context: SupervisorContext,
    reporter: Reporter,
    clock: Arc<dyn Clock>,
    seen: RecentIds,
    shutdown_requested: bool,
}

impl CommandLoop {
    /// Handles one delivery and settles it. Nothing here can take the worker down.
    async fn handle(&mut self, delivery: Delivery) {
        if let Err(e) = self.key.check(Purpose::Command, &delivery.message) {
            tracing::warn!(worker_id = self.worker_id.get(), epoch = self.key.epoch(), message_id = %delivery.message.id, kind = %delivery.message.kind, error = %e, "dead-lettering a command not sealed by the host for this worker registration");
            if let Err(e) = delivery.dead_letter().await {
                tracing::warn!(error = %e, "could not dead-letter a command");
            }
            return;
        }
        let envelope: CommandEnvelope = match delivery.message.decode() {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::warn!(worker_id = self.worker_id.get(), message_id = %delivery.message.id, error = %e, "dead-lettering a malformed command");
                if let Err(e) = delivery.dead_letter().await {
                    tracing::warn!(error = %e, "could not dead-letter a command");
                }
                return;
            }
        };
        // Every log line of the command carries the request it came from.
        let span = tracing::info_span!(
            "command",
            command_id = %envelope.id,
            command = envelope.command.name(),
            correlation_id = envelope.correlation_id.as_deref().unwrap_or("-"),
        );
        self.handle_envelope(envelope, delivery)
            .instrument(span)
            .await;
    }

    /// Runs a decoded command (at most once, unless it expired); its delivery is settled once
    /// its outcome is known.
    ///
    /// What must happen in the order of delivery happens here, in the loop: the duplicate check,
    /// a start's registration, a request's place in its supervisor's queue — so the commands of
    /// one instance act in the order they came. Waiting for the outcome (a supervisor's answer),
    /// publishing the result and acknowledging happen in a task of their own, so one instance's
    /// slow answer or one result's publish confirm never holds up the next command: at most
    /// `command_prefetch` are in flight, the deliveries the broker lets the worker hold.
    async fn handle_envelope(&mut self, envelope: CommandEnvelope, delivery: Delivery) {
        if !self.seen.insert(envelope.id) {
            tracing::info!(command_id = %envelope.id, "ignoring a command handled before");
            let _ = delivery.ack().await;
            return;
        }
        let pending = if envelope.is_expired(self.clock.now()) {
            let detail = format!(
                "expired at {} before the worker took it",
                envelope.expires_at
            );
            tracing::warn!(command_id = %envelope.id, command = envelope.command.name(), %detail, "command expired");
            if let Command::Start { instance_id, .. } = envelope.command {
                self.refuse_start(instance_id, &detail).await;
            }
            Pending::Expired(detail)
        } else {
            Pending::Dispatched(self.dispatch(&envelope.command).await)
        };
        let settle = settle(
            self.reporter.clone(),
            self.worker_id,
            &envelope,
            pending,
            delivery,
        )
        .instrument(tracing::Span::current());
        if self.shutdown_requested {
            // Answered and acknowledged before the worker stops taking commands.
            settle.await;
        } else {
            self.tracker.spawn(settle);
        }
    }

    /// A start this worker will not carry out: its instance is `crashed` (cause `refused`)
    /// rather than left `created`.
    async fn refuse_start(&self, instance_id: InstanceId, reason: &str) {
        let report = StatusReport::new(
            Entity::Instance(instance_id),
            Status::Crashed,
            Cause::Refused,
            self.clock.now(),
        )
        .with_detail(format!("the worker refused to start it: {reason}"));
        self.reporter.status(report).await;
    }

    async fn dispatch(&mut self, command: &Command) -> Dispatched {
        match command {
            Command::Start {
                instance_id,
                config_id,
                bundle,
            } => Dispatched::Now(
                match self.start(*instance_id, *config_id, bundle.as_deref()) {
                    Ok(detail) => Ok(detail),
                    Err(Refusal::AlreadyRunning(reason)) => Err(reason),
                    Err(Refusal::Refused(reason)) => {
                        self.refuse_start(*instance_id, &reason).await;
                        Err(reason)
                    }
                },
            ),
            Command::Stop { instance_id } => {
                self.ask(*instance_id, |reply| Request::Stop { reply })
                    .await
            }
            Command::Kill { instance_id } => {
                self.ask(*instance_id, |reply| Request::Kill { reply })
                    .await
            }
            Command::Stdin { instance_id, line } => {
                // The host checked it too; the worker trusts nothing it is sent.
                if let Err(refused) = crate::command::check_stdin_line(line) {
                    return Dispatched::Now(Err(format!("refused: the stdin line {refused}")));
                }
                let line = line.clone();
                self.ask(*instance_id, |reply| Request::Stdin { line, reply })
                    .await
            }
            Command::Restart { instance_id } => {
                self.ask(*instance_id, |reply| Request::Restart { reply })
                    .await
            }
            Command::ShutdownWorker => {
                self.shutdown_requested = true;
                Dispatched::Now(Ok("shutting down".to_owned()))
            }
            Command::SendConsoleTail { instance_id } => {
                if !lock(&self.supervisors).contains_key(instance_id) {
                    return Dispatched::Now(Err(format!(
                        "{instance_id} does not run on this worker"
                    )));
                }
                self.tracker.spawn(send_tail(
                    Arc::clone(&self.context.host),
                    self.worker_id,
                    *instance_id,
                    self.context.log_dir.clone(),
                    self.context.stopping.clone(),
                ));
                Dispatched::Now(Ok("its console tail is on its way to the host".to_owned()))
            }
        }
    }

    /// Takes a start on: a supervisor of its own, which starts with the game and config the
    /// command carries (`bundle`), or fetches them when it carries none (a command from an
    /// older host).
    fn start(
        &mut self,
        instance_id: InstanceId,
        config_id: crate::id::ConfigId,
        bundle: Option<&crate::ports::ConfigBundle>,
    ) -> Result<String, Refusal> {
        let mut supervisors = lock(&self.supervisors);
        if supervisors.contains_key(&instance_id) {
            return Err(Refusal::AlreadyRunning(format!(
                "{instance_id} is already running on this worker"
            )));
        }
        if let Some((other, _)) = supervisors
            .iter()
            .find(|(_, s)| lock_state(&s.state).config_id == config_id)
        {
            return Err(Refusal::Refused(format!(
                "{config_id} already runs on this worker as {other}: stop it first"
            )));
        }
        if supervisors.len() >= self.capacity as usize {
            return Err(Refusal::Refused(format!(
                "this worker already runs {} instances, its capacity",
                supervisors.len()
            )));
        }
        let (supervised, supervisor) = new_supervisor(instance_id, config_id, &self.context);
        supervisors.insert(instance_id, supervised);
        self.tracker
            .spawn(supervisor.with_carried_bundle(bundle.cloned()).run());
        Ok(format!("starting {instance_id}"))
    }

    /// Puts a request in an instance's supervisor's queue (behind the earlier requests of that
    /// instance); its answer comes later.
    async fn ask(
        &self,
        instance_id: InstanceId,
        request: impl FnOnce(oneshot::Sender<Result<String, String>>) -> Request,
    ) -> Dispatched {
        let Some(sender) = lock(&self.supervisors)
            .get(&instance_id)
            .map(|s| s.requests.clone())
        else {
            return Dispatched::Now(Err(format!(
                "{instance_id} is not running on this worker (it may have ended)"
            )));
        };
        let (reply, answer) = oneshot::channel();
        match tokio::time::timeout(ASK_TIMEOUT, sender.send(request(reply))).await {
            Ok(Ok(())) => Dispatched::Asked {
                instance_id,
                answer,
            },
            Ok(Err(_)) => Dispatched::Now(Err(format!("{instance_id} has ended"))),
            Err(_) => Dispatched::Now(Err(format!(
                "{instance_id} has {} requests waiting and took none for {} s; try again",
                SUPERVISOR_QUEUE,
                ASK_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// What a command comes to once dispatched: known at once, or the answer its instance's
/// supervisor will give.
enum Dispatched {
    Now(Result<String, String>),
    Asked {
        instance_id: InstanceId,
        answer: oneshot::Receiver<Result<String, String>>,
    },
}

impl Dispatched {
    /// Its outcome: the supervisor's answer, waited for at most [`ASK_TIMEOUT`].
    async fn outcome(self) -> Result<String, String> {
        match self {
            Self::Now(outcome) => outcome,
            Self::Asked {
                instance_id,
                answer,
            } => match tokio::time::timeout(ASK_TIMEOUT, answer).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => Err(format!("{instance_id} ended before answering")),
                Err(_) => Err(format!(
                    "{instance_id} did not answer within {} s; try again",
                    ASK_TIMEOUT.as_secs()
                )),
            },
        }
    }
}

/// A command taken, before its result is published.
enum Pending {
    /// It expired before the worker took it.
    Expired(String),
    /// It was carried out (or refused).
    Dispatched(Dispatched),
}

/// Waits for a command's outcome, publishes its result, then acknowledges its delivery.
fn settle(
    reporter: Reporter,
    worker_id: WorkerId,
    envelope: &CommandEnvelope,
    pending: Pending,
    delivery: Delivery,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (command_id, name) = (envelope.id, envelope.command.name());
    async move {
        let (outcome, detail) = match pending {
            Pending::Expired(detail) => (CommandOutcome::Expired, detail),
            Pending::Dispatched(dispatched) => match dispatched.outcome().await {
                Ok(detail) => (CommandOutcome::Succeeded, detail),
                Err(reason) => {
                    tracing::warn!(%command_id, command = name, %reason, "command failed");
                    (CommandOutcome::Failed, reason)
                }
            },
        };
        reporter
            .command_result(worker_id, command_id, outcome, detail)
            .await;
        if let Err(e) = delivery.ack().await {
            tracing::warn!(%command_id, error = %e, "could not acknowledge a command");
        }
    }
}

/// Why a start is not carried out.
enum Refusal {
    /// This very instance already runs here (a duplicate command): it is left as it is.
    AlreadyRunning(String),
    /// The start is refused; the instance will never run.
    Refused(String),
}

/// How long a command waits for its supervisor's answer (and for room in its queue).
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// How many requests (stop, stdin, …) may wait for one instance's supervisor.
const SUPERVISOR_QUEUE: usize = 64;
/// The file of the state directory that keeps the ids of the commands handled lately.
const HANDLED_COMMANDS_FILE: &str = "commands-handled";
/// How many handled command ids are remembered, across restarts.
const HANDLED_COMMANDS_REMEMBERED: usize = 10_000;
/// How long the worker waits for its servers after SIGKILLing them at shutdown.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Supervises a server the last run of the worker left running, as a start would.
fn take_up(
    server: TakenUp,
    context: &SupervisorContext,
    supervisors: &Supervisors,
    tracker: &TaskTracker,
) {
    let (supervised, supervisor) =
        new_supervisor(server.instance_id, server.kept.config_id, context);
    lock(supervisors).insert(server.instance_id, supervised);
    tracker.spawn(
        supervisor
            .taking_up(server.server, &server.kept, server.last_seq)
            .run(),
    );
}

/// A supervisor for `instance_id` (of `config_id`), not yet running, and how the worker sees
/// it.
fn new_supervisor(
    instance_id: InstanceId,
    config_id: crate::id::ConfigId,
    context: &SupervisorContext,
) -> (Supervised, Supervisor) {
    let (requests, receiver) = mpsc::channel(SUPERVISOR_QUEUE);
    let state = Arc::new(Mutex::new(InstanceState {
        config_id,
        status: Status::Created,
        pid: None,
        restart_count: 0,
        console_dropped: Arc::default(),
    }));
    let supervisor = Supervisor::new(
        instance_id,
        config_id,
        context.clone(),
        receiver,
        Arc::clone(&state),
    );
    (Supervised { requests, state }, supervisor)
}

fn lock_state(state: &Mutex<InstanceState>) -> MutexGuard<'_, InstanceState> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// First pause after a failed heartbeat; it doubles up to the heartbeat interval.
const HEARTBEAT_RETRY: Duration = Duration::from_millis(250);

/// Sends a heartbeat every `interval` on its own task, so no long operation delays it. A
/// failure is logged and retried sooner, with a pause that doubles up to the interval; it is
/// never fatal. "Superseded" cancels `superseded`.
async fn heartbeat_loop(
    host: Arc<dyn HostApi>,
    registered: Registered,
    (supervisors, ends, clock): (Supervisors, RecentEnds, Arc<dyn Clock>),
    interval: Duration,
    stop: CancellationToken,
    superseded: CancellationToken,
) {
    let mut pause = interval;
    let mut retry = HEARTBEAT_RETRY;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        let mut inventory: Vec<InventoryItem> = lock(&supervisors)
            .iter()
            .map(|(id, s)| {
                let state = lock_state(&s.state);
                InventoryItem {
                    instance_id: *id,
                    status: state.status,
                    pid: state.pid,
                    restart_count: state.restart_count,
                    console_lines_dropped: state
                        .console_dropped
                        .load(std::sync::atomic::Ordering::Relaxed),
                    ended: None,
                }
            })
            .collect();
        // Then the instances that ended lately, with how (see `RecentEnds`).
        let ended: Vec<InventoryItem> = ends
            .listed(clock.now())
            .into_iter()
            .filter(|end| inventory.iter().all(|i| i.instance_id != end.instance_id))
            .collect();
        inventory.extend(ended);
        let heartbeat = Heartbeat {
            worker_id: registered.worker_id,
            epoch: registered.epoch,
            inventory,
        };
        match host.heartbeat(&heartbeat).await {
            Ok(()) => {
                pause = interval;
                retry = HEARTBEAT_RETRY;
            }
            Err(HostApiError::Superseded { .. }) => {
                tracing::error!(
                    worker_id = registered.worker_id.get(),
                    epoch = registered.epoch,
                    "superseded by a newer registration: stopping every instance"
                );
                superseded.cancel();
                return;
            }
            Err(e) => {
                pause = retry.min(interval);
                retry = (retry * 2).min(interval);
                tracing::warn!(worker_id = registered.worker_id.get(), error = %e, retry_in = ?pause, "heartbeat failed; retrying");
            }
        }
    }
}

#[cfg(all(test, feature = "memory", feature = "process"))]
mod tests;
