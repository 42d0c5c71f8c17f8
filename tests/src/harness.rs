//! [`Harness`]: a host on the in-memory adapters with its status processor, a local game whose
//! executable is the fake game server, and workers built on it — all in the test's process,
//! the game servers as real child processes.

use crate::eventually;
use manman_core::bus::Bus;
use manman_core::command::CommandEnvelope;
use manman_core::config::ConfigSpec;
use manman_core::game_server::{GameServer, NewGameServer, ServerType};
use manman_core::host::{BusKeys, HostService, LocalHostApi, StartRequest, StatusProcessor};
use manman_core::id::{ConfigId, InstanceId, WorkerId};
use manman_core::instance::Instance;
use manman_core::memory::{MemoryBus, MemoryStore};
use manman_core::ports::{GameInstaller, HostApi, Message, SystemClock};
use manman_core::process::TokioProcessRunner;
use manman_core::signing::Purpose;
use manman_core::status::{Entity, Status, StatusEvent};
use manman_core::store::Store;
use manman_core::topology::{KIND_COMMAND, worker_routing_key};
use manman_core::worker_service::{LocalInstaller, WorkerService, WorkerSettings};
use manman_test_support::game_files::{install_program, reachable_tempdir};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a harness wait lasts before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A host in memory, with a `fake` local game.
#[derive(Debug)]
pub struct Harness {
    /// The host's services.
    pub host: HostService,
    /// The in-memory bus (shared by host and workers).
    pub bus: Bus,
    /// The game every config runs.
    pub game: GameServer,
    /// The workers' install directory.
    pub install_dir: PathBuf,
    processor: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.processor.cancel();
    }
}

/// The executable name of the fake game server inside the game's directory.
pub const FAKE_EXECUTABLE: &str = "fake-game-server";

impl Harness {
    /// A host on the in-memory store whose `fake` game runs `fake_game_server`.
    pub async fn new(fake_game_server: &Path) -> Self {
        Self::with_store(fake_game_server, Store::from_adapter(MemoryStore::new())).await
    }

    /// A host on `store` whose `fake` game runs `fake_game_server`.
    pub async fn with_store(fake_game_server: &Path, store: Store) -> Self {
        let dir = reachable_tempdir();
        let install_dir = dir.path().join("install");
        let game_dir = install_dir.join("games/fake");
        install_program(fake_game_server, &game_dir.join(FAKE_EXECUTABLE));
        let memory = MemoryBus::new();
        let bus = Bus::new(Arc::new(memory.clone()), Arc::new(memory));
        bus.declare().await.expect("topology");
        let clock = Arc::new(SystemClock);
        let host = HostService::new(store.clone(), bus.clone(), clock.clone());
        let game = host
            .catalogue()
            .create_game(&NewGameServer {
                name: "fake".to_owned(),
                server_type: ServerType::Local {
                    path: "games/fake".to_owned(),
                },
            })
            .await
            .expect("game");
        let processor = CancellationToken::new();
        let status_processor = StatusProcessor::new(store, bus.clone(), clock);
        let token = processor.clone();
        tokio::spawn(async move { status_processor.run(token).await });
        Self {
            host,
            bus,
            game,
            install_dir,
            processor,
            _dir: dir,
        }
    }

    /// Worker settings for this harness (its own state dir under the install dir).
    pub fn settings(&self, name: &str) -> WorkerSettings {
        let mut settings = WorkerSettings::new(name, &self.install_dir);
        settings.state_dir = self.install_dir.join(format!(".state-{name}"));
        settings.heartbeat_interval = Duration::from_millis(500);
        settings.capacity = 64;
        settings
    }

    /// The host's worker-facing API, in-process.
    pub fn host_api(&self) -> Arc<dyn HostApi> {
        Arc::new(LocalHostApi::new(self.host.clone()))
    }

    /// A worker on this host with real processes, for `local` games.
    pub fn worker(&self, settings: WorkerSettings, runner: TokioProcessRunner) -> WorkerService {
        self.worker_with(settings, runner, Arc::new(LocalInstaller))
    }

    /// A worker on this host with real processes and the given installer.
    pub fn worker_with(
        &self,
        settings: WorkerSettings,
        runner: TokioProcessRunner,
        installer: Arc<dyn GameInstaller>,
    ) -> WorkerService {
        WorkerService::new(
            settings,
            self.host_api(),
            self.bus.clone(),
            installer,
            Arc::new(runner),
            Arc::new(SystemClock),
        )
    }

    /// Starts a worker task; waits until it is registered and running.
    pub async fn spawn_worker(&self, worker: WorkerService) -> RunningWorker {
        let shutdown = CancellationToken::new();
        let kill = worker.kill_switch();
        let token = shutdown.clone();
        let before = self
            .host
            .workers()
            .list_workers()
            .await
            .expect("workers")
            .len();
        let task = tokio::spawn(async move { worker.run(token).await });
        eventually("the worker to run", WAIT, || async {
            let workers = self.host.workers().list_workers().await.expect("workers");
            (workers.len() > before || workers.iter().any(|w| w.status == Status::Running))
                .then_some(())
        })
        .await;
        eventually("the worker to be running", WAIT, || async {
            let workers = self.host.workers().list_workers().await.expect("workers");
            workers
                .iter()
                .any(|w| w.status == Status::Running)
                .then_some(())
        })
        .await;
        RunningWorker {
            shutdown,
            kill,
            task,
        }
    }

    /// Adds a config of the fake game; `edit` adjusts the defaults.
    pub async fn config(&self, name: &str, edit: impl FnOnce(&mut ConfigSpec)) -> ConfigId {
        let mut spec = ConfigSpec::new(name, FAKE_EXECUTABLE);
        edit(&mut spec);
        self.host
            .catalogue()
            .create_config(self.game.id, &spec)
            .await
            .expect("config")
            .id
    }

    /// Starts a config; returns the new instance.
    pub async fn start(&self, config_id: ConfigId) -> InstanceId {
        self.host
            .instances()
            .start(&StartRequest::new(config_id), "test")
            .await
            .expect("start")
            .instance_id
    }

    /// Waits until an instance has `status`.
    pub async fn wait_status(&self, id: InstanceId, status: Status) -> Instance {
        eventually(&format!("{id} to be {status}"), WAIT, || async {
            let instance = self
                .host
                .instances()
                .get_instance(id)
                .await
                .expect("instance");
            (instance.status == status).then_some(instance)
        })
        .await
    }

    /// An instance's status history.
    pub async fn history(&self, id: InstanceId) -> Vec<StatusEvent> {
        self.host
            .instances()
            .status_history(Entity::Instance(id), None, 500)
            .await
            .expect("history")
    }

    /// Publishes `envelope` straight to the queue of `worker_id`, sealed for its current
    /// registration as the host would seal it, but with none of the host's checks or records and
    /// no expiry on the bus (the worker must notice an expired one itself).
    ///
    /// # Panics
    ///
    /// When the worker is unknown or the bus refuses.
    pub async fn send_sealed(&self, worker_id: WorkerId, envelope: &CommandEnvelope) {
        let epoch = self
            .host
            .workers()
            .get_worker(worker_id)
            .await
            .expect("worker")
            .epoch;
        let key = BusKeys::new(self.host.store())
            .worker_key(worker_id, epoch)
            .await
            .expect("key");
        let mut message =
            Message::json(KIND_COMMAND, envelope, envelope.issued_at).expect("encode");
        message.id = envelope.id;
        key.seal(Purpose::Command, &mut message);
        self.bus
            .publisher()
            .publish(
                &self.bus.topology().commands_exchange(),
                &worker_routing_key(worker_id),
                message,
            )
            .await
            .expect("publish");
    }

    /// An instance's console log file on a worker with `settings`.
    pub fn log_path(settings: &WorkerSettings, id: InstanceId) -> PathBuf {
        settings
            .state_dir
            .join("logs")
            .join(format!("instance-{}.log", id.get()))
    }

    /// Waits until an instance's console log (flushed) contains a line ending with `text`;
    /// returns the whole log.
    pub async fn wait_log(settings: &WorkerSettings, id: InstanceId, text: &str) -> String {
        let path = Self::log_path(settings, id);
        eventually(
            &format!("{} to contain {text:?}", path.display()),
            WAIT,
            || async {
                let log = std::fs::read_to_string(&path).unwrap_or_default();
                log.lines().any(|l| l.ends_with(text)).then_some(log)
            },
        )
        .await
    }
}

/// The pid the fake game server printed in its first line (`Starting fake game server (pid N)`).
pub fn fake_pid(log: &str) -> u32 {
    let start = log.find("(pid ").expect("the start line names the pid") + 5;
    let end = start + log[start..].find(')').expect("closing parenthesis");
    log[start..end].parse().expect("a pid")
}

/// The text of each console line of a log, in order (`<time> <seq> <stream> <text>`).
pub fn log_texts(log: &str) -> Vec<&str> {
    log.lines()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or(""))
        .collect()
}

/// A worker task with its controls.
#[derive(Debug)]
pub struct RunningWorker {
    /// Cancel to shut it down gracefully.
    pub shutdown: CancellationToken,
    /// Cancel to SIGKILL its servers.
    pub kill: CancellationToken,
    /// The task; its output is how the worker ended.
    pub task: tokio::task::JoinHandle<
        Result<manman_core::worker_service::WorkerExit, manman_core::worker_service::WorkerError>,
    >,
}

impl RunningWorker {
    /// Shuts it down and waits for it.
    pub async fn stop(self) -> manman_core::worker_service::WorkerExit {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the worker stops in time")
            .expect("the worker task does not panic")
            .expect("the worker ends without error")
    }
}
