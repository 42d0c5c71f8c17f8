//! [`BackgroundService`]: one long-running part of a host (the status processor, a sweep, the
//! HTTP server, an embedder's own scheduler), run and supervised by the
//! [`HostRuntime`](crate::host::HostRuntime).

use async_trait::async_trait;
use std::fmt;
use std::future::Future;
use tokio_util::sync::CancellationToken;

/// Why a [`BackgroundService`] stopped early: logged, and the service is started again.
pub type ServiceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A long-running part of the host, run by the [`HostRuntime`](crate::host::HostRuntime) until it
/// shuts down.
///
/// `run` runs until `shutdown` is cancelled, then finishes what it holds and returns. A return
/// before that — `Ok` or `Err` — or a panic counts as a failure: the runtime logs it, counts it
/// (`manman_host_service_restarts_total`) and calls `run` again after a pause, so the host never
/// silently runs without it. `run` must therefore be callable again after it returned.
#[async_trait]
pub trait BackgroundService: Send + Sync + fmt::Debug + 'static {
    /// Its name in logs and in `/metrics` (label `service`): short, lower case, unique in one
    /// runtime (e.g. `status processor`).
    fn name(&self) -> &str;

    /// Runs until `shutdown` is cancelled.
    async fn run(&self, shutdown: CancellationToken) -> Result<(), ServiceError>;
}

/// A [`BackgroundService`] from a name and a function that runs it once (see [`service_fn`]).
pub struct FnService<F> {
    name: String,
    run: F,
}

impl<F> fmt::Debug for FnService<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnService")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A [`BackgroundService`] named `name` that runs `run(shutdown)`: the shortest way to add a
/// loop of one's own to a [`HostRuntime`](crate::host::HostRuntime).
///
/// ```
/// use manman_core::host::{BackgroundService, service_fn};
///
/// let ticker = service_fn("ticker", |shutdown: tokio_util::sync::CancellationToken| async move {
///     let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
///     loop {
///         tokio::select! {
///             () = shutdown.cancelled() => return Ok::<(), std::convert::Infallible>(()),
///             _ = every.tick() => tracing::info!("tick"),
///         }
///     }
/// });
/// assert_eq!(ticker.name(), "ticker");
/// ```
pub fn service_fn<F, Fut, E>(name: impl Into<String>, run: F) -> FnService<F>
where
    F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<ServiceError>,
{
    FnService {
        name: name.into(),
        run,
    }
}

#[async_trait]
impl<F, Fut, E> BackgroundService for FnService<F>
where
    F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<ServiceError>,
{
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, shutdown: CancellationToken) -> Result<(), ServiceError> {
        (self.run)(shutdown).await.map_err(Into::into)
    }
}
