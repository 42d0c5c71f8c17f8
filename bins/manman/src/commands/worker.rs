//! `manman workers`: the workers the host knows, with their status and capacity.

use crate::output::print;
use manman_http::Client;

/// Lists workers.
pub(crate) async fn run(client: &Client, json: bool) -> anyhow::Result<()> {
    let workers = client.list_workers().await?;
    print(json, &workers, || {
        let mut out = format!(
            "{:<6} {:<20} {:<6} {:<13} {}",
            "ID", "NAME", "EPOCH", "STATUS", "CAPACITY"
        );
        for w in &workers {
            out.push_str(&format!(
                "\n{:<6} {:<20} {:<6} {:<13} {}",
                w.id.get(),
                w.name,
                w.epoch,
                w.status.as_str(),
                w.capacity
            ));
        }
        out
    })
}
