//! The OpenAPI document: committed as `docs/openapi.json` (this test fails when it drifts;
//! `MANMAN_UPDATE_OPENAPI=1` rewrites it), served at `/openapi.json` and `/docs`, every
//! operation it lists is a route of the router, its operation ids are unique, and what the
//! server really answers fits the schemas it gives (`.ci/run` fuzzes it with schemathesis).

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use manman_core::host::{Authenticator, ConsoleHub, HostService, Metrics, SigningKey};
use manman_http::{ApiState, openapi_document, router};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

/// A router on a host in memory, and its admin token.
async fn app_with_admin() -> (axum::Router, String) {
    let host = HostService::in_memory().await.expect("a host in memory");
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
        auth,
        metrics: Metrics::new(),
        host,
        console: ConsoleHub::default(),
        shutdown: CancellationToken::new(),
        events: Default::default(),
        streams: Default::default(),
        dead_letters: Default::default(),
    });
    (router, admin.expose().to_owned())
}

async fn app() -> axum::Router {
    app_with_admin().await.0
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[test]
fn the_committed_document_matches_the_handlers() {
    let generated = serde_json::to_string_pretty(&openapi_document()).expect("json") + "\n";
    if std::env::var_os("MANMAN_UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &generated).expect("write docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is not what the handlers say: run \
         `MANMAN_UPDATE_OPENAPI=1 cargo test -p manman-http --test openapi` and commit it"
    );
}

#[tokio::test]
async fn the_document_and_the_interactive_page_are_served_without_a_token() {
    let app = app().await;
    let (status, body) = get(&app, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let served: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(served, openapi_document());
    let (status, page) = get(&app, "/docs/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("swagger-ui"), "{page}");
    // The page's script and style come from this server, not from a CDN.
    assert!(!page.contains("https://"), "{page}");
    let (status, script) = get(&app, "/docs/swagger-ui-bundle.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(script.len() > 100_000, "the bundled Swagger UI");
}

#[tokio::test]
async fn every_documented_operation_is_a_route() {
    let app = app().await;
    let doc = openapi_document();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let uri = path.replace("{id}", "1").replace("{client_id}", "mmc_0");
        for (method, present) in [
            (Method::GET, item.get("get").is_some()),
            (Method::POST, item.get("post").is_some()),
            (Method::PUT, item.get("put").is_some()),
            (Method::DELETE, item.get("delete").is_some()),
        ] {
            if !present {
                continue;
            }
            operations += 1;
            let request = Request::builder()
                .method(method.clone())
                .uri(&uri)
                .body(Body::empty())
                .expect("request");
            let response = app.clone().oneshot(request).await.expect("response");
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            let body = String::from_utf8_lossy(&bytes);
            assert!(
                !body.contains("no route for") && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but not routed: {status} {body}"
            );
        }
    }
    assert!(operations >= 39, "{operations} operations documented");
}

#[test]
fn operation_ids_are_unique_and_every_ref_resolves() {
    let doc = openapi_document();
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        }
    }
    let text = doc.to_string();
    assert!(
        !text.contains("\"allOf\""),
        "an allOf is left (a member refusing unknown fields would refuse real answers)"
    );
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    for reference in refs {
        let pointer = reference.strip_prefix('#').expect("a local $ref");
        assert!(
            doc.pointer(pointer).is_some(),
            "{reference} does not resolve"
        );
    }
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(reference)) = object.get("$ref") {
                refs.push(reference.clone());
            }
            object.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

#[test]
fn each_operation_documents_the_answers_it_can_get() {
    let doc = openapi_document();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let responses = operation["responses"].as_object().expect("responses");
            let mut needed = vec!["414", "431"];
            if operation.get("security").is_some() {
                needed.extend(["401", "403", "503"]);
            }
            if operation.get("requestBody").is_some() {
                needed.extend(["400", "413", "415", "422"]);
            }
            let parameters = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if parameters.iter().any(|p| p["in"] == "path") {
                needed.extend(["400", "404"]);
            }
            if parameters.iter().any(|p| p["in"] == "query") {
                needed.extend(["400", "422"]);
            }
            for status in needed {
                let response = &responses
                    .get(status)
                    .unwrap_or_else(|| panic!("{method} {path} does not document {status}"));
                let response = match response["$ref"].as_str() {
                    Some(r) => doc.pointer(&r[1..]).expect("a response component"),
                    None => response,
                };
                assert!(
                    response["content"]["application/problem+json"].is_object(),
                    "{method} {path} {status} is not problem+json"
                );
            }
        }
    }
}

/// What in `value` does not fit `schema` (the keywords the document uses but `pattern`, which
/// needs an ECMA-262 engine: schemathesis checks those in `.ci/run`).
fn misfits(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(reference) = schema["$ref"].as_str() {
        let target = doc.pointer(&reference[1..]).expect("$ref resolves");
        out.extend(misfits(doc, target, value, at));
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let fitting = options
            .iter()
            .filter(|option| misfits(doc, option, value, at).is_empty())
            .count();
        if fitting != 1 {
            out.push(format!("{at}: fits {fitting} of oneOf, not 1: {value}"));
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let is = |t: &str| match t {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    };
    if !types.is_empty() && !types.iter().any(|t| is(t)) {
        out.push(format!("{at}: {value} is not {types:?}"));
        return out;
    }
    if let Some(values) = schema["enum"].as_array()
        && !values.contains(value)
    {
        out.push(format!("{at}: {value} is not one of {values:?}"));
    }
    if let Some(number) = value.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|min| number < min) {
            out.push(format!("{at}: {value} is under the minimum"));
        }
        if schema["maximum"].as_f64().is_some_and(|max| number > max) {
            out.push(format!("{at}: {value} is over the maximum"));
        }
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|min| length < min)
            || schema["maxLength"].as_u64().is_some_and(|max| length > max)
        {
            out.push(format!("{at}: {value} has a length out of range"));
        }
    }
    if let (Some(items), Some(schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            out.extend(misfits(doc, schema, item, &format!("{at}[{i}]")));
        }
    }
    if let Some(object) = value.as_object() {
        for name in schema["required"].as_array().into_iter().flatten() {
            if !object.contains_key(name.as_str().unwrap_or_default()) {
                out.push(format!("{at}: {name} is missing"));
            }
        }
        for (name, field) in object {
            let at = format!("{at}.{name}");
            match schema["properties"].get(name) {
                Some(property) => out.extend(misfits(doc, property, field, &at)),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) if schema.get("properties").is_some() => {
                        out.push(format!("{at} is not allowed"));
                    }
                    Some(extra @ Value::Object(_)) => out.extend(misfits(doc, extra, field, &at)),
                    _ => {}
                },
            }
        }
    }
    out
}

/// The schema an operation documents for an answer of `status`.
fn response_schema<'d>(doc: &'d Value, path: &str, method: &str, status: u16) -> &'d Value {
    let operation = &doc["paths"][path][method];
    let mut response = &operation["responses"][status.to_string()];
    if let Some(reference) = response["$ref"].as_str() {
        response = doc.pointer(&reference[1..]).expect("a response component");
    }
    let content = response["content"].as_object().expect("content");
    &content.values().next().expect("a media type")["schema"]
}

#[tokio::test]
async fn real_answers_fit_the_documented_schemas() {
    let (app, admin) = app_with_admin().await;
    let auth = format!("Bearer {admin}");
    let doc = openapi_document();
    let call = |method: &'static str, uri: String, body: Option<Value>| {
        let (app, auth) = (app.clone(), auth.clone());
        async move { common::oneshot(&app, Some(&auth), method, &uri, body).await }
    };
    let fits = |path: &str, method: &str, answer: &common::Answer| {
        let schema = response_schema(&doc, path, method, answer.status.as_u16());
        let wrong = misfits(&doc, schema, &answer.body, "$");
        assert!(
            wrong.is_empty(),
            "{method} {path} {}: {wrong:?}\n{}",
            answer.status,
            answer.body
        );
    };

    let game = call(
        "POST",
        "/api/v1/games".to_owned(),
        Some(json!({"name": "demo", "server_type": {"type": "local", "path": "games/demo"}})),
    )
    .await;
    assert_eq!(game.status, StatusCode::CREATED, "{}", game.body);
    fits("/api/v1/games", "post", &game);
    let game_id = game.body["id"].as_i64().expect("id");

    // Every field set, integers written as `300.0` and `6e4`: JSON Schema's integers.
    let spec = json!({
        "name": "main", "is_default": true, "is_visible": true, "executable": "bin/server",
        "args": ["-port", "27015"], "env": {"MODE": "x"}, "working_dir": "bin",
        "stop": {"stdin_line": "quit", "signal": "INT", "timeout_s": 10, "signal_grace_s": 5},
        "ready_pattern": "ready", "ready_timeout_s": 300.0,
        "restart": {"mode": "on-crash", "max_restarts": 3, "window_s": 600,
                    "backoff_initial_ms": 1000, "backoff_max_ms": 6e4},
        "clean_exit_is_complete": false,
        "steam": {"branch": "beta", "validate": true, "login": {"named": "ops"}},
    });
    let config = call(
        "POST",
        format!("/api/v1/games/{game_id}/configs"),
        Some(spec),
    )
    .await;
    assert_eq!(config.status, StatusCode::CREATED, "{}", config.body);
    assert_eq!(config.body["ready_timeout_s"], 300);
    assert_eq!(config.body["restart"]["backoff_max_ms"], 60_000);
    fits("/api/v1/games/{id}/configs", "post", &config);
    let config_id = config.body["id"].as_i64().expect("id");
    let got = call("GET", format!("/api/v1/configs/{config_id}"), None).await;
    fits("/api/v1/configs/{id}", "get", &got);
    let listed = call("GET", "/api/v1/configs".to_owned(), None).await;
    fits("/api/v1/configs", "get", &listed);

    // A fraction is not an integer.
    let refused = call(
        "PUT",
        format!("/api/v1/configs/{config_id}"),
        Some(json!({"name": "main", "executable": "x", "ready_timeout_s": 1.5})),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    fits("/api/v1/configs/{id}", "put", &refused);
    let invalid = call(
        "PUT",
        format!("/api/v1/configs/{config_id}"),
        Some(json!({"name": "main", "executable": "../x"})),
    )
    .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    fits("/api/v1/configs/{id}", "put", &invalid);
}

#[tokio::test]
async fn a_page_out_of_range_is_422_naming_limit() {
    let (app, admin) = app_with_admin().await;
    let auth = format!("Bearer {admin}");
    for uri in [
        "/api/v1/instances?limit=0",
        "/api/v1/instances?limit=501",
        "/api/v1/instances/1/history?limit=0",
        "/api/v1/workers/1/history?limit=100000",
    ] {
        let answer = common::oneshot(&app, Some(&auth), "GET", uri, None).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        assert_eq!(answer.content_type, "application/problem+json", "{uri}");
        assert_eq!(answer.body["errors"][0]["field"], "limit", "{uri}");
    }
    for uri in ["/api/v1/instances?limit=1", "/api/v1/instances?limit=500"] {
        let answer = common::oneshot(&app, Some(&auth), "GET", uri, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}");
    }
}
