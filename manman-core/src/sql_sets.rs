//! The domain's sets of statuses, causes and command states as SQL lists — `('created',
//! 'initializing', 'running')` — for the SQL adapters: built from core's enums and their rules
//! ([`Status::is_active`], [`Status::is_live`], [`CommandState::is_final`]), so an adapter never
//! retypes a set, and a test can check that a schema's CHECK constraints and partial indexes
//! agree with them.

use crate::command::CommandState;
use crate::status::{Cause, Status};
use std::sync::LazyLock;

/// `('a', 'b', …)`: names as an SQL list of string literals. The names are core's own
/// snake_case words, never input: nothing to escape.
fn list(names: impl IntoIterator<Item = &'static str>) -> String {
    let quoted: Vec<String> = names.into_iter().map(|n| format!("'{n}'")).collect();
    format!("({})", quoted.join(", "))
}

/// Statuses of an entity not ended: `created`, `initializing`, `running`, `lost`.
pub static ACTIVE_STATUSES: LazyLock<String> = LazyLock::new(|| {
    list(
        Status::ALL
            .into_iter()
            .filter(|s| s.is_active())
            .map(Status::as_str),
    )
});

/// Statuses of an entity alive as far as the host knows: `created`, `initializing`, `running`.
pub static LIVE_STATUSES: LazyLock<String> = LazyLock::new(|| {
    list(
        Status::ALL
            .into_iter()
            .filter(|s| s.is_live())
            .map(Status::as_str),
    )
});

/// Command states still on their way: `pending`, `delivered`.
pub static UNFINISHED_COMMAND_STATES: LazyLock<String> = LazyLock::new(|| {
    list(
        CommandState::ALL
            .into_iter()
            .filter(|s| !s.is_final())
            .map(CommandState::as_str),
    )
});

/// Final command states: `succeeded`, `failed`, `expired`.
pub static FINISHED_COMMAND_STATES: LazyLock<String> = LazyLock::new(|| {
    list(
        CommandState::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .map(CommandState::as_str),
    )
});

/// Every status's name (what a `status` CHECK constraint allows).
pub fn all_statuses() -> Vec<&'static str> {
    Status::ALL.into_iter().map(Status::as_str).collect()
}

/// Every cause's name (what a `cause` CHECK constraint allows).
pub fn all_causes() -> Vec<&'static str> {
    Cause::ALL.into_iter().map(Cause::as_str).collect()
}

/// Every command state's name (what a `state` CHECK constraint allows).
pub fn all_command_states() -> Vec<&'static str> {
    CommandState::ALL
        .into_iter()
        .map(CommandState::as_str)
        .collect()
}

/// The names in an SQL text, in order: every `'…'` literal (what a CHECK constraint's or a
/// partial index's definition lists, as the database prints it back).
pub fn quoted_names(sql: &str) -> Vec<String> {
    sql.split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sets_follow_the_rules() {
        assert_eq!(
            *ACTIVE_STATUSES,
            "('created', 'initializing', 'running', 'lost')"
        );
        assert_eq!(*LIVE_STATUSES, "('created', 'initializing', 'running')");
        assert_eq!(*UNFINISHED_COMMAND_STATES, "('pending', 'delivered')");
        assert_eq!(
            *FINISHED_COMMAND_STATES,
            "('succeeded', 'failed', 'expired')"
        );
        assert_eq!(
            quoted_names(&ACTIVE_STATUSES),
            ["created", "initializing", "running", "lost"]
        );
        assert_eq!(
            quoted_names("CHECK ((status = ANY (ARRAY['a'::text, 'b'::text])))"),
            ["a", "b"]
        );
    }
}
