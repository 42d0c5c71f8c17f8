#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
// `unsafe` is confined to `process::os` (spawning a child): every other module is declared
// `#[forbid(unsafe_code)]`, which nothing inside it can relax (checked by a test in that module).

#[forbid(unsafe_code)]
pub mod auth;
#[forbid(unsafe_code)]
pub mod backend_url;
#[forbid(unsafe_code)]
pub mod bus;
#[forbid(unsafe_code)]
pub mod command;
#[forbid(unsafe_code)]
pub mod config;
#[forbid(unsafe_code)]
pub mod confined_path;
#[forbid(unsafe_code)]
pub mod console;
#[forbid(unsafe_code)]
pub mod event;
#[forbid(unsafe_code)]
pub mod game_env;
#[forbid(unsafe_code)]
pub mod game_server;
#[forbid(unsafe_code)]
pub mod host;
#[forbid(unsafe_code)]
pub mod id;
#[forbid(unsafe_code)]
pub mod instance;
#[forbid(unsafe_code)]
#[cfg(feature = "memory")]
pub mod memory;
#[forbid(unsafe_code)]
pub mod ports;
pub mod process;
#[forbid(unsafe_code)]
pub mod shutdown;
#[forbid(unsafe_code)]
pub mod signing;
#[forbid(unsafe_code)]
pub mod sql_sets;
#[forbid(unsafe_code)]
pub mod status;
#[forbid(unsafe_code)]
pub mod store;
#[forbid(unsafe_code)]
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[forbid(unsafe_code)]
pub mod topology;
#[forbid(unsafe_code)]
pub mod unknown_name;
#[forbid(unsafe_code)]
pub mod validation;
#[forbid(unsafe_code)]
pub mod worker;
#[forbid(unsafe_code)]
pub mod worker_service;
