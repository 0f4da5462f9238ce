//! `[control_plane]`: where the agent connects and how the gateway
//! identifies itself there.
//!
//! ```toml
//! [control_plane]
//! endpoint = "http://cp.internal:50051"   # or https://
//! token = "..."                       # bearer token, never logged
//! # ca_file = "/etc/tandem/cp-ca.pem"  # https: CA of the control plane (default: system roots)
//! # cert_file = "/etc/tandem/gw.pem"   # https: client certificate, for mutual TLS
//! # key_file = "/etc/tandem/gw.key"
//! # gateway_id = "gw-eu-1"            # default: a UUID kept in <data_dir>/gateway_id
//! # name = "gw-eu-1"                  # default: the host name
//! # advertised_address = "10.0.0.7:9200"   # default: `listen`
//! heartbeat_interval_ms = 5000
//! reconnect_max_ms = 10000
//! [control_plane.labels]
//! zone = "eu-west-1a"
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// `[control_plane]` settings of the gateway's agent.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// gRPC endpoint of the control plane, `http://host:port`.
    pub endpoint: String,
    /// Bearer token sent as `authorization: Bearer <token>` on the agent
    /// stream. Unset only for a control plane running without
    /// authentication. Never logged.
    #[serde(default)]
    pub token: Option<String>,
    /// Stable id of this gateway. Unset: a UUID generated on first start and
    /// kept in `<data_dir>/gateway_id`.
    #[serde(default)]
    pub gateway_id: Option<String>,
    /// Display name; unset = the host name.
    #[serde(default)]
    pub name: Option<String>,
    /// Labels shown in the fleet view (zone, rack...).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Interval between heartbeats (the control plane's `AgentWelcome` may
    /// override it), in milliseconds.
    #[serde(default = "default_heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
    /// Longest delay between two connection attempts, in milliseconds.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// `host:port` clients or the load balancer reach this gateway at;
    /// unset = the `listen` address.
    #[serde(default)]
    pub advertised_address: Option<String>,
    /// With an `https://` endpoint: PEM CA certificate(s) the control
    /// plane's certificate must chain to. Unset: the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// With an `https://` endpoint: PEM client certificate presented to a
    /// control plane requiring mutual TLS (with `key_file`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl std::fmt::Debug for ControlPlaneConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlaneConfig")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("gateway_id", &self.gateway_id)
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field("heartbeat_interval_ms", &self.heartbeat_interval_ms)
            .field("reconnect_max_ms", &self.reconnect_max_ms)
            .field("advertised_address", &self.advertised_address)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

fn default_heartbeat_interval_ms() -> u64 {
    5_000
}

fn default_reconnect_max_ms() -> u64 {
    10_000
}

/// Bounds of `heartbeat_interval_ms` (also applied to intervals the control
/// plane asks for).
pub(crate) const HEARTBEAT_RANGE_MS: std::ops::RangeInclusive<u64> = 100..=600_000;

/// Checks a gateway id: 1-128 characters of ASCII letters, digits, `-`,
/// `_`, `.` and `:`.
pub fn validate_gateway_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err(format!(
            "must be 1 to 128 characters, got {} characters",
            id.len()
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(format!(
            "may hold only ASCII letters, digits, '-', '_', '.' and ':', found {bad:?}"
        ));
    }
    Ok(())
}

impl ControlPlaneConfig {
    /// Checks values; the error is `(dotted field, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |field: &str, message: String| Err((format!("control_plane.{field}"), message));
        if let Err(message) = validate_endpoint(&self.endpoint) {
            return err("endpoint", message);
        }
        if let Some(token) = &self.token {
            if token.is_empty() {
                return err(
                    "token",
                    "must not be empty (remove it for an unauthenticated control plane)".into(),
                );
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return err(
                    "token",
                    "must be printable ASCII without spaces (it is sent as gRPC metadata)".into(),
                );
            }
        }
        if let Some(Err(message)) = self.gateway_id.as_deref().map(validate_gateway_id) {
            return err("gateway_id", message);
        }
        if self
            .name
            .as_ref()
            .is_some_and(|name| name.trim().is_empty() || name.len() > 253)
        {
            return err("name", "must be 1 to 253 characters".into());
        }
        for (key, value) in &self.labels {
            if key.is_empty() || key.len() > 63 || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return err(
                    &format!("labels.{key}"),
                    "label keys must be 1 to 63 printable ASCII characters".into(),
                );
            }
            if value.len() > 253 {
                return err(
                    &format!("labels.{key}"),
                    "label values must be at most 253 characters".into(),
                );
            }
        }
        if !HEARTBEAT_RANGE_MS.contains(&self.heartbeat_interval_ms) {
            return err(
                "heartbeat_interval_ms",
                format!(
                    "must be between {} and {}",
                    HEARTBEAT_RANGE_MS.start(),
                    HEARTBEAT_RANGE_MS.end()
                ),
            );
        }
        if !(100..=3_600_000).contains(&self.reconnect_max_ms) {
            return err("reconnect_max_ms", "must be between 100 and 3600000".into());
        }
        if let Some(Err(message)) = self.advertised_address.as_deref().map(validate_host_port) {
            return err("advertised_address", message);
        }
        let https = self.endpoint.starts_with("https://");
        for (field, path) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            let Some(path) = path else { continue };
            if !https {
                return err(field, "needs an https:// endpoint".into());
            }
            if let Err(e) = std::fs::metadata(path) {
                return err(field, format!("cannot read {}: {e}", path.display()));
            }
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => return err("key_file", "required with cert_file".into()),
            (None, Some(_)) => return err("cert_file", "required with key_file".into()),
            _ => {}
        }
        Ok(())
    }

    /// The TLS settings of an `https://` endpoint (`None` for `http://`),
    /// or the `(field, message)` of a file that cannot be read.
    pub fn tls(&self) -> Result<Option<ClientTlsConfig>, (String, String)> {
        if !self.endpoint.starts_with("https://") {
            return Ok(None);
        }
        let read = |field: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| {
                (
                    format!("control_plane.{field}"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })
        };
        let mut tls = match &self.ca_file {
            Some(ca) => {
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("ca_file", ca)?))
            }
            None => ClientTlsConfig::new().with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            tls = tls.identity(Identity::from_pem(
                read("cert_file", cert)?,
                read("key_file", key)?,
            ));
        }
        Ok(Some(tls))
    }

    /// The heartbeat interval as a [`std::time::Duration`].
    pub fn heartbeat_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.heartbeat_interval_ms)
    }

    /// The reconnect backoff cap as a [`std::time::Duration`].
    pub fn reconnect_max(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.reconnect_max_ms)
    }
}

fn validate_endpoint(endpoint: &str) -> Result<(), String> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| format!("not a URL ({e}): {endpoint:?}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(format!("scheme must be http or https, got {other:?}")),
        None => {
            return Err(format!(
                "missing scheme, expected http://host:port, got {endpoint:?}"
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("missing host in {endpoint:?}"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "must be http://host:port without a path, got {endpoint:?}"
        ));
    }
    Ok(())
}

fn validate_host_port(address: &str) -> Result<(), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("expected host:port, got {address:?}"))?;
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("expected host:port, got {address:?}"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(()),
        _ => Err(format!("invalid port in {address:?}")),
    }
}

#[cfg(test)]
mod tests {
    use crate::GatewayConfig;

    const BASE: &str = r#"
        listen = "127.0.0.1:19200"
        [primary]
        url = "http://127.0.0.1:9201"
    "#;

    fn load(section: &str) -> Result<GatewayConfig, String> {
        GatewayConfig::from_toml_with_env(&format!("{BASE}\n[control_plane]\n{section}\n"), [])
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_apply_and_token_is_not_debug_printed() {
        let config =
            load("endpoint = \"http://127.0.0.1:50051\"\ntoken = \"s3cret-token-value\"").unwrap();
        let cp = config.control_plane.unwrap();
        assert_eq!(cp.heartbeat_interval_ms, 5_000);
        assert_eq!(cp.reconnect_max_ms, 10_000);
        assert_eq!(cp.gateway_id, None);
        assert!(!format!("{cp:?}").contains("s3cret"));
    }

    #[test]
    fn absent_section_means_no_agent() {
        let config = GatewayConfig::from_toml_with_env(BASE, []).unwrap();
        assert!(config.control_plane.is_none());
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("endpoint = \"ftp://x:1\"", "control_plane.endpoint:"),
            (
                "endpoint = \"http://x:1\"\nca_file = \"/etc/hosts\"",
                "control_plane.ca_file:",
            ),
            (
                "endpoint = \"https://x:1\"\nca_file = \"/nonexistent/ca.pem\"",
                "control_plane.ca_file:",
            ),
            (
                "endpoint = \"https://x:1\"\ncert_file = \"/etc/hosts\"",
                "control_plane.key_file:",
            ),
            ("endpoint = \"http://x:1/api\"", "control_plane.endpoint:"),
            (
                "endpoint = \"http://x:1\"\ntoken = \"has space\"",
                "control_plane.token:",
            ),
            (
                "endpoint = \"http://x:1\"\ngateway_id = \"a/b\"",
                "control_plane.gateway_id:",
            ),
            (
                "endpoint = \"http://x:1\"\nheartbeat_interval_ms = 0",
                "control_plane.heartbeat_interval_ms:",
            ),
            (
                "endpoint = \"http://x:1\"\nreconnect_max_ms = 1",
                "control_plane.reconnect_max_ms:",
            ),
            (
                "endpoint = \"http://x:1\"\nadvertised_address = \"nohost\"",
                "control_plane.advertised_address:",
            ),
            (
                "endpoint = \"http://x:1\"\nname = \"\"",
                "control_plane.name:",
            ),
        ];
        for (section, expected) in cases {
            let err = load(section).unwrap_err();
            assert!(err.starts_with(expected), "{section}: {err}");
        }
    }

    #[test]
    fn unknown_keys_and_missing_endpoint_are_rejected() {
        assert!(
            load("endpoint = \"http://x:1\"\nretries = 3")
                .unwrap_err()
                .contains("retries")
        );
        assert!(load("token = \"abc\"").unwrap_err().contains("endpoint"));
    }

    #[test]
    fn environment_overrides_reach_the_section() {
        let text = format!("{BASE}\n[control_plane]\nendpoint = \"http://x:1\"\n");
        let env = [(
            "TANDEM_GATEWAY__CONTROL_PLANE__TOKEN".to_string(),
            "from-env-token".to_string(),
        )];
        let config = GatewayConfig::from_toml_with_env(&text, env).unwrap();
        assert_eq!(
            config.control_plane.unwrap().token.as_deref(),
            Some("from-env-token")
        );
    }
}
