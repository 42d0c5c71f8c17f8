#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod api;
mod auth;
mod body_deadline;
mod client;
mod connection_deadline;
mod connections;
mod extract;
mod host_api_client;
mod http_limits;
mod openapi;
mod problem;
mod request_id;
mod request_size;
mod routes;
mod security_headers;
mod server;
mod sse;
mod stream_guard;

pub use api::{ApiState, BODY_LIMIT, CommandAccepted, router, worker_router};
pub use auth::{Access, AdminScope, Needs, OperateScope, ReadScope, WorkerAccess};
pub use client::{Client, ClientError, Followed, HISTORY_PAGE_MAX, REQUEST_TIMEOUT};
pub use extract::{ApiJson, ApiPath, ApiQuery};
pub use host_api_client::{HttpHostApi, WorkerCredentials};
pub use http_limits::{HttpLimits, MAX_HEADER_BYTES, MAX_HEADER_FIELDS, MAX_URI_BYTES};
pub use openapi::{ApiDoc, document as openapi_document};
pub use problem::{ApiError, PROBLEM_JSON, Problem};
pub use request_id::{REQUEST_ID_HEADER, RequestId};
pub use routes::instances::StdinRequest;
pub use routes::tokens::{CreatedToken, NewToken};
pub use routes::worker_credentials::{CreatedWorkerCredential, NewWorkerCredential, TokenRequest};
pub use server::{HostServer, ServeOptions};
pub use sse::{SseEvent, SseParser};
pub use stream_guard::{
    DEFAULT_MAX_STREAMS, DEFAULT_STREAMS_PER_TOKEN, RECHECK_EVERY, StreamLimits, StreamSlots,
};
