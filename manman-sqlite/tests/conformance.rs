//! The store conformance suite on SQLite: every case on a fresh file in its own temp dir, and
//! the whole suite once on the in-memory database.

use manman_core::store::Store;
use manman_core::testing::store as suite;
use manman_sqlite::{SqliteSettings, SqliteStore};

/// A migrated store on a new file; the directory lives as long as the returned guard.
async fn fresh_file() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqliteStore::open(&SqliteSettings::new(dir.path().join("manman.db")))
        .await
        .expect("open");
    sqlite.migrate().await.expect("migrate");
    (dir, Store::from_adapter(sqlite))
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (_dir, store) = fresh_file().await;
                suite::$case(&store).await;
            }
        )*
    };
}

conformance!(
    games_are_unique_by_name_and_app,
    configs_follow_the_catalogue_rules,
    workers_register_with_growing_epochs,
    instances_are_created_filtered_and_paged,
    status_changes_are_conditional_and_idempotent,
    batches_apply_each_change_in_order,
    batches_recognise_events_recorded_before,
    sequences_are_compared_and_set_with_the_status,
    instances_are_created_with_their_start_in_one_go,
    commands_are_answered_only_by_their_worker,
    commands_move_forward_only,
    a_command_is_marked_delivered_only_while_pending,
    leases_expire_exactly_once,
    unfinished_commands_expire_exactly_once,
    retention_prunes_in_batches,
    retention_removes_stdin_lines_whatever_the_state,
    a_running_instance_shows_no_exit_and_its_workers_heartbeat,
    console_tails_are_kept_replaced_and_pruned,
    active_instances_are_those_not_ended,
    active_counts_leave_ended_instances_out,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_suite_passes_on_one_file() {
    let (_dir, store) = fresh_file().await;
    suite::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_suite_passes_in_memory() {
    let sqlite = SqliteStore::open(&SqliteSettings::memory())
        .await
        .expect("open");
    sqlite.migrate().await.expect("migrate");
    suite::run_all(&Store::from_adapter(sqlite)).await;
}
