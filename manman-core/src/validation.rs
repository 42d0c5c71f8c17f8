//! Validation errors: what was wrong with which field, in words an operator can act on.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// Path of the field, e.g. `executable` or `env.MY KEY`.
    pub field: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

/// Every field that failed validation; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ValidationError {
    /// The failures, in the order they were found.
    pub errors: Vec<FieldError>,
}

impl ValidationError {
    /// A single failure.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut error = Self::default();
        error.push(field, message);
        error
    }

    /// Records one more failure.
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// `Ok(())` when nothing was recorded, else `Err(self)`.
    pub fn into_result(self) -> Result<(), Self> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationError {}

/// Checks a catalogue name (game server or config): 1 to 64 characters, letters, digits, `.`, `_`
/// and `-`, starting with a letter or digit.
pub fn check_name(errors: &mut ValidationError, field: &str, name: &str) {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 64 || !ok_chars || !starts_well {
        errors.push(
            field,
            format!(
                "{name:?} is not a valid name: use 1 to 64 letters, digits, '.', '_' or '-', \
                 starting with a letter or digit"
            ),
        );
    }
}

/// Checks a path that must stay inside a base directory, as text: relative, not empty, no
/// `..`, no NUL or other control characters ([`crate::confined_path::check_relative`]; the
/// worker checks it again on disk, links resolved).
pub fn check_relative_path(errors: &mut ValidationError, field: &str, path: &str) {
    if let Err(problem) = crate::confined_path::check_relative(path) {
        errors.push(field, problem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["cs2", "Valheim-1", "a.b_c"] {
            let mut e = ValidationError::default();
            check_name(&mut e, "name", good);
            assert!(e.errors.is_empty(), "{good} should be valid");
        }
        for bad in ["", "-x", "with space", "ü", &"x".repeat(65)] {
            let mut e = ValidationError::default();
            check_name(&mut e, "name", bad);
            assert_eq!(e.errors.len(), 1, "{bad:?} should be refused");
            assert_eq!(e.errors[0].field, "name");
        }
    }

    #[test]
    fn relative_paths_must_stay_inside() {
        let check = |p: &str| {
            let mut e = ValidationError::default();
            check_relative_path(&mut e, "executable", p);
            e.into_result()
        };
        assert!(check("bin/server").is_ok());
        assert!(check("./srcds_run").is_ok());
        assert!(check("../escape").unwrap_err().to_string().contains(".."));
        assert!(check("bin/../../x").is_err());
        assert!(
            check("/usr/bin/evil")
                .unwrap_err()
                .to_string()
                .contains("absolute")
        );
        assert!(check("").is_err());
    }
}
