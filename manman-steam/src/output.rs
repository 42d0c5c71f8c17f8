//! SteamCMD output, line by line, as typed events.
//!
//! SteamCMD prints prompts (`password: `, `Two-factor code:`) without a line ending, so the
//! next message lands on the same line; every pattern is searched anywhere in a line, and one
//! line can carry several events. Some messages only mean something after the one before: the
//! current SteamCMD prints `Logging in user '…' [U:1:0] to Steam Public...` on one line and
//! the verdict (`password: FAILED (Invalid Password)`, `FAILED with result code 84`, `OK`) on
//! the next, so an [`OutputParser`] remembers that a login is under way.

use crate::error::ErrorClass;
use regex::Regex;
use std::sync::LazyLock;

/// Something SteamCMD reported.
#[derive(Debug, Clone, PartialEq)]
pub enum SteamEvent {
    /// SteamCMD is updating itself: `[ 45%] Downloading update (…)`, `[----] Applying
    /// update...`. (`[  0%] Checking for available updates...` and `[----] Verifying
    /// installation...`, printed at every start, are not updates.)
    SelfUpdate {
        /// Percent, when the line has one.
        percent: Option<f64>,
    },
    /// The login went through: `Logged in OK`, `… to Steam Public...OK`, `Waiting for
    /// confirmation...OK` (approved in the Steam Mobile app), `Waiting for user info...OK`.
    LoggedIn,
    /// SteamCMD asks for something about Steam Guard.
    GuardPrompt {
        /// A code prompt, a mobile confirmation, or a notice.
        kind: GuardPromptKind,
        /// The prompt's words as SteamCMD printed them.
        prompt: String,
    },
    /// ` Update state (0x61) downloading, progress: 45.12 (1234567 / 2734567)` (or `45,12`
    /// under a locale with a decimal comma).
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

/// What a Steam Guard prompt asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardPromptKind {
    /// A code typed in: `Steam Guard code:` (e-mail) or `Two-factor code:` (authenticator).
    /// SteamCMD then waits on its input; a prompt the worker has no code for ends the run.
    Code,
    /// `Please confirm the login in the Steam Mobile app on your phone.`: SteamCMD waits
    /// until someone approves the login on their phone (`Waiting for confirmation...OK`).
    MobileConfirmation,
    /// An explanation before a prompt (`This computer has not been authenticated for your
    /// account using Steam Guard.`, `Enter the current code from your Steam Guard Mobile
    /// Authenticator app`).
    Notice,
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

// The percent has a decimal point or, under a locale such as de_DE (SteamCMD follows `LANG`
// / `LC_ALL`), a decimal comma; the byte counts have neither.
regex!(
    PROGRESS,
    r"Update state \((0x[0-9A-Fa-f]+)\) ([^,]+), progress: ([0-9]+(?:[.,][0-9]+)?) \(([0-9]+) / ([0-9]+)\)"
);
regex!(
    STATE_ERROR,
    r"(?i)Error! (?:App '([0-9]+)' )?state is (?:is )?(0x[0-9A-Fa-f]+) after update job"
);
regex!(
    FAILED_INSTALL,
    r"(?i)ERROR! Failed to install app '([0-9]+)' \(([^)]*)\)"
);
regex!(
    SUCCESS,
    r"Success! App '([0-9]+)' (?:fully installed|already up to date)"
);
regex!(SELF_UPDATE, r"^\[(?:\s*([0-9]+)%|----)\]\s*(.*)$");
regex!(
    LOGIN_FAILED,
    r"(?:(?:FAILED|ERROR) ?\(([^)]+)\)|FAILED(?: login)? with result code ([^.]+)|Login Failure: (.+))"
);
regex!(
    BETA_PASSWORD,
    r"(?i)Password check for AppId [0-9]+ returned error"
);
regex!(MISSING_REQUIRED_APP, r"(?i)missing required app");

/// Code prompts: SteamCMD waits on its input after each.
const CODE_PROMPTS: [&str; 2] = ["Steam Guard code:", "Two-factor code:"];
const MOBILE_PROMPTS: [&str; 1] = ["confirm the login in the Steam Mobile app"];
const GUARD_NOTICES: [&str; 2] = [
    "Steam Guard Mobile Authenticator",
    "not been authenticated for your account using Steam Guard",
];

/// The events of one line, read without what came before; empty when the line means nothing
/// to the installer (banners, notices, anything unknown: the installer keeps those for the
/// error report). A login verdict printed on a line of its own (today's SteamCMD) needs an
/// [`OutputParser`].
pub fn parse_line(line: &str) -> Vec<SteamEvent> {
    OutputParser::default().line(line)
}

/// Reads SteamCMD's output line after line, remembering what a line means for the next one
/// (a login under way).
#[derive(Debug, Clone, Default)]
pub struct OutputParser {
    /// `Logging in user …` / `Connecting anonymously …` was printed without its verdict.
    login_pending: bool,
    /// The app whose manifest SteamCMD said it misses (`missing required app`): a state
    /// 0x202 that follows is about that, not the disk.
    missing_required_app: bool,
}

impl OutputParser {
    /// The events of the next line.
    pub fn line(&mut self, line: &str) -> Vec<SteamEvent> {
        let mut events = Vec::new();
        if let Some(c) = PROGRESS.captures(line) {
            if let (Some(state), Ok(percent), Ok(bytes_done), Ok(bytes_total)) = (
                parse_hex(&c[1]),
                c[3].replace(',', ".").parse(),
                c[4].parse(),
                c[5].parse(),
            ) {
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
            if is_self_update(&c[2]) {
                events.push(SteamEvent::SelfUpdate {
                    percent: c.get(1).and_then(|p| p.as_str().parse().ok()),
                });
            }
            return events;
        }
        if MISSING_REQUIRED_APP.is_match(line) {
            self.missing_required_app = true;
        }
        if let Some(prompt) = guard_prompt(line) {
            events.push(prompt);
        }
        let login_line = is_login_line(line);
        if self.is_logged_in(line) {
            self.login_pending = false;
            events.push(SteamEvent::LoggedIn);
        }
        if let Some(c) = SUCCESS.captures(line)
            && let Ok(app_id) = c[1].parse()
        {
            events.push(SteamEvent::Success { app_id });
        }
        if let Some(error) = self.parse_error(line, login_line) {
            events.push(error);
        } else if login_line && !events.contains(&SteamEvent::LoggedIn) {
            // `Logging in user '…' to Steam Public...`: the verdict comes on a later line.
            self.login_pending = true;
        }
        events
    }

    fn is_logged_in(&self, line: &str) -> bool {
        let trimmed = line.trim_end();
        trimmed.contains("Logged in OK")
            || (trimmed.contains("Steam Public") && trimmed.ends_with("...OK"))
            || trimmed.ends_with("Waiting for confirmation...OK")
            || trimmed.ends_with("Waiting for user info...OK")
            || (self.login_pending && (trimmed == "OK" || trimmed.ends_with(": OK")))
    }

    fn parse_error(&mut self, line: &str, login_line: bool) -> Option<SteamEvent> {
        let error = |class, state, message: &str| {
            Some(SteamEvent::Error {
                class,
                state,
                message: message.trim().to_owned(),
            })
        };
        if let Some(c) = STATE_ERROR.captures(line) {
            let state = parse_hex(&c[2]);
            let class = match state {
                // After SteamCMD said it misses a required app, 0x202 is about that app.
                Some(0x202) if self.missing_required_app => ErrorClass::MissingRequiredApp,
                _ => state
                    .and_then(ErrorClass::from_state_code)
                    .unwrap_or(ErrorClass::Unknown),
            };
            return error(class, state, &c[0]);
        }
        if let Some(c) = FAILED_INSTALL.captures(line) {
            return error(install_failure_class(&c[2]), None, &c[0]);
        }
        if let Some(m) = BETA_PASSWORD.find(line) {
            return error(ErrorClass::BetaPassword, None, &line[m.start()..]);
        }
        if (login_line || self.login_pending)
            && let Some(c) = LOGIN_FAILED.captures(line)
        {
            self.login_pending = false;
            let class = match (c.get(1).or(c.get(3)), c.get(2)) {
                (_, Some(code)) => result_code_class(code.as_str().trim()),
                (Some(reason), None) => login_failure_class(reason.as_str().trim()),
                (None, None) => ErrorClass::LoginFailed,
            };
            let start = line
                .find("Logging in")
                .unwrap_or(c.get(0).map_or(0, |m| m.start()));
            return error(class, None, &line[start..]);
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
}

/// A `[…]` line that is SteamCMD really updating itself (not the check every start prints).
fn is_self_update(text: &str) -> bool {
    [
        "Downloading update",
        "Download Complete",
        "Applying update",
        "Extracting package",
        "Installing update",
        "Cleaning up",
        "Update complete",
    ]
    .iter()
    .any(|marker| text.contains(marker))
}

fn guard_prompt(line: &str) -> Option<SteamEvent> {
    let found = |kind, marker: &str| {
        let start = line.find(marker).unwrap_or(0);
        Some(SteamEvent::GuardPrompt {
            kind,
            prompt: line[start..start + marker.len()].trim().to_owned(),
        })
    };
    if let Some(marker) = CODE_PROMPTS.iter().find(|p| line.contains(*p)) {
        return found(GuardPromptKind::Code, marker);
    }
    if MOBILE_PROMPTS.iter().any(|p| line.contains(p)) {
        return Some(SteamEvent::GuardPrompt {
            kind: GuardPromptKind::MobileConfirmation,
            prompt: line.trim().to_owned(),
        });
    }
    if GUARD_NOTICES.iter().any(|p| line.contains(p)) {
        return Some(SteamEvent::GuardPrompt {
            kind: GuardPromptKind::Notice,
            prompt: line.trim().to_owned(),
        });
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
    if r.contains("rate limit") || r.contains("throttle") {
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
    } else if let Some(code) = r
        .strip_prefix("result code")
        .or_else(|| r.strip_prefix("error"))
    {
        result_code_class(code.trim())
    } else {
        ErrorClass::LoginFailed
    }
}

/// The class of a login's numeric result (Steam's `EResult`), as in `FAILED with result code
/// 84`; a name (`Rate Limit Exceeded`) is read like a reason.
fn result_code_class(code: &str) -> ErrorClass {
    let Ok(number) = code.parse::<u32>() else {
        return login_failure_class(code);
    };
    match number {
        // NoConnection, Timeout, ServiceUnavailable, TryAnotherCM.
        3 | 16 | 20 | 48 => ErrorClass::Network,
        // AccountLogonDenied (e-mail code), InvalidLoginAuthCode, ExpiredLoginAuthCode,
        // AccountLoginDeniedNeedTwoFactor, TwoFactorCodeMismatch.
        63 | 65 | 71 | 85 | 88 => ErrorClass::SteamGuard,
        // RateLimitExceeded, AccountLoginDeniedThrottle.
        84 | 87 => ErrorClass::RateLimited,
        // InvalidPassword, AccountNotFound, AccountDisabled, AccountLockedDown, and any other
        // refusal: a login that will not pass as it is.
        _ => ErrorClass::LoginFailed,
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

    fn guard(kind: GuardPromptKind, prompt: &str) -> SteamEvent {
        SteamEvent::GuardPrompt {
            kind,
            prompt: prompt.to_owned(),
        }
    }

    #[test]
    fn guard_prompts_even_when_merged_with_the_next_message() {
        assert_eq!(
            parse_line("Two-factor code:Logged in OK"),
            [
                guard(GuardPromptKind::Code, "Two-factor code:"),
                SteamEvent::LoggedIn
            ]
        );
        assert_eq!(
            parse_line("Steam Guard code:"),
            [guard(GuardPromptKind::Code, "Steam Guard code:")]
        );
        assert_eq!(
            parse_line("Enter the current code from your Steam Guard Mobile Authenticator app"),
            [guard(
                GuardPromptKind::Notice,
                "Enter the current code from your Steam Guard Mobile Authenticator app"
            )]
        );
        assert_eq!(
            parse_line("Please confirm the login in the Steam Mobile app on your phone."),
            [guard(
                GuardPromptKind::MobileConfirmation,
                "Please confirm the login in the Steam Mobile app on your phone."
            )]
        );
        let merged = parse_line(
            "Two-factor code:Logging in user 'ops' [U:1:0] to Steam Public...FAILED (Two-factor code mismatch)",
        );
        assert_eq!(merged[0], guard(GuardPromptKind::Code, "Two-factor code:"));
        assert!(matches!(
            &merged[1],
            SteamEvent::Error { class: ErrorClass::SteamGuard, message, .. }
                if message.starts_with("Logging in user 'ops'")
        ));
    }

    fn classes(lines: &[&str]) -> Vec<ErrorClass> {
        let mut parser = OutputParser::default();
        lines
            .iter()
            .flat_map(|line| parser.line(line))
            .filter_map(|e| match e {
                SteamEvent::Error { class, .. } => Some(class),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn todays_login_verdict_on_its_own_line() {
        // game-ci/steam-deploy#62 and issue 17: the verdict follows the login line.
        for (verdict, class) in [
            (
                "password: FAILED (Invalid Password)",
                ErrorClass::LoginFailed,
            ),
            ("FAILED with result code 5", ErrorClass::LoginFailed),
            ("FAILED with result code 84", ErrorClass::RateLimited),
            ("FAILED with result code 63", ErrorClass::SteamGuard),
            ("FAILED (Rate Limit Exceeded)", ErrorClass::RateLimited),
            (
                "Login Failure: Account Logon Denied",
                ErrorClass::SteamGuard,
            ),
        ] {
            assert_eq!(
                classes(&["Logging in user 'ops' [U:1:0] to Steam Public...", verdict]),
                [class],
                "{verdict}"
            );
        }
        // Without a login under way, a bare FAILED line is nobody's verdict.
        assert_eq!(classes(&["FAILED (Invalid Password)"]), []);
        let mut parser = OutputParser::default();
        assert!(
            parser
                .line("Logging in user 'ops' [U:1:0] to Steam Public...")
                .is_empty()
        );
        assert_eq!(parser.line("OK"), [SteamEvent::LoggedIn]);
    }

    #[test]
    fn a_login_approved_in_the_mobile_app_is_a_login() {
        let mut parser = OutputParser::default();
        let events: Vec<_> = [
            "Logging in user 'ops' [U:1:0] to Steam Public...",
            "Please confirm the login in the Steam Mobile app on your phone.",
            "",
            "Waiting for confirmation...",
            "Waiting for confirmation...OK",
            "Waiting for client config...OK",
        ]
        .iter()
        .flat_map(|l| parser.line(l))
        .collect();
        assert!(events.contains(&SteamEvent::LoggedIn), "{events:?}");
        assert!(!events.iter().any(|e| matches!(e, SteamEvent::Error { .. })));
    }

    #[test]
    fn decimal_comma_progress() {
        let events =
            parse_line(" Update state (0x61) downloading, progress: 0,02 (1034 / 4871720)");
        let [SteamEvent::Progress(p)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert!((p.percent - 0.02).abs() < 1e-9);
        assert_eq!((p.bytes_done, p.bytes_total), (1034, 4_871_720));
    }

    #[test]
    fn only_a_real_self_update_is_one() {
        assert_eq!(parse_line("[  0%] Checking for available updates..."), []);
        assert_eq!(parse_line("[----] Verifying installation..."), []);
        assert_eq!(
            parse_line("[ 27%] Downloading update (5,278 of 10,335 KB)..."),
            [SteamEvent::SelfUpdate {
                percent: Some(27.0)
            }]
        );
        assert_eq!(
            parse_line("[----] Applying update..."),
            [SteamEvent::SelfUpdate { percent: None }]
        );
    }

    #[test]
    fn states_and_a_missing_required_app() {
        for (code, class) in [
            ("0x2", ErrorClass::ContentUnavailable),
            ("0x6", ErrorClass::UpdateStuck),
            ("0x206", ErrorClass::UpdateStuck),
            ("0x406", ErrorClass::Network),
        ] {
            let line = format!("Error! App '896660' state is {code} after update job.");
            assert_eq!(class_of(&line), class, "{line}");
        }
        assert_eq!(
            classes(&[
                "src/clientdll/appinfocache.cpp (1502) : Assertion Failed: missing required app 1007",
                "Error! App '896660' state is 0x202 after update job.",
            ]),
            [ErrorClass::MissingRequiredApp]
        );
    }
}
