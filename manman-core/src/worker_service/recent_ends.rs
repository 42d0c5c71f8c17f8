//! [`RecentEnds`]: the instances a worker ended lately, with how they ended, listed in its
//! heartbeats for a while so that the host records their real end even when it missed the
//! status report (it could not take it during an outage, or marked the worker `lost` meanwhile).

use crate::id::InstanceId;
use crate::status::Status;
use crate::worker::{InventoryEnd, InventoryItem};
use chrono::{DateTime, Utc};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// How long an ended instance stays in the inventory.
pub(crate) const KEEP_ENDED: chrono::Duration = chrono::Duration::minutes(5);
/// Most ended instances listed (the newest), which keeps a heartbeat well under the host's
/// 64 KiB request limit.
pub(crate) const MAX_ENDED: usize = 64;
/// Longest detail kept for an ended instance, in bytes.
const MAX_DETAIL: usize = 256;

/// The ended instances, newest last; shared by the supervisors and the heartbeat.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecentEnds {
    ends: Arc<Mutex<VecDeque<InventoryItem>>>,
}

impl RecentEnds {
    /// Records how an instance ended (`status` is `complete` or `crashed`).
    pub(crate) fn record(
        &self,
        instance_id: InstanceId,
        status: Status,
        restart_count: u32,
        mut end: InventoryEnd,
    ) {
        if let Some(detail) = &mut end.detail
            && detail.len() > MAX_DETAIL
        {
            let mut cut = MAX_DETAIL;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
        }
        let mut ends = self.lock();
        ends.retain(|item| item.instance_id != instance_id);
        ends.push_back(InventoryItem {
            instance_id,
            status,
            pid: None,
            restart_count,
            console_lines_dropped: 0,
            ended: Some(end),
        });
        while ends.len() > MAX_ENDED {
            ends.pop_front();
        }
    }

    /// The instances that ended since `now - KEEP_ENDED` (older ones are forgotten).
    pub(crate) fn listed(&self, now: DateTime<Utc>) -> Vec<InventoryItem> {
        let mut ends = self.lock();
        ends.retain(|item| {
            item.ended
                .as_ref()
                .is_some_and(|end| end.ended_at >= now - KEEP_ENDED)
        });
        ends.iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<InventoryItem>> {
        self.ends
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Cause;

    fn end(at: DateTime<Utc>, detail: &str) -> InventoryEnd {
        InventoryEnd {
            cause: Cause::Exited,
            detail: Some(detail.to_owned()),
            exit_code: None,
            exit_signal: Some(9),
            ended_at: at,
        }
    }

    #[test]
    fn ends_are_listed_for_a_while_bounded_and_short() {
        let now = Utc::now();
        let ends = RecentEnds::default();
        ends.record(
            InstanceId(1),
            Status::Crashed,
            0,
            end(now - KEEP_ENDED - chrono::Duration::seconds(1), "old"),
        );
        ends.record(
            InstanceId(2),
            Status::Crashed,
            2,
            end(now, &"é".repeat(200)),
        );
        let listed = ends.listed(now);
        assert_eq!(listed.len(), 1, "the old one is forgotten: {listed:#?}");
        let item = &listed[0];
        assert_eq!(
            (item.instance_id, item.status, item.restart_count, item.pid),
            (InstanceId(2), Status::Crashed, 2, None)
        );
        let kept = item
            .ended
            .as_ref()
            .and_then(|e| e.detail.as_ref())
            .expect("detail");
        assert!(kept.len() <= MAX_DETAIL && kept.starts_with('é'), "{kept}");
        for i in 0..(MAX_ENDED as i64 + 10) {
            ends.record(InstanceId(100 + i), Status::Complete, 0, end(now, "done"));
        }
        let listed = ends.listed(now);
        assert_eq!(listed.len(), MAX_ENDED);
        assert_eq!(
            listed.last().map(|i| i.instance_id),
            Some(InstanceId(100 + MAX_ENDED as i64 + 9)),
            "the newest are kept"
        );
    }
}
