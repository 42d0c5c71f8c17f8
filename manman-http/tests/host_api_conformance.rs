//! The `HostApi` conformance suite (`manman_core::testing::host_api`) on `HttpHostApi`, against
//! a real host over HTTP: a `HostServer` on an in-memory host, each worker with credentials of
//! its own from the host's authenticator.

use async_trait::async_trait;
use manman_core::host::HostService;
use manman_core::ports::HostApi;
use manman_core::store::Store;
use manman_core::testing::host_api::{HostApiFixture, run_all};
use manman_http::{HostServer, HttpHostApi, ServeOptions, WorkerCredentials};
use std::sync::Arc;

/// A host served on a local port; every worker reaches it over HTTP.
struct OverHttp {
    host: HostService,
    server: HostServer,
}

#[async_trait]
impl HostApiFixture for OverHttp {
    async fn worker_api(&self, name: &str) -> Arc<dyn HostApi> {
        let (credential, secret) = self
            .server
            .auth()
            .create_worker_credential(name)
            .await
            .expect("worker credentials");
        Arc::new(HttpHostApi::new(
            &format!("http://{}", self.server.addr()),
            WorkerCredentials {
                client_id: credential.client_id,
                client_secret: secret.expose().to_owned(),
            },
        ))
    }

    fn store(&self) -> &Store {
        self.host.store()
    }
}

#[tokio::test]
async fn http_host_api_passes_the_suite() {
    let host = HostService::in_memory().await.expect("host");
    let server = HostServer::start(
        host.clone(),
        ServeOptions::new("127.0.0.1:0".parse().expect("addr")),
    )
    .await
    .expect("serve");
    let fixture = OverHttp { host, server };
    run_all(&fixture).await;
    fixture.server.stop().await;
}
