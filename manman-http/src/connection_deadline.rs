//! [`ConnectionDeadline`]: when a connection that is not being answered must be closed.
//!
//! A connection is *waiting* (for a request's head) or *busy* (a request is being answered,
//! however long its response takes: an SSE stream is busy until it ends). While waiting, its
//! deadline is `header_timeout` after the connection's start or, after an answer, `idle_timeout`
//! after that answer until the next request's first byte arrives, and `header_timeout` after
//! that byte. Later bytes never move the deadline, so trickling a head does not keep a
//! connection. This mirrors Go's `net/http` (`ReadHeaderTimeout`, `IdleTimeout`).

use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

/// Which timeout a waiting connection is under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// A request's head is arriving (or the connection just started).
    Head,
    /// A kept-alive connection, between an answer and the next request's first byte.
    Idle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting { wait: Wait, until: Instant },
    Busy { in_flight: usize },
}

/// The deadline of one connection, shared by its reader (bytes arrived), its service (a
/// request started, its response ended) and the task that closes it.
#[derive(Debug)]
pub(crate) struct ConnectionDeadline {
    header_timeout: Duration,
    idle_timeout: Duration,
    phase: Mutex<Phase>,
    changed: Notify,
}

impl ConnectionDeadline {
    /// A connection that started at `now`: its first head is due `header_timeout` later.
    pub(crate) fn new(now: Instant, header_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            header_timeout,
            idle_timeout,
            phase: Mutex::new(Phase::Waiting {
                wait: Wait::Head,
                until: now + header_timeout,
            }),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived at `now`: on an idle connection, the first byte of a request starts its
    /// head's clock.
    pub(crate) fn bytes_read(&self, now: Instant) {
        let mut phase = self.phase();
        if let Phase::Waiting {
            wait: Wait::Idle, ..
        } = *phase
        {
            *phase = Phase::Waiting {
                wait: Wait::Head,
                until: now + self.header_timeout,
            };
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// A request's head is in: no deadline until its response ends.
    pub(crate) fn request_started(&self) {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy { in_flight } => Phase::Busy {
                in_flight: in_flight + 1,
            },
            Phase::Waiting { .. } => Phase::Busy { in_flight: 1 },
        };
        drop(phase);
        self.changed.notify_one();
    }

    /// A response ended (or was dropped) at `now`: the connection idles until the next
    /// request.
    pub(crate) fn response_ended(&self, now: Instant) {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy { in_flight } if in_flight > 1 => Phase::Busy {
                in_flight: in_flight - 1,
            },
            _ => Phase::Waiting {
                wait: Wait::Idle,
                until: now + self.idle_timeout,
            },
        };
        drop(phase);
        self.changed.notify_one();
    }

    /// When the connection must be closed unless something happens first; `None` while busy.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match *self.phase() {
            Phase::Waiting { until, .. } => Some(until),
            Phase::Busy { .. } => None,
        }
    }

    /// Which timeout expired by `now`, if one did.
    pub(crate) fn expired(&self, now: Instant) -> Option<Wait> {
        match *self.phase() {
            Phase::Waiting { wait, until } if until <= now => Some(wait),
            _ => None,
        }
    }

    /// Completes when the phase changed since the last call (or at once, if it changed before
    /// this call): a waiter then reads [`Self::deadline`] again.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    #[test]
    fn a_new_connection_must_send_its_head_in_time() {
        let start = Instant::now();
        let deadline = ConnectionDeadline::new(start, HEAD, IDLE);
        assert_eq!(deadline.deadline(), Some(start + HEAD));
        // Bytes of the head do not move the deadline.
        deadline.bytes_read(start + Duration::from_secs(9));
        assert_eq!(deadline.deadline(), Some(start + HEAD));
        assert_eq!(deadline.expired(start + HEAD), Some(Wait::Head));
    }

    #[test]
    fn a_request_being_answered_has_no_deadline() {
        let start = Instant::now();
        let deadline = ConnectionDeadline::new(start, HEAD, IDLE);
        deadline.request_started();
        assert_eq!(deadline.deadline(), None);
        assert_eq!(deadline.expired(start + Duration::from_secs(3600)), None);
    }

    #[test]
    fn after_an_answer_the_idle_clock_runs_until_the_next_requests_first_byte() {
        let start = Instant::now();
        let deadline = ConnectionDeadline::new(start, HEAD, IDLE);
        deadline.request_started();
        let answered = start + Duration::from_secs(100);
        deadline.response_ended(answered);
        assert_eq!(deadline.deadline(), Some(answered + IDLE));
        assert_eq!(deadline.expired(answered + IDLE), Some(Wait::Idle));

        let first_byte = answered + Duration::from_secs(30);
        deadline.bytes_read(first_byte);
        assert_eq!(deadline.deadline(), Some(first_byte + HEAD));
        // Further bytes of that head do not move it.
        deadline.bytes_read(first_byte + Duration::from_secs(5));
        assert_eq!(deadline.expired(first_byte + HEAD), Some(Wait::Head));
    }

    #[test]
    fn the_connection_is_busy_until_its_last_response_ends() {
        let start = Instant::now();
        let deadline = ConnectionDeadline::new(start, HEAD, IDLE);
        deadline.request_started();
        deadline.request_started();
        deadline.response_ended(start);
        assert_eq!(deadline.deadline(), None);
        deadline.response_ended(start);
        assert_eq!(deadline.deadline(), Some(start + IDLE));
    }

    #[tokio::test]
    async fn a_change_is_not_lost_when_it_comes_before_the_wait() {
        let deadline = ConnectionDeadline::new(Instant::now(), HEAD, IDLE);
        deadline.request_started();
        tokio::time::timeout(Duration::from_secs(5), deadline.changed())
            .await
            .expect("the change was kept for the next wait");
    }
}
