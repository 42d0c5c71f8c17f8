//! Many status changes in one write transaction: applied one by one, in order, each in its own
//! savepoint, so a change that fails leaves nothing behind and does not stop the others. (On
//! SQLite a loop in one transaction is as fast as a set-based statement: there is no network
//! round trip per statement, and the commit — the expensive part — happens once.)

use crate::error::store_error;
use crate::status::apply_one;
use crate::store::SqliteStore;
use manman_core::ports::{ApplyOutcome, StatusChange, StoreError};
use sqlx::Connection;

/// Applies `changes` in one transaction. See `StatusRepository::apply_statuses`.
pub(crate) async fn apply(
    store: &SqliteStore,
    changes: &[StatusChange],
) -> Result<Vec<Result<ApplyOutcome, StoreError>>, StoreError> {
    let fail = |e| store_error(e, &"a batch of status changes");
    let mut tx = store.begin_write().await.map_err(fail)?;
    let mut outcomes = Vec::with_capacity(changes.len());
    for change in changes {
        let mut savepoint = Connection::begin(&mut *tx).await.map_err(fail)?;
        let outcome = match apply_one(&mut savepoint, change).await {
            Ok(outcome) => outcome,
            Err(e) => match store_error(e, &change.entity) {
                // The schema refused this change: it fails alone.
                refused @ (StoreError::Invalid { .. }
                | StoreError::Conflict { .. }
                | StoreError::NotFound { .. }) => Err(refused),
                // The store itself failed: the whole batch is rolled back (dropping `tx`).
                broken => return Err(broken),
            },
        };
        if matches!(outcome, Ok(ApplyOutcome::Applied(_))) {
            savepoint.commit().await.map_err(fail)?;
        } else {
            savepoint.rollback().await.map_err(fail)?;
        }
        outcomes.push(outcome);
    }
    tx.commit().await.map_err(fail)?;
    Ok(outcomes)
}
