#![doc = include_str!("../README.md")]

mod redact;

pub use redact::redact_url_passwords;

use std::fmt;
use std::str::FromStr;

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: one line per event, coloured when stderr is a terminal.
    #[default]
    Text,
    /// For collectors: one JSON object per line, with the span fields (request ids, command ids).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("{other:?} is not a log format: use text or json")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// lapin logs every message the broker returns (no queue bound for it) at `warn`, its whole
/// body with it — a command's stdin line, a console line. ManMan reports a returned message
/// itself, by id and without its body (`BusError::Unroutable`), so lapin's is quieted unless
/// `RUST_LOG` names it.
const QUIETED: &str = "lapin::returned_messages=error";

/// The filter of `RUST_LOG` (`rust_log`) or else `default_filter`, with [`QUIETED`] unless
/// `RUST_LOG` names its target.
fn filter(rust_log: Option<&str>, default_filter: &str) -> tracing_subscriber::EnvFilter {
    let chosen = rust_log
        .and_then(|text| tracing_subscriber::EnvFilter::try_new(text).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default_filter));
    let names_it = rust_log.is_some_and(|text| text.contains("lapin::returned_messages"));
    match QUIETED.parse() {
        Ok(directive) if !names_it => chosen.add_directive(directive),
        _ => chosen,
    }
}

/// Sends `tracing` events to stderr in `format`, filtered by `RUST_LOG` or else
/// `default_filter` (e.g. `info`). Call once, first thing in `main`; later calls do nothing.
pub fn init(format: LogFormat, default_filter: &str) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = filter(rust_log.as_deref(), default_filter);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    // Already installed (a test, or an embedding program): keep theirs.
    drop(installed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lapin_returned_messages_are_quieted_unless_named() {
        for rust_log in [None, Some("warn"), Some("debug,lapin=info")] {
            let text = filter(rust_log, "info").to_string();
            assert!(
                text.contains("lapin::returned_messages=error"),
                "{rust_log:?}: {text}"
            );
        }
        let named = filter(Some("warn,lapin::returned_messages=warn"), "info").to_string();
        assert!(!named.contains("returned_messages=error"), "{named}");
        assert!(named.contains("lapin::returned_messages=warn"), "{named}");
    }

    #[test]
    fn formats_parse_and_name_themselves() {
        for format in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(format.to_string().parse::<LogFormat>(), Ok(format));
        }
        let error = "yaml".parse::<LogFormat>().unwrap_err();
        assert!(error.contains("text or json"), "{error}");
    }
}
