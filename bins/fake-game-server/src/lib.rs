#![doc = include_str!("../README.md")]

use std::io::Write;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// How the fake server behaves, from its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Wait this long before printing the ready line.
    pub ready_delay: Duration,
    /// The ready line.
    pub ready_line: String,
    /// Keep running on SIGTERM (to test the escalation to SIGKILL).
    pub ignore_sigterm: bool,
    /// Exit by itself this long after start (to test crash policies).
    pub exit_after: Option<Duration>,
    /// The code of that exit.
    pub exit_code: i32,
    /// Print this many numbered lines a second, steadily, from the start (for load tests).
    pub lines_per_sec: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ready_delay: Duration::ZERO,
            ready_line: "Server is ready".to_owned(),
            ignore_sigterm: false,
            exit_after: None,
            exit_code: 0,
            lines_per_sec: None,
        }
    }
}

/// The usage text.
pub const USAGE: &str = "\
fake-game-server: a fake game server for ManMan's tests and demo

options:
  --ready-delay-ms N   print the ready line after N milliseconds (default 0)
  --ready-line TEXT    the ready line (default \"Server is ready\")
  --ignore-sigterm     keep running on SIGTERM
  --exit-after-ms N    exit by itself after N milliseconds
  --exit-code C        the code of that exit (default 0)
  --lines-per-sec N    print N numbered lines a second (`output N: …`), from the start

console (stdin) commands:
  quit                 exit 0
  crash N              exit with code N
  flood N              print N numbered lines at once
  stderr TEXT          print TEXT on stderr
  spawn-child          start a `sleep` child in the same process group and print its pid
  whoami               print its uid, gid and supplementary groups
  read PATH            try to read PATH; print how many bytes, or why not
  env NAME             print the variable NAME of its environment
  anything else        printed back as `echo: <line>`";

impl Options {
    /// Parses the options; the error says which argument was wrong.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut options = Self::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--ready-delay-ms" => {
                    let value = args.next().ok_or("--ready-delay-ms needs a number")?;
                    let ms: u64 = value.parse().map_err(|_| {
                        format!("--ready-delay-ms: {value:?} is not a number of milliseconds")
                    })?;
                    options.ready_delay = Duration::from_millis(ms);
                }
                "--ready-line" => {
                    options.ready_line = args.next().ok_or("--ready-line needs a text")?;
                }
                "--ignore-sigterm" => options.ignore_sigterm = true,
                "--exit-after-ms" => {
                    let value = args.next().ok_or("--exit-after-ms needs a number")?;
                    let ms: u64 = value.parse().map_err(|_| {
                        format!("--exit-after-ms: {value:?} is not a number of milliseconds")
                    })?;
                    options.exit_after = Some(Duration::from_millis(ms));
                }
                "--exit-code" => {
                    let value = args.next().ok_or("--exit-code needs a number")?;
                    options.exit_code = value
                        .parse()
                        .map_err(|_| format!("--exit-code: {value:?} is not a number"))?;
                }
                "--lines-per-sec" => {
                    let value = args.next().ok_or("--lines-per-sec needs a number")?;
                    let rate: u32 = value.parse().map_err(|_| {
                        format!("--lines-per-sec: {value:?} is not a number of lines")
                    })?;
                    options.lines_per_sec = Some(rate);
                }
                other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
            }
        }
        Ok(options)
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs the fake server; returns its exit code.
pub fn run(args: impl IntoIterator<Item = String>) -> i32 {
    let options = match Options::parse(args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("fake-game-server: no runtime: {e}");
            return 1;
        }
    };
    let code = runtime.block_on(serve(options));
    // The stdin reader sits in a blocking read on its own thread: do not wait for it.
    runtime.shutdown_background();
    code
}

async fn serve(options: Options) -> i32 {
    say(&format!(
        "Starting fake game server (pid {})",
        std::process::id()
    ));
    if options.ignore_sigterm {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terms) => {
                tokio::spawn(async move {
                    while terms.recv().await.is_some() {
                        say("Ignoring SIGTERM");
                    }
                });
            }
            Err(e) => eprintln!("could not ignore SIGTERM: {e}"),
        }
    }
    if let Some(rate) = options.lines_per_sec {
        tokio::spawn(print_steadily(rate));
    }
    let ready_line = options.ready_line.clone();
    let delay = options.ready_delay;
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        say(&ready_line);
    });
    let exit_after = async {
        match options.exit_after {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(exit_after);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = tokio::select! {
            () = &mut exit_after => {
                say(&format!("Exiting by itself with code {}", options.exit_code));
                return options.exit_code;
            }
            line = lines.next_line() => match line {
                Ok(Some(line)) => line,
                // stdin closed: keep running like a real server, until a signal ends it.
                Ok(None) | Err(_) => {
                    (&mut exit_after).await;
                    return options.exit_code;
                }
            },
        };
        if let Some(code) = command(line.trim()) {
            return code;
        }
    }
}

/// Prints `rate` numbered lines a second for ever, a few at a time (every 10 ms), catching up
/// when it was held up.
async fn print_steadily(rate: u32) {
    let start = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let mut printed: u64 = 0;
    loop {
        ticker.tick().await;
        let due = (start.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        if printed >= due {
            continue;
        }
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        while printed < due {
            printed += 1;
            let _ = writeln!(
                out,
                "output {printed}: a line of about the length a game server prints, 80 bytes"
            );
        }
        let _ = out.flush();
    }
}

/// Handles one console line; `Some(code)` to exit.
fn command(line: &str) -> Option<i32> {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    match word {
        "quit" => {
            say("Shutting down");
            Some(0)
        }
        "crash" => {
            let code = rest.trim().parse().unwrap_or(1);
            eprintln!("Crashing with exit code {code}");
            Some(code)
        }
        "flood" => {
            let count: u64 = rest.trim().parse().unwrap_or(0);
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for i in 1..=count {
                let _ = writeln!(out, "flood {i}");
            }
            let _ = out.flush();
            None
        }
        "stderr" => {
            eprintln!("{rest}");
            None
        }
        "spawn-child" => {
            match std::process::Command::new("sleep").arg("1000").spawn() {
                Ok(child) => say(&format!("child {}", child.id())),
                Err(e) => eprintln!("could not spawn a child: {e}"),
            }
            None
        }
        "whoami" => {
            say(&whoami());
            None
        }
        "read" => {
            let path = rest.trim();
            match std::fs::read(path) {
                Ok(bytes) => say(&format!("read {path}: {} bytes", bytes.len())),
                Err(e) => say(&format!("read {path}: failed: {e}")),
            }
            None
        }
        "env" => {
            let name = rest.trim();
            match std::env::var(name) {
                Ok(value) => say(&format!("env {name}={value}")),
                Err(_) => say(&format!("env {name} is not set")),
            }
            None
        }
        _ => {
            say(&format!("echo: {line}"));
            None
        }
    }
}

/// `uid <real> gid <real> groups <supplementary…>`, from `/proc/self/status`.
fn whoami() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|rest| rest.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    format!(
        "uid {} gid {} groups [{}]",
        field("Uid:").first().unwrap_or(&"?"),
        field("Gid:").first().unwrap_or(&"?"),
        field("Groups:").join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_refuse_unknown_arguments() {
        let o = Options::parse([
            "--ready-delay-ms".to_owned(),
            "250".to_owned(),
            "--ignore-sigterm".to_owned(),
            "--lines-per-sec".to_owned(),
            "1000".to_owned(),
        ])
        .unwrap();
        assert_eq!(o.ready_delay, Duration::from_millis(250));
        assert!(o.ignore_sigterm);
        assert_eq!(o.lines_per_sec, Some(1000));
        assert!(
            Options::parse(["--bogus".to_owned()])
                .unwrap_err()
                .contains("--bogus")
        );
        assert!(Options::parse(["--ready-delay-ms".to_owned(), "x".to_owned()]).is_err());
    }

    #[test]
    fn console_commands() {
        assert_eq!(command("quit"), Some(0));
        assert_eq!(command("crash 3"), Some(3));
        assert_eq!(command("say hello"), None);
        assert_eq!(command("whoami"), None);
        assert!(whoami().starts_with("uid "), "{}", whoami());
        assert_eq!(command("read /nonexistent"), None);
    }
}
