//! [`HostRuntime`]: the host's background services as one list, each supervised, under one
//! shutdown — the status processor, the console and event hubs, the dead-letter watcher, the
//! lease and command sweeps, retention, and whatever an embedder adds (the HTTP server is one of
//! them: `manman_http::HostServer` adds it).

use crate::host::supervision::keep_running;
use crate::host::{
    BackgroundService, CommandExpiry, CommandSweep, ConsoleHub, DeadCommands, DeadLetters,
    EventHub, HostService, Lease, LeaseSweep, Metrics, Retention, RetentionPolicy, StatusProcessor,
    service_fn,
};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long [`RunningHost::stop`] waits for the services to stop.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the host's own services run with.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuntimeOptions {
    /// How long history is kept ([`Retention`]).
    pub retention: RetentionPolicy,
    /// How long a worker may be silent before it is `lost` ([`LeaseSweep`]).
    pub lease: Lease,
    /// When an untaken command is expired ([`CommandSweep`]).
    pub command_expiry: CommandExpiry,
}

/// The host's background services, before they start: the standard ones, and those added with
/// [`add_service`](Self::add_service). [`start`](Self::start) runs each under supervision
/// (restarted with backoff after a failure or a panic, named in logs and in `/metrics`) until
/// [`RunningHost::stop`].
///
/// The parts the services share with an API — console and event hubs, metrics, dead letters,
/// the shutdown token that ends open streams — are built here and handed out by reference, so
/// a server (or an embedder's own router) reads what the services write.
#[derive(Debug)]
pub struct HostRuntime {
    host: HostService,
    console: ConsoleHub,
    events: EventHub,
    metrics: Metrics,
    dead_letters: DeadLetters,
    shutdown: CancellationToken,
    services: Vec<Arc<dyn BackgroundService>>,
}

impl HostRuntime {
    /// The runtime of `host` with its standard services: `status processor`, `console hub`,
    /// `event hub`, `dead-letter watcher`, `lease sweep`, `command sweep`, `retention`.
    pub fn new(host: HostService, options: RuntimeOptions) -> Self {
        let metrics = Metrics::new();
        let dead_letters = DeadLetters::new(metrics.clone());
        let console = ConsoleHub::default().checking_senders_in(host.store());
        let events = EventHub::default().checking_seals_in(host.store());
        let mut runtime = Self {
            console,
            events,
            metrics,
            dead_letters,
            shutdown: CancellationToken::new(),
            services: Vec::new(),
            host,
        };
        runtime.add_standard_services(options);
        runtime
    }

    fn add_standard_services(&mut self, options: RuntimeOptions) {
        let host = self.host.clone();
        let processor =
            StatusProcessor::new(host.store().clone(), host.bus().clone(), host.clock())
                .with_metrics(self.metrics.clone())
                .with_dead_letters(self.dead_letters.clone())
                .with_consumption(host.status_consumption().clone());
        self.add_service(service_fn("status processor", move |token| {
            let processor = processor.clone();
            async move { processor.run(token).await }
        }));
        let (hub, bus) = (self.console.clone(), host.bus().clone());
        self.add_service(service_fn("console hub", move |token| {
            let (hub, bus) = (hub.clone(), bus.clone());
            async move { hub.run(&bus, token).await }
        }));
        let (hub, bus) = (self.events.clone(), host.bus().clone());
        self.add_service(service_fn("event hub", move |token| {
            let (hub, bus) = (hub.clone(), bus.clone());
            async move { hub.run(&bus, token).await }
        }));
        let dead = DeadCommands::new(host.store().clone(), host.bus().clone(), host.clock())
            .with_metrics(self.metrics.clone())
            .with_dead_letters(self.dead_letters.clone());
        self.add_service(service_fn("dead-letter watcher", move |token| {
            let dead = dead.clone();
            async move { dead.run(token).await }
        }));
        let sweep = Arc::new(LeaseSweep::new(
            host.store().clone(),
            host.clock(),
            options.lease,
        ));
        self.add_service(service_fn("lease sweep", move |token| {
            let sweep = sweep.clone();
            async move {
                sweep.run(token).await;
                Ok::<(), Infallible>(())
            }
        }));
        let expiry = Arc::new(
            CommandSweep::new(host.store().clone(), host.clock(), options.command_expiry)
                .with_metrics(self.metrics.clone()),
        );
        self.add_service(service_fn("command sweep", move |token| {
            let expiry = expiry.clone();
            async move {
                expiry.run(token).await;
                Ok::<(), Infallible>(())
            }
        }));
        let retention = Arc::new(Retention::new(
            host.store().clone(),
            host.clock(),
            options.retention,
        ));
        self.add_service(service_fn("retention", move |token| {
            let retention = retention.clone();
            async move {
                retention.run(token).await;
                Ok::<(), Infallible>(())
            }
        }));
    }

    /// Adds a service, run and supervised like the host's own from [`start`](Self::start).
    pub fn add_service(&mut self, service: impl BackgroundService) -> &mut Self {
        self.services.push(Arc::new(service));
        self
    }

    /// The names of its services, in the order they start.
    pub fn service_names(&self) -> Vec<&str> {
        self.services.iter().map(|s| s.name()).collect()
    }

    /// The host whose services these are.
    pub fn host(&self) -> &HostService {
        &self.host
    }

    /// Console backlog and live lines, fed by the `console hub` service.
    pub fn console(&self) -> &ConsoleHub {
        &self.console
    }

    /// Events for the SSE stream, fed by the `event hub` service.
    pub fn events(&self) -> &EventHub {
        &self.events
    }

    /// What `/metrics` reports, the services' states among it.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The dead letters the services recorded.
    pub fn dead_letters(&self) -> &DeadLetters {
        &self.dead_letters
    }

    /// Cancelled when the host shuts down: what lives as long as the host (an open SSE stream)
    /// ends with it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.child_token()
    }

    /// Starts every service, each supervised, on the current Tokio runtime.
    pub fn start(self) -> RunningHost {
        let tracker = TaskTracker::new();
        for service in self.services {
            tracker.spawn(keep_running(
                service,
                self.shutdown.clone(),
                self.metrics.clone(),
            ));
        }
        tracker.close();
        RunningHost {
            host: self.host,
            shutdown: self.shutdown,
            tracker,
        }
    }
}

/// A started [`HostRuntime`]: its services run until [`stop`](Self::stop).
#[derive(Debug)]
pub struct RunningHost {
    host: HostService,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl RunningHost {
    /// The host whose services run.
    pub fn host(&self) -> &HostService {
        &self.host
    }

    /// Stops every service (each gets its grace to finish what it holds) and waits for them, at
    /// most [`STOP_TIMEOUT`].
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
