//! `manman watch`: every event, one line each, following the host across its restarts.

use crate::output::{ignore_closed_pipe, write_out};
use crate::reconnect::{Backoff, worth_retrying};
use crate::terminal_text::escape_controls;
use futures::StreamExt;
use manman_core::event::Event;
use manman_http::{Client, ClientError, Followed};

/// `manman watch`: every event, one line each (JSON with `--json`); install progress as a bar.
/// When the host goes away it reconnects with a growing wait, saying so on stderr, and resumes
/// after the last event seen when the host numbers its events.
pub(crate) async fn run(client: &Client, json: bool) -> anyhow::Result<()> {
    let mut last_id: Option<String> = None;
    let mut backoff = Backoff::default();
    let mut reconnecting = false;
    loop {
        let events = match client.events_followed(last_id.as_deref()).await {
            Ok(events) => events,
            // The first connection fails plainly: a wrong host or token is said at once.
            Err(e) if reconnecting && worth_retrying(&e) => {
                backoff
                    .wait(&format!("the host is not back yet ({e})"))
                    .await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if reconnecting {
            if last_id.is_some() {
                eprintln!(
                    "reconnected to the host; resuming after event {}",
                    last_id.as_deref().unwrap_or_default()
                );
            } else {
                eprintln!("reconnected to the host; events while it was away are not shown");
            }
            backoff.reset();
        }
        reconnecting = true;
        let mut events = Box::pin(events);
        let why = loop {
            match events.next().await {
                Some(Ok(followed)) => {
                    if let Some(id) = followed.id() {
                        last_id = Some(id.to_owned());
                    }
                    let text = match followed {
                        Followed::Item { value, .. } => watch_line(&value, json)?,
                        Followed::Lagged { missed, .. } => {
                            eprintln!("{missed} events skipped: this watcher fell behind");
                            continue;
                        }
                        Followed::Gap => {
                            eprintln!(
                                "the host restarted (or lost its message bus) while this watcher \
                                 was away: events of that time are not shown"
                            );
                            continue;
                        }
                    };
                    if let Err(e) = write_out(&format!("{text}\n")) {
                        return ignore_closed_pipe(e).map_err(Into::into);
                    }
                }
                // An event this version cannot read (a newer host): said, and skipped.
                Some(Err(ClientError::Decode { detail, .. })) => {
                    eprintln!("an event could not be read and is skipped: {detail}");
                }
                Some(Err(e)) if worth_retrying(&e) => break format!("host went away ({e})"),
                Some(Err(e)) => return Err(e.into()),
                None => break "host went away (the event stream ended)".to_owned(),
            }
        };
        backoff.wait(&why).await;
    }
}

/// One event as `manman watch` prints it: JSON, or a line for people with control characters
/// escaped (details and install stages come from workers and game servers).
fn watch_line(event: &Event, json: bool) -> anyhow::Result<String> {
    Ok(if json {
        serde_json::to_string(event)?
    } else {
        escape_controls(&describe(event)).into_owned()
    })
}

/// One event as a line for people.
fn describe(event: &Event) -> String {
    match event {
        Event::Status(report) => {
            let mut line = format!(
                "{}: {} ({})",
                report.entity,
                report.status,
                report.cause.as_str()
            );
            if let Some(detail) = &report.detail {
                line.push_str(&format!(" — {detail}"));
            }
            line
        }
        Event::CommandResult(result) => format!(
            "command {}: {}{}",
            result.command_id,
            manman_core::command::CommandState::from(result.outcome).as_str(),
            result
                .detail
                .as_deref()
                .map(|d| format!(" — {d}"))
                .unwrap_or_default()
        ),
        Event::InstallProgress(report) => {
            let progress = &report.progress;
            let mut line = match progress.percent {
                Some(percent) => format!(
                    "{} installing: {} {:>5.1}% {}",
                    report.instance_id,
                    bar(percent),
                    percent,
                    progress.stage
                ),
                None => format!("{} installing: {}", report.instance_id, progress.stage),
            };
            // A retry says why (the class), which attempt failed and when the next starts.
            if let Some(detail) = &progress.detail {
                line.push_str(&format!(" — {detail}"));
            }
            line
        }
    }
}

/// A 20-cell progress bar for `percent` (0 to 100).
fn bar(percent: f64) -> String {
    let filled = ((percent.clamp(0.0, 100.0) / 5.0).round()) as usize;
    format!("[{}{}]", "#".repeat(filled), "-".repeat(20 - filled))
}

#[cfg(test)]
mod tests {
    use super::watch_line;
    use manman_core::event::{Event, StatusReport};
    use manman_core::id::InstanceId;
    use manman_core::status::{Cause, Entity, Status};

    #[test]
    fn watch_prints_control_characters_escaped_and_json_exactly() {
        let event = Event::Status(
            StatusReport::new(
                Entity::Instance(InstanceId(1)),
                Status::Crashed,
                Cause::Exited,
                chrono::Utc::now(),
            )
            .with_detail("exited: \u{1b}]0;pwned\u{7}"),
        );
        let line = watch_line(&event, false).expect("text");
        assert!(line.ends_with("exited: \\x1b]0;pwned\\x07"), "{line:?}");
        let json = watch_line(&event, true).expect("json");
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(parsed["detail"], "exited: \u{1b}]0;pwned\u{7}");
    }

    #[test]
    fn a_retry_shows_its_class_attempt_and_delay() {
        let event = Event::InstallProgress(manman_core::event::InstallProgressReport {
            instance_id: InstanceId(7),
            progress: manman_core::ports::InstallProgress {
                stage: "retrying".to_owned(),
                percent: None,
                bytes_done: None,
                bytes_total: None,
                detail: Some(
                    "network: attempt 2 of 5 failed (state 0x602); attempt 3 in 12 s".to_owned(),
                ),
            },
            reported_at: chrono::Utc::now(),
        });
        let line = watch_line(&event, false).expect("text");
        assert!(
            line.ends_with(
                "installing: retrying — network: attempt 2 of 5 failed (state 0x602); attempt 3 in 12 s"
            ),
            "{line}"
        );
    }
}
