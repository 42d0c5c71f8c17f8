//! In-memory adapters: real implementations with the semantics of the service-backed ones,
//! for `manman up` and fast tests. Not mocks.

mod bus;
mod credentials;
mod store;

pub use bus::MemoryBus;
pub use store::MemoryStore;

#[cfg(test)]
mod conformance {
    //! The in-memory adapters pass the conformance suites.

    use super::{MemoryBus, MemoryStore};
    use crate::store::Store;
    use crate::testing::{bus, bus::BusUnderTest, store};
    use std::sync::Arc;

    #[tokio::test]
    async fn memory_bus_passes_the_bus_suite() {
        let bus = MemoryBus::new();
        let under_test = BusUnderTest {
            publisher: Arc::new(bus.clone()),
            subscriber: Arc::new(bus),
        };
        bus::run_all(&under_test).await;
    }

    #[tokio::test]
    async fn memory_bus_ends_the_consumers_of_a_deleted_queue() {
        let memory = MemoryBus::new();
        let under_test = BusUnderTest {
            publisher: Arc::new(memory.clone()),
            subscriber: Arc::new(memory.clone()),
        };
        bus::a_deleted_queue_ends_its_consumer_and_can_be_declared_and_bound_again(
            &under_test,
            |queue| {
                let memory = memory.clone();
                async move {
                    assert!(memory.delete_queue(&queue), "queue {queue:?} existed");
                }
            },
        )
        .await;
    }

    #[tokio::test]
    async fn memory_store_passes_the_store_suite() {
        store::run_all(&Store::from_adapter(MemoryStore::new())).await;
    }
}
