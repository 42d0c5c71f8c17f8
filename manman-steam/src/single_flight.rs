//! [`SingleFlight`]: at most one run per key; a caller that arrives while a run is going
//! waits for it, shares its result and sees its progress.

use futures::FutureExt;
use futures::future::{BoxFuture, Shared, WeakShared};
use manman_core::ports::{InstallProgress, ProgressSink};
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::pin::pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// Runs keyed by `K`, producing `T`.
///
/// The run is a future shared by its callers and driven by whichever of them polls it: it
/// needs no task of its own, and when every caller has gone (cancelled), it is dropped,
/// which ends what it was doing. The map holds it weakly, so a dropped run is not joined.
pub(crate) struct SingleFlight<K, T: Clone> {
    flights: Mutex<HashMap<K, Flight<T>>>,
    next_id: AtomicU64,
}

struct Flight<T: Clone> {
    id: u64,
    run: WeakShared<BoxFuture<'static, T>>,
    progress: broadcast::Sender<InstallProgress>,
}

/// Progress updates a slow caller may fall behind by before it skips some (progress is for
/// display: the next update supersedes the ones skipped).
const PROGRESS_BUFFER: usize = 1024;

impl<K, T: Clone> fmt::Debug for SingleFlight<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let in_flight = self.flights.lock().map_or(0, |flights| flights.len());
        f.debug_struct("SingleFlight")
            .field("in_flight", &in_flight)
            .finish()
    }
}

impl<K, T: Clone> Default for SingleFlight<K, T> {
    fn default() -> Self {
        Self {
            flights: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }
    }
}

/// Where a shared run reports progress: every caller waiting on it passes it on to its own
/// sink.
#[derive(Debug, Clone)]
pub(crate) struct ProgressRelay(broadcast::Sender<InstallProgress>);

impl ProgressSink for ProgressRelay {
    fn report(&self, progress: InstallProgress) {
        // No caller listening (all cancelled) is not an error.
        let _ = self.0.send(progress);
    }
}

/// How a caller got its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// It started the run.
    Leader,
    /// It joined a run already going.
    Follower,
}

impl<K: Hash + Eq + Clone + Send + 'static, T: Clone + Send + Sync + 'static> SingleFlight<K, T> {
    /// The result of the run for `key`: the one going, or a new one made by `start`.
    /// Progress of the run reaches `sink` while this caller waits.
    pub(crate) async fn run<F>(&self, key: K, start: F, sink: &dyn ProgressSink) -> (T, Role)
    where
        F: FnOnce(ProgressRelay) -> BoxFuture<'static, T>,
    {
        let (run, mut progress, id, role) = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            match flights
                .get(&key)
                .and_then(|f| f.run.upgrade().map(|run| (run, f)))
            {
                Some((run, flight)) => {
                    (run, flight.progress.subscribe(), flight.id, Role::Follower)
                }
                None => {
                    let (tx, rx) = broadcast::channel(PROGRESS_BUFFER);
                    let run: Shared<_> = start(ProgressRelay(tx.clone())).shared();
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let weak = run
                        .downgrade()
                        .expect("a new shared future is not complete");
                    flights.insert(
                        key.clone(),
                        Flight {
                            id,
                            run: weak,
                            progress: tx,
                        },
                    );
                    (run, rx, id, Role::Leader)
                }
            }
        };
        let mut run = pin!(run);
        let mut relay_open = true;
        let result = loop {
            tokio::select! {
                // Progress first, so that none is left behind when the run ends.
                biased;
                update = progress.recv(), if relay_open => match update {
                    Ok(update) => sink.report(update),
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => relay_open = false,
                },
                result = &mut run => break result,
            }
        };
        loop {
            match progress.try_recv() {
                Ok(update) => sink.report(update),
                Err(TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights.get(&key).is_some_and(|f| f.id == id) {
            flights.remove(&key);
        }
        (result, role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use manman_core::ports::NoProgress;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[derive(Debug, Default)]
    struct Collect(Mutex<Vec<String>>);

    impl ProgressSink for Collect {
        fn report(&self, progress: InstallProgress) {
            self.0.lock().unwrap().push(progress.stage);
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_run_and_its_progress() {
        let flights = SingleFlight::<&str, u32>::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::oneshot::channel::<()>();
        let start = |relay: ProgressRelay| {
            let runs = Arc::clone(&runs);
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                let _ = gate.await;
                relay.report(crate::run::stage("downloading"));
                tokio::time::sleep(Duration::from_millis(20)).await;
                7
            }
            .boxed()
        };
        let (leader, follower) = (Collect::default(), Collect::default());
        let (a, b, ()) = tokio::join!(
            flights.run("dir", start, &leader),
            flights.run("dir", |_| async { 0 }.boxed(), &follower),
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                release.send(()).unwrap();
            }
        );
        assert_eq!(a, (7, Role::Leader));
        assert_eq!(b, (7, Role::Follower));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(*leader.0.lock().unwrap(), ["downloading"]);
        assert_eq!(*follower.0.lock().unwrap(), ["downloading"]);
        assert_eq!(format!("{flights:?}"), "SingleFlight { in_flight: 0 }");
        let (again, role) = flights
            .run("dir", |_| async { 8 }.boxed(), &NoProgress)
            .await;
        assert_eq!((again, role), (8, Role::Leader));
    }

    #[tokio::test]
    async fn a_cancelled_run_is_not_joined() {
        let flights = SingleFlight::<&str, u32>::default();
        let pending = flights.run("dir", |_| futures::future::pending().boxed(), &NoProgress);
        assert!(
            tokio::time::timeout(Duration::from_millis(10), pending)
                .await
                .is_err()
        );
        let (value, role) = flights
            .run("dir", |_| async { 3 }.boxed(), &NoProgress)
            .await;
        assert_eq!((value, role), (3, Role::Leader));
    }

    #[tokio::test]
    async fn different_keys_run_apart() {
        let flights = SingleFlight::<&str, u32>::default();
        let (a, b) = tokio::join!(
            flights.run("a", |_| async { 1 }.boxed(), &NoProgress),
            flights.run("b", |_| async { 2 }.boxed(), &NoProgress),
        );
        assert_eq!((a.0, b.0), (1, 2));
        assert_eq!((a.1, b.1), (Role::Leader, Role::Leader));
    }
}
