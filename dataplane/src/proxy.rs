//! The HTTP proxy in front of the primary cluster.
//!
//! Every request is forwarded to the primary over HTTP/1.1 and the primary's
//! answer is streamed back unchanged. When the primary cannot be reached the
//! client gets a JSON error body shaped like the search engines' own errors,
//! so existing client libraries surface a readable message.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;

use crate::limits::NodePermit;
use crate::metrics::Metrics;
use crate::respond::{error_body, write_json, write_limited};
use crate::roles::Roles;
use crate::traffic::{InFlight, Traffic};
use crate::upstream::{ExchangeError, Selected, UpstreamNode};
use crate::write_path::WritePath;
use tandem_es::classify::{RequestClass, classify};

/// Per-request state shared between proxy phases.
#[derive(Debug, Default)]
pub struct RequestCtx {
    /// Upstream node the request was sent to, for logs and errors.
    upstream: Option<Arc<UpstreamNode>>,
    /// Connection-limit slot, held until the request ends.
    permit: Option<NodePermit>,
    /// The node chosen (and admitted) in `request_filter`.
    selected: Option<Selected>,
    /// When the request arrived.
    started: Option<std::time::Instant>,
    /// Set when the write path answered the request itself.
    handled: bool,
    /// Counts the request as in flight (for draining).
    _in_flight: Option<InFlight>,
}

/// The gateway's [`ProxyHttp`] implementation.
#[derive(Debug)]
pub struct GatewayProxy {
    roles: Arc<Roles>,
    traffic: Arc<Traffic>,
    metrics: Arc<Metrics>,
    writes: Option<Arc<WritePath>>,
}

impl GatewayProxy {
    /// A proxy forwarding to the current primary, reporting into `metrics`, and
    /// recording writes through `writes` when replication is configured.
    pub fn new(
        roles: Arc<Roles>,
        traffic: Arc<Traffic>,
        metrics: Arc<Metrics>,
        writes: Option<Arc<WritePath>>,
    ) -> Self {
        GatewayProxy {
            roles,
            traffic,
            metrics,
            writes,
        }
    }
}

#[async_trait]
impl ProxyHttp for GatewayProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            started: Some(std::time::Instant::now()),
            _in_flight: Some(self.traffic.begin()),
            ..RequestCtx::default()
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool>
    where
        Self::CTX: Send + Sync,
    {
        if let Some(writes) = &self.writes {
            let req = session.req_header();
            let class = classify(&req.method, req.uri.path(), req.uri.query());
            match &class {
                RequestClass::Read | RequestClass::Passthrough => {}
                RequestClass::Unsupported { reason } => {
                    let reason = format!(
                        "{reason} (refused by the Tandem gateway: it cannot be replicated to the backup)"
                    );
                    write_json(
                        session,
                        400,
                        error_body(400, "tandem_unsupported_write", &reason),
                    )
                    .await?;
                    ctx.handled = true;
                    self.metrics.observe_request(
                        "unsupported",
                        "primary",
                        400,
                        ctx.started.map(|s| s.elapsed()).unwrap_or_default(),
                    );
                    return Ok(true);
                }
                _ => {
                    writes.handle(session, &class).await?;
                    ctx.handled = true;
                    return Ok(true);
                }
            }
        }
        // Proxied requests pass the per-node limits here, before Pingora
        // connects, so a refusal is an ordinary response on a connection
        // the client may keep using.
        let body_bytes = session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        match self.roles.current().primary.select(body_bytes).await {
            Ok(selected) => {
                self.metrics
                    .observe_limiter_wait("read", "primary", selected.permit.waited);
                ctx.selected = Some(selected);
                Ok(false)
            }
            Err(ExchangeError::Limited(limited)) => {
                self.metrics
                    .observe_limiter_rejection("primary", limited.kind.as_str());
                write_limited(session, &limited).await?;
                ctx.handled = true;
                self.metrics.observe_request(
                    "read",
                    "primary",
                    429,
                    ctx.started.map(|s| s.elapsed()).unwrap_or_default(),
                );
                Ok(true)
            }
            Err(other) => {
                let reason = format!("primary cluster: {other}");
                write_json(
                    session,
                    502,
                    error_body(502, "tandem_primary_unavailable", &reason),
                )
                .await?;
                ctx.handled = true;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        // Admitted in request_filter; on a Pingora retry, pick again without
        // charging the limits twice for one client request.
        let selected = match ctx.selected.take() {
            Some(selected) => selected,
            None => self
                .roles
                .current()
                .primary
                .select(0)
                .await
                .map_err(|e| Error::explain(ErrorType::ConnectNoRoute, e.to_string()))?,
        };
        let Selected { peer, node, permit } = selected;
        ctx.upstream = Some(node);
        ctx.permit = Some(permit);
        Ok(Box::new(peer))
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy
    where
        Self::CTX: Send + Sync,
    {
        let (status, kind) = match e.etype() {
            ErrorType::HTTPStatus(code) => (*code, "tandem_http_error"),
            ErrorType::ConnectTimedout
            | ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::TLSHandshakeFailure => (502, "tandem_primary_unavailable"),
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => (504, "tandem_primary_timeout"),
            _ => match e.esource() {
                ErrorSource::Upstream => (502, "tandem_primary_error"),
                ErrorSource::Downstream => (400, "tandem_bad_request"),
                ErrorSource::Internal | ErrorSource::Unset => (500, "tandem_internal_error"),
            },
        };
        let downstream_gone = e.esource() == &ErrorSource::Downstream
            && matches!(
                e.etype(),
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
            );
        if !downstream_gone {
            let upstream = match &ctx.upstream {
                Some(node) => node.label(),
                None => self.roles.current().primary.config().url.clone(),
            };
            let reason = format!("primary cluster at {upstream}: {e}");
            if let Err(write_err) =
                write_json(session, status, error_body(status, kind, &reason)).await
            {
                tracing::debug!(error = %write_err, "could not send error response");
            }
        }
        FailToProxy {
            error_code: if downstream_gone { 0 } else { status },
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        let status = session
            .response_written()
            .map_or(0, |resp| resp.status.as_u16());
        if let Some(started) = ctx.started.filter(|_| !ctx.handled) {
            self.metrics
                .observe_request("read", "primary", status, started.elapsed());
        }
        let req = session.req_header();
        match e {
            Some(err) => tracing::warn!(
                method = %req.method,
                path = req.uri.path(),
                status,
                upstream = ?ctx.upstream.as_ref().map(|node| node.label()),
                error = %err,
                "request failed"
            ),
            None => tracing::debug!(
                method = %req.method,
                path = req.uri.path(),
                status,
                "request proxied"
            ),
        }
    }
}
