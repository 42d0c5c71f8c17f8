//! [`RabbitConsumer`]: one queue's deliveries, on a channel of its own with its prefetch.
//!
//! A consumer outlives its channel: while lapin recovers the connection it waits, and lapin
//! resumes the same consumer; if the channel or the connection ends for good, it opens a new
//! channel and consumes again, pausing between attempts while the broker is away. It ends
//! (`next` answers `None`) only when its queue is deleted or the bus is closed; consumed again,
//! a queue this bus declared is declared again with its bindings. A delivery whose
//! properties cannot be read is still handed out, with stand-ins and a warning.

use crate::acker::RabbitAcker;
use crate::bus::{Attempt, Shared};
use crate::connection::FIRST_PAUSE;
use crate::declarations::{self, queue_what};
use crate::error::{is_not_found, is_transient};
use crate::properties;
use crate::redeliveries::Redeliveries;
use crate::unsettled::Unsettled;
use async_trait::async_trait;
use chrono::Utc;
use futures::{FutureExt, StreamExt};
use lapin::Channel;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use manman_core::ports::{BusError, Consumer, Delivery};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Longest pause between attempts to consume again while the broker is away.
const MAX_REOPEN_PAUSE: Duration = Duration::from_secs(5);
/// How long a consumer dropped during a recovery waits for it, to close its channel after.
const LATE_CLOSE_WAIT: Duration = Duration::from_secs(60);

/// Consumes one queue of a [`crate::RabbitBus`].
pub(crate) struct RabbitConsumer {
    shared: Arc<Shared>,
    queue: String,
    prefetch: u16,
    tag: String,
    open: Option<Open>,
    redeliveries: Arc<Redeliveries>,
}

/// The channel and lapin consumer in use.
struct Open {
    channel: Channel,
    consumer: lapin::Consumer,
    /// Its deliveries not settled yet.
    unsettled: Arc<Unsettled>,
}

/// Why consuming could not (re)start.
enum Failure {
    /// The queue does not exist (any more).
    Gone,
    /// The bus is closed.
    Closed,
    /// The broker is away or refused for now.
    Retry(BusError),
    /// Any other refusal.
    Final(BusError),
}

impl RabbitConsumer {
    /// Starts consuming `queue`: waits (up to the publish wait) while the broker is away.
    pub(crate) async fn start(
        shared: Arc<Shared>,
        queue: &str,
        prefetch: u16,
    ) -> Result<Self, BusError> {
        declarations::short(queue, &queue_what(queue))?;
        let tag = format!(
            "{}.consumer.{}",
            shared.link.settings().connection_name,
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut consumer = Self {
            shared,
            queue: queue.to_owned(),
            prefetch,
            tag,
            open: None,
            redeliveries: Arc::default(),
        };
        let deadline = Instant::now() + consumer.shared.link.settings().publish_wait;
        let mut pause = FIRST_PAUSE;
        loop {
            match consumer.open().await {
                Ok(open) => {
                    consumer.open = Some(open);
                    return Ok(consumer);
                }
                Err(Failure::Gone) => {
                    return Err(BusError::NotFound {
                        what: queue_what(queue),
                    });
                }
                Err(Failure::Closed) => return Err(BusError::Closed),
                Err(Failure::Final(error)) => return Err(error),
                Err(Failure::Retry(error)) => {
                    if !consumer.shared.pause(pause, deadline).await {
                        return Err(error);
                    }
                    pause = Shared::longer(pause);
                }
            }
        }
    }

    fn temporary(&self) -> bool {
        self.shared.record.is_temporary(&self.queue)
    }

    /// Opens a channel, sets the prefetch, declares the queue on it when this bus declared it
    /// (so that the channel's recovery declares it before consuming) together with every
    /// binding this bus made of it — a queue declared again (it was deleted) is bound again,
    /// never left receiving nothing — and consumes.
    async fn open(&self) -> Result<Open, Failure> {
        if self.shared.closed.is_cancelled() {
            return Err(Failure::Closed);
        }
        let what = queue_what(&self.queue);
        let lapin_failure = |error: lapin::Error| {
            if is_not_found(&error) {
                Failure::Gone
            } else {
                match Attempt::from_lapin(error, &what) {
                    Attempt::Retry(e) => Failure::Retry(e),
                    Attempt::Final(e) => Failure::Final(e),
                }
            }
        };
        let connection = self.shared.connection().await.map_err(|e| match e {
            BusError::Closed => Failure::Closed,
            e if e.is_transient() => Failure::Retry(e),
            e => Failure::Final(e),
        })?;
        let channel = connection.create_channel().await.map_err(lapin_failure)?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .map_err(lapin_failure)?;
        if let Some(spec) = self.shared.record.queue(&self.queue) {
            declarations::queue(&channel, &spec)
                .await
                .map_err(lapin_failure)?;
            if spec.temporary {
                for binding in self.shared.record.temporary_bindings(&self.queue) {
                    declarations::bind(&channel, &binding)
                        .await
                        .map_err(lapin_failure)?;
                }
                self.shared.record.set_owner(&self.queue, &channel);
            } else {
                // Only bound, its exchanges not declared: a worker's broker user may bind its
                // queue but not configure the shared exchanges.
                for binding in self.shared.record.durable_bindings(&self.queue) {
                    declarations::bind(&channel, &binding)
                        .await
                        .map_err(lapin_failure)?;
                }
            }
        }
        let consumer = channel
            .basic_consume(
                self.queue.as_str().into(),
                self.tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(lapin_failure)?;
        Ok(Open {
            channel,
            consumer,
            unsettled: Arc::default(),
        })
    }

    /// Maps a lapin delivery; never fails.
    fn delivery(&self, delivery: lapin::message::Delivery, unsettled: &Arc<Unsettled>) -> Delivery {
        let decoded = properties::decode(
            &delivery.properties,
            delivery.data,
            delivery.redelivered,
            Utc::now(),
        );
        let message_id = decoded.message.id;
        if !decoded.problems.is_empty() {
            tracing::warn!(queue = %self.queue, %message_id, problems = ?decoded.problems, "a delivery with unreadable properties: delivering it with stand-ins");
        }
        let delivery_count =
            self.redeliveries
                .count(message_id, decoded.delivery_count, delivery.redelivered);
        Delivery {
            message: decoded.message,
            delivery_count,
            acker: Box::new(RabbitAcker::new(
                (delivery.acker, delivery.delivery_tag),
                Arc::clone(unsettled),
                message_id,
                &self.queue,
                Arc::clone(&self.redeliveries),
            )),
        }
    }

    /// Lets go of the channel (closing it, which requeues its unsettled deliveries).
    fn let_go(&mut self) {
        if let Some(open) = self.open.take() {
            close_channel(&self.shared, open.channel);
        }
    }

    /// The next delivery from the open channel; `None` when it ended (and why).
    async fn next_from_open(&mut self) -> Option<Result<Delivery, Ended>> {
        let open = self.open.as_mut()?;
        let item = tokio::select! {
            item = open.consumer.next() => item,
            () = self.shared.closed.cancelled() => return Some(Err(Ended::BusClosed)),
        };
        match item {
            Some(Ok(delivery)) => {
                let unsettled = Arc::clone(&open.unsettled);
                Some(Ok(self.delivery(delivery, &unsettled)))
            }
            Some(Err(error)) => {
                let channel = open.channel.clone();
                if channel.status().reconnecting() && is_transient(&error) {
                    tracing::info!(queue = %self.queue, %error, "the connection is recovering: the consumer waits");
                    let recovered = tokio::select! {
                        r = channel.wait_for_recovery(error) => r.is_ok(),
                        () = self.shared.closed.cancelled() => return Some(Err(Ended::BusClosed)),
                    };
                    if recovered {
                        tracing::info!(queue = %self.queue, "the consumer resumes after the recovery");
                        return Some(Err(Ended::Resumed));
                    }
                }
                tracing::warn!(queue = %self.queue, status = ?channel.status(), "the consumer's channel ended: consuming again on a new one");
                Some(Err(Ended::ChannelLost))
            }
            None => {
                if open.channel.status().connected() {
                    // The broker cancelled the consumer on a live channel: the queue is gone.
                    Some(Err(Ended::QueueDeleted))
                } else {
                    Some(Err(Ended::ChannelLost))
                }
            }
        }
    }
}

/// How a lapin consumer stream stopped.
enum Ended {
    /// lapin recovered the connection: the same consumer goes on.
    Resumed,
    /// The channel is gone: consume again on a new one.
    ChannelLost,
    /// The broker deleted the queue.
    QueueDeleted,
    /// The bus was closed.
    BusClosed,
}

#[async_trait]
impl Consumer for RabbitConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        let mut pause = FIRST_PAUSE;
        let mut warned = false;
        loop {
            if self.open.is_none() {
                match self.open().await {
                    Ok(open) => {
                        if warned {
                            tracing::info!(queue = %self.queue, "consuming again");
                        }
                        self.open = Some(open);
                        pause = FIRST_PAUSE;
                    }
                    Err(Failure::Gone) => {
                        tracing::info!(queue = %self.queue, "the queue no longer exists: the consumer ends");
                        return None;
                    }
                    Err(Failure::Closed) => return None,
                    Err(Failure::Retry(error) | Failure::Final(error)) => {
                        if !warned {
                            tracing::warn!(queue = %self.queue, %error, "cannot consume now: trying again");
                            warned = true;
                        }
                        let forever = Instant::now() + Duration::from_secs(3600);
                        if !self.shared.pause(pause, forever).await {
                            return None;
                        }
                        pause = (pause * 2).min(MAX_REOPEN_PAUSE);
                    }
                }
                continue;
            }
            match self.next_from_open().await? {
                Ok(delivery) => return Some(Ok(delivery)),
                Err(Ended::Resumed) => {}
                Err(Ended::ChannelLost) => self.let_go(),
                Err(Ended::QueueDeleted) => {
                    tracing::info!(queue = %self.queue, "the broker cancelled the consumer (queue deleted): it ends");
                    self.let_go();
                    return None;
                }
                Err(Ended::BusClosed) => {
                    self.let_go();
                    return None;
                }
            }
        }
    }
}

impl fmt::Debug for RabbitConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitConsumer")
            .field("queue", &self.queue)
            .field("prefetch", &self.prefetch)
            .field("tag", &self.tag)
            .field("open", &self.open.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for RabbitConsumer {
    fn drop(&mut self) {
        let temporary = self.temporary();
        self.let_go();
        if temporary {
            // Auto-delete: the broker deletes it with its consumer.
            self.shared.record.forget_temporary(&self.queue);
        }
    }
}

/// Closes a consumer's channel, which cancels its consumer and requeues what it had not
/// settled. A channel in the middle of a recovery is closed once recovered (by a task of the
/// bus), or lapin would bring its consumer back.
fn close_channel(shared: &Arc<Shared>, channel: Channel) {
    if channel.status().connected() {
        // The close frame is sent on the first poll; nobody needs the answer.
        let _ = channel.close(200, "OK".into()).now_or_never();
        return;
    }
    if !channel.status().reconnecting() || shared.closed.is_cancelled() {
        return;
    }
    let closed = shared.closed.clone();
    shared.tasks.spawn(async move {
        let deadline = Instant::now() + LATE_CLOSE_WAIT;
        while channel.status().reconnecting() && Instant::now() < deadline {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = closed.cancelled() => return,
            }
        }
        if channel.status().connected() {
            let _ = channel.close(200, "OK".into()).await;
        }
    });
}
