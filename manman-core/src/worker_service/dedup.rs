//! [`RecentIds`]: the command ids a worker handled lately, so a redelivered command is not run
//! twice.

use std::collections::{HashSet, VecDeque};
use uuid::Uuid;

/// A bounded set of recently seen ids; the oldest are forgotten first.
#[derive(Debug)]
pub(crate) struct RecentIds {
    order: VecDeque<Uuid>,
    seen: HashSet<Uuid>,
    capacity: usize,
}

impl RecentIds {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            order: VecDeque::with_capacity(capacity),
            seen: HashSet::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    /// Records `id`; `false` when it was seen before.
    pub(crate) fn insert(&mut self, id: Uuid) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.order.push_back(id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_recent_ids_and_forgets_the_oldest() {
        let mut ids = RecentIds::new(2);
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert!(ids.insert(a));
        assert!(!ids.insert(a));
        assert!(ids.insert(b));
        assert!(ids.insert(c));
        assert!(ids.insert(a), "a was forgotten when c came");
        assert!(!ids.insert(c));
    }
}
