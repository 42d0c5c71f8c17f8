//! The router without a socket (`tower::ServiceExt::oneshot`): success and error paths.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use manman_core::auth::Scope;
use manman_core::bus::Bus;
use manman_core::host::{Authenticator, ConsoleHub, HostService, Metrics, SigningKey};
use manman_core::memory::{MemoryBus, MemoryStore};
use manman_core::ports::SystemClock;
use manman_core::store::Store;
use manman_http::{ApiState, BODY_LIMIT, router};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The router and what a test needs to call it: the authenticator and an admin token.
struct App {
    router: axum::Router,
    auth: Authenticator,
    admin: String,
}

impl App {
    /// A new operator token.
    async fn token(&self, name: &str, scope: Scope) -> String {
        let (_, secret) = self.auth.create_token(name, scope).await.expect("token");
        secret.expose().to_owned()
    }

    /// Registers a worker named `name` (capacity 2, `labels`) through the worker API.
    async fn register(&self, name: &str, labels: Value) {
        let token = self.worker_token(name).await;
        let registration = json!({"name": name, "version": "1", "capacity": 2, "labels": labels});
        let (status, _, body) = call_as(
            self,
            Some(&token),
            "POST",
            "/api/v1/worker/register",
            Some(registration),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// A worker token for the worker named `name`.
    async fn worker_token(&self, name: &str) -> String {
        let (credential, secret) = self
            .auth
            .create_worker_credential(name)
            .await
            .expect("credentials");
        self.auth
            .exchange(&credential.client_id, secret.expose())
            .await
            .expect("exchange")
            .access_token
    }
}

async fn app() -> App {
    app_on(Store::from_adapter(MemoryStore::new())).await
}

async fn app_on(store: Store) -> App {
    let memory = MemoryBus::new();
    let bus = Bus::new(Arc::new(memory.clone()), Arc::new(memory));
    bus.declare().await.expect("topology");
    let host = HostService::new(store, bus, Arc::new(SystemClock));
    let auth = Authenticator::new(
        host.store().credentials.clone(),
        host.clock(),
        SigningKey::random(),
    );
    let admin = auth
        .ensure_admin(None)
        .await
        .expect("admin")
        .expect("a new admin token");
    // The event feed of `/events`, connected to the bus as a HostServer connects it.
    let events = manman_core::host::EventHub::default();
    let (hub, feed) = (events.clone(), host.bus().clone());
    tokio::spawn(async move { hub.run(&feed, CancellationToken::new()).await });
    let router = router(ApiState {
        auth: auth.clone(),
        metrics: Metrics::new(),
        host,
        console: ConsoleHub::default(),
        shutdown: CancellationToken::new(),
        events,
        streams: Default::default(),
        dead_letters: Default::default(),
    });
    App {
        router,
        auth,
        admin: admin.expose().to_owned(),
    }
}

/// A request with the admin token.
async fn call(
    app: &App,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, String, Value) {
    call_as(app, Some(&app.admin), method, uri, body).await
}

/// A request with `token` (none: no `Authorization` header).
async fn call_as(
    app: &App,
    token: Option<&str>,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, String, Value) {
    let authorization = token.map(|token| format!("Bearer {token}"));
    let answer = common::oneshot(&app.router, authorization.as_deref(), method, uri, body).await;
    (answer.status, answer.content_type, answer.body)
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
        .header(header::AUTHORIZATION, format!("Bearer {}", app.admin))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"name\": "))
        .expect("request");
    let response = app.router.clone().oneshot(request).await.expect("response");
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
        .header(header::AUTHORIZATION, format!("Bearer {}", app.admin))
        .body(Body::from("{}"))
        .expect("request");
    let response = app.router.clone().oneshot(request).await.expect("response");
    assert_eq!(
        response.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "JSON needs its content type"
    );
}

#[tokio::test]
async fn workers_register_heartbeat_shut_down_and_have_a_history() {
    let app = app().await;
    let worker = app.worker_token("box-1").await;
    let as_worker = Some(worker.as_str());
    let registration = json!({"name": "box-1", "version": "1.0", "capacity": 4});
    let (status, _, registered) = call_as(
        &app,
        as_worker,
        "POST",
        "/api/v1/worker/register",
        Some(registration),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let id = registered["worker_id"].as_i64().expect("id");
    let beat = json!({"worker_id": id, "epoch": registered["epoch"], "inventory": []});
    let (status, _, _) = call_as(
        &app,
        as_worker,
        "POST",
        "/api/v1/worker/heartbeat",
        Some(beat),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let stale = json!({"worker_id": id, "epoch": 0, "inventory": []});
    let (status, ct, body) = call_as(
        &app,
        as_worker,
        "POST",
        "/api/v1/worker/heartbeat",
        Some(stale),
    )
    .await;
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
    let (status, ct, body) = call_as(
        &app,
        as_worker,
        "GET",
        "/api/v1/worker/instances/999/config",
        None,
    )
    .await;
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
        .header(header::AUTHORIZATION, format!("Bearer {}", app.admin))
        .body(Body::empty())
        .expect("request");
    let response = app.router.clone().oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
}

/// Every route of the operator and worker API, with a placeholder id.
const PROTECTED: [(&str, &str); 32] = [
    ("POST", "/api/v1/games"),
    ("GET", "/api/v1/games"),
    ("GET", "/api/v1/games/1"),
    ("PUT", "/api/v1/games/1"),
    ("DELETE", "/api/v1/games/1"),
    ("POST", "/api/v1/games/1/configs"),
    ("GET", "/api/v1/games/1/configs"),
    ("GET", "/api/v1/configs"),
    ("GET", "/api/v1/configs/1"),
    ("PUT", "/api/v1/configs/1"),
    ("DELETE", "/api/v1/configs/1"),
    ("GET", "/api/v1/workers"),
    ("GET", "/api/v1/workers/1"),
    ("POST", "/api/v1/workers/1/shutdown"),
    ("GET", "/api/v1/workers/1/history"),
    ("GET", "/api/v1/events"),
    ("POST", "/api/v1/instances"),
    ("GET", "/api/v1/instances"),
    ("GET", "/api/v1/instances/1"),
    ("POST", "/api/v1/instances/1/stop"),
    ("POST", "/api/v1/instances/1/kill"),
    ("POST", "/api/v1/instances/1/restart"),
    ("POST", "/api/v1/instances/1/stdin"),
    ("GET", "/api/v1/instances/1/history"),
    ("GET", "/api/v1/instances/1/console"),
    (
        "GET",
        "/api/v1/commands/00000000-0000-0000-0000-000000000000",
    ),
    ("POST", "/api/v1/worker/register"),
    ("POST", "/api/v1/worker/heartbeat"),
    ("GET", "/api/v1/worker/instances/1/config"),
    ("GET", "/api/v1/tokens"),
    ("DELETE", "/api/v1/tokens/1"),
    ("GET", "/api/v1/worker-credentials"),
];

#[tokio::test]
async fn every_route_but_the_public_ones_needs_a_valid_token() {
    let app = app().await;
    for (method, uri) in PROTECTED {
        for token in [None, Some("mm_not-a-token"), Some("mmw.00.00")] {
            let (status, ct, body) = call_as(&app, token, method, uri, None).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with {token:?}: {body}"
            );
            assert_problem(status, &ct, &body, StatusCode::UNAUTHORIZED);
        }
    }
    let request = Request::builder()
        .uri("/api/v1/games")
        .body(Body::empty())
        .expect("request");
    let response = app.router.clone().oneshot(request).await.expect("response");
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    let (status, _, _) = call_as(&app, None, "GET", "/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "health needs no token");
}

#[tokio::test]
async fn scopes_decide_what_an_operator_token_may_do() {
    let app = app().await;
    let reader = app.token("dashboard", Scope::Read).await;
    let operator = app.token("ci", Scope::Operate).await;
    let game = json!({"name": "cs2", "server_type": {"type": "steam", "app_id": 730}});

    let (status, _, _) = call_as(&app, Some(&reader), "GET", "/api/v1/games", None).await;
    assert_eq!(status, StatusCode::OK, "read may read");
    let (status, ct, body) = call_as(
        &app,
        Some(&reader),
        "POST",
        "/api/v1/games",
        Some(game.clone()),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::FORBIDDEN);
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("admin") && d.contains("dashboard")),
        "says which scope is needed and which token lacks it: {body}"
    );
    let (status, ct, body) = call_as(
        &app,
        Some(&operator),
        "POST",
        "/api/v1/games",
        Some(game.clone()),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::FORBIDDEN);
    let (status, _, _) = call(&app, "POST", "/api/v1/games", Some(game)).await;
    assert_eq!(status, StatusCode::CREATED, "admins define games");
    let (status, ct, body) = call_as(&app, Some(&operator), "GET", "/api/v1/tokens", None).await;
    assert_problem(status, &ct, &body, StatusCode::FORBIDDEN);

    // Admin: create a token (its secret once), list, revoke; the revoked token stops working.
    let (status, _, created) = call(
        &app,
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "temp", "scope": "read"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let (status, _, _) = call_as(&app, Some(&secret), "GET", "/api/v1/workers", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, list) = call(&app, "GET", "/api/v1/tokens", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !list.to_string().contains(&secret),
        "a listing never shows secrets"
    );
    assert_eq!(list.as_array().map(Vec::len), Some(4));
    let id = created["token"]["id"].as_i64().expect("id");
    let (status, _, revoked) = call(&app, "DELETE", &format!("/api/v1/tokens/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(revoked["revoked_at"].is_string());
    let (status, ct, body) = call_as(&app, Some(&secret), "GET", "/api/v1/workers", None).await;
    assert_problem(status, &ct, &body, StatusCode::UNAUTHORIZED);
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("revoked"))
    );

    let (status, ct, body) = call(
        &app,
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "temp", "scope": "read"})),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::CONFLICT);
    let (status, ct, body) = call(
        &app,
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "x", "scope": "root"})),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, ct, body) = call(&app, "DELETE", "/api/v1/tokens/999", None).await;
    assert_problem(status, &ct, &body, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_worker_acts_for_itself_only() {
    let app = app().await;
    // Credentials through the API; the exchange needs no token.
    let (status, _, created) = call(
        &app,
        "POST",
        "/api/v1/worker-credentials",
        Some(json!({"worker_name": "box-a"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let exchange = json!({
        "client_id": created["credential"]["client_id"],
        "client_secret": created["client_secret"],
    });
    let (status, _, token) =
        call_as(&app, None, "POST", "/api/v1/auth/token", Some(exchange)).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let a = token["access_token"].as_str().expect("token").to_owned();
    let wrong = json!({"client_id": created["credential"]["client_id"], "client_secret": "guess"});
    let (status, ct, body) = call_as(&app, None, "POST", "/api/v1/auth/token", Some(wrong)).await;
    assert_problem(status, &ct, &body, StatusCode::UNAUTHORIZED);
    let b = app.worker_token("box-b").await;

    let register = |name: &str| json!({"name": name, "version": "1", "capacity": 2});
    let (status, ct, body) = call_as(
        &app,
        Some(&a),
        "POST",
        "/api/v1/worker/register",
        Some(register("box-b")),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::FORBIDDEN);
    let (status, _, a_registered) = call_as(
        &app,
        Some(&a),
        "POST",
        "/api/v1/worker/register",
        Some(register("box-a")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, b_registered) = call_as(
        &app,
        Some(&b),
        "POST",
        "/api/v1/worker/register",
        Some(register("box-b")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // A heartbeat as box-b would reconcile box-b's instances: refused to box-a.
    let beat = json!({"worker_id": b_registered["worker_id"], "epoch": b_registered["epoch"], "inventory": []});
    let (status, ct, body) = call_as(
        &app,
        Some(&a),
        "POST",
        "/api/v1/worker/heartbeat",
        Some(beat.clone()),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::FORBIDDEN);
    let (status, _, _) = call_as(
        &app,
        Some(&b),
        "POST",
        "/api/v1/worker/heartbeat",
        Some(beat),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // An instance on box-b: its config is box-b's to fetch, not box-a's.
    let game = json!({"name": "g", "server_type": {"type": "local", "path": "g"}});
    let (_, _, game) = call(&app, "POST", "/api/v1/games", Some(game)).await;
    let config = json!({"name": "main", "executable": "server"});
    let (_, _, config) = call(
        &app,
        "POST",
        &format!("/api/v1/games/{}/configs", game["id"]),
        Some(config),
    )
    .await;
    let start = json!({"config_id": config["id"], "worker": "box-b"});
    let (status, _, started) = call(&app, "POST", "/api/v1/instances", Some(start)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let fetch = format!("/api/v1/worker/instances/{}/config", started["instance_id"]);
    let (status, ct, body) = call_as(&app, Some(&a), "GET", &fetch, None).await;
    assert_problem(status, &ct, &body, StatusCode::FORBIDDEN);
    let (status, _, bundle) = call_as(&app, Some(&b), "GET", &fetch, None).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert_eq!(bundle["config"]["id"], config["id"]);

    // Its console tail is box-b's to hand over: not box-a's, not with another instance's lines,
    // not over the size cap.
    let id = &started["instance_id"];
    let put_tail = format!("/api/v1/worker/instances/{id}/console-tail");
    let line = |instance: &Value, text: &str| {
        json!({"instance_id": instance, "seq": 1, "stream": "stdout", "text": text,
               "at": "2026-11-27T10:00:00Z"})
    };
    let (status, ct, body) = call_as(
        &app,
        Some(&a),
        "PUT",
        &put_tail,
        Some(json!({"lines": [line(id, "from box-a")]})),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::FORBIDDEN);
    let (status, ct, body) = call_as(
        &app,
        Some(&b),
        "PUT",
        &put_tail,
        Some(json!({"lines": [line(&json!(999_999), "another's")]})),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let huge = "x".repeat(600 * 1024);
    let (status, ct, body) = call_as(
        &app,
        Some(&b),
        "PUT",
        &put_tail,
        Some(json!({"lines": [line(id, &huge)]})),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _, _) = call_as(
        &app,
        Some(&b),
        "PUT",
        &put_tail,
        Some(json!({"lines": [line(id, "server ready")]})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Worker tokens are for worker routes, operator tokens for the rest.
    let (status, ct, body) = call_as(&app, Some(&a), "GET", "/api/v1/games", None).await;
    assert_problem(status, &ct, &body, StatusCode::FORBIDDEN);
    let (status, ct, body) = call(
        &app,
        "POST",
        "/api/v1/worker/register",
        Some(register("box-a")),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::FORBIDDEN);
    assert!(a_registered["worker_id"].is_i64());

    // Revoked credentials are not exchanged again.
    let client_id = created["credential"]["client_id"].as_str().expect("id");
    let (status, _, _) = call(
        &app,
        "DELETE",
        &format!("/api/v1/worker-credentials/{client_id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let again = json!({"client_id": client_id, "client_secret": created["client_secret"]});
    let (status, ct, body) = call_as(&app, None, "POST", "/api/v1/auth/token", Some(again)).await;
    assert_problem(status, &ct, &body, StatusCode::UNAUTHORIZED);
    let (status, _, list) = call(&app, "GET", "/api/v1/worker-credentials", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !list.to_string().contains("mms_"),
        "never the secrets: {list}"
    );
}

#[tokio::test]
async fn a_start_goes_to_a_worker_with_the_labels_or_says_why_none_fits() {
    let app = app().await;
    for (name, region) in [("box-eu", "eu"), ("box-us", "us")] {
        app.register(name, json!({"region": region})).await;
    }
    let game = json!({"name": "g", "server_type": {"type": "local", "path": "g"}});
    let (_, _, game) = call(&app, "POST", "/api/v1/games", Some(game)).await;
    let (_, _, config) = call(
        &app,
        "POST",
        &format!("/api/v1/games/{}/configs", game["id"]),
        Some(json!({"name": "main", "executable": "server"})),
    )
    .await;
    let (status, _, started) = call(
        &app,
        "POST",
        "/api/v1/instances",
        Some(json!({"config_id": config["id"], "labels": {"region": "us"}})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let (_, _, worker) = call(
        &app,
        "GET",
        &format!("/api/v1/workers/{}", started["worker_id"]),
        None,
    )
    .await;
    assert_eq!(worker["name"], "box-us");
    let (status, ct, body) = call(
        &app,
        "POST",
        "/api/v1/instances",
        Some(json!({"config_id": config["id"], "labels": {"region": "asia"}})),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::CONFLICT);
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("region=asia")),
        "{body}"
    );
}

#[tokio::test]
async fn games_and_configs_are_updated_and_deleted_unless_something_needs_them() {
    let app = app().await;
    app.register("box", json!({})).await;
    let game = json!({"name": "g", "server_type": {"type": "local", "path": "g"}});
    let (_, _, game) = call(&app, "POST", "/api/v1/games", Some(game)).await;
    let game_uri = format!("/api/v1/games/{}", game["id"]);
    let renamed = json!({"name": "g2", "server_type": {"type": "local", "path": "g"}});
    let (status, _, body) = call(&app, "PUT", &game_uri, Some(renamed)).await;
    assert_eq!(
        (status, body["name"].as_str()),
        (StatusCode::OK, Some("g2"))
    );
    let (_, _, used) = call(
        &app,
        "POST",
        &format!("{game_uri}/configs"),
        Some(json!({"name": "used", "executable": "server"})),
    )
    .await;
    let (_, _, spare) = call(
        &app,
        "POST",
        &format!("{game_uri}/configs"),
        Some(json!({"name": "spare", "executable": "server"})),
    )
    .await;
    let spare_uri = format!("/api/v1/configs/{}", spare["id"]);
    let (status, _, body) = call(
        &app,
        "PUT",
        &spare_uri,
        Some(json!({"name": "spare", "executable": "server", "args": ["-x"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["args"], json!(["-x"]));
    let (status, ct, body) = call(
        &app,
        "PUT",
        &spare_uri,
        Some(json!({"name": "spare", "executable": "../escape"})),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, ct, body) = call(
        &app,
        "PUT",
        &spare_uri,
        Some(json!({"name": "used", "executable": "server"})),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::CONFLICT);

    let (status, _, started) = call(
        &app,
        "POST",
        "/api/v1/instances",
        Some(json!({"config_id": used["id"]})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, ct, body) = call(
        &app,
        "DELETE",
        &format!("/api/v1/configs/{}", used["id"]),
        None,
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::CONFLICT);
    let instance = format!("instance {}", started["instance_id"]);
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&instance)),
        "names the active instance: {body}"
    );
    let (status, ct, body) = call(&app, "DELETE", &game_uri, None).await;
    assert_problem(status, &ct, &body, StatusCode::CONFLICT);
    let (status, _, _) = call(&app, "DELETE", &spare_uri, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, ct, body) = call(&app, "GET", &spare_uri, None).await;
    assert_problem(status, &ct, &body, StatusCode::NOT_FOUND);
    let reader = app.token("viewer", Scope::Read).await;
    let (status, ct, body) = call_as(&app, Some(&reader), "DELETE", &game_uri, None).await;
    assert_problem(status, &ct, &body, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn readiness_names_the_backend_that_does_not_answer() {
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = manman_sqlite::SqliteStore::open(&manman_sqlite::SqliteSettings::new(
        dir.path().join("manman.db"),
    ))
    .await
    .expect("open");
    sqlite.migrate().await.expect("migrate");
    let app = app_on(Store::from_adapter(sqlite.clone())).await;
    let (status, _, body) = call_as(&app, None, "GET", "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "no token needed: {body}");
    assert_eq!(body, json!({"store": "ok", "bus": "ok"}));
    sqlite.close().await;
    let (status, ct, body) = call_as(&app, None, "GET", "/readyz", None).await;
    assert_problem(status, &ct, &body, StatusCode::SERVICE_UNAVAILABLE);
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("the store") && !detail.contains("message bus"),
        "{body}"
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_read_the_store() {
    let app = app().await;
    let game = json!({"name": "g", "server_type": {"type": "local", "path": "g"}});
    let (status, _, _) = call(&app, "POST", "/api/v1/games", Some(game)).await;
    assert_eq!(status, StatusCode::CREATED);
    for id in [1, 2] {
        let (status, _, _) = call(&app, "GET", &format!("/api/v1/games/{id}"), None).await;
        assert!(status == StatusCode::OK || status == StatusCode::NOT_FOUND);
    }
    let request = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .expect("request");
    let response = app.router.clone().oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK, "no token needed");
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/plain; version=0.0.4")
    );
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    for line in [
        r#"manman_http_requests_total{method="POST",route="/api/v1/games",code="201"} 1"#,
        r#"manman_http_requests_total{method="GET",route="/api/v1/games/{id}",code="200"} 1"#,
        r#"manman_http_requests_total{method="GET",route="/api/v1/games/{id}",code="404"} 1"#,
        r#"manman_instances{status="running"} 0"#,
        "manman_status_events_processed_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}

#[tokio::test]
async fn a_request_id_is_answered_and_carried_into_the_commands_it_causes() {
    let app = app().await;
    app.register("box", json!({})).await;
    let game = json!({"name": "g", "server_type": {"type": "local", "path": "g"}});
    let (_, _, game) = call(&app, "POST", "/api/v1/games", Some(game)).await;
    let (_, _, config) = call(
        &app,
        "POST",
        &format!("/api/v1/games/{}/configs", game["id"]),
        Some(json!({"name": "main", "executable": "server"})),
    )
    .await;
    let start = |request_id: &str| {
        Request::builder()
            .method("POST")
            .uri("/api/v1/instances")
            .header(header::AUTHORIZATION, format!("Bearer {}", app.admin))
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-request-id", request_id)
            .body(Body::from(json!({"config_id": config["id"]}).to_string()))
            .expect("request")
    };
    let response = app
        .router
        .clone()
        .oneshot(start("deploy-42.a"))
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["x-request-id"], "deploy-42.a");
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let started: Value = serde_json::from_slice(&bytes).expect("json");
    let (_, _, record) = call(
        &app,
        "GET",
        &format!(
            "/api/v1/commands/{}",
            started["command_id"].as_str().expect("id")
        ),
        None,
    )
    .await;
    assert_eq!(
        record["envelope"]["correlation_id"], "deploy-42.a",
        "{record}"
    );
    assert_eq!(record["envelope"]["issued_by"], "admin");

    // An id that is not sensible is replaced by a new one.
    let response = app
        .router
        .clone()
        .oneshot(start("two words"))
        .await
        .expect("response");
    let id = response.headers()["x-request-id"].to_str().expect("ascii");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

/// Every route that reads a JSON body, with a placeholder id.
const WITH_BODY: [(&str, &str); 11] = [
    ("POST", "/api/v1/games"),
    ("PUT", "/api/v1/games/1"),
    ("POST", "/api/v1/games/1/configs"),
    ("PUT", "/api/v1/configs/1"),
    ("POST", "/api/v1/instances"),
    ("POST", "/api/v1/instances/1/stdin"),
    ("POST", "/api/v1/tokens"),
    ("POST", "/api/v1/worker-credentials"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/worker/register"),
    ("POST", "/api/v1/worker/heartbeat"),
];

#[tokio::test]
async fn hostile_bodies_paths_and_queries_get_a_4xx_problem_never_a_500_or_a_hang() {
    let app = app().await;
    let worker = app.worker_token("box").await;
    let bodies: [(&str, Vec<u8>); 6] = [
        ("malformed JSON", b"{\"name\": ".to_vec()),
        ("an array", b"[1, 2, 3]".to_vec()),
        (
            "wrong types",
            br#"{"name": 42, "config_id": "x", "line": [], "scope": 7}"#.to_vec(),
        ),
        ("an unknown field", br#"{"surprise": true}"#.to_vec()),
        ("not UTF-8", vec![0xff, 0xfe, 0x00, 0x7b]),
        ("a huge body", vec![b' '; BODY_LIMIT + 1]),
    ];
    for (method, uri) in WITH_BODY {
        let token = if uri.starts_with("/api/v1/worker/") {
            worker.as_str()
        } else {
            app.admin.as_str()
        };
        for (what, body) in &bodies {
            let request = Request::builder()
                .method(method)
                .uri(uri)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.clone()))
                .expect("request");
            let response = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                app.router.clone().oneshot(request),
            )
            .await
            .unwrap_or_else(|_| panic!("{method} {uri} with {what} hung"))
            .expect("response");
            let status = response.status();
            assert!(
                status.is_client_error(),
                "{method} {uri} with {what}: {status}"
            );
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "application/problem+json",
                "{method} {uri} with {what}"
            );
        }
    }
    for uri in [
        "/api/v1/games/abc",
        "/api/v1/games/99999999999999999999999",
        "/api/v1/instances/-1/history?limit=x",
        "/api/v1/instances?limit=abc",
        "/api/v1/instances?status=sideways",
        "/api/v1/instances?after=1&surprise=1",
        "/api/v1/commands/not-a-uuid",
        "/api/v1/workers/1.5",
        "/api/v1/tokens/abc",
    ] {
        let method = if uri.starts_with("/api/v1/tokens") {
            "DELETE"
        } else {
            "GET"
        };
        let (status, ct, body) = call(&app, method, uri, None).await;
        assert!(status.is_client_error(), "{method} {uri}: {status} {body}");
        assert_eq!(ct, "application/problem+json", "{method} {uri}");
    }
}

#[tokio::test]
async fn a_worker_only_router_serves_workers_and_nothing_of_the_operator_api() {
    let full = app().await;
    let memory = MemoryBus::new();
    let bus = Bus::new(Arc::new(memory.clone()), Arc::new(memory));
    bus.declare().await.expect("topology");
    let worker_only = App {
        router: manman_http::worker_router(ApiState {
            auth: full.auth.clone(),
            metrics: Metrics::new(),
            host: HostService::new(
                Store::from_adapter(MemoryStore::new()),
                bus,
                Arc::new(SystemClock),
            ),
            console: ConsoleHub::default(),
            shutdown: CancellationToken::new(),
            events: Default::default(),
            streams: Default::default(),
            dead_letters: Default::default(),
        }),
        auth: full.auth.clone(),
        admin: full.admin.clone(),
    };
    let (status, ct, body) = call(&worker_only, "GET", "/api/v1/games", None).await;
    assert_problem(status, &ct, &body, StatusCode::NOT_FOUND);
    let token = worker_only.worker_token("box").await;
    let registration = json!({"name": "box", "version": "1", "capacity": 1});
    let (status, _, _) = call_as(
        &worker_only,
        Some(&token),
        "POST",
        "/api/v1/worker/register",
        Some(registration),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call_as(&worker_only, None, "GET", "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
}
