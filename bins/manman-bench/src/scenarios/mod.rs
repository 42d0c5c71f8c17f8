//! The benchmark scenarios.

mod api_reads;
mod burst;
mod bus_round_trip;
mod command_latency;
mod console_fanout;
mod history_cost;
mod shim;
mod status_ingest;
mod worker_scale;

use crate::report::Section;

pub(crate) use bus_round_trip::raw_round_trips;

/// A named scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// HTTP start → running, stdin → answer and stop → complete, end to end, on each deployment.
    #[value(name = "command-latency")]
    CommandLatency,
    /// Bursts of starts and stops through the API, on each deployment.
    #[value(name = "burst")]
    Burst,
    /// One worker supervising many fake game servers.
    #[value(name = "worker-1000")]
    Worker1000,
    /// Status events persisted per second on PostgreSQL.
    #[value(name = "status-ingest")]
    StatusIngest,
    /// Command round trip and confirmed event throughput on RabbitMQ.
    #[value(name = "bus-round-trip")]
    BusRoundTrip,
    /// The host's read API on PostgreSQL under concurrent load.
    #[value(name = "api-reads")]
    ApiReads,
    /// Host memory with hundreds of console watchers over HTTP of one busy instance.
    #[value(name = "console-fanout")]
    ConsoleFanout,
    /// Start and heartbeat with 100,000 ended instances in the store beside an empty one.
    #[value(name = "history-cost")]
    HistoryCost,
    /// The memory and stdin latency a `manman-shim` adds per server, beside a direct child.
    #[value(name = "shim")]
    Shim,
}

/// Settings shared by the scenarios.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) runs: usize,
    pub(crate) servers: usize,
    pub(crate) idle_secs: u64,
    pub(crate) events: usize,
    pub(crate) database_url: Option<String>,
    pub(crate) round_trips: usize,
    pub(crate) events_per_round: usize,
    pub(crate) api_requests: usize,
    pub(crate) latency_rounds: usize,
    pub(crate) fanout_watchers: usize,
    pub(crate) fanout_secs: u64,
    pub(crate) ended_instances: usize,
    pub(crate) burst: usize,
}

impl Scenario {
    pub(crate) fn all() -> &'static [Self] {
        &[
            Self::CommandLatency,
            Self::Burst,
            Self::Worker1000,
            Self::StatusIngest,
            Self::BusRoundTrip,
            Self::ApiReads,
            Self::ConsoleFanout,
            Self::HistoryCost,
            Self::Shim,
        ]
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::CommandLatency => "command-latency",
            Self::Burst => "burst",
            Self::Worker1000 => "worker-1000",
            Self::StatusIngest => "status-ingest",
            Self::BusRoundTrip => "bus-round-trip",
            Self::ApiReads => "api-reads",
            Self::ConsoleFanout => "console-fanout",
            Self::HistoryCost => "history-cost",
            Self::Shim => "shim",
        }
    }

    pub(crate) async fn run(self, settings: &Settings) -> anyhow::Result<Section> {
        match self {
            Self::CommandLatency => command_latency::run(settings).await,
            Self::Burst => burst::run(settings).await,
            Self::Worker1000 => worker_scale::run(settings).await,
            Self::StatusIngest => status_ingest::run(settings).await,
            Self::BusRoundTrip => bus_round_trip::run(settings).await,
            Self::ApiReads => api_reads::run(settings).await,
            Self::ConsoleFanout => console_fanout::run(settings).await,
            Self::HistoryCost => history_cost::run(settings).await,
            Self::Shim => shim::run(settings).await,
        }
    }
}
