//! How the [`HostRuntime`](crate::host::HostRuntime) keeps each [`BackgroundService`] running:
//! restarted with backoff after a failure or a panic, counted in [`Metrics`], given a grace
//! period at shutdown.

use crate::host::{BackgroundService, Metrics};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a background service may take to stop once the host shuts down (it finishes what it
/// holds, e.g. a batch of status events); after that it is dropped, and what it had not
/// acknowledged is redelivered to the next host.
pub const SERVICE_GRACE: Duration = Duration::from_secs(3);

/// The pause before the first restart; it doubles with each failure in a row.
pub const FIRST_RESTART_PAUSE: Duration = Duration::from_secs(1);

/// The longest pause between restarts. A run longer than this resets the pause to
/// [`FIRST_RESTART_PAUSE`], so that a fault long after the last one is recovered from quickly.
pub const MAX_RESTART_PAUSE: Duration = Duration::from_secs(30);

/// Runs `service` until `shutdown`. When it stops early (an error, a panic, or a return) it is
/// logged, counted, and started again after a pause (1 s, doubling up to 30 s). At shutdown it
/// gets [`SERVICE_GRACE`] to stop, even when what it waits for (a broker that went away) never
/// answers.
pub(crate) async fn keep_running(
    service: Arc<dyn BackgroundService>,
    shutdown: CancellationToken,
    metrics: Metrics,
) {
    let name = service.name().to_owned();
    let mut pause = FIRST_RESTART_PAUSE;
    loop {
        let started = tokio::time::Instant::now();
        metrics.service_up(&name, true);
        let run = AssertUnwindSafe(service.run(shutdown.child_token())).catch_unwind();
        tokio::pin!(run);
        let outcome = tokio::select! {
            outcome = &mut run => outcome,
            () = shutdown.cancelled() => match tokio::time::timeout(SERVICE_GRACE, &mut run).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    tracing::warn!(service = %name, "did not stop within {SERVICE_GRACE:?} of the shutdown: dropped");
                    metrics.service_up(&name, false);
                    return;
                }
            },
        };
        metrics.service_up(&name, false);
        if shutdown.is_cancelled() {
            if let Ok(Err(e)) = &outcome {
                tracing::warn!(service = %name, error = %error_chain(e.as_ref()), "stopped with an error at shutdown");
            }
            return;
        }
        if started.elapsed() > MAX_RESTART_PAUSE {
            pause = FIRST_RESTART_PAUSE;
        }
        match outcome {
            Ok(Ok(())) => {
                tracing::error!(service = %name, "stopped unexpectedly; restarting in {pause:?}")
            }
            Ok(Err(e)) => {
                tracing::error!(service = %name, error = %error_chain(e.as_ref()), "failed; restarting in {pause:?}")
            }
            Err(panic) => {
                tracing::error!(service = %name, panic = panic_message(panic.as_ref()), "panicked; restarting in {pause:?}")
            }
        }
        metrics.service_restarted(&name);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_RESTART_PAUSE);
    }
}

/// `error` and its sources, joined by `: `.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // A message that already quotes its cause is not repeated.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// What a panic said, when it said it with a string.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{ServiceError, service_fn};
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::time::Instant;

    fn restarts(metrics: &Metrics, name: &str) -> Option<String> {
        metrics
            .render(&crate::host::StoreSnapshot::default())
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "manman_host_service_restarts_total{{service=\"{name}\"}}"
                ))
            })
            .map(|l| l.rsplit(' ').next().unwrap_or_default().to_owned())
    }

    /// A service that fails `failures` times (each at once, the last one by panicking), then
    /// runs until shutdown; it notes when each run began.
    fn flaky(failures: u32, runs: Arc<std::sync::Mutex<Vec<Instant>>>) -> impl BackgroundService {
        let calls = Arc::new(AtomicU32::new(0));
        service_fn("flaky", move |shutdown: CancellationToken| {
            let (calls, runs) = (calls.clone(), runs.clone());
            async move {
                runs.lock().unwrap().push(Instant::now());
                let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if call < failures {
                    return Err::<(), ServiceError>(format!("failure {call}").into());
                }
                if call == failures {
                    panic!("failure {call}");
                }
                shutdown.cancelled().await;
                Ok(())
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_or_panicking_service_is_restarted_with_doubling_pauses() {
        let runs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let metrics = Metrics::new();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(keep_running(
            Arc::new(flaky(4, runs.clone())),
            shutdown.clone(),
            metrics.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(60)).await;
        let runs = runs.lock().unwrap().clone();
        assert_eq!(runs.len(), 5, "four failures, then a run that lasts");
        let pauses: Vec<u64> = runs.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
        assert_eq!(
            pauses,
            [1, 2, 4, 8],
            "each failure in a row doubles the pause"
        );
        assert_eq!(restarts(&metrics, "flaky").as_deref(), Some("4"));
        assert!(
            metrics
                .render(&crate::host::StoreSnapshot::default())
                .contains("manman_host_service_up{service=\"flaky\"} 1")
        );
        shutdown.cancel();
        task.await.expect("the supervision ends at shutdown");
    }

    #[tokio::test(start_paused = true)]
    async fn the_pause_is_capped_and_resets_after_a_long_run() {
        let runs = Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
        let calls = Arc::new(AtomicU32::new(0));
        let (r, c) = (runs.clone(), calls.clone());
        // Fails at once eight times, then runs 40 s before failing again, then at once.
        let service = service_fn("sweep", move |_shutdown: CancellationToken| {
            let (runs, calls) = (r.clone(), c.clone());
            async move {
                runs.lock().unwrap().push(Instant::now());
                if calls.fetch_add(1, Ordering::SeqCst) == 8 {
                    tokio::time::sleep(Duration::from_secs(40)).await;
                }
                Err::<(), ServiceError>("gone".into())
            }
        });
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(keep_running(
            Arc::new(service),
            shutdown.clone(),
            Metrics::new(),
        ));
        tokio::time::sleep(Duration::from_secs(250)).await;
        shutdown.cancel();
        task.await.unwrap();
        let runs = runs.lock().unwrap().clone();
        let pauses: Vec<u64> = runs.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
        assert_eq!(&pauses[..8], [1, 2, 4, 8, 16, 30, 30, 30], "capped at 30 s");
        assert_eq!(
            pauses[8],
            40 + 1,
            "a run longer than the cap resets the pause to 1 s"
        );
        assert_eq!(pauses[9], 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_that_ignores_the_shutdown_is_dropped_after_the_grace() {
        let service = service_fn("stubborn", |_shutdown: CancellationToken| async {
            std::future::pending::<()>().await;
            Ok::<(), ServiceError>(())
        });
        let shutdown = CancellationToken::new();
        let metrics = Metrics::new();
        let task = tokio::spawn(keep_running(
            Arc::new(service),
            shutdown.clone(),
            metrics.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let asked = Instant::now();
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(asked.elapsed(), SERVICE_GRACE);
        assert_eq!(
            restarts(&metrics, "stubborn").as_deref(),
            Some("0"),
            "never restarted"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_that_stops_at_the_shutdown_is_not_restarted() {
        let runs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let shutdown = CancellationToken::new();
        let metrics = Metrics::new();
        let task = tokio::spawn(keep_running(
            Arc::new(flaky(0, runs.clone())),
            shutdown.clone(),
            metrics.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(10)).await;
        let asked = Instant::now();
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(asked.elapsed(), Duration::ZERO, "it stopped at once");
        assert_eq!(runs.lock().unwrap().len(), 1);
        assert_eq!(restarts(&metrics, "flaky").as_deref(), Some("0"));
    }

    #[test]
    fn an_error_chain_names_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&e), "outer: inner");
        #[derive(Debug, thiserror::Error)]
        #[error("outer: inner")]
        struct Quoting(#[source] std::io::Error);
        assert_eq!(
            error_chain(&Quoting(std::io::Error::other("inner"))),
            "outer: inner"
        );
    }
}
