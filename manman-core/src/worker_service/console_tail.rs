//! The console tail of an ended instance: its last lines, read back from its log files
//! (`instance-7.log`, `instance-7.log.1`, … newest first) and handed to the host, which keeps
//! them so that the console can be read after any restart (see
//! `WorkerGateway::keep_console_tail`).

use crate::console::{ConsoleLine, ConsoleStream, ConsoleTail, TAIL_BYTES, TAIL_LINES};
use crate::id::{InstanceId, WorkerId};
use crate::ports::HostApi;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Bytes read from the end of the log files at most: the tail's JSON cap, and room for the
/// log's own columns.
const READ_BYTES: u64 = 2 * TAIL_BYTES as u64;

/// How long the worker keeps offering a tail to a host that does not answer.
const HAND_OVER_FOR: Duration = Duration::from_secs(300);

/// The log file of `instance` in `log_dir`, or its `n`th rotated file.
fn log_file(log_dir: &Path, instance: InstanceId, rotated: u32) -> PathBuf {
    let name = format!("instance-{}.log", instance.get());
    if rotated == 0 {
        log_dir.join(name)
    } else {
        log_dir.join(format!("{name}.{rotated}"))
    }
}

/// The last lines of `instance`'s console log, or `None` when it has no log (never written, or
/// deleted by retention). Lines that do not parse are left out.
pub(crate) fn read_tail(log_dir: &Path, instance: InstanceId) -> io::Result<Option<ConsoleTail>> {
    let mut budget = READ_BYTES;
    // Newest file first; each chunk is the end of one file.
    let mut chunks: VecDeque<(Vec<u8>, bool)> = VecDeque::new();
    let mut lines_seen = 0;
    for rotated in 0.. {
        let mut file = match File::open(log_file(log_dir, instance, rotated)) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if rotated == 0 {
                    return Ok(None);
                }
                break;
            }
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        let take = len.min(budget);
        file.seek(SeekFrom::Start(len - take))?;
        let mut chunk = Vec::with_capacity(usize::try_from(take).unwrap_or(0));
        file.take(take).read_to_end(&mut chunk)?;
        budget -= take;
        lines_seen += chunk.iter().filter(|b| **b == b'\n').count();
        let whole = take == len;
        chunks.push_front((chunk, whole));
        if budget == 0 || lines_seen > TAIL_LINES || !whole {
            break;
        }
    }
    let mut lines = Vec::new();
    for (chunk, whole) in &chunks {
        let text = String::from_utf8_lossy(chunk);
        // A chunk that starts mid-file starts mid-line: its first line is cut.
        let skip = usize::from(!whole);
        lines.extend(text.lines().skip(skip).filter_map(|l| parse(l, instance)));
    }
    // Rotation keeps numbers increasing; a log appended to by an earlier run of the same
    // instance id (a restored state dir) may not: keep the last increasing run.
    let start = lines
        .windows(2)
        .rposition(|pair| pair[1].seq <= pair[0].seq)
        .map_or(0, |i| i + 1);
    Ok(Some(ConsoleTail::newest(lines.split_off(start))))
}

/// One log line: `<time> <seq> <stream> <text>` (see `ConsoleLog::write`).
fn parse(line: &str, instance: InstanceId) -> Option<ConsoleLine> {
    let mut parts = line.splitn(4, ' ');
    let at = chrono::DateTime::parse_from_rfc3339(parts.next()?)
        .ok()?
        .to_utc();
    let seq = parts.next()?.parse().ok()?;
    let stream = match parts.next()? {
        "out" => ConsoleStream::Stdout,
        "err" => ConsoleStream::Stderr,
        "in" => ConsoleStream::Stdin,
        _ => return None,
    };
    Some(ConsoleLine {
        instance_id: instance,
        seq,
        stream,
        text: parts.next().unwrap_or_default().to_owned(),
        at,
    })
}

/// Reads `instance`'s tail and hands it to the host, trying again while the host is away (1 s
/// doubling to 30 s, for up to 5 minutes). Once `stopping` (the worker shuts down) it makes one
/// more try only. A tail the host refuses, or that cannot be read, is logged and given up.
pub(crate) async fn send_tail(
    host: Arc<dyn HostApi>,
    worker: WorkerId,
    instance: InstanceId,
    log_dir: PathBuf,
    stopping: CancellationToken,
) {
    let read = tokio::task::spawn_blocking(move || read_tail(&log_dir, instance)).await;
    let tail = match read {
        Ok(Ok(Some(tail))) => tail,
        Ok(Ok(None)) => ConsoleTail::default(),
        Ok(Err(e)) => {
            tracing::warn!(instance_id = instance.get(), error = %e, "cannot read the console log back; its console will not be kept by the host");
            return;
        }
        Err(e) => {
            tracing::warn!(instance_id = instance.get(), error = %e, "reading the console log back failed");
            return;
        }
    };
    let deadline = tokio::time::Instant::now() + HAND_OVER_FOR;
    let mut pause = Duration::from_secs(1);
    loop {
        match host.keep_console_tail(worker, instance, &tail).await {
            Ok(()) => {
                tracing::debug!(
                    instance_id = instance.get(),
                    lines = tail.lines.len(),
                    "console tail handed to the host"
                );
                return;
            }
            Err(e) if e.is_transient() => {
                if stopping.is_cancelled() || tokio::time::Instant::now() + pause > deadline {
                    tracing::warn!(instance_id = instance.get(), error = %e, "the host did not take the console tail; its console will not be kept by the host");
                    return;
                }
                tokio::select! {
                    () = stopping.cancelled() => {}
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(30));
            }
            Err(e) => {
                tracing::warn!(instance_id = instance.get(), error = %e, "the host refused the console tail");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker_service::console_log::{ConsoleLog, LogRotation};

    fn line(seq: u64, text: &str) -> ConsoleLine {
        ConsoleLine {
            instance_id: InstanceId(7),
            seq,
            stream: if seq.is_multiple_of(10) {
                ConsoleStream::Stdin
            } else {
                ConsoleStream::Stdout
            },
            text: text.to_owned(),
            at: chrono::Utc::now(),
        }
    }

    fn write(dir: &Path, rotation: LogRotation, lines: impl IntoIterator<Item = ConsoleLine>) {
        let mut log = ConsoleLog::open(dir, "instance-7.log", rotation).unwrap();
        for line in lines {
            log.write(&line).unwrap();
        }
        log.flush().unwrap();
    }

    #[test]
    fn no_log_is_no_tail() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_tail(dir.path(), InstanceId(7)).unwrap(), None);
    }

    #[test]
    fn the_tail_is_the_last_lines_across_rotated_files_exactly_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = LogRotation {
            max_bytes: 16 * 1024,
            keep: 50,
        };
        let written: Vec<ConsoleLine> = (1..=1_500)
            .map(|n| line(n, &format!("line {n}: héllo  two spaces \u{1b}[0m")))
            .collect();
        write(dir.path(), rotation, written.clone());
        assert!(log_file(dir.path(), InstanceId(7), 3).exists(), "rotated");
        let tail = read_tail(dir.path(), InstanceId(7)).unwrap().unwrap();
        assert_eq!(tail.lines.len(), TAIL_LINES);
        let expected = &written[500..];
        for (read, wrote) in tail.lines.iter().zip(expected) {
            assert_eq!(read.seq, wrote.seq);
            assert_eq!(read.stream, wrote.stream);
            assert_eq!(read.text, wrote.text);
            assert_eq!(
                read.at.timestamp_millis(),
                wrote.at.timestamp_millis(),
                "kept to the millisecond"
            );
        }
        tail.check(InstanceId(7)).expect("a valid tail");
    }

    #[test]
    fn a_short_log_is_read_whole_and_an_empty_line_kept() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            LogRotation::default(),
            [line(1, "a"), line(2, ""), line(3, "c")],
        );
        let tail = read_tail(dir.path(), InstanceId(7)).unwrap().unwrap();
        let texts: Vec<&str> = tail.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["a", "", "c"]);
    }
}
