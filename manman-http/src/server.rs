//! [`HostServer`]: the host's HTTP API as one service of a [`HostRuntime`], beside the
//! background services the runtime runs (status processor, console and event hubs, dead-letter
//! watcher, lease and command sweeps, retention) — started and stopped together. This crate
//! serves; it starts none of those services itself.

use crate::api::{ApiState, build_router};
use crate::http_limits::HttpLimits;
use crate::stream_guard::{StreamLimits, StreamSlots};
use async_trait::async_trait;
use axum::Router;
use manman_core::host::{
    Authenticator, BackgroundService, HostRuntime, HostService, Lease, RetentionPolicy,
    RunningHost, RuntimeOptions, ServiceError, SigningKey,
};
use std::net::SocketAddr;
use std::sync::Mutex;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    /// Serve the operator API too (else only what workers need: [`worker_router`](crate::worker_router)).
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

impl ServeOptions {
    /// What the host's runtime services run with: its retention and lease.
    pub fn runtime_options(&self) -> RuntimeOptions {
        RuntimeOptions {
            retention: self.retention,
            lease: self.lease,
            ..RuntimeOptions::default()
        }
    }
}

/// A running host: the HTTP API and the runtime's services, stopped together.
#[derive(Debug)]
pub struct HostServer {
    addr: SocketAddr,
    auth: Authenticator,
    running: RunningHost,
}

impl HostServer {
    /// Listens on `options.bind` and starts `host`'s runtime with its standard services and the
    /// API. Fails when `bind` cannot be listened on, or when `options.http` holds a limit no
    /// server can run with (see [`HttpLimits::check`]). To add services or routes, use
    /// [`HostServer::builder`].
    pub async fn start(host: HostService, options: ServeOptions) -> std::io::Result<Self> {
        Self::builder(host, options).start().await
    }

    /// A host to which an embedder adds its own background services
    /// ([`HostServerBuilder::service`]) and routes ([`HostServerBuilder::routes`]) before it
    /// starts.
    pub fn builder(host: HostService, options: ServeOptions) -> HostServerBuilder {
        let runtime = HostRuntime::new(host, options.runtime_options());
        HostServerBuilder {
            runtime,
            options,
            routes: Router::new(),
        }
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

    /// The host behind the API.
    pub fn host(&self) -> &HostService {
        self.running.host()
    }

    /// Stops the API (open streams end) and the services, waiting up to
    /// [`STOP_TIMEOUT`](manman_core::host::STOP_TIMEOUT).
    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// A [`HostServer`] before it starts: its runtime, to which services can be added, and extra
/// routes served beside the API.
#[derive(Debug)]
pub struct HostServerBuilder {
    runtime: HostRuntime,
    options: ServeOptions,
    routes: Router,
}

impl HostServerBuilder {
    /// Adds a background service to the host's runtime: run, supervised and stopped with the
    /// host's own.
    pub fn service(mut self, service: impl BackgroundService) -> Self {
        self.runtime.add_service(service);
        self
    }

    /// Serves `routes` beside the API (merged into one router: a path the API serves may not
    /// be given again). They go through the same layers as the API — request ids, size and
    /// time limits, security headers, `/metrics` counting — but not its authentication: a route
    /// that needs a caller checks for itself.
    pub fn routes(mut self, routes: Router) -> Self {
        self.routes = self.routes.merge(routes);
        self
    }

    /// The runtime, e.g. for its metrics or hubs while building the routes.
    pub fn runtime(&self) -> &HostRuntime {
        &self.runtime
    }

    /// Listens, adds the HTTP server to the runtime as the service `http api`, and starts every
    /// service.
    pub async fn start(self) -> std::io::Result<HostServer> {
        let Self {
            mut runtime,
            options,
            routes,
        } = self;
        options
            .http
            .check()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind(options.bind).await?;
        let addr = listener.local_addr()?;
        let host = runtime.host().clone();
        let auth = Authenticator::new(
            host.store().credentials.clone(),
            host.clock(),
            options.signing_key,
        );
        let state = ApiState {
            host,
            console: runtime.console().clone(),
            auth: auth.clone(),
            metrics: runtime.metrics().clone(),
            shutdown: runtime.shutdown_token(),
            events: runtime.events().clone(),
            streams: StreamSlots::new(options.streams),
            dead_letters: runtime.dead_letters().clone(),
        };
        let app = build_router(state, options.experience_api, routes);
        runtime.add_service(HttpService {
            listener: Mutex::new(Some(listener)),
            app,
            limits: options.http,
        });
        Ok(HostServer {
            addr,
            auth,
            running: runtime.start(),
        })
    }
}

/// The HTTP server as a background service: serves until the shutdown, then lets open
/// connections finish.
#[derive(Debug)]
struct HttpService {
    /// Taken by the first run: serving returns only at shutdown, so there is no second.
    listener: Mutex<Option<TcpListener>>,
    app: Router,
    limits: HttpLimits,
}

#[async_trait]
impl BackgroundService for HttpService {
    fn name(&self) -> &str {
        "http api"
    }

    async fn run(&self, shutdown: CancellationToken) -> Result<(), ServiceError> {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .ok_or("the listener was closed by an earlier run")?;
        crate::connections::serve(listener, self.app.clone(), self.limits, shutdown).await;
        Ok(())
    }
}
