//! What the command line prints on stdout: text for people, or JSON with `--json`; a reader
//! that goes away (`manman … | head`) ends the output quietly.

use serde::Serialize;

/// Writes to stdout; a reader that went away is an error to the caller, never a panic.
pub(crate) fn write_out(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Prints `value` as pretty JSON with `json`, else the text `text` makes; then a newline.
pub(crate) fn print<T: Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    let mut output = if json {
        serde_json::to_string_pretty(value)?
    } else {
        text()
    };
    output.push('\n');
    write_out(&output).or_else(ignore_closed_pipe)?;
    Ok(())
}

/// A closed pipe (`manman … | head`) ends the output quietly.
pub(crate) fn ignore_closed_pipe(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e)
    }
}

/// A time as the text output shows it (UTC, to the second), or `-`.
pub(crate) fn time(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map_or_else(
        || "-".to_owned(),
        |at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}
