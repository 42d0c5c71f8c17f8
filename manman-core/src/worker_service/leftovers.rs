//! What a previous run of the worker left behind, found at start from its process records:
//! servers a runner kept across the restart (a shim each) are taken up again; every other
//! server is ended, and reported with how it ended.

use crate::event::StatusReport;
use crate::id::InstanceId;
use crate::ports::{ExitStatus, HeldServer, ProcessRunner, Reattached};
use crate::status::{Cause, Entity, Status};
use crate::worker_service::console_log;
use crate::worker_service::process_records::{
    KeptServer, Leftover, ProcessRecord, ProcessRecords, end_leftover,
};
use chrono::{DateTime, Utc};
use std::path::Path;

/// A server taken up again (attended: its runner holds its console until it is supervised).
#[derive(Debug)]
pub(crate) struct TakenUp {
    pub(crate) instance_id: InstanceId,
    pub(crate) kept: KeptServer,
    pub(crate) server: Box<dyn HeldServer>,
    /// The last console line the log has: the server's lines go on after it.
    pub(crate) last_seq: u64,
}

/// An instance of the previous run that has ended, with how.
#[derive(Debug)]
pub(crate) struct Ended {
    pub(crate) instance_id: InstanceId,
    pub(crate) status: Status,
    pub(crate) cause: Cause,
    pub(crate) detail: String,
    pub(crate) exit: Option<ExitStatus>,
    /// The start whose end its runner kept (its record stays until the end is reported).
    pub(crate) kept_spawn: Option<u64>,
}

impl Ended {
    /// Its final status report.
    pub(crate) fn report(&self, now: DateTime<Utc>) -> StatusReport {
        let mut report = StatusReport::new(
            Entity::Instance(self.instance_id),
            self.status,
            self.cause,
            now,
        )
        .with_detail(self.detail.clone());
        report.exit_code = self.exit.and_then(|e| e.code);
        report.exit_signal = self.exit.and_then(|e| e.signal);
        report
    }
}

/// Takes up the servers `runner` kept, asking each for the console lines after the last one in
/// its log under `log_dir`; ends the rest.
pub(crate) async fn take_up_or_end(
    records: &ProcessRecords,
    runner: &dyn ProcessRunner,
    log_dir: &Path,
) -> (Vec<TakenUp>, Vec<Ended>) {
    let (mut taken_up, mut ended) = (Vec::new(), Vec::new());
    for record in records.leftovers() {
        let instance_id = record.instance_id;
        let Some(kept) = record.kept.clone().filter(|_| runner.keeps_servers()) else {
            ended.push(end(records, &record, None));
            continue;
        };
        let log = format!("instance-{}.log", instance_id.get());
        let last_seq = console_log::last_seq(log_dir, &log).unwrap_or(0);
        match runner.reattach(instance_id, kept.spawn).await {
            Reattached::Busy(why) => {
                tracing::warn!(instance_id = instance_id.get(), %why, "a server the last run of the worker left is supervised by another worker process on this state directory: left alone");
            }
            Reattached::Running(server) => {
                tracing::info!(
                    instance_id = instance_id.get(),
                    pid = server.pid(),
                    last_seq,
                    "taking up a server the last run of the worker left running"
                );
                taken_up.push(TakenUp {
                    instance_id,
                    kept,
                    server,
                    last_seq,
                });
            }
            Reattached::Ended {
                exit,
                stopped_unattended,
            } => {
                let (status, cause, detail) = if stopped_unattended {
                    (
                        Status::Complete,
                        Cause::WorkerRestart,
                        format!(
                            "no worker took it up within the grace time after the last run of \
                             the worker ended: stopped by its stop policy ({exit})"
                        ),
                    )
                } else if exit.success() {
                    (
                        Status::Complete,
                        Cause::Exited,
                        format!("exited with {exit} while no worker was attached"),
                    )
                } else {
                    (
                        Status::Crashed,
                        Cause::Exited,
                        format!("exited with {exit} while no worker was attached"),
                    )
                };
                tracing::warn!(instance_id = instance_id.get(), %detail, "a server the last run of the worker left has ended");
                ended.push(Ended {
                    instance_id,
                    status,
                    cause,
                    detail,
                    exit: Some(exit),
                    kept_spawn: Some(kept.spawn),
                });
            }
            Reattached::Gone(why) => ended.push(end(records, &record, Some(&why))),
        }
    }
    (taken_up, ended)
}

/// Ends a leftover process group and forgets it: `crashed` (cause `worker-restart`).
fn end(records: &ProcessRecords, record: &ProcessRecord, why: Option<&str>) -> Ended {
    let outcome = end_leftover(record);
    records.remove(record.instance_id);
    let mut detail = match outcome {
        Leftover::Ended => format!(
            "a previous run of this worker left process group {} running; it was ended",
            record.pgid
        ),
        Leftover::Gone => format!(
            "a previous run of this worker ended without stopping it; process group {} was gone",
            record.pgid
        ),
        Leftover::PidReused => format!(
            "a previous run of this worker ended without stopping it; pid {} now belongs to another process, left alone",
            record.pgid
        ),
    };
    if let Some(why) = why {
        detail = format!("{detail} ({why})");
    }
    tracing::warn!(
        instance_id = record.instance_id.get(),
        pgid = record.pgid,
        ?outcome,
        "leftover from a previous run"
    );
    Ended {
        instance_id: record.instance_id,
        status: Status::Crashed,
        cause: Cause::WorkerRestart,
        detail,
        exit: None,
        kept_spawn: None,
    }
}
