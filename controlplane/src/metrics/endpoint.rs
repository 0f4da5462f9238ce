//! The metrics listener (`--metrics-listen`): a minimal HTTP/1 server with
//! two routes and no authentication (keep it on loopback or a management
//! network, like the gateway's admin listener).
//!
//! - `GET /metrics`: the OpenMetrics text exposition ([`Metrics::scrape`]).
//!   It answers even when Postgres is down (`tandem_controlplane_database_up
//!   0`).
//! - `GET /health`: `200 ok` while the process serves; liveness only (gRPC
//!   health and `database_up` tell more).
//!
//! Other paths answer 404, other methods 405.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::Metrics;
use crate::fleet::Fleet;

/// Content type of the exposition produced by `prometheus-client`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a scrape reads.
#[derive(Debug, Clone)]
pub struct MetricsSource {
    /// The event metrics.
    pub metrics: Metrics,
    /// The pool whose size is reported and through which counts are read.
    pub pool: PgPool,
    /// The agent streams of this process.
    pub fleet: Fleet,
}

/// Serves `/metrics` and `/health` on `listener` until the returned task is
/// aborted (which also closes its open connections).
pub fn spawn(listener: TcpListener, source: MetricsSource) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        tracing::warn!(error = %err, "metrics listener: accept failed");
                        continue;
                    }
                },
                // Reap finished connections so the set does not grow.
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let source = source.clone();
            connections.spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let source = source.clone();
                    async move { Ok::<_, Infallible>(answer(&source, &request).await) }
                });
                if let Err(err) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(error = %err, "metrics listener: connection failed");
                }
            });
        }
    })
}

async fn answer(source: &MetricsSource, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if path != "/metrics" && path != "/health" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: GET /metrics or /health\n",
        );
    }
    if request.method() != Method::GET {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET is served\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        return response;
    }
    if path == "/health" {
        return plain(StatusCode::OK, "ok\n");
    }
    let body = source
        .metrics
        .scrape(&source.pool, source.fleet.connected().len())
        .await;
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
    );
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
