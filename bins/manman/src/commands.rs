//! The `manman` subcommands, one module per noun of the command line. Each owns its clap
//! definition (a subcommand enum, or the arguments of a single command) and a `run` that
//! [`crate::cli::run`] calls.
//!
//! | module | commands |
//! |---|---|
//! | [`up`] | `up` |
//! | [`game`] | `game create`, `game list`, `game delete` |
//! | [`config`] | `config create`, `config update`, `config show`, `config list`, `config delete` |
//! | [`instance`] | `start`, `stop`, `restart`, `kill`, `send`, `instances`, `instance show`, `history` |
//! | [`console`] | `console` |
//! | [`command`] | `command` |
//! | [`worker`] | `workers` |
//! | [`login`] | `login` |
//! | [`watch`] | `watch` |
//! | [`token`] | `tokens create`, `tokens list`, `tokens revoke` |
//! | [`credential`] | `credentials create`, `credentials list`, `credentials revoke` |
//!
//! What several of them share lives beside them, in the crate's root: `output` (text or JSON on
//! stdout), [`crate::config_file`] (config files), `wait` (`--wait`) and `reconnect` (`watch`
//! and `console` across a host's restarts).

pub mod command;
pub mod config;
pub mod console;
pub mod credential;
pub mod game;
pub mod instance;
pub mod login;
pub mod token;
pub mod up;
pub mod watch;
pub mod worker;
