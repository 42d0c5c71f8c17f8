//! Long-lived streams (the SSE console and event streams) under the host's limits: a stream is
//! admitted only while its token and the host have room ([`StreamSlots`]: at most
//! [`StreamLimits::per_token`] per token, [`StreamLimits::total`] on this host, 429 beyond), and
//! it ends when the host shuts down or its token stops working — revoked, expired.
//!
//! A token's open streams share one re-check of the token, every [`RECHECK_EVERY`], started
//! with its first stream and stopped with its last (so 500 streams of 32 tokens make 32 checks,
//! not 500, and never a burst of store reads when the token cache expires). The check asks the
//! [`Authenticator`], which remembers a checked token for [`manman_core::host::CACHE_TTL`] and
//! forgets a revoked one at once on the replica that revoked it: there the streams end within
//! [`RECHECK_EVERY`], on other replicas within the cache's time more.

use crate::api::ApiState;
use crate::problem::{ApiError, Problem, ProblemExt};
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

/// How often the token of open streams is checked again.
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
    by_holder: HashMap<Holder, HolderStreams>,
}

/// One holder's open streams and the re-check of its token they share.
#[derive(Debug)]
struct HolderStreams {
    open: usize,
    /// Cancelled when the token stops working: its streams end.
    refused: CancellationToken,
    /// Stops the re-check (with the holder's last stream).
    stop_check: CancellationToken,
}

/// What a new stream needs to have its token re-checked.
struct Credentials<'a> {
    bearer: &'a str,
    auth: &'a Authenticator,
    shutdown: &'a CancellationToken,
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

    /// Tokens whose streams are open now (each has one re-check running).
    pub fn holders(&self) -> usize {
        self.lock().by_holder.len()
    }

    fn lock(&self) -> MutexGuard<'_, OpenStreams> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for one more stream of `caller`, or the refusal saying which limit is reached.
    /// The first stream of a holder starts the re-check of its token.
    fn acquire(
        &self,
        caller: &Caller,
        credentials: &Credentials<'_>,
    ) -> Result<StreamSlot, TooManyStreams> {
        let holder = Holder::of(caller);
        let mut open = self.lock();
        let held = open.by_holder.get(&holder).map_or(0, |h| h.open);
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
        let streams = open.by_holder.entry(holder.clone()).or_insert_with(|| {
            let refused = CancellationToken::new();
            let stop_check = credentials.shutdown.child_token();
            tokio::spawn(recheck(
                credentials.auth.clone(),
                credentials.bearer.to_owned(),
                refused.clone(),
                stop_check.clone(),
            ));
            HolderStreams {
                open: 0,
                refused,
                stop_check,
            }
        });
        streams.open += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            refused: streams.refused.clone(),
            holder,
        })
    }
}

/// One admitted stream's place in [`StreamSlots`], given back when dropped.
#[derive(Debug)]
struct StreamSlot {
    slots: StreamSlots,
    holder: Holder,
    /// Cancelled when its token stops working.
    refused: CancellationToken,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(streams) = open.by_holder.get_mut(&self.holder) {
            streams.open = streams.open.saturating_sub(1);
            if streams.open == 0 {
                streams.stop_check.cancel();
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
    /// What the stream would show is no longer kept (410): the detail says why.
    Gone(String),
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
            Self::Gone(detail) => Problem::new(StatusCode::GONE, detail).into_response(),
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

/// An admitted stream: its slot, which says when its token stops working.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    slot: StreamSlot,
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
        let credentials = Credentials {
            bearer,
            auth: &state.auth,
            shutdown: &state.shutdown,
        };
        let slot = state
            .streams
            .acquire(caller, &credentials)
            .map_err(StreamRefused::TooMany)?;
        Ok(Self {
            slot,
            shutdown: state.shutdown.clone(),
        })
    }

    /// `stream` until it ends by itself, the host shuts down or the token stops working; the
    /// slot is given back then (or when the client goes and the stream is dropped).
    pub(crate) fn watch<S: Stream>(self, stream: S) -> impl Stream<Item = S::Item> {
        stream.take_until(self.ended())
    }

    async fn ended(self) {
        let Self { slot, shutdown } = self;
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = slot.refused.cancelled() => {}
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

/// Checks `bearer` every [`RECHECK_EVERY`] until `stop`; once it is refused (revoked,
/// expired, unknown), cancels `refused` and returns. A check that fails for another reason (the
/// store is unavailable) keeps the streams: it is tried again at the next tick.
async fn recheck(
    auth: Authenticator,
    bearer: String,
    refused: CancellationToken,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(RECHECK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once: the request was just authenticated.
    ticker.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let checked = tokio::select! {
            () = stop.cancelled() => return,
            checked = auth.authenticate(&bearer) => checked,
        };
        match checked {
            Ok(_) => {}
            Err(HostError::Unauthenticated { detail }) => {
                tracing::info!(%detail, "SSE streams end: their token no longer works");
                refused.cancel();
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not re-check SSE streams' token; they stay open");
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

    /// An authenticator over an empty store: every operator token is unknown.
    fn authenticator() -> Authenticator {
        let store = manman_core::memory::MemoryStore::new();
        let store = manman_core::store::Store::from_adapter(store);
        Authenticator::new(
            store.credentials.clone(),
            Arc::new(manman_core::ports::SystemClock),
            manman_core::host::SigningKey::random(),
        )
    }

    #[tokio::test]
    async fn slots_are_capped_per_token_and_in_all_and_come_back() {
        let (auth, shutdown) = (authenticator(), CancellationToken::new());
        let credentials = Credentials {
            bearer: "mm_unchecked",
            auth: &auth,
            shutdown: &shutdown,
        };
        let slots = StreamSlots::new(StreamLimits {
            per_token: 2,
            total: 3,
        });
        let a1 = slots.acquire(&operator(1), &credentials).expect("first");
        let _a2 = slots.acquire(&operator(1), &credentials).expect("second");
        let refused = slots
            .acquire(&operator(1), &credentials)
            .expect_err("a third for one token");
        assert!(
            refused.0.contains("MANMAN_MAX_STREAMS_PER_TOKEN=2"),
            "{}",
            refused.0
        );
        let _b1 = slots
            .acquire(&operator(2), &credentials)
            .expect("another token");
        let refused = slots
            .acquire(&operator(3), &credentials)
            .expect_err("the host is full");
        assert!(refused.0.contains("MANMAN_MAX_STREAMS=3"), "{}", refused.0);
        assert_eq!(
            (slots.open(), slots.holders()),
            (3, 2),
            "one re-check per token"
        );
        drop(a1);
        assert_eq!(slots.open(), 2);
        let _a3 = slots
            .acquire(&operator(1), &credentials)
            .expect("a slot came back");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_refused_token_ends_all_its_streams_and_its_last_stream_stops_the_check() {
        let (auth, shutdown) = (authenticator(), CancellationToken::new());
        let credentials = Credentials {
            bearer: "mm_not_a_token",
            auth: &auth,
            shutdown: &shutdown,
        };
        let slots = StreamSlots::default();
        let one = slots.acquire(&operator(1), &credentials).expect("one");
        let two = slots.acquire(&operator(1), &credentials).expect("two");
        // The store does not know the token: the first re-check refuses it.
        tokio::time::timeout(2 * RECHECK_EVERY, one.refused.cancelled())
            .await
            .expect("refused at the first re-check");
        assert!(two.refused.is_cancelled(), "every stream of the token ends");
        drop((one, two));
        assert_eq!((slots.open(), slots.holders()), (0, 0));
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
