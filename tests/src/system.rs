//! [`System`]: the whole product as separate processes for a system test — `manman-host` on a
//! PostgreSQL database of the test's own, workers as `manman-worker` processes, RabbitMQ on a
//! vhost of the test's own, the fake game server installed on every worker — driven through the
//! HTTP API.

use crate::{Daemon, eventually, free_port};
use manman_core::config::ConfigSpec;
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::host::StartRequest;
use manman_core::id::{ConfigId, InstanceId};
use manman_core::status::Status;
use manman_http::Client;
use manman_test_support::game_files::{install_program, reachable_tempdir};
use manman_test_support::postgres::TestDatabase;
use manman_test_support::vhost::TestVhost;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The admin token of every system test's host.
const ADMIN_TOKEN: &str = "admin-token-of-a-system-test";

/// How long a system test waits for one thing to happen.
pub const WAIT: Duration = Duration::from_secs(30);

/// The programs a system runs (the tests' `CARGO_BIN_EXE_*`).
#[derive(Debug, Clone, Copy)]
pub struct Programs<'a> {
    /// `manman-host`.
    pub host: &'a str,
    /// `manman-worker`.
    pub worker: &'a str,
    /// The fake game server.
    pub fake: &'a str,
    /// A fake `steamcmd` to give every worker (its scenario file is written beside each copy).
    pub steamcmd: Option<&'a str>,
    /// Workers run their servers through shims (`MANMAN_WORKER_SHIM`) and leave them running
    /// when they shut down.
    pub shim: Option<Shim<'a>>,
}

/// How the workers of a system use shims.
#[derive(Debug, Clone, Copy)]
pub struct Shim<'a> {
    /// `manman-shim`.
    pub program: &'a str,
    /// How long a shim keeps its server with no worker attached (`MANMAN_WORKER_SHIM_GRACE_S`).
    pub grace_s: u32,
}

/// A host and its workers as processes. Everything stops when it is dropped.
#[derive(Debug)]
pub struct System {
    /// The host's API, as the admin.
    pub client: Client,
    /// The host process.
    pub host: Daemon,
    /// How to start the host again (same database, broker, port and token).
    host_command: Command,
    /// The worker processes, `w1`, `w2`, … in order.
    pub workers: Vec<Daemon>,
    /// How to start each worker again (same name, credentials, directories).
    pub worker_commands: Vec<Command>,
    /// The broker URL (the test's vhost).
    pub amqp_url: String,
    /// The database.
    pub database: TestDatabase,
    /// The broker's vhost.
    pub vhost: TestVhost,
    dir: tempfile::TempDir,
    programs: Programs<'static>,
    url: String,
    capacity: u32,
}

impl System {
    /// Starts a host and `workers` workers (capacity `capacity` each), or `None` when the
    /// services are not configured (the test is skipped, or fails under
    /// `MANMAN_REQUIRE_SERVICES=1`).
    ///
    /// # Panics
    ///
    /// When a process cannot start or the system does not come up.
    pub async fn start(
        label: &str,
        programs: Programs<'static>,
        workers: usize,
        capacity: u32,
    ) -> Option<Self> {
        Self::start_with_host_env(label, programs, workers, capacity, &[]).await
    }

    /// [`Self::start`], with `host_env` set in the host's environment (e.g.
    /// `MANMAN_COMMAND_TTL_S`).
    ///
    /// # Panics
    ///
    /// As [`Self::start`].
    pub async fn start_with_host_env(
        label: &str,
        programs: Programs<'static>,
        workers: usize,
        capacity: u32,
        host_env: &[(&str, &str)],
    ) -> Option<Self> {
        let database = TestDatabase::create(label).await?;
        let vhost = TestVhost::create()?;
        let dir = reachable_tempdir();
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let admin_token = ADMIN_TOKEN;
        let token_file = dir.path().join("admin-token");
        std::fs::write(&token_file, admin_token).expect("token file");
        let mut host_command = Command::new(programs.host);
        host_command
            .env("MANMAN_BIND", format!("127.0.0.1:{port}"))
            .env("MANMAN_POSTGRES_URL", &database.url)
            .env("MANMAN_RABBITMQ_URL", vhost.url())
            .env("MANMAN_ADMIN_TOKEN_FILE", &token_file)
            .env("APP_ENV", "prod")
            .env("RUST_LOG", "warn")
            .envs(host_env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log_file(dir.path(), "host"));
        let host = Daemon(host_command.spawn().expect("host"));
        let client = Client::new(&url).with_token(admin_token);
        eventually("the host to serve", WAIT, || async {
            client.list_workers().await.ok()
        })
        .await;
        let mut daemons = Vec::new();
        let mut commands = Vec::new();
        for i in 1..=workers {
            let mut command = worker_command(
                &client,
                programs,
                dir.path(),
                &url,
                vhost.url(),
                &format!("w{i}"),
                capacity,
            )
            .await;
            daemons.push(Daemon(command.spawn().expect("worker")));
            commands.push(command);
        }
        eventually("every worker to run", WAIT, || async {
            let running = client
                .list_workers()
                .await
                .ok()?
                .iter()
                .filter(|w| w.status == Status::Running)
                .count();
            (running == workers).then_some(())
        })
        .await;
        Some(Self {
            client,
            host,
            host_command,
            workers: daemons,
            worker_commands: commands,
            amqp_url: vhost.url().to_owned(),
            database,
            vhost,
            dir,
            programs,
            url,
            capacity,
        })
    }

    /// The host's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The host's admin token.
    pub fn admin_token(&self) -> &str {
        ADMIN_TOKEN
    }

    /// Kills the host process (SIGKILL: nothing said to anyone) and starts it again on the same
    /// database, broker, port and token; returns once it serves. The workers go on.
    ///
    /// # Panics
    ///
    /// When it cannot start again.
    pub async fn restart_host(&mut self) {
        self.end_host();
        self.start_host_again().await;
    }

    /// Kills the host process (SIGKILL), without starting it again.
    pub fn end_host(&mut self) {
        let _ = self.host.0.kill();
        let _ = self.host.0.wait();
    }

    /// Starts the host again on the same database, broker, port and token; returns once it
    /// serves.
    ///
    /// # Panics
    ///
    /// When it cannot start again.
    pub async fn start_host_again(&mut self) {
        self.host = Daemon(self.host_command.spawn().expect("host again"));
        eventually("the host to serve again", WAIT, || async {
            self.client.list_workers().await.ok()
        })
        .await;
    }

    /// The fake game server as a game, and a config of it with `edit` applied (stop line
    /// `quit`, no ready pattern unless `edit` sets one).
    ///
    /// # Panics
    ///
    /// When the host refuses them.
    pub async fn config(&self, name: &str, edit: impl FnOnce(&mut ConfigSpec)) -> ConfigId {
        let game = match self
            .client
            .list_games()
            .await
            .expect("games")
            .into_iter()
            .find(|g| g.name == "fake")
        {
            Some(game) => game,
            None => self
                .client
                .create_game(&NewGameServer {
                    name: "fake".into(),
                    server_type: ServerType::Local {
                        path: "games/fake".into(),
                    },
                })
                .await
                .expect("game"),
        };
        let mut spec = ConfigSpec::new(name, "fake-game-server");
        spec.stop.stdin_line = Some("quit".into());
        edit(&mut spec);
        self.client
            .create_config(game.id, &spec)
            .await
            .expect("config")
            .id
    }

    /// Starts `config` on the worker named `worker`; returns the new instance.
    ///
    /// # Panics
    ///
    /// When the host refuses.
    pub async fn start_on(&self, config: ConfigId, worker: &str) -> InstanceId {
        self.client
            .start(&StartRequest {
                config_id: config,
                worker: Some(worker.to_owned()),
                labels: std::collections::BTreeMap::new(),
            })
            .await
            .expect("start")
            .instance_id
    }

    /// Starts one more worker process, `name`, on the broker at `amqp_url` (e.g. as a broker
    /// user of its own: [`TestVhost::add_user`]), and waits until it runs.
    ///
    /// # Panics
    ///
    /// When it cannot start or does not come up.
    pub async fn add_worker(&mut self, name: &str, amqp_url: &str) {
        let mut command = worker_command(
            &self.client,
            self.programs,
            self.dir.path(),
            &self.url,
            amqp_url,
            name,
            self.capacity,
        )
        .await;
        self.workers.push(Daemon(command.spawn().expect("worker")));
        self.worker_commands.push(command);
        eventually(&format!("worker {name} to run"), WAIT, || async {
            let workers = self.client.list_workers().await.ok()?;
            workers
                .iter()
                .any(|w| w.name == name && w.status == Status::Running)
                .then_some(())
        })
        .await;
    }

    /// Ends worker process `index` (0 for `w1`) — SIGKILL, or SIGTERM waiting for it to exit
    /// — without starting it again.
    ///
    /// # Panics
    ///
    /// When it cannot be signalled or waited for.
    pub fn end_worker(&mut self, index: usize, kill: bool) {
        let child = &mut self.workers[index].0;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        let signal = if kill {
            nix::sys::signal::Signal::SIGKILL
        } else {
            nix::sys::signal::Signal::SIGTERM
        };
        nix::sys::signal::kill(pid, signal).expect("signal the worker");
        child.wait().expect("wait for the worker");
    }

    /// Starts worker process `index` again (same name, credentials, directories, settings),
    /// without waiting for it.
    ///
    /// # Panics
    ///
    /// When it cannot start.
    pub fn spawn_worker_again(&mut self, index: usize) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.log(&format!("w{}", index + 1)))
            .expect("log file");
        self.worker_commands[index].stderr(log);
        self.workers[index] = Daemon(self.worker_commands[index].spawn().expect("worker"));
    }

    /// Starts worker process `index` again (same name, credentials, directories, settings) and
    /// waits until the host shows a registration newer than `after_epoch` running.
    ///
    /// # Panics
    ///
    /// When it cannot start or does not come up.
    pub async fn start_worker_again(&mut self, index: usize, after_epoch: i64) {
        self.spawn_worker_again(index);
        let name = format!("w{}", index + 1);
        eventually(&format!("worker {name} to run again"), WAIT, || async {
            let workers = self.client.list_workers().await.ok()?;
            workers
                .iter()
                .any(|w| w.name == name && w.epoch > after_epoch && w.status == Status::Running)
                .then_some(())
        })
        .await;
    }

    /// The install directory of the worker `worker` (`w1`, …).
    pub fn install_dir(&self, worker: &str) -> PathBuf {
        self.dir.path().join(worker)
    }

    /// Where a process of the system logs (`host.log`, `w1.log`, …), for a failing test.
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// The console log an instance has on the worker `worker` (`w1`, …): every line its server
    /// printed or was sent, as the worker wrote it to disk.
    pub fn console_log(&self, worker: &str, id: InstanceId) -> PathBuf {
        self.dir
            .path()
            .join(worker)
            .join(".manman/logs")
            .join(format!("instance-{}.log", id.get()))
    }
}

/// Lines of each daemon's log shown when a test fails.
const LOG_TAIL: usize = 60;

impl Drop for System {
    /// When the test failed, prints the end of the host's and each worker's log (warnings and
    /// errors), so that a failure in CI says what the daemons saw.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let names = std::iter::once("host".to_owned())
            .chain((1..=self.workers.len()).map(|i| format!("w{i}")));
        for name in names {
            let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                .unwrap_or_else(|e| format!("(no log: {e})"));
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            eprintln!(
                "--- {name}.log: last {} of {} lines ---\n{}",
                tail.len(),
                lines.len(),
                tail.join("\n")
            );
        }
    }
}

/// The command of a worker process `name` of the host at `url`, with new credentials, on the
/// broker at `amqp_url`, its install directory `<dir>/<name>` holding the fake game server.
async fn worker_command(
    client: &Client,
    programs: Programs<'_>,
    dir: &Path,
    url: &str,
    amqp_url: &str,
    name: &str,
    capacity: u32,
) -> Command {
    let install = dir.join(name);
    install_program(programs.fake, &install.join("games/fake/fake-game-server"));
    let credentials = client
        .create_worker_credential(name)
        .await
        .expect("credentials");
    let mut command = Command::new(programs.worker);
    if let Some(fake_steamcmd) = programs.steamcmd {
        let steam = dir.join(format!("{name}-steam"));
        std::fs::create_dir_all(&steam).expect("dir");
        // SteamCMD runs as the game servers' user (the tests run as root); the fake one
        // writes its records beside itself.
        std::fs::set_permissions(&steam, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .expect("chmod");
        let steamcmd = steam.join("steamcmd.sh");
        std::fs::copy(fake_steamcmd, &steamcmd).expect("copy the fake steamcmd");
        std::fs::set_permissions(
            &steamcmd,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        std::fs::write(steam.join("scenario"), "BUILD_ID=4242\nSLEEP=0\n").expect("scenario");
        command.env("MANMAN_WORKER_STEAMCMD", &steamcmd);
    }
    if let Some(shim) = programs.shim {
        command
            .env("MANMAN_WORKER_SHIM", shim.program)
            .env("MANMAN_WORKER_SHIM_GRACE_S", shim.grace_s.to_string())
            .env("MANMAN_WORKER_ON_SHUTDOWN", "leave-running");
    }
    command
        .env("MANMAN_HOST_URL", url)
        .env("MANMAN_RABBITMQ_URL", amqp_url)
        .env("MANMAN_WORKER_NAME", name)
        .env(
            "MANMAN_WORKER_SA_CLIENT_ID",
            &credentials.credential.client_id,
        )
        .env("MANMAN_WORKER_SA_CLIENT_SECRET", &credentials.client_secret)
        .env("MANMAN_WORKER_INSTALL_DIRECTORY", &install)
        .env("MANMAN_WORKER_CAPACITY", capacity.to_string())
        .env("MANMAN_WORKER_HEARTBEAT_MS", "500")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log_file(dir, name));
    command
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file")
}
