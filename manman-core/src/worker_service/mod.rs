//! The worker service: registers with the host, heartbeats, takes commands from its queue and
//! runs one supervisor per instance.

mod console_log;
mod console_sink;
mod console_tail;
mod dedup;
mod directories;
mod install_progress;
mod installer_by_type;
mod launch;
mod leftovers;
mod local_installer;
mod log_retention;
mod process_records;
mod recent_ends;
mod reporter;
mod restart_policy;
mod server_user;
mod service;
#[cfg(test)]
mod slow_confirms;
mod supervisor;

pub use console_log::LogRotation;
pub use installer_by_type::InstallerByType;
pub use launch::{INHERITED_ENV, LaunchError, ServerEnvironment, process_spec};
pub use local_installer::LocalInstaller;
pub use log_retention::LogRetention;
pub use server_user::{
    DEFAULT_SERVER_USER, check_reachable, hand_over, keep_private, lookup as lookup_server_user,
    running_as_root, server_user,
};
pub use service::{OnShutdown, WorkerError, WorkerExit, WorkerService, WorkerSettings};
