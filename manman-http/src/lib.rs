#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod api;
mod client;
mod extract;
mod host_api_client;
mod problem;
mod routes;
mod server;
mod sse;

pub use api::{ApiState, BODY_LIMIT, CommandAccepted, router};
pub use client::{Client, ClientError};
pub use extract::{ApiJson, ApiPath, ApiQuery};
pub use host_api_client::HttpHostApi;
pub use problem::{ApiError, PROBLEM_JSON, Problem};
pub use routes::instances::StdinRequest;
pub use server::{HostServer, ServeOptions};
pub use sse::{SseEvent, SseParser};
