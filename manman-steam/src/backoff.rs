//! [`Backoff`]: jittered exponential delays between SteamCMD attempts.

use std::time::Duration;

/// Delays between attempts: the `n`th retry waits a random time between half and all of
/// `initial × 2ⁿ⁻¹`, capped at `max`. The jitter keeps workers that failed together (a Steam
/// outage) from retrying together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The base delay before the first retry (default 5 s).
    pub initial: Duration,
    /// The largest base delay (default 2 min).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(120),
        }
    }
}

impl Backoff {
    /// The delay before retry number `retry` (1 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        jittered(self.initial.saturating_mul(factor).min(self.max))
    }

    /// The delay after a failure that asks for the longest wait (Steam's login rate limit:
    /// retrying early extends it).
    pub fn longest(&self) -> Duration {
        jittered(self.max.max(self.initial))
    }
}

/// A random duration between half of `base` and `base`.
fn jittered(base: Duration) -> Duration {
    let half = base / 2;
    let spread = u64::try_from((base - half).as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(fastrand::u64(0..=spread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_with_jitter_and_stops_at_max() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        for _ in 0..200 {
            let first = b.delay(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = b.delay(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let capped = b.delay(30);
            assert!(capped >= Duration::from_millis(500) && capped <= Duration::from_millis(1000));
            let longest = b.longest();
            assert!(
                longest >= Duration::from_millis(500) && longest <= Duration::from_millis(1000)
            );
        }
        let delays: std::collections::HashSet<_> = (0..50).map(|_| b.delay(2)).collect();
        assert!(delays.len() > 1, "the delay must be jittered");
    }
}
