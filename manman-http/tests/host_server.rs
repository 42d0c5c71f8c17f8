//! `HostServer::builder`: an embedder's routes are served beside the API through its layers
//! (but not its authentication), and an embedder's service runs in the host's runtime,
//! supervised like the host's own.

use axum::Router;
use axum::routing::get;
use manman_core::host::{HostService, ServiceError, service_fn};
use manman_http::{HostServer, REQUEST_ID_HEADER, ServeOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

async fn metrics(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test]
async fn an_embedders_route_and_service_run_beside_the_hosts_own() {
    let host = HostService::in_memory().await.expect("host");
    let runs = Arc::new(AtomicU32::new(0));
    let service = service_fn("flaky", {
        let runs = runs.clone();
        move |shutdown: CancellationToken| {
            let runs = runs.clone();
            async move {
                if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err::<(), ServiceError>("the first run fails".into());
                }
                shutdown.cancelled().await;
                Ok(())
            }
        }
    });
    let server = HostServer::builder(host, ServeOptions::new("127.0.0.1:0".parse().unwrap()))
        .service(service)
        .routes(Router::new().route("/extra", get(|| async { "extra" })))
        .start()
        .await
        .expect("start");
    let base = format!("http://{}", server.addr());
    let client = reqwest::Client::new();

    let extra = client.get(format!("{base}/extra")).send().await.unwrap();
    assert_eq!(extra.status(), 200);
    assert!(
        extra.headers().contains_key(REQUEST_ID_HEADER),
        "through the API's layers: {:?}",
        extra.headers()
    );
    assert_eq!(
        extra
            .headers()
            .get("x-content-type-options")
            .map(|v| v.as_bytes()),
        Some(&b"nosniff"[..])
    );
    assert_eq!(extra.text().await.unwrap(), "extra");
    let guarded = client
        .get(format!("{base}/api/v1/games"))
        .send()
        .await
        .unwrap();
    assert_eq!(guarded.status(), 401, "the API keeps its authentication");
    let unknown = client.get(format!("{base}/nowhere")).send().await.unwrap();
    assert_eq!(unknown.status(), 404, "the API's fallback still answers");

    // Restarted 1 s after its failure, counted, and up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics(&client, &base).await;
        if text.contains("manman_host_service_restarts_total{service=\"flaky\"} 1")
            && text.contains("manman_host_service_up{service=\"flaky\"} 1")
        {
            assert!(text.contains("manman_host_service_up{service=\"http api\"} 1"));
            assert!(
                text.contains("manman_host_service_restarts_total{service=\"status processor\"} 0")
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failed service was not restarted: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    server.stop().await;
    assert!(
        client.get(format!("{base}/extra")).send().await.is_err(),
        "nothing listens once the host stopped"
    );
}
