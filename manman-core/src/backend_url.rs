//! Where ManMan keeps its truth and how it reaches its workers, as the operator writes them:
//! [`StoreUrl`] (`postgres://…`, `sqlite:PATH`, `memory://`) and [`BusUrl`] (`amqp://…`,
//! `amqps://…`, `memory://`), parsed by one set of rules for the host, the worker and
//! `manman up`. A refusal quotes only the scheme — a URL may hold a password — and says what
//! is accepted. `Debug` hides the URLs.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where the host keeps its truth.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// In memory: gone at exit (`memory://`, or `memory`).
    Memory,
    /// A SQLite file: `sqlite:PATH` (`sqlite://PATH`, `sqlite:///ABSOLUTE`); `sqlite` alone is
    /// the default file of whoever opens it (`manman up`: `<data dir>/manman.db`).
    Sqlite(Option<PathBuf>),
    /// A PostgreSQL server: `postgres://…` or `postgresql://…`, as written.
    Postgres(String),
}

/// How the host reaches its workers.
#[derive(Clone, PartialEq, Eq)]
pub enum BusUrl {
    /// In memory: this process only (`memory://`, or `memory`).
    Memory,
    /// RabbitMQ: `amqp://…` or `amqps://…`, as written.
    Amqp(String),
}

/// A backend URL that is not one this build knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is not {what} this build knows: use {accepted}")]
pub struct BackendUrlError {
    /// Its scheme (or the whole text, when it has no `://`).
    pub given: String,
    /// `a store` or `a message bus`.
    pub what: &'static str,
    /// The forms accepted.
    pub accepted: &'static str,
}

impl BackendUrlError {
    fn new(url: &str, what: &'static str, accepted: &'static str) -> Self {
        let given = url.split_once("://").map_or(url, |(scheme, _)| scheme);
        Self {
            given: given.to_owned(),
            what,
            accepted,
        }
    }
}

fn is_memory(url: &str) -> bool {
    matches!(url, "memory" | "memory://")
}

impl FromStr for StoreUrl {
    type Err = BackendUrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        if is_memory(url) {
            return Ok(Self::Memory);
        }
        if url == "sqlite" {
            return Ok(Self::Sqlite(None));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        match url.strip_prefix("sqlite:") {
            Some(path) if !path.trim_start_matches("//").is_empty() => Ok(Self::Sqlite(Some(
                PathBuf::from(path.trim_start_matches("//")),
            ))),
            _ => Err(BackendUrlError::new(
                url,
                "a store",
                "postgres://…, sqlite:PATH or memory://",
            )),
        }
    }
}

impl FromStr for BusUrl {
    type Err = BackendUrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        if is_memory(url) {
            return Ok(Self::Memory);
        }
        if url.starts_with("amqp://") || url.starts_with("amqps://") {
            return Ok(Self::Amqp(url.to_owned()));
        }
        Err(BackendUrlError::new(
            url,
            "a message bus",
            "amqp://…, amqps://… or memory:// (one process only)",
        ))
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Self::Postgres(_) => f.write_str("Postgres(postgres://…)"),
        }
    }
}

impl fmt::Debug for BusUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Amqp(_) => f.write_str("Amqp(amqp://…)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_are_read_by_one_set_of_rules() {
        assert_eq!("memory://".parse(), Ok(StoreUrl::Memory));
        assert_eq!("memory".parse(), Ok(StoreUrl::Memory));
        assert_eq!("sqlite".parse(), Ok(StoreUrl::Sqlite(None)));
        assert_eq!(
            "sqlite:data/m.db".parse(),
            Ok(StoreUrl::Sqlite(Some("data/m.db".into())))
        );
        assert_eq!(
            "sqlite:///var/lib/m.db".parse(),
            Ok(StoreUrl::Sqlite(Some("/var/lib/m.db".into())))
        );
        let pg = "postgresql://u:secret@db/x";
        assert_eq!(pg.parse(), Ok(StoreUrl::Postgres(pg.to_owned())));
        assert!(!format!("{:?}", StoreUrl::Postgres(pg.to_owned())).contains("secret"));
        for bad in [
            "sqlite:",
            "mysql://u:secret@db/x",
            "postgress://u:secret@db",
        ] {
            let refused = bad.parse::<StoreUrl>().unwrap_err().to_string();
            assert!(!refused.contains("secret"), "{refused}");
            assert!(
                refused.contains("postgres://…, sqlite:PATH or memory://"),
                "{refused}"
            );
        }
    }

    #[test]
    fn buses_are_read_by_one_set_of_rules() {
        assert_eq!("memory://".parse(), Ok(BusUrl::Memory));
        let amqp = "amqps://guest:guest@mq/%2f";
        assert_eq!(amqp.parse(), Ok(BusUrl::Amqp(amqp.to_owned())));
        let refused = "nats://u:secret@x".parse::<BusUrl>().unwrap_err();
        assert_eq!(refused.given, "nats");
        assert!(!refused.to_string().contains("secret"));
    }
}
