//! [`ScratchDatabase`]: a PostgreSQL database of its own for one benchmark run, dropped after.

use anyhow::Context;
use sqlx::{Connection, Executor, PgConnection};

/// A database for one run.
pub(crate) struct ScratchDatabase {
    admin_url: String,
    name: String,
    /// Its URL.
    pub(crate) url: String,
}

impl std::fmt::Debug for ScratchDatabase {
    /// Its name only: the URLs may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchDatabase")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ScratchDatabase {
    /// Creates it with the superuser URL `admin_url`.
    pub(crate) async fn create(admin_url: &str) -> anyhow::Result<Self> {
        let name = format!(
            "manman_bench_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut admin = PgConnection::connect(admin_url)
            .await
            .context("--database-url")?;
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await?;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url, |(base, _)| base);
        Ok(Self {
            admin_url: admin_url.to_owned(),
            url: format!("{base}/{name}"),
            name,
        })
    }

    /// Drops it (and whatever is connected to it) — unless `MANMAN_BENCH_KEEP_DATABASES` is
    /// set, for reading what a run recorded (its instances' and status events' timestamps say
    /// where a start's time went); the database is named on stderr then.
    pub(crate) async fn drop_it(&self) {
        if std::env::var_os("MANMAN_BENCH_KEEP_DATABASES").is_some() {
            eprintln!("kept benchmark database {}", self.name);
            return;
        }
        if let Ok(mut admin) = PgConnection::connect(&self.admin_url).await {
            let _ = admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                )))
                .await;
        }
    }
}
