//! Who may do what, through the router (`tower::ServiceExt::oneshot`, no socket): admins define
//! what runs, `operate` runs it, `read` sees; the embedded worker and the last admin token are
//! protected; a revoked worker credential stops its tokens at once; `Bearer` in any case; token
//! and credential names follow the rules of worker names.

mod common;

use axum::http::StatusCode;
use common::Answer;
use manman_core::auth::Scope;
use manman_core::host::{Authenticator, ConsoleHub, HostService, Metrics, SigningKey};
use manman_http::{ApiState, router};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The router, its authenticator and an admin token.
struct App {
    router: axum::Router,
    auth: Authenticator,
    admin: String,
}

impl Answer {
    /// A problem+json answer with `status` whose detail contains `says`.
    fn problem(&self, status: StatusCode, says: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.content_type, "application/problem+json");
        assert!(
            self.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains(says)),
            "the detail should say {says:?}: {}",
            self.body
        );
    }
}

/// A host whose embedded worker (as `manman up` sets it) is named `local`.
async fn app() -> App {
    let host = HostService::in_memory()
        .await
        .expect("a host in memory")
        .with_embedded_worker("local");
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
    let router = router(ApiState {
        auth: auth.clone(),
        metrics: Metrics::new(),
        host,
        console: ConsoleHub::default(),
        events: Default::default(),
        streams: Default::default(),
        dead_letters: Default::default(),
        shutdown: CancellationToken::new(),
    });
    App {
        router,
        auth,
        admin: admin.expose().to_owned(),
    }
}

impl App {
    async fn token(&self, name: &str, scope: Scope) -> String {
        let (_, secret) = self.auth.create_token(name, scope).await.expect("token");
        secret.expose().to_owned()
    }

    /// Sends a request with `Authorization: <authorization>` (none: no header).
    async fn send(
        &self,
        authorization: Option<&str>,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> Answer {
        common::oneshot(&self.router, authorization, method, uri, body).await
    }

    /// A request with the admin token.
    async fn as_admin(&self, method: &str, uri: &str, body: Option<Value>) -> Answer {
        self.call(&self.admin, method, uri, body).await
    }

    /// A request with `Bearer <token>`.
    async fn call(&self, token: &str, method: &str, uri: &str, body: Option<Value>) -> Answer {
        self.send(Some(&format!("Bearer {token}")), method, uri, body)
            .await
    }

    /// Credentials for `name` made through the API, and a worker token exchanged for them.
    async fn worker(&self, name: &str) -> (String, String) {
        let created = self
            .as_admin(
                "POST",
                "/api/v1/worker-credentials",
                Some(json!({"worker_name": name})),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let client_id = created.body["credential"]["client_id"]
            .as_str()
            .expect("client id")
            .to_owned();
        let exchange = json!({
            "client_id": client_id,
            "client_secret": created.body["client_secret"],
        });
        let token = self
            .send(None, "POST", "/api/v1/auth/token", Some(exchange))
            .await;
        assert_eq!(token.status, StatusCode::OK, "{}", token.body);
        let token = token.body["access_token"]
            .as_str()
            .expect("token")
            .to_owned();
        (client_id, token)
    }

    /// Registers the worker `name` with `token`: its id and epoch.
    async fn register(&self, token: &str, name: &str) -> (i64, i64) {
        let registration = json!({"name": name, "version": "1", "capacity": 4});
        let registered = self
            .call(token, "POST", "/api/v1/worker/register", Some(registration))
            .await;
        assert_eq!(registered.status, StatusCode::OK, "{}", registered.body);
        (
            registered.body["worker_id"].as_i64().expect("id"),
            registered.body["epoch"].as_i64().expect("epoch"),
        )
    }

    /// A game named `name` and its default config `main`, made by the admin: their ids.
    async fn game_with_config(&self, name: &str) -> (i64, i64) {
        let game = self
            .as_admin("POST", "/api/v1/games", Some(game(name)))
            .await;
        assert_eq!(game.status, StatusCode::CREATED, "{}", game.body);
        let game_id = game.body["id"].as_i64().expect("id");
        let config = self
            .as_admin(
                "POST",
                &format!("/api/v1/games/{game_id}/configs"),
                Some(config("main")),
            )
            .await;
        assert_eq!(config.status, StatusCode::CREATED, "{}", config.body);
        (game_id, config.body["id"].as_i64().expect("id"))
    }

    /// The id of the token named `name`, listed with the admin token `admin`.
    async fn token_id(&self, admin: &str, name: &str) -> i64 {
        let tokens = self.call(admin, "GET", "/api/v1/tokens", None).await;
        tokens
            .body
            .as_array()
            .expect("tokens")
            .iter()
            .find(|t| t["name"] == name)
            .and_then(|t| t["id"].as_i64())
            .expect("the token is listed")
    }
}

fn game(name: &str) -> Value {
    json!({"name": name, "server_type": {"type": "local", "path": format!("games/{name}")}})
}

fn config(name: &str) -> Value {
    json!({"name": name, "executable": "fake-game-server", "is_default": true})
}

#[tokio::test]
async fn only_admins_define_games_and_configs_and_shut_workers_down() {
    let app = app().await;
    let read = app.token("dashboard", Scope::Read).await;
    let operate = app.token("moderator", Scope::Operate).await;
    let (_, worker) = app.worker("box-1").await;
    let (worker_id, _) = app.register(&worker, "box-1").await;

    // What admins define: games and configs, kept to try every change on.
    let (game_id, config_id) = app.game_with_config("kept").await;

    // Every change of the catalogue, and worker shutdown: refused to read and operate, with a
    // detail naming the scope needed and the token that lacks it.
    let changes: [(&str, String, Option<Value>); 7] = [
        ("POST", "/api/v1/games".into(), Some(game("new"))),
        (
            "PUT",
            format!("/api/v1/games/{game_id}"),
            Some(game("kept")),
        ),
        ("DELETE", format!("/api/v1/games/{game_id}"), None),
        (
            "POST",
            format!("/api/v1/games/{game_id}/configs"),
            Some(config("other")),
        ),
        (
            "PUT",
            format!("/api/v1/configs/{config_id}"),
            Some(config("main")),
        ),
        ("DELETE", format!("/api/v1/configs/{config_id}"), None),
        (
            "POST",
            format!("/api/v1/workers/{worker_id}/shutdown"),
            None,
        ),
    ];
    for (token, name) in [(&read, "dashboard"), (&operate, "moderator")] {
        for (method, uri, body) in &changes {
            let answer = app.call(token, method, uri, body.clone()).await;
            answer.problem(StatusCode::FORBIDDEN, "admin");
            answer.problem(StatusCode::FORBIDDEN, name);
        }
    }
    // Reading stays open to every scope.
    for token in [&read, &operate] {
        for uri in [
            "/api/v1/games".to_owned(),
            format!("/api/v1/games/{game_id}/configs"),
            format!("/api/v1/configs/{config_id}"),
            format!("/api/v1/workers/{worker_id}"),
        ] {
            let answer = app.call(token, "GET", &uri, None).await;
            assert_eq!(answer.status, StatusCode::OK, "GET {uri}: {}", answer.body);
        }
    }

    // `operate` runs what the admin defined: start, stdin, restart, stop, kill.
    let started = app
        .call(
            &operate,
            "POST",
            "/api/v1/instances",
            Some(json!({"config_id": config_id, "worker": "box-1"})),
        )
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let instance = started.body["instance_id"].as_i64().expect("instance");
    for (action, body) in [
        ("stdin", Some(json!({"line": "say hello"}))),
        ("restart", None),
        ("stop", None),
        ("kill", None),
    ] {
        let answer = app
            .call(
                &operate,
                "POST",
                &format!("/api/v1/instances/{instance}/{action}"),
                body,
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::ACCEPTED,
            "operate may {action}: {}",
            answer.body
        );
    }
    let answer = app
        .call(
            &read,
            "POST",
            "/api/v1/instances",
            Some(json!({"config_id": config_id})),
        )
        .await;
    answer.problem(StatusCode::FORBIDDEN, "operate");

    // The admin may do every change (another game and config to delete: the kept one has an
    // instance).
    let answer = app
        .as_admin(
            "PUT",
            &format!("/api/v1/games/{game_id}"),
            Some(game("kept")),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let answer = app
        .as_admin(
            "PUT",
            &format!("/api/v1/configs/{config_id}"),
            Some(config("main")),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let (other_id, other_config_id) = app.game_with_config("other").await;
    for uri in [
        format!("/api/v1/configs/{other_config_id}"),
        format!("/api/v1/games/{other_id}"),
    ] {
        let answer = app.as_admin("DELETE", &uri, None).await;
        assert_eq!(
            answer.status,
            StatusCode::NO_CONTENT,
            "DELETE {uri}: {}",
            answer.body
        );
    }
    let answer = app
        .as_admin(
            "POST",
            &format!("/api/v1/workers/{worker_id}/shutdown"),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
}

#[tokio::test]
async fn the_embedded_worker_of_manman_up_is_not_shut_down_through_the_api() {
    let app = app().await;
    let (_, local) = app.worker("local").await;
    let (local_id, _) = app.register(&local, "local").await;
    let answer = app
        .as_admin(
            "POST",
            &format!("/api/v1/workers/{local_id}/shutdown"),
            None,
        )
        .await;
    answer.problem(StatusCode::CONFLICT, "stop `manman up` instead");
    let worker = app
        .as_admin("GET", &format!("/api/v1/workers/{local_id}"), None)
        .await;
    assert_eq!(worker.body["ended_at"], Value::Null, "{}", worker.body);
    // Another worker is shut down as usual.
    let (_, remote) = app.worker("box-1").await;
    let (remote_id, _) = app.register(&remote, "box-1").await;
    let answer = app
        .as_admin(
            "POST",
            &format!("/api/v1/workers/{remote_id}/shutdown"),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
}

#[tokio::test]
async fn the_last_admin_token_cannot_revoke_itself() {
    let app = app().await;
    let first = app.token_id(&app.admin, "admin").await;
    let answer = app
        .as_admin("DELETE", &format!("/api/v1/tokens/{first}"), None)
        .await;
    answer.problem(StatusCode::CONFLICT, "create another admin token first");
    let still = app.as_admin("GET", "/api/v1/tokens", None).await;
    assert_eq!(still.status, StatusCode::OK, "the admin token still works");

    // With a second admin token, the first may go; then the second is the last.
    let created = app
        .as_admin(
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": "owner-2", "scope": "admin"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let second = created.body["secret"].as_str().expect("secret").to_owned();
    let second_id = created.body["token"]["id"].as_i64().expect("id");
    let answer = app
        .as_admin("DELETE", &format!("/api/v1/tokens/{first}"), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let answer = app
        .call(
            &second,
            "DELETE",
            &format!("/api/v1/tokens/{second_id}"),
            None,
        )
        .await;
    answer.problem(StatusCode::CONFLICT, "last unrevoked admin token");
    // Revoking other scopes is never refused.
    app.token("reader", Scope::Read).await;
    let reader = app.token_id(&second, "reader").await;
    let answer = app
        .call(&second, "DELETE", &format!("/api/v1/tokens/{reader}"), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

#[tokio::test]
async fn a_revoked_credential_stops_its_worker_tokens_at_register_heartbeat_and_config_fetch() {
    let app = app().await;
    let (client_id, token) = app.worker("box-1").await;
    let (worker_id, epoch) = app.register(&token, "box-1").await;
    let beat = json!({"worker_id": worker_id, "epoch": epoch, "inventory": []});
    let answer = app
        .call(
            &token,
            "POST",
            "/api/v1/worker/heartbeat",
            Some(beat.clone()),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
    // An instance of a config on this worker, so that it may fetch the config.
    let (_, config_id) = app.game_with_config("fake").await;
    let started = app
        .as_admin(
            "POST",
            "/api/v1/instances",
            Some(json!({"config_id": config_id})),
        )
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let fetch = format!(
        "/api/v1/worker/instances/{}/config",
        started.body["instance_id"]
    );
    let answer = app.call(&token, "GET", &fetch, None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);

    let answer = app
        .as_admin(
            "DELETE",
            &format!("/api/v1/worker-credentials/{client_id}"),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);

    // The token is still signed and unexpired, but its credentials are revoked.
    let registration = json!({"name": "box-1", "version": "1", "capacity": 4});
    for (method, uri, body) in [
        ("POST", "/api/v1/worker/heartbeat", Some(beat)),
        ("POST", "/api/v1/worker/register", Some(registration)),
        ("GET", fetch.as_str(), None),
    ] {
        let answer = app.call(&token, method, uri, body).await;
        answer.problem(StatusCode::UNAUTHORIZED, "revoked");
        answer.problem(StatusCode::UNAUTHORIZED, &client_id);
    }
    // Other credentials for another worker are not affected.
    let (_, other) = app.worker("box-2").await;
    app.register(&other, "box-2").await;
}

#[tokio::test]
async fn the_bearer_scheme_is_matched_in_any_case() {
    let app = app().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let answer = app
            .send(
                Some(&format!("{scheme} {}", app.admin)),
                "GET",
                "/api/v1/workers",
                None,
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{scheme}: {}", answer.body);
    }
    let answer = app
        .send(
            Some(&format!("Basic {}", app.admin)),
            "GET",
            "/api/v1/workers",
            None,
        )
        .await;
    answer.problem(StatusCode::UNAUTHORIZED, "Bearer");
}

#[tokio::test]
async fn token_and_credential_names_follow_the_rules_of_worker_names() {
    let app = app().await;
    let long = "a".repeat(65);
    for name in [
        "",
        "two words",
        "-leading-dash",
        "a/b",
        "naïve",
        "tab\there",
        long.as_str(),
    ] {
        let answer = app
            .as_admin(
                "POST",
                "/api/v1/tokens",
                Some(json!({"name": name, "scope": "read"})),
            )
            .await;
        answer.problem(StatusCode::UNPROCESSABLE_ENTITY, "name");
        assert_eq!(answer.body["errors"][0]["field"], "name", "{}", answer.body);
        let answer = app
            .as_admin(
                "POST",
                "/api/v1/worker-credentials",
                Some(json!({"worker_name": name})),
            )
            .await;
        answer.problem(StatusCode::UNPROCESSABLE_ENTITY, "worker_name");
        assert_eq!(
            answer.body["errors"][0]["field"], "worker_name",
            "{}",
            answer.body
        );
    }
    let answer = app
        .as_admin(
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": "ci.eu-1_b", "scope": "read"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let answer = app
        .as_admin(
            "POST",
            "/api/v1/worker-credentials",
            Some(json!({"worker_name": "box-1.eu_2"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
}
