//! [`Consumption`]: whether the status processor consumes its bound queue right now, for
//! `/readyz`.

use std::sync::{Arc, Mutex, PoisonError};

/// Whether a long-lived consumer (the status processor) consumes a queue it declared and bound,
/// and if not, why. Cloning shares it: the processor reports, [`crate::host::HostService`]'s
/// readiness reads.
///
/// It starts *unwatched* — no processor reports to it, and readiness does not look at it (an
/// embedding that runs its status processor elsewhere). A processor given it
/// ([`crate::host::StatusProcessor::with_consumption`]) marks it not consuming at once, then
/// consuming each time it has declared, bound and subscribed to its queue, and not consuming
/// again (saying why) whenever it lost it.
#[derive(Debug, Clone, Default)]
pub struct Consumption {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum State {
    /// Nobody reports to it.
    #[default]
    Unwatched,
    /// Consuming a bound queue.
    Consuming,
    /// Not consuming: why.
    NotConsuming(String),
}

impl Consumption {
    /// Unwatched: [`Self::check`] is `Ok` until someone reports.
    pub fn new() -> Self {
        Self::default()
    }

    fn set(&self, state: State) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }

    /// Consuming a queue that was declared and bound before it was consumed.
    pub fn consuming(&self) {
        self.set(State::Consuming);
    }

    /// Not consuming now, because of `why` (named in `/readyz`).
    pub fn not_consuming(&self, why: impl Into<String>) {
        self.set(State::NotConsuming(why.into()));
    }

    /// `Err` saying why while a consumer reports it is not consuming; `Ok` while it consumes
    /// or when nobody reports.
    pub fn check(&self) -> Result<(), String> {
        match &*self.state.lock().unwrap_or_else(PoisonError::into_inner) {
            State::Unwatched | State::Consuming => Ok(()),
            State::NotConsuming(why) => Err(why.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwatched_is_ready_and_a_reported_loss_is_not_until_consuming_again() {
        let consumption = Consumption::new();
        assert_eq!(consumption.check(), Ok(()));
        let shared = consumption.clone();
        shared.not_consuming("queue \"q\" was deleted");
        assert_eq!(
            consumption.check(),
            Err("queue \"q\" was deleted".to_owned())
        );
        shared.consuming();
        assert_eq!(consumption.check(), Ok(()));
    }

    #[cfg(feature = "memory")]
    #[tokio::test]
    async fn the_status_processor_says_while_it_cannot_consume_and_consumes_its_queue_bound_again()
    {
        use crate::bus::Bus;
        use crate::event::{Event, StatusReport};
        use crate::host::StatusProcessor;
        use crate::id::WorkerId;
        use crate::memory::{MemoryBus, MemoryStore};
        use crate::ports::{MessageSubscriber, QueueSpec, SystemClock};
        use crate::status::{Cause, Entity, Status};
        use crate::store::Store;
        use std::time::Duration;
        use tokio_util::sync::CancellationToken;

        async fn until(what: &str, mut check: impl FnMut() -> bool) {
            tokio::time::timeout(Duration::from_secs(10), async {
                while !check() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
        }

        let memory = MemoryBus::new();
        let bus = Bus::new(Arc::new(memory.clone()), Arc::new(memory.clone()));
        bus.declare().await.expect("topology");
        let queue = bus.topology().status_processor_queue();
        let consumption = Consumption::new();
        let processor = StatusProcessor::new(
            Store::from_adapter(MemoryStore::new()),
            bus.clone(),
            Arc::new(SystemClock),
        )
        .with_consumption(consumption.clone());
        assert!(consumption.check().is_err(), "not consuming before it runs");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { processor.run(shutdown).await }
        });
        until("consuming", || consumption.check().is_ok()).await;

        // Deleted, and declared at once by someone else in another way (no dead-lettering):
        // the processor cannot declare it as its own, and says so.
        assert!(memory.delete_queue(&queue));
        memory
            .declare_queue(&QueueSpec::durable(&queue))
            .await
            .expect("the impostor");
        until("not consuming", || consumption.check().is_err()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let why = consumption.check().expect_err("still not consuming");
        assert!(why.contains(&queue), "{why}");

        // The impostor goes: the processor declares its queue, binds it and consumes it.
        assert!(memory.delete_queue(&queue));
        until("consuming again", || consumption.check().is_ok()).await;
        let report = StatusReport::new(
            Entity::Worker(WorkerId(1)),
            Status::Running,
            Cause::Ready,
            chrono::Utc::now(),
        );
        let key = crate::signing::BusSecret::generate().worker_key(WorkerId(1), 1);
        bus.publish_event(&Event::Status(report), chrono::Utc::now(), &key)
            .await
            .expect("routed: the queue is bound to the events again");
        until("the event consumed", || memory.queue_len(&queue) == Some(0)).await;

        shutdown.cancel();
        task.await.expect("joins").expect("stops cleanly");
        assert!(
            consumption.check().is_err(),
            "a stopped processor consumes nothing"
        );
    }
}
