//! Named Steam credentials: configured on the worker (or read from a secret file), referenced
//! by name from a game config (`steam.login = { named: "<name>" }`). The host never holds them.

use crate::secret::Secret;
use std::io;
use std::path::{Path, PathBuf};

/// A Steam account the worker may log in with. `Debug` shows the username only.
///
/// SteamCMD gets `+login <username>` on its command line; the password and the Steam Guard
/// code go to its standard input, never to its argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SteamCredential {
    username: String,
    password: Secret,
    guard_code: Option<Secret>,
}

impl SteamCredential {
    /// An account and its password.
    pub fn new(username: impl Into<String>, password: Secret) -> Self {
        Self {
            username: username.into(),
            password,
            guard_code: None,
        }
    }

    /// Adds a Steam Guard code, written to SteamCMD when it asks for one. Codes expire: this
    /// is for an e-mailed code or a first login; a machine SteamCMD has logged in from once
    /// is usually not asked again.
    pub fn with_guard_code(mut self, code: Secret) -> Self {
        self.guard_code = Some(code);
        self
    }

    /// Reads a credential file: `key = value` lines, `#` comments, keys `username`,
    /// `password` and (optional) `guard_code`. Values lose their surrounding whitespace.
    /// Errors name the file, the line and the key, never a value.
    ///
    /// ```text
    /// # /etc/manman/steam-ops.credential (mode 0600, owned by the worker's user)
    /// username = ops_account
    /// password = correct horse battery staple
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, CredentialError> {
        let path = path.as_ref();
        let text = read_secret_file(path)?;
        parse_credential(&text, path)
    }

    /// The Steam account name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password.
    pub fn password(&self) -> &Secret {
        &self.password
    }

    /// The Steam Guard code, when configured.
    pub fn guard_code(&self) -> Option<&Secret> {
        self.guard_code.as_ref()
    }
}

/// A credential or secret file that could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The file could not be read.
    #[error("could not read secret file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file's content is not valid.
    #[error("secret file {path}, line {line}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong (never the value).
        reason: String,
    },
}

/// Reads a file that holds secrets, warning when other users may read it too.
pub(crate) fn read_secret_file(path: &Path) -> Result<String, CredentialError> {
    let text = std::fs::read_to_string(path).map_err(|source| CredentialError::Read {
        path: path.to_owned(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
                "secret file is readable by other users: chmod 600 it"
            );
        }
    }
    Ok(text)
}

fn parse_credential(text: &str, path: &Path) -> Result<SteamCredential, CredentialError> {
    let invalid = |line: usize, reason: String| CredentialError::Invalid {
        path: path.to_owned(),
        line,
        reason,
    };
    let mut username = None;
    let mut password = None;
    let mut guard_code = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(invalid(line_no, "expected `key = value`".to_owned()));
        };
        let (key, value) = (key.trim(), value.trim());
        if value.is_empty() {
            return Err(invalid(line_no, format!("`{key}` has no value")));
        }
        let slot = match key {
            "username" => &mut username,
            "password" => &mut password,
            "guard_code" => &mut guard_code,
            other => {
                return Err(invalid(
                    line_no,
                    format!("unknown key `{other}`: use username, password or guard_code"),
                ));
            }
        };
        if slot.replace(value.to_owned()).is_some() {
            return Err(invalid(line_no, format!("`{key}` is set twice")));
        }
    }
    let last = text.lines().count().max(1);
    let username = username.ok_or_else(|| invalid(last, "`username` is missing".to_owned()))?;
    let password = password.ok_or_else(|| invalid(last, "`password` is missing".to_owned()))?;
    let credential = SteamCredential::new(username, Secret::new(password));
    Ok(match guard_code {
        Some(code) => credential.with_guard_code(Secret::new(code)),
        None => credential,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SteamCredential, CredentialError> {
        parse_credential(text, Path::new("/etc/steam.cred"))
    }

    #[test]
    fn reads_username_password_and_guard_code() {
        let c = parse("# ops\nusername = ops_account\npassword =  pa ss  \nguard_code=ABC12\n")
            .unwrap();
        assert_eq!(c.username(), "ops_account");
        assert_eq!(c.password().expose(), "pa ss");
        assert_eq!(c.guard_code().unwrap().expose(), "ABC12");
    }

    #[test]
    fn errors_name_the_line_and_key_but_never_the_value() {
        let err = parse("username = a\npassword = hunter2\npassword = hunter3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("password"), "{err}");
        assert!(!err.contains("hunter"), "{err}");
        let err = parse("username = a\nhunter2\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && !err.contains("hunter2"), "{err}");
        let err = parse("username = a\n").unwrap_err().to_string();
        assert!(err.contains("`password` is missing"), "{err}");
        let err = parse("user = a\n").unwrap_err().to_string();
        assert!(err.contains("unknown key `user`"), "{err}");
    }

    #[test]
    fn debug_shows_the_username_only() {
        let c = SteamCredential::new("ops", Secret::new("hunter2"))
            .with_guard_code(Secret::new("ZZ9PL"));
        let debug = format!("{c:?}");
        assert!(debug.contains("ops"), "{debug}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("ZZ9PL"),
            "{debug}"
        );
    }

    #[test]
    fn from_file_reads_a_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.credential");
        std::fs::write(&path, "username = ops\npassword = hunter2\n").unwrap();
        let c = SteamCredential::from_file(&path).unwrap();
        assert_eq!(c.username(), "ops");
        assert!(matches!(
            SteamCredential::from_file(dir.path().join("missing")),
            Err(CredentialError::Read { .. })
        ));
    }
}
