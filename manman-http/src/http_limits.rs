//! [`HttpLimits`]: how long a client may take to send a request, how long a kept-alive
//! connection may sit idle, and how many connections the host serves at once — so that no
//! client, with a token or without, can hold the host's connections for ever. With the
//! request-size limits ([`MAX_URI_BYTES`], [`MAX_HEADER_BYTES`], [`MAX_HEADER_FIELDS`]).

use std::time::Duration;

/// The longest request URI (path and query) answered; a longer one gets 414 problem+json.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The most bytes of header fields (names, values and their separators) answered; more get
/// 431 problem+json.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The most header fields answered; more get 431 problem+json.
pub const MAX_HEADER_FIELDS: usize = 100;

/// What the HTTP parser itself accepts: above the limits the API answers with a problem
/// document, so that a normal client always gets one. Beyond these the parser answers a bare
/// 431 and closes the connection.
pub(crate) const PARSER_MAX_HEAD_BYTES: usize = 64 * 1024;
/// See [`PARSER_MAX_HEAD_BYTES`].
pub(crate) const PARSER_MAX_HEADER_FIELDS: usize = 128;

const _: () = assert!(MAX_URI_BYTES + MAX_HEADER_BYTES + 1024 < PARSER_MAX_HEAD_BYTES);
const _: () = assert!(MAX_HEADER_FIELDS < PARSER_MAX_HEADER_FIELDS);

/// The limits a [`HostServer`](crate::HostServer) serves HTTP within.
///
/// A request is read within two deadlines: its head (request line and headers) within
/// `header_timeout`, counted from the connection's start or from the first byte of a request
/// after the previous answer; then its body within `body_timeout` (408 problem+json when it is
/// late). A response takes as long as it takes: Server-Sent Events streams stay open, since
/// they are answers, not slow requests. Between requests a kept-alive connection is closed after
/// `idle_timeout`. At most `max_connections` are served at once; further ones wait in the
/// listen queue until one ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a request's head (request line and headers) may take to arrive, from its first
    /// byte (or from the connection's start): a client trickling its headers is cut off then.
    pub header_timeout: Duration,
    /// How long a request's body may take to arrive once its head is in; a late body ends the
    /// request with 408 and the connection.
    pub body_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request before it is closed.
    pub idle_timeout: Duration,
    /// The most connections served at once; further ones wait to be accepted.
    pub max_connections: usize,
}

impl HttpLimits {
    /// Refuses limits no server can run with: a zero timeout would close every connection at
    /// once, and a cap of zero connections would serve none. The error names the field.
    pub fn check(&self) -> Result<(), String> {
        for (field, value) in [
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if value.is_zero() {
                return Err(format!(
                    "HttpLimits::{field} is zero: every connection would be closed at once; \
                     give it a duration"
                ));
            }
        }
        if self.max_connections == 0 {
            return Err(
                "HttpLimits::max_connections is zero: no connection would be served; allow at \
                 least one"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

impl Default for HttpLimits {
    /// Headers 10 s, body 30 s, idle 60 s, 1,024 connections.
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_and_zeros_are_refused_by_name() {
        assert_eq!(HttpLimits::default().check(), Ok(()));
        let zero_idle = HttpLimits {
            idle_timeout: Duration::ZERO,
            ..HttpLimits::default()
        };
        assert!(zero_idle.check().is_err_and(|e| e.contains("idle_timeout")));
        let no_connections = HttpLimits {
            max_connections: 0,
            ..HttpLimits::default()
        };
        assert!(
            no_connections
                .check()
                .is_err_and(|e| e.contains("max_connections"))
        );
    }
}
