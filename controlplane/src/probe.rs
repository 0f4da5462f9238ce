//! Probing a search cluster over HTTP: is it reachable, are the credentials
//! accepted, which distribution and version is it, how healthy is it, and
//! which nodes publish an HTTP address.
//!
//! A probe tries the configured endpoints in order and settles on the first
//! one that answers HTTP at all. It then reads
//!
//! 1. `GET /` — the cluster's name, UUID, distribution and version; a 401 or
//!    403 here fails the probe (`AUTHENTICATION_FAILED` /
//!    `AUTHORIZATION_FAILED`), anything that is not a search cluster's answer
//!    fails it as `NOT_A_SEARCH_CLUSTER`;
//! 2. `GET /_cluster/health` and `GET /_nodes/http` (concurrently) — health,
//!    node counts and node list. Failures there are warnings, not failures:
//!    credentials without the `monitor` privilege still replicate fine.
//!
//! Every request has a timeout; redirects are not followed (credentials must
//! not travel to another host). A probe never returns an error: its
//! [`ProbeReport`] carries the failure, ready to be stored and shown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tandem_proto::codes;

use crate::secrets::SecretString;

/// How the probe authenticates.
#[derive(Debug, Clone, Default)]
pub enum ProbeAuth {
    /// No `authorization` header.
    #[default]
    None,
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: SecretString,
    },
    /// `Authorization: ApiKey <key>`.
    ApiKey(SecretString),
}

/// TLS settings of https endpoints (see `TlsSettings` in `common.proto`).
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Extra trusted CA certificates, PEM.
    pub ca_certificates_pem: String,
    /// Name for SNI and certificate verification instead of the URL's host.
    pub server_name: String,
    /// Skip certificate verification (test clusters only).
    pub insecure_skip_verify: bool,
    /// Client certificate chain for mutual TLS, PEM.
    pub client_certificate_pem: String,
    /// Private key of the client certificate, PKCS#8 PEM.
    pub client_private_key_pem: SecretString,
}

/// What to probe.
#[derive(Debug, Clone, Default)]
pub struct ProbeTarget {
    /// Endpoints (`scheme://host:port`), tried in order.
    pub endpoints: Vec<String>,
    /// Credentials.
    pub auth: ProbeAuth,
    /// TLS settings.
    pub tls: TlsOptions,
    /// Whether node discovery is enabled (only changes the warnings).
    pub node_discovery: bool,
}

pub use tandem_es::Distribution;

/// Cluster health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Every shard allocated.
    Green,
    /// Every primary allocated, some replicas not.
    Yellow,
    /// Some primaries not allocated.
    Red,
}

impl Health {
    /// The name stored in the `clusters.health` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Green => "green",
            Health::Yellow => "yellow",
            Health::Red => "red",
        }
    }
}

/// Distribution and version, from `GET /`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// Distribution.
    pub distribution: Distribution,
    /// Version as reported, e.g. `7.17.29`.
    pub number: String,
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
    /// Lucene version.
    pub lucene_version: String,
}

impl VersionInfo {
    /// The shared protocol view of this version (`tandem-es`), which holds
    /// every rule that depends on it (mapping types, bulk spelling, the
    /// default type, point in time).
    pub fn es(&self) -> tandem_es::ClusterVersion {
        tandem_es::ClusterVersion {
            distribution: self.distribution,
            major: self.major,
            minor: self.minor,
        }
    }
}

/// A node from `GET /_nodes/http`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Node id.
    pub node_id: String,
    /// Node name.
    pub name: String,
    /// Published HTTP address, `host:port`.
    pub http_address: String,
    /// Version the node runs.
    pub version: String,
    /// Roles.
    pub roles: Vec<String>,
}

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeFailure {
    /// UPPER_SNAKE_CASE reason: `UPSTREAM_UNREACHABLE`, `UPSTREAM_TIMEOUT`,
    /// `TLS_ERROR`, `UPSTREAM_PROTOCOL_ERROR`, `AUTHENTICATION_FAILED`,
    /// `AUTHORIZATION_FAILED`, `UNEXPECTED_STATUS`, `NOT_A_SEARCH_CLUSTER`,
    /// `TLS_CONFIG_INVALID`.
    pub reason: String,
    /// Human-readable explanation.
    pub message: String,
    /// Context such as `endpoint` and `http_status`.
    pub metadata: BTreeMap<String, String>,
}

/// The outcome of one probe, as stored with the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// `GET /` answered over HTTP(S).
    pub reachable: bool,
    /// `GET /` accepted the credentials.
    pub credentials_valid: bool,
    /// Distribution and version.
    pub version: Option<VersionInfo>,
    /// `cluster_name`.
    pub cluster_name: String,
    /// `cluster_uuid` (empty when unknown).
    pub cluster_uuid: String,
    /// Health; `None` when unknown.
    pub health: Option<Health>,
    /// Number of nodes.
    pub number_of_nodes: u32,
    /// Number of data nodes.
    pub number_of_data_nodes: u32,
    /// Nodes with an HTTP address.
    pub nodes: Vec<NodeReport>,
    /// Non-fatal findings.
    pub warnings: Vec<String>,
    /// Endpoint that answered (or the first one tried).
    pub endpoint: String,
    /// Round trip of `GET /`, in microseconds.
    pub latency_micros: u64,
    /// When the probe ran.
    pub probed_at: DateTime<Utc>,
    /// Why the probe failed; `None` when it succeeded.
    pub error: Option<ProbeFailure>,
}

impl ProbeReport {
    fn empty(endpoint: &str) -> ProbeReport {
        ProbeReport {
            reachable: false,
            credentials_valid: false,
            version: None,
            cluster_name: String::new(),
            cluster_uuid: String::new(),
            health: None,
            number_of_nodes: 0,
            number_of_data_nodes: 0,
            nodes: Vec::new(),
            warnings: Vec::new(),
            endpoint: endpoint.to_string(),
            latency_micros: 0,
            probed_at: Utc::now(),
            error: None,
        }
    }

    fn failed(mut self, reason: &str, message: String, metadata: &[(&str, String)]) -> Self {
        self.error = Some(ProbeFailure {
            reason: reason.to_string(),
            message,
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        });
        self
    }

    /// True when the probe succeeded.
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// A TLS setting that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{field}: {message}")]
pub struct TlsConfigError {
    /// Request field at fault, e.g. `tls.ca_certificates_pem`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Runs probes with a per-request timeout.
#[derive(Debug, Clone)]
pub struct Prober {
    timeout: Duration,
}

impl Prober {
    /// A prober whose every HTTP request gives up after `timeout`.
    pub fn new(timeout: Duration) -> Prober {
        Prober { timeout }
    }

    /// Checks that TLS settings can be used (PEM parses, key matches the
    /// PKCS#8 form) without contacting anything.
    pub fn check_tls(&self, tls: &TlsOptions) -> Result<(), TlsConfigError> {
        self.client(tls, None).map(|_| ())
    }

    /// Probes `target`. Never fails: failures are in the report's `error`.
    pub async fn probe(&self, target: &ProbeTarget) -> ProbeReport {
        let first = target.endpoints.first().cloned().unwrap_or_default();
        let mut unanswered: Vec<(String, &'static str, String)> = Vec::new();
        for endpoint in &target.endpoints {
            match self.probe_endpoint(endpoint, target).await {
                EndpointOutcome::Answered(report) => {
                    let mut report = *report;
                    for (other, _, message) in &unanswered {
                        report.warnings.push(format!(
                            "endpoint {other} did not answer ({message}); {endpoint} did"
                        ));
                    }
                    return report;
                }
                EndpointOutcome::NoAnswer { reason, message } => {
                    unanswered.push((endpoint.clone(), reason, message));
                }
                EndpointOutcome::Config(err) => {
                    return ProbeReport::empty(endpoint).failed(
                        codes::TLS_CONFIG_INVALID,
                        err.to_string(),
                        &[("field", err.field.to_string())],
                    );
                }
            }
        }
        let report = ProbeReport::empty(&first);
        match unanswered.as_slice() {
            [] => report.failed(codes::NO_ENDPOINT, "no endpoint configured".into(), &[]),
            [(endpoint, reason, message)] => {
                report.failed(reason, message.clone(), &[("endpoint", endpoint.clone())])
            }
            [(endpoint, reason, _), ..] => {
                let all: Vec<String> = unanswered
                    .iter()
                    .map(|(e, _, m)| format!("{e}: {m}"))
                    .collect();
                report.failed(
                    reason,
                    format!("no endpoint answered: {}", all.join("; ")),
                    &[("endpoint", endpoint.clone())],
                )
            }
        }
    }

    /// An HTTP client for work that talks to a cluster at length (migration
    /// jobs): the same TLS handling as probes (extra CAs, `server_name`,
    /// client certificate), redirects not followed, `timeout` per request.
    /// Returns the base URL to send requests to, and the client.
    pub async fn job_client(
        &self,
        endpoint: &str,
        tls: &TlsOptions,
        timeout: Duration,
    ) -> Result<(String, reqwest::Client), String> {
        let (base, resolve) = self.route(endpoint, tls).await?;
        let client = Prober { timeout }
            .client(
                tls,
                resolve.as_ref().map(|(name, addr)| (name.as_str(), *addr)),
            )
            .map_err(|e| e.to_string())?;
        Ok((base, client))
    }

    async fn probe_endpoint(&self, endpoint: &str, target: &ProbeTarget) -> EndpointOutcome {
        let (base, resolve) = match self.route(endpoint, &target.tls).await {
            Ok(route) => route,
            Err(message) => {
                return EndpointOutcome::NoAnswer {
                    reason: codes::UPSTREAM_UNREACHABLE,
                    message,
                };
            }
        };
        let client = match self.client(
            &target.tls,
            resolve.as_ref().map(|(name, addr)| (name.as_str(), *addr)),
        ) {
            Ok(client) => client,
            Err(err) => return EndpointOutcome::Config(err),
        };
        let get = |path: &str| {
            let request = client.get(format!("{base}{path}"));
            match &target.auth {
                ProbeAuth::None => request,
                ProbeAuth::Basic { username, password } => {
                    request.basic_auth(username, Some(password.expose()))
                }
                ProbeAuth::ApiKey(key) => {
                    request.header("authorization", format!("ApiKey {}", key.expose()))
                }
            }
        };

        let mut report = ProbeReport::empty(endpoint);
        let started = Instant::now();
        let root = match get("/").send().await {
            Ok(response) => response,
            Err(err) => {
                let (reason, message) = classify(&err, endpoint);
                return EndpointOutcome::NoAnswer { reason, message };
            }
        };
        let status = root.status();
        let body = root.bytes().await;
        report.latency_micros = started.elapsed().as_micros().try_into().unwrap_or(u64::MAX);
        report.reachable = true;
        let metadata = [
            ("endpoint", endpoint.to_string()),
            ("http_status", status.as_u16().to_string()),
        ];
        let body = match body {
            Ok(body) => body,
            Err(err) => {
                let (reason, message) = classify(&err, endpoint);
                return answered(report.failed(reason, message, &metadata));
            }
        };
        if status == reqwest::StatusCode::UNAUTHORIZED {
            let hint = match &target.auth {
                ProbeAuth::None => "the cluster requires authentication: set `credentials`",
                ProbeAuth::Basic { .. } => "check credentials.username and credentials.password",
                ProbeAuth::ApiKey(_) => "check credentials.api_key",
            };
            let message = format!(
                "{endpoint} refused the credentials (HTTP 401){}; {hint}",
                cluster_reason(&body)
            );
            return answered(report.failed(codes::AUTHENTICATION_FAILED, message, &metadata));
        }
        if status == reqwest::StatusCode::FORBIDDEN {
            report.credentials_valid = true;
            let message = format!(
                "{endpoint} accepted the credentials but denied `GET /` (HTTP 403){}; \
                 grant them the `monitor` cluster privilege",
                cluster_reason(&body)
            );
            return answered(report.failed(codes::AUTHORIZATION_FAILED, message, &metadata));
        }
        if !status.is_success() {
            let message = format!(
                "{endpoint} answered `GET /` with HTTP {status}{}",
                cluster_reason(&body)
            );
            return answered(report.failed(codes::UNEXPECTED_STATUS, message, &metadata));
        }
        report.credentials_valid = true;
        let info = match parse_root(&body) {
            Ok(info) => info,
            Err(problem) => {
                let message = format!(
                    "{endpoint} answered `GET /` but not like Elasticsearch or OpenSearch \
                     ({problem}): {}",
                    snippet(&body)
                );
                return answered(report.failed(codes::NOT_A_SEARCH_CLUSTER, message, &metadata));
            }
        };
        let version = VersionInfo::from(&info);
        report.cluster_name = info.cluster_name;
        report.cluster_uuid = info.cluster_uuid;
        report.warnings.extend(version_warnings(&version));
        if report.cluster_uuid.is_empty() {
            report.warnings.push(
                "the cluster reports no UUID (no elected master yet?); \
                 endpoint changes cannot be checked against it"
                    .into(),
            );
        }
        report.version = Some(version);

        let (health, nodes) = tokio::join!(
            fetch_json(get("/_cluster/health")),
            fetch_json(get("/_nodes/http"))
        );
        match health {
            Ok(health) => {
                report.health = match health["status"].as_str() {
                    Some("green") => Some(Health::Green),
                    Some("yellow") => Some(Health::Yellow),
                    Some("red") => Some(Health::Red),
                    _ => None,
                };
                report.number_of_nodes = as_u32(&health["number_of_nodes"]);
                report.number_of_data_nodes = as_u32(&health["number_of_data_nodes"]);
                if report.health == Some(Health::Red) {
                    report.warnings.push(
                        "cluster health is red: some primary shards are not allocated".into(),
                    );
                }
            }
            Err(problem) => report.warnings.push(format!(
                "`GET /_cluster/health` {problem}; health is unknown"
            )),
        }
        match nodes {
            Ok(nodes) => report.nodes = parse_nodes(&nodes),
            Err(problem) => report.warnings.push(format!(
                "`GET /_nodes/http` {problem}; nodes are unknown and gateways only use the configured endpoints"
            )),
        }
        if report.number_of_nodes == 0 {
            report.number_of_nodes = report.nodes.len().try_into().unwrap_or(u32::MAX);
        }
        if target.node_discovery && report.nodes.is_empty() {
            report
                .warnings
                .push("node discovery is enabled but no node publishes an HTTP address".into());
        }
        answered(report)
    }

    /// The base URL to send requests to and, when `tls.server_name`
    /// overrides the host of an https endpoint, the name to resolve to the
    /// endpoint's address (so SNI and verification use the name).
    async fn route(
        &self,
        endpoint: &str,
        tls: &TlsOptions,
    ) -> Result<(String, Option<(String, SocketAddr)>), String> {
        let server_name = tls.server_name.trim();
        if server_name.is_empty() || !endpoint.starts_with("https://") {
            return Ok((endpoint.to_string(), None));
        }
        let mut url = reqwest::Url::parse(endpoint).map_err(|e| format!("{endpoint}: {e}"))?;
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let addr =
            tokio::time::timeout(self.timeout, tokio::net::lookup_host((host.as_str(), port)))
                .await
                .map_err(|_| format!("{endpoint}: resolving {host} timed out"))?
                .map_err(|e| format!("{endpoint}: cannot resolve {host}: {e}"))?
                .next()
                .ok_or_else(|| format!("{endpoint}: {host} resolves to no address"))?;
        url.set_host(Some(server_name))
            .map_err(|e| format!("tls.server_name {server_name:?}: {e}"))?;
        Ok((
            url.as_str().trim_end_matches('/').to_string(),
            Some((server_name.to_string(), addr)),
        ))
    }

    fn client(
        &self,
        tls: &TlsOptions,
        resolve: Option<(&str, SocketAddr)>,
    ) -> Result<reqwest::Client, TlsConfigError> {
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tandem-controlplane/", env!("CARGO_PKG_VERSION")));
        if !tls.ca_certificates_pem.trim().is_empty() {
            let certificates = reqwest::Certificate::from_pem_bundle(
                tls.ca_certificates_pem.as_bytes(),
            )
            .map_err(|e| TlsConfigError {
                field: "tls.ca_certificates_pem",
                message: format!("not PEM certificates: {}", chain(&e)),
            })?;
            if certificates.is_empty() {
                return Err(TlsConfigError {
                    field: "tls.ca_certificates_pem",
                    message: "contains no PEM certificate".into(),
                });
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if tls.insecure_skip_verify {
            builder = builder
                .danger_accept_invalid_certs(true)
                .danger_accept_invalid_hostnames(true);
        }
        let key = tls.client_private_key_pem.expose();
        match (
            tls.client_certificate_pem.trim().is_empty(),
            key.trim().is_empty(),
        ) {
            (true, true) => {}
            (false, true) => {
                return Err(TlsConfigError {
                    field: "tls.client_private_key_pem",
                    message: "required with tls.client_certificate_pem".into(),
                });
            }
            (true, false) => {
                return Err(TlsConfigError {
                    field: "tls.client_certificate_pem",
                    message: "required with tls.client_private_key_pem".into(),
                });
            }
            (false, false) => {
                let certs =
                    reqwest::Certificate::from_pem_bundle(tls.client_certificate_pem.as_bytes());
                if !certs.is_ok_and(|c| !c.is_empty()) {
                    return Err(TlsConfigError {
                        field: "tls.client_certificate_pem",
                        message: "not a PEM certificate chain".into(),
                    });
                }
                let identity = reqwest::Identity::from_pkcs8_pem(
                    tls.client_certificate_pem.as_bytes(),
                    key.as_bytes(),
                )
                .map_err(|_| TlsConfigError {
                    field: "tls.client_private_key_pem",
                    // Never echo the key or the parser's view of it.
                    message:
                        "must be an unencrypted PKCS#8 PEM key (\"-----BEGIN PRIVATE KEY-----\") \
                              matching tls.client_certificate_pem"
                            .into(),
                })?;
                builder = builder.identity(identity);
            }
        }
        if let Some((name, addr)) = resolve {
            builder = builder.resolve(name, addr);
        }
        builder.build().map_err(|e| TlsConfigError {
            field: "tls",
            message: format!("cannot build an HTTP client: {}", chain(&e)),
        })
    }
}

enum EndpointOutcome {
    /// The endpoint answered HTTP; the report is final (success or failure).
    Answered(Box<ProbeReport>),
    /// No HTTP answer: try the next endpoint.
    NoAnswer {
        reason: &'static str,
        message: String,
    },
    /// The TLS settings are unusable; no endpoint will do better.
    Config(TlsConfigError),
}

fn answered(report: ProbeReport) -> EndpointOutcome {
    EndpointOutcome::Answered(Box::new(report))
}

/// Reason and message for a request that got no HTTP answer.
fn classify(err: &reqwest::Error, endpoint: &str) -> (&'static str, String) {
    let detail = chain(err);
    // Look for TLS trouble in the causes only: the top-level message holds
    // the URL, whose host name may well contain "tls" or "ssl".
    let mut causes = String::new();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        causes.push_str(&cause.to_string().to_ascii_lowercase());
        causes.push(' ');
        source = cause.source();
    }
    if err.is_timeout() {
        return (
            codes::UPSTREAM_TIMEOUT,
            format!("{endpoint} did not answer in time: {detail}"),
        );
    }
    if ["certificate", "ssl", "tls", "handshake"]
        .iter()
        .any(|w| causes.contains(w))
    {
        return (
            codes::TLS_ERROR,
            format!("TLS with {endpoint} failed (check the tls settings): {detail}"),
        );
    }
    if err.is_connect() {
        return (
            codes::UPSTREAM_UNREACHABLE,
            format!("cannot connect to {endpoint}: {detail}"),
        );
    }
    (
        codes::UPSTREAM_PROTOCOL_ERROR,
        format!("{endpoint} did not answer HTTP (is it a search cluster's HTTP port?): {detail}"),
    )
}

/// An error and its sources, `a: b: c`, without repeats.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// `": <reason>"` from an Elasticsearch error body, or nothing.
fn cluster_reason(body: &[u8]) -> String {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    match json
        .pointer("/error/reason")
        .and_then(|r| r.as_str())
        .or_else(|| json["error"].as_str())
    {
        Some(reason) => format!(": {}", truncate(reason, 300)),
        None => String::new(),
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    format!("{:?}", truncate(text.trim(), 200))
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// The `GET /` banner as a registration stores it.
fn parse_root(body: &[u8]) -> Result<tandem_es::RootInfo, String> {
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("no JSON body with a version.number: {e}"))?;
    tandem_es::RootInfo::parse(&json).map_err(|e| e.to_string())
}

impl From<&tandem_es::RootInfo> for VersionInfo {
    fn from(root: &tandem_es::RootInfo) -> VersionInfo {
        VersionInfo {
            distribution: root.version.distribution,
            number: root.number.clone(),
            major: root.version.major,
            minor: root.version.minor,
            patch: root.patch,
            lucene_version: root.lucene_version.clone(),
        }
    }
}

/// Distribution and version from the body of `GET /`, `None` when it is
/// not a search cluster's answer.
pub fn parse_version_info(body: &[u8]) -> Option<VersionInfo> {
    parse_root(body).ok().as_ref().map(VersionInfo::from)
}

fn version_warnings(version: &VersionInfo) -> Vec<String> {
    let name = version.distribution.display_name();
    let supported = match version.distribution {
        Distribution::Elasticsearch => (5..=9).contains(&version.major),
        Distribution::OpenSearch => (1..=3).contains(&version.major),
    };
    let mut warnings = Vec::new();
    if !supported {
        let range = match version.distribution {
            Distribution::Elasticsearch => "5.x to 9.x",
            Distribution::OpenSearch => "1.x to 3.x",
        };
        warnings.push(format!(
            "{name} {} is not supported (supported: {range})",
            version.number
        ));
    }
    if version.distribution == Distribution::Elasticsearch && (5..=6).contains(&version.major) {
        warnings.push(format!(
            "{name} {} indices may use mapping types; towards 7.x and later they are rewritten \
             according to the task's mapping-type rewrite mode",
            version.number
        ));
    }
    warnings
}

/// Sends a request and parses a 2xx JSON answer; otherwise says what went
/// wrong, for a warning.
async fn fetch_json(request: reqwest::RequestBuilder) -> Result<serde_json::Value, String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("failed: {}", chain(&e)))?;
    let status = response.status();
    if status == reqwest::StatusCode::FORBIDDEN || status == reqwest::StatusCode::UNAUTHORIZED {
        return Err(format!(
            "answered HTTP {status}: the credentials lack the `monitor` cluster privilege"
        ));
    }
    if !status.is_success() {
        return Err(format!("answered HTTP {status}"));
    }
    response
        .json()
        .await
        .map_err(|e| format!("answered invalid JSON: {}", chain(&e)))
}

fn as_u32(value: &serde_json::Value) -> u32 {
    value
        .as_u64()
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

/// Nodes with an HTTP publish address, ordered by name.
fn parse_nodes(body: &serde_json::Value) -> Vec<NodeReport> {
    tandem_es::parse_http_nodes(body)
        .into_iter()
        .map(|node| NodeReport {
            node_id: node.node_id,
            name: node.name,
            http_address: node.address,
            version: node.version,
            roles: node.roles,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_answers_give_distribution_uuid_and_warnings() {
        let es = br#"{"cluster_name":"c","cluster_uuid":"u1","version":{"number":"5.6.16","lucene_version":"6.6.1"}}"#;
        let info = VersionInfo::from(&parse_root(es).unwrap());
        assert_eq!(info.distribution, Distribution::Elasticsearch);
        assert_eq!((info.major, info.minor, info.patch), (5, 6, 16));
        assert_eq!(info.lucene_version, "6.6.1");
        assert!(!version_warnings(&info).is_empty());

        let os =
            br#"{"cluster_uuid":"_na_","version":{"distribution":"opensearch","number":"2.19.1"}}"#;
        let root = parse_root(os).unwrap();
        assert_eq!(root.cluster_uuid, "");
        let info = VersionInfo::from(&root);
        assert_eq!(info.distribution, Distribution::OpenSearch);
        assert!(version_warnings(&info).is_empty());

        assert!(
            parse_root(b"<html>hello</html>")
                .unwrap_err()
                .contains("no JSON body")
        );
        assert!(
            parse_root(br#"{"status":"ok"}"#)
                .unwrap_err()
                .contains("version.number")
        );
        assert!(parse_root(br#"{"version":{"number":"garbage"}}"#).is_err());
    }

    #[test]
    fn registration_lists_nodes_with_an_http_address() {
        let body = serde_json::json!({"nodes": {
            "b": {"name": "n2", "version": "7.17.1", "roles": ["data"],
                  "http": {"publish_address": "es-2.local/10.0.0.6:9201"}},
            "a": {"name": "n1", "version": "7.17.1", "roles": ["master", "data"],
                  "http": {"publish_address": "10.0.0.5:9200"}},
            "c": {"name": "n3"}
        }});
        let nodes = parse_nodes(&body);
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].http_address, "10.0.0.5:9200");
        assert_eq!(nodes[0].roles, ["master", "data"]);
        assert_eq!(nodes[1].http_address, "10.0.0.6:9201");
    }

    #[test]
    fn error_bodies_give_the_cluster_reason() {
        let body = br#"{"error":{"root_cause":[],"type":"security_exception","reason":"unable to authenticate user [bob]"},"status":401}"#;
        assert_eq!(cluster_reason(body), ": unable to authenticate user [bob]");
        assert_eq!(cluster_reason(b"nope"), "");
    }

    #[test]
    fn invalid_tls_material_names_the_field() {
        let prober = Prober::new(Duration::from_secs(1));
        let err = prober
            .check_tls(&TlsOptions {
                ca_certificates_pem: "not pem".into(),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(err.field, "tls.ca_certificates_pem");
        let err = prober
            .check_tls(&TlsOptions {
                client_certificate_pem: "x".into(),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(err.field, "tls.client_private_key_pem");
        prober.check_tls(&TlsOptions::default()).unwrap();
    }
}
