//! The `manman` command line as a library: `manman up` (host and worker in one process) and the
//! client subcommands. `main.rs` only parses and dispatches.

pub mod cli;
pub mod demo;
pub mod up;
