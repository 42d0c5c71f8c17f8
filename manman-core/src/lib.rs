#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
pub mod backend_url;
pub mod bus;
pub mod command;
pub mod config;
pub mod confined_path;
pub mod console;
pub mod event;
pub mod game_env;
pub mod game_server;
pub mod host;
pub mod id;
pub mod instance;
#[cfg(feature = "memory")]
pub mod memory;
pub mod ports;
pub mod process;
pub mod shutdown;
pub mod signing;
pub mod sql_sets;
pub mod status;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod topology;
pub mod unknown_name;
pub mod validation;
pub mod worker;
pub mod worker_service;
