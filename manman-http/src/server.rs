//! [`HostServer`]: the host's HTTP API with the background services behind it (status
//! processor, console and event hubs, dead-letter watcher, lease and command sweeps, retention),
//! started and stopped together.

use crate::api::{ApiState, router, worker_router};
use crate::http_limits::HttpLimits;
use crate::stream_guard::{StreamLimits, StreamSlots};
use manman_core::host::{
    Authenticator, CommandExpiry, CommandSweep, ConsoleHub, DeadCommands, DeadLetters, EventHub,
    HostService, Lease, LeaseSweep, Metrics, Retention, RetentionPolicy, SigningKey,
    StatusProcessor,
};
use manman_core::ports::BusError;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a background service may take to stop once the host shuts down (it finishes what it
/// holds, e.g. a batch of status events); after that it is dropped, and what it had not
/// acknowledged is redelivered to the next host.
const SERVICE_GRACE: Duration = Duration::from_secs(3);

/// Runs a background service until `shutdown`; when it stops with an error it is logged and
/// started again after a pause (1 s, doubling up to 30 s; back to 1 s after a run of more than
/// 30 s, so that a fault long after the last one is recovered from quickly), so the host never
/// silently runs without it. At shutdown it gets [`SERVICE_GRACE`] to stop, even when what it waits for (a
/// broker that went away) never answers.
async fn keep_running<F, Fut>(name: &'static str, shutdown: CancellationToken, mut service: F)
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), BusError>>,
{
    const FIRST_PAUSE: Duration = Duration::from_secs(1);
    const MAX_PAUSE: Duration = Duration::from_secs(30);
    let mut pause = FIRST_PAUSE;
    loop {
        let started = tokio::time::Instant::now();
        let run = service(shutdown.clone());
        tokio::pin!(run);
        let outcome = tokio::select! {
            outcome = &mut run => outcome,
            () = shutdown.cancelled() => match tokio::time::timeout(SERVICE_GRACE, &mut run).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    tracing::warn!(service = name, "did not stop within {SERVICE_GRACE:?} of the shutdown: dropped");
                    return;
                }
            },
        };
        if started.elapsed() > MAX_PAUSE {
            pause = FIRST_PAUSE;
        }
        match outcome {
            _ if shutdown.is_cancelled() => return,
            Ok(()) => tracing::error!(
                service = name,
                "stopped unexpectedly; restarting in {pause:?}"
            ),
            Err(e) => {
                tracing::error!(service = name, error = %e, "failed; restarting in {pause:?}")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// How a [`HostServer`] serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where the API listens.
    pub bind: SocketAddr,
    /// How long history is kept.
    pub retention: RetentionPolicy,
    /// How long a worker may be silent before it is `lost`.
    pub lease: Lease,
    /// What worker tokens are signed with (shared by host replicas behind one address).
    pub signing_key: SigningKey,
    /// Serve the operator API too (else only what workers need: [`worker_router`]).
    pub experience_api: bool,
    /// How long a client may take to send a request, how long a connection may idle, and how
    /// many connections are served at once: what keeps any client (with a token or without)
    /// from holding the host's connections.
    pub http: HttpLimits,
    /// How many SSE streams (console, events) it serves at once, per token and in all.
    pub streams: StreamLimits,
}

impl ServeOptions {
    /// Listen on `bind`, default retention, lease and HTTP limits, a random signing key.
    pub fn new(bind: SocketAddr) -> Self {
        Self {
            bind,
            retention: RetentionPolicy::default(),
            lease: Lease::default(),
            signing_key: SigningKey::random(),
            experience_api: true,
            http: HttpLimits::default(),
            streams: StreamLimits::default(),
        }
    }
}

/// How long [`HostServer::stop`] waits for its tasks.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running host: API, status processor and console hub, each a tracked task.
#[derive(Debug)]
pub struct HostServer {
    addr: SocketAddr,
    auth: Authenticator,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl HostServer {
    /// Listens on `bind` and starts the services of `host`. Fails when `bind` cannot be
    /// listened on, or when `options.http` holds a limit no server can run with (see
    /// [`HttpLimits::check`]).
    pub async fn start(host: HostService, options: ServeOptions) -> std::io::Result<Self> {
        options
            .http
            .check()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = tokio::net::TcpListener::bind(options.bind).await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();

        let metrics = Metrics::new();
        let dead_letters = DeadLetters::new(metrics.clone());
        let processor =
            StatusProcessor::new(host.store().clone(), host.bus().clone(), host.clock())
                .with_metrics(metrics.clone())
                .with_dead_letters(dead_letters.clone())
                .with_consumption(host.status_consumption().clone());
        tracker.spawn(keep_running(
            "status processor",
            shutdown.clone(),
            move |token| {
                let processor = processor.clone();
                async move { processor.run(token).await }
            },
        ));
        let console = ConsoleHub::default().checking_senders_in(host.store());
        let (hub, bus) = (console.clone(), host.bus().clone());
        tracker.spawn(keep_running(
            "console hub",
            shutdown.clone(),
            move |token| {
                let (hub, bus) = (hub.clone(), bus.clone());
                async move { hub.run(&bus, token).await }
            },
        ));

        let events = EventHub::default().checking_senders_in(host.store());
        let (hub, bus) = (events.clone(), host.bus().clone());
        tracker.spawn(keep_running("event hub", shutdown.clone(), move |token| {
            let (hub, bus) = (hub.clone(), bus.clone());
            async move { hub.run(&bus, token).await }
        }));

        let dead = DeadCommands::new(host.store().clone(), host.bus().clone(), host.clock())
            .with_metrics(metrics.clone())
            .with_dead_letters(dead_letters.clone());
        tracker.spawn(keep_running(
            "dead-letter watcher",
            shutdown.clone(),
            move |token| {
                let dead = dead.clone();
                async move { dead.run(token).await }
            },
        ));
        let sweep = LeaseSweep::new(host.store().clone(), host.clock(), options.lease);
        let token = shutdown.clone();
        tracker.spawn(async move { sweep.run(token).await });
        let expiry =
            CommandSweep::new(host.store().clone(), host.clock(), CommandExpiry::default())
                .with_metrics(metrics.clone());
        let token = shutdown.clone();
        tracker.spawn(async move { expiry.run(token).await });
        let retention = Retention::new(host.store().clone(), host.clock(), options.retention);
        let token = shutdown.clone();
        tracker.spawn(async move { retention.run(token).await });

        let auth = Authenticator::new(
            host.store().credentials.clone(),
            host.clock(),
            options.signing_key,
        );
        let state = ApiState {
            host,
            console,
            auth: auth.clone(),
            metrics,
            shutdown: shutdown.clone(),
            events,
            streams: StreamSlots::new(options.streams),
            dead_letters,
        };
        let app = if options.experience_api {
            router(state)
        } else {
            worker_router(state)
        };
        let token = shutdown.clone();
        let limits = options.http;
        tracker.spawn(async move { crate::connections::serve(listener, app, limits, token).await });
        tracker.close();
        Ok(Self {
            addr,
            auth,
            shutdown,
            tracker,
        })
    }

    /// Where the API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Tokens and worker credentials of this host: e.g. [`Authenticator::ensure_admin`] at
    /// start.
    pub fn auth(&self) -> &Authenticator {
        &self.auth
    }

    /// Stops the API (open streams end) and the services, waiting up to 10 s.
    pub async fn stop(self) {
        self.shutdown.cancel();
        if tokio::time::timeout(STOP_TIMEOUT, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("the host's services did not stop within {STOP_TIMEOUT:?}");
        }
    }
}
