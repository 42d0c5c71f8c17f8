//! The routes of spec §4, one file per resource.

pub(crate) mod catalogue;
pub(crate) mod commands;
pub(crate) mod console;
pub(crate) mod dead_letters;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod instances;
pub(crate) mod metrics;
pub(crate) mod tokens;
pub(crate) mod worker_api;
pub(crate) mod worker_credentials;
pub(crate) mod workers;
