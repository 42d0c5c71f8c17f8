//! [`UnknownName`]: a name that is none of a set's (a status, cause, command state or scope
//! read from text), saying which set and what it holds.

/// A name that is not one of `what`'s: the typed error of their `FromStr`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}: expected one of {}", .known.join(", "))]
pub struct UnknownName {
    /// The set: `status`, `cause`, `command state`, `scope`.
    pub what: &'static str,
    /// The text given.
    pub given: String,
    /// Every name of the set.
    pub known: Vec<&'static str>,
}

impl UnknownName {
    /// The member of `all` whose name (`name_of`) is `given`, or the error naming the set.
    pub fn find<T: Copy>(
        what: &'static str,
        given: &str,
        all: &[T],
        name_of: impl Fn(T) -> &'static str,
    ) -> Result<T, Self> {
        all.iter()
            .copied()
            .find(|item| name_of(*item) == given)
            .ok_or_else(|| Self {
                what,
                given: given.to_owned(),
                known: all.iter().map(|item| name_of(*item)).collect(),
            })
    }
}

#[cfg(test)]
mod tests {
    use crate::status::Status;

    #[test]
    fn an_unknown_name_says_which_set_and_what_it_holds() {
        let refused = "runing".parse::<Status>().unwrap_err();
        assert_eq!(refused.what, "status");
        assert_eq!(
            refused.to_string(),
            "unknown status \"runing\": expected one of created, initializing, running, \
             complete, crashed, lost"
        );
        assert_eq!("running".parse::<Status>(), Ok(Status::Running));
    }
}
