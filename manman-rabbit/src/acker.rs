//! [`RabbitAcker`]: settles one delivery: ack, requeue (`basic.nack` with requeue) or
//! dead-letter (`basic.reject` without requeue). Acks asked for together go out as one
//! `multiple` ack where that is safe ([`Unsettled`]).

use crate::declarations::queue_what;
use crate::error::bus_error;
use crate::redeliveries::Redeliveries;
use crate::unsettled::{AckPlan, Slot, Unsettled};
use async_trait::async_trait;
use futures::FutureExt;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use manman_core::ports::{Acker, BusError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use uuid::Uuid;

/// Settles one delivery, at most once. Dropped unsettled, it requeues the delivery (as the
/// in-memory bus does) instead of keeping a prefetch slot until the channel closes.
#[derive(Debug)]
pub(crate) struct RabbitAcker {
    acker: lapin::Acker,
    slot: Slot,
    unsettled: Arc<Unsettled>,
    message_id: Uuid,
    queue: String,
    settled: AtomicBool,
    redeliveries: Arc<Redeliveries>,
}

#[derive(Debug, Clone, Copy)]
enum Settle {
    Ack,
    Requeue,
    DeadLetter,
}

impl RabbitAcker {
    /// Settles the delivery `tag` of a channel whose unsettled deliveries are `unsettled`
    /// (where it is entered).
    pub(crate) fn new(
        (acker, tag): (lapin::Acker, u64),
        unsettled: Arc<Unsettled>,
        message_id: Uuid,
        queue: &str,
        redeliveries: Arc<Redeliveries>,
    ) -> Self {
        let slot = unsettled.open(tag, acker.clone());
        Self {
            acker,
            slot,
            unsettled,
            message_id,
            queue: queue.to_owned(),
            settled: AtomicBool::new(false),
            redeliveries,
        }
    }

    async fn settle(&self, how: Settle) -> Result<(), BusError> {
        if self.settled.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let result = match how {
            Settle::Ack => {
                self.unsettled.want_ack(self.slot);
                // The other acks asked for at the same moment (a batch acked together) are
                // asked for before this one is planned, and go out with it.
                tokio::task::yield_now().await;
                match self.unsettled.plan_ack(self.slot, &self.acker) {
                    AckPlan::Covered => Ok(true),
                    AckPlan::Send {
                        acker,
                        multiple,
                        slots,
                    } => {
                        let sent = acker.ack(BasicAckOptions { multiple }).await;
                        self.unsettled.sent(&slots);
                        sent
                    }
                }
            }
            Settle::Requeue => {
                self.unsettled.sending(self.slot);
                let sent = self
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await;
                self.unsettled.sent(&[self.slot]);
                sent
            }
            Settle::DeadLetter => {
                self.unsettled.sending(self.slot);
                let sent = self
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await;
                self.unsettled.sent(&[self.slot]);
                sent
            }
        };
        let what = || {
            format!(
                "message {} from {}",
                self.message_id,
                queue_what(&self.queue)
            )
        };
        match result {
            Ok(true) => {
                if !matches!(how, Settle::Requeue) {
                    self.redeliveries.settled(self.message_id);
                }
                Ok(())
            }
            // Poisoned: the delivery's channel closed (or was recovered) in between; the broker
            // has put the message back and delivers it again.
            Ok(false) => Err(BusError::Unavailable {
                source: format!(
                    "{}: cannot {how:?} it: its channel closed meanwhile, so the broker delivers it again",
                    what()
                )
                .into(),
            }),
            Err(error) => Err(bus_error(error, &what())),
        }
    }
}

#[async_trait]
impl Acker for RabbitAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.settle(Settle::Ack).await
    }

    async fn requeue(&self) -> Result<(), BusError> {
        self.settle(Settle::Requeue).await
    }

    async fn dead_letter(&self) -> Result<(), BusError> {
        self.settle(Settle::DeadLetter).await
    }
}

impl Drop for RabbitAcker {
    fn drop(&mut self) {
        if !self.settled.swap(true, Ordering::SeqCst) && self.acker.usable() {
            tracing::debug!(message_id = %self.message_id, queue = %self.queue, "delivery dropped unsettled: requeueing it");
            // Its entry stays, being sent, until the nack frame is written: a `multiple` ack
            // written before it would settle it, and the nack would then close the channel.
            self.unsettled.sending(self.slot);
            let requeue = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            let (acker, unsettled, slot) =
                (self.acker.clone(), Arc::clone(&self.unsettled), self.slot);
            match tokio::runtime::Handle::try_current() {
                // Owned by nobody, and short: it ends once the frame is written or the
                // channel is gone.
                Ok(runtime) => drop(runtime.spawn(async move {
                    let _ = acker.nack(requeue).await;
                    unsettled.sent(&[slot]);
                })),
                Err(_) => {
                    let _ = acker.nack(requeue).now_or_never();
                    unsettled.sent(&[slot]);
                }
            }
            return;
        }
        self.unsettled.sent(&[self.slot]);
    }
}
