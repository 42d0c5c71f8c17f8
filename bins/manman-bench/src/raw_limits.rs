//! The raw limits an end-to-end figure is read against, measured in the same run: a confirmed
//! request → reply through RabbitMQ with raw lapin, and one committed INSERT on PostgreSQL.

use crate::report::{Figure, Target};
use crate::scenarios::Settings;
use crate::scratch_database::ScratchDatabase;
use anyhow::Context;
use manman_test_support::amqp::TestBroker;
use sqlx::{Connection, Executor, PgConnection};
use std::time::Instant;

/// Samples of each limit per run.
const SAMPLES: usize = 1_000;

/// The limits' figures over the runs.
pub(crate) struct RawLimits {
    lapin_p50: Figure,
    commit_p50: Figure,
}

impl RawLimits {
    /// How they are measured, for a section's method.
    pub(crate) const METHOD: &str = "raw lapin, a request published persistent and `mandatory` \
        with its confirm awaited, consumed with a manual ack and answered the same way (one \
        broker round trip each way, as a command and its answer); raw sqlx, a single-row INSERT \
        committed on its own (as the smallest write the host makes). Each is the median of \
        1,000 one after another.";

    /// No values yet.
    pub(crate) fn figures() -> Self {
        Self {
            lapin_p50: Figure::new(
                "raw limit: lapin confirmed request → reply, p50",
                "ms",
                Target::None,
            ),
            commit_p50: Figure::new(
                "raw limit: PostgreSQL committed INSERT, p50",
                "ms",
                Target::None,
            ),
        }
    }

    /// Measures both once more.
    pub(crate) async fn measure(&mut self, settings: &Settings) -> anyhow::Result<()> {
        let broker = TestBroker::connect("bench-raw")
            .await
            .context("the raw limits need RabbitMQ: set MANMAN_TEST_AMQP_URL")?;
        let round_trips = crate::scenarios::raw_round_trips(&broker, SAMPLES)
            .await
            .map_err(|e| anyhow::anyhow!("raw lapin round trips: {e}"))?;
        let _ = broker.cleanup().await;
        self.lapin_p50
            .values
            .push(round_trips[round_trips.len() / 2].as_secs_f64() * 1000.0);
        let admin_url = settings.database_url.as_deref().context(
            "the raw limits need PostgreSQL: pass --database-url or set MANMAN_TEST_DATABASE_URL",
        )?;
        let database = ScratchDatabase::create(admin_url).await?;
        let commits = commit_latencies(&database.url).await;
        database.drop_it().await;
        let mut commits = commits?;
        commits.sort_by(f64::total_cmp);
        self.commit_p50.values.push(commits[commits.len() / 2]);
        Ok(())
    }

    /// The figures, for a section.
    pub(crate) fn into_vec(self) -> Vec<Figure> {
        vec![self.lapin_p50, self.commit_p50]
    }
}

/// Milliseconds each of [`SAMPLES`] single-row INSERTs took, each committed on its own.
async fn commit_latencies(url: &str) -> anyhow::Result<Vec<f64>> {
    let mut connection = PgConnection::connect(url).await?;
    connection
        .execute("CREATE TABLE bench_commits (id bigint PRIMARY KEY, at timestamptz NOT NULL)")
        .await?;
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let started = Instant::now();
        sqlx::query("INSERT INTO bench_commits (id, at) VALUES ($1, now())")
            .bind(i64::try_from(i)?)
            .execute(&mut connection)
            .await?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    connection.close().await?;
    Ok(samples)
}
