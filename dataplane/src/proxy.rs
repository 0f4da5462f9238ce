//! The HTTP proxy in front of the primary cluster.
//!
//! Every request is forwarded to the primary over HTTP/1.1 and the primary's
//! answer is streamed back unchanged. When the primary cannot be reached the
//! client gets a JSON error body shaped like the search engines' own errors,
//! so existing client libraries surface a readable message.

use std::net::SocketAddr;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::upstreams::peer::ALPN;

use crate::config::{Endpoint, UpstreamConfig};

/// Per-request state shared between proxy phases.
#[derive(Debug, Default)]
pub struct RequestCtx {
    /// Upstream address the request was sent to, for logs and errors.
    upstream: Option<SocketAddr>,
}

/// A resolved upstream with its connection settings.
#[derive(Debug, Clone)]
pub struct Upstream {
    endpoint: Endpoint,
    config: UpstreamConfig,
}

impl Upstream {
    /// Builds an upstream from validated configuration.
    pub fn new(endpoint: Endpoint, config: UpstreamConfig) -> Self {
        Upstream { endpoint, config }
    }

    async fn resolve(&self) -> Result<SocketAddr> {
        let target = (self.endpoint.host.as_str(), self.endpoint.port);
        tokio::net::lookup_host(target)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| {
                Error::explain(
                    ErrorType::ConnectNoRoute,
                    format!("cannot resolve upstream host {}", self.endpoint.host),
                )
            })
    }

    async fn peer(&self) -> Result<(HttpPeer, SocketAddr)> {
        let addr = self.resolve().await?;
        let mut peer = HttpPeer::new(addr, self.endpoint.tls, self.endpoint.host.clone());
        // HTTP/1.1 only: Pingora may retry non-idempotent requests on HTTP/2
        // stream errors, which would duplicate writes.
        peer.options.alpn = ALPN::H1;
        peer.options.connection_timeout = Some(self.config.connect_timeout());
        peer.options.read_timeout = Some(self.config.read_timeout());
        peer.options.verify_cert = self.config.tls_verify;
        peer.options.verify_hostname = self.config.tls_verify;
        Ok((peer, addr))
    }
}

/// The gateway's [`ProxyHttp`] implementation.
#[derive(Debug)]
pub struct GatewayProxy {
    primary: Upstream,
}

impl GatewayProxy {
    /// A proxy forwarding to `primary`.
    pub fn new(primary: Upstream) -> Self {
        GatewayProxy { primary }
    }
}

/// JSON error body in the shape Elasticsearch and OpenSearch use.
pub fn error_body(status: u16, kind: &str, reason: &str) -> Bytes {
    let body = serde_json::json!({
        "error": {
            "root_cause": [{ "type": kind, "reason": reason }],
            "type": kind,
            "reason": reason,
        },
        "status": status,
    });
    Bytes::from(body.to_string())
}

#[async_trait]
impl ProxyHttp for GatewayProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx::default()
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let (peer, addr) = self.primary.peer().await?;
        ctx.upstream = Some(addr);
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
            let upstream = ctx
                .upstream
                .map(|a| a.to_string())
                .unwrap_or_else(|| self.primary.endpoint.host.clone());
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
        let req = session.req_header();
        match e {
            Some(err) => tracing::warn!(
                method = %req.method,
                path = req.uri.path(),
                status,
                upstream = ?ctx.upstream,
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

/// Writes a complete JSON response to the client.
pub async fn write_json(session: &mut Session, status: u16, body: Bytes) -> Result<()> {
    let mut header = ResponseHeader::build(status, Some(3))?;
    header.insert_header("content-type", "application/json; charset=UTF-8")?;
    header.insert_header("content-length", body.len().to_string())?;
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}
