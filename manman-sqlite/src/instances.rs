//! Instances.

use crate::commands::insert_record;
use crate::error::store_error;
use crate::references::{Reference, missing_or};
use crate::status::{HistoryRow, parse_cause, parse_status};
use crate::store::SqliteStore;
use crate::timestamp::Timestamp;
use async_trait::async_trait;
use manman_core::command::CommandRecord;
use manman_core::id::{ConfigId, InstanceId, WorkerId};
use manman_core::instance::{Instance, InstanceFilter, NewInstance};
use manman_core::ports::{InstanceRepository, StoreError};
use manman_core::sql_sets::ACTIVE_STATUSES;
use manman_core::status::{Cause, Entity, Status};
use sqlx::FromRow;

#[derive(FromRow)]
struct InstanceRow {
    id: i64,
    config_id: i64,
    worker_id: i64,
    worker_epoch: i64,
    status: String,
    cause: String,
    detail: Option<String>,
    created_at: Timestamp,
    started_at: Option<Timestamp>,
    ready_at: Option<Timestamp>,
    ended_at: Option<Timestamp>,
    exit_code: Option<i32>,
    exit_signal: Option<i32>,
    restart_count: i64,
    last_heartbeat_at: Option<Timestamp>,
}

impl TryFrom<InstanceRow> for Instance {
    type Error = StoreError;

    fn try_from(row: InstanceRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: InstanceId(row.id),
            config_id: ConfigId(row.config_id),
            worker_id: WorkerId(row.worker_id),
            worker_epoch: row.worker_epoch,
            status: parse_status(&row.status)?,
            cause: parse_cause(&row.cause)?,
            detail: row.detail,
            created_at: row.created_at.0,
            started_at: row.started_at.map(|t| t.0),
            ready_at: row.ready_at.map(|t| t.0),
            ended_at: row.ended_at.map(|t| t.0),
            exit_code: row.exit_code,
            exit_signal: row.exit_signal,
            restart_count: u32::try_from(row.restart_count).unwrap_or(u32::MAX),
            last_heartbeat_at: row.last_heartbeat_at.map(|t| t.0),
        })
    }
}

/// The columns of an instance; `last_heartbeat_at` is read from the worker registration it was
/// placed on while it has not ended (a heartbeat writes one worker row, not one per instance).
const INSTANCE_COLUMNS: &str = "id, config_id, worker_id, worker_epoch, status, cause, detail, created_at, started_at, ready_at, \
     ended_at, exit_code, exit_signal, restart_count, \
     CASE WHEN ended_at IS NULL THEN (SELECT w.last_heartbeat_at FROM workers w \
         WHERE w.id = instances.worker_id AND w.epoch = instances.worker_epoch) \
     END AS last_heartbeat_at";

/// Inserts a new instance (`created`, cause `placed`; `id`, or the next one) with its first
/// history row, in `tx`.
async fn insert_instance(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    id: Option<InstanceId>,
    new: &NewInstance,
    what: &str,
) -> Result<InstanceRow, StoreError> {
    let inserted: Result<InstanceRow, _> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO instances (id, config_id, worker_id, worker_epoch, status, cause, detail, created_at)
         VALUES (?5, ?1, ?2, ?3, 'created', 'placed', 'placed on worker ' || ?2, ?4) RETURNING {INSTANCE_COLUMNS}"
    )))
    .bind(new.config_id.get())
    .bind(new.worker_id.get())
    .bind(new.worker_epoch)
    .bind(Timestamp(new.created_at))
    .bind(id.map(InstanceId::get))
    .fetch_one(&mut **tx)
    .await;
    let row = match inserted {
        Ok(row) => row,
        Err(e) => {
            let references = [
                Reference::Config(new.config_id),
                Reference::Worker(new.worker_id),
            ];
            return Err(missing_or(e, tx, &references, what).await);
        }
    };
    let detail = format!("placed on {}", new.worker_id);
    HistoryRow::by_host(
        Entity::Instance(InstanceId(row.id)),
        None,
        Status::Created,
        Cause::Placed,
        Some(&detail),
        new.created_at,
    )
    .insert(tx)
    .await
    .map_err(|e| store_error(e, &what))?;
    Ok(row)
}

#[async_trait]
impl InstanceRepository for SqliteStore {
    async fn count_by_status(&self) -> Result<Vec<(Status, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM instances GROUP BY status ORDER BY status",
        )
        .fetch_all(self.reader())
        .await
        .map_err(|e| store_error(e, &"the instance counts"))?;
        rows.into_iter()
            .map(|(status, n)| {
                let status =
                    status
                        .parse()
                        .map_err(
                            |e: manman_core::unknown_name::UnknownName| StoreError::Other {
                                source: format!("{e} in the database").into(),
                            },
                        )?;
                Ok((status, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    async fn create_instance(&self, new: &NewInstance) -> Result<Instance, StoreError> {
        let what = format!("an instance of {}", new.config_id);
        let fail = |e| store_error(e, &what);
        let mut tx = self.begin_write().await.map_err(fail)?;
        let row = insert_instance(&mut tx, None, new, &what).await?;
        tx.commit().await.map_err(fail)?;
        row.try_into()
    }

    async fn reserve_instance_id(&self) -> Result<InstanceId, StoreError> {
        let fail = |e| store_error(e, &"a new instance id");
        // AUTOINCREMENT keeps the highest id it gave in `sqlite_sequence`, and never gives an
        // id below it: raising it reserves the next one.
        let mut tx = self.begin_write().await.map_err(fail)?;
        sqlx::query(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'instances', 0
             WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'instances')",
        )
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        let id: i64 = sqlx::query_scalar(
            "UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'instances' RETURNING seq",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(InstanceId(id))
    }

    async fn create_started_instance(
        &self,
        id: InstanceId,
        new: &NewInstance,
        start: &CommandRecord,
    ) -> Result<Instance, StoreError> {
        let what = id.to_string();
        let fail = |e| store_error(e, &what);
        let mut tx = self.begin_write().await.map_err(fail)?;
        let row = insert_instance(&mut tx, Some(id), new, &what).await?;
        if let Err(e) = insert_record(&mut tx, start).await {
            return Err(missing_or(e, &mut tx, &[Reference::Worker(start.worker_id)], &what).await);
        }
        tx.commit().await.map_err(fail)?;
        row.try_into()
    }

    async fn get_instance(&self, id: InstanceId) -> Result<Instance, StoreError> {
        let row: InstanceRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = ?1"
        )))
        .bind(id.get())
        .fetch_one(self.reader())
        .await
        .map_err(|e| store_error(e, &id))?;
        row.try_into()
    }

    async fn active_instances(
        &self,
        worker: Option<WorkerId>,
    ) -> Result<Vec<Instance>, StoreError> {
        // The statuses of the partial index `instances_active_worker_idx` (one statement per
        // shape, so the planner can use it).
        let active = &*ACTIVE_STATUSES;
        let query = match worker {
            Some(_) => format!(
                "SELECT {INSTANCE_COLUMNS} FROM instances WHERE worker_id = ?1 AND status IN {active} ORDER BY id"
            ),
            None => format!(
                "SELECT {INSTANCE_COLUMNS} FROM instances WHERE status IN {active} ORDER BY id"
            ),
        };
        let mut select = sqlx::query_as::<_, InstanceRow>(sqlx::AssertSqlSafe(query));
        if let Some(worker) = worker {
            select = select.bind(worker.get());
        }
        let rows = select
            .fetch_all(self.reader())
            .await
            .map_err(|e| store_error(e, &"the active instances"))?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn active_instances_of_config(
        &self,
        config: ConfigId,
    ) -> Result<Vec<Instance>, StoreError> {
        // The active statuses written as in the partial index, so the planner uses it.
        let active = &*ACTIVE_STATUSES;
        let rows: Vec<InstanceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances
             WHERE config_id = ?1 AND status IN {active} ORDER BY id"
        )))
        .bind(config.get())
        .fetch_all(self.reader())
        .await
        .map_err(|e| store_error(e, &config))?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn count_active_by_worker(&self) -> Result<Vec<(WorkerId, u64)>, StoreError> {
        let active = &*ACTIVE_STATUSES;
        let rows: Vec<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT worker_id, count(*) FROM instances
             WHERE status IN {active} GROUP BY worker_id ORDER BY worker_id"
        )))
        .fetch_all(self.reader())
        .await
        .map_err(|e| store_error(e, &"the active instances per worker"))?;
        Ok(rows
            .into_iter()
            .map(|(worker, n)| (WorkerId(worker), u64::try_from(n).unwrap_or_default()))
            .collect())
    }

    async fn take_over_instances(
        &self,
        worker: WorkerId,
        epoch: i64,
        instances: &[InstanceId],
    ) -> Result<Vec<InstanceId>, StoreError> {
        let active = &*ACTIVE_STATUSES;
        let mut taken = Vec::new();
        // A handful of ids at a worker's start: one statement each.
        for id in instances {
            let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE instances SET worker_epoch = ?2
                 WHERE id = ?3 AND worker_id = ?1 AND worker_epoch < ?2 AND status IN {active}"
            )))
            .bind(worker.get())
            .bind(epoch)
            .bind(id.get())
            .execute(self.writer())
            .await
            .map_err(|e| store_error(e, id))?;
            if done.rows_affected() == 1 {
                taken.push(*id);
            }
        }
        taken.sort();
        taken.dedup();
        Ok(taken)
    }

    async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<Instance>, StoreError> {
        let rows: Vec<InstanceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances
             WHERE (?1 IS NULL OR status = ?1)
               AND (?2 IS NULL OR worker_id = ?2)
               AND (?3 IS NULL OR config_id = ?3)
               AND id > ?4
             ORDER BY id LIMIT ?5"
        )))
        .bind(filter.status.map(Status::as_str))
        .bind(filter.worker_id.map(WorkerId::get))
        .bind(filter.config_id.map(ConfigId::get))
        .bind(filter.after.map_or(0, InstanceId::get))
        .bind(i64::try_from(filter.effective_limit()).unwrap_or(i64::MAX))
        .fetch_all(self.reader())
        .await
        .map_err(|e| store_error(e, &"the instances"))?;
        rows.into_iter().map(TryInto::try_into).collect()
    }
}
