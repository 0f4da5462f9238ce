//! Admin HTTP endpoint (loopback by default; not for applications).
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/health` | the process is up |
//! | GET | `/ready` | accepting traffic |
//! | GET | `/metrics` | Prometheus text format |
//! | GET | `/upstreams` | primary and backup nodes (after discovery) |
//! | GET | `/replication` | replayer state, queue depth, lag, dead letters |
//! | GET | `/replication/records?from=N&limit=M&bodies=true` | the queue view: recorded ops (kind, index, id, version, `version_fenced`), bodies redacted unless asked |
//! | POST | `/replication/pause` | stop replaying (writes are still recorded) |
//! | POST | `/replication/resume` | replay again |
//! | POST | `/replication/cutover?max_lag=N&max_hold_ms=M` | refused (409) while lag > N (default 1000); else hold writes up to M ms, drain, swap primary and backup, release (again to roll back) |
//! | POST | `/replication/repair?dry_run=true` | skip the corrupt queue region the replayer is halted on; reports exactly what is lost |
//! | GET | `/replication/dead-letters` | list dead letters |
//! | POST | `/replication/dead-letters/retry` | body `{"ids":[..]}` or `{"all":true}`: re-apply |
//! | POST | `/replication/dead-letters/skip` | body `{"ids":[..]}` or `{"all":true}`: discard |
//!
//! Errors are JSON: `{"error": "...", "status": N}`.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{Value, json};

use crate::metrics::Metrics;
use crate::replication::{CutoverError, DEFAULT_CUTOVER_MAX_LAG, Replication, repair_json};
use crate::traffic::Traffic;
use crate::upstream::Upstream;

/// The admin application.
#[derive(Debug)]
pub struct AdminApp {
    metrics: Arc<Metrics>,
    traffic: Arc<Traffic>,
    replication: Option<Arc<Replication>>,
    upstreams: Vec<Arc<Upstream>>,
}

impl AdminApp {
    /// An admin app exposing `metrics` and, when configured, the
    /// replication controls.
    pub fn new(
        metrics: Arc<Metrics>,
        traffic: Arc<Traffic>,
        replication: Option<Arc<Replication>>,
        upstreams: Vec<Arc<Upstream>>,
    ) -> AdminApp {
        AdminApp {
            metrics,
            traffic,
            replication,
            upstreams,
        }
    }

    fn upstreams_json(&self) -> Value {
        let upstreams: Vec<Value> = self
            .upstreams
            .iter()
            .map(|u| {
                json!({
                    "role": u.role,
                    "url": u.config().url,
                    "discovery": u.config().discovery,
                    "nodes": u.nodes().iter().map(|n| n.label()).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({ "upstreams": upstreams })
    }

    async fn route(&self, session: &mut ServerSession) -> (u16, Value) {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let query = session.req_header().uri.query().unwrap_or("").to_string();
        match (method.clone(), path.as_str()) {
            (Method::GET, "/health") => (200, json!({ "status": "ok" })),
            // Draining: still serving, but load balancers should stop
            // sending new traffic here.
            (Method::GET, "/ready") if self.traffic.is_draining() => (
                503,
                json!({ "status": "draining", "in_flight_requests": self.traffic.in_flight() }),
            ),
            (Method::GET, "/ready") => (200, json!({ "status": "ok" })),
            (Method::GET, "/upstreams") => (200, self.upstreams_json()),
            (_, p) if p.starts_with("/replication") => {
                let Some(replication) = &self.replication else {
                    return error(
                        404,
                        "replication is not configured on this gateway (no [backup] section)",
                    );
                };
                self.replication_route(session, replication, &method, p, &query)
                    .await
            }
            (_, other) => error(
                404,
                &format!(
                    "no admin endpoint {method} {other}; see /health, /ready, /metrics, /upstreams, /replication"
                ),
            ),
        }
    }

    async fn replication_route(
        &self,
        session: &mut ServerSession,
        replication: &Replication,
        method: &Method,
        path: &str,
        query: &str,
    ) -> (u16, Value) {
        match (method, path) {
            (&Method::GET, "/replication") => (200, replication.status_json()),
            (&Method::POST, "/replication/pause") => {
                replication.pause();
                (200, replication.status_json())
            }
            (&Method::POST, "/replication/resume") => {
                replication.resume();
                (200, replication.status_json())
            }
            (&Method::POST, "/replication/cutover") => {
                let param = |name: &str| {
                    query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                        .map(|v| {
                            v.parse::<u64>()
                                .map_err(|_| format!("{name}: not a number: {v:?}"))
                        })
                        .transpose()
                };
                let (max_lag, max_hold_ms) = match (param("max_lag"), param("max_hold_ms")) {
                    (Ok(lag), Ok(hold)) => (lag.unwrap_or(DEFAULT_CUTOVER_MAX_LAG), hold),
                    (Err(message), _) | (_, Err(message)) => return error(400, &message),
                };
                let max_hold = std::time::Duration::from_millis(
                    max_hold_ms.unwrap_or(replication.max_hold().as_millis() as u64),
                );
                match replication.cutover(max_lag, max_hold).await {
                    Ok(report) => (200, json!(report)),
                    Err(err @ CutoverError::Precondition(_)) => error(409, &err.to_string()),
                    Err(err @ CutoverError::Timeout(_)) => error(503, &err.to_string()),
                }
            }
            (&Method::POST, "/replication/repair") => {
                let dry_run = query
                    .split('&')
                    .any(|kv| kv == "dry_run=true" || kv == "dry_run");
                match replication.repair(dry_run) {
                    Ok(report) => (200, repair_json(&report)),
                    Err(err) => error(409, &format!("repair not possible: {err}")),
                }
            }
            (&Method::GET, "/replication/records") => {
                let mut from = None;
                let mut limit = 20usize;
                let mut bodies = false;
                for kv in query.split('&').filter(|kv| !kv.is_empty()) {
                    let (key, value) = kv.split_once('=').unwrap_or((kv, "true"));
                    let bad = || error(400, &format!("{key}: invalid value {value:?}"));
                    match key {
                        "from" => match value.parse() {
                            Ok(v) => from = Some(v),
                            Err(_) => return bad(),
                        },
                        "limit" => match value.parse::<usize>() {
                            Ok(v) if (1..=1000).contains(&v) => limit = v,
                            _ => return error(400, "limit: must be between 1 and 1000"),
                        },
                        "bodies" => match value {
                            "true" => bodies = true,
                            "false" => bodies = false,
                            _ => return bad(),
                        },
                        other => {
                            return error(
                                400,
                                &format!("unknown parameter {other:?}; use from, limit, bodies"),
                            );
                        }
                    }
                }
                match replication.peek_json(from, limit, bodies) {
                    Ok(view) => (200, view),
                    Err(err) => error(500, &format!("reading the queue: {err}")),
                }
            }
            (&Method::GET, "/replication/dead-letters") => {
                let entries = replication.dead_letters.list();
                (
                    200,
                    json!({ "count": entries.len(), "dead_letters": entries }),
                )
            }
            (
                &Method::POST,
                "/replication/dead-letters/retry" | "/replication/dead-letters/skip",
            ) => {
                let selection = match read_selection(session).await {
                    Ok(selection) => selection,
                    Err(message) => return error(400, &message),
                };
                if path.ends_with("/retry") {
                    match replication.retry_dead_letters(selection.as_deref()).await {
                        Ok(report) => (200, json!(report)),
                        Err(err) => error(503, &format!("retry failed: {err:#}")),
                    }
                } else {
                    match replication.skip_dead_letters(selection.as_deref()) {
                        Ok(skipped) => (200, json!({ "skipped": skipped })),
                        Err(err) => error(500, &format!("skip failed: {err:#}")),
                    }
                }
            }
            _ => error(404, &format!("no admin endpoint {method} {path}")),
        }
    }
}

/// Reads `{"ids":[...]}` (→ `Some(ids)`) or `{"all":true}` (→ `None`).
async fn read_selection(session: &mut ServerSession) -> Result<Option<Vec<u64>>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(|e| format!("cannot read the request body: {e}"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > 1 << 20 {
            return Err("request body too large".into());
        }
    }
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        format!("body must be JSON like {{\"ids\":[1,2]}} or {{\"all\":true}}: {e}")
    })?;
    if value.get("all").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    let ids = value
        .get("ids")
        .and_then(Value::as_array)
        .ok_or("body needs \"ids\" (array of dead-letter ids) or \"all\": true")?;
    ids.iter()
        .map(|id| {
            id.as_u64()
                .ok_or_else(|| format!("ids: {id} is not a dead-letter id"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn error(status: u16, message: &str) -> (u16, Value) {
    (status, json!({ "error": message, "status": status }))
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if session.req_header().uri.path() == "/metrics" {
            if let Some(replication) = &self.replication {
                replication.update_gauges();
            }
            let body = self.metrics.encode().into_bytes();
            return Response::builder()
                .status(200)
                .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                .header("content-length", body.len())
                .body(body)
                .expect("static response parts are valid");
        }
        let (status, body) = self.route(session).await;
        let body = body.to_string().into_bytes();
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(body)
            .expect("static response parts are valid")
    }
}
