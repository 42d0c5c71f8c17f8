//! [`ConsoleLog`]: an instance's console on the worker's disk — every line, size-capped and
//! rotated (`instance-7.log`, `instance-7.log.1`, … oldest last).

use crate::console::{ConsoleLine, ConsoleStream};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Size cap and rotation of console logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    /// A file is rotated once it would grow past this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept besides the current one.
    pub keep: u32,
}

impl Default for LogRotation {
    /// 10 MiB per file, 5 rotated files kept.
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            keep: 5,
        }
    }
}

/// Appends console lines to a file, rotating it at the size cap.
///
/// Writes go through a buffer; [`ConsoleLog::flush`] pushes them to the file (the supervisor
/// calls it whenever the server's output pauses, and at the end) and gives the buffer's memory
/// back, so a thousand quiet servers hold no buffers.
#[derive(Debug)]
pub(crate) struct ConsoleLog {
    path: PathBuf,
    rotation: LogRotation,
    file: File,
    buffer: Vec<u8>,
    size: u64,
}

/// Buffered bytes written out without waiting for a pause.
const BUFFER_LIMIT: usize = 32 * 1024;

impl ConsoleLog {
    /// Opens (appending) `dir/instance-{id}.log`, creating `dir` if needed.
    pub(crate) fn open(dir: &Path, name: &str, rotation: LogRotation) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(name);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        cut_partial_line(&file)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path,
            rotation,
            file,
            buffer: Vec::new(),
            size,
        })
    }

    /// The current file.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line: `<time> <seq> <stream> <text>`.
    pub(crate) fn write(&mut self, line: &ConsoleLine) -> io::Result<()> {
        let stream = match line.stream {
            ConsoleStream::Stdout => "out",
            ConsoleStream::Stderr => "err",
            ConsoleStream::Stdin => "in",
        };
        let text = format!(
            "{} {} {stream} {}\n",
            line.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            line.seq,
            line.text
        );
        let len = text.len() as u64;
        if self.size > 0 && self.size + len > self.rotation.max_bytes {
            self.rotate()?;
        }
        self.buffer.extend_from_slice(text.as_bytes());
        self.size += len;
        if self.buffer.len() >= BUFFER_LIMIT {
            self.write_buffer()?;
        }
        Ok(())
    }

    fn write_buffer(&mut self) -> io::Result<()> {
        self.file.write_all(&self.buffer)?;
        self.buffer.clear();
        Ok(())
    }

    /// Pushes buffered lines to the file and releases the buffer.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.write_buffer()?;
        self.buffer = Vec::new();
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        rotated(&self.path, n)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.write_buffer()?;
        if self.rotation.keep == 0 {
            self.file.set_len(0)?;
        } else {
            let _ = std::fs::remove_file(self.rotated(self.rotation.keep));
            for n in (1..self.rotation.keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

/// Longest tail read to find the last whole line: a console line is at most 64 KiB of output,
/// which the replacement of invalid UTF-8 can make three times longer, plus its prefix.
const TAIL_BYTES: u64 = 4 * 64 * 1024;

/// Cuts off a last line a worker that died while writing left half-written, so that what is
/// appended starts on a line of its own (and the line is written again whole, when its server
/// is taken up and its console replayed from the last whole line).
fn cut_partial_line(file: &File) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let size = file.metadata()?.len();
    if size == 0 {
        return Ok(());
    }
    let tail = size.min(TAIL_BYTES);
    let mut bytes = vec![0; usize::try_from(tail).map_err(io::Error::other)?];
    file.read_exact_at(&mut bytes, size - tail)?;
    if bytes.last() == Some(&b'\n') {
        return Ok(());
    }
    let keep = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(newline) => size - tail + newline as u64 + 1,
        // No whole line within reach: the file is one broken line.
        None if tail == size => 0,
        None => return Ok(()),
    };
    file.set_len(keep)
}

/// Rotated file `n` of the log at `path`.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.to_path_buf().into_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The number of the last whole line of the log `dir/name` (or of its newest rotated file when
/// it was just rotated): where a worker that takes up a console again goes on.
pub(crate) fn last_seq(dir: &Path, name: &str) -> Option<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let path = dir.join(name);
    [path.clone(), rotated(&path, 1)].iter().find_map(|path| {
        let mut file = File::open(path).ok()?;
        let size = file.metadata().ok()?.len();
        let tail = size.min(TAIL_BYTES);
        file.seek(SeekFrom::Start(size - tail)).ok()?;
        let mut bytes = vec![0; usize::try_from(tail).ok()?];
        file.read_exact(&mut bytes).ok()?;
        let whole = &bytes[..=bytes.iter().rposition(|b| *b == b'\n')?];
        let last = whole[..whole.len() - 1].rsplit(|b| *b == b'\n').next()?;
        std::str::from_utf8(last)
            .ok()?
            .split(' ')
            .nth(1)?
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::InstanceId;

    fn line(seq: u64, text: &str) -> ConsoleLine {
        ConsoleLine {
            instance_id: InstanceId(7),
            seq,
            stream: ConsoleStream::Stdout,
            text: text.to_owned(),
            at: chrono::Utc::now(),
        }
    }

    #[test]
    fn rotates_at_the_cap_and_keeps_every_line_until_the_oldest_file_goes() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = LogRotation {
            max_bytes: 200,
            keep: 2,
        };
        let mut log = ConsoleLog::open(dir.path(), "instance-7.log", rotation).unwrap();
        for seq in 1..=12 {
            log.write(&line(seq, "0123456789")).unwrap();
        }
        log.flush().unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let current = read(log.path());
        let first = read(&log.rotated(1));
        let second = read(&log.rotated(2));
        assert!(!log.rotated(3).exists(), "only `keep` rotated files");
        for content in [&current, &first, &second] {
            assert!(!content.is_empty() && content.len() <= 200, "{content:?}");
        }
        let all = format!("{second}{first}{current}");
        let seqs: Vec<u64> = all
            .lines()
            .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (seqs[0]..=12).collect::<Vec<_>>(),
            "contiguous, newest last"
        );
        assert!(current.ends_with("12 out 0123456789\n"));
        assert_eq!(last_seq(dir.path(), "instance-7.log"), Some(12));
    }

    #[test]
    fn the_last_number_is_that_of_the_last_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(last_seq(dir.path(), "instance-7.log"), None, "no log yet");
        let mut log =
            ConsoleLog::open(dir.path(), "instance-7.log", LogRotation::default()).unwrap();
        for seq in 40..=44 {
            log.write(&line(seq, "a line with spaces")).unwrap();
        }
        log.flush().unwrap();
        assert_eq!(last_seq(dir.path(), "instance-7.log"), Some(44));
        // A worker killed while writing leaves half a line: it does not count.
        let mut file = OpenOptions::new().append(true).open(log.path()).unwrap();
        file.write_all(b"2026-01-01T00:00:00.000Z 45 out half")
            .unwrap();
        assert_eq!(last_seq(dir.path(), "instance-7.log"), Some(44));
        // The next run cuts it off before it appends: line 45 comes again, whole.
        drop(log);
        let mut log =
            ConsoleLog::open(dir.path(), "instance-7.log", LogRotation::default()).unwrap();
        log.write(&line(45, "whole")).unwrap();
        log.flush().unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap();
        let seqs: Vec<&str> = text.lines().map(|l| l.split(' ').nth(1).unwrap()).collect();
        assert_eq!(seqs, ["40", "41", "42", "43", "44", "45"]);
        assert!(
            !text.contains("half") && text.ends_with(" 45 out whole\n"),
            "{text}"
        );
        // Just rotated: the newest rotated file has it.
        std::fs::rename(log.path(), rotated(log.path(), 1)).unwrap();
        File::create(log.path()).unwrap();
        assert_eq!(last_seq(dir.path(), "instance-7.log"), Some(45));
    }
}
