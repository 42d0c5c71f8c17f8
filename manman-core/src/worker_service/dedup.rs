//! [`RecentIds`]: the command ids a worker handled lately, so a redelivered or replayed command
//! is not run twice — kept in a file of the state directory, so a restart of the worker does
//! not forget them.
//!
//! The file holds one id per line, appended as each command is taken; once it holds twice the
//! ids remembered, it is rewritten with only those (a new file renamed over it). A line that
//! is not an id (a torn last write) is skipped.

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// A bounded set of recently seen ids; the oldest are forgotten first.
#[derive(Debug)]
pub(crate) struct RecentIds {
    order: VecDeque<Uuid>,
    seen: HashSet<Uuid>,
    capacity: usize,
    file: Option<IdFile>,
}

/// Where the ids are kept.
#[derive(Debug)]
struct IdFile {
    path: PathBuf,
    append: File,
    lines: usize,
}

impl RecentIds {
    /// Remembers ids in memory only.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            order: VecDeque::with_capacity(capacity),
            seen: HashSet::with_capacity(capacity),
            capacity: capacity.max(1),
            file: None,
        }
    }

    /// Remembers ids in `path` too, starting from the ids already there. A file that cannot
    /// be read or written is an error naming it.
    pub(crate) fn persisted(path: &Path, capacity: usize) -> Result<Self, String> {
        let mut ids = Self::new(capacity);
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("could not read {}: {e}", path.display())),
        };
        let mut lines = 0;
        for line in text.lines() {
            lines += 1;
            if let Ok(id) = Uuid::parse_str(line.trim()) {
                ids.remember(id);
            }
        }
        let mut append = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("could not open {} to append: {e}", path.display()))?;
        if !text.is_empty() && !text.ends_with('\n') {
            // A torn last write: the next id starts on a line of its own.
            writeln!(append).map_err(|e| format!("could not write {}: {e}", path.display()))?;
        }
        ids.file = Some(IdFile {
            path: path.to_owned(),
            append,
            lines,
        });
        Ok(ids)
    }

    /// Records `id`; `false` when it was seen before. A failure to keep it on disk is logged:
    /// the id is still remembered until the worker stops.
    pub(crate) fn insert(&mut self, id: Uuid) -> bool {
        if !self.remember(id) {
            return false;
        }
        if let Some(file) = &mut self.file
            && let Err(e) = file.append(id, &self.order, self.capacity)
        {
            tracing::warn!(path = %file.path.display(), error = %e, "could not keep a handled command's id on disk; a replay after a restart would be refused only by its signature");
        }
        true
    }

    fn remember(&mut self, id: Uuid) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.order.push_back(id);
        true
    }
}

impl IdFile {
    fn append(&mut self, id: Uuid, order: &VecDeque<Uuid>, capacity: usize) -> std::io::Result<()> {
        if self.lines >= capacity.saturating_mul(2) {
            return self.rewrite(order);
        }
        writeln!(self.append, "{id}")?;
        self.lines += 1;
        Ok(())
    }

    /// Replaces the file with the ids remembered now.
    fn rewrite(&mut self, order: &VecDeque<Uuid>) -> std::io::Result<()> {
        let fresh = self.path.with_extension("new");
        let mut text = String::with_capacity(order.len() * 37);
        for id in order {
            text.push_str(&id.to_string());
            text.push('\n');
        }
        std::fs::write(&fresh, text)?;
        std::fs::rename(&fresh, &self.path)?;
        self.append = OpenOptions::new().append(true).open(&self.path)?;
        self.lines = order.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_recent_ids_and_forgets_the_oldest() {
        let mut ids = RecentIds::new(2);
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert!(ids.insert(a));
        assert!(!ids.insert(a));
        assert!(ids.insert(b));
        assert!(ids.insert(c));
        assert!(ids.insert(a), "a was forgotten when c came");
        assert!(!ids.insert(c));
    }

    #[test]
    fn ids_kept_on_disk_survive_a_restart_and_the_file_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("commands-handled");
        let all: Vec<Uuid> = (0..25).map(|_| Uuid::new_v4()).collect();
        {
            let mut ids = RecentIds::persisted(&path, 5).unwrap();
            for id in &all {
                assert!(ids.insert(*id));
            }
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(
            lines <= 10,
            "the file is rewritten at twice the capacity: {lines} lines"
        );
        // A torn last line is skipped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"0f3a")
            .unwrap();
        let mut again = RecentIds::persisted(&path, 5).unwrap();
        for id in &all[20..] {
            assert!(
                !again.insert(*id),
                "a recent id is remembered after a restart"
            );
        }
        let fresh = Uuid::new_v4();
        assert!(again.insert(fresh));
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .ends_with(&format!("\n{fresh}\n")),
            "an id after a torn line is on a line of its own"
        );
        assert!(again.insert(all[0]), "the oldest were forgotten");
    }
}
