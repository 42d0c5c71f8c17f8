//! Reconciliation: what a heartbeat's inventory says about the worker's instances.
//!
//! - A `lost` worker that is heard again is `running` (cause `recovered`).
//! - An active instance the inventory lists as ended (the worker keeps the instances it ended in
//!   the last minutes in its inventory, with how they ended) gets that end — status, cause,
//!   detail, exit code or signal — when it is `lost`, or when its end is a minute old and its
//!   status report was never recorded. (Otherwise the report, held in the events queue while
//!   the host could not take it, is applied first.) The report that may arrive later is a
//!   harmless duplicate: an ended status is final.
//! - Its other `lost` instances that the inventory still lists as live get the inventory's
//!   status (cause `recovered`); the ones it does not list are `crashed` (cause `recovered`:
//!   the worker no longer runs them).
//! - Active instances of an older epoch of the worker (it restarted) that the inventory does not
//!   list are `crashed` (cause `worker-restart`).
//! - An instance the inventory lists as live but the host shows ended (for 10 s or more) or as
//!   another worker's is a server nobody should run: the caller tells the worker to stop it.
//!   The host's end is final (see [`can_transition`]); it is never taken back.

use crate::id::InstanceId;
use crate::instance::Instance;
use crate::ports::{Clock, EntityUpdate, StatusChange, StoreError};
use crate::status::{Cause, Entity, Status, can_transition};
use crate::store::Store;
use crate::worker::{Heartbeat, InventoryItem};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// How old (by the worker's clock) an end in the inventory must be before it is applied to an
/// instance that is not `lost`: its status report had that long to be recorded.
pub(crate) const REPORT_GRACE: chrono::Duration = chrono::Duration::seconds(60);
/// How long after the host recorded an instance's end a live entry for it in the inventory is
/// taken as a server that still runs (and not as a heartbeat sent just before it ended).
pub(crate) const ENDED_GRACE: chrono::Duration = chrono::Duration::seconds(10);

/// Brings the store in line with a heartbeat's inventory. Returns the instances the worker
/// runs but must not: the caller has them stopped.
pub(crate) async fn reconcile(
    store: &Store,
    clock: &dyn Clock,
    heartbeat: &Heartbeat,
) -> Result<Vec<InstanceId>, StoreError> {
    let worker = store.workers.get_worker(heartbeat.worker_id).await?;
    if worker.status == Status::Lost {
        let change = status_change(
            clock,
            Entity::Worker(worker.id),
            Status::Lost,
            Status::Running,
            Cause::Recovered,
            "heard again".to_owned(),
        );
        apply(store, &change).await?;
    }
    let listed: HashMap<InstanceId, &InventoryItem> = heartbeat
        .inventory
        .iter()
        .map(|i| (i.instance_id, i))
        .collect();
    let active = active_instances(store, heartbeat).await?;
    for instance in &active {
        let Some(verdict) = verdict(
            instance,
            listed.get(&instance.id).copied(),
            heartbeat.epoch,
            clock.now(),
        ) else {
            continue;
        };
        let mut change = status_change(
            clock,
            Entity::Instance(instance.id),
            instance.status,
            verdict.to,
            verdict.cause,
            verdict.detail,
        );
        change.update = verdict.update;
        if verdict.to.is_terminal() {
            change.update.ended_at = Some(change.as_of);
        }
        apply(store, &change).await?;
    }
    let mut unwanted = Vec::new();
    for item in &heartbeat.inventory {
        if !item.status.is_live()
            || item.ended.is_some()
            || active.iter().any(|i| i.id == item.instance_id)
        {
            continue;
        }
        match store.instances.get_instance(item.instance_id).await {
            Ok(instance) if runs_unwanted(&instance, heartbeat, clock.now()) => {
                tracing::warn!(instance_id = instance.id.get(), worker_id = heartbeat.worker_id.get(), status = %instance.status, pid = ?item.pid, "a worker runs an instance the host shows ended or as another worker's: stopping it");
                unwanted.push(instance.id);
            }
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => {
                tracing::warn!(instance_id = item.instance_id.get(), worker_id = heartbeat.worker_id.get(), pid = ?item.pid, "a worker runs an instance the host does not know");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(unwanted)
}

/// Whether the worker that sent `heartbeat` runs `instance` (listed live) although it must not:
/// the host recorded its end at least [`ENDED_GRACE`] ago, or it is another worker's.
fn runs_unwanted(instance: &Instance, heartbeat: &Heartbeat, now: DateTime<Utc>) -> bool {
    if instance.worker_id != heartbeat.worker_id {
        return true;
    }
    instance.status.is_terminal()
        && instance
            .ended_at
            .is_none_or(|ended| ended <= now - ENDED_GRACE)
}

/// What an instance becomes.
#[derive(Debug)]
struct Verdict {
    to: Status,
    cause: Cause,
    detail: String,
    update: EntityUpdate,
}

impl Verdict {
    fn new(to: Status, cause: Cause, detail: String) -> Self {
        Self {
            to,
            cause,
            detail,
            update: EntityUpdate::default(),
        }
    }
}

/// What an instance becomes, given the inventory entry (if any) of a heartbeat of `epoch`
/// received at `now`.
fn verdict(
    instance: &Instance,
    listed: Option<&InventoryItem>,
    epoch: i64,
    now: DateTime<Utc>,
) -> Option<Verdict> {
    if let Some(item) = listed
        && let Some(end) = &item.ended
        && item.status.is_terminal()
    {
        if instance.status != Status::Lost && end.ended_at > now - REPORT_GRACE {
            // Its report is on its way (or held until the host can take it).
            return None;
        }
        let detail = end.detail.clone().unwrap_or_else(|| "ended".to_owned());
        let mut verdict = Verdict::new(
            item.status,
            end.cause,
            format!("{detail} (from the worker's inventory)"),
        );
        verdict.update = EntityUpdate {
            exit_code: end.exit_code,
            exit_signal: end.exit_signal,
            restart_count: Some(item.restart_count),
            ..EntityUpdate::default()
        };
        return Some(verdict);
    }
    match (instance.status, listed) {
        (Status::Lost, Some(item)) if item.status.is_live() => Some(Verdict::new(
            item.status,
            Cause::Recovered,
            format!("the worker still runs it (pid {:?})", item.pid),
        )),
        (Status::Lost, None) => Some(Verdict::new(
            Status::Crashed,
            Cause::Recovered,
            "the worker was heard again and no longer runs it".to_owned(),
        )),
        (status, None) if status != Status::Created && instance.worker_epoch < epoch => {
            Some(Verdict::new(
                Status::Crashed,
                Cause::WorkerRestart,
                format!(
                    "its worker restarted (epoch {} → {epoch}) and does not run it",
                    instance.worker_epoch
                ),
            ))
        }
        _ => None,
    }
}

async fn active_instances(
    store: &Store,
    heartbeat: &Heartbeat,
) -> Result<Vec<Instance>, StoreError> {
    store
        .instances
        .active_instances(Some(heartbeat.worker_id))
        .await
}

fn status_change(
    clock: &dyn Clock,
    entity: Entity,
    from: Status,
    to: Status,
    cause: Cause,
    detail: String,
) -> StatusChange {
    let now = clock.now();
    StatusChange {
        event_id: uuid::Uuid::new_v4(),
        entity,
        from,
        to,
        cause,
        detail: Some(detail),
        as_of: now,
        reported_at: now,
        update: EntityUpdate::default(),
        sequence: None,
    }
}

/// Applies a change the table allows; a status that moved meanwhile is left as it is.
async fn apply(store: &Store, change: &StatusChange) -> Result<(), StoreError> {
    if !can_transition(&change.entity, change.from, change.to) {
        return Ok(());
    }
    match store.status.apply_status(change).await {
        Ok(_) => {
            tracing::info!(entity = %change.entity, from = %change.from, to = %change.to, cause = %change.cause, "reconciled");
            Ok(())
        }
        Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{ConfigId, WorkerId};
    use crate::worker::InventoryEnd;

    fn instance(status: Status, epoch: i64) -> Instance {
        Instance {
            id: InstanceId(1),
            config_id: ConfigId(1),
            worker_id: WorkerId(1),
            worker_epoch: epoch,
            status,
            cause: crate::status::Cause::Placed,
            detail: None,
            created_at: chrono::Utc::now(),
            started_at: None,
            ready_at: None,
            ended_at: None,
            exit_code: None,
            exit_signal: None,
            restart_count: 0,
            last_heartbeat_at: None,
        }
    }

    fn item(status: Status) -> InventoryItem {
        InventoryItem {
            instance_id: InstanceId(1),
            status,
            pid: Some(42),
            restart_count: 0,
            console_lines_dropped: 0,
            ended: None,
        }
    }

    fn ended(ended_at: DateTime<Utc>) -> InventoryItem {
        InventoryItem {
            pid: None,
            restart_count: 2,
            ended: Some(InventoryEnd {
                cause: Cause::Exited,
                detail: Some("killed by signal 9".to_owned()),
                exit_code: None,
                exit_signal: Some(9),
                ended_at,
            }),
            ..item(Status::Crashed)
        }
    }

    fn outcome(v: Option<Verdict>) -> Option<(Status, Cause)> {
        v.map(|v| (v.to, v.cause))
    }

    #[test]
    fn lost_instances_recover_or_crash_by_the_inventory() {
        let now = Utc::now();
        let running = item(Status::Running);
        assert_eq!(
            outcome(verdict(&instance(Status::Lost, 1), Some(&running), 1, now)),
            Some((Status::Running, Cause::Recovered))
        );
        assert_eq!(
            outcome(verdict(&instance(Status::Lost, 1), None, 1, now)),
            Some((Status::Crashed, Cause::Recovered))
        );
    }

    #[test]
    fn an_end_in_the_inventory_is_recorded_as_itself() {
        let now = Utc::now();
        let end = ended(now - chrono::Duration::seconds(5));
        let lost = verdict(&instance(Status::Lost, 1), Some(&end), 1, now).expect("a verdict");
        assert_eq!((lost.to, lost.cause), (Status::Crashed, Cause::Exited));
        assert!(
            lost.detail.contains("killed by signal 9"),
            "{}",
            lost.detail
        );
        assert_eq!(
            (
                lost.update.exit_signal,
                lost.update.exit_code,
                lost.update.restart_count
            ),
            (Some(9), None, Some(2))
        );
        assert!(
            verdict(&instance(Status::Running, 1), Some(&end), 1, now).is_none(),
            "a fresh end of an instance that is not lost is left to its report"
        );
        let old = ended(now - REPORT_GRACE - chrono::Duration::seconds(1));
        assert_eq!(
            outcome(verdict(&instance(Status::Running, 1), Some(&old), 1, now)),
            Some((Status::Crashed, Cause::Exited)),
            "a report never recorded is made good"
        );
    }

    #[test]
    fn an_older_epoch_not_listed_is_a_worker_restart_crash() {
        let now = Utc::now();
        assert_eq!(
            outcome(verdict(&instance(Status::Running, 1), None, 2, now)),
            Some((Status::Crashed, Cause::WorkerRestart))
        );
        assert!(
            verdict(&instance(Status::Running, 2), None, 2, now).is_none(),
            "the same epoch: its reports tell"
        );
        assert!(
            verdict(&instance(Status::Created, 1), None, 2, now).is_none(),
            "a start on its way is left alone"
        );
        assert!(
            verdict(
                &instance(Status::Running, 1),
                Some(&item(Status::Running)),
                2,
                now
            )
            .is_none()
        );
    }

    #[test]
    fn a_live_entry_for_an_ended_or_foreign_instance_is_unwanted() {
        let now = Utc::now();
        let heartbeat = Heartbeat {
            worker_id: WorkerId(1),
            epoch: 1,
            inventory: Vec::new(),
        };
        let mut crashed = instance(Status::Crashed, 1);
        crashed.ended_at = Some(now - ENDED_GRACE);
        assert!(runs_unwanted(&crashed, &heartbeat, now));
        crashed.ended_at = Some(now - chrono::Duration::seconds(1));
        assert!(
            !runs_unwanted(&crashed, &heartbeat, now),
            "a heartbeat sent just before it ended"
        );
        let mut foreign = instance(Status::Running, 1);
        foreign.worker_id = WorkerId(2);
        assert!(runs_unwanted(&foreign, &heartbeat, now));
    }
}

#[cfg(all(test, feature = "memory"))]
mod in_process {
    use crate::command::{Command, CommandEnvelope, CommandState};
    use crate::config::ConfigSpec;
    use crate::game_server::{NewGameServer, ServerType};
    use crate::host::{HostService, RECONCILIATION, StartRequest};
    use crate::ports::{EntityUpdate, StatusChange};
    use crate::status::{Cause, Entity, Status};
    use crate::worker::{Heartbeat, InventoryItem, WorkerRegistration};
    use std::time::Duration;

    #[tokio::test]
    async fn a_server_the_host_shows_ended_is_stopped_by_reconciliation() {
        let host = HostService::in_memory().await.expect("host");
        let game = host
            .catalogue()
            .create_game(&NewGameServer {
                name: "fake".into(),
                server_type: ServerType::Local {
                    path: "games/fake".into(),
                },
            })
            .await
            .expect("game");
        let config = host
            .catalogue()
            .create_config(game.id, &ConfigSpec::new("main", "server"))
            .await
            .expect("config");
        let registered = host
            .gateway()
            .register_worker(&WorkerRegistration {
                name: "w1".into(),
                version: "1".into(),
                capacity: 4,
                labels: Default::default(),
                taken_up: Vec::new(),
            })
            .await
            .expect("register");
        let mut commands = host
            .bus()
            .consume_commands(registered.worker_id, 8)
            .await
            .expect("consume");
        let started = host
            .instances()
            .start(&StartRequest::new(config.id), "test")
            .await
            .expect("start");
        let start = commands.next().await.expect("a command").expect("ok");
        start.ack().await.expect("ack");
        // The host recorded its end a minute ago (a forged report, a start it gave up on…).
        let ended = host.clock().now() - chrono::Duration::minutes(1);
        host.store()
            .status
            .apply_status(&StatusChange {
                event_id: uuid::Uuid::new_v4(),
                entity: Entity::Instance(started.instance_id),
                from: Status::Created,
                to: Status::Crashed,
                cause: Cause::Undelivered,
                detail: None,
                as_of: ended,
                reported_at: ended,
                update: EntityUpdate {
                    ended_at: Some(ended),
                    ..EntityUpdate::default()
                },
                sequence: None,
            })
            .await
            .expect("crashed");
        // …but the worker runs it.
        let heartbeat = Heartbeat {
            worker_id: registered.worker_id,
            epoch: registered.epoch,
            inventory: vec![InventoryItem {
                instance_id: started.instance_id,
                status: Status::Running,
                pid: Some(4242),
                restart_count: 0,
                console_lines_dropped: 0,
                ended: None,
            }],
        };
        host.gateway()
            .heartbeat(&heartbeat)
            .await
            .expect("heartbeat");
        let stop = tokio::time::timeout(Duration::from_secs(5), commands.next())
            .await
            .expect("a stop command is issued")
            .expect("a command")
            .expect("ok");
        let envelope: CommandEnvelope = stop.message.decode().expect("an envelope");
        assert_eq!(
            envelope.command,
            Command::Stop {
                instance_id: started.instance_id
            }
        );
        assert_eq!(envelope.issued_by, RECONCILIATION);
        let record = host
            .instances()
            .get_command(envelope.id)
            .await
            .expect("recorded");
        assert_eq!(record.state, CommandState::Delivered);
        assert_eq!(record.worker_id, registered.worker_id);
        stop.ack().await.expect("ack");
        assert_eq!(
            host.instances()
                .get_instance(started.instance_id)
                .await
                .expect("get")
                .status,
            Status::Crashed,
            "the host's end stands"
        );

        // Asked once per command lifetime, not at every heartbeat.
        host.gateway()
            .heartbeat(&heartbeat)
            .await
            .expect("heartbeat");
        let again = tokio::time::timeout(Duration::from_millis(300), commands.next()).await;
        assert!(again.is_err(), "no second stop: {again:?}");
    }
}
