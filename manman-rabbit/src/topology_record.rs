//! [`TopologyRecord`]: every exchange, queue and binding declared through one
//! [`crate::RabbitBus`], to declare them again after a recovery; and [`DeclaredTopology`], its
//! public snapshot.
//!
//! Temporary queues are recorded apart: while a consumer reads one, its channel owns it (the
//! queue and its bindings are declared on that channel, and lapin's channel recovery brings them
//! back before the consumer); when the consumer goes, the queue is deleted by the broker and
//! forgotten here.

use crate::declarations::{Binding, Declaration};
use lapin::Channel;
use manman_core::ports::{ExchangeKind, QueueSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// What this bus declared and declares again after a recovery. Temporary queues are not in it:
/// they live and die with their consumers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeclaredTopology {
    /// Exchanges, in declaration order.
    pub exchanges: Vec<(String, ExchangeKind)>,
    /// Durable queues, by name.
    pub queues: Vec<QueueSpec>,
    /// Bindings of those queues.
    pub bindings: Vec<Binding>,
}

/// The record. Cheap to lock: nothing is awaited while it is held.
#[derive(Debug, Default)]
pub(crate) struct TopologyRecord {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    exchanges: Vec<(String, ExchangeKind)>,
    queues: BTreeMap<String, QueueSpec>,
    bindings: BTreeSet<Binding>,
    temporary: BTreeMap<String, Temporary>,
}

/// A temporary queue: how it was declared (declared again the same way, or the broker refuses
/// it), its bindings, and the consumer channel that owns it, if any.
#[derive(Debug)]
struct Temporary {
    spec: QueueSpec,
    bindings: BTreeSet<Binding>,
    owner: Option<Channel>,
}

impl TopologyRecord {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers a declaration that succeeded.
    pub(crate) fn remember(&self, declaration: &Declaration) {
        let mut inner = self.lock();
        match declaration {
            Declaration::Exchange { name, kind } => {
                if let Some(existing) = inner.exchanges.iter_mut().find(|(n, _)| n == name) {
                    existing.1 = *kind;
                } else {
                    inner.exchanges.push((name.clone(), *kind));
                }
            }
            Declaration::Queue(spec) if spec.temporary => {
                inner
                    .temporary
                    .entry(spec.name.clone())
                    .or_insert_with(|| Temporary {
                        spec: spec.clone(),
                        bindings: BTreeSet::new(),
                        owner: None,
                    });
            }
            Declaration::Queue(spec) => {
                inner.queues.insert(spec.name.clone(), spec.clone());
            }
            Declaration::Binding(binding) => {
                match inner.temporary.get_mut(&binding.queue) {
                    Some(temporary) => temporary.bindings.insert(binding.clone()),
                    None => inner.bindings.insert(binding.clone()),
                };
            }
        }
    }

    /// Whether `queue` is a temporary queue declared through this bus.
    pub(crate) fn is_temporary(&self, queue: &str) -> bool {
        self.lock().temporary.contains_key(queue)
    }

    /// The spec a queue was declared with through this bus.
    pub(crate) fn queue(&self, queue: &str) -> Option<QueueSpec> {
        let inner = self.lock();
        if let Some(temporary) = inner.temporary.get(queue) {
            return Some(temporary.spec.clone());
        }
        inner.queues.get(queue).cloned()
    }

    /// The bindings recorded for a durable queue.
    pub(crate) fn durable_bindings(&self, queue: &str) -> Vec<Binding> {
        self.lock()
            .bindings
            .iter()
            .filter(|b| b.queue == queue)
            .cloned()
            .collect()
    }

    /// The bindings of a temporary queue.
    pub(crate) fn temporary_bindings(&self, queue: &str) -> Vec<Binding> {
        self.lock()
            .temporary
            .get(queue)
            .map(|t| t.bindings.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The consumer channel that owns a temporary queue, if it is still open.
    pub(crate) fn owner(&self, queue: &str) -> Option<Channel> {
        self.lock()
            .temporary
            .get(queue)
            .and_then(|t| t.owner.clone())
            .filter(|c| c.status().connected() || c.status().reconnecting())
    }

    /// A consumer channel now owns a temporary queue.
    pub(crate) fn set_owner(&self, queue: &str, channel: &Channel) {
        if let Some(temporary) = self.lock().temporary.get_mut(queue) {
            temporary.owner = Some(channel.clone());
        }
    }

    /// The consumer of a temporary queue is gone, and so is the queue.
    pub(crate) fn forget_temporary(&self, queue: &str) {
        self.lock().temporary.remove(queue);
    }

    /// What to declare again on a new or recovered connection: exchanges, durable queues,
    /// their bindings, then the temporary queues no consumer owns (their owners' channels
    /// declare the others).
    pub(crate) fn replay(&self) -> Vec<Declaration> {
        let inner = self.lock();
        let mut plan: Vec<Declaration> = inner
            .exchanges
            .iter()
            .map(|(name, kind)| Declaration::Exchange {
                name: name.clone(),
                kind: *kind,
            })
            .collect();
        plan.extend(inner.queues.values().cloned().map(Declaration::Queue));
        plan.extend(inner.bindings.iter().cloned().map(Declaration::Binding));
        for temporary in inner.temporary.values() {
            if temporary.owner.is_none() {
                plan.push(Declaration::Queue(temporary.spec.clone()));
                plan.extend(temporary.bindings.iter().cloned().map(Declaration::Binding));
            }
        }
        plan
    }

    /// The public snapshot.
    pub(crate) fn snapshot(&self) -> DeclaredTopology {
        let inner = self.lock();
        DeclaredTopology {
            exchanges: inner.exchanges.clone(),
            queues: inner.queues.values().cloned().collect(),
            bindings: inner.bindings.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_declares_exchanges_then_queues_then_bindings() {
        let record = TopologyRecord::default();
        record.remember(&Declaration::Binding(Binding::new("q", "x", "k")));
        record.remember(&Declaration::Queue(
            QueueSpec::durable("q").dead_letter_to("dead"),
        ));
        record.remember(&Declaration::Exchange {
            name: "x".to_owned(),
            kind: ExchangeKind::Direct,
        });
        record.remember(&Declaration::Exchange {
            name: "x".to_owned(),
            kind: ExchangeKind::Direct,
        });
        let plan = record.replay();
        assert_eq!(plan.len(), 3, "{plan:?}");
        assert!(matches!(plan[0], Declaration::Exchange { .. }));
        assert!(matches!(plan[1], Declaration::Queue(_)));
        assert!(matches!(plan[2], Declaration::Binding(_)));
        let snapshot = record.snapshot();
        assert_eq!(
            snapshot.queues,
            vec![QueueSpec::durable("q").dead_letter_to("dead")]
        );
        assert_eq!(
            record.durable_bindings("q"),
            vec![Binding::new("q", "x", "k")],
            "a queue declared again is bound again"
        );
        assert!(record.durable_bindings("other").is_empty());
    }

    #[test]
    fn temporary_queues_stay_out_of_the_snapshot_and_go_with_their_consumer() {
        let record = TopologyRecord::default();
        let spec = QueueSpec {
            name: "svc.temporary.1".to_owned(),
            ..QueueSpec::temporary()
        };
        record.remember(&Declaration::Queue(spec.clone()));
        record.remember(&Declaration::Binding(Binding::new(&spec.name, "x", "#")));
        assert!(record.is_temporary(&spec.name));
        assert_eq!(
            record.queue(&spec.name),
            Some(spec.clone()),
            "declared again with its length limit, as first declared"
        );
        assert_eq!(record.temporary_bindings(&spec.name).len(), 1);
        assert_eq!(record.snapshot(), DeclaredTopology::default());
        assert_eq!(record.replay().len(), 2, "unowned: declared again");
        record.forget_temporary(&spec.name);
        assert!(record.replay().is_empty());
        assert!(!record.is_temporary(&spec.name));
    }
}
