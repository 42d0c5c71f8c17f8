#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod host_api_client;
mod messages;
mod problem;
mod sse;

pub use client::{Client, ClientError, Followed, HISTORY_PAGE_MAX, REQUEST_TIMEOUT};
pub use host_api_client::{HttpHostApi, WorkerCredentials};
pub use messages::{
    CommandAccepted, CreatedToken, CreatedWorkerCredential, NewToken, NewWorkerCredential,
    StdinRequest, TokenRequest,
};
pub use problem::{PROBLEM_JSON, Problem};
pub use sse::{SseEvent, SseParser};
