//! Control-plane settings, from flags or environment variables.
//!
//! Two settings have no default and must be chosen explicitly:
//!
//! - **API authentication.** Every `tandem.v1` RPC needs
//!   `authorization: Bearer <token>` with one of the `--auth-token` values
//!   (`TANDEM_AUTH_TOKEN`, comma-separated to allow rotation). Without any
//!   token the control plane refuses to start, unless `--insecure-no-auth`
//!   says that an open API is really wanted (local development only). gRPC
//!   health and reflection never need a token.
//! - **The secret key** that seals stored cluster secrets: 32 bytes as
//!   base64 or hex, in the file `--secret-key-file` (`TANDEM_SECRET_KEY_FILE`)
//!   or in `TANDEM_SECRET_KEY`. With `--create-secret-key-file` a missing key
//!   file is generated (mode 0600) — convenient for local development; in
//!   production provision and back up the key yourself.
//!
//! Prometheus metrics are off unless `--metrics-listen`
//! (`TANDEM_CP_METRICS_LISTEN`) names an address: there is no default port,
//! so nothing unauthenticated is exposed that was not asked for.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::auth::BearerAuth;
use crate::fleet::AgentSettings;
use crate::secrets::{SecretBox, SecretKey};

/// Shortest accepted API token: shorter ones are guessable.
pub const MIN_AUTH_TOKEN_CHARS: usize = 16;
/// Shortest accepted agent heartbeat / statistics interval.
pub const MIN_AGENT_INTERVAL_MS: u64 = 100;
/// Longest accepted agent heartbeat / statistics interval (one hour).
pub const MAX_AGENT_INTERVAL_MS: u64 = 3_600_000;

/// Everything the control plane needs to start.
#[derive(Clone, clap::Args)]
pub struct ControlPlaneConfig {
    /// Address of the gRPC API.
    #[arg(long, env = "TANDEM_CP_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Address of the unauthenticated HTTP listener serving Prometheus
    /// `GET /metrics` and `GET /health`, e.g. 127.0.0.1:9290. Unset: no
    /// metrics listener. Keep it on loopback or a management network.
    #[arg(long, env = "TANDEM_CP_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Address of the web console, e.g. 127.0.0.1:8080: the browser
    /// application and every `tandem.v1` service over gRPC-web, behind the
    /// same token check (the console signs in with a token). Unset: no
    /// console. Plain HTTP: keep it on loopback or put TLS in front.
    #[arg(long, env = "TANDEM_CP_UI_LISTEN")]
    pub ui_listen: Option<SocketAddr>,
    /// Postgres connection URL, e.g. postgres://user:pass@host:5432/tandem.
    #[arg(long, env = "TANDEM_DATABASE_URL")]
    pub database_url: String,
    /// How long to keep retrying the first Postgres connection, in seconds.
    #[arg(long, env = "TANDEM_DATABASE_WAIT_SECS", default_value_t = 30)]
    pub database_wait_secs: u64,
    /// Bearer token(s) accepted on every `tandem.v1` RPC (at least 16
    /// characters each). Repeat the flag, or separate tokens with commas in
    /// the environment variable, to rotate tokens without downtime.
    #[arg(
        long = "auth-token",
        env = "TANDEM_AUTH_TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub auth_tokens: Vec<String>,
    /// Serve the API without authentication. For local development only;
    /// without it the control plane refuses to start when no --auth-token is
    /// configured.
    #[arg(long, env = "TANDEM_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// File holding the 32-byte key that encrypts stored cluster secrets, as
    /// base64 or 64 hex digits. Alternative: TANDEM_SECRET_KEY.
    #[arg(long, env = "TANDEM_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// The secret key itself (base64 or hex). Prefer --secret-key-file: a
    /// flag value is visible to other local users in the process list.
    #[arg(long, env = "TANDEM_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Generate a new random key into --secret-key-file when that file does
    /// not exist yet (local development; back the file up otherwise).
    #[arg(long, requires = "secret_key_file")]
    pub create_secret_key_file: bool,
    /// Timeout of each HTTP request when probing a cluster, in seconds.
    #[arg(long, env = "TANDEM_PROBE_TIMEOUT_SECS", default_value_t = 10)]
    pub probe_timeout_secs: u64,
    /// Interval between gateway heartbeats, in milliseconds, sent to every
    /// agent in its welcome. A gateway silent for three intervals is marked
    /// disconnected.
    #[arg(
        long,
        env = "TANDEM_AGENT_HEARTBEAT_INTERVAL_MS",
        default_value_t = 10_000
    )]
    pub agent_heartbeat_interval_ms: u64,
    /// Interval between gateway queue statistics reports, in milliseconds.
    /// Statistics older than three intervals are shown as stale.
    #[arg(long, env = "TANDEM_AGENT_STATS_INTERVAL_MS", default_value_t = 10_000)]
    pub agent_stats_interval_ms: u64,
    /// PEM certificate chain served on the gRPC listener: with
    /// --tls-key-file, the API is served over TLS only.
    #[arg(long, env = "TANDEM_CP_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, env = "TANDEM_CP_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificate(s) that client certificates must chain to: with
    /// it, every client (tandemctl, SDKs, gateway agents) must present a
    /// certificate (mutual TLS), in addition to the bearer token.
    #[arg(long, env = "TANDEM_CP_TLS_CLIENT_CA_FILE", requires = "tls_cert_file")]
    pub tls_client_ca_file: Option<PathBuf>,
}

impl Default for ControlPlaneConfig {
    /// The flag defaults, with no database URL, no token and no key: set
    /// those (tests use struct-update syntax from here).
    fn default() -> Self {
        ControlPlaneConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            metrics_listen: None,
            ui_listen: None,
            database_url: String::new(),
            database_wait_secs: 30,
            auth_tokens: Vec::new(),
            insecure_no_auth: false,
            secret_key_file: None,
            secret_key: None,
            create_secret_key_file: false,
            probe_timeout_secs: 10,
            agent_heartbeat_interval_ms: 10_000,
            agent_stats_interval_ms: 10_000,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
        }
    }
}

impl std::fmt::Debug for ControlPlaneConfig {
    // Hand-written so that tokens and keys never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlaneConfig")
            .field("listen", &self.listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("ui_listen", &self.ui_listen)
            .field(
                "database_url",
                &crate::store::redact_url(&self.database_url),
            )
            .field("database_wait_secs", &self.database_wait_secs)
            .field(
                "auth_tokens",
                &format!("{} token(s)", self.auth_tokens.len()),
            )
            .field("insecure_no_auth", &self.insecure_no_auth)
            .field("secret_key_file", &self.secret_key_file)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "***"))
            .field("create_secret_key_file", &self.create_secret_key_file)
            .field("probe_timeout_secs", &self.probe_timeout_secs)
            .field(
                "agent_heartbeat_interval_ms",
                &self.agent_heartbeat_interval_ms,
            )
            .field("agent_stats_interval_ms", &self.agent_stats_interval_ms)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("tls_client_ca_file", &self.tls_client_ca_file)
            .finish()
    }
}

impl ControlPlaneConfig {
    /// The first-connection retry window.
    pub fn database_wait(&self) -> Duration {
        Duration::from_secs(self.database_wait_secs)
    }

    /// Timeout of each probe request.
    pub fn probe_timeout(&self) -> Duration {
        Duration::from_secs(self.probe_timeout_secs.max(1))
    }

    /// The agent-stream intervals, or why they are refused.
    pub fn agent_settings(&self) -> anyhow::Result<AgentSettings> {
        let check = |flag: &str, ms: u64| -> anyhow::Result<Duration> {
            if !(MIN_AGENT_INTERVAL_MS..=MAX_AGENT_INTERVAL_MS).contains(&ms) {
                anyhow::bail!(
                    "{flag}: must be between {MIN_AGENT_INTERVAL_MS} and {MAX_AGENT_INTERVAL_MS} ms (got {ms})"
                );
            }
            Ok(Duration::from_millis(ms))
        };
        Ok(AgentSettings {
            heartbeat_interval: check(
                "--agent-heartbeat-interval-ms (TANDEM_AGENT_HEARTBEAT_INTERVAL_MS)",
                self.agent_heartbeat_interval_ms,
            )?,
            stats_interval: check(
                "--agent-stats-interval-ms (TANDEM_AGENT_STATS_INTERVAL_MS)",
                self.agent_stats_interval_ms,
            )?,
        })
    }

    /// The TLS settings of the gRPC listener (`None`: plaintext), or why
    /// they are refused (a file that cannot be read, a key without its
    /// certificate).
    pub fn tls(&self) -> anyhow::Result<Option<ServerTlsConfig>> {
        let read = |flag: &str, path: &PathBuf| -> anyhow::Result<Vec<u8>> {
            let pem = std::fs::read(path)
                .with_context(|| format!("{flag}: cannot read {}", path.display()))?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN ") {
                anyhow::bail!("{flag}: {} is not a PEM file", path.display());
            }
            Ok(pem)
        };
        let (cert, key) = match (&self.tls_cert_file, &self.tls_key_file) {
            (None, None) => {
                if self.tls_client_ca_file.is_some() {
                    anyhow::bail!(
                        "--tls-client-ca-file (TANDEM_CP_TLS_CLIENT_CA_FILE) needs --tls-cert-file and --tls-key-file"
                    );
                }
                return Ok(None);
            }
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => anyhow::bail!(
                "--tls-cert-file (TANDEM_CP_TLS_CERT_FILE) needs --tls-key-file (TANDEM_CP_TLS_KEY_FILE)"
            ),
            (None, Some(_)) => anyhow::bail!(
                "--tls-key-file (TANDEM_CP_TLS_KEY_FILE) needs --tls-cert-file (TANDEM_CP_TLS_CERT_FILE)"
            ),
        };
        let identity =
            Identity::from_pem(read("--tls-cert-file", cert)?, read("--tls-key-file", key)?);
        let mut tls = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.tls_client_ca_file {
            tls = tls.client_ca_root(Certificate::from_pem(read("--tls-client-ca-file", ca)?));
        }
        Ok(Some(tls))
    }

    /// The API authentication policy, or why the configuration is refused.
    pub fn auth(&self) -> anyhow::Result<BearerAuth> {
        let tokens: Vec<String> = self
            .auth_tokens
            .iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        match (tokens.is_empty(), self.insecure_no_auth) {
            (true, false) => anyhow::bail!(
                "no API token configured: set --auth-token (env TANDEM_AUTH_TOKEN) to a random \
                 string of at least {MIN_AUTH_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`), \
                 or pass --insecure-no-auth to serve the API without authentication (local development only)"
            ),
            (false, true) => anyhow::bail!(
                "--insecure-no-auth conflicts with --auth-token (TANDEM_AUTH_TOKEN): choose one"
            ),
            (true, true) => Ok(BearerAuth::disabled()),
            (false, false) => {
                if let Some(n) = tokens
                    .iter()
                    .map(|t| t.chars().count())
                    .find(|n| *n < MIN_AUTH_TOKEN_CHARS)
                {
                    anyhow::bail!(
                        "--auth-token (TANDEM_AUTH_TOKEN): a token has {n} characters; \
                         use at least {MIN_AUTH_TOKEN_CHARS} (e.g. `openssl rand -hex 32`)"
                    );
                }
                Ok(BearerAuth::new(tokens))
            }
        }
    }

    /// The box sealing stored secrets, from the configured key.
    pub fn secret_box(&self) -> anyhow::Result<SecretBox> {
        let key = match (&self.secret_key_file, &self.secret_key) {
            (Some(_), Some(_)) => anyhow::bail!(
                "both --secret-key-file (TANDEM_SECRET_KEY_FILE) and --secret-key \
                 (TANDEM_SECRET_KEY) are set: choose one"
            ),
            (Some(path), None) => SecretKey::load_file(path, self.create_secret_key_file)
                .context("--secret-key-file (TANDEM_SECRET_KEY_FILE)")?,
            (None, Some(text)) => {
                SecretKey::parse(text).context("--secret-key (TANDEM_SECRET_KEY)")?
            }
            (None, None) => anyhow::bail!(
                "no secret key for cluster credentials: set --secret-key-file <path> \
                 (env TANDEM_SECRET_KEY_FILE) to a file holding 32 bytes as base64 or hex \
                 (e.g. `openssl rand -base64 32 > tandem.key`), or TANDEM_SECRET_KEY to the key \
                 itself; for local development add --create-secret-key-file to generate the file"
            ),
        };
        Ok(SecretBox::new(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_needs_a_token_or_an_explicit_opt_out() {
        let err = ControlPlaneConfig::default()
            .auth()
            .unwrap_err()
            .to_string();
        assert!(err.contains("--auth-token") && err.contains("--insecure-no-auth"));

        let open = ControlPlaneConfig {
            insecure_no_auth: true,
            ..Default::default()
        };
        assert!(!open.auth().unwrap().is_enabled());

        let short = ControlPlaneConfig {
            auth_tokens: vec!["short".into()],
            ..Default::default()
        };
        let err = short.auth().unwrap_err().to_string();
        assert!(
            err.contains("at least 16") && !err.contains("short"),
            "{err}"
        );

        let both = ControlPlaneConfig {
            auth_tokens: vec!["a".repeat(20)],
            insecure_no_auth: true,
            ..Default::default()
        };
        assert!(both.auth().is_err());
    }

    #[test]
    fn secret_key_is_required_and_named_in_errors() {
        let err = ControlPlaneConfig::default()
            .secret_box()
            .unwrap_err()
            .to_string();
        assert!(err.contains("--secret-key-file"), "{err}");

        let bad = ControlPlaneConfig {
            secret_key: Some("too-short".into()),
            ..Default::default()
        };
        let err = format!("{:#}", bad.secret_box().unwrap_err());
        assert!(err.contains("TANDEM_SECRET_KEY"), "{err}");
        assert!(!err.contains("too-short"), "key echoed: {err}");

        let good = ControlPlaneConfig {
            secret_key: Some(SecretKey::generate().to_base64()),
            ..Default::default()
        };
        good.secret_box().unwrap();
    }

    #[test]
    fn agent_intervals_are_bounded() {
        let settings = ControlPlaneConfig::default().agent_settings().unwrap();
        assert_eq!(settings.heartbeat_interval, Duration::from_secs(10));
        let fast = ControlPlaneConfig {
            agent_heartbeat_interval_ms: 5,
            ..Default::default()
        };
        let err = fast.agent_settings().unwrap_err().to_string();
        assert!(err.starts_with("--agent-heartbeat-interval-ms"), "{err}");
    }

    #[test]
    fn debug_hides_tokens_and_keys() {
        let config = ControlPlaneConfig {
            auth_tokens: vec!["t0ken-t0ken-t0ken-t0ken".into()],
            secret_key: Some("k3y-k3y".into()),
            database_url: "postgres://u:pw@h/db".into(),
            ..Default::default()
        };
        let text = format!("{config:?}");
        for secret in ["t0ken", "k3y", ":pw@"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}
