#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod catalogue;
mod commands;
mod console_tails;
mod credentials;
mod error;
mod instances;
mod settings;
mod status;
mod status_batch;
mod store;
mod workers;

pub use error::ConnectError;
pub use settings::PgSettings;
pub use store::{MIGRATOR, PgStore};
