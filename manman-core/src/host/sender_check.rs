//! [`SenderCheck`]: whether an event on `manman.events` was sealed by the worker registration
//! its seal names, that registration is its worker's current one, and the event is about what
//! that worker owns: its own status, its instances, its commands. Anything else is refused
//! with a [`DeadLetterReason`]: a broker user that may publish events cannot write the truth.

use crate::command::{CommandRecord, CommandResult};
use crate::event::Event;
use crate::host::{BusKeys, DeadLetterReason};
use crate::id::{InstanceId, WorkerId};
use crate::ports::{CurrentStatus, Message, StoreError};
use crate::signing::Purpose;
use crate::status::Entity;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Instance owners remembered (an instance's worker never changes); the memory is cleared when
/// it is full.
const OWNERS_REMEMBERED: usize = 100_000;

/// How long a live view uses a worker's epoch read from the store again.
const LIVE_VIEW_EPOCH_MEMORY: Duration = Duration::from_secs(1);

/// Why an event is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The reason, as counted.
    pub(crate) reason: DeadLetterReason,
    /// What exactly, for a person.
    pub(crate) detail: String,
}

impl Refusal {
    fn new(reason: DeadLetterReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// The current epoch of each worker a batch's seals name: `None` for a worker that does not
/// exist. Read once per batch, so a registration that supersedes another is seen at once.
pub(crate) type Epochs = HashMap<WorkerId, Option<i64>>;

/// Checks events' seals and ownership against the store.
#[derive(Debug, Clone)]
pub(crate) struct SenderCheck {
    store: Store,
    keys: BusKeys,
    owners: Arc<Mutex<HashMap<InstanceId, WorkerId>>>,
    /// How long a worker's epoch read from the store is used again (none: read per batch).
    epoch_memory: Option<(
        Duration,
        Arc<Mutex<HashMap<WorkerId, (Option<i64>, Instant)>>>,
    )>,
}

impl SenderCheck {
    /// A check against `store`'s workers, instances and commands, with `keys`.
    pub(crate) fn new(store: Store, keys: BusKeys) -> Self {
        Self {
            store,
            keys,
            owners: Arc::default(),
            epoch_memory: None,
        }
    }

    /// The check of a live view (the SSE hubs), where one store read per event would cost more
    /// than it is worth: a worker's epoch read from the store is used again for
    /// [`LIVE_VIEW_EPOCH_MEMORY`] when a seal names that very epoch. An event of a registration
    /// superseded within that time may pass meanwhile; a seal naming any other epoch is
    /// checked against the store.
    pub(crate) fn for_live_view(store: &Store) -> Self {
        let mut check = Self::new(store.clone(), BusKeys::new(store));
        check.epoch_memory = Some((LIVE_VIEW_EPOCH_MEMORY, Arc::default()));
        check
    }

    /// The current epoch of every worker the seals of `messages` name.
    pub(crate) async fn epochs(&self, messages: &[&Message]) -> Result<Epochs, StoreError> {
        let mut epochs = Epochs::new();
        for message in messages {
            let Some(seal) = &message.seal else { continue };
            if epochs.contains_key(&seal.worker_id) {
                continue;
            }
            if let Some((ttl, memory)) = &self.epoch_memory {
                let remembered = memory
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&seal.worker_id)
                    // Only a match is taken from memory: any other epoch (a newer
                    // registration, a forgery) is read from the store again.
                    .filter(|(epoch, at)| *epoch == Some(seal.epoch) && at.elapsed() < *ttl)
                    .map(|(epoch, _)| *epoch);
                if let Some(epoch) = remembered {
                    epochs.insert(seal.worker_id, epoch);
                    continue;
                }
            }
            let epoch = match self.store.workers.get_worker(seal.worker_id).await {
                Ok(worker) => Some(worker.epoch),
                Err(StoreError::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            if let Some((_, memory)) = &self.epoch_memory {
                let mut memory = memory.lock().unwrap_or_else(PoisonError::into_inner);
                if memory.len() >= OWNERS_REMEMBERED {
                    memory.clear();
                }
                memory.insert(seal.worker_id, (epoch, Instant::now()));
            }
            epochs.insert(seal.worker_id, epoch);
        }
        Ok(epochs)
    }

    /// The worker that sent `message` (carrying `event`), or why it is refused. `epochs` must
    /// hold the seal's worker ([`Self::epochs`]).
    pub(crate) async fn sender(
        &self,
        message: &Message,
        event: &Event,
        epochs: &Epochs,
    ) -> Result<Result<WorkerId, Refusal>, StoreError> {
        let worker = match self.sealed_by(message, Purpose::Event, epochs).await? {
            Ok(worker) => worker,
            Err(refusal) => return Ok(Err(refusal)),
        };
        // A report numbers itself in its sender's registration: a sequence of another epoch
        // (say, a far future one) would make every true report after it look stale.
        if let Event::Status(report) = event
            && let Some(sequence) = report.sequence
            && let Some(seal) = &message.seal
            && sequence.epoch != seal.epoch
        {
            return Ok(Err(Refusal::new(
                DeadLetterReason::OldEpoch,
                format!(
                    "{worker}'s report is numbered in epoch {}, but sealed by epoch {}",
                    sequence.epoch, seal.epoch
                ),
            )));
        }
        Ok(self.owns(worker, event).await?.map(|()| worker))
    }

    /// The worker that sent the console line `message` of `instance`, or why it is refused.
    pub(crate) async fn console_sender(
        &self,
        message: &Message,
        instance: InstanceId,
        epochs: &Epochs,
    ) -> Result<Result<WorkerId, Refusal>, StoreError> {
        let worker = match self.sealed_by(message, Purpose::Console, epochs).await? {
            Ok(worker) => worker,
            Err(refusal) => return Ok(Err(refusal)),
        };
        Ok(self.owns_instance(worker, instance).await?.map(|()| worker))
    }

    /// The worker that sent the command result `message`, checked without reading its
    /// command: the seal, and that the worker answers in its own name. That the command was
    /// sent to it is the condition of recording the answer
    /// ([`crate::ports::CommandRepository::answer_command`]); [`answer_refusal`] says why an
    /// answer was not recorded.
    pub(crate) async fn result_sender(
        &self,
        message: &Message,
        result: &CommandResult,
        epochs: &Epochs,
    ) -> Result<Result<WorkerId, Refusal>, StoreError> {
        let worker = match self.sealed_by(message, Purpose::Event, epochs).await? {
            Ok(worker) => worker,
            Err(refusal) => return Ok(Err(refusal)),
        };
        Ok(answers_as_itself(worker, result).map(|()| worker))
    }

    /// Whether a live view (the SSE hubs) takes `event`: a store that fails makes it passed
    /// over (the status processor holds events until the store is back, and records them).
    pub(crate) async fn believes_event(&self, message: &Message, event: &Event) -> bool {
        let Ok(epochs) = self.epochs(&[message]).await else {
            return false;
        };
        matches!(self.sender(message, event, &epochs).await, Ok(Ok(_)))
    }

    /// Whether a live view takes the console line `message` of `instance`.
    pub(crate) async fn believes_console_line(
        &self,
        message: &Message,
        instance: InstanceId,
    ) -> bool {
        let Ok(epochs) = self.epochs(&[message]).await else {
            return false;
        };
        matches!(
            self.console_sender(message, instance, &epochs).await,
            Ok(Ok(_))
        )
    }

    /// The worker registration whose seal `message` carries, if it is that worker's current one
    /// and the seal checks with its key.
    async fn sealed_by(
        &self,
        message: &Message,
        purpose: Purpose,
        epochs: &Epochs,
    ) -> Result<Result<WorkerId, Refusal>, StoreError> {
        let Some(seal) = &message.seal else {
            return Ok(Err(Refusal::new(
                DeadLetterReason::Unsigned,
                "it is unsigned: only a registered worker's sealed messages are believed",
            )));
        };
        let worker = seal.worker_id;
        let current = match epochs.get(&worker) {
            Some(Some(epoch)) => *epoch,
            Some(None) | None => {
                return Ok(Err(Refusal::new(
                    DeadLetterReason::UnknownWorker,
                    format!("it is sealed by {worker}, which does not exist"),
                )));
            }
        };
        if seal.epoch != current {
            return Ok(Err(Refusal::new(
                DeadLetterReason::OldEpoch,
                format!(
                    "it is sealed by {worker} epoch {}, but its current registration is epoch {current}",
                    seal.epoch
                ),
            )));
        }
        let key = self.keys.worker_key(worker, current).await?;
        match key.check(purpose, message) {
            Ok(()) => Ok(Ok(worker)),
            Err(e) => Ok(Err(Refusal::new(
                DeadLetterReason::BadSignature,
                format!("it names {worker} epoch {current}, but {e}"),
            ))),
        }
    }

    /// Whether `worker` may say `event`: about itself, its instances, its commands.
    async fn owns(
        &self,
        worker: WorkerId,
        event: &Event,
    ) -> Result<Result<(), Refusal>, StoreError> {
        let instance = match event {
            Event::Status(report) => match report.entity {
                Entity::Worker(id) if id == worker => return Ok(Ok(())),
                Entity::Worker(id) => {
                    return Ok(Err(Refusal::new(
                        DeadLetterReason::NotOwner,
                        format!("{worker} reported the status of {id}, another worker"),
                    )));
                }
                Entity::Instance(id) => id,
            },
            Event::InstallProgress(progress) => progress.instance_id,
            Event::CommandResult(result) => {
                if let Err(refusal) = answers_as_itself(worker, result) {
                    return Ok(Err(refusal));
                }
                let record = self.store.commands.get_command(result.command_id).await;
                return Ok(match answer_refusal(worker, result.command_id, record)? {
                    Some(refusal) => Err(refusal),
                    None => Ok(()),
                });
            }
        };
        self.owns_instance(worker, instance).await
    }

    /// Whether `instance` was placed on `worker`.
    async fn owns_instance(
        &self,
        worker: WorkerId,
        instance: InstanceId,
    ) -> Result<Result<(), Refusal>, StoreError> {
        let Some(owner) = self.owner(instance).await? else {
            return Ok(Err(Refusal::new(
                DeadLetterReason::UnknownEntity,
                format!("{worker} reported on {instance}, which does not exist"),
            )));
        };
        if owner == worker {
            Ok(Ok(()))
        } else {
            Ok(Err(Refusal::new(
                DeadLetterReason::NotOwner,
                format!("{worker} reported on {instance}, which runs on {owner}"),
            )))
        }
    }

    /// Reads the current status of every entity the status reports among `events` are about,
    /// and of the instances of the other events whose owner is not remembered yet, in one store
    /// call, and remembers the instances' owners: a batch costs one read, however many
    /// entities it is about, and it need not read their statuses again.
    pub(crate) async fn read_current<'e>(
        &self,
        events: impl IntoIterator<Item = &'e Event>,
    ) -> Result<HashMap<Entity, CurrentStatus>, StoreError> {
        let mut wanted: Vec<Entity> = {
            let owners = self.lock();
            events
                .into_iter()
                .filter_map(|event| match event {
                    Event::Status(report) => Some(report.entity),
                    Event::InstallProgress(progress) => (!owners
                        .contains_key(&progress.instance_id))
                    .then_some(Entity::Instance(progress.instance_id)),
                    Event::CommandResult(_) => None,
                })
                .collect()
        };
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(HashMap::new());
        }
        let current = self.store.status.current_statuses(&wanted).await?;
        let mut owners = self.lock();
        if owners.len() + wanted.len() > OWNERS_REMEMBERED {
            owners.clear();
        }
        let mut read = HashMap::with_capacity(wanted.len());
        for (entity, current) in wanted.into_iter().zip(current) {
            let Some(current) = current else { continue };
            if let Entity::Instance(id) = entity {
                owners.insert(id, current.owner);
            }
            read.insert(entity, current);
        }
        Ok(read)
    }

    /// The worker an instance was placed on; `None` when it does not exist.
    async fn owner(&self, instance: InstanceId) -> Result<Option<WorkerId>, StoreError> {
        if let Some(owner) = self.lock().get(&instance) {
            return Ok(Some(*owner));
        }
        let owner = match self.store.instances.get_instance(instance).await {
            Ok(found) => found.worker_id,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut owners = self.lock();
        if owners.len() >= OWNERS_REMEMBERED {
            owners.clear();
        }
        owners.insert(instance, owner);
        Ok(Some(owner))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<InstanceId, WorkerId>> {
        self.owners.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether `worker`'s result answers in its own name.
fn answers_as_itself(worker: WorkerId, result: &CommandResult) -> Result<(), Refusal> {
    if result.worker_id == worker {
        return Ok(());
    }
    Err(Refusal::new(
        DeadLetterReason::NotOwner,
        format!(
            "{worker} answered command {} in the name of {}",
            result.command_id, result.worker_id
        ),
    ))
}

/// Why `worker` may not answer command `command_id`, whose record is `record`: `None` when it
/// was sent to `worker`.
pub(crate) fn answer_refusal(
    worker: WorkerId,
    command_id: uuid::Uuid,
    record: Result<CommandRecord, StoreError>,
) -> Result<Option<Refusal>, StoreError> {
    match record {
        Ok(record) if record.worker_id == worker => Ok(None),
        Ok(record) => Ok(Some(Refusal::new(
            DeadLetterReason::NotOwner,
            format!(
                "{worker} answered command {command_id}, which was sent to {}",
                record.worker_id
            ),
        ))),
        Err(StoreError::NotFound { .. }) => Ok(Some(Refusal::new(
            DeadLetterReason::UnknownEntity,
            format!("{worker} answered command {command_id}, which the host never sent"),
        ))),
        Err(e) => Err(e),
    }
}
