//! The worker service: registers with the host, heartbeats, takes commands from its queue and
//! runs one supervisor per instance.

mod console_log;
mod console_sink;
mod dedup;
mod install_progress;
mod installer_by_type;
mod launch;
mod local_installer;
mod log_retention;
mod process_records;
mod reporter;
mod restart_policy;
mod service;
mod supervisor;

pub use console_log::LogRotation;
pub use installer_by_type::InstallerByType;
pub use launch::{INHERITED_ENV, expand_env_value, process_spec};
pub use local_installer::LocalInstaller;
pub use log_retention::LogRetention;
pub use service::{WorkerError, WorkerExit, WorkerService, WorkerSettings};
