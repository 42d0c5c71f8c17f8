//! [`Redeliveries`]: how many times a consumer has seen each message it was handed again.
//!
//! RabbitMQ's classic queues only flag a redelivery; they do not count. A handler that retries
//! a message a bounded number of times (the status processor dead-letters after five) needs a
//! count, so each consumer counts the redeliveries it sees, by message id: 2 the first time a
//! message comes back, then 3, 4, … A quorum queue's `x-delivery-count` wins when it is higher.
//! With competing consumers each counts its own, so the bound still holds, multiplied at most by
//! their number.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use uuid::Uuid;

/// How many message ids are remembered at most; the oldest are forgotten first.
const CAPACITY: usize = 10_000;

/// Redelivery counts of one consumer.
#[derive(Debug, Default)]
pub(crate) struct Redeliveries {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    counts: HashMap<Uuid, u32>,
    order: VecDeque<Uuid>,
}

impl Redeliveries {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The delivery count of a delivery of `id`, given what the broker says.
    pub(crate) fn count(&self, id: Uuid, broker_count: u32, redelivered: bool) -> u32 {
        if !redelivered {
            return broker_count;
        }
        let mut inner = self.lock();
        let count = inner
            .counts
            .get(&id)
            .map_or(2, |seen| seen.saturating_add(1))
            .max(broker_count);
        if inner.counts.insert(id, count).is_none() {
            inner.order.push_back(id);
            if inner.order.len() > CAPACITY
                && let Some(oldest) = inner.order.pop_front()
            {
                inner.counts.remove(&oldest);
            }
        }
        count
    }

    /// `id` was acked or dead-lettered: it will not come back.
    pub(crate) fn settled(&self, id: Uuid) {
        self.lock().counts.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_redelivery_counts_one_more() {
        let redeliveries = Redeliveries::default();
        let id = Uuid::new_v4();
        assert_eq!(redeliveries.count(id, 1, false), 1);
        assert_eq!(redeliveries.count(id, 2, true), 2);
        assert_eq!(redeliveries.count(id, 2, true), 3);
        assert_eq!(redeliveries.count(id, 2, true), 4);
        assert_eq!(
            redeliveries.count(id, 9, true),
            9,
            "the broker's count wins when higher"
        );
        redeliveries.settled(id);
        assert_eq!(redeliveries.count(id, 2, true), 2);
    }

    #[test]
    fn memory_stays_bounded() {
        let redeliveries = Redeliveries::default();
        for _ in 0..CAPACITY + 10 {
            redeliveries.count(Uuid::new_v4(), 2, true);
        }
        assert_eq!(redeliveries.lock().counts.len(), CAPACITY);
    }
}
