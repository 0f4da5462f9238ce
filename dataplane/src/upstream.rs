//! Upstream clusters: their nodes, per-node limits, node discovery, and the
//! gateway's own HTTP exchanges with them.
//!
//! An [`Upstream`] starts with the configured endpoint as its only node. With
//! discovery on, it periodically asks the cluster for its HTTP publish
//! addresses (`GET /_nodes/http`) and spreads requests round-robin over
//! them; each node has its own [`NodeLimiter`], so limits are per node, as
//! in the seed recipe. A node that survives a refresh keeps its limiter
//! state.
//!
//! [`Upstream::exchange`] performs one complete request with a buffered body
//! over Pingora's pooled HTTP/1.1 connector. It never retries: the write
//! path must not apply a write twice, and the replayer decides retries
//! itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Method;
use parking_lot::RwLock;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::upstreams::peer::ALPN;

use crate::config::{Endpoint, UpstreamConfig};
use crate::limits::{LimitExceeded, LimitsConfig, NodeLimiter, NodePermit};

/// Idle pooled connections are closed after this long, well before the
/// search engines' own idle timeouts, so a pooled connection is not found
/// dead in the middle of a write.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// One node of an upstream cluster.
#[derive(Debug)]
pub struct UpstreamNode {
    /// Host name or IP used to connect (and for TLS SNI).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The node's limits.
    pub limiter: NodeLimiter,
    /// The last resolution of `host`, reused for [`RESOLVE_TTL`] so a
    /// host-name upstream does not cost a name lookup per request.
    resolved: parking_lot::Mutex<Option<(SocketAddr, std::time::Instant)>>,
}

/// How long a resolved upstream address is reused.
const RESOLVE_TTL: Duration = Duration::from_secs(30);

impl UpstreamNode {
    fn new(host: String, port: u16, limiter: NodeLimiter) -> UpstreamNode {
        UpstreamNode {
            host,
            port,
            limiter,
            resolved: parking_lot::Mutex::new(None),
        }
    }

    /// The node's socket address, resolved at most once per
    /// [`RESOLVE_TTL`].
    async fn address(&self) -> Result<SocketAddr> {
        if let Some((addr, at)) = *self.resolved.lock()
            && at.elapsed() < RESOLVE_TTL
        {
            return Ok(addr);
        }
        let addr = resolve(&self.host, self.port).await?;
        *self.resolved.lock() = Some((addr, std::time::Instant::now()));
        Ok(addr)
    }

    /// `host:port`, for logs and metrics.
    pub fn label(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A node chosen for one request, with its admission permit.
#[derive(Debug)]
pub struct Selected {
    /// Pingora peer to connect to.
    pub peer: HttpPeer,
    /// The node.
    pub node: Arc<UpstreamNode>,
    /// Held until the request completes (connection-limit slot).
    pub permit: NodePermit,
}

/// Why the gateway's own exchange with an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// A per-node limit refused the request.
    #[error(transparent)]
    Limited(#[from] LimitExceeded),
    /// Could not connect (nothing was sent).
    #[error("cannot connect to {node}: {source}")]
    Connect {
        /// Node label.
        node: String,
        /// Pingora error.
        source: Box<Error>,
    },
    /// The connection failed after the request started; the upstream may or
    /// may not have applied it.
    #[error("exchange with {node} failed after the request was sent: {source}")]
    Io {
        /// Node label.
        node: String,
        /// Pingora error.
        source: Box<Error>,
    },
    /// The response body was larger than allowed.
    #[error("response from {node} exceeds {limit} bytes")]
    ResponseTooLarge {
        /// Node label.
        node: String,
        /// The cap.
        limit: usize,
    },
}

impl ExchangeError {
    /// True when the upstream certainly did not receive the request.
    pub fn nothing_sent(&self) -> bool {
        matches!(
            self,
            ExchangeError::Limited(_) | ExchangeError::Connect { .. }
        )
    }
}

/// A complete upstream response.
#[derive(Debug)]
pub struct Response {
    /// Status and headers.
    pub header: pingora::http::ResponseHeader,
    /// The whole body (decoded from chunked transfer encoding).
    pub body: Bytes,
    /// The node that answered.
    pub node: String,
}

/// Largest upstream response the gateway buffers for its own exchanges.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// An upstream cluster.
pub struct Upstream {
    /// `primary` or `backup`, for logs and metrics.
    pub role: &'static str,
    config: UpstreamConfig,
    seed: Endpoint,
    nodes: RwLock<Arc<Vec<Arc<UpstreamNode>>>>,
    next: AtomicUsize,
    connector: Connector,
    /// `authorization` assigned by the control plane (see
    /// [`Upstream::set_assigned_authorization`]).
    assigned_auth: RwLock<Option<String>>,
    /// Per-node limits assigned by the control plane (see
    /// [`Upstream::set_assigned_limits`]).
    assigned_limits: RwLock<Option<LimitsConfig>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("role", &self.role)
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// An upstream whose only node is the configured endpoint.
    pub fn new(role: &'static str, seed: Endpoint, config: UpstreamConfig) -> Upstream {
        let node = Arc::new(UpstreamNode::new(
            seed.host.clone(),
            seed.port,
            NodeLimiter::new(format!("{}:{}", seed.host, seed.port), &config.limits),
        ));
        Upstream {
            role,
            config,
            seed,
            nodes: RwLock::new(Arc::new(vec![node])),
            next: AtomicUsize::new(0),
            connector: Connector::new(None),
            assigned_auth: RwLock::new(None),
            assigned_limits: RwLock::new(None),
        }
    }

    /// The configuration this upstream was built from.
    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// Current nodes.
    pub fn nodes(&self) -> Arc<Vec<Arc<UpstreamNode>>> {
        self.nodes.read().clone()
    }

    /// Picks the next node round-robin and admits a request of `body_bytes`
    /// under its limits.
    pub async fn select(&self, body_bytes: u64) -> Result<Selected, ExchangeError> {
        let nodes = self.nodes();
        let node = nodes[self.next.fetch_add(1, Ordering::Relaxed) % nodes.len()].clone();
        let permit = node.limiter.acquire(body_bytes).await?;
        let addr = node
            .address()
            .await
            .map_err(|source| ExchangeError::Connect {
                node: node.label(),
                source,
            })?;
        Ok(Selected {
            peer: self.peer(addr, &node.host),
            node,
            permit,
        })
    }

    fn peer(&self, addr: SocketAddr, host: &str) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, self.seed.tls, host.to_string());
        // HTTP/1.1 only: Pingora may retry non-idempotent requests on HTTP/2
        // stream errors, which would duplicate writes.
        peer.options.alpn = ALPN::H1;
        peer.options.connection_timeout = Some(self.config.connect_timeout());
        peer.options.read_timeout = Some(self.config.read_timeout());
        peer.options.idle_timeout = Some(POOL_IDLE_TIMEOUT);
        peer.options.verify_cert = self.config.tls_verify;
        peer.options.verify_hostname = self.config.tls_verify;
        peer
    }

    /// `authorization` value for the gateway's own requests (discovery,
    /// replay, read-repair): the configured user, else what the control
    /// plane assigned, else none.
    pub fn own_authorization(&self) -> Option<String> {
        use base64::Engine;
        if let Some(user) = self.config.username.as_deref() {
            let password = self.config.password.as_deref().unwrap_or("");
            return Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ));
        }
        self.assigned_auth.read().clone()
    }

    /// Whether the configuration sets any per-node limit (then limits
    /// assigned by the control plane are not used).
    fn limits_configured(&self) -> bool {
        let limits = &self.config.limits;
        limits.max_qps_per_node.is_some()
            || limits.max_bytes_per_sec_per_node.is_some()
            || limits.max_connections_per_node.is_some()
    }

    /// The per-node limits in force: the configured ones, else those the
    /// control plane assigned, else none.
    pub fn limits(&self) -> LimitsConfig {
        if self.limits_configured() {
            return self.config.limits.clone();
        }
        self.assigned_limits
            .read()
            .clone()
            .unwrap_or_else(|| self.config.limits.clone())
    }

    /// Sets the per-node limits assigned by the control plane (from the
    /// cluster's registered limits). Limits in the configuration take
    /// precedence. Every node gets a fresh limiter with the new limits
    /// (requests in flight keep their permits). True when the limits in
    /// force changed.
    pub fn set_assigned_limits(&self, limits: Option<LimitsConfig>) -> bool {
        if self.limits_configured() {
            return false;
        }
        {
            let mut assigned = self.assigned_limits.write();
            if *assigned == limits {
                return false;
            }
            *assigned = limits;
        }
        let config = self.limits();
        let nodes: Vec<Arc<UpstreamNode>> = self
            .nodes()
            .iter()
            .map(|node| {
                let label = format!("{}:{}", node.host, node.port);
                Arc::new(UpstreamNode::new(
                    node.host.clone(),
                    node.port,
                    NodeLimiter::new(label, &config),
                ))
            })
            .collect();
        *self.nodes.write() = Arc::new(nodes);
        true
    }

    /// Sets the `authorization` value assigned by the control plane (from
    /// the cluster's registered credentials; `None`: no authentication).
    /// Credentials in the configuration take precedence. True when the
    /// value in use changed.
    pub fn set_assigned_authorization(&self, value: Option<String>) -> bool {
        if self.config.username.is_some() {
            return false;
        }
        let mut assigned = self.assigned_auth.write();
        if *assigned == value {
            return false;
        }
        *assigned = value;
        true
    }

    /// Sends one request with a complete body and reads the complete
    /// response. `header` is sent as given, plus `Host`, `Content-Length`
    /// and (when `own_credentials`) the upstream's configured credentials.
    pub async fn exchange(
        &self,
        mut header: RequestHeader,
        body: Bytes,
        own_credentials: bool,
    ) -> Result<Response, ExchangeError> {
        let selected = self.select(body.len() as u64).await?;
        let node = selected.node.label();
        let connect_err = |source| ExchangeError::Connect {
            node: node.clone(),
            source,
        };
        let io_err = |source| ExchangeError::Io {
            node: node.clone(),
            source,
        };
        header
            .insert_header("host", node.as_str())
            .map_err(connect_err)?;
        header
            .insert_header("content-length", body.len().to_string())
            .map_err(connect_err)?;
        header.remove_header("transfer-encoding");
        if own_credentials && let Some(auth) = self.own_authorization() {
            header
                .insert_header("authorization", auth)
                .map_err(connect_err)?;
        }

        let (mut session, _reused) = self
            .connector
            .get_http_session(&selected.peer)
            .await
            .map_err(connect_err)?;
        session
            .write_request_header(Box::new(header))
            .await
            .map_err(io_err)?;
        if !body.is_empty() {
            session
                .write_request_body(body, true)
                .await
                .map_err(io_err)?;
        }
        session.finish_request_body().await.map_err(io_err)?;
        session.read_response_header().await.map_err(io_err)?;
        let mut buf = BytesMut::new();
        while let Some(chunk) = session.read_response_body().await.map_err(io_err)? {
            if buf.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ExchangeError::ResponseTooLarge {
                    node,
                    limit: MAX_RESPONSE_BYTES,
                });
            }
            buf.extend_from_slice(&chunk);
        }
        let response_header = session
            .response_header()
            .cloned()
            .ok_or_else(|| io_err(Error::new_str("no response header")))?;
        self.connector
            .release_http_session(session, &selected.peer, Some(POOL_IDLE_TIMEOUT))
            .await;
        drop(selected);
        Ok(Response {
            header: response_header,
            body: buf.freeze(),
            node,
        })
    }

    /// A `GET` with the gateway's own credentials, returning status and body.
    pub async fn get_json(&self, path: &str) -> Result<(u16, serde_json::Value), ExchangeError> {
        let header = RequestHeader::build(Method::GET, path.as_bytes(), None).map_err(|e| {
            ExchangeError::Connect {
                node: self.seed.host.clone(),
                source: e,
            }
        })?;
        let response = self.exchange(header, Bytes::new(), true).await?;
        let value = serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null);
        Ok((response.header.status.as_u16(), value))
    }

    /// Asks the cluster for its nodes' HTTP addresses and replaces the node
    /// list, keeping the limiter state of nodes that stay. Returns the new
    /// node count.
    pub async fn refresh_nodes(&self) -> anyhow::Result<usize> {
        let (status, body) = self.get_json("/_nodes/http").await?;
        if status != 200 {
            anyhow::bail!("GET /_nodes/http on {} answered {status}", self.role);
        }
        let mut discovered = discovered_addresses(&body);
        discovered.sort();
        discovered.dedup();
        if discovered.is_empty() {
            anyhow::bail!("GET /_nodes/http on {} listed no HTTP addresses", self.role);
        }
        let current = self.nodes();
        let nodes: Vec<Arc<UpstreamNode>> = discovered
            .into_iter()
            .map(|(host, port)| {
                current
                    .iter()
                    .find(|n| n.host == host && n.port == port)
                    .cloned()
                    .unwrap_or_else(|| {
                        let limiter = NodeLimiter::new(format!("{host}:{port}"), &self.limits());
                        Arc::new(UpstreamNode::new(host, port, limiter))
                    })
            })
            .collect();
        let count = nodes.len();
        *self.nodes.write() = Arc::new(nodes);
        Ok(count)
    }

    /// Runs discovery every `discovery_interval` until the process ends;
    /// failures keep the previous node list.
    pub async fn discovery_loop(self: Arc<Self>) {
        let interval = Duration::from_secs(self.config.discovery_interval_secs.max(1));
        loop {
            match self.refresh_nodes().await {
                Ok(count) => tracing::debug!(role = self.role, count, "refreshed upstream nodes"),
                Err(err) => {
                    tracing::warn!(role = self.role, error = %err, "node discovery failed; keeping the previous node list")
                }
            }
            tokio::time::sleep(interval).await;
        }
    }
}

/// `(host, port)` of every node's HTTP publish address in a `_nodes/http`
/// response (see [`tandem_es::parse_http_nodes`]).
pub fn discovered_addresses(body: &serde_json::Value) -> Vec<(String, u16)> {
    tandem_es::parse_http_nodes(body)
        .iter()
        .filter_map(tandem_es::HttpNode::host_port)
        .collect()
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            Error::explain(
                ErrorType::ConnectNoRoute,
                format!("cannot resolve upstream host {host}"),
            )
        })
}
