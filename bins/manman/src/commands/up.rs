//! `manman up`: host and worker in this process, until Ctrl-C or SIGTERM.

use crate::output::write_out;
use crate::up::{self, UpOptions};
use anyhow::Context;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `manman up` options.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the API listens.
    #[arg(long, env = "MANMAN_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,
    /// The worker's install directory.
    #[arg(
        long,
        env = "MANMAN_WORKER_INSTALL_DIRECTORY",
        default_value = "./data"
    )]
    pub data_dir: PathBuf,
    /// Do not register the `demo` game.
    #[arg(long)]
    pub no_demo: bool,
    /// Most game servers the worker runs at once.
    #[arg(long, env = "MANMAN_WORKER_CAPACITY", default_value_t = 16)]
    pub capacity: u32,
    /// The SteamCMD executable for `steam` games (a bare name is looked up on PATH).
    #[arg(long, env = "MANMAN_WORKER_STEAMCMD", default_value = "steamcmd")]
    pub steamcmd: PathBuf,
    /// A Steam account configs may log in with (`steam.login = {"named": NAME}`), as
    /// `NAME=FILE` of a credential file (`username = …`, `password = …`, mode 0600), like the
    /// worker's; repeat, or comma-separated in the variable.
    #[arg(
        long = "steam-credential",
        env = "MANMAN_WORKER_STEAM_CREDENTIALS",
        value_delimiter = ',',
        value_parser = parse_named_file
    )]
    pub steam_credentials: Vec<(String, PathBuf)>,
    /// Where the host keeps its truth: `sqlite` (`<data-dir>/manman.db`, kept across restarts),
    /// `sqlite:PATH`, `memory` (gone at exit) or `postgres://…`.
    #[arg(
        long,
        env = "MANMAN_STORE",
        default_value = "sqlite",
        hide_env_values = true,
        value_parser = StoreParser
    )]
    pub store: crate::up::StoreChoice,
}

/// Parses `--store` like [`up::StoreChoice`]'s `FromStr`, but refuses without clap's usual
/// "invalid value '<the input>'", which would print a URL's password.
#[derive(Debug, Clone, Copy)]
struct StoreParser;

impl clap::builder::TypedValueParser for StoreParser {
    type Value = up::StoreChoice;

    fn parse_ref(
        &self,
        command: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let refuse = |message: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--store (MANMAN_STORE): {message}\n"),
            )
            .with_cmd(command)
        };
        let text = value.to_str().ok_or_else(|| {
            refuse("is not UTF-8: use memory, sqlite, sqlite:PATH or postgres://…".to_owned())
        })?;
        text.parse()
            .map_err(|e: manman_core::backend_url::BackendUrlError| refuse(e.to_string()))
    }
}

/// `NAME=FILE`, both not empty.
fn parse_named_file(text: &str) -> Result<(String, PathBuf), String> {
    text.split_once('=')
        .filter(|(name, path)| !name.is_empty() && !path.is_empty())
        .map(|(name, path)| (name.to_owned(), PathBuf::from(path)))
        .ok_or_else(|| format!("{text:?} is not NAME=FILE"))
}

/// Runs `manman up` until a signal stops it.
pub(crate) async fn run(args: UpArgs) -> anyhow::Result<()> {
    let demo_executable = if args.no_demo {
        None
    } else {
        Some(
            std::env::current_exe()
                .context("could not find the manman executable for the demo game")?,
        )
    };
    let kept = match &args.store {
        up::StoreChoice::Memory => "Everything is in memory (gone at exit)".to_owned(),
        up::StoreChoice::Sqlite(path) => format!(
            "Data is kept in {}",
            path.clone()
                .unwrap_or_else(|| args.data_dir.join("manman.db"))
                .display()
        ),
        up::StoreChoice::Postgres(_) => "Data is kept in PostgreSQL".to_owned(),
    };
    let running = up::start(UpOptions {
        bind: args.bind,
        data_dir: args.data_dir,
        demo_executable,
        worker_name: "local".to_owned(),
        capacity: args.capacity,
        steamcmd: args.steamcmd,
        steam_credentials: args.steam_credentials,
        store: args.store,
    })
    .await?;
    let url = format!("http://{}", running.addr);
    let host_flag = if running.addr.to_string() == "127.0.0.1:8000" {
        String::new()
    } else {
        format!(" --host {url}")
    };
    let mut banner = format!(
        "ManMan is up: API at {url}/api/v1 (health: {url}/healthz)\n\
         {kept}; Ctrl-C stops the game servers and exits.\n"
    );
    let admin = &running.admin;
    if admin.created {
        banner.push_str(&format!(
            "\nAn admin token was created and saved in {} (the `manman` command line reads it \
             from there when run in this directory, and sends it to this host only; elsewhere \
             pass --token or MANMAN_TOKEN):\n\
             \x20 {}\n",
            admin.file.display(),
            admin.token
        ));
    } else {
        banner.push_str(&format!(
            "\nThe admin token is kept in {}.\n",
            admin.file.display()
        ));
    }
    if !args.no_demo {
        banner.push_str(&format!(
            "\nTry it from another terminal:\n\
             \x20 manman{host_flag} start demo              # starts the fake game server, prints its instance id\n\
             \x20 manman{host_flag} send 1 hello world      # a console line to instance 1\n\
             \x20 manman{host_flag} console 1               # follow its console (Ctrl-C to detach)\n\
             \x20 manman{host_flag} stop 1                  # stop it gracefully\n\
             (from a checkout, `manman` is `cargo run -p manman --`)\n"
        ));
    }
    // Whoever reads our output may go away (`manman up | head -1`): the system keeps running.
    let _ = write_out(&banner);
    let (shutdown, kill) = (running.shutdown_token(), running.kill_token());
    tokio::spawn(async move {
        manman_core::shutdown::shutdown_signal().await;
        eprintln!("shutting down: stopping game servers (again to kill them at once)…");
        shutdown.cancel();
        manman_core::shutdown::shutdown_signal().await;
        eprintln!("killing game servers…");
        kill.cancel();
    });
    running.wait().await
}
