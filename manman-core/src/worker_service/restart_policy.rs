//! [`CrashTracker`]: the crash policy of one instance — whether an unrequested exit is
//! restarted, after which backoff, and when it is a crash loop.

use crate::config::{RestartMode, RestartPolicy};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// What to do after an exit nobody asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Start it again after this pause; this will be restart number `restart`.
    Restart {
        /// The pause (backoff with jitter).
        after: Duration,
        /// The instance's restart count once restarted.
        restart: u32,
    },
    /// The exit is final and clean: `complete`.
    Complete,
    /// The exit is final: `crashed` with the exit's own cause.
    Crashed,
    /// Too many restarts within the window: `crashed` with cause `crash-loop`.
    CrashLoop,
}

/// Counts restarts in a sliding window and grows the backoff; one per instance.
#[derive(Debug)]
pub(crate) struct CrashTracker {
    policy: RestartPolicy,
    clean_exit_is_complete: bool,
    restarts_in_window: VecDeque<Instant>,
    /// Consecutive short runs: the backoff's exponent.
    streak: u32,
    total_restarts: u32,
}

impl CrashTracker {
    pub(crate) fn new(policy: RestartPolicy, clean_exit_is_complete: bool) -> Self {
        Self {
            policy,
            clean_exit_is_complete,
            restarts_in_window: VecDeque::new(),
            streak: 0,
            total_restarts: 0,
        }
    }

    /// Decides after an exit nobody asked for. `clean` is an exit with code 0 (install, spawn
    /// and ready failures are never clean); `uptime` is how long the process ran.
    pub(crate) fn on_exit(&mut self, now: Instant, clean: bool, uptime: Duration) -> Decision {
        let crash = !(clean && self.clean_exit_is_complete);
        let restart = match self.policy.mode {
            RestartMode::Never => false,
            RestartMode::OnCrash => crash,
            RestartMode::Always => true,
        };
        if !restart {
            return if crash {
                Decision::Crashed
            } else {
                Decision::Complete
            };
        }
        let window = Duration::from_secs(u64::from(self.policy.window_s));
        // A server that stayed up longer than the window starts its backoff afresh.
        if uptime > window {
            self.streak = 0;
        }
        while self
            .restarts_in_window
            .front()
            .is_some_and(|at| now.duration_since(*at) > window)
        {
            self.restarts_in_window.pop_front();
        }
        if self.restarts_in_window.len() >= self.policy.max_restarts as usize {
            return Decision::CrashLoop;
        }
        let after = self.backoff(fastrand::f64());
        self.restarts_in_window.push_back(now);
        self.streak = self.streak.saturating_add(1);
        self.total_restarts += 1;
        Decision::Restart {
            after,
            restart: self.total_restarts,
        }
    }

    /// Exponential backoff with "equal jitter": half the step fixed, half random (`random` in
    /// 0..1), kept between `backoff_initial_ms` and `backoff_max_ms`.
    fn backoff(&self, random: f64) -> Duration {
        let initial = self.policy.backoff_initial_ms.max(1);
        let max = self.policy.backoff_max_ms.max(initial);
        let step = initial.saturating_mul(1u64 << self.streak.min(32)).min(max);
        let jittered = step / 2 + ((step / 2) as f64 * random) as u64;
        Duration::from_millis(jittered.clamp(initial, max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: RestartMode) -> RestartPolicy {
        RestartPolicy {
            mode,
            max_restarts: 3,
            window_s: 60,
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
        }
    }

    const SHORT: Duration = Duration::from_secs(1);

    #[test]
    fn never_restarts_and_tells_clean_from_crash() {
        let mut t = CrashTracker::new(policy(RestartMode::Never), true);
        let now = Instant::now();
        assert_eq!(t.on_exit(now, true, SHORT), Decision::Complete);
        assert_eq!(t.on_exit(now, false, SHORT), Decision::Crashed);
        let mut strict = CrashTracker::new(policy(RestartMode::Never), false);
        assert_eq!(
            strict.on_exit(now, true, SHORT),
            Decision::Crashed,
            "exit 0 counts as a crash when configured so"
        );
    }

    #[test]
    fn on_crash_restarts_crashes_only_then_gives_up_as_a_loop() {
        let mut t = CrashTracker::new(policy(RestartMode::OnCrash), true);
        let now = Instant::now();
        assert_eq!(t.on_exit(now, true, SHORT), Decision::Complete);
        for n in 1..=3 {
            match t.on_exit(now, false, SHORT) {
                Decision::Restart { restart, after } => {
                    assert_eq!(restart, n);
                    assert!(
                        after >= Duration::from_millis(100)
                            && after <= Duration::from_millis(1_000)
                    );
                }
                other => panic!("restart {n}: {other:?}"),
            }
        }
        assert_eq!(t.on_exit(now, false, SHORT), Decision::CrashLoop);
        assert_eq!(t.total_restarts, 3);
    }

    #[test]
    fn always_restarts_clean_exits_too() {
        let mut t = CrashTracker::new(policy(RestartMode::Always), true);
        assert!(matches!(
            t.on_exit(Instant::now(), true, SHORT),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn the_window_slides() {
        let mut t = CrashTracker::new(policy(RestartMode::OnCrash), true);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(matches!(
                t.on_exit(start, false, SHORT),
                Decision::Restart { .. }
            ));
        }
        assert_eq!(
            t.on_exit(start + Duration::from_secs(30), false, SHORT),
            Decision::CrashLoop
        );
        let later = start + Duration::from_secs(61);
        assert!(
            matches!(t.on_exit(later, false, SHORT), Decision::Restart { .. }),
            "old restarts left the window"
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_resets_after_a_long_run() {
        let mut t = CrashTracker::new(
            RestartPolicy {
                max_restarts: 100,
                ..policy(RestartMode::OnCrash)
            },
            true,
        );
        assert_eq!(t.backoff(1.0), Duration::from_millis(100));
        t.streak = 2;
        assert_eq!(t.backoff(0.0), Duration::from_millis(200));
        assert_eq!(t.backoff(1.0), Duration::from_millis(400));
        t.streak = 30;
        assert_eq!(
            t.backoff(1.0),
            Duration::from_millis(1_000),
            "capped at backoff_max_ms"
        );
        assert_eq!(t.backoff(0.0), Duration::from_millis(500));
        let now = Instant::now();
        t.on_exit(now, false, Duration::from_secs(61));
        assert_eq!(
            t.streak, 1,
            "a run longer than the window resets the backoff"
        );
    }
}
