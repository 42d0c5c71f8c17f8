//! Reconciliation: what a heartbeat's inventory says about the worker's instances.
//!
//! - A `lost` worker that is heard again is `running` (cause `recovered`).
//! - Its `lost` instances that the inventory still lists get the inventory's status (cause
//!   `recovered`); the others are `crashed` (cause `recovered`: the worker no longer runs them).
//! - Active instances of an older epoch of the worker (it restarted) that the inventory does not
//!   list are `crashed` (cause `worker-restart`).

use crate::id::InstanceId;
use crate::instance::{Instance, InstanceFilter};
use crate::ports::{Clock, EntityUpdate, StatusChange, StoreError};
use crate::status::{Cause, Entity, Status, can_transition};
use crate::store::Store;
use crate::worker::{Heartbeat, InventoryItem};
use std::collections::HashMap;

/// Brings the store in line with a heartbeat's inventory.
pub(crate) async fn reconcile(
    store: &Store,
    clock: &dyn Clock,
    heartbeat: &Heartbeat,
) -> Result<(), StoreError> {
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
    for instance in active_instances(store, heartbeat).await? {
        let Some((to, cause, detail)) = verdict(
            &instance,
            listed.get(&instance.id).copied(),
            heartbeat.epoch,
        ) else {
            continue;
        };
        let mut change = status_change(
            clock,
            Entity::Instance(instance.id),
            instance.status,
            to,
            cause,
            detail,
        );
        if to.is_terminal() {
            change.update.ended_at = Some(change.as_of);
        }
        apply(store, &change).await?;
    }
    Ok(())
}

/// What an instance becomes, given the inventory entry (if any) of a heartbeat of `epoch`.
fn verdict(
    instance: &Instance,
    listed: Option<&InventoryItem>,
    epoch: i64,
) -> Option<(Status, Cause, String)> {
    match (instance.status, listed) {
        (Status::Lost, Some(item)) if item.status.is_live() => Some((
            item.status,
            Cause::Recovered,
            format!("the worker still runs it (pid {:?})", item.pid),
        )),
        (Status::Lost, None) => Some((
            Status::Crashed,
            Cause::Recovered,
            "the worker was heard again and no longer runs it".to_owned(),
        )),
        (status, None) if status != Status::Created && instance.worker_epoch < epoch => Some((
            Status::Crashed,
            Cause::WorkerRestart,
            format!(
                "its worker restarted (epoch {} → {epoch}) and does not run it",
                instance.worker_epoch
            ),
        )),
        _ => None,
    }
}

async fn active_instances(
    store: &Store,
    heartbeat: &Heartbeat,
) -> Result<Vec<Instance>, StoreError> {
    let mut filter = InstanceFilter {
        worker_id: Some(heartbeat.worker_id),
        ..InstanceFilter::default()
    };
    let mut active = Vec::new();
    loop {
        let page = store.instances.list_instances(&filter).await?;
        let Some(last) = page.last() else { break };
        filter.after = Some(last.id);
        active.extend(page.into_iter().filter(|i| i.status.is_active()));
    }
    Ok(active)
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

    fn instance(status: Status, epoch: i64) -> Instance {
        Instance {
            id: InstanceId(1),
            config_id: ConfigId(1),
            worker_id: WorkerId(1),
            worker_epoch: epoch,
            status,
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
        }
    }

    #[test]
    fn lost_instances_recover_or_crash_by_the_inventory() {
        let running = item(Status::Running);
        assert_eq!(
            verdict(&instance(Status::Lost, 1), Some(&running), 1).map(|v| (v.0, v.1)),
            Some((Status::Running, Cause::Recovered))
        );
        assert_eq!(
            verdict(&instance(Status::Lost, 1), None, 1).map(|v| (v.0, v.1)),
            Some((Status::Crashed, Cause::Recovered))
        );
    }

    #[test]
    fn an_older_epoch_not_listed_is_a_worker_restart_crash() {
        assert_eq!(
            verdict(&instance(Status::Running, 1), None, 2).map(|v| (v.0, v.1)),
            Some((Status::Crashed, Cause::WorkerRestart))
        );
        assert_eq!(
            verdict(&instance(Status::Running, 2), None, 2),
            None,
            "the same epoch: its reports tell"
        );
        assert_eq!(
            verdict(&instance(Status::Created, 1), None, 2),
            None,
            "a start on its way is left alone"
        );
        assert_eq!(
            verdict(
                &instance(Status::Running, 1),
                Some(&item(Status::Running)),
                2
            ),
            None
        );
    }
}
