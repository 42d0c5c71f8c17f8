//! The worker service: registers with the host, heartbeats, takes commands from its queue and
//! runs one supervisor per instance.

mod dedup;
mod launch;
mod local_installer;
mod reporter;
mod service;
mod supervisor;

pub use launch::{expand_env_value, process_spec};
pub use local_installer::LocalInstaller;
pub use service::{WorkerError, WorkerExit, WorkerService, WorkerSettings};
