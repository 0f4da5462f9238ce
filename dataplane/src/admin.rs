//! Admin HTTP endpoint: liveness, readiness and (later) metrics.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::metrics::Metrics;

/// Serves `/health` (process is up), `/ready` (accepting traffic) and
/// `/metrics` (Prometheus text format).
#[derive(Debug)]
pub struct AdminApp {
    metrics: Arc<Metrics>,
}

impl AdminApp {
    /// An admin app exposing `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> AdminApp {
        AdminApp { metrics }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if session.req_header().uri.path() == "/metrics" {
            let body = self.metrics.encode().into_bytes();
            return Response::builder()
                .status(200)
                .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                .header("content-length", body.len())
                .body(body)
                .expect("static response parts are valid");
        }
        let (status, body) = match session.req_header().uri.path() {
            "/health" | "/ready" => (200, serde_json::json!({ "status": "ok" })),
            other => (
                404,
                serde_json::json!({ "error": format!("no admin endpoint at {other}; try /health, /ready or /metrics") }),
            ),
        };
        let body = body.to_string().into_bytes();
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(body)
            .expect("static response parts are valid")
    }
}
