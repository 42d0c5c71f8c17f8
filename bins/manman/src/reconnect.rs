//! Reconnecting a followed stream (`watch`, `console`) when the host goes away: which errors
//! are worth another try, and the growing wait between tries.

use manman_http::ClientError;
use std::time::Duration;

/// The first wait before reconnecting.
const FIRST: Duration = Duration::from_secs(1);
/// The longest wait between tries.
const MAX: Duration = Duration::from_secs(30);

/// The wait before the next try: 1 s, doubling to 30 s; back to 1 s once a connection held.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Backoff {
    /// A connection worked: the next wait is short again.
    pub(crate) fn reset(&mut self) {
        self.next = FIRST;
    }

    /// Says on stderr why and for how long, then waits.
    pub(crate) async fn wait(&mut self, why: &str) {
        eprintln!("{why}; reconnecting in {} s…", self.next.as_secs());
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(MAX);
    }
}

/// Whether trying again may help: the host could not be reached, the connection broke, or the
/// host said it is busy or not ready (429, 502, 503, 504). Not a refusal (401, 403, 404).
pub(crate) fn worth_retrying(error: &ClientError) -> bool {
    match error {
        ClientError::Transport { .. } => true,
        ClientError::Problem(problem) => matches!(problem.status, 429 | 502 | 503 | 504),
        _ => false,
    }
}
