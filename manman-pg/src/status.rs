//! Status history and current status, written together.

use crate::error::store_error;
use crate::store::PgStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use manman_core::id::{InstanceId, WorkerId};
use manman_core::ports::{ApplyOutcome, CurrentStatus, StatusChange, StatusRepository, StoreError};
use manman_core::status::{Cause, Entity, Sequence, Status, StatusEvent};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// A status from its text (the schema's CHECK keeps it valid).
pub(crate) fn parse_status(text: &str) -> Result<Status, StoreError> {
    text.parse()
        .map_err(|e: manman_core::unknown_name::UnknownName| StoreError::Other { source: e.into() })
}

pub(crate) fn parse_cause(text: &str) -> Result<Cause, StoreError> {
    text.parse()
        .map_err(|e: manman_core::unknown_name::UnknownName| StoreError::Other { source: e.into() })
}

/// Appends one history row; returns its position.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_event(
    conn: &mut PgConnection,
    event_id: Uuid,
    entity: Entity,
    from: Option<Status>,
    status: Status,
    cause: Cause,
    detail: Option<&str>,
    as_of: DateTime<Utc>,
    reported_at: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    let (worker, instance) = match entity {
        Entity::Worker(id) => (Some(id.get()), None),
        Entity::Instance(id) => (None, Some(id.get())),
    };
    sqlx::query_scalar(
        "INSERT INTO manman.status_events (event_id, worker_id, instance_id, from_status, status, cause, detail, as_of, reported_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(event_id)
    .bind(worker)
    .bind(instance)
    .bind(from.map(Status::as_str))
    .bind(status.as_str())
    .bind(cause.as_str())
    .bind(detail)
    .bind(as_of)
    .bind(reported_at)
    .fetch_one(conn)
    .await
}

#[derive(FromRow)]
struct EventRow {
    id: i64,
    event_id: Uuid,
    worker_id: Option<i64>,
    instance_id: Option<i64>,
    from_status: Option<String>,
    status: String,
    cause: String,
    detail: Option<String>,
    as_of: DateTime<Utc>,
    reported_at: DateTime<Utc>,
}

impl TryFrom<EventRow> for StatusEvent {
    type Error = StoreError;

    fn try_from(row: EventRow) -> Result<Self, StoreError> {
        let entity = match (row.worker_id, row.instance_id) {
            (Some(id), None) => Entity::Worker(WorkerId(id)),
            (None, Some(id)) => Entity::Instance(InstanceId(id)),
            _ => {
                return Err(StoreError::Other {
                    source: format!("status event {} names no single entity", row.id).into(),
                });
            }
        };
        Ok(Self {
            id: row.id,
            event_id: row.event_id,
            entity,
            from: row.from_status.as_deref().map(parse_status).transpose()?,
            status: parse_status(&row.status)?,
            cause: parse_cause(&row.cause)?,
            detail: row.detail,
            as_of: row.as_of,
            reported_at: row.reported_at,
        })
    }
}

/// Whether an entity exists.
async fn exists(conn: &mut PgConnection, entity: Entity) -> Result<bool, sqlx::Error> {
    match entity {
        Entity::Worker(id) => {
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM manman.workers WHERE id = $1)")
                .bind(id.get())
        }
        Entity::Instance(id) => {
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM manman.instances WHERE id = $1)")
                .bind(id.get())
        }
    }
    .fetch_one(conn)
    .await
}

/// An entity's status and last applied sequence, as a row gives them.
type CurrentRow = (String, Option<i64>, Option<i64>);

/// The current status and last applied sequence of one entity; `None` when it does not exist.
pub(crate) async fn current_of(
    conn: &mut PgConnection,
    entity: Entity,
) -> Result<Option<CurrentRow>, sqlx::Error> {
    match entity {
        Entity::Worker(id) => sqlx::query_as(
            "SELECT status, seq_epoch, seq_counter FROM manman.workers WHERE id = $1",
        )
        .bind(id.get()),
        Entity::Instance(id) => sqlx::query_as(
            "SELECT status, seq_epoch, seq_counter FROM manman.instances WHERE id = $1",
        )
        .bind(id.get()),
    }
    .fetch_optional(conn)
    .await
}

fn current_status(row: CurrentRow, owner: WorkerId) -> Result<CurrentStatus, StoreError> {
    let (status, sequence) = parse_current(row)?;
    Ok(CurrentStatus {
        status,
        sequence,
        owner,
    })
}

/// The status and last applied sequence a row gives.
fn parse_current(row: CurrentRow) -> Result<(Status, Option<Sequence>), StoreError> {
    let (status, epoch, counter) = row;
    Ok((
        parse_status(&status)?,
        epoch.zip(counter).map(|(e, c)| Sequence::new(e, c)),
    ))
}

/// Why `change` was not applied to an entity that is now `current` (`None`: it does not exist).
pub(crate) fn refusal(
    change: &StatusChange,
    current: Option<CurrentRow>,
) -> Result<StoreError, StoreError> {
    let Some(current) = current else {
        return Ok(StoreError::not_found(&change.entity));
    };
    let (status, sequence) = parse_current(current)?;
    Ok(match (change.sequence, sequence) {
        (Some(sequence), Some(last)) if status == change.from => StoreError::conflict(
            &change.entity,
            format!("has had report {last} applied, and report {sequence} is not after it"),
        ),
        _ => StoreError::conflict(
            &change.entity,
            format!("is {status}, not {} as the change expected", change.from),
        ),
    })
}

/// The sequence of a change as two columns (both `NULL` without one).
pub(crate) fn sequence_columns(sequence: Option<Sequence>) -> (Option<i64>, Option<i64>) {
    (sequence.map(|s| s.epoch), sequence.map(|s| s.counter))
}

#[async_trait]
impl StatusRepository for PgStore {
    async fn apply_status(&self, change: &StatusChange) -> Result<ApplyOutcome, StoreError> {
        let entity = change.entity;
        let fail = |e| store_error(e, &entity);
        let mut tx = self.pool().begin().await.map_err(fail)?;
        let seen: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM manman.status_events WHERE event_id = $1)",
        )
        .bind(change.event_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(fail)?;
        if seen {
            return Ok(ApplyOutcome::Duplicate);
        }
        let u = &change.update;
        let (seq_epoch, seq_counter) = sequence_columns(change.sequence);
        let updated = match entity {
            Entity::Worker(id) => sqlx::query(
                "UPDATE manman.workers SET status = $3, ended_at = COALESCE($4, ended_at),
                     seq_epoch = COALESCE($5, seq_epoch), seq_counter = COALESCE($6, seq_counter)
                 WHERE id = $1 AND status = $2
                   AND ($5::bigint IS NULL OR seq_epoch IS NULL OR (seq_epoch, seq_counter) < ($5, $6))",
            )
            .bind(id.get())
            .bind(change.from.as_str())
            .bind(change.to.as_str())
            .bind(u.ended_at)
            .bind(seq_epoch)
            .bind(seq_counter),
            Entity::Instance(id) => sqlx::query(
                "UPDATE manman.instances SET status = $3,
                     started_at = COALESCE($4, started_at),
                     ready_at = COALESCE($5, ready_at),
                     ended_at = COALESCE($6, ended_at),
                     exit_code = CASE WHEN $7::integer IS NOT NULL OR $8::integer IS NOT NULL OR $3 = 'running' THEN $7 ELSE exit_code END,
                     exit_signal = CASE WHEN $7::integer IS NOT NULL OR $8::integer IS NOT NULL OR $3 = 'running' THEN $8 ELSE exit_signal END,
                     restart_count = COALESCE($9, restart_count),
                     seq_epoch = COALESCE($10, seq_epoch), seq_counter = COALESCE($11, seq_counter),
                     cause = $12, detail = $13
                 WHERE id = $1 AND status = $2
                   AND ($10::bigint IS NULL OR seq_epoch IS NULL OR (seq_epoch, seq_counter) < ($10, $11))",
            )
            .bind(id.get())
            .bind(change.from.as_str())
            .bind(change.to.as_str())
            .bind(u.started_at)
            .bind(u.ready_at)
            .bind(u.ended_at)
            .bind(u.exit_code)
            .bind(u.exit_signal)
            .bind(u.restart_count.map(|n| i32::try_from(n).unwrap_or(i32::MAX)))
            .bind(seq_epoch)
            .bind(seq_counter)
            .bind(change.cause.as_str())
            .bind(change.detail.as_deref()),
        }
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        if updated.rows_affected() == 0 {
            let current = current_of(&mut tx, entity).await.map_err(fail)?;
            return Err(refusal(change, current)?);
        }
        let inserted = insert_event(
            &mut tx,
            change.event_id,
            entity,
            Some(change.from),
            change.to,
            change.cause,
            change.detail.as_deref(),
            change.as_of,
            change.reported_at,
        )
        .await;
        let id = match inserted {
            Ok(id) => id,
            // The same event applied at the same moment by another replica.
            Err(sqlx::Error::Database(db))
                if db.constraint() == Some("status_events_event_id_key") =>
            {
                return Ok(ApplyOutcome::Duplicate);
            }
            Err(e) => return Err(fail(e)),
        };
        tx.commit().await.map_err(fail)?;
        Ok(ApplyOutcome::Applied(StatusEvent {
            id,
            event_id: change.event_id,
            entity,
            from: Some(change.from),
            status: change.to,
            cause: change.cause,
            detail: change.detail.clone(),
            as_of: change.as_of,
            reported_at: change.reported_at,
        }))
    }

    async fn apply_statuses(
        &self,
        changes: &[StatusChange],
    ) -> Result<Vec<Result<ApplyOutcome, StoreError>>, StoreError> {
        crate::status_batch::apply(self, changes).await
    }

    async fn current_statuses(
        &self,
        entities: &[Entity],
    ) -> Result<Vec<Option<CurrentStatus>>, StoreError> {
        let fail = |e| store_error(e, &"the current statuses");
        let workers: Vec<i64> = entities
            .iter()
            .filter_map(|e| match e {
                Entity::Worker(id) => Some(id.get()),
                Entity::Instance(_) => None,
            })
            .collect();
        let instances: Vec<i64> = entities
            .iter()
            .filter_map(|e| match e {
                Entity::Instance(id) => Some(id.get()),
                Entity::Worker(_) => None,
            })
            .collect();
        let mut found: std::collections::HashMap<Entity, CurrentStatus> =
            std::collections::HashMap::new();
        if !workers.is_empty() {
            let rows: Vec<(i64, String, Option<i64>, Option<i64>)> = sqlx::query_as(
                "SELECT id, status, seq_epoch, seq_counter FROM manman.workers WHERE id = ANY($1)",
            )
            .bind(&workers)
            .fetch_all(self.pool())
            .await
            .map_err(fail)?;
            for (id, status, epoch, counter) in rows {
                found.insert(
                    Entity::Worker(WorkerId(id)),
                    current_status((status, epoch, counter), WorkerId(id))?,
                );
            }
        }
        if !instances.is_empty() {
            let rows: Vec<(i64, String, Option<i64>, Option<i64>, i64)> = sqlx::query_as(
                "SELECT id, status, seq_epoch, seq_counter, worker_id FROM manman.instances
                 WHERE id = ANY($1)",
            )
            .bind(&instances)
            .fetch_all(self.pool())
            .await
            .map_err(fail)?;
            for (id, status, epoch, counter, worker) in rows {
                found.insert(
                    Entity::Instance(InstanceId(id)),
                    current_status((status, epoch, counter), WorkerId(worker))?,
                );
            }
        }
        Ok(entities.iter().map(|e| found.get(e).copied()).collect())
    }

    async fn status_history(
        &self,
        entity: Entity,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StatusEvent>, StoreError> {
        let fail = |e| store_error(e, &entity);
        let (column, id) = match entity {
            Entity::Worker(id) => ("worker_id", id.get()),
            Entity::Instance(id) => ("instance_id", id.get()),
        };
        let rows: Vec<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, event_id, worker_id, instance_id, from_status, status, cause, detail, as_of, reported_at
             FROM manman.status_events WHERE {column} = $1 AND id > $2 ORDER BY id LIMIT $3"
        )))
        .bind(id)
        .bind(after.unwrap_or(0))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(fail)?;
        if rows.is_empty() {
            let mut conn = self.pool().acquire().await.map_err(fail)?;
            if !exists(&mut conn, entity).await.map_err(fail)? {
                return Err(StoreError::not_found(&entity));
            }
        }
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn prune_history(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let deleted = sqlx::query(
            "DELETE FROM manman.status_events WHERE id IN (
                 SELECT id FROM manman.status_events WHERE as_of < $1 ORDER BY as_of LIMIT $2
             )",
        )
        .bind(before)
        .bind(i64::from(limit))
        .execute(self.pool())
        .await
        .map_err(|e| store_error(e, &"the status history"))?;
        Ok(deleted.rows_affected())
    }
}
