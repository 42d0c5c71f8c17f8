//! Instances: `start`, `stop`, `restart`, `kill`, `send`, `instances`, `instance show` and
//! `history`, with the cause and detail of each status.

use super::config::resolve_config;
use crate::output::{print, time};
use crate::terminal_text::escape_controls;
use crate::wait::{Goal, wait};
use anyhow::Context;
use clap::{Args, Subcommand};
use manman_core::host::StartRequest;
use manman_core::id::InstanceId;
use manman_core::instance::{Instance, InstanceFilter};
use manman_core::status::Status;
use manman_http::Client;
use serde::Serialize;
use std::time::Duration;

/// The commands about instances, at the top level of the command line (`manman start`,
/// `manman stop`, …, `manman instance show`).
#[derive(Debug, Subcommand)]
pub enum InstanceVerb {
    /// Start a game's default config (`GAME`), a named config (`GAME/CONFIG`) or a config id.
    Start {
        /// `GAME`, `GAME/CONFIG` or a config id.
        target: String,
        /// Run it on this worker.
        #[arg(long)]
        worker: Option<String>,
        /// Run it on a worker with this label, `KEY=VALUE` (repeat for more).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// `--wait` for it to be running (non-zero exit with the cause if it ends instead).
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Stop an instance gracefully.
    Stop {
        /// The instance id.
        instance: i64,
        /// `--wait` for the end (non-zero exit with the cause unless it ends complete).
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Restart an instance in place: stop it gracefully and start it again.
    Restart {
        /// The instance id.
        instance: i64,
    },
    /// Kill an instance (SIGKILL to its process group).
    Kill {
        /// The instance id.
        instance: i64,
    },
    /// Send a console line to an instance.
    Send {
        /// The instance id.
        instance: i64,
        /// The line (words are joined with spaces).
        #[arg(required = true, num_args = 1..)]
        line: Vec<String>,
    },
    /// List instances, with the cause of each one's status.
    Instances {
        /// Only this status.
        #[arg(long)]
        status: Option<Status>,
    },
    /// One instance.
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// An instance's status history: every change, its cause and detail, oldest first.
    History {
        /// The instance id.
        instance: i64,
    },
}

/// Instance subcommands.
#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Everything about an instance: status and why, exit, restarts, times, config, worker.
    Show {
        /// The instance id.
        instance: i64,
    },
}

/// `--wait` and `--timeout`, for commands that can wait for their outcome.
#[derive(Debug, Clone, Copy, Args)]
pub struct WaitArgs {
    /// Wait for the outcome; exit non-zero with the cause when it goes wrong.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this many seconds (exit non-zero; the instance goes on).
    #[arg(long, requires = "wait", value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

impl WaitArgs {
    fn timeout(self) -> Option<Duration> {
        self.timeout.map(Duration::from_secs)
    }
}

/// An instance (with the cause and detail of its current status), and for `instance show` the
/// names of its config and worker. JSON: the instance's fields, then these.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    /// The instance as the host has it.
    #[serde(flatten)]
    pub instance: Instance,
    /// `GAME/CONFIG`, when looked up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// The worker's name, when looked up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

impl InstanceView {
    /// `instance`, names not looked up.
    pub(crate) fn new(instance: Instance) -> Self {
        Self {
            instance,
            config: None,
            worker: None,
        }
    }

    /// How its last process ended: `code N`, `signal N` or nothing.
    fn exit(&self) -> Option<String> {
        match (self.instance.exit_code, self.instance.exit_signal) {
            (Some(code), _) => Some(format!("code {code}")),
            (None, Some(signal)) => Some(format!("signal {signal}")),
            (None, None) => None,
        }
    }

    /// `crashed (spawn-failed): detail; exit code 1`.
    pub(crate) fn how_it_ended(&self) -> String {
        let mut out = format!("{} ({})", self.instance.status, self.instance.cause);
        if let Some(detail) = &self.instance.detail {
            out.push_str(&format!(": {}", escape_controls(detail)));
        }
        if let Some(exit) = self.exit() {
            out.push_str(&format!("; exit {exit}"));
        }
        out
    }
}

/// Runs a command about instances.
pub(crate) async fn run(client: &Client, json: bool, command: InstanceVerb) -> anyhow::Result<()> {
    match command {
        InstanceVerb::Start {
            target,
            worker,
            labels,
            wait,
        } => start(client, json, &target, worker, &labels, wait).await,
        InstanceVerb::Stop { instance, wait } => stop(client, json, instance, wait).await,
        InstanceVerb::Restart { instance } => {
            let accepted = client.restart(InstanceId(instance)).await?;
            print(json, &accepted, || {
                format!(
                    "restarting instance {instance} (command {})",
                    accepted.command_id
                )
            })
        }
        InstanceVerb::Kill { instance } => {
            let accepted = client.kill(InstanceId(instance)).await?;
            print(json, &accepted, || {
                format!(
                    "killing instance {instance} (command {})",
                    accepted.command_id
                )
            })
        }
        InstanceVerb::Send { instance, line } => {
            let accepted = client.stdin(InstanceId(instance), &line.join(" ")).await?;
            print(json, &accepted, || {
                format!(
                    "sent to instance {instance} (command {})",
                    accepted.command_id
                )
            })
        }
        InstanceVerb::Instances { status } => list(client, json, status).await,
        InstanceVerb::Instance(InstanceCommand::Show { instance }) => {
            show(client, json, instance).await
        }
        InstanceVerb::History { instance } => history(client, json, instance).await,
    }
}

/// `manman start TARGET`.
async fn start(
    client: &Client,
    json: bool,
    target: &str,
    worker: Option<String>,
    labels: &[String],
    wait_args: WaitArgs,
) -> anyhow::Result<()> {
    let config_id = resolve_config(client, target).await?;
    let labels = labels
        .iter()
        .map(|label| {
            label
                .split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("--label {label:?}: write it as KEY=VALUE"))
        })
        .collect::<anyhow::Result<_>>()?;
    let started = client
        .start(&StartRequest {
            config_id,
            worker,
            labels,
        })
        .await?;
    let id = started.instance_id;
    if !wait_args.wait {
        return print(json, &started, || {
            format!(
                "instance {} starting on worker {} (command {})\nfollow it: manman console {}",
                id.get(),
                started.worker_id.get(),
                started.command_id,
                id.get()
            )
        });
    }
    if !json {
        eprintln!(
            "instance {} starting on worker {} (command {}); waiting for it to be running…",
            id.get(),
            started.worker_id.get(),
            started.command_id
        );
    }
    let waited = wait(client, id, Goal::Running, wait_args.timeout()).await?;
    print(json, &waited.view, || {
        format!("instance {} is running", id.get())
    })?;
    anyhow::ensure!(waited.reached, waited.failure(Goal::Running));
    Ok(())
}

/// `manman stop ID`.
async fn stop(
    client: &Client,
    json: bool,
    instance: i64,
    wait_args: WaitArgs,
) -> anyhow::Result<()> {
    let id = InstanceId(instance);
    let accepted = client.stop(id).await?;
    if !wait_args.wait {
        return print(json, &accepted, || {
            format!(
                "stopping instance {instance} (command {})",
                accepted.command_id
            )
        });
    }
    if !json {
        eprintln!(
            "stopping instance {instance} (command {}); waiting for it to end…",
            accepted.command_id
        );
    }
    let waited = wait(client, id, Goal::End, wait_args.timeout()).await?;
    print(json, &waited.view, || {
        format!("instance {instance} ended: {}", waited.view.how_it_ended())
    })?;
    anyhow::ensure!(waited.reached, waited.failure(Goal::End));
    Ok(())
}

/// `manman instances`: one line each, with the cause of its status.
async fn list(client: &Client, json: bool, status: Option<Status>) -> anyhow::Result<()> {
    let filter = InstanceFilter {
        status,
        ..InstanceFilter::default()
    };
    let views: Vec<InstanceView> = client
        .list_instances(&filter)
        .await?
        .into_iter()
        .map(InstanceView::new)
        .collect();
    print(json, &views, || {
        let mut out = format!(
            "{:<6} {:<7} {:<7} {:<13} {:<16} {}",
            "ID", "CONFIG", "WORKER", "STATUS", "CAUSE", "EXIT"
        );
        for v in &views {
            let i = &v.instance;
            out.push_str(&format!(
                "\n{:<6} {:<7} {:<7} {:<13} {:<16} {}",
                i.id.get(),
                i.config_id.get(),
                i.worker_id.get(),
                i.status.as_str(),
                i.cause.as_str(),
                v.exit().unwrap_or_default()
            ));
        }
        out
    })
}

/// `manman instance show ID`.
async fn show(client: &Client, json: bool, instance: i64) -> anyhow::Result<()> {
    let instance = client.get_instance(InstanceId(instance)).await?;
    let (config_id, worker_id) = (instance.config_id, instance.worker_id);
    let mut view = InstanceView::new(instance);
    // Names are a courtesy: a config deleted since, or a worker gone, leaves the ids.
    if let Ok(config) = client.get_config(config_id).await {
        let game = client.get_game(config.game_server_id).await.ok();
        view.config = Some(match game {
            Some(game) => format!("{}/{}", game.name, config.spec.name),
            None => config.spec.name,
        });
    }
    if let Ok(worker) = client.get_worker(worker_id).await {
        view.worker = Some(worker.name);
    }
    print(json, &view, || describe(&view))
}

/// `instance show` for people.
fn describe(view: &InstanceView) -> String {
    let i = &view.instance;
    let mut rows: Vec<(&str, String)> = vec![
        ("status", i.status.as_str().to_owned()),
        ("cause", i.cause.as_str().to_owned()),
    ];
    if let Some(detail) = &i.detail {
        rows.push(("detail", escape_controls(detail).into_owned()));
    }
    rows.push(("exit", view.exit().unwrap_or_else(|| "-".to_owned())));
    rows.push(("restarts", i.restart_count.to_string()));
    let named = |id: i64, name: &Option<String>| match name {
        Some(name) => format!("{id} ({name})"),
        None => id.to_string(),
    };
    rows.push(("config", named(i.config_id.get(), &view.config)));
    rows.push((
        "worker",
        format!(
            "{} epoch {}",
            named(i.worker_id.get(), &view.worker),
            i.worker_epoch
        ),
    ));
    rows.push(("created", time(Some(i.created_at))));
    rows.push(("started", time(i.started_at)));
    rows.push(("ready", time(i.ready_at)));
    rows.push(("ended", time(i.ended_at)));
    rows.push(("last heartbeat", time(i.last_heartbeat_at)));
    let mut out = format!("instance {}", i.id.get());
    for (key, value) in rows {
        out.push_str(&format!("\n  {:<15} {value}", format!("{key}:")));
    }
    out
}

/// `manman history ID`: every status change, oldest first.
async fn history(client: &Client, json: bool, instance: i64) -> anyhow::Result<()> {
    let id = InstanceId(instance);
    // A 404 for an unknown instance (an empty history would read as "nothing happened").
    client.get_instance(id).await?;
    let history = client.instance_history_all(id).await?;
    print(json, &history, || {
        let mut out = format!(
            "{:<23} {:<27} {:<16} {}",
            "AS OF", "STATUS", "CAUSE", "DETAIL"
        );
        for e in &history {
            let change = match e.from {
                Some(from) => format!("{} → {}", from.as_str(), e.status.as_str()),
                None => e.status.as_str().to_owned(),
            };
            out.push_str(&format!(
                "\n{:<23} {:<27} {:<16} {}",
                time(Some(e.as_of)),
                change,
                e.cause.as_str(),
                escape_controls(e.detail.as_deref().unwrap_or(""))
            ));
        }
        out
    })
}
