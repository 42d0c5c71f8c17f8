//! `/healthz`: the process is alive.

pub(crate) async fn healthz() -> &'static str {
    "ok"
}
