//! Admin HTTP endpoint: liveness, readiness and (later) metrics.

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

/// Serves `/health` (process is up) and `/ready` (accepting traffic).
#[derive(Debug, Default)]
pub struct AdminApp;

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let (status, body) = match session.req_header().uri.path() {
            "/health" | "/ready" => (200, serde_json::json!({ "status": "ok" })),
            other => (
                404,
                serde_json::json!({ "error": format!("no admin endpoint at {other}; try /health or /ready") }),
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
