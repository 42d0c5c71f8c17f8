//! [`shutdown_signal`]: how every ManMan process (host, worker, `manman up`) is asked to stop.

/// Waits for SIGTERM or Ctrl-C (SIGINT): how every ManMan process is asked to stop. Where
/// SIGTERM cannot be listened for, Ctrl-C still works (and that is logged).
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C still works");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
