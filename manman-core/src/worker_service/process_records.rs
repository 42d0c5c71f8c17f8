//! [`ProcessRecords`]: which process group each instance runs in, kept in the worker's state
//! dir so that a worker that died without stopping its servers can end them when it restarts.

use crate::id::{ConfigId, InstanceId};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// One running server's process group, as recorded on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcessRecord {
    pub(crate) instance_id: InstanceId,
    /// The server's pid, which is also its process group id.
    pub(crate) pgid: u32,
    /// The leader's start time (clock ticks after boot, `/proc/<pid>/stat` field 22), so that a
    /// reused pid is never mistaken for the server.
    pub(crate) start_ticks: Option<u64>,
    /// What a restarted worker needs to take the server up again, when the runner keeps
    /// servers across worker restarts (a shim holds it); `None`: it dies with the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) kept: Option<KeptServer>,
}

/// A server that outlives the worker, as a restarted worker takes it up again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeptServer {
    pub(crate) config_id: ConfigId,
    /// Which start of the instance it is (what the runner names its files by).
    pub(crate) spawn: u64,
    /// The config it was started with: how to stop it while the host cannot confirm it.
    pub(crate) config: Box<crate::config::GameServerConfig>,
    pub(crate) restart_count: u32,
    /// It was `running` (ready), not still `initializing`.
    pub(crate) ready: bool,
}

/// The records of one worker, one JSON file per instance under `<state dir>/processes/`.
#[derive(Debug, Clone)]
pub(crate) struct ProcessRecords {
    dir: PathBuf,
}

impl ProcessRecords {
    pub(crate) fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("processes"),
        }
    }

    fn path(&self, instance: InstanceId) -> PathBuf {
        self.dir.join(format!("instance-{}.json", instance.get()))
    }

    /// Records a spawned server (written to a temporary file, then renamed into place), again
    /// when what is kept of it changes.
    pub(crate) fn record(
        &self,
        instance_id: InstanceId,
        pgid: u32,
        kept: Option<KeptServer>,
    ) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let record = ProcessRecord {
            instance_id,
            pgid,
            start_ticks: start_ticks(pgid),
            kept,
        };
        let path = self.path(instance_id);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&record).map_err(io::Error::other)?)?;
        std::fs::rename(&tmp, &path)
    }

    /// Forgets a server that ended.
    pub(crate) fn remove(&self, instance: InstanceId) {
        let _ = std::fs::remove_file(self.path(instance));
    }

    /// Every record left on disk (unreadable files are logged and removed).
    pub(crate) fn leftovers(&self) -> Vec<ProcessRecord> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            match std::fs::read(&path).map(|bytes| serde_json::from_slice::<ProcessRecord>(&bytes))
            {
                Ok(Ok(record)) => records.push(record),
                other => {
                    tracing::warn!(path = %path.display(), ?other, "removing an unreadable process record");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        records.sort_by_key(|r| r.instance_id);
        records
    }
}

/// A process's start time in clock ticks after boot, if it exists (Linux).
pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; starttime is field 22 overall, the 20th here.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// What ending a leftover group found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leftover {
    /// The group was found and SIGKILLed.
    Ended,
    /// Nothing of it was left.
    Gone,
    /// The pid now belongs to another process: its group was left alone.
    PidReused,
}

/// SIGKILLs a recorded group if it is still the recorded server's (or its children's).
#[cfg(feature = "process")]
pub(crate) fn end_leftover(record: &ProcessRecord) -> Leftover {
    use nix::errno::Errno;
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let leader_now = start_ticks(record.pgid);
    if leader_now.is_some() && record.start_ticks.is_some() && leader_now != record.start_ticks {
        return Leftover::PidReused;
    }
    let Ok(pgid) = i32::try_from(record.pgid) else {
        return Leftover::Gone;
    };
    match killpg(Pid::from_raw(pgid), Signal::SIGKILL) {
        Ok(()) => Leftover::Ended,
        Err(Errno::ESRCH) => Leftover::Gone,
        Err(e) => {
            tracing::warn!(pgid, error = %e, "could not end a leftover process group");
            Leftover::Gone
        }
    }
}

/// Without the `process` feature nothing is spawned, so nothing is left over.
#[cfg(not(feature = "process"))]
pub(crate) fn end_leftover(_record: &ProcessRecord) -> Leftover {
    Leftover::Gone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let records = ProcessRecords::new(dir.path());
        let me = std::process::id();
        records.record(InstanceId(3), me, None).unwrap();
        let kept = KeptServer {
            config_id: ConfigId(9),
            spawn: 0xfeed,
            config: Box::new(crate::config::GameServerConfig {
                id: ConfigId(9),
                game_server_id: crate::id::GameServerId(1),
                created_at: chrono::Utc::now(),
                spec: crate::config::ConfigSpec::new("default", "srv"),
            }),
            restart_count: 2,
            ready: true,
        };
        records
            .record(InstanceId(1), me, Some(kept.clone()))
            .unwrap();
        std::fs::write(dir.path().join("processes/garbage.json"), b"{").unwrap();
        let left = records.leftovers();
        assert_eq!(
            left.iter().map(|r| r.instance_id).collect::<Vec<_>>(),
            [InstanceId(1), InstanceId(3)]
        );
        assert_eq!(left[0].start_ticks, start_ticks(me));
        assert!(left[0].start_ticks.is_some());
        assert_eq!(left[0].kept, Some(kept));
        assert_eq!(left[1].kept, None);
        records.remove(InstanceId(1));
        assert_eq!(records.leftovers().len(), 1);
    }

    #[test]
    fn a_reused_pid_is_left_alone() {
        let record = ProcessRecord {
            instance_id: InstanceId(1),
            pgid: std::process::id(),
            start_ticks: Some(1),
            kept: None,
        };
        assert_eq!(end_leftover(&record), Leftover::PidReused);
    }
}
