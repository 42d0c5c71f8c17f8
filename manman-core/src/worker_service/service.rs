//! [`WorkerService`]: registration, heartbeat, the command loop and shutdown.

use crate::bus::Bus;
use crate::command::{Command, CommandEnvelope, CommandOutcome};
use crate::event::StatusReport;
use crate::id::{InstanceId, WorkerId};
use crate::ports::{
    BusError, Clock, Delivery, GameInstaller, HostApi, HostApiError, ProcessRunner,
};
use crate::status::{Cause, Entity, Status};
use crate::worker::{Heartbeat, InventoryItem, Registered, WorkerRegistration};
use crate::worker_service::dedup::RecentIds;
use crate::worker_service::reporter::Reporter;
use crate::worker_service::supervisor::{InstanceState, Request, Supervisor, SupervisorContext};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
}

impl WorkerSettings {
    /// Defaults for everything but the name and install dir: capacity 16, heartbeat 2 s.
    pub fn new(name: impl Into<String>, install_dir: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            capacity: 16,
            labels: BTreeMap::new(),
            install_dir: install_dir.into(),
            heartbeat_interval: Duration::from_secs(2),
            command_prefetch: 16,
            shutdown_timeout: Duration::from_secs(90),
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
    /// The host refused the registration.
    #[error("the host refused worker {name:?}: {source}")]
    Registration {
        /// The worker's name.
        name: String,
        /// Why.
        #[source]
        source: HostApiError,
    },
    /// The command queue could not be set up or was closed.
    #[error("worker {worker_id}: the message bus failed: {source}")]
    Bus {
        /// The worker.
        worker_id: WorkerId,
        /// Why.
        #[source]
        source: BusError,
    },
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
        }
    }

    /// Runs until `shutdown` is cancelled, a `ShutdownWorker` command arrives, or the worker is
    /// superseded. Every instance is stopped before it returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<WorkerExit, WorkerError> {
        let Some(registered) = self.register(&shutdown).await? else {
            return Ok(WorkerExit::Shutdown);
        };
        let worker_id = registered.worker_id;
        let bus_error = |source| WorkerError::Bus { worker_id, source };
        self.bus.declare().await.map_err(bus_error)?;
        let mut commands = self
            .bus
            .consume_commands(worker_id, self.settings.command_prefetch)
            .await
            .map_err(bus_error)?;
        let reporter = Reporter::new(self.bus.clone(), Arc::clone(&self.clock));
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
        let tracker = TaskTracker::new();
        let stop = shutdown.child_token();
        let superseded = CancellationToken::new();
        tracker.spawn(heartbeat_loop(
            Arc::clone(&self.host),
            registered,
            Arc::clone(&supervisors),
            self.settings.heartbeat_interval,
            stop.clone(),
            superseded.clone(),
        ));

        let context = SupervisorContext {
            host: Arc::clone(&self.host),
            installer: Arc::clone(&self.installer),
            runner: Arc::clone(&self.runner),
            reporter: reporter.clone(),
            install_root: self.settings.install_dir.clone(),
        };
        let mut loop_state = CommandLoop {
            worker_id,
            capacity: self.settings.capacity,
            supervisors: Arc::clone(&supervisors),
            tracker: tracker.clone(),
            context,
            reporter: reporter.clone(),
            clock: Arc::clone(&self.clock),
            seen: RecentIds::new(10_000),
            shutdown_requested: false,
        };
        let exit = loop {
            let delivery = tokio::select! {
                () = stop.cancelled() => break WorkerExit::Shutdown,
                () = superseded.cancelled() => break WorkerExit::Superseded,
                next = commands.next() => match next {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(e)) => {
                        tracing::warn!(worker_id = worker_id.get(), error = %e, "receiving commands failed");
                        continue;
                    }
                    None => {
                        stop.cancel();
                        self.shut_down(worker_id, &supervisors, &tracker, &reporter, WorkerExit::Shutdown).await;
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
        stop.cancel();
        self.shut_down(worker_id, &supervisors, &tracker, &reporter, exit)
            .await;
        Ok(exit)
    }

    /// Registers, retrying while the host is unavailable. `None` when shut down first.
    async fn register(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<Registered>, WorkerError> {
        let registration = WorkerRegistration {
            name: self.settings.name.clone(),
            version: self.settings.version.clone(),
            capacity: self.settings.capacity,
            labels: self.settings.labels.clone(),
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
            tracing::error!(
                worker_id = worker_id.get(),
                "instances did not stop within the shutdown timeout"
            );
        }
        let cause = match exit {
            WorkerExit::Shutdown => Cause::WorkerShutdown,
            WorkerExit::Superseded => Cause::Registered,
        };
        reporter
            .status(StatusReport::new(
                Entity::Worker(worker_id),
                Status::Complete,
                cause,
                self.clock.now(),
            ))
            .await;
    }
}

fn lock(supervisors: &Supervisors) -> MutexGuard<'_, HashMap<InstanceId, Supervised>> {
    supervisors
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The state of the command loop.
struct CommandLoop {
    worker_id: WorkerId,
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
        if !self.seen.insert(envelope.id) {
            tracing::info!(command_id = %envelope.id, "ignoring a command handled before");
            let _ = delivery.ack().await;
            return;
        }
        let answer = if envelope.is_expired(self.clock.now()) {
            Err(format!(
                "expired at {} before the worker took it",
                envelope.expires_at
            ))
        } else {
            self.dispatch(&envelope.command).await
        };
        let (outcome, detail) = match answer {
            Ok(detail) => (CommandOutcome::Succeeded, detail),
            Err(reason) => {
                tracing::warn!(command_id = %envelope.id, command = envelope.command.name(), %reason, "command failed");
                (CommandOutcome::Failed, reason)
            }
        };
        self.reporter
            .command_result(self.worker_id, envelope.id, outcome, detail)
            .await;
        if let Err(e) = delivery.ack().await {
            tracing::warn!(command_id = %envelope.id, error = %e, "could not acknowledge a command");
        }
    }

    async fn dispatch(&mut self, command: &Command) -> Result<String, String> {
        match command {
            Command::Start {
                instance_id,
                config_id,
            } => self.start(*instance_id, *config_id),
            Command::Stop { instance_id } => {
                self.ask(*instance_id, |reply| Request::Stop { reply })
                    .await
            }
            Command::Kill { instance_id } => {
                self.ask(*instance_id, |reply| Request::Kill { reply })
                    .await
            }
            Command::Stdin { instance_id, line } => {
                let line = line.clone();
                self.ask(*instance_id, |reply| Request::Stdin { line, reply })
                    .await
            }
            Command::Restart { instance_id } => Err(format!(
                "restart of {instance_id} is not supported by this worker yet: stop it and start its config again"
            )),
            Command::ShutdownWorker => {
                self.shutdown_requested = true;
                Ok("shutting down".to_owned())
            }
        }
    }

    fn start(
        &mut self,
        instance_id: InstanceId,
        config_id: crate::id::ConfigId,
    ) -> Result<String, String> {
        let mut supervisors = lock(&self.supervisors);
        if supervisors.contains_key(&instance_id) {
            return Err(format!("{instance_id} is already running on this worker"));
        }
        if supervisors
            .values()
            .any(|s| s.state.lock().expect("instance state lock").config_id == config_id)
        {
            return Err(format!(
                "{config_id} already runs on this worker: stop it first"
            ));
        }
        if supervisors.len() >= self.capacity as usize {
            return Err(format!(
                "this worker runs {} instances, its capacity",
                supervisors.len()
            ));
        }
        let (requests, receiver) = mpsc::channel(64);
        let state = Arc::new(Mutex::new(InstanceState {
            config_id,
            status: Status::Created,
            pid: None,
            restart_count: 0,
        }));
        let supervisor = Supervisor::new(
            instance_id,
            config_id,
            self.context.clone(),
            receiver,
            Arc::clone(&state),
        );
        supervisors.insert(instance_id, Supervised { requests, state });
        self.tracker.spawn(supervisor.run());
        Ok(format!("starting {instance_id}"))
    }

    async fn ask(
        &self,
        instance_id: InstanceId,
        request: impl FnOnce(oneshot::Sender<Result<String, String>>) -> Request,
    ) -> Result<String, String> {
        let sender = lock(&self.supervisors)
            .get(&instance_id)
            .map(|s| s.requests.clone())
            .ok_or_else(|| {
                format!("{instance_id} is not running on this worker (it may have ended)")
            })?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(request(reply))
            .await
            .map_err(|_| format!("{instance_id} has ended"))?;
        answer
            .await
            .map_err(|_| format!("{instance_id} ended before answering"))?
    }
}

/// Sends a heartbeat every `interval` on its own task, so no long operation delays it.
/// Failures are logged and retried at the next beat; "superseded" cancels `superseded`.
async fn heartbeat_loop(
    host: Arc<dyn HostApi>,
    registered: Registered,
    supervisors: Supervisors,
    interval: Duration,
    stop: CancellationToken,
    superseded: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let inventory = lock(&supervisors)
            .iter()
            .map(|(id, s)| {
                let state = s.state.lock().expect("instance state lock");
                InventoryItem {
                    instance_id: *id,
                    status: state.status,
                    pid: state.pid,
                    restart_count: state.restart_count,
                }
            })
            .collect();
        let heartbeat = Heartbeat {
            worker_id: registered.worker_id,
            epoch: registered.epoch,
            inventory,
        };
        match host.heartbeat(&heartbeat).await {
            Ok(()) => {}
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
                tracing::warn!(worker_id = registered.worker_id.get(), error = %e, "heartbeat failed; retrying at the next beat")
            }
        }
    }
}
