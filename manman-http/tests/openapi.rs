//! The OpenAPI document: committed as `docs/openapi.json` (this test fails when it drifts;
//! `MANMAN_UPDATE_OPENAPI=1` rewrites it), served at `/openapi.json` and `/docs`, and every
//! operation it lists is a route of the router.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use manman_core::host::{Authenticator, ConsoleHub, HostService, Metrics, SigningKey};
use manman_http::{ApiDoc, ApiState, router};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use utoipa::OpenApi;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

async fn app() -> axum::Router {
    let host = HostService::in_memory().await.expect("a host in memory");
    router(ApiState {
        auth: Authenticator::new(
            host.store().credentials.clone(),
            host.clock(),
            SigningKey::random(),
        ),
        metrics: Metrics::new(),
        host,
        console: ConsoleHub::default(),
        shutdown: CancellationToken::new(),
        events: Default::default(),
        streams: Default::default(),
        dead_letters: Default::default(),
    })
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
    let generated = ApiDoc::openapi().to_pretty_json().expect("json") + "\n";
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
    let served: serde_json::Value = serde_json::from_str(&body).expect("json");
    let generated: serde_json::Value =
        serde_json::from_str(&ApiDoc::openapi().to_json().expect("json")).expect("json");
    assert_eq!(served, generated);
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
    let doc = ApiDoc::openapi();
    let mut operations = 0;
    for (path, item) in &doc.paths.paths {
        let uri = path.replace("{id}", "1").replace("{client_id}", "mmc_0");
        for (method, present) in [
            (Method::GET, item.get.is_some()),
            (Method::POST, item.post.is_some()),
            (Method::PUT, item.put.is_some()),
            (Method::DELETE, item.delete.is_some()),
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
