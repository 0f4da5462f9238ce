//! Gateway configuration: one TOML file plus environment overrides.
//!
//! Every field has a default where one makes sense; [`GatewayConfig::validate`]
//! runs at start-up and names the offending field in its error, so a typo in
//! an endpoint is reported as `primary.url: ...` rather than as a failed
//! connection much later.
//!
//! Environment overrides: a variable `TANDEM_GATEWAY__<SECTION>__<KEY>` (double
//! underscores separate path segments, case-insensitive) replaces the value at
//! that path before the file is deserialized, e.g.
//! `TANDEM_GATEWAY__PRIMARY__URL=http://10.0.0.5:9200`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::agent::config::ControlPlaneConfig;
use crate::limits::LimitsConfig;
use crate::queue::{OverflowPolicy, QueueConfig};

/// Prefix of environment variables that override configuration values.
pub const ENV_PREFIX: &str = "TANDEM_GATEWAY__";

/// A configuration problem, always naming the field it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// Path of the file.
        path: String,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("invalid config: {0}")]
    Parse(String),
    /// A value is syntactically fine but not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        /// Dotted path of the field, e.g. `primary.url`.
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Top-level gateway configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address applications connect to, e.g. `0.0.0.0:9200`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Address of the admin endpoint (`/health`, `/ready`, `/metrics`).
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// Worker threads of the proxy service.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// The cluster every request is forwarded to synchronously.
    pub primary: UpstreamConfig,
    /// The cluster accepted writes are replayed to. Without it the gateway
    /// is a plain proxy and records nothing.
    #[serde(default)]
    pub backup: Option<UpstreamConfig>,
    /// Where the queue and dead letters live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Largest request body accepted for a write, in bytes; larger ones get
    /// HTTP 413 and are not forwarded.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Queue limits.
    #[serde(default)]
    pub queue: QueueSettings,
    /// Replayer settings.
    #[serde(default)]
    pub replay: ReplayConfig,
    /// Connection to the control plane (the agent); unset = the gateway
    /// runs stand-alone, driven by its admin API only.
    #[serde(default)]
    pub control_plane: Option<ControlPlaneConfig>,
}

/// `[queue]`: limits of the durable queue and what happens when they are
/// reached. The queue never drops an accepted write: over a limit, new
/// writes are refused (HTTP 507) or wait for space and then are refused.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// Size of one segment file, in bytes.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// Total size of queue files before new writes are refused; unset =
    /// bounded by the disk only.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Age of the oldest unreplayed write before new writes are refused,
    /// in seconds; unset = no age limit.
    #[serde(default)]
    pub max_age_secs: Option<u64>,
    /// `reject` (refuse at once with 507) or `block` (wait up to
    /// `max_wait_ms` for the replayer to free space, then refuse).
    #[serde(default)]
    pub overflow: OverflowSetting,
    /// Longest wait for space under `overflow = "block"`, in milliseconds.
    #[serde(default = "default_queue_max_wait_ms")]
    pub max_wait_ms: u64,
}

/// Policy when the queue is over a limit.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OverflowSetting {
    /// Refuse new writes at once.
    #[default]
    Reject,
    /// Wait for space, then refuse.
    Block,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            segment_bytes: default_segment_bytes(),
            max_bytes: None,
            max_age_secs: None,
            overflow: OverflowSetting::Reject,
            max_wait_ms: default_queue_max_wait_ms(),
        }
    }
}

impl QueueSettings {
    /// The queue's own configuration.
    pub fn to_queue_config(&self) -> QueueConfig {
        QueueConfig {
            segment_max_bytes: self.segment_bytes,
            max_bytes: self.max_bytes,
            max_age: self.max_age_secs.map(Duration::from_secs),
            overflow: match self.overflow {
                OverflowSetting::Reject => OverflowPolicy::Reject,
                OverflowSetting::Block => OverflowPolicy::Block {
                    max_wait: Duration::from_millis(self.max_wait_ms),
                },
            },
            ..QueueConfig::default()
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("tandem-data")
}
fn default_max_body_bytes() -> usize {
    100 << 20
}
fn default_segment_bytes() -> u64 {
    64 << 20
}
fn default_queue_max_wait_ms() -> u64 {
    5_000
}

/// One upstream search cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL of the cluster, `http://host:port` or `https://host:port`.
    pub url: String,
    /// Time allowed to open a TCP (and TLS) connection, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time allowed between bytes read from the upstream, in milliseconds.
    #[serde(default = "default_read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// Verify the upstream's TLS certificate (https only).
    #[serde(default = "default_true")]
    pub tls_verify: bool,
    /// User for the gateway's own requests (node discovery, replay,
    /// read-repair). Client requests always carry the client's own
    /// credentials.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for `username`. Never logged.
    #[serde(default)]
    pub password: Option<String>,
    /// Per-node limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Discover the cluster's nodes (`GET /_nodes/http`) and spread requests
    /// over them, each with its own limits.
    #[serde(default)]
    pub discovery: bool,
    /// Seconds between node discovery refreshes.
    #[serde(default = "default_discovery_interval_secs")]
    pub discovery_interval_secs: u64,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9200))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9280))
}
fn default_threads() -> usize {
    2
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_read_timeout_ms() -> u64 {
    60_000
}
fn default_discovery_interval_secs() -> u64 {
    30
}
fn default_true() -> bool {
    true
}

/// A parsed upstream endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP literal.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether to speak TLS.
    pub tls: bool,
}

impl Endpoint {
    /// Parses `http(s)://host[:port][/]`; `field` names the setting in errors.
    pub fn parse(field: &str, url: &str) -> Result<Endpoint, ConfigError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| invalid(field, format!("not a URL ({e}): {url:?}")))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => {
                return Err(invalid(
                    field,
                    format!("scheme must be http or https, got {other:?}"),
                ));
            }
            None => {
                return Err(invalid(
                    field,
                    format!("missing scheme, expected http://host:port, got {url:?}"),
                ));
            }
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid(field, format!("missing host in {url:?}")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if !matches!(uri.path(), "" | "/") {
            return Err(invalid(
                field,
                format!("path prefixes are not supported, got {:?}", uri.path()),
            ));
        }
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 9200 });
        Ok(Endpoint { host, port, tls })
    }
}

impl UpstreamConfig {
    /// The upstream's endpoint; call after [`GatewayConfig::validate`].
    pub fn endpoint(&self, field: &str) -> Result<Endpoint, ConfigError> {
        Endpoint::parse(field, &self.url)
    }

    /// Connect timeout as a [`Duration`].
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// Read timeout as a [`Duration`].
    pub fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.read_timeout_ms)
    }

    fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        self.endpoint(&format!("{prefix}.url"))?;
        if self.connect_timeout_ms == 0 {
            return Err(invalid(
                &format!("{prefix}.connect_timeout_ms"),
                "must be greater than 0",
            ));
        }
        if self.read_timeout_ms == 0 {
            return Err(invalid(
                &format!("{prefix}.read_timeout_ms"),
                "must be greater than 0",
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(invalid(
                &format!("{prefix}.username"),
                "required when a password is set",
            ));
        }
        if self.discovery_interval_secs == 0 {
            return Err(invalid(
                &format!("{prefix}.discovery_interval_secs"),
                "must be greater than 0",
            ));
        }
        self.limits
            .validate(prefix_limits(prefix).as_str())
            .map_err(|message| {
                let (field, message) = message.split_once(": ").unwrap_or(("", &message));
                invalid(field, message)
            })
    }
}

fn prefix_limits(prefix: &str) -> String {
    format!("{prefix}.limits")
}

impl GatewayConfig {
    /// Reads `path`, applies environment overrides and validates the result.
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_with_env(&text, std::env::vars())
    }

    /// Parses TOML text, applies the given `(name, value)` overrides (only
    /// names starting with [`ENV_PREFIX`] are used) and validates.
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<GatewayConfig, ConfigError> {
        let mut doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        for (name, value) in env {
            let Some(path) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let segments: Vec<String> = path.split("__").map(|s| s.to_lowercase()).collect();
            apply_override(&mut doc, &segments, &value)
                .map_err(|message| invalid(&segments.join("."), message))?;
        }
        let config: GatewayConfig = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that deserialization alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.threads == 0 {
            return Err(invalid("threads", "must be at least 1"));
        }
        if self.listen == self.admin_listen {
            return Err(invalid(
                "admin_listen",
                format!("must differ from listen ({})", self.listen),
            ));
        }
        self.primary.validate("primary")?;
        if let Some(backup) = &self.backup {
            backup.validate("backup")?;
            if backup.url == self.primary.url {
                return Err(invalid("backup.url", "must differ from primary.url"));
            }
        }
        if self.max_body_bytes == 0 {
            return Err(invalid("max_body_bytes", "must be greater than 0"));
        }
        self.queue
            .to_queue_config()
            .validate()
            .map_err(|e| invalid("queue", e.to_string()))?;
        self.replay.validate().map_err(|message| {
            let (field, message) = message.split_once(": ").unwrap_or(("replay", &message));
            invalid(field, message)
        })?;
        if let Some(control_plane) = &self.control_plane {
            control_plane
                .validate()
                .map_err(|(field, message)| invalid(&field, message))?;
        }
        Ok(())
    }
}

/// Sets `segments` in `doc` to `raw`, parsed as a TOML value when it is one
/// (numbers, booleans) and as a string otherwise.
fn apply_override(doc: &mut toml::Table, segments: &[String], raw: &str) -> Result<(), String> {
    let (last, parents) = segments
        .split_last()
        .ok_or_else(|| "empty override path".to_string())?;
    let mut table = doc;
    for segment in parents {
        let entry = table
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| format!("{segment} is not a table"))?;
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    table.insert(last.clone(), value);
    Ok(())
}

/// Replayer settings (`[replay]` in the gateway config).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// Start with the consumer paused: writes are recorded but not replayed
    /// until resumed (the full-migration workflow).
    #[serde(default)]
    pub start_paused: bool,
    /// Most ops sent in one `_bulk` to the backup.
    #[serde(default = "default_max_batch_ops")]
    pub max_batch_ops: usize,
    /// Most payload bytes read from the queue per batch.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// First retry delay after a failure, in milliseconds.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// Longest retry delay, in milliseconds.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// `index.gc_deletes` set on every backup index the replayer writes to,
    /// so delete tombstones outlive the replay window (e.g. `"1h"`); empty
    /// to leave the setting alone.
    #[serde(default = "default_gc_deletes")]
    pub gc_deletes: String,
    /// Longest a cutover may hold new writes while the queue drains, in
    /// milliseconds; writes waiting behind it longer get 503.
    #[serde(default = "default_max_hold_ms")]
    pub max_hold_ms: u64,
    /// How long after a write ended with an unknown outcome (or after a
    /// start-up that found writes in flight) its documents are read from
    /// the primary for reconciliation, in milliseconds: long enough for
    /// the primary to finish a request whose connection broke.
    #[serde(default = "default_reconcile_delay_ms")]
    pub reconcile_delay_ms: u64,
    /// Sampled replayed documents the verifier reads from both clusters
    /// per second (see `crate::verifier`); 0 turns the verifier off.
    #[serde(default = "default_verify_docs_per_second")]
    pub verify_docs_per_second: u32,
}

fn default_verify_docs_per_second() -> u32 {
    2
}

fn default_reconcile_delay_ms() -> u64 {
    5_000
}

fn default_max_hold_ms() -> u64 {
    5_000
}

fn default_max_batch_ops() -> usize {
    1000
}
fn default_max_batch_bytes() -> usize {
    8 << 20
}
fn default_retry_initial_ms() -> u64 {
    100
}
fn default_retry_max_ms() -> u64 {
    5_000
}
fn default_gc_deletes() -> String {
    "1h".to_string()
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            start_paused: false,
            max_batch_ops: default_max_batch_ops(),
            max_batch_bytes: default_max_batch_bytes(),
            retry_initial_ms: default_retry_initial_ms(),
            retry_max_ms: default_retry_max_ms(),
            gc_deletes: default_gc_deletes(),
            max_hold_ms: default_max_hold_ms(),
            reconcile_delay_ms: default_reconcile_delay_ms(),
            verify_docs_per_second: default_verify_docs_per_second(),
        }
    }
}

impl ReplayConfig {
    /// Checks values; errors name the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_batch_ops == 0 {
            return Err("replay.max_batch_ops: must be at least 1".into());
        }
        if self.max_batch_bytes == 0 {
            return Err("replay.max_batch_bytes: must be at least 1".into());
        }
        if self.retry_initial_ms == 0 || self.retry_max_ms < self.retry_initial_ms {
            return Err(
                "replay.retry_max_ms: must be at least retry_initial_ms, which must be positive"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        listen = "127.0.0.1:19200"
        [primary]
        url = "http://127.0.0.1:9201"
    "#;

    #[test]
    fn minimal_config_gets_defaults() {
        let config = GatewayConfig::from_toml_with_env(MINIMAL, []).unwrap();
        assert_eq!(config.listen.port(), 19200);
        assert_eq!(config.threads, 2);
        let endpoint = config.primary.endpoint("primary.url").unwrap();
        assert_eq!(
            endpoint,
            Endpoint {
                host: "127.0.0.1".into(),
                port: 9201,
                tls: false
            }
        );
    }

    #[test]
    fn environment_overrides_nested_values() {
        let env = [
            (
                "TANDEM_GATEWAY__PRIMARY__URL".to_string(),
                "https://search.example:443".to_string(),
            ),
            ("TANDEM_GATEWAY__THREADS".to_string(), "4".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let config = GatewayConfig::from_toml_with_env(MINIMAL, env).unwrap();
        assert_eq!(config.threads, 4);
        let endpoint = config.primary.endpoint("primary.url").unwrap();
        assert!(endpoint.tls);
        assert_eq!(endpoint.host, "search.example");
    }

    #[test]
    fn bad_url_names_the_field() {
        let text = MINIMAL.replace("http://127.0.0.1:9201", "ftp://x");
        let err = GatewayConfig::from_toml_with_env(&text, []).unwrap_err();
        assert!(err.to_string().starts_with("primary.url:"), "{err}");
    }

    #[test]
    fn unknown_field_is_rejected() {
        let text = format!("{MINIMAL}\nretries = 3\n");
        let err = GatewayConfig::from_toml_with_env(&text, []).unwrap_err();
        assert!(err.to_string().contains("retries"), "{err}");
    }

    #[test]
    fn missing_primary_is_reported() {
        let err = GatewayConfig::from_toml_with_env("threads = 1", []).unwrap_err();
        assert!(err.to_string().contains("primary"), "{err}");
    }

    #[test]
    fn example_config_in_the_repository_is_valid() {
        let text = include_str!("../gateway.example.toml");
        let config = GatewayConfig::from_toml_with_env(text, []).unwrap();
        assert!(config.backup.is_some());
        assert_eq!(config.queue.overflow, OverflowSetting::Reject);
    }

    #[test]
    fn backup_equal_to_primary_is_rejected() {
        let text = format!("{MINIMAL}\n[backup]\nurl = \"http://127.0.0.1:9201\"\n");
        let err = GatewayConfig::from_toml_with_env(&text, []).unwrap_err();
        assert!(err.to_string().starts_with("backup.url:"), "{err}");
    }

    #[test]
    fn queue_limits_are_validated() {
        let text = format!("{MINIMAL}\n[queue]\nsegment_bytes = 1000\nmax_bytes = 1500\n");
        let err = GatewayConfig::from_toml_with_env(&text, []).unwrap_err();
        assert!(err.to_string().contains("max_bytes"), "{err}");
    }

    #[test]
    fn zero_threads_is_rejected() {
        let env = [("TANDEM_GATEWAY__THREADS".to_string(), "0".to_string())];
        let err = GatewayConfig::from_toml_with_env(MINIMAL, env).unwrap_err();
        assert_eq!(err.to_string(), "threads: must be at least 1");
    }
}
