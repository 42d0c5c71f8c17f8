//! Running game servers as real processes: the [`TokioProcessRunner`] and the graceful
//! [`stop`] sequence.

#[cfg(feature = "process")]
mod tokio_runner;

mod stop;

pub use stop::{StopStep, Stopped, kill, stop};
#[cfg(feature = "process")]
pub use tokio_runner::{MAX_LINE_BYTES, TokioProcessRunner};
