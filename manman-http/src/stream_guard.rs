//! Long-lived streams (the SSE console and event streams) under the host's limits: a stream is
//! admitted only while its token and the host have room ([`StreamSlots`]: at most
//! [`StreamLimits::per_token`] per token, [`StreamLimits::total`] on this host, 429 beyond), and
//! a [`StreamGuard`] ends it when the host shuts down or its token stops working — revoked,
//! expired — re-checking the token every [`RECHECK_EVERY`].
//!
//! The re-check asks the [`Authenticator`], which remembers a checked token for
//! [`manman_core::host::CACHE_TTL`] and forgets a revoked one at once on the replica that
//! revoked it: there the stream ends within [`RECHECK_EVERY`], on other replicas within the
//! cache's time more.

use crate::api::ApiState;
use crate::problem::{ApiError, Problem};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use manman_core::auth::Caller;
use manman_core::host::{Authenticator, HostError};
use manman_core::id::TokenId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often an open stream checks that its token still works.
pub const RECHECK_EVERY: Duration = Duration::from_secs(1);
/// Streams one token may hold open on a host, by default.
pub const DEFAULT_STREAMS_PER_TOKEN: usize = 16;
/// Streams a host serves at once, by default.
pub const DEFAULT_MAX_STREAMS: usize = 1_024;
/// The `Retry-After` of a refusal, in seconds: a slot frees when another stream ends.
const RETRY_AFTER_SECS: u64 = 5;

/// How many SSE streams a host serves at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// At most this many per token (`MANMAN_MAX_STREAMS_PER_TOKEN`).
    pub per_token: usize,
    /// At most this many in all (`MANMAN_MAX_STREAMS`).
    pub total: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            per_token: DEFAULT_STREAMS_PER_TOKEN,
            total: DEFAULT_MAX_STREAMS,
        }
    }
}

/// Who holds a stream: its operator token, or a worker (whose token is for the worker routes,
/// which have no streams today).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Holder {
    Token(TokenId),
    Worker(String),
}

impl Holder {
    fn of(caller: &Caller) -> Self {
        match caller {
            Caller::Operator { token_id, .. } => Self::Token(*token_id),
            Caller::Worker { worker_name, .. } => Self::Worker(worker_name.clone()),
        }
    }
}

/// The open streams of this host, counted per holder and in all. Cloning shares the count.
#[derive(Debug, Clone, Default)]
pub struct StreamSlots {
    limits: StreamLimits,
    open: Arc<Mutex<OpenStreams>>,
}

#[derive(Debug, Default)]
struct OpenStreams {
    total: usize,
    by_holder: HashMap<Holder, usize>,
}

impl StreamSlots {
    /// No stream open yet, at most `limits`.
    pub fn new(limits: StreamLimits) -> Self {
        Self {
            limits,
            open: Arc::default(),
        }
    }

    /// The limits.
    pub fn limits(&self) -> StreamLimits {
        self.limits
    }

    /// Streams open now on this host.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> MutexGuard<'_, OpenStreams> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for one more stream of `caller`, or the refusal saying which limit is reached.
    fn acquire(&self, caller: &Caller) -> Result<StreamSlot, TooManyStreams> {
        let holder = Holder::of(caller);
        let mut open = self.lock();
        let held = open.by_holder.get(&holder).copied().unwrap_or(0);
        if held >= self.limits.per_token {
            return Err(TooManyStreams(format!(
                "{caller} already has {held} open streams (console and events) on this host, the \
                 most one token may hold (MANMAN_MAX_STREAMS_PER_TOKEN={}): close one, or give \
                 another watcher a token of its own",
                self.limits.per_token
            )));
        }
        if open.total >= self.limits.total {
            return Err(TooManyStreams(format!(
                "this host already serves {} open streams (console and events), its most \
                 (MANMAN_MAX_STREAMS={}): retry in a moment, or use another host replica",
                open.total, self.limits.total
            )));
        }
        open.total += 1;
        *open.by_holder.entry(holder.clone()).or_default() += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            holder,
        })
    }
}

/// One admitted stream's place in [`StreamSlots`], given back when dropped.
#[derive(Debug)]
struct StreamSlot {
    slots: StreamSlots,
    holder: Holder,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(held) = open.by_holder.get_mut(&self.holder) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                open.by_holder.remove(&self.holder);
            }
        }
    }
}

/// A stream refused for a limit: 429 with `Retry-After`, the detail naming the limit.
#[derive(Debug)]
pub(crate) struct TooManyStreams(String);

/// Why a stream was not opened.
#[derive(Debug)]
pub(crate) enum StreamRefused {
    /// What any request may be refused for (401, 404, …).
    Api(ApiError),
    /// No room left for this token or on this host (429).
    TooMany(TooManyStreams),
}

impl From<ApiError> for StreamRefused {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<HostError> for StreamRefused {
    fn from(e: HostError) -> Self {
        Self::Api(ApiError(e))
    }
}

impl IntoResponse for StreamRefused {
    fn into_response(self) -> Response {
        match self {
            Self::Api(e) => e.into_response(),
            Self::TooMany(e) => e.into_response(),
        }
    }
}

impl IntoResponse for TooManyStreams {
    fn into_response(self) -> Response {
        let mut response = Problem::new(StatusCode::TOO_MANY_REQUESTS, self.0).into_response();
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        response
    }
}

/// An admitted stream: its slot, and what it needs to re-check its token.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    slot: StreamSlot,
    bearer: String,
    auth: Authenticator,
    shutdown: CancellationToken,
}

impl StreamGuard {
    /// Admits a stream of `caller`, who presented the `Authorization` of `headers`; 429 when
    /// its token or the host has no room left.
    pub(crate) fn admit(
        state: &ApiState,
        caller: &Caller,
        headers: &HeaderMap,
    ) -> Result<Self, StreamRefused> {
        let bearer = bearer(headers).ok_or_else(|| HostError::Unauthenticated {
            detail: "send `Authorization: Bearer <token>`".to_owned(),
        })?;
        let slot = state
            .streams
            .acquire(caller)
            .map_err(StreamRefused::TooMany)?;
        Ok(Self {
            slot,
            bearer: bearer.to_owned(),
            auth: state.auth.clone(),
            shutdown: state.shutdown.clone(),
        })
    }

    /// `stream` until it ends by itself, the host shuts down or the token stops working; the
    /// slot is given back then (or when the client goes and the stream is dropped).
    pub(crate) fn watch<S: Stream>(self, stream: S) -> impl Stream<Item = S::Item> {
        stream.take_until(self.ended())
    }

    async fn ended(self) {
        let Self {
            slot,
            bearer,
            auth,
            shutdown,
        } = self;
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = token_stops_working(&auth, &bearer) => {}
        }
        drop(slot);
    }
}

/// The bearer token of `Authorization: Bearer <token>` (the scheme in any case).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Returns once `bearer` is refused (revoked, expired, unknown). A check that fails for another
/// reason (the store is unavailable) keeps the stream: it is tried again at the next tick.
async fn token_stops_working(auth: &Authenticator, bearer: &str) {
    let mut ticker = tokio::time::interval(RECHECK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once: the request was just authenticated.
    ticker.tick().await;
    loop {
        ticker.tick().await;
        match auth.authenticate(bearer).await {
            Ok(_) => {}
            Err(HostError::Unauthenticated { detail }) => {
                tracing::info!(%detail, "an SSE stream ends: its token no longer works");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not re-check an SSE stream's token; it stays open");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operator(id: i64) -> Caller {
        Caller::Operator {
            token_id: TokenId(id),
            name: format!("t{id}"),
            scope: manman_core::auth::Scope::Read,
        }
    }

    #[test]
    fn slots_are_capped_per_token_and_in_all_and_come_back() {
        let slots = StreamSlots::new(StreamLimits {
            per_token: 2,
            total: 3,
        });
        let a1 = slots.acquire(&operator(1)).expect("first");
        let _a2 = slots.acquire(&operator(1)).expect("second");
        let refused = slots
            .acquire(&operator(1))
            .expect_err("a third for one token");
        assert!(
            refused.0.contains("MANMAN_MAX_STREAMS_PER_TOKEN=2"),
            "{}",
            refused.0
        );
        let _b1 = slots.acquire(&operator(2)).expect("another token");
        let refused = slots.acquire(&operator(3)).expect_err("the host is full");
        assert!(refused.0.contains("MANMAN_MAX_STREAMS=3"), "{}", refused.0);
        assert_eq!(slots.open(), 3);
        drop(a1);
        assert_eq!(slots.open(), 2);
        let _a3 = slots.acquire(&operator(1)).expect("a slot came back");
    }

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bEaReR  mm_x "));
        assert_eq!(bearer(&headers), Some("mm_x"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic mm_x"));
        assert_eq!(bearer(&headers), None);
    }
}
