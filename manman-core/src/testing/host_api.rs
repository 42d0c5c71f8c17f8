//! The [`HostApi`] conformance suite: the host as a worker sees it, the same through every
//! adapter — in-process ([`crate::host::LocalHostApi`]) or over HTTP
//! (`manman_client::HttpHostApi` against `manman_http::HostServer`).
//!
//! - A registration is a new epoch each time (same worker id, a new bus key).
//! - A heartbeat of a superseded epoch is refused with [`HostApiError::Superseded`].
//! - A config is given only for the worker's own instance, placed on its current registration
//!   and not ended; anything else is refused (`NotFound` for an instance that does not exist,
//!   `Invalid` for another worker's, an ended one or one of an older registration).
//! - A console tail is kept only for the worker's own instances (of any registration);
//!   another worker's is `Invalid`, an unknown instance `NotFound`, lines that are not a tail
//!   of the instance's console `Invalid`.
//! - Refusals are never transient: a worker does not retry them.
//!
//! An adapter supplies a [`HostApiFixture`]: the adapter acting as a named worker, and the
//! store of the host behind it, where the suite sets the host side up (a game, a config,
//! instances placed on a registration) and reads what the host kept. Each case makes its own
//! workers (unique names), so cases share one host.

use crate::console::{ConsoleLine, ConsoleStream, ConsoleTail};
use crate::id::{InstanceId, WorkerId};
use crate::instance::NewInstance;
use crate::ports::{HostApi, HostApiError, StatusChange};
use crate::store::Store;
use crate::testing::fixture::{config, now};
use crate::testing::unique;
use crate::worker::{Heartbeat, Registered, WorkerRegistration};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The adapter under test and the host behind it.
#[async_trait]
pub trait HostApiFixture: Send + Sync {
    /// The adapter acting as the worker named `name`. An adapter that authenticates (HTTP)
    /// makes credentials for that name here; the suite calls it once per worker it registers.
    async fn worker_api(&self, name: &str) -> Arc<dyn HostApi>;
    /// The store of the host behind the adapter.
    fn store(&self) -> &Store;
}

/// A worker of the suite: its name, the adapter acting as it, and its last registration.
struct SuiteWorker {
    name: String,
    api: Arc<dyn HostApi>,
    registered: Registered,
}

impl SuiteWorker {
    /// A new worker, registered once.
    async fn register(fixture: &dyn HostApiFixture) -> Self {
        let name = unique("w");
        let api = fixture.worker_api(&name).await;
        let registered = api
            .register(&registration(&name))
            .await
            .expect("a new worker registers");
        Self {
            name,
            api,
            registered,
        }
    }

    /// Registers again: the newer registration supersedes the last one.
    async fn register_again(&mut self) -> Registered {
        let again = self
            .api
            .register(&registration(&self.name))
            .await
            .expect("a known worker registers again");
        std::mem::replace(&mut self.registered, again)
    }

    fn id(&self) -> WorkerId {
        self.registered.worker_id
    }

    /// An instance (`created`) of a new config, placed on the current registration.
    async fn place(&self, store: &Store) -> (InstanceId, crate::id::ConfigId) {
        let config_id = config(store).await;
        let instance = store
            .instances
            .create_instance(&NewInstance {
                config_id,
                worker_id: self.registered.worker_id,
                worker_epoch: self.registered.epoch,
                created_at: now(),
            })
            .await
            .expect("an instance placed on the worker");
        (instance.id, config_id)
    }
}

fn registration(name: &str) -> WorkerRegistration {
    WorkerRegistration {
        name: name.to_owned(),
        version: "1.0".to_owned(),
        capacity: 4,
        labels: BTreeMap::new(),
        taken_up: Vec::new(),
    }
}

/// An id no instance of the suite's stores has.
const NO_INSTANCE: InstanceId = InstanceId(1 << 40);
/// An id no worker of the suite's stores has.
const NO_WORKER: WorkerId = WorkerId(1 << 40);

/// Ends `instance` (`crashed`), as the host records an undelivered start.
async fn end(store: &Store, instance: InstanceId) {
    store
        .status
        .apply_status(&StatusChange::undelivered(
            uuid::Uuid::new_v4(),
            instance,
            "ended by the host-API suite".to_owned(),
            now(),
        ))
        .await
        .expect("the instance ends");
}

/// A tail of two lines of `instance`'s console.
fn tail_of(instance: InstanceId) -> ConsoleTail {
    let line = |seq: u64, text: &str| ConsoleLine {
        instance_id: instance,
        seq,
        stream: ConsoleStream::Stdout,
        text: text.to_owned(),
        at: now(),
    };
    ConsoleTail {
        lines: vec![line(1, "starting"), line(2, "stopped")],
    }
}

/// The class of a refusal, as the suite compares them.
fn class(error: &HostApiError) -> &'static str {
    match error {
        HostApiError::Superseded { .. } => "Superseded",
        HostApiError::NotFound { .. } => "NotFound",
        HostApiError::Invalid { .. } => "Invalid",
        HostApiError::Unauthorized { .. } => "Unauthorized",
        HostApiError::Unavailable { .. } => "Unavailable",
    }
}

/// Asserts that `result` is a refusal of class `expected`, and not transient.
#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, HostApiError>, expected: &str, what: &str) {
    match result {
        Ok(answer) => panic!("{what}: expected a refusal ({expected}), got {answer:?}"),
        Err(e) => {
            assert_eq!(class(&e), expected, "{what}: refused as {e:?}");
            assert!(
                !e.is_transient(),
                "{what}: a refusal is not transient: {e:?}"
            );
        }
    }
}

/// Each registration of a name is a new epoch of the same worker, with a new bus key.
pub async fn registering_gives_a_new_epoch_each_time(fixture: &dyn HostApiFixture) {
    let mut worker = SuiteWorker::register(fixture).await;
    let first = worker.register_again().await;
    let second = worker.register_again().await;
    let third = worker.registered.clone();
    assert_eq!(first.worker_id, second.worker_id, "the same worker");
    assert_eq!(second.worker_id, third.worker_id, "the same worker");
    assert!(
        first.epoch < second.epoch && second.epoch < third.epoch,
        "epochs grow: {} {} {}",
        first.epoch,
        second.epoch,
        third.epoch
    );
    assert!(first.bus_key != second.bus_key, "a new epoch has a new key");
    assert!(second.bus_key != third.bus_key, "a new epoch has a new key");
    let stored = fixture
        .store()
        .workers
        .get_worker(third.worker_id)
        .await
        .expect("the worker is kept");
    assert_eq!(stored.epoch, third.epoch, "the host keeps the newest epoch");
    assert_eq!(stored.name, worker.name);
}

/// The current epoch's heartbeats are recorded; a superseded epoch's are refused with
/// `Superseded`, naming that epoch, and change nothing.
pub async fn a_superseded_epoch_is_refused_at_heartbeat(fixture: &dyn HostApiFixture) {
    let mut worker = SuiteWorker::register(fixture).await;
    let beat = |registered: &Registered| Heartbeat {
        worker_id: registered.worker_id,
        epoch: registered.epoch,
        inventory: Vec::new(),
    };
    worker
        .api
        .heartbeat(&beat(&worker.registered))
        .await
        .expect("the current epoch's heartbeat");
    let old = worker.register_again().await;
    let before = fixture
        .store()
        .workers
        .get_worker(worker.id())
        .await
        .expect("worker")
        .last_heartbeat_at;
    match worker.api.heartbeat(&beat(&old)).await {
        Err(HostApiError::Superseded { worker_id, epoch }) => {
            assert_eq!((worker_id, epoch), (old.worker_id, old.epoch));
        }
        other => panic!("a superseded epoch's heartbeat: expected Superseded, got {other:?}"),
    }
    let after = fixture
        .store()
        .workers
        .get_worker(worker.id())
        .await
        .expect("worker")
        .last_heartbeat_at;
    assert_eq!(before, after, "a refused heartbeat is not recorded");
    worker
        .api
        .heartbeat(&beat(&worker.registered))
        .await
        .expect("the newer epoch's heartbeat");
}

/// A worker gets the config (with its game) of its own instance, placed on its current
/// registration and not ended.
pub async fn a_config_is_given_for_an_own_live_instance(fixture: &dyn HostApiFixture) {
    let worker = SuiteWorker::register(fixture).await;
    let (instance, config_id) = worker.place(fixture.store()).await;
    let bundle = worker
        .api
        .fetch_instance_config(worker.id(), instance)
        .await
        .expect("the config of an own, live instance");
    assert_eq!(bundle.config.id, config_id);
    assert_eq!(bundle.game.id, bundle.config.game_server_id);
    let stored = fixture
        .store()
        .catalogue
        .get_config(config_id)
        .await
        .expect("config");
    assert_eq!(bundle.config, stored, "the config as the host keeps it");
}

/// Any other config is refused: an instance that does not exist (`NotFound`), another
/// worker's (`Invalid`), an ended one (`Invalid`), one of an older registration (`Invalid`).
pub async fn a_config_is_refused_for_anything_else(fixture: &dyn HostApiFixture) {
    let store = fixture.store();
    let mut worker = SuiteWorker::register(fixture).await;
    let other = SuiteWorker::register(fixture).await;
    refused(
        worker
            .api
            .fetch_instance_config(worker.id(), NO_INSTANCE)
            .await,
        "NotFound",
        "an instance that does not exist",
    );
    let (theirs, _) = other.place(store).await;
    refused(
        worker.api.fetch_instance_config(worker.id(), theirs).await,
        "Invalid",
        "another worker's instance",
    );
    let (ended, _) = worker.place(store).await;
    end(store, ended).await;
    refused(
        worker.api.fetch_instance_config(worker.id(), ended).await,
        "Invalid",
        "an ended instance",
    );
    let (of_the_past, _) = worker.place(store).await;
    worker.register_again().await;
    refused(
        worker
            .api
            .fetch_instance_config(worker.id(), of_the_past)
            .await,
        "Invalid",
        "an instance of an older registration",
    );
    // The other worker still gets its own.
    other
        .api
        .fetch_instance_config(other.id(), theirs)
        .await
        .expect("the owner gets it");
}

/// A console tail is kept for the worker's own instances — ended, or of an older
/// registration — and replaces the one kept before; another worker's instance is refused
/// (`Invalid`, nothing kept), an unknown one is `NotFound`, lines of another instance `Invalid`.
pub async fn console_tails_are_kept_for_own_instances_only(fixture: &dyn HostApiFixture) {
    let store = fixture.store();
    let mut worker = SuiteWorker::register(fixture).await;
    let other = SuiteWorker::register(fixture).await;
    let kept = |instance| async move {
        store
            .console_tails
            .console_tail(instance)
            .await
            .expect("read a tail")
    };

    let (ended, _) = worker.place(store).await;
    end(store, ended).await;
    let tail = tail_of(ended);
    worker
        .api
        .keep_console_tail(worker.id(), ended, &tail)
        .await
        .expect("an own ended instance's tail");
    assert_eq!(kept(ended).await, Some(tail));
    let newer = ConsoleTail {
        lines: tail_of(ended).lines[1..].to_vec(),
    };
    worker
        .api
        .keep_console_tail(worker.id(), ended, &newer)
        .await
        .expect("a tail again");
    assert_eq!(kept(ended).await, Some(newer), "replaced");

    let (of_the_past, _) = worker.place(store).await;
    worker.register_again().await;
    let past_tail = tail_of(of_the_past);
    worker
        .api
        .keep_console_tail(worker.id(), of_the_past, &past_tail)
        .await
        .expect("a tail of an instance an older registration ran");
    assert_eq!(kept(of_the_past).await, Some(past_tail));

    let (theirs, _) = other.place(store).await;
    refused(
        worker
            .api
            .keep_console_tail(worker.id(), theirs, &tail_of(theirs))
            .await,
        "Invalid",
        "a tail of another worker's instance",
    );
    assert_eq!(kept(theirs).await, None, "nothing kept for another worker");
    refused(
        worker
            .api
            .keep_console_tail(worker.id(), NO_INSTANCE, &tail_of(NO_INSTANCE))
            .await,
        "NotFound",
        "a tail of an instance that does not exist",
    );
    let (mine, _) = worker.place(store).await;
    refused(
        worker
            .api
            .keep_console_tail(worker.id(), mine, &tail_of(theirs))
            .await,
        "Invalid",
        "lines of another instance",
    );
    assert_eq!(kept(mine).await, None, "nothing kept for a refused tail");
}

/// The other refusals are classified alike too: a registration that fails validation is
/// `Invalid`, a heartbeat of a worker that does not exist `NotFound`; none is transient.
pub async fn refusals_are_classified_alike(fixture: &dyn HostApiFixture) {
    let name = unique("w");
    let api = fixture.worker_api(&name).await;
    let mut no_room = registration(&name);
    no_room.capacity = 0;
    refused(api.register(&no_room).await, "Invalid", "a capacity of 0");
    refused(
        api.heartbeat(&Heartbeat {
            worker_id: NO_WORKER,
            epoch: 1,
            inventory: Vec::new(),
        })
        .await,
        "NotFound",
        "a heartbeat of a worker that does not exist",
    );
    // Nothing was registered by the refused registration.
    api.register(&registration(&name))
        .await
        .expect("a valid registration");
}

/// Runs every case. An adapter runs this (not a choice of cases), so none is skipped.
pub async fn run_all(fixture: &dyn HostApiFixture) {
    registering_gives_a_new_epoch_each_time(fixture).await;
    a_superseded_epoch_is_refused_at_heartbeat(fixture).await;
    a_config_is_given_for_an_own_live_instance(fixture).await;
    a_config_is_refused_for_anything_else(fixture).await;
    console_tails_are_kept_for_own_instances_only(fixture).await;
    refusals_are_classified_alike(fixture).await;
}

/// The suite on [`crate::host::LocalHostApi`], over an in-memory host.
#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;
    use crate::host::{HostService, LocalHostApi};

    /// One in-memory host; every worker talks to it in-process.
    struct Local {
        host: HostService,
    }

    #[async_trait]
    impl HostApiFixture for Local {
        async fn worker_api(&self, _name: &str) -> Arc<dyn HostApi> {
            Arc::new(LocalHostApi::new(self.host.clone()))
        }

        fn store(&self) -> &Store {
            self.host.store()
        }
    }

    #[tokio::test]
    async fn local_host_api_passes_the_suite() {
        let host = HostService::in_memory().await.expect("host");
        run_all(&Local { host }).await;
    }
}
