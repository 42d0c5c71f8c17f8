//! The router without a socket (`tower::ServiceExt::oneshot`): success and error paths.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use manman_core::bus::Bus;
use manman_core::host::{ConsoleHub, HostService};
use manman_core::memory::{MemoryBus, MemoryStore};
use manman_core::ports::SystemClock;
use manman_core::store::Store;
use manman_http::{ApiState, BODY_LIMIT, router};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

async fn app() -> axum::Router {
    let memory = MemoryBus::new();
    let bus = Bus::new(Arc::new(memory.clone()), Arc::new(memory));
    bus.declare().await.expect("topology");
    let host = HostService::new(
        Store::from_adapter(MemoryStore::new()),
        bus,
        Arc::new(SystemClock),
    );
    router(ApiState {
        host,
        console: ConsoleHub::default(),
        shutdown: CancellationToken::new(),
    })
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, String, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(json) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    let response = app
        .clone()
        .oneshot(request.body(body).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, content_type, json)
}

fn assert_problem(status: StatusCode, content_type: &str, body: &Value, want: StatusCode) {
    assert_eq!(status, want, "{body}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(body["status"], want.as_u16());
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "a detail a person can act on: {body}"
    );
}

#[tokio::test]
async fn health_and_unknown_routes() {
    let app = app().await;
    let (status, _, _) = call(&app, "GET", "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, ct, body) = call(&app, "GET", "/api/v1/nothing-here", None).await;
    assert_problem(status, &ct, &body, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn games_and_configs() {
    let app = app().await;
    let game = json!({"name": "cs2", "server_type": {"type": "steam", "app_id": 730}});
    let (status, _, created) = call(&app, "POST", "/api/v1/games", Some(game.clone())).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, ct, body) = call(&app, "POST", "/api/v1/games", Some(game)).await;
    assert_problem(status, &ct, &body, StatusCode::CONFLICT);
    let id = created["id"].as_i64().expect("id");
    let (status, _, body) = call(&app, "GET", &format!("/api/v1/games/{id}"), None).await;
    assert_eq!(
        (status, body["name"].as_str()),
        (StatusCode::OK, Some("cs2"))
    );

    let config = json!({"name": "main", "executable": "srcds_run", "is_default": true});
    let (status, _, _) = call(
        &app,
        "POST",
        &format!("/api/v1/games/{id}/configs"),
        Some(config),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, list) = call(&app, "GET", &format!("/api/v1/games/{id}/configs"), None).await;
    assert_eq!(
        (status, list.as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );

    let escape = json!({"name": "bad", "executable": "../../bin/sh"});
    let (status, ct, body) = call(
        &app,
        "POST",
        &format!("/api/v1/games/{id}/configs"),
        Some(escape),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "executable");
    let typo = json!({"name": "t", "executable": "x", "ready_patern": "go"});
    let (status, ct, body) = call(
        &app,
        "POST",
        &format!("/api/v1/games/{id}/configs"),
        Some(typo),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("ready_patern")),
        "{body}"
    );
    let (status, ct, body) = call(
        &app,
        "POST",
        "/api/v1/games/999/configs",
        Some(json!({"name": "m", "executable": "x"})),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::NOT_FOUND);
    let (status, ct, body) = call(&app, "GET", "/api/v1/games/not-a-number", None).await;
    assert_problem(status, &ct, &body, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn malformed_wrong_and_huge_bodies_are_4xx_problems() {
    let app = app().await;
    let request = Request::builder()
        .method("POST")
        .uri("/api/v1/games")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"name\": "))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (status, ct, body) = call(
        &app,
        "POST",
        "/api/v1/games",
        Some(json!({"name": 42, "server_type": "steam"})),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let huge =
        json!({"name": "x".repeat(BODY_LIMIT + 1), "server_type": {"type": "local", "path": "p"}});
    let (status, ct, _) = call(&app, "POST", "/api/v1/games", Some(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(ct, "application/problem+json");
    let request = Request::builder()
        .method("POST")
        .uri("/api/v1/games")
        .body(Body::from("{}"))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
    assert_eq!(
        response.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "JSON needs its content type"
    );
}

#[tokio::test]
async fn workers_register_heartbeat_shut_down_and_have_a_history() {
    let app = app().await;
    let registration = json!({"name": "box-1", "version": "1.0", "capacity": 4});
    let (status, _, registered) =
        call(&app, "POST", "/api/v1/worker/register", Some(registration)).await;
    assert_eq!(status, StatusCode::OK);
    let id = registered["worker_id"].as_i64().expect("id");
    let beat = json!({"worker_id": id, "epoch": registered["epoch"], "inventory": []});
    let (status, _, _) = call(&app, "POST", "/api/v1/worker/heartbeat", Some(beat)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let stale = json!({"worker_id": id, "epoch": 0, "inventory": []});
    let (status, ct, body) = call(&app, "POST", "/api/v1/worker/heartbeat", Some(stale)).await;
    assert_problem(status, &ct, &body, StatusCode::CONFLICT);

    let (status, _, worker) = call(&app, "GET", &format!("/api/v1/workers/{id}"), None).await;
    assert_eq!(
        (status, worker["name"].as_str()),
        (StatusCode::OK, Some("box-1"))
    );
    let (status, _, list) = call(&app, "GET", "/api/v1/workers", None).await;
    assert_eq!(
        (status, list.as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    let (status, _, history) =
        call(&app, "GET", &format!("/api/v1/workers/{id}/history"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(history[0]["cause"], "registered");
    let (status, _, accepted) = call(
        &app,
        "POST",
        &format!("/api/v1/workers/{id}/shutdown"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let command = accepted["command_id"].as_str().expect("command id");
    let (status, _, record) = call(&app, "GET", &format!("/api/v1/commands/{command}"), None).await;
    assert_eq!(
        (status, record["state"].as_str()),
        (StatusCode::OK, Some("delivered"))
    );
    let (status, ct, body) = call(&app, "GET", "/api/v1/workers/999", None).await;
    assert_problem(status, &ct, &body, StatusCode::NOT_FOUND);
    let (status, ct, body) = call(&app, "GET", "/api/v1/worker/configs/999", None).await;
    assert_problem(status, &ct, &body, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn instances_and_commands_errors() {
    let app = app().await;
    let (status, ct, body) = call(
        &app,
        "POST",
        "/api/v1/instances",
        Some(json!({"config_id": 1})),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::NOT_FOUND);
    let (status, ct, body) = call(&app, "POST", "/api/v1/instances/7/stop", None).await;
    assert_problem(status, &ct, &body, StatusCode::NOT_FOUND);
    let (status, ct, body) = call(&app, "GET", "/api/v1/commands/not-a-uuid", None).await;
    assert_problem(status, &ct, &body, StatusCode::BAD_REQUEST);
    let (status, ct, body) = call(&app, "GET", "/api/v1/instances?status=bogus", None).await;
    assert_problem(status, &ct, &body, StatusCode::BAD_REQUEST);
    let (status, _, list) = call(&app, "GET", "/api/v1/instances?limit=10", None).await;
    assert_eq!(
        (status, list.as_array().map(Vec::len)),
        (StatusCode::OK, Some(0))
    );
    let (status, ct, body) = call(&app, "GET", "/api/v1/instances/3/console", None).await;
    assert_problem(status, &ct, &body, StatusCode::NOT_FOUND);
    // A live stream: check its head only.
    let request = Request::builder()
        .uri("/api/v1/events")
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
}
