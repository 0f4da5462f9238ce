//! A small HTTP client for one registered search cluster, built from its
//! stored settings: endpoints tried in order, sealed credentials opened
//! with [`crate::secrets`], TLS as for probes ([`crate::probe::Prober`]).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tandem_proto::codes;
use uuid::Uuid;

use crate::api::Api;
use crate::jobs::JobFailure;
use crate::probe::{Distribution, ProbeAuth, VersionInfo, parse_version_info};
use crate::store::clusters as cluster_store;

/// Timeout of one request to a cluster (bulk requests included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection to one cluster.
#[derive(Debug, Clone)]
pub struct SearchClient {
    /// Registered name, for messages.
    pub name: String,
    /// Distribution and version, read from `GET /` when connecting.
    pub version: VersionInfo,
    base: String,
    http: reqwest::Client,
    auth: ProbeAuth,
}

/// A response: status and JSON body (`Null` when not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// Body.
    pub body: Value,
}

impl Answer {
    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The cluster's `error.reason` (or the body) for messages.
    pub fn reason(&self) -> String {
        let reason = self
            .body
            .pointer("/error/reason")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| self.body.to_string());
        truncate(&reason, 500)
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

impl SearchClient {
    /// Connects to the registered cluster `id`: the first endpoint that
    /// answers `GET /` like a search cluster is used from then on.
    pub async fn connect(api: &Api, id: Uuid) -> Result<SearchClient, JobFailure> {
        let record = cluster_store::get(&api.pool, id)
            .await
            .map_err(|e| JobFailure::transient(codes::STORE_UNAVAILABLE, e.to_string()))?
            .ok_or_else(|| {
                JobFailure::permanent(
                    codes::CLUSTER_NOT_FOUND,
                    format!("cluster {id} is not registered"),
                )
            })?;
        let name = record.settings.name.clone();
        let auth = api
            .probe_auth(&record)
            .map_err(|s| JobFailure::permanent(codes::SECRET_UNUSABLE, s.message().to_string()))?;
        let tls = api
            .tls_options(&record)
            .map_err(|s| JobFailure::permanent(codes::SECRET_UNUSABLE, s.message().to_string()))?;
        let mut problems = Vec::new();
        for endpoint in &record.settings.endpoints {
            let (base, http) = match api.prober.job_client(endpoint, &tls, REQUEST_TIMEOUT).await {
                Ok(client) => client,
                Err(message) => {
                    problems.push(format!("{endpoint}: {message}"));
                    continue;
                }
            };
            let mut client = SearchClient {
                name: name.clone(),
                version: VersionInfo {
                    distribution: Distribution::Elasticsearch,
                    number: String::new(),
                    major: 0,
                    minor: 0,
                    patch: 0,
                    lucene_version: String::new(),
                },
                base,
                http,
                auth: auth.clone(),
            };
            match client.raw(Method::GET, "/", None).await {
                Ok((status, body)) if status.is_success() => match parse_version_info(&body) {
                    Some(version) => {
                        client.version = version;
                        return Ok(client);
                    }
                    None => problems.push(format!("{endpoint}: not a search cluster")),
                },
                Ok((status, _)) => problems.push(format!("{endpoint}: GET / answered {status}")),
                Err(failure) => problems.push(failure.message),
            }
        }
        Err(JobFailure::transient(
            codes::UPSTREAM_UNREACHABLE,
            format!(
                "cluster {name}: no endpoint usable: {}",
                problems.join("; ")
            ),
        )
        .with("cluster_id", id.to_string()))
    }

    /// Whether mapping types exist on this cluster (Elasticsearch 6 and
    /// older).
    pub fn typed(&self) -> bool {
        self.version.es().has_mapping_types()
    }

    /// Whether point in time plus `search_after` is available
    /// (Elasticsearch 7.10+, OpenSearch 2.4+).
    pub fn supports_pit(&self) -> bool {
        self.version.es().supports_pit()
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<(StatusCode, bytes::Bytes), JobFailure> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        request = match &self.auth {
            ProbeAuth::None => request,
            ProbeAuth::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
            ProbeAuth::ApiKey(key) => {
                request.header("authorization", format!("ApiKey {}", key.expose()))
            }
        };
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let unreachable = |e: reqwest::Error| {
            JobFailure::transient(
                codes::UPSTREAM_UNREACHABLE,
                format!("cluster {}: {method} {path}: {e}", self.name),
            )
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        Ok((status, bytes))
    }

    /// Sends a request with an optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, JobFailure> {
        let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
        let (status, bytes) = self.raw(method, path, body).await?;
        Ok(Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        })
    }

    /// Sends a request with an optional JSON body and returns the answer's
    /// bytes as they came (for reading `_source` without re-serialising
    /// it); a non-2xx answer is a failure as in [`Self::expect`].
    pub async fn expect_bytes(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<bytes::Bytes, JobFailure> {
        let body = body.map(|b| b.to_string().into_bytes());
        self.expect_json_bytes(method, path, body).await
    }

    /// [`Self::expect_bytes`] with a JSON body already serialised (built by
    /// `tandem-es`).
    pub async fn expect_json_bytes(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<bytes::Bytes, JobFailure> {
        let body = body.map(|b| ("application/json", b));
        let (status, bytes) = self.raw(method.clone(), path, body).await?;
        if status.is_success() {
            return Ok(bytes);
        }
        let answer = Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        };
        Err(self.refused(&method, path, &answer))
    }

    /// Sends a request with an optional JSON body; status and raw bytes.
    pub async fn call_bytes(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, bytes::Bytes), JobFailure> {
        let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
        self.raw(method, path, body).await
    }

    /// Sends a JSON body already serialised (built by `tandem-es`); the
    /// answer whatever its status.
    pub async fn call_raw_json(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Answer, JobFailure> {
        let (status, bytes) = self
            .raw(method, path, Some(("application/json", body)))
            .await?;
        Ok(Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        })
    }

    /// Sends an NDJSON body (`_bulk`).
    pub async fn ndjson(&self, path: &str, body: Vec<u8>) -> Result<Answer, JobFailure> {
        let (status, bytes) = self
            .raw(Method::POST, path, Some(("application/x-ndjson", body)))
            .await?;
        Ok(Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        })
    }

    /// Like [`Self::call`], but a non-2xx answer is a failure: transient
    /// for 429 and 5xx, permanent otherwise.
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, JobFailure> {
        let answer = self.call(method.clone(), path, body).await?;
        if answer.ok() {
            return Ok(answer.body);
        }
        Err(self.refused(&method, path, &answer))
    }

    /// The failure for an unexpected answer to `method path`.
    pub fn refused(&self, method: &Method, path: &str, answer: &Answer) -> JobFailure {
        let message = format!(
            "cluster {}: {method} {path} answered {}: {}",
            self.name,
            answer.status,
            answer.reason()
        );
        let failure =
            if answer.status == StatusCode::TOO_MANY_REQUESTS || answer.status.is_server_error() {
                JobFailure::transient(codes::UPSTREAM_ERROR, message)
            } else {
                JobFailure::permanent(codes::UPSTREAM_REFUSED, message)
            };
        failure.with("http_status", answer.status.as_u16().to_string())
    }
}
