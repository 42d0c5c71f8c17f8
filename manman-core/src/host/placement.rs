//! Placement: which worker runs a new instance.

use crate::host::HostError;
use crate::id::{InstanceId, WorkerId};
use crate::worker::Worker;
use std::collections::{BTreeMap, HashMap};

/// What a start asks of its worker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted<'a> {
    /// This worker, by name.
    pub(crate) name: Option<&'a str>,
    /// Labels the worker must have, each with this value.
    pub(crate) labels: &'a BTreeMap<String, String>,
    /// The workers that already run the config, with the instance each runs it as: a worker
    /// runs a config once at a time, so none of them is chosen.
    pub(crate) running: &'a HashMap<WorkerId, InstanceId>,
}

impl Wanted<'_> {
    fn labels_match(&self, worker: &Worker) -> bool {
        self.labels
            .iter()
            .all(|(key, value)| worker.labels.get(key) == Some(value))
    }

    fn labels_text(&self) -> String {
        self.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Picks the worker for a start: the named one if given (it must be live, have room and the
/// labels), else the live worker with the labels, free capacity and the fewest active instances
/// (lowest id on ties).
///
/// `active` counts the active instances of each worker.
pub(crate) fn place(
    workers: &[Worker],
    active: &HashMap<WorkerId, u32>,
    wanted: Wanted<'_>,
) -> Result<Worker, HostError> {
    let load = |w: &Worker| active.get(&w.id).copied().unwrap_or(0);
    let live = |w: &Worker| w.status.is_live();
    if let Some(name) = wanted.name {
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
        if !wanted.labels_match(worker) {
            return Err(HostError::NoWorker {
                detail: format!(
                    "worker {name:?} does not have the labels {}",
                    wanted.labels_text()
                ),
            });
        }
        if let Some(instance) = wanted.running.get(&worker.id) {
            return Err(HostError::NoWorker {
                detail: format!(
                    "worker {name:?} already runs this config as {instance}: stop it first, or \
                     leave the worker out to let the host choose another"
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
    let candidates: Vec<&Worker> = workers
        .iter()
        .filter(|w| live(w) && wanted.labels_match(w))
        .collect();
    let free: Vec<&&Worker> = candidates
        .iter()
        .filter(|w| !wanted.running.contains_key(&w.id))
        .collect();
    free.iter()
        .filter(|w| load(w) < w.capacity)
        .min_by_key(|w| (load(w), w.id))
        .map(|w| (**w).clone())
        .ok_or_else(|| HostError::NoWorker {
            detail: if !candidates.is_empty() && free.is_empty() {
                let running: Vec<String> = candidates
                    .iter()
                    .filter_map(|w| {
                        wanted
                            .running
                            .get(&w.id)
                            .map(|i| format!("{i} on {:?}", w.name))
                    })
                    .collect();
                format!(
                    "every live worker that fits already runs this config ({}): a worker runs a \
                     config once at a time; stop one, or add a worker",
                    running.join(", ")
                )
            } else if !candidates.is_empty() {
                "every live worker that fits is at capacity: stop an instance or add a worker"
                    .to_owned()
            } else if !wanted.labels.is_empty() && workers.iter().any(live) {
                format!(
                    "no live worker has the labels {}: give a worker these labels (MANMAN_WORKER_LABELS) or ask for others",
                    wanted.labels_text()
                )
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

    static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

    static NOT_RUNNING: std::sync::LazyLock<HashMap<WorkerId, InstanceId>> =
        std::sync::LazyLock::new(HashMap::new);

    fn anyone() -> Wanted<'static> {
        Wanted {
            name: None,
            labels: &NO_LABELS,
            running: &NOT_RUNNING,
        }
    }

    fn named(name: &str) -> Wanted<'_> {
        Wanted {
            name: Some(name),
            labels: &NO_LABELS,
            running: &NOT_RUNNING,
        }
    }

    #[test]
    fn a_worker_that_already_runs_the_config_is_not_chosen() {
        let workers = vec![
            worker(1, "a", Status::Running, 4),
            worker(2, "b", Status::Running, 4),
        ];
        let running = HashMap::from([(WorkerId(1), InstanceId(7))]);
        let wanted = Wanted {
            running: &running,
            ..anyone()
        };
        // a is the less loaded, but runs the config already.
        let active = HashMap::from([(WorkerId(2), 2)]);
        assert_eq!(place(&workers, &active, wanted).unwrap().id, WorkerId(2));
        let err = place(
            &workers,
            &active,
            Wanted {
                running: &running,
                ..named("a")
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("instance 7"), "{err}");
        let everywhere =
            HashMap::from([(WorkerId(1), InstanceId(7)), (WorkerId(2), InstanceId(8))]);
        let err = place(
            &workers,
            &active,
            Wanted {
                running: &everywhere,
                ..anyone()
            },
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("already runs this config"),
            "{err}"
        );
    }

    #[test]
    fn workers_with_the_labels_are_chosen_least_loaded_first() {
        let mut eu = worker(1, "eu-1", Status::Running, 4);
        eu.labels.insert("region".into(), "eu".into());
        let mut eu_busy = worker(2, "eu-2", Status::Running, 4);
        eu_busy.labels.insert("region".into(), "eu".into());
        let us = worker(3, "us-1", Status::Running, 4);
        let workers = [eu_busy.clone(), eu, us];
        let active = HashMap::from([(WorkerId(2), 2)]);
        let region = BTreeMap::from([("region".to_owned(), "eu".to_owned())]);
        let wanted = Wanted {
            name: None,
            labels: &region,
            running: &NOT_RUNNING,
        };
        assert_eq!(place(&workers, &active, wanted).unwrap().name, "eu-1");
        let wanted_us = Wanted {
            name: Some("us-1"),
            labels: &region,
            running: &NOT_RUNNING,
        };
        let err = place(&workers, &active, wanted_us).unwrap_err().to_string();
        assert!(err.contains("region=eu"), "{err}");
        let asia = BTreeMap::from([("region".to_owned(), "asia".to_owned())]);
        let err = place(
            &workers,
            &active,
            Wanted {
                name: None,
                labels: &asia,
                running: &NOT_RUNNING,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("no live worker has the labels region=asia"),
            "{err}"
        );
        // The only eu workers are full: capacity is the reason.
        let full = HashMap::from([(WorkerId(1), 4), (WorkerId(2), 4)]);
        let err = place(&workers, &full, wanted).unwrap_err().to_string();
        assert!(err.contains("capacity"), "{err}");
    }

    #[test]
    fn least_loaded_live_worker_wins() {
        let workers = [
            worker(1, "a", Status::Running, 4),
            worker(2, "b", Status::Running, 4),
            worker(3, "c", Status::Lost, 4),
        ];
        let active = HashMap::from([(WorkerId(1), 2), (WorkerId(2), 1)]);
        assert_eq!(place(&workers, &active, anyone()).unwrap().id, WorkerId(2));
    }

    #[test]
    fn full_or_dead_workers_are_refused_with_a_reason() {
        let workers = [
            worker(1, "a", Status::Running, 1),
            worker(2, "b", Status::Lost, 4),
        ];
        let active = HashMap::from([(WorkerId(1), 1)]);
        let err = place(&workers, &active, anyone()).unwrap_err().to_string();
        assert!(err.contains("capacity"), "{err}");
        let err = place(&workers, &active, named("b"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lost"), "{err}");
        let err = place(&workers, &active, named("zzz")).unwrap_err();
        assert!(matches!(err, HostError::NotFound { .. }));
        let err = place(&[], &active, anyone()).unwrap_err().to_string();
        assert!(err.contains("no worker"), "{err}");
    }
}
