//! The benchmark scenarios.

mod worker_scale;

use crate::report::Section;

/// A named scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// One worker supervising many fake game servers.
    #[value(name = "worker-1000")]
    Worker1000,
}

/// Settings shared by the scenarios.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) runs: usize,
    pub(crate) servers: usize,
    pub(crate) idle_secs: u64,
}

impl Scenario {
    pub(crate) fn all() -> &'static [Self] {
        &[Self::Worker1000]
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Worker1000 => "worker-1000",
        }
    }

    pub(crate) async fn run(self, settings: &Settings) -> anyhow::Result<Section> {
        match self {
            Self::Worker1000 => worker_scale::run(settings).await,
        }
    }
}
