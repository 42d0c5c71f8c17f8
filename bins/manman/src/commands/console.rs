//! `manman console ID`: an instance's console, followed across the host's restarts (resumed
//! after the last line seen, by `Last-Event-ID`), ending with how the instance ended.

use super::instance::InstanceView;
use crate::output::{ignore_closed_pipe, write_out};
use crate::reconnect::{Backoff, worth_retrying};
use crate::terminal_text::escape_controls;
use clap::Args;
use futures::StreamExt;
use manman_core::console::{ConsoleLine, ConsoleStream};
use manman_core::id::InstanceId;
use manman_http::{Client, ClientError, Followed};

/// `manman console` options.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// The instance id.
    pub instance: i64,
    /// Only lines after this number.
    #[arg(long)]
    pub after: Option<u64>,
}

/// Attaches to an instance's console: its output, live; lines typed are sent to it. When the
/// host goes away it reconnects with a growing wait (saying so on stderr) and resumes after the
/// last line shown. When the instance has ended and its console is over, a last line on stderr
/// says how it ended.
pub(crate) async fn run(client: &Client, json: bool, args: ConsoleArgs) -> anyhow::Result<()> {
    let ConsoleArgs { instance, after } = args;
    let id = InstanceId(instance);
    let mut last_seq = after;
    let mut shown = 0_u64;
    let mut backoff = Backoff::default();
    let mut reconnecting = false;
    let mut typing = None;
    loop {
        let lines = match client.console_followed(id, last_seq).await {
            Ok(lines) => lines,
            Err(e) if reconnecting && worth_retrying(&e) => {
                backoff
                    .wait(&format!("the host is not back yet ({e})"))
                    .await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if reconnecting {
            match last_seq {
                Some(seq) => eprintln!("reconnected; resuming after line {seq}"),
                None => eprintln!("reconnected"),
            }
            backoff.reset();
        }
        reconnecting = true;
        // Lines typed (or piped) go to the server's stdin; the end of input stops only that.
        typing
            .get_or_insert_with(|| AbortOnDrop(tokio::spawn(send_typed_lines(client.clone(), id))));
        let mut lines = Box::pin(lines);
        let why = loop {
            match lines.next().await {
                Some(Ok(Followed::Item { value: line, .. })) => {
                    last_seq = Some(line.seq);
                    shown += 1;
                    if let Err(e) = write_out(&console_line(&line, json)?) {
                        // The reader went away (`| head`): stop following.
                        return ignore_closed_pipe(e).map_err(Into::into);
                    }
                }
                Some(Ok(Followed::Lagged { id, missed })) => {
                    if let Some(seq) = id.and_then(|id| id.parse().ok()) {
                        last_seq = Some(seq);
                    }
                    eprintln!(
                        "{missed} console lines skipped (no longer kept, or this reader fell behind)"
                    );
                }
                // Console lines are numbered by the worker: a console is never a gap.
                Some(Ok(Followed::Gap)) => {}
                Some(Err(ClientError::Decode { detail, .. })) => {
                    eprintln!("a console line could not be read and is skipped: {detail}");
                }
                Some(Err(e)) if worth_retrying(&e) => break format!("host went away ({e})"),
                Some(Err(e)) => return Err(e.into()),
                None => match client.get_instance(id).await {
                    Ok(ended) if ended.status.is_terminal() => {
                        let view = InstanceView::new(ended);
                        if shown == 0 {
                            eprintln!("no console lines are kept for instance {instance}");
                        }
                        eprintln!("instance {instance} ended: {}", view.how_it_ended());
                        return Ok(());
                    }
                    Ok(_) => break "the console stream ended".to_owned(),
                    Err(e) if worth_retrying(&e) => break format!("host went away ({e})"),
                    Err(e) => return Err(e.into()),
                },
            }
        };
        backoff.wait(&why).await;
    }
}

/// One console line as printed: JSON, or `   seq  text` with `!` for stderr and `>` for what
/// was sent, control characters escaped (a game's line may hold escape sequences meant for
/// the terminal).
fn console_line(line: &ConsoleLine, json: bool) -> anyhow::Result<String> {
    Ok(if json {
        format!("{}\n", serde_json::to_string(line)?)
    } else {
        let marker = match line.stream {
            ConsoleStream::Stdout => " ",
            ConsoleStream::Stderr => "!",
            ConsoleStream::Stdin => ">",
        };
        format!("{:>6}{marker} {}\n", line.seq, escape_controls(&line.text))
    })
}

/// Sends each line read from stdin to an instance, until the end of input.
async fn send_typed_lines(client: Client, id: InstanceId) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Err(e) = client.stdin(id, &line).await {
            eprintln!("could not send {line:?}: {e}");
        }
    }
}

/// Aborts a task when dropped: what the console sends ends with the console.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
