//! Instances: `start`, `stop`, `restart`, `kill`, `send`, `instances`, `instance show` and
//! `history`, with the cause and detail of each status.

use super::catalogue::resolve_config;
use super::output::{print, time};
use super::wait::{Goal, wait};
use crate::terminal_text::escape_controls;
use anyhow::Context;
use clap::{Args, Subcommand};
use manman_core::host::StartRequest;
use manman_core::id::InstanceId;
use manman_core::instance::{Instance, InstanceFilter};
use manman_core::status::Status;
use manman_http::Client;
use serde::Serialize;
use std::time::Duration;

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

/// `manman start TARGET`.
pub(crate) async fn start(
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
pub(crate) async fn stop(
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
pub(crate) async fn list(
    client: &Client,
    json: bool,
    status: Option<Status>,
) -> anyhow::Result<()> {
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
pub(crate) async fn show(client: &Client, json: bool, instance: i64) -> anyhow::Result<()> {
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
pub(crate) async fn history(client: &Client, json: bool, instance: i64) -> anyhow::Result<()> {
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
