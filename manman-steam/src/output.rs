//! SteamCMD output, line by line, as typed events.
//!
//! SteamCMD prints prompts (`password: `, `Two-factor code:`) without a line ending, so the
//! next message lands on the same line; every pattern is searched anywhere in a line, and one
//! line can carry several events.

use crate::error::ErrorClass;
use regex::Regex;
use std::sync::LazyLock;

/// Something SteamCMD reported.
#[derive(Debug, Clone, PartialEq)]
pub enum SteamEvent {
    /// SteamCMD is updating itself: `[ 45%] Downloading update (…)`, `[----] Verifying
    /// installation...`.
    SelfUpdate {
        /// Percent, when the line has one.
        percent: Option<f64>,
    },
    /// The login went through: `Logged in OK`, `… to Steam Public...OK`.
    LoggedIn,
    /// SteamCMD asks for a Steam Guard or two-factor code, or for a confirmation in the Steam
    /// mobile app.
    GuardPrompt,
    /// ` Update state (0x61) downloading, progress: 45.12 (1234567 / 2734567)`.
    Progress(UpdateProgress),
    /// `Success! App '896660' fully installed.` or `… already up to date.`
    Success {
        /// The app.
        app_id: u32,
    },
    /// A failure SteamCMD reported.
    Error {
        /// Its class.
        class: ErrorClass,
        /// The app state code, for `Error! App '…' state is 0x… after update job.`
        state: Option<u32>,
        /// The line (or its relevant part).
        message: String,
    },
}

/// An `Update state` line.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateProgress {
    /// The state code, e.g. `0x61`.
    pub state: u32,
    /// SteamCMD's name for it, e.g. `downloading`, `verifying install`, `committing`.
    pub state_name: String,
    /// Percent done, 0 to 100.
    pub percent: f64,
    /// Bytes done.
    pub bytes_done: u64,
    /// Bytes in all.
    pub bytes_total: u64,
}

impl UpdateProgress {
    /// A short stage name for a progress bar: the first word of the state name
    /// (`downloading`, `verifying`, `committing`, `preallocating`, `reconfiguring`, …).
    pub fn stage(&self) -> &str {
        self.state_name
            .split_whitespace()
            .next()
            .unwrap_or("updating")
    }
}

macro_rules! regex {
    ($name:ident, $re:expr) => {
        static $name: LazyLock<Regex> =
            LazyLock::new(|| Regex::new($re).expect("a valid built-in regex"));
    };
}

regex!(
    PROGRESS,
    r"Update state \((0x[0-9A-Fa-f]+)\) ([^,]+), progress: ([0-9]+(?:\.[0-9]+)?) \(([0-9]+) / ([0-9]+)\)"
);
regex!(
    STATE_ERROR,
    r"(?i)Error! App '([0-9]+)' state is (0x[0-9A-Fa-f]+) after update job"
);
regex!(
    FAILED_INSTALL,
    r"(?i)ERROR! Failed to install app '([0-9]+)' \(([^)]*)\)"
);
regex!(
    SUCCESS,
    r"Success! App '([0-9]+)' (?:fully installed|already up to date)"
);
regex!(SELF_UPDATE, r"^\[(?:\s*([0-9]+)%|----)\]");
regex!(
    LOGIN_FAILED,
    r"(?:(?:FAILED|ERROR) ?\(([^)]+)\)|FAILED login with result code ([^.]+)|Login Failure: (.+))"
);
regex!(
    BETA_PASSWORD,
    r"(?i)Password check for AppId [0-9]+ returned error"
);

const GUARD_PROMPTS: [&str; 5] = [
    "Steam Guard code:",
    "Two-factor code:",
    "Steam Guard Mobile Authenticator",
    "confirm the login in the Steam Mobile app",
    "not been authenticated for your account using Steam Guard",
];

/// The events of one line; empty when the line means nothing to the installer (banners,
/// notices, anything unknown: the installer keeps those for the error report).
pub fn parse_line(line: &str) -> Vec<SteamEvent> {
    let mut events = Vec::new();
    if let Some(c) = PROGRESS.captures(line) {
        if let (Some(state), Ok(percent), Ok(bytes_done), Ok(bytes_total)) =
            (parse_hex(&c[1]), c[3].parse(), c[4].parse(), c[5].parse())
        {
            events.push(SteamEvent::Progress(UpdateProgress {
                state,
                state_name: c[2].trim().to_owned(),
                percent,
                bytes_done,
                bytes_total,
            }));
        }
        return events;
    }
    if let Some(c) = SELF_UPDATE.captures(line) {
        events.push(SteamEvent::SelfUpdate {
            percent: c.get(1).and_then(|p| p.as_str().parse().ok()),
        });
        return events;
    }
    if GUARD_PROMPTS.iter().any(|p| line.contains(p)) {
        events.push(SteamEvent::GuardPrompt);
    }
    if line.contains("Logged in OK") || (line.contains("Steam Public") && line.ends_with("...OK")) {
        events.push(SteamEvent::LoggedIn);
    }
    if let Some(c) = SUCCESS.captures(line)
        && let Ok(app_id) = c[1].parse()
    {
        events.push(SteamEvent::Success { app_id });
    }
    if let Some(error) = parse_error(line) {
        events.push(error);
    }
    events
}

fn parse_error(line: &str) -> Option<SteamEvent> {
    let error = |class, state, message: &str| {
        Some(SteamEvent::Error {
            class,
            state,
            message: message.trim().to_owned(),
        })
    };
    if let Some(c) = STATE_ERROR.captures(line) {
        let state = parse_hex(&c[2]);
        let class = state
            .and_then(ErrorClass::from_state_code)
            .unwrap_or(ErrorClass::Unknown);
        return error(class, state, &c[0]);
    }
    if let Some(c) = FAILED_INSTALL.captures(line) {
        return error(install_failure_class(&c[2]), None, &c[0]);
    }
    if let Some(m) = BETA_PASSWORD.find(line) {
        return error(ErrorClass::BetaPassword, None, &line[m.start()..]);
    }
    if is_login_line(line)
        && let Some(c) = LOGIN_FAILED.captures(line)
    {
        let reason = c
            .get(1)
            .or_else(|| c.get(2))
            .or_else(|| c.get(3))
            .map_or("", |m| m.as_str().trim());
        let start = line
            .find("Logging in")
            .unwrap_or(c.get(0).map_or(0, |m| m.start()));
        return error(login_failure_class(reason), None, &line[start..]);
    }
    if line.contains("Rate Limit Exceeded") {
        return error(ErrorClass::RateLimited, None, line);
    }
    if line.contains("No subscription") {
        return error(ErrorClass::NoLicense, None, line);
    }
    if line.contains("Missing configuration") {
        return error(ErrorClass::MissingConfiguration, None, line);
    }
    let trimmed = line.trim_start();
    if trimmed.starts_with("ERROR!") || trimmed.starts_with("Error!") {
        return error(ErrorClass::Unknown, None, trimmed);
    }
    None
}

fn is_login_line(line: &str) -> bool {
    [
        "Logging in",
        "Steam Public",
        "FAILED login",
        "Login Failure",
    ]
    .iter()
    .any(|marker| line.contains(marker))
}

/// The class of the reason in `ERROR! Failed to install app '…' (<reason>)`.
fn install_failure_class(reason: &str) -> ErrorClass {
    let r = reason.to_ascii_lowercase();
    if r.contains("no subscription") {
        ErrorClass::NoLicense
    } else if r.contains("missing configuration") {
        ErrorClass::MissingConfiguration
    } else if r.contains("invalid platform") {
        ErrorClass::InvalidPlatform
    } else if r.contains("disk write") {
        ErrorClass::DiskWrite
    } else if r.contains("disk space") {
        ErrorClass::DiskFull
    } else if r.contains("rate limit") {
        ErrorClass::RateLimited
    } else if r.contains("timeout") || r.contains("no connection") || r.contains("unavailable") {
        ErrorClass::Network
    } else {
        ErrorClass::Unknown
    }
}

/// The class of the reason in `Logging in user '…' to Steam Public...FAILED (<reason>)`.
fn login_failure_class(reason: &str) -> ErrorClass {
    let r = reason.to_ascii_lowercase();
    if r.contains("rate limit") {
        ErrorClass::RateLimited
    } else if [
        "two-factor",
        "two factor",
        "auth code",
        "logon denied",
        "login denied",
        "guard",
    ]
    .iter()
    .any(|k| r.contains(k))
    {
        ErrorClass::SteamGuard
    } else if [
        "no connection",
        "unavailable",
        "timeout",
        "try another cm",
        "connect",
    ]
    .iter()
    .any(|k| r.contains(k))
    {
        ErrorClass::Network
    } else {
        ErrorClass::LoginFailed
    }
}

fn parse_hex(text: &str) -> Option<u32> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))?;
    u32::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_of(line: &str) -> ErrorClass {
        parse_line(line)
            .into_iter()
            .find_map(|e| match e {
                SteamEvent::Error { class, .. } => Some(class),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no error recognised in {line:?}"))
    }

    #[test]
    fn progress_lines() {
        let events =
            parse_line(" Update state (0x61) downloading, progress: 45.12 (1234567 / 2734567)");
        let [SteamEvent::Progress(p)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(p.state, 0x61);
        assert_eq!(p.state_name, "downloading");
        assert_eq!(p.stage(), "downloading");
        assert!((p.percent - 45.12).abs() < 1e-9);
        assert_eq!((p.bytes_done, p.bytes_total), (1_234_567, 2_734_567));
        let events =
            parse_line(" Update state (0x5) verifying install, progress: 3.27 (1234 / 37701)");
        let [SteamEvent::Progress(p)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!((p.state, p.stage()), (0x5, "verifying"));
        assert_eq!(p.state_name, "verifying install");
    }

    #[test]
    fn success_lines() {
        assert_eq!(
            parse_line("Success! App '896660' fully installed."),
            [SteamEvent::Success { app_id: 896660 }]
        );
        assert_eq!(
            parse_line("Success! App '740' already up to date."),
            [SteamEvent::Success { app_id: 740 }]
        );
    }

    #[test]
    fn banner_lines_are_recognised_or_ignored() {
        assert_eq!(
            parse_line("[  0%] Checking for available updates..."),
            [SteamEvent::SelfUpdate { percent: Some(0.0) }]
        );
        assert_eq!(
            parse_line("[----] Verifying installation..."),
            [SteamEvent::SelfUpdate { percent: None }]
        );
        assert_eq!(
            parse_line("Connecting anonymously to Steam Public...OK"),
            [SteamEvent::LoggedIn]
        );
        assert_eq!(
            parse_line("Connecting anonymously to Steam Public...Logged in OK"),
            [SteamEvent::LoggedIn]
        );
        assert_eq!(
            parse_line("Logging in user 'ops' [U:1:0] to Steam Public...OK"),
            [SteamEvent::LoggedIn]
        );
        for quiet in [
            "Redirecting stderr to '/root/Steam/logs/stderr.txt'",
            "Steam Console Client (c) Valve Corporation - version 1716584859",
            "-- type 'quit' to exit --",
            "Loading Steam API...OK",
            "Waiting for user info...OK",
            "Unloading Steam API...OK",
            "",
        ] {
            assert_eq!(parse_line(quiet), [], "{quiet}");
        }
    }

    #[test]
    fn disk_full_from_state_codes() {
        assert_eq!(
            parse_line("Error! App '896660' state is 0x202 after update job."),
            [SteamEvent::Error {
                class: ErrorClass::DiskFull,
                state: Some(0x202),
                message: "Error! App '896660' state is 0x202 after update job".into(),
            }]
        );
        assert_eq!(
            class_of("Error! App '896660' state is 0x212 after update job."),
            ErrorClass::DiskFull
        );
    }

    #[test]
    fn transient_state_codes() {
        for (code, class) in [
            ("0x402", ErrorClass::Network),
            ("0x602", ErrorClass::Network),
            ("0x606", ErrorClass::DiskWrite),
            ("0x626", ErrorClass::CorruptFiles),
            ("0x6A6", ErrorClass::CorruptFiles),
            ("0x6a6", ErrorClass::CorruptFiles),
            ("0x10E2", ErrorClass::Unknown),
        ] {
            let line = format!("Error! App '896660' state is {code} after update job.");
            assert_eq!(class_of(&line), class, "{line}");
        }
    }

    #[test]
    fn failed_install_reasons() {
        for (line, class) in [
            (
                "ERROR! Failed to install app '427520' (No subscription)",
                ErrorClass::NoLicense,
            ),
            (
                "ERROR! Failed to install app '4020' (Missing configuration)",
                ErrorClass::MissingConfiguration,
            ),
            (
                "ERROR! Failed to install app '896660' (Invalid platform)",
                ErrorClass::InvalidPlatform,
            ),
            (
                "ERROR! Failed to install app '896660' (Disk write failure)",
                ErrorClass::DiskWrite,
            ),
            (
                "ERROR! Failed to install app '896660' (Something new)",
                ErrorClass::Unknown,
            ),
        ] {
            assert_eq!(class_of(line), class, "{line}");
        }
    }

    #[test]
    fn login_failures() {
        for (line, class) in [
            (
                "Logging in user 'ops' [U:1:0] to Steam Public...FAILED (Invalid Password)",
                ErrorClass::LoginFailed,
            ),
            (
                "password: Logging in user 'ops' to Steam Public...FAILED (Invalid Password)",
                ErrorClass::LoginFailed,
            ),
            ("Login Failure: Invalid Password", ErrorClass::LoginFailed),
            (
                "Logging in user 'ops' to Steam Public...FAILED (Two-factor code mismatch)",
                ErrorClass::SteamGuard,
            ),
            (
                "Logging in user 'ops' to Steam Public...FAILED (Account Logon Denied)",
                ErrorClass::SteamGuard,
            ),
            (
                "Logging in user 'ops' to Steam Public...FAILED (Invalid Login Auth Code)",
                ErrorClass::SteamGuard,
            ),
            (
                "Logging in user 'Andymantium' to Steam Public...FAILED (Rate Limit Exceeded)",
                ErrorClass::RateLimited,
            ),
            (
                "Logging in user xxxxxxxx to Steam Public...ERROR (Rate Limit Exceeded)",
                ErrorClass::RateLimited,
            ),
            (
                "FAILED login with result code Rate Limit Exceeded",
                ErrorClass::RateLimited,
            ),
            (
                "Connecting anonymously to Steam Public...FAILED (No Connection)",
                ErrorClass::Network,
            ),
        ] {
            assert_eq!(class_of(line), class, "{line}");
        }
    }

    #[test]
    fn beta_password_and_other_errors() {
        assert_eq!(
            class_of("ERROR! Password check for AppId 730 returned error Failure."),
            ErrorClass::BetaPassword
        );
        assert_eq!(class_of("ERROR! Not logged on."), ErrorClass::Unknown);
    }

    #[test]
    fn guard_prompts_even_when_merged_with_the_next_message() {
        assert_eq!(
            parse_line("Two-factor code:Logged in OK"),
            [SteamEvent::GuardPrompt, SteamEvent::LoggedIn]
        );
        assert_eq!(parse_line("Steam Guard code:"), [SteamEvent::GuardPrompt]);
        assert_eq!(
            parse_line("Enter the current code from your Steam Guard Mobile Authenticator app"),
            [SteamEvent::GuardPrompt]
        );
        assert_eq!(
            parse_line("Please confirm the login in the Steam Mobile app on your phone."),
            [SteamEvent::GuardPrompt]
        );
        let merged = parse_line(
            "Two-factor code:Logging in user 'ops' [U:1:0] to Steam Public...FAILED (Two-factor code mismatch)",
        );
        assert_eq!(merged[0], SteamEvent::GuardPrompt);
        assert!(matches!(
            &merged[1],
            SteamEvent::Error { class: ErrorClass::SteamGuard, message, .. }
                if message.starts_with("Logging in user 'ops'")
        ));
    }
}
