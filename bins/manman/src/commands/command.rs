//! `manman command ID`: a command's record (what was sent to which worker, and how it went).

use crate::output::print;
use clap::Args;
use manman_http::Client;
use uuid::Uuid;

/// `manman command` options.
#[derive(Debug, Args)]
pub struct CommandArgs {
    /// The command id.
    pub id: Uuid,
}

/// Shows a command's record.
pub(crate) async fn run(client: &Client, json: bool, args: CommandArgs) -> anyhow::Result<()> {
    let record = client.get_command(args.id).await?;
    print(json, &record, || {
        format!(
            "command {} ({}) to worker {}: {}{}",
            record.id,
            record.envelope.command.name(),
            record.worker_id.get(),
            record.state,
            record
                .detail
                .as_deref()
                .map(|d| format!(" — {d}"))
                .unwrap_or_default()
        )
    })
}
