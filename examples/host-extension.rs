//! Extends a host without forking ManMan: a background service of one's own, run and supervised
//! by the host's runtime beside its status processor and sweeps, and a route of one's own,
//! served beside the API through the same layers.
//!
//! The service here is a census that counts the live workers every 200 ms; the route
//! `GET /census` answers with the count. Everything runs in memory on a free port.
//!
//! ```text
//! cargo run -p manman-examples --bin host-extension
//! ```

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use manman_core::host::{HostError, HostService, service_fn};
use manman_core::worker::WorkerRegistration;
use manman_http::{HostServer, ServeOptions};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let host = HostService::in_memory().await?;

    // The service: runs until the host stops; were it to fail, the runtime would log it,
    // count it in /metrics and start it again.
    let live_workers = Arc::new(AtomicUsize::new(0));
    let census = service_fn("census", {
        let (host, live_workers) = (host.clone(), live_workers.clone());
        move |shutdown: CancellationToken| {
            let (host, live_workers) = (host.clone(), live_workers.clone());
            async move {
                let mut every = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok::<(), HostError>(()),
                        _ = every.tick() => {
                            let workers = host.workers().list_workers().await?;
                            let live = workers.iter().filter(|w| w.status.is_live()).count();
                            live_workers.store(live, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    });

    // The route: any axum router, with its own state.
    let routes = Router::new()
        .route(
            "/census",
            get(|State(live): State<Arc<AtomicUsize>>| async move {
                format!("{} live worker(s)\n", live.load(Ordering::Relaxed))
            }),
        )
        .with_state(live_workers.clone());

    let server = HostServer::builder(host.clone(), ServeOptions::new("127.0.0.1:0".parse()?))
        .service(census)
        .routes(routes)
        .start()
        .await?;
    println!("host on http://{}", server.addr());

    // Something to count: a worker registers (as a remote one would, over the API).
    host.gateway()
        .register_worker(&WorkerRegistration {
            name: "census-demo".to_owned(),
            version: "1".to_owned(),
            capacity: 1,
            labels: BTreeMap::new(),
            taken_up: Vec::new(),
        })
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while live_workers.load(Ordering::Relaxed) == 0 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the census did not run"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    print!("GET /census: {}", get_text(server.addr(), "/census").await?);
    let metrics = get_text(server.addr(), "/metrics").await?;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("manman_host_service_up{"))
    {
        println!("{line}");
    }
    server.stop().await;
    Ok(())
}

/// The body of a plain HTTP/1.1 GET (kept dependency-free for the example).
async fn get_text(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP response: {response}"))?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    Ok(body.to_owned())
}
