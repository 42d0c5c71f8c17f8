//! [`LogRetention`]: the console logs of ended instances (`<state dir>/logs/instance-{id}.log`
//! and its rotated files) are deleted once the instance's log has not been written for the
//! retention period. A task the worker owns prunes them at start and then at every interval;
//! the log of an instance the worker runs is never deleted, however quiet it is.

use crate::id::InstanceId;
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// How long the console logs of ended instances are kept, and how often they are pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRetention {
    /// An ended instance's log files are deleted once the newest of them is older than this.
    pub keep: Duration,
    /// Time between prunings.
    pub interval: Duration,
}

impl Default for LogRetention {
    /// 14 days kept, pruned once an hour.
    fn default() -> Self {
        Self {
            keep: Duration::from_secs(14 * 24 * 3600),
            interval: Duration::from_secs(3600),
        }
    }
}

/// What one pruning deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PrunedLogs {
    /// Instances whose logs were deleted.
    pub(crate) instances: u64,
    /// Files deleted (current and rotated).
    pub(crate) files: u64,
    /// Their size.
    pub(crate) bytes: u64,
}

/// The instance a console log file belongs to: `instance-{id}.log` or `instance-{id}.log.{n}`.
fn instance_of(file_name: &str) -> Option<InstanceId> {
    let rest = file_name.strip_prefix("instance-")?;
    let (id, suffix) = rest.split_once(".log")?;
    let rotated = suffix.is_empty()
        || suffix
            .strip_prefix('.')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !rotated || id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok().map(InstanceId)
}

/// One instance's log files and when the newest of them was last written.
#[derive(Debug, Default)]
struct InstanceLogs {
    files: Vec<(PathBuf, u64)>,
    last_written: Option<SystemTime>,
}

/// Deletes, in `dir`, the log files of every instance not in `running` whose newest file was
/// last written more than `keep` before `now`. Files that are not console logs are left alone;
/// a file that cannot be read or deleted is logged and skipped. A missing `dir` is nothing to
/// prune.
pub(crate) fn prune_logs(
    dir: &Path,
    keep: Duration,
    now: SystemTime,
    running: &HashSet<InstanceId>,
) -> io::Result<PrunedLogs> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PrunedLogs::default()),
        Err(e) => return Err(e),
    };
    let mut logs: HashMap<InstanceId, InstanceLogs> = HashMap::new();
    for entry in entries {
        let entry = entry?;
        let Some(instance) = entry.file_name().to_str().and_then(instance_of) else {
            continue;
        };
        if running.contains(&instance) {
            continue;
        }
        let metadata = match entry.metadata() {
            Ok(m) if m.is_file() => m,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(path = %entry.path().display(), error = %e, "could not read a console log's metadata; left alone");
                continue;
            }
        };
        let modified = metadata.modified()?;
        let instance_logs = logs.entry(instance).or_default();
        instance_logs.files.push((entry.path(), metadata.len()));
        instance_logs.last_written = instance_logs.last_written.max(Some(modified));
    }
    let Some(cutoff) = now.checked_sub(keep) else {
        return Ok(PrunedLogs::default());
    };
    let mut pruned = PrunedLogs::default();
    for (instance, instance_logs) in logs {
        if instance_logs.last_written.is_none_or(|at| at >= cutoff) {
            continue;
        }
        pruned.instances += 1;
        for (path, len) in instance_logs.files {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    pruned.files += 1;
                    pruned.bytes += len;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(instance_id = instance.get(), path = %path.display(), error = %e, "could not delete an old console log")
                }
            }
        }
    }
    Ok(pruned)
}

/// Prunes the console logs in `dir` at once and then every `retention.interval`, until `stop`.
/// `running` says which instances the worker runs now (their logs are never deleted). A failed
/// pruning is logged and tried again at the next interval.
pub(crate) async fn run_log_retention<F>(
    dir: PathBuf,
    retention: LogRetention,
    running: F,
    stop: CancellationToken,
) where
    F: Fn() -> HashSet<InstanceId> + Send + 'static,
{
    loop {
        let running = running();
        let dir_for_task = dir.clone();
        let pruning = tokio::task::spawn_blocking(move || {
            prune_logs(&dir_for_task, retention.keep, SystemTime::now(), &running)
        });
        match pruning.await {
            Ok(Ok(pruned)) if pruned != PrunedLogs::default() => tracing::info!(
                dir = %dir.display(),
                instances = pruned.instances,
                files = pruned.files,
                bytes = pruned.bytes,
                "deleted the console logs of instances ended longer ago than the log retention"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not prune console logs; trying again later")
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "console log pruning failed; trying again later")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(retention.interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    /// Writes `name` in `dir`, last written `age` before `now`.
    fn log_file(dir: &Path, name: &str, now: SystemTime, age: Duration) {
        let path = dir.join(name);
        std::fs::write(&path, b"2026-01-01T00:00:00.000Z 1 out hello\n").unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(now - age)
            .unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn log_file_names_are_recognised_and_nothing_else() {
        assert_eq!(instance_of("instance-7.log"), Some(InstanceId(7)));
        assert_eq!(instance_of("instance-7.log.3"), Some(InstanceId(7)));
        for other in [
            "instance-7.json",
            "instance-.log",
            "instance-7.log.",
            "instance-7.logx",
            "instance-x.log",
            "instance-7.log.1.tmp",
            "notes.txt",
        ] {
            assert_eq!(instance_of(other), None, "{other}");
        }
    }

    #[test]
    fn ended_instances_lose_their_logs_after_the_retention_and_running_ones_never() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let keep = 14 * DAY;
        // Ended, last written 20 days ago: every file goes.
        log_file(dir.path(), "instance-1.log", now, 20 * DAY);
        log_file(dir.path(), "instance-1.log.1", now, 21 * DAY);
        // Running, quiet for 30 days: kept.
        log_file(dir.path(), "instance-2.log", now, 30 * DAY);
        log_file(dir.path(), "instance-2.log.1", now, 31 * DAY);
        // Ended 13 days ago: kept.
        log_file(dir.path(), "instance-3.log", now, 13 * DAY);
        // Ended 2 days ago with an old rotated file: kept whole.
        log_file(dir.path(), "instance-4.log", now, 2 * DAY);
        log_file(dir.path(), "instance-4.log.5", now, 40 * DAY);
        // Not a console log: left alone.
        log_file(dir.path(), "notes.txt", now, 90 * DAY);
        let running = HashSet::from([InstanceId(2)]);

        let pruned = prune_logs(dir.path(), keep, now, &running).unwrap();
        assert_eq!(
            (pruned.instances, pruned.files),
            (1, 2),
            "only instance 1's two files"
        );
        assert!(pruned.bytes > 0);
        assert_eq!(
            names(dir.path()),
            [
                "instance-2.log",
                "instance-2.log.1",
                "instance-3.log",
                "instance-4.log",
                "instance-4.log.5",
                "notes.txt"
            ]
        );

        // A day later instance 3 is past the retention too; instance 2 still runs.
        let pruned = prune_logs(dir.path(), keep, now + 2 * DAY, &running).unwrap();
        assert_eq!((pruned.instances, pruned.files), (1, 1));
        assert!(!dir.path().join("instance-3.log").exists());
        assert!(dir.path().join("instance-2.log").exists());

        // Once instance 2 has ended, its quiet log goes at the next pruning.
        let pruned = prune_logs(dir.path(), keep, now + 2 * DAY, &HashSet::new()).unwrap();
        assert_eq!((pruned.instances, pruned.files), (1, 2));
        assert!(!dir.path().join("instance-2.log").exists());
    }

    #[test]
    fn a_missing_log_directory_is_nothing_to_prune() {
        let dir = tempfile::tempdir().unwrap();
        let pruned = prune_logs(
            &dir.path().join("logs"),
            DAY,
            SystemTime::now(),
            &HashSet::new(),
        )
        .unwrap();
        assert_eq!(pruned, PrunedLogs::default());
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_prunes_at_start_and_at_each_interval_until_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        log_file(dir.path(), "instance-1.log", now, 20 * DAY);
        let running = std::sync::Arc::new(std::sync::Mutex::new(HashSet::from([InstanceId(2)])));
        log_file(dir.path(), "instance-2.log", now, 20 * DAY);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_log_retention(
            dir.path().to_owned(),
            LogRetention {
                keep: 14 * DAY,
                interval: Duration::from_secs(3600),
            },
            {
                let running = std::sync::Arc::clone(&running);
                move || running.lock().unwrap().clone()
            },
            stop.clone(),
        ));
        let gone = |name: &str| !dir.path().join(name).exists();
        // At start: the ended instance's log goes, the running one's stays.
        while !gone("instance-1.log") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!gone("instance-2.log"));
        // Instance 2 ends; the next pruning, an interval later, deletes its log.
        running.lock().unwrap().clear();
        tokio::time::sleep(Duration::from_secs(1800)).await;
        assert!(!gone("instance-2.log"), "not before the interval");
        while !gone("instance-2.log") {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task ends when stopped")
            .unwrap();
    }
}
