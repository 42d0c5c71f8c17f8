#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod api;
mod auth;
mod body_deadline;
mod connection_deadline;
mod connections;
mod extract;
mod http_limits;
mod openapi;
mod problem;
mod request_id;
mod request_size;
mod routes;
mod security_headers;
mod server;
mod stream_guard;

pub use api::{ApiState, BODY_LIMIT, router, worker_router};
pub use auth::{Access, AdminScope, Needs, OperateScope, ReadScope, WorkerAccess};
pub use extract::{ApiJson, ApiPath, ApiQuery};
pub use http_limits::{HttpLimits, MAX_HEADER_BYTES, MAX_HEADER_FIELDS, MAX_URI_BYTES};
pub use openapi::{ApiDoc, document as openapi_document};
pub use problem::{ApiError, ProblemResponse};
pub use request_id::{REQUEST_ID_HEADER, RequestId};
pub use server::{HostServer, HostServerBuilder, ServeOptions};
// The client and the bodies it shares with the server live in `manman-client` (which links no
// web framework); re-exported so that `manman_http::Client` and the like keep working.
pub use manman_client::{
    Client, ClientError, CommandAccepted, CreatedToken, CreatedWorkerCredential, Followed,
    HISTORY_PAGE_MAX, HttpHostApi, NewToken, NewWorkerCredential, PROBLEM_JSON, Problem,
    REQUEST_TIMEOUT, SseEvent, SseParser, StdinRequest, TokenRequest, WorkerCredentials,
};
pub use stream_guard::{
    DEFAULT_MAX_STREAMS, DEFAULT_STREAMS_PER_TOKEN, RECHECK_EVERY, StreamLimits, StreamSlots,
};
