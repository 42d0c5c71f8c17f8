//! The worker's own life: heartbeats that survive a flaky host, "superseded", leftovers of a
//! worker that died, and signals to a real `manman up` process.

use async_trait::async_trait;
use manman_core::bus::Bus;
use manman_core::config::{ConfigSpec, StopPolicy};
use manman_core::console::ConsoleTail;
use manman_core::host::{HostService, LocalHostApi, StartRequest};
use manman_core::id::{InstanceId, WorkerId};
use manman_core::memory::{MemoryBus, MemoryStore};
use manman_core::ports::{ConfigBundle, HostApi, HostApiError, SystemClock};
use manman_core::process::TokioProcessRunner;
use manman_core::status::{Cause, Status};
use manman_core::store::Store;
use manman_core::worker::{Heartbeat, Registered, WorkerRegistration};
use manman_core::worker_service::{LocalInstaller, WorkerExit, WorkerService, WorkerSettings};
use manman_http::Client;
use manman_tests::harness::{Harness, WAIT, fake_pid, log_texts};
use manman_tests::{eventually, pid_alive};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const FAKE: &str = env!("CARGO_BIN_EXE_e2e-fake-game-server");
const MANMAN: &str = env!("CARGO_BIN_EXE_e2e-manman");

/// A host whose heartbeat endpoint fails the first `failures` beats, then answers "superseded"
/// from beat `supersede_at` on. Records when each beat arrived.
#[derive(Debug)]
struct FlakyHost {
    inner: LocalHostApi,
    beats: Mutex<Vec<Instant>>,
    failures: usize,
    supersede_at: usize,
    seen: AtomicUsize,
}

#[async_trait]
impl HostApi for FlakyHost {
    async fn register(
        &self,
        registration: &WorkerRegistration,
    ) -> Result<Registered, HostApiError> {
        self.inner.register(registration).await
    }

    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), HostApiError> {
        self.beats.lock().expect("beats").push(Instant::now());
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if n <= self.failures {
            return Err(HostApiError::Unavailable {
                detail: "the test says no".to_owned(),
            });
        }
        if n >= self.supersede_at {
            return Err(HostApiError::Superseded {
                worker_id: heartbeat.worker_id,
                epoch: heartbeat.epoch,
            });
        }
        self.inner.heartbeat(heartbeat).await
    }

    async fn fetch_instance_config(
        &self,
        worker: WorkerId,
        instance: InstanceId,
    ) -> Result<ConfigBundle, HostApiError> {
        self.inner.fetch_instance_config(worker, instance).await
    }

    async fn keep_console_tail(
        &self,
        worker: WorkerId,
        instance: InstanceId,
        tail: &ConsoleTail,
    ) -> Result<(), HostApiError> {
        self.inner.keep_console_tail(worker, instance, tail).await
    }
}

#[tokio::test(start_paused = true)]
async fn failed_heartbeats_are_retried_with_backoff_and_superseded_stops_the_worker() {
    let memory = MemoryBus::new();
    let bus = Bus::new(Arc::new(memory.clone()), Arc::new(memory));
    bus.declare().await.expect("topology");
    let host = HostService::new(
        Store::from_adapter(MemoryStore::new()),
        bus.clone(),
        Arc::new(SystemClock),
    );
    let flaky = Arc::new(FlakyHost {
        inner: LocalHostApi::new(host),
        beats: Mutex::default(),
        failures: 3,
        supersede_at: 5,
        seen: AtomicUsize::new(0),
    });
    let dir = tempfile::tempdir().expect("dir");
    let mut settings = WorkerSettings::new("beating", dir.path());
    settings.heartbeat_interval = Duration::from_secs(2);
    let worker = WorkerService::new(
        settings,
        flaky.clone(),
        bus,
        Arc::new(LocalInstaller),
        Arc::new(TokioProcessRunner::new()),
        Arc::new(SystemClock),
    );
    let exit = tokio::time::timeout(
        Duration::from_secs(60),
        worker.run(CancellationToken::new()),
    )
    .await
    .expect("the worker exits by itself")
    .expect("no error");
    assert_eq!(exit, WorkerExit::Superseded, "superseded stops the worker");
    let beats = flaky.beats.lock().expect("beats").clone();
    let gaps: Vec<u128> = beats
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    assert_eq!(
        gaps,
        [250, 500, 1_000, 2_000],
        "retries come sooner, doubling up to the interval"
    );
}

/// A worker "killed": its runtime is dropped without any shutdown, as if the process died.
#[test]
fn a_worker_that_died_has_its_leftover_groups_ended_and_reported_when_it_restarts() {
    let main = tokio::runtime::Runtime::new().expect("runtime");
    main.block_on(async {
        let h = Harness::new(FAKE.as_ref()).await;
        let settings = h.settings("phoenix");
        let config = h.config("main", |_| {}).await;

        let doomed = tokio::runtime::Runtime::new().expect("runtime");
        // Servers outlive this worker, as they would with the parent-death signal turned off.
        let first = h.worker(
            settings.clone(),
            TokioProcessRunner::new().die_with_worker(false),
        );
        doomed.spawn(first.run(CancellationToken::new()));
        eventually("the first worker to run", WAIT, || async {
            let workers = h.host.workers().list_workers().await.expect("workers");
            workers
                .iter()
                .any(|w| w.status == Status::Running)
                .then_some(())
        })
        .await;
        let id = h.start(config).await;
        h.wait_status(id, Status::Running).await;
        h.host
            .instances()
            .stdin(id, "spawn-child", "test")
            .await
            .expect("stdin");
        let log = eventually("the child's pid", WAIT, || async {
            let log = std::fs::read_to_string(Harness::log_path(&settings, id)).unwrap_or_default();
            log.contains(" child ").then_some(log)
        })
        .await;
        let server = fake_pid(&log);
        let child: u32 = log_texts(&log)
            .iter()
            .find_map(|t| t.strip_prefix("child "))
            .expect("child")
            .parse()
            .expect("pid");

        doomed.shutdown_background();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            pid_alive(server) && pid_alive(child),
            "the dead worker left its server running"
        );

        let second = h
            .spawn_worker(h.worker(settings.clone(), TokioProcessRunner::new()))
            .await;
        let crashed = h.wait_status(id, Status::Crashed).await;
        assert_eq!(crashed.id, id);
        let last = h.history(id).await.pop().expect("history");
        assert_eq!(last.cause, Cause::WorkerRestart);
        assert!(
            last.detail
                .as_deref()
                .is_some_and(|d| d.contains("was ended")),
            "{last:?}"
        );
        eventually("the leftover group to be gone", WAIT, || async {
            (!pid_alive(server) && !pid_alive(child)).then_some(())
        })
        .await;
        let workers = h.host.workers().list_workers().await.expect("workers");
        assert_eq!(workers.len(), 1, "the same worker, registered again");
        assert_eq!(workers[0].epoch, 2);
        second.stop().await;
    });
}

/// `manman up` as a real process, its API address read from its first line.
struct Up {
    child: Child,
    client: Client,
    _data: tempfile::TempDir,
}

/// The admin token `manman up` keeps in its data directory (written before it prints its URL).
fn admin_token(data_dir: &std::path::Path) -> String {
    std::fs::read_to_string(data_dir.join("admin-token"))
        .expect("manman up keeps its admin token")
        .trim()
        .to_owned()
}

impl Up {
    fn start(capacity: u32) -> Self {
        let data = tempfile::tempdir().expect("dir");
        let mut child = std::process::Command::new(MANMAN)
            .args([
                "up",
                "--bind",
                "127.0.0.1:0",
                "--capacity",
                &capacity.to_string(),
            ])
            .arg("--data-dir")
            .arg(data.path())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(data.path().join("stderr.log")).expect("log"))
            .spawn()
            .expect("spawn manman up");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        reader.read_line(&mut first).expect("first line");
        // Keep reading, as a terminal would.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .and_then(|u| u.strip_suffix("/api/v1"))
            .unwrap_or_else(|| panic!("no API address in {first:?}"))
            .to_owned();
        Self {
            child,
            client: Client::new(&url).with_token(admin_token(data.path())),
            _data: data,
        }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, signal).expect("signal");
    }

    /// Waits (bounded) for the process to exit; its exit code.
    async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "manman up did not exit within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts `count` servers (a config each) and returns their pids once all run.
    async fn start_servers(&self, count: usize, stop: StopPolicy, args: &[&str]) -> Vec<u32> {
        let game = self.client.list_games().await.expect("games")[0].id;
        let mut ids = Vec::new();
        for n in 0..count {
            let mut spec = ConfigSpec::new(format!("s{n}"), "fake-game-server");
            spec.args = args.iter().map(|a| (*a).to_owned()).collect();
            spec.stop = stop.clone();
            let config = self
                .client
                .create_config(game, &spec)
                .await
                .expect("config");
            let started = self
                .client
                .start(&StartRequest::new(config.id))
                .await
                .expect("start");
            ids.push(started.instance_id);
        }
        let mut pids = Vec::new();
        for id in ids {
            eventually("an instance to run", WAIT, || async {
                (self.client.get_instance(id).await.expect("get").status == Status::Running)
                    .then_some(())
            })
            .await;
            let mut console = Box::pin(self.client.console(id, None).await.expect("console"));
            let first = futures::StreamExt::next(&mut console)
                .await
                .expect("a line")
                .expect("ok");
            pids.push(fake_pid(&first.text));
        }
        pids
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sigterm_to_a_worker_running_twenty_servers_stops_them_all() {
    let mut up = Up::start(32);
    let quit = StopPolicy {
        stdin_line: Some("quit".to_owned()),
        timeout_s: 10,
        ..StopPolicy::default()
    };
    let pids = up.start_servers(20, quit, &[]).await;
    assert_eq!(pids.len(), 20);
    let dead: Vec<_> = pids.iter().filter(|p| !pid_alive(**p)).collect();
    if !dead.is_empty() {
        let instances = up
            .client
            .list_instances(&Default::default())
            .await
            .expect("list");
        panic!("dead {dead:?} of {pids:?}: {instances:#?}");
    }
    up.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(up.exit_code(WAIT).await, Some(0), "a clean exit");
    assert!(pids.iter().all(|p| !pid_alive(*p)), "no server left behind");
}

#[tokio::test]
async fn a_second_signal_kills_at_once() {
    let mut up = Up::start(16);
    let patient = StopPolicy {
        stdin_line: Some("ignored".to_owned()),
        timeout_s: 600,
        ..StopPolicy::default()
    };
    let pids = up.start_servers(3, patient, &["--ignore-sigterm"]).await;
    up.signal(nix::sys::signal::Signal::SIGINT);
    tokio::time::sleep(Duration::from_millis(500)).await;
    if up.child.try_wait().expect("try_wait").is_some() {
        let log = std::fs::read_to_string(up._data.path().join("stderr.log")).unwrap_or_default();
        panic!("manman up exited already:\n{log}");
    }
    assert!(pids.iter().all(|p| pid_alive(*p)));
    up.signal(nix::sys::signal::Signal::SIGINT);
    assert_eq!(up.exit_code(WAIT).await, Some(0));
    assert!(pids.iter().all(|p| !pid_alive(*p)), "killed");
}

#[tokio::test]
async fn manman_up_keeps_running_when_its_output_is_closed() {
    let data = tempfile::tempdir().expect("dir");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
        probe.local_addr().expect("addr").port()
    };
    let mut child = std::process::Command::new(MANMAN)
        .args(["up", "--bind", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn manman up");
    // Like `manman up | head -0`: nobody reads what it prints.
    drop(child.stdout.take());
    let client = Client::new(&format!("http://127.0.0.1:{port}"));
    eventually("the API to answer", WAIT, || async {
        client.healthy().await.then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "still running"
    );
    assert!(client.healthy().await);
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn a_sigkilled_manman_up_restarted_on_its_data_dir_ends_what_its_servers_left() {
    let data = tempfile::tempdir().expect("dir");
    let spawn_up = || {
        std::process::Command::new(MANMAN)
            .args(["up", "--bind", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn manman up")
    };
    let read_url = |child: &mut Child| {
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        reader.read_line(&mut first).expect("first line");
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .and_then(|u| u.strip_suffix("/api/v1"))
            .expect("url")
            .to_owned()
    };
    let mut first = spawn_up();
    let client = Client::new(&read_url(&mut first)).with_token(admin_token(data.path()));
    let game = client.list_games().await.expect("games")[0].id;
    let config = client
        .create_config(game, &ConfigSpec::new("main", "fake-game-server"))
        .await
        .expect("config");
    let id = client
        .start(&StartRequest::new(config.id))
        .await
        .expect("start")
        .instance_id;
    eventually("the server to run", WAIT, || async {
        (client.get_instance(id).await.expect("get").status == Status::Running).then_some(())
    })
    .await;
    client.stdin(id, "spawn-child").await.expect("stdin");
    let mut console = Box::pin(client.console(id, None).await.expect("console"));
    let mut server = None;
    let child = loop {
        let line = futures::StreamExt::next(&mut console)
            .await
            .expect("a line")
            .expect("ok");
        if line.text.starts_with("Starting fake game server") {
            server = Some(fake_pid(&line.text));
        }
        if let Some(pid) = line.text.strip_prefix("child ") {
            break pid.parse::<u32>().expect("pid");
        }
    };
    let server = server.expect("the server's pid");
    drop(console);

    first.kill().expect("SIGKILL manman up");
    first.wait().expect("reaped");
    eventually("the server to die with its worker", WAIT, || async {
        (!pid_alive(server)).then_some(())
    })
    .await;
    assert!(
        pid_alive(child),
        "the server's own child outlived the worker"
    );

    let mut second = spawn_up();
    let _url = read_url(&mut second);
    eventually(
        "the restarted worker to end the leftover group",
        WAIT,
        || async { (!pid_alive(child)).then_some(()) },
    )
    .await;
    let _ = second.kill();
    let _ = second.wait();
}

#[tokio::test]
async fn a_shutdown_worker_command_stops_everything_and_ends_the_worker() {
    let h = Harness::new(FAKE.as_ref()).await;
    let settings = h.settings("w");
    let worker = h
        .spawn_worker(h.worker(settings.clone(), TokioProcessRunner::new()))
        .await;
    let config = h.config("main", |_| {}).await;
    let id = h.start(config).await;
    h.wait_status(id, Status::Running).await;
    let pid = fake_pid(&Harness::wait_log(&settings, id, "Server is ready").await);
    let worker_id = h.host.workers().list_workers().await.expect("workers")[0].id;
    h.host
        .workers()
        .shutdown_worker(worker_id, "test")
        .await
        .expect("send");
    let exit = tokio::time::timeout(WAIT, worker.task)
        .await
        .expect("in time")
        .expect("no panic")
        .expect("no error");
    assert_eq!(exit, WorkerExit::Shutdown);
    h.wait_status(id, Status::Complete).await;
    assert!(!pid_alive(pid));
    eventually("the worker to be complete", WAIT, || async {
        let w = h.host.workers().list_workers().await.expect("workers");
        (w[0].status == Status::Complete).then_some(())
    })
    .await;
}

/// A host API whose heartbeats fail while `silent` is set: a network partition between a worker
/// and its host.
#[derive(Debug)]
struct Partition {
    inner: LocalHostApi,
    silent: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl HostApi for Partition {
    async fn register(
        &self,
        registration: &WorkerRegistration,
    ) -> Result<Registered, HostApiError> {
        self.inner.register(registration).await
    }

    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), HostApiError> {
        if self.silent.load(Ordering::SeqCst) {
            return Err(HostApiError::Unavailable {
                detail: "partitioned".to_owned(),
            });
        }
        self.inner.heartbeat(heartbeat).await
    }

    async fn fetch_instance_config(
        &self,
        worker: WorkerId,
        instance: InstanceId,
    ) -> Result<ConfigBundle, HostApiError> {
        self.inner.fetch_instance_config(worker, instance).await
    }

    async fn keep_console_tail(
        &self,
        worker: WorkerId,
        instance: InstanceId,
        tail: &ConsoleTail,
    ) -> Result<(), HostApiError> {
        self.inner.keep_console_tail(worker, instance, tail).await
    }
}

#[tokio::test]
async fn a_silent_worker_is_lost_with_its_instances_and_recovers_when_heard_again() {
    let h = Harness::new(FAKE.as_ref()).await;
    let sweep = manman_core::host::LeaseSweep::new(
        h.host.store().clone(),
        Arc::new(SystemClock),
        manman_core::host::Lease {
            duration: Duration::from_secs(1),
            interval: Duration::from_millis(100),
        },
    );
    let stop_sweep = CancellationToken::new();
    tokio::spawn({
        let token = stop_sweep.clone();
        async move { sweep.run(token).await }
    });
    let partition = Arc::new(Partition {
        inner: LocalHostApi::new(h.host.clone()),
        silent: std::sync::atomic::AtomicBool::new(false),
    });
    let mut settings = h.settings("flaky-link");
    settings.heartbeat_interval = Duration::from_millis(200);
    let worker = WorkerService::new(
        settings,
        partition.clone(),
        h.bus.clone(),
        Arc::new(LocalInstaller),
        Arc::new(TokioProcessRunner::new()),
        Arc::new(SystemClock),
    );
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(worker.run(shutdown.clone()));
    let config = h.config("main", |_| {}).await;
    let id = eventually("a worker to take the start", WAIT, || async {
        h.host
            .instances()
            .start(&StartRequest::new(config), "test")
            .await
            .ok()
    })
    .await
    .instance_id;
    h.wait_status(id, Status::Running).await;

    partition.silent.store(true, Ordering::SeqCst);
    h.wait_status(id, Status::Lost).await;
    let worker_state = h
        .host
        .workers()
        .list_workers()
        .await
        .expect("workers")
        .pop()
        .expect("worker");
    assert_eq!(worker_state.status, Status::Lost);
    assert_eq!(
        h.history(id).await.last().map(|e| e.cause),
        Some(Cause::LeaseExpired)
    );

    partition.silent.store(false, Ordering::SeqCst);
    h.wait_status(id, Status::Running).await;
    assert_eq!(
        h.history(id).await.last().map(|e| e.cause),
        Some(Cause::Recovered)
    );
    eventually("the worker to be running again", WAIT, || async {
        let w = h
            .host
            .workers()
            .list_workers()
            .await
            .expect("workers")
            .pop()?;
        (w.status == Status::Running).then_some(())
    })
    .await;

    shutdown.cancel();
    let _ = tokio::time::timeout(WAIT, task).await;
    stop_sweep.cancel();
}
