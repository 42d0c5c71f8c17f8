//! [`Secret`]: a password or code that never shows in `Debug`, `Display`, logs or errors.

use crate::credentials::CredentialError;
use std::borrow::Cow;
use std::fmt;
use std::path::Path;

/// What a [`Secret`] prints instead of its value.
pub const REDACTED: &str = "[redacted]";

/// A secret string: a Steam password, a Steam Guard code, a beta-branch password.
///
/// `Debug` and `Display` print `[redacted]`; only [`Secret::expose`] gives the value, so a
/// secret cannot reach a log line or an error message by accident.
///
/// ```
/// use manman_steam::Secret;
/// let password = Secret::new("hunter2");
/// assert_eq!(format!("{password} {password:?}"), "[redacted] [redacted]");
/// assert_eq!(password.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Reads a secret from a file that holds only it (a Docker or systemd secret, say). One
    /// trailing line ending is removed; an empty file is refused. The error names the file,
    /// never its content.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, CredentialError> {
        let path = path.as_ref();
        let text = crate::credentials::read_secret_file(path)?;
        let value = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        if value.is_empty() {
            return Err(CredentialError::Invalid {
                path: path.to_owned(),
                line: 1,
                reason: "the file is empty: it must hold the secret".to_owned(),
            });
        }
        Ok(Self(value.to_owned()))
    }

    /// The value. Pass it where it must go (a process's stdin, a private file), never to a
    /// log or an error.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Scrubs known secret values out of text (SteamCMD output) before it is logged or kept for
/// an error report: a SteamCMD build that echoed its input must not leak a password.
#[derive(Debug, Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<Secret>,
}

impl Redactor {
    /// A redactor for these secrets (empty ones are ignored).
    pub(crate) fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        Self {
            secrets: secrets
                .into_iter()
                .filter(|s| !s.expose().is_empty())
                .cloned()
                .collect(),
        }
    }

    /// `text` with every secret value replaced by `[redacted]`.
    pub(crate) fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret.expose()) {
                out = Cow::Owned(out.replace(secret.expose(), REDACTED));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.to_string(), "[redacted]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn from_file_strips_one_line_ending_and_refuses_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("beta");
        std::fs::write(&path, "p4ss word\r\n").unwrap();
        assert_eq!(Secret::from_file(&path).unwrap().expose(), "p4ss word");
        std::fs::write(&path, "\n").unwrap();
        let err = Secret::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = Secret::from_file(dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn redactor_scrubs_every_occurrence() {
        let a = Secret::new("hunter2");
        let b = Secret::new("");
        let r = Redactor::new([&a, &b]);
        assert_eq!(
            r.scrub("pw hunter2 again hunter2"),
            "pw [redacted] again [redacted]"
        );
        assert!(matches!(r.scrub("nothing here"), Cow::Borrowed(_)));
    }
}
