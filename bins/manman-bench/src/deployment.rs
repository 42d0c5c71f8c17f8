//! The deployments an end-to-end scenario runs on, started fresh for each run:
//!
//! - `manman up` with the in-memory store (host and worker in one process, the in-memory bus);
//! - `manman up` on a PostgreSQL database of its own (still the in-memory bus);
//! - the distributed system: `manman-host` on a PostgreSQL database and a RabbitMQ vhost of its
//!   own, with one or more separate `manman-worker` processes — how ManMan is deployed.
//!
//! All of them are this binary (`as-manman`, `as-host`, `as-worker`), so a release build of the
//! bench measures exactly the code it ships; the game server is this binary under the name
//! `fake-game-server`.

use crate::scenarios::Settings;
use crate::scratch_database::ScratchDatabase;
use crate::up_process::UpProcess;
use anyhow::{Context, bail};
use manman_core::config::{ConfigSpec, StopPolicy};
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::id::{ConfigId, GameServerId};
use manman_core::status::Status;
use manman_http::Client;
use manman_test_support::game_files::{install_program, reachable_tempdir};
use manman_test_support::vhost::TestVhost;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The admin token of a distributed deployment's host.
const ADMIN_TOKEN: &str = "admin-token-of-a-bench-run";
/// The longest wait for a deployment to come up.
const COME_UP: Duration = Duration::from_secs(60);

/// Where a scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deployment {
    /// `manman up --store memory`.
    UpMemory,
    /// `manman up --store postgres://…`.
    UpPostgres,
    /// `manman-host` on PostgreSQL and RabbitMQ, with this many `manman-worker` processes.
    Distributed {
        /// Worker processes.
        workers: usize,
    },
}

impl Deployment {
    /// The three deployments every end-to-end scenario compares, the real one first.
    pub(crate) const COMPARED: [Self; 3] = [
        Self::Distributed { workers: 1 },
        Self::UpPostgres,
        Self::UpMemory,
    ];

    /// Its name in the report.
    pub(crate) fn label(self) -> String {
        match self {
            Self::UpMemory => "all-in-one, memory".to_owned(),
            Self::UpPostgres => "all-in-one, PostgreSQL".to_owned(),
            Self::Distributed { workers: 1 } => "distributed".to_owned(),
            Self::Distributed { workers } => format!("distributed, {workers} workers"),
        }
    }

    /// Starts it fresh, each worker with room for `capacity` servers; returns once every
    /// worker runs and the API answers.
    pub(crate) async fn start(
        self,
        settings: &Settings,
        capacity: usize,
    ) -> anyhow::Result<Running> {
        match self {
            Self::UpMemory => {
                let up = UpProcess::start(capacity, "memory").await?;
                Running::of_up(up, None).await
            }
            Self::UpPostgres => {
                let database = ScratchDatabase::create(database_url(settings)?).await?;
                match UpProcess::start(capacity, &database.url).await {
                    Ok(up) => Running::of_up(up, Some(database)).await,
                    Err(e) => {
                        database.drop_it().await;
                        Err(e)
                    }
                }
            }
            Self::Distributed { workers } => {
                let database = ScratchDatabase::create(database_url(settings)?).await?;
                let started = Distributed::start(&database, workers, capacity).await;
                match started {
                    Ok(distributed) => Ok(Running {
                        client: distributed.client.clone(),
                        game: distributed.game,
                        up: None,
                        distributed: Some(distributed),
                        database: Some(database),
                    }),
                    Err(e) => {
                        database.drop_it().await;
                        Err(e)
                    }
                }
            }
        }
    }
}

/// A config of the fake game server named `name`: `running` when spawned (no ready pattern),
/// stopped with the line `quit`.
pub(crate) fn fake_server_spec(name: impl Into<String>) -> ConfigSpec {
    let mut spec = ConfigSpec::new(name, "fake-game-server");
    spec.stop = StopPolicy {
        stdin_line: Some("quit".to_owned()),
        timeout_s: 10,
        ..StopPolicy::default()
    };
    spec
}

fn database_url(settings: &Settings) -> anyhow::Result<&str> {
    settings.database_url.as_deref().context(
        "the deployments on PostgreSQL need it: pass --database-url or set MANMAN_TEST_DATABASE_URL",
    )
}

/// A deployment that runs.
#[derive(Debug)]
pub(crate) struct Running {
    /// Its API, as an admin.
    pub(crate) client: Client,
    /// The game whose executable is the fake game server.
    game: GameServerId,
    up: Option<UpProcess>,
    distributed: Option<Distributed>,
    database: Option<ScratchDatabase>,
}

impl Running {
    async fn of_up(up: UpProcess, database: Option<ScratchDatabase>) -> anyhow::Result<Self> {
        Ok(Self {
            client: up.client.clone(),
            game: up.demo_game().await?,
            up: Some(up),
            distributed: None,
            database,
        })
    }

    /// A config named `name` of the fake game server: `running` when spawned (no ready
    /// pattern), stopped with the line `quit`.
    pub(crate) async fn config(&self, name: &str) -> anyhow::Result<ConfigId> {
        let spec = fake_server_spec(name);
        Ok(self.client.create_config(self.game, &spec).await?.id)
    }

    /// Stops every process (SIGTERM, then waits) and drops the database.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let mut outcome = Ok(());
        if let Some(mut up) = self.up.take() {
            outcome = async {
                up.terminate()?;
                up.wait(Duration::from_secs(30)).await.map(|_| ())
            }
            .await;
        }
        if let Some(distributed) = self.distributed.take() {
            distributed.stop().await;
        }
        if let Some(database) = self.database.take() {
            database.drop_it().await;
        }
        outcome
    }
}

/// `manman-host` and its `manman-worker` processes.
#[derive(Debug)]
struct Distributed {
    client: Client,
    game: GameServerId,
    processes: Processes,
    _vhost: TestVhost,
    _dir: tempfile::TempDir,
}

impl Distributed {
    async fn start(
        database: &ScratchDatabase,
        workers: usize,
        capacity: usize,
    ) -> anyhow::Result<Self> {
        let vhost = TestVhost::create()
            .context("the distributed deployment needs RabbitMQ: set MANMAN_TEST_AMQP_URL")?;
        let dir = reachable_tempdir();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let token_file = dir.path().join("admin-token");
        std::fs::write(&token_file, ADMIN_TOKEN)?;
        let exe = std::env::current_exe()?;
        let host = Command::new(&exe)
            .arg("as-host")
            .env("MANMAN_BIND", format!("127.0.0.1:{port}"))
            .env("MANMAN_POSTGRES_URL", &database.url)
            .env("MANMAN_RABBITMQ_URL", vhost.url())
            .env("MANMAN_ADMIN_TOKEN_FILE", &token_file)
            .env("RUST_LOG", crate::up_process::log_filter())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("could not start manman-host")?;
        let mut processes = Processes(vec![host]);
        let client = Client::new(&url).with_token(ADMIN_TOKEN);
        let deadline = Instant::now() + COME_UP;
        while client.list_workers().await.is_err() {
            if Instant::now() > deadline {
                bail!("manman-host did not answer within {COME_UP:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let game = client
            .create_game(&NewGameServer {
                name: "fake".into(),
                server_type: ServerType::Local {
                    path: "games/fake".into(),
                },
            })
            .await?
            .id;
        for i in 1..=workers {
            let name = format!("w{i}");
            let install = dir.path().join(&name);
            install_program(
                &exe,
                &install
                    .join("games/fake")
                    .join(manman::demo::DEMO_EXECUTABLE),
            );
            let credentials = client.create_worker_credential(&name).await?;
            let worker = Command::new(&exe)
                .arg("as-worker")
                .env("MANMAN_HOST_URL", &url)
                .env("MANMAN_RABBITMQ_URL", vhost.url())
                .env("MANMAN_WORKER_NAME", &name)
                .env(
                    "MANMAN_WORKER_SA_CLIENT_ID",
                    &credentials.credential.client_id,
                )
                .env("MANMAN_WORKER_SA_CLIENT_SECRET", &credentials.client_secret)
                .env("MANMAN_WORKER_INSTALL_DIRECTORY", &install)
                .env("MANMAN_WORKER_CAPACITY", capacity.to_string())
                .env("RUST_LOG", crate::up_process::log_filter())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("could not start manman-worker {name}"))?;
            processes.0.push(worker);
        }
        loop {
            let running = client
                .list_workers()
                .await?
                .iter()
                .filter(|w| w.status == Status::Running)
                .count();
            if running == workers {
                break;
            }
            if Instant::now() > deadline {
                bail!("{running} of {workers} workers ran within {COME_UP:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            client,
            game,
            processes,
            _vhost: vhost,
            _dir: dir,
        })
    }

    /// SIGTERM to the workers (they stop their servers), then to the host; each waited for.
    async fn stop(mut self) {
        let children = &mut self.processes.0;
        let (host, workers) = children.split_at_mut(1);
        for child in workers.iter_mut().chain(host.iter_mut()) {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while !matches!(child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Child processes, killed when dropped (those that have not exited).
#[derive(Debug)]
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
