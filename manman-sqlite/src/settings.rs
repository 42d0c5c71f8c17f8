//! [`SqliteSettings`]: which file, how many readers, how long to wait.

use crate::error::OpenError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The path that means "an in-memory database" (SQLite's own spelling).
const MEMORY: &str = ":memory:";

/// The URL of an in-memory database.
const MEMORY_URL: &str = "sqlite::memory:";

/// Where the database is and how the store uses it. Build with [`SqliteSettings::new`] (a file),
/// [`SqliteSettings::memory`] (throwaway) or [`SqliteSettings::from_url`] (`sqlite:` URLs).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteSettings {
    /// The database file, e.g. `./data/manman.db`; `:memory:` (or `sqlite::memory:`) for a
    /// throwaway database.
    pub path: PathBuf,
    /// Connections for reads, used side by side (WAL lets them read while the writer writes).
    /// An in-memory database has no readers: its one connection does everything.
    pub readers: u32,
    /// How long a statement waits for a lock another process holds on the file before it
    /// gives up with `Unavailable`.
    pub busy_timeout: Duration,
    /// Longest wait for a connection (the writer, or a reader); then the store answers
    /// `Unavailable`.
    pub acquire_timeout: Duration,
    /// Create the file, and its directory, when they do not exist.
    pub create_if_missing: bool,
}

impl SqliteSettings {
    /// A database file, with the defaults: 4 readers, a 5 s busy timeout, 5 s to get a
    /// connection, the file and its directory created when missing.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            readers: 4,
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            create_if_missing: true,
        }
    }

    /// A throwaway database in memory: gone when the store is dropped.
    pub fn memory() -> Self {
        Self::new(MEMORY)
    }

    /// From a URL: `sqlite::memory:`, `sqlite:data/manman.db` or `sqlite://data/manman.db`
    /// (relative to the working directory), `sqlite:///var/lib/manman/manman.db` (absolute).
    /// Query parameters are not accepted: the store chooses its own options.
    pub fn from_url(url: &str) -> Result<Self, OpenError> {
        let invalid = |why: &str| OpenError::Url {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        if url == MEMORY_URL {
            return Ok(Self::memory());
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| invalid("it does not start with `sqlite:`"))?;
        if path.is_empty() {
            return Err(invalid("it names no file"));
        }
        if path.contains('?') {
            return Err(invalid(
                "query parameters are not accepted: give the path only",
            ));
        }
        Ok(Self::new(path))
    }

    /// With `n` reader connections (at least one).
    pub fn readers(mut self, n: u32) -> Self {
        self.readers = n.max(1);
        self
    }

    /// With this wait for a lock held by another process.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// With this wait for a free connection.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Whether a missing file (and directory) is created.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// Whether this is the throwaway in-memory database: the path is `:memory:` (or the URL
    /// `sqlite::memory:`, so it never becomes a file of that name).
    pub fn is_memory(&self) -> bool {
        self.path == Path::new(MEMORY) || self.path == Path::new(MEMORY_URL)
    }

    /// The location as a person reads it: the path, or `sqlite::memory:`.
    pub(crate) fn display(&self) -> String {
        if self.is_memory() {
            MEMORY_URL.to_owned()
        } else {
            self.path.display().to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_file_or_memory() {
        assert!(
            SqliteSettings::from_url("sqlite::memory:")
                .unwrap()
                .is_memory()
        );
        for (url, path) in [
            ("sqlite:data/manman.db", "data/manman.db"),
            ("sqlite://data/manman.db", "data/manman.db"),
            ("sqlite:///var/lib/manman.db", "/var/lib/manman.db"),
            ("sqlite:/var/lib/manman.db", "/var/lib/manman.db"),
        ] {
            let settings = SqliteSettings::from_url(url).unwrap();
            assert_eq!(settings.path, Path::new(path), "{url}");
            assert!(!settings.is_memory());
        }
        for bad in [
            "postgres://db/x",
            "sqlite:",
            "sqlite://",
            "sqlite:x.db?mode=ro",
        ] {
            let err = SqliteSettings::from_url(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn defaults_are_documented_values() {
        let s = SqliteSettings::new("x.db");
        assert_eq!(s.readers, 4);
        assert_eq!(s.busy_timeout, Duration::from_secs(5));
        assert_eq!(s.acquire_timeout, Duration::from_secs(5));
        assert!(s.create_if_missing);
        assert_eq!(SqliteSettings::memory().display(), "sqlite::memory:");
        assert_eq!(SqliteSettings::new("a/b.db").readers(0).readers, 1);
    }
}
