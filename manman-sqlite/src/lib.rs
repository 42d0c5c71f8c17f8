#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod catalogue;
mod commands;
mod console_tails;
mod credentials;
mod error;
mod file_kind;
mod instances;
mod references;
mod settings;
mod status;
mod status_batch;
mod store;
mod timestamp;
mod workers;

pub use error::OpenError;
pub use settings::SqliteSettings;
pub use store::{MIGRATOR, SqliteStore};
