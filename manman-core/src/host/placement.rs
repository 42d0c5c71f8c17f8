//! Placement: which worker runs a new instance.

use crate::host::HostError;
use crate::id::WorkerId;
use crate::worker::Worker;
use std::collections::HashMap;

/// Picks the worker for a start: the named one if given (it must be live and have room), else
/// the live worker with free capacity and the fewest active instances (lowest id on ties).
///
/// `active` counts the active instances of each worker.
pub(crate) fn place(
    workers: &[Worker],
    active: &HashMap<WorkerId, u32>,
    named: Option<&str>,
) -> Result<Worker, HostError> {
    let load = |w: &Worker| active.get(&w.id).copied().unwrap_or(0);
    let live = |w: &Worker| w.status.is_live();
    if let Some(name) = named {
        let worker =
            workers
                .iter()
                .find(|w| w.name == name)
                .ok_or_else(|| HostError::NotFound {
                    what: format!("worker {name:?}"),
                })?;
        if !live(worker) {
            return Err(HostError::NoWorker {
                detail: format!(
                    "worker {name:?} is {}: start it, or leave the worker out to let the host choose",
                    worker.status
                ),
            });
        }
        if load(worker) >= worker.capacity {
            return Err(HostError::NoWorker {
                detail: format!(
                    "worker {name:?} runs {} of its {} instances",
                    load(worker),
                    worker.capacity
                ),
            });
        }
        return Ok(worker.clone());
    }
    workers
        .iter()
        .filter(|w| live(w) && load(w) < w.capacity)
        .min_by_key(|w| (load(w), w.id))
        .cloned()
        .ok_or_else(|| HostError::NoWorker {
            detail: if workers.iter().any(live) {
                "every live worker is at capacity: stop an instance or add a worker".to_owned()
            } else {
                "no worker is registered and live: start a worker (or `manman up`)".to_owned()
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;
    use chrono::Utc;

    fn worker(id: i64, name: &str, status: Status, capacity: u32) -> Worker {
        Worker {
            id: WorkerId(id),
            name: name.into(),
            epoch: 1,
            status,
            version: "test".into(),
            labels: Default::default(),
            capacity,
            started_at: Utc::now(),
            last_heartbeat_at: None,
            ended_at: None,
        }
    }

    #[test]
    fn least_loaded_live_worker_wins() {
        let workers = [
            worker(1, "a", Status::Running, 4),
            worker(2, "b", Status::Running, 4),
            worker(3, "c", Status::Lost, 4),
        ];
        let active = HashMap::from([(WorkerId(1), 2), (WorkerId(2), 1)]);
        assert_eq!(place(&workers, &active, None).unwrap().id, WorkerId(2));
    }

    #[test]
    fn full_or_dead_workers_are_refused_with_a_reason() {
        let workers = [
            worker(1, "a", Status::Running, 1),
            worker(2, "b", Status::Lost, 4),
        ];
        let active = HashMap::from([(WorkerId(1), 1)]);
        let err = place(&workers, &active, None).unwrap_err().to_string();
        assert!(err.contains("capacity"), "{err}");
        let err = place(&workers, &active, Some("b")).unwrap_err().to_string();
        assert!(err.contains("lost"), "{err}");
        let err = place(&workers, &active, Some("zzz")).unwrap_err();
        assert!(matches!(err, HostError::NotFound { .. }));
        let err = place(&[], &active, None).unwrap_err().to_string();
        assert!(err.contains("no worker"), "{err}");
    }
}
