//! Many status changes in one statement, set-based: the UPDATE of each entity table and the
//! INSERT of the history rows of the entities updated, as data-modifying CTEs of one statement
//! (atomic on its own: no transaction round trips), whatever the batch's size.

use crate::error::store_error;
use crate::status::{refusal, sequence_columns};
use crate::store::PgStore;
use chrono::{DateTime, Utc};
use manman_core::ports::{ApplyOutcome, StatusChange, StoreError};
use manman_core::status::{Entity, Sequence, Status, StatusEvent};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// One entity's changes in the batch, merged: the status it must have now, the status it ends
/// in, and the fields set along the way (a later value wins, as applying them one by one would);
/// the first numbered change's sequence, which the last applied one must be below, and the last
/// one's, which becomes the last applied.
#[derive(Default)]
struct Merged {
    from: String,
    to: String,
    started_at: Option<DateTime<Utc>>,
    ready_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    set_exit: bool,
    exit_code: Option<i32>,
    exit_signal: Option<i32>,
    restart_count: Option<i32>,
    cause: &'static str,
    detail: Option<String>,
    first_sequence: Option<Sequence>,
    last_sequence: Option<Sequence>,
}

/// What one statement did: an outcome for each change it settled (`None` for the changes of an
/// entity it did not update), and the entities it did not update.
struct Written {
    outcomes: Vec<Option<Result<ApplyOutcome, StoreError>>>,
    missing: Vec<Entity>,
}

/// Applies `changes` in one statement. See `StatusRepository::apply_statuses`.
///
/// An event recorded before (a redelivery) is looked for inside the statement: an entity with
/// one among its changes is left as it is. Only then are the recorded events read, and that
/// entity's other changes applied in a second statement — so a batch of new events costs one
/// round trip.
pub(crate) async fn apply(
    store: &PgStore,
    changes: &[StatusChange],
) -> Result<Vec<Result<ApplyOutcome, StoreError>>, StoreError> {
    let fail = |e| store_error(e, &"a batch of status changes");
    let mut written = write(store, changes, (0..changes.len()).map(|_| None).collect()).await?;
    if !written.missing.is_empty() {
        let ids: Vec<Uuid> = changes
            .iter()
            .zip(&written.outcomes)
            .filter(|(c, outcome)| outcome.is_none() && written.missing.contains(&c.entity))
            .map(|(c, _)| c.event_id)
            .collect();
        let seen: HashSet<Uuid> = sqlx::query_scalar(
            "SELECT event_id FROM manman.status_events WHERE event_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(store.pool())
        .await
        .map_err(fail)?
        .into_iter()
        .collect();
        if !seen.is_empty() {
            // The recorded ones are duplicates; the rest of their entities' changes may apply.
            let settled = changes
                .iter()
                .zip(written.outcomes)
                .map(|(c, outcome)| {
                    outcome.or_else(|| {
                        seen.contains(&c.event_id)
                            .then_some(Ok(ApplyOutcome::Duplicate))
                    })
                })
                .collect();
            written = write(store, changes, settled).await?;
        }
    }
    refuse_missing(store, changes, written).await
}

/// Writes the changes not settled yet in one statement: each entity's merged update, guarded
/// by its status, its sequence and none of its events being recorded already, and the history
/// rows of the entities updated.
async fn write(
    store: &PgStore,
    changes: &[StatusChange],
    mut outcomes: Vec<Option<Result<ApplyOutcome, StoreError>>>,
) -> Result<Written, StoreError> {
    let fail = |e| store_error(e, &"a batch of status changes");
    // Merge each entity's changes; a change that does not chain on the one before is a conflict.
    let mut merged: HashMap<Entity, Merged> = HashMap::new();
    let mut order: Vec<Entity> = Vec::new();
    let mut batch_seen = HashSet::new();
    for (i, change) in changes.iter().enumerate() {
        if outcomes[i].is_some() {
            continue;
        }
        if !batch_seen.insert(change.event_id) {
            outcomes[i] = Some(Ok(ApplyOutcome::Duplicate));
            continue;
        }
        let m = merged.entry(change.entity).or_insert_with(|| {
            order.push(change.entity);
            Merged {
                from: change.from.as_str().to_owned(),
                to: change.from.as_str().to_owned(),
                ..Merged::default()
            }
        });
        if m.to != change.from.as_str() {
            outcomes[i] = Some(Err(StoreError::conflict(
                &change.entity,
                format!(
                    "is {} in this batch, not {} as the change expected",
                    m.to, change.from
                ),
            )));
            continue;
        }
        if let (Some(sequence), Some(last)) = (change.sequence, m.last_sequence)
            && sequence <= last
        {
            outcomes[i] = Some(Err(StoreError::conflict(
                &change.entity,
                format!(
                    "has report {last} applied in this batch, and report {sequence} is not after it"
                ),
            )));
            continue;
        }
        if let Some(sequence) = change.sequence {
            m.first_sequence = m.first_sequence.or(Some(sequence));
            m.last_sequence = Some(sequence);
        }
        let u = &change.update;
        m.to = change.to.as_str().to_owned();
        m.cause = change.cause.as_str();
        m.detail.clone_from(&change.detail);
        m.started_at = u.started_at.or(m.started_at);
        m.ready_at = u.ready_at.or(m.ready_at);
        m.ended_at = u.ended_at.or(m.ended_at);
        // A run that became ready has no exit yet: the one of the run before goes.
        if u.exit_code.is_some() || u.exit_signal.is_some() || change.to == Status::Running {
            m.set_exit = true;
            m.exit_code = u.exit_code;
            m.exit_signal = u.exit_signal;
        }
        if let Some(n) = u.restart_count {
            m.restart_count = Some(i32::try_from(n).unwrap_or(i32::MAX));
        }
    }

    let instances: Vec<(i64, &Merged)> = order
        .iter()
        .filter_map(|e| match e {
            Entity::Instance(id) => Some((id.get(), &merged[e])),
            Entity::Worker(_) => None,
        })
        .collect();
    let workers: Vec<(i64, &Merged)> = order
        .iter()
        .filter_map(|e| match e {
            Entity::Worker(id) => Some((id.get(), &merged[e])),
            Entity::Instance(_) => None,
        })
        .collect();
    // The history rows to write: each change not already settled above; the statement keeps
    // those whose entity it updated.
    let rows: Vec<(usize, &StatusChange)> = changes
        .iter()
        .enumerate()
        .filter(|(i, _)| outcomes[*i].is_none())
        .collect();
    let (row_workers, row_instances): (Vec<Option<i64>>, Vec<Option<i64>>) = rows
        .iter()
        .map(|(_, c)| match c.entity {
            Entity::Worker(id) => (Some(id.get()), None),
            Entity::Instance(id) => (None, Some(id.get())),
        })
        .unzip();
    // (kind, id, event id): `i`/`w` for an instance or worker updated, `e` for a history row
    // inserted (its id).
    type WrittenRow = (String, i64, Option<Uuid>);
    let written: Vec<WrittenRow> = sqlx::query_as(
        "WITH recorded AS (
             SELECT r.worker_id, r.instance_id
             FROM UNNEST($25::uuid[], $26::bigint[], $27::bigint[]) AS r(event_id, worker_id, instance_id)
             JOIN manman.status_events s ON s.event_id = r.event_id
         ),
         updated_instances AS (
             UPDATE manman.instances i SET
                 status = u.to_status,
                 started_at = COALESCE(u.started_at, i.started_at),
                 ready_at = COALESCE(u.ready_at, i.ready_at),
                 ended_at = COALESCE(u.ended_at, i.ended_at),
                 exit_code = CASE WHEN u.set_exit THEN u.exit_code ELSE i.exit_code END,
                 exit_signal = CASE WHEN u.set_exit THEN u.exit_signal ELSE i.exit_signal END,
                 restart_count = COALESCE(u.restart_count, i.restart_count),
                 seq_epoch = COALESCE(u.last_epoch, i.seq_epoch),
                 seq_counter = COALESCE(u.last_counter, i.seq_counter),
                 cause = u.cause, detail = u.detail
             FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],
                         $6::timestamptz[], $7::boolean[], $8::integer[], $9::integer[], $10::integer[],
                         $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::text[], $16::text[])
                  AS u(id, from_status, to_status, started_at, ready_at, ended_at, set_exit, exit_code, exit_signal, restart_count,
                       first_epoch, first_counter, last_epoch, last_counter, cause, detail)
             WHERE i.id = u.id AND i.status = u.from_status
               AND i.id NOT IN (SELECT instance_id FROM recorded WHERE instance_id IS NOT NULL)
               AND (u.first_epoch IS NULL OR i.seq_epoch IS NULL
                    OR (i.seq_epoch, i.seq_counter) < (u.first_epoch, u.first_counter))
             RETURNING i.id
         ),
         updated_workers AS (
             UPDATE manman.workers w SET status = u.to_status, ended_at = COALESCE(u.ended_at, w.ended_at),
                 seq_epoch = COALESCE(u.last_epoch, w.seq_epoch),
                 seq_counter = COALESCE(u.last_counter, w.seq_counter)
             FROM UNNEST($17::bigint[], $18::text[], $19::text[], $20::timestamptz[],
                         $21::bigint[], $22::bigint[], $23::bigint[], $24::bigint[])
                  AS u(id, from_status, to_status, ended_at, first_epoch, first_counter, last_epoch, last_counter)
             WHERE w.id = u.id AND w.status = u.from_status
               AND w.id NOT IN (SELECT worker_id FROM recorded WHERE worker_id IS NOT NULL)
               AND (u.first_epoch IS NULL OR w.seq_epoch IS NULL
                    OR (w.seq_epoch, w.seq_counter) < (u.first_epoch, u.first_counter))
             RETURNING w.id
         ),
         inserted AS (
             INSERT INTO manman.status_events (event_id, worker_id, instance_id, from_status, status, cause, detail, as_of, reported_at)
             SELECT r.* FROM UNNEST($25::uuid[], $26::bigint[], $27::bigint[], $28::text[], $29::text[], $30::text[], $31::text[],
                                    $32::timestamptz[], $33::timestamptz[])
                  AS r(event_id, worker_id, instance_id, from_status, status, cause, detail, as_of, reported_at)
             WHERE r.instance_id IN (SELECT id FROM updated_instances)
                OR r.worker_id IN (SELECT id FROM updated_workers)
             ON CONFLICT (event_id) DO NOTHING
             RETURNING id, event_id
         )
         SELECT 'i', id, NULL::uuid FROM updated_instances
         UNION ALL SELECT 'w', id, NULL::uuid FROM updated_workers
         UNION ALL SELECT 'e', id, event_id FROM inserted",
    )
    .bind(instances.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind(instances.iter().map(|(_, m)| m.from.as_str()).collect::<Vec<_>>())
    .bind(instances.iter().map(|(_, m)| m.to.as_str()).collect::<Vec<_>>())
    .bind(instances.iter().map(|(_, m)| m.started_at).collect::<Vec<_>>())
    .bind(instances.iter().map(|(_, m)| m.ready_at).collect::<Vec<_>>())
    .bind(instances.iter().map(|(_, m)| m.ended_at).collect::<Vec<_>>())
    .bind(instances.iter().map(|(_, m)| m.set_exit).collect::<Vec<_>>())
    .bind(instances.iter().map(|(_, m)| m.exit_code).collect::<Vec<_>>())
    .bind(instances.iter().map(|(_, m)| m.exit_signal).collect::<Vec<_>>())
    .bind(instances.iter().map(|(_, m)| m.restart_count).collect::<Vec<_>>())
    .bind(instances.iter().map(|(_, m)| sequence_columns(m.first_sequence).0).collect::<Vec<_>>())
    .bind(instances.iter().map(|(_, m)| sequence_columns(m.first_sequence).1).collect::<Vec<_>>())
    .bind(instances.iter().map(|(_, m)| sequence_columns(m.last_sequence).0).collect::<Vec<_>>())
    .bind(instances.iter().map(|(_, m)| sequence_columns(m.last_sequence).1).collect::<Vec<_>>())
    .bind(instances.iter().map(|(_, m)| m.cause).collect::<Vec<_>>())
    .bind(instances.iter().map(|(_, m)| m.detail.as_deref()).collect::<Vec<_>>())
    .bind(workers.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind(workers.iter().map(|(_, m)| m.from.as_str()).collect::<Vec<_>>())
    .bind(workers.iter().map(|(_, m)| m.to.as_str()).collect::<Vec<_>>())
    .bind(workers.iter().map(|(_, m)| m.ended_at).collect::<Vec<_>>())
    .bind(workers.iter().map(|(_, m)| sequence_columns(m.first_sequence).0).collect::<Vec<_>>())
    .bind(workers.iter().map(|(_, m)| sequence_columns(m.first_sequence).1).collect::<Vec<_>>())
    .bind(workers.iter().map(|(_, m)| sequence_columns(m.last_sequence).0).collect::<Vec<_>>())
    .bind(workers.iter().map(|(_, m)| sequence_columns(m.last_sequence).1).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, c)| c.event_id).collect::<Vec<_>>())
    .bind(row_workers)
    .bind(row_instances)
    .bind(rows.iter().map(|(_, c)| c.from.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, c)| c.to.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, c)| c.cause.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, c)| c.detail.as_deref()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, c)| c.as_of).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, c)| c.reported_at).collect::<Vec<_>>())
    .fetch_all(store.pool())
    .await
    .map_err(fail)?;
    let mut updated: HashSet<Entity> = HashSet::new();
    let mut positions: HashMap<Uuid, i64> = HashMap::new();
    for (kind, id, event_id) in written {
        match (kind.as_str(), event_id) {
            ("i", _) => {
                updated.insert(Entity::Instance(manman_core::id::InstanceId(id)));
            }
            ("w", _) => {
                updated.insert(Entity::Worker(manman_core::id::WorkerId(id)));
            }
            (_, Some(event_id)) => {
                positions.insert(event_id, id);
            }
            (_, None) => {}
        }
    }
    for (i, c) in rows {
        if !updated.contains(&c.entity) {
            continue;
        }
        outcomes[i] = Some(Ok(match positions.get(&c.event_id) {
            Some(id) => ApplyOutcome::Applied(StatusEvent {
                id: *id,
                event_id: c.event_id,
                entity: c.entity,
                from: Some(c.from),
                status: c.to,
                cause: c.cause,
                detail: c.detail.clone(),
                as_of: c.as_of,
                reported_at: c.reported_at,
            }),
            // Inserted by another replica at the same moment.
            None => ApplyOutcome::Duplicate,
        }));
    }

    // Entities not updated: gone, their status or sequence moved, or one of their events
    // recorded before.
    let missing = order
        .iter()
        .filter(|e| !updated.contains(e))
        .copied()
        .collect();
    Ok(Written { outcomes, missing })
}

/// Settles the changes of the entities not updated: each one's refusal, from what the entity
/// is now.
async fn refuse_missing(
    store: &PgStore,
    changes: &[StatusChange],
    Written { outcomes, missing }: Written,
) -> Result<Vec<Result<ApplyOutcome, StoreError>>, StoreError> {
    let fail = |e| store_error(e, &"a batch of status changes");
    let mut current = HashMap::new();
    if !missing.is_empty() {
        let (w, i): (Vec<i64>, Vec<i64>) =
            missing
                .iter()
                .fold((Vec::new(), Vec::new()), |(mut w, mut i), e| {
                    match e {
                        Entity::Worker(id) => w.push(id.get()),
                        Entity::Instance(id) => i.push(id.get()),
                    }
                    (w, i)
                });
        type Row = (bool, i64, String, Option<i64>, Option<i64>);
        let found: Vec<Row> = sqlx::query_as(
            "SELECT true, id, status, seq_epoch, seq_counter FROM manman.workers WHERE id = ANY($1)
             UNION ALL SELECT false, id, status, seq_epoch, seq_counter FROM manman.instances WHERE id = ANY($2)",
        )
        .bind(&w)
        .bind(&i)
        .fetch_all(store.pool())
        .await
        .map_err(fail)?;
        current.extend(
            found
                .into_iter()
                .map(|(worker, id, status, epoch, counter)| {
                    let entity = if worker {
                        Entity::Worker(manman_core::id::WorkerId(id))
                    } else {
                        Entity::Instance(manman_core::id::InstanceId(id))
                    };
                    (entity, (status, epoch, counter))
                }),
        );
    }
    Ok(changes
        .iter()
        .zip(outcomes)
        .map(|(c, outcome)| match outcome {
            Some(outcome) => outcome,
            None => {
                Err(refusal(c, current.get(&c.entity).cloned()).unwrap_or_else(|broken| broken))
            }
        })
        .collect())
}
