//! Turning the settings of a RegisterCluster or UpdateCluster request into
//! what is stored (secrets sealed) and what is probed (secrets in clear),
//! validating every field on the way.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use tandem_proto::v1::{
    AuthMethod, Credentials, Limits, NodeDiscovery, OverLimitPolicy, RegisterClusterRequest,
    TlsSettings, UpdateClusterRequest,
};
use tonic::Status;
use uuid::Uuid;

use crate::probe::{ProbeAuth, ProbeTarget, Prober, TlsOptions};
use crate::secrets::{SecretBox, SecretString};
use crate::store::clusters::{
    AuthKind, ClusterRecord, ClusterSettings, OverLimit, StoredCredentials, StoredLimits, StoredTls,
};
use crate::validate::{self, field, invalid};

/// Most endpoints a cluster may list.
const MAX_ENDPOINTS: usize = 32;
/// Longest description.
const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Longest PEM text (CA bundle, certificate chain, key).
const MAX_PEM_CHARS: usize = 256 * 1024;
/// Longest node-list refresh interval.
const MAX_REFRESH_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Longest wait for capacity under OVER_LIMIT_POLICY_WAIT.
const MAX_LIMIT_WAIT: Duration = Duration::from_secs(3600);

/// Sealing context of a cluster's password or API key.
pub(crate) fn credentials_context(id: Uuid) -> String {
    format!("cluster/{id}/credentials")
}

/// Sealing context of a cluster's TLS client key.
pub(super) fn tls_key_context(id: Uuid) -> String {
    format!("cluster/{id}/tls_client_key")
}

/// The settings to store and the target to probe for a registration.
pub(super) fn for_register(
    request: &RegisterClusterRequest,
    id: Uuid,
    secrets: &SecretBox,
    prober: &Prober,
) -> Result<(ClusterSettings, ProbeTarget), Status> {
    validate::resource_name("name", &request.name)?;
    description("description", &request.description)?;
    validate::labels("labels", &request.labels)?;
    let endpoints = endpoints("endpoints", &request.endpoints)?;
    let (credentials, auth) = credentials(
        "credentials",
        request.credentials.as_ref(),
        None,
        id,
        secrets,
    )?;
    let (tls, tls_options) = tls("tls", request.tls.as_ref(), None, id, secrets, prober)?;
    let (node_discovery_enabled, node_discovery_refresh_ms) =
        node_discovery("node_discovery", request.node_discovery.as_ref())?;
    let limits = limits("limits", request.limits.as_ref())?;
    let settings = ClusterSettings {
        name: request.name.clone(),
        description: request.description.clone(),
        labels: request
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        endpoints: endpoints.clone(),
        credentials,
        tls,
        node_discovery_enabled,
        node_discovery_refresh_ms,
        limits,
    };
    let target = ProbeTarget {
        endpoints,
        auth,
        tls: tls_options,
        node_discovery: node_discovery_enabled,
    };
    Ok((settings, target))
}

/// An UpdateCluster request applied to the stored settings.
pub(super) struct Update {
    /// The settings to store (whether a new name is free is for the
    /// caller to check).
    pub next: ClusterSettings,
    /// Credentials to probe with, when the request replaces them.
    pub auth: Option<ProbeAuth>,
    /// TLS settings to probe with, when the request replaces them.
    pub tls: Option<TlsOptions>,
}

/// Applies the fields an UpdateCluster request sets to `current`'s
/// settings. `open_credentials` and `open_tls_key` open the stored secrets,
/// called only when a kept secret is needed.
pub(super) fn for_update(
    request: &UpdateClusterRequest,
    current: &ClusterRecord,
    open_credentials: &dyn Fn() -> Result<SecretString, Status>,
    open_tls_key: &dyn Fn() -> Result<SecretString, Status>,
    secrets: &SecretBox,
    prober: &Prober,
) -> Result<Update, Status> {
    let id = current.id;
    let mut next = current.settings.clone();
    if let Some(name) = &request.name {
        validate::resource_name("name", name)?;
        next.name = name.clone();
    }
    if let Some(description) = &request.description {
        self::description("description", description)?;
        next.description = description.clone();
    }
    if let Some(labels) = &request.labels {
        validate::labels("labels.labels", &labels.labels)?;
        next.labels = labels.labels.clone().into_iter().collect();
    }
    if let Some(list) = &request.endpoints {
        next.endpoints = endpoints("endpoints.values", &list.values)?;
    }
    let mut auth = None;
    if let Some(given) = &request.credentials {
        let stored = &current.settings.credentials;
        let current_secret = CurrentSecret {
            sealed: stored.secret_encrypted.as_ref(),
            open: open_credentials,
        };
        let (stored, plain) = credentials(
            "credentials",
            Some(given),
            Some((stored, current_secret)),
            id,
            secrets,
        )?;
        next.credentials = stored;
        auth = Some(plain);
    }
    let mut tls_options = None;
    if let Some(given) = &request.tls {
        let current_key = CurrentSecret {
            sealed: current.settings.tls.client_key_encrypted.as_ref(),
            open: open_tls_key,
        };
        let (stored, plain) = tls("tls", Some(given), Some(current_key), id, secrets, prober)?;
        next.tls = stored;
        tls_options = Some(plain);
    }
    if let Some(discovery) = &request.node_discovery {
        (next.node_discovery_enabled, next.node_discovery_refresh_ms) =
            node_discovery("node_discovery", Some(discovery))?;
    }
    if let Some(given) = &request.limits {
        next.limits = limits("limits", Some(given))?;
    }
    Ok(Update {
        next,
        auth,
        tls: tls_options,
    })
}

/// A free-text description.
fn description(field: &str, value: &str) -> Result<(), Status> {
    validate::max_chars(field, value, MAX_DESCRIPTION_CHARS)
}

/// At least one valid, distinct endpoint, normalised.
fn endpoints(field: &str, values: &[String]) -> Result<Vec<String>, Status> {
    if values.is_empty() {
        return Err(invalid(field, "at least one endpoint is required"));
    }
    if values.len() > MAX_ENDPOINTS {
        return Err(invalid(
            field,
            format!("at most {MAX_ENDPOINTS} endpoints (got {})", values.len()),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let path = validate::index(field, i);
        let endpoint = validate::http_endpoint(&path, value)?;
        if let Some(j) = out.iter().position(|e| *e == endpoint) {
            return Err(invalid(
                &path,
                format!("duplicates {}", validate::index(field, j)),
            ));
        }
        out.push(endpoint);
    }
    Ok(out)
}

/// What is stored now, to keep a secret an update leaves empty.
struct CurrentSecret<'a> {
    /// The stored credentials or key.
    sealed: Option<&'a Vec<u8>>,
    /// Opens the stored secret (only called when it is kept or compared).
    open: &'a dyn Fn() -> Result<SecretString, Status>,
}

/// Credentials of a request: stored form (secret sealed) and probe form.
///
/// `current` is the stored credentials on update: an empty `password` or
/// `api_key` with an unchanged method keeps the stored secret.
fn credentials(
    path: &str,
    given: Option<&Credentials>,
    current: Option<(&StoredCredentials, CurrentSecret<'_>)>,
    id: Uuid,
    secrets: &SecretBox,
) -> Result<(StoredCredentials, ProbeAuth), Status> {
    let none = StoredCredentials {
        method: AuthKind::None,
        username: String::new(),
        secret_encrypted: None,
        secret_updated_at: None,
    };
    let Some(given) = given else {
        return Ok((none, ProbeAuth::None));
    };
    let method: AuthMethod = validate::enum_value(&field(path, "method"), given.method, true)?;
    let set_fields: Vec<&str> = [
        ("username", &given.username),
        ("password", &given.password),
        ("api_key", &given.api_key),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(name, _)| name)
    .collect();
    let kind = match method {
        AuthMethod::Unspecified if !set_fields.is_empty() => {
            return Err(invalid(
                field(path, "method"),
                format!("required when {} is set", set_fields.join(", ")),
            ));
        }
        AuthMethod::Unspecified | AuthMethod::None => AuthKind::None,
        AuthMethod::Basic => AuthKind::Basic,
        AuthMethod::ApiKey => AuthKind::ApiKey,
    };
    let must_be_empty = |name: &str, value: &str, method: &str| {
        if value.is_empty() {
            Ok(())
        } else {
            Err(invalid(
                field(path, name),
                format!("must be empty with {method}"),
            ))
        }
    };
    let (secret_field, secret) = match kind {
        AuthKind::None => {
            if let Some(name) = set_fields.first() {
                return Err(invalid(
                    field(path, name),
                    "must be empty with AUTH_METHOD_NONE",
                ));
            }
            return Ok((none, ProbeAuth::None));
        }
        AuthKind::Basic => {
            let username_path = field(path, "username");
            validate::required(&username_path, &given.username)?;
            validate::max_chars(&username_path, &given.username, 256)?;
            if given.username.contains(':') || given.username.chars().any(char::is_control) {
                return Err(invalid(
                    &username_path,
                    "must not contain ':' or control characters (HTTP basic authentication)",
                ));
            }
            must_be_empty("api_key", &given.api_key, "AUTH_METHOD_BASIC")?;
            validate::max_chars(&field(path, "password"), &given.password, 1024)?;
            ("password", &given.password)
        }
        AuthKind::ApiKey => {
            must_be_empty("username", &given.username, "AUTH_METHOD_API_KEY")?;
            must_be_empty("password", &given.password, "AUTH_METHOD_API_KEY")?;
            let key_path = field(path, "api_key");
            validate::max_chars(&key_path, &given.api_key, 4096)?;
            if !given.api_key.bytes().all(|b| b.is_ascii_graphic()) {
                // It travels in an HTTP header; never echo it.
                return Err(invalid(
                    &key_path,
                    "must be printable ASCII without spaces (the encoded API key)",
                ));
            }
            ("api_key", &given.api_key)
        }
    };
    let secret_path = field(path, secret_field);
    // An unchanged method may keep (or re-enter) the stored secret.
    let kept = match current {
        Some((stored, current)) if stored.method == kind => {
            current.sealed.map(|sealed| (stored, sealed, current.open))
        }
        _ => None,
    };
    let (secret_encrypted, secret_updated_at, plain) = match kept {
        Some((stored, sealed, open)) => {
            let current_plain = open();
            if secret.is_empty() || current_plain.as_ref().is_ok_and(|p| p.expose() == secret) {
                (
                    Some(sealed.clone()),
                    stored.secret_updated_at,
                    current_plain?,
                )
            } else {
                let plain = SecretString::new(secret.clone());
                let sealed = secrets.seal(&plain, &credentials_context(id));
                (Some(sealed), Some(Utc::now()), plain)
            }
        }
        None if secret.is_empty() => {
            let method_name = method.as_str_name();
            return Err(invalid(
                &secret_path,
                format!("required with {method_name}"),
            ));
        }
        None => {
            let plain = SecretString::new(secret.clone());
            let sealed = secrets.seal(&plain, &credentials_context(id));
            (Some(sealed), Some(Utc::now()), plain)
        }
    };
    let auth = match kind {
        AuthKind::Basic => ProbeAuth::Basic {
            username: given.username.clone(),
            password: plain,
        },
        _ => ProbeAuth::ApiKey(plain),
    };
    let stored = StoredCredentials {
        method: kind,
        username: if kind == AuthKind::Basic {
            given.username.clone()
        } else {
            String::new()
        },
        secret_encrypted,
        secret_updated_at,
    };
    Ok((stored, auth))
}

/// TLS settings of a request: stored form (key sealed) and probe form.
///
/// `current` is the stored settings on update: an empty
/// `client_private_key_pem` with a client certificate keeps the stored key.
fn tls(
    path: &str,
    given: Option<&TlsSettings>,
    current: Option<CurrentSecret<'_>>,
    id: Uuid,
    secrets: &SecretBox,
    prober: &Prober,
) -> Result<(StoredTls, TlsOptions), Status> {
    let Some(given) = given else {
        return Ok((StoredTls::default(), TlsOptions::default()));
    };
    let ca_path = field(path, "ca_certificates_pem");
    validate::max_chars(&ca_path, &given.ca_certificates_pem, MAX_PEM_CHARS)?;
    let cert_path = field(path, "client_certificate_pem");
    validate::max_chars(&cert_path, &given.client_certificate_pem, MAX_PEM_CHARS)?;
    let key_path = field(path, "client_private_key_pem");
    validate::max_chars(&key_path, &given.client_private_key_pem, MAX_PEM_CHARS)?;
    let name_path = field(path, "server_name");
    let server_name = given.server_name.trim();
    validate::max_chars(&name_path, server_name, 253)?;
    if !server_name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(invalid(&name_path, "must be a DNS host name"));
    }

    let has_cert = !given.client_certificate_pem.trim().is_empty();
    let has_key = !given.client_private_key_pem.trim().is_empty();
    let (client_key_encrypted, key_plain) = match (has_cert, has_key, current) {
        (false, false, _) => (None, SecretString::default()),
        (false, true, _) => {
            return Err(invalid(
                &key_path,
                format!("must be empty without {cert_path}"),
            ));
        }
        (
            true,
            false,
            Some(CurrentSecret {
                sealed: Some(sealed),
                open,
            }),
        ) => (Some(sealed.clone()), open()?),
        (true, false, _) => {
            return Err(invalid(&key_path, format!("required with {cert_path}")));
        }
        (true, true, _) => {
            let plain = SecretString::new(given.client_private_key_pem.clone());
            (Some(secrets.seal(&plain, &tls_key_context(id))), plain)
        }
    };
    let options = TlsOptions {
        ca_certificates_pem: given.ca_certificates_pem.clone(),
        server_name: server_name.to_string(),
        insecure_skip_verify: given.insecure_skip_verify,
        client_certificate_pem: given.client_certificate_pem.clone(),
        client_private_key_pem: key_plain,
    };
    prober.check_tls(&options).map_err(|err| {
        // `check_tls` names fields from the root; re-root them at `path`.
        let field_path = err.field.replacen("tls", path, 1);
        invalid(field_path, err.message)
    })?;
    let stored = StoredTls {
        ca_certificates_pem: options.ca_certificates_pem.clone(),
        server_name: options.server_name.clone(),
        insecure_skip_verify: options.insecure_skip_verify,
        client_certificate_pem: options.client_certificate_pem.clone(),
        client_key_encrypted,
    };
    Ok((stored, options))
}

/// Node discovery: enabled, and refresh interval in milliseconds.
fn node_discovery(path: &str, given: Option<&NodeDiscovery>) -> Result<(bool, i64), Status> {
    let Some(given) = given else {
        return Ok((false, 0));
    };
    let interval_path = field(path, "refresh_interval");
    let interval = validate::duration(
        &interval_path,
        given.refresh_interval.as_ref(),
        MAX_REFRESH_INTERVAL,
    )?;
    if !interval.is_zero() && interval < Duration::from_secs(1) {
        return Err(invalid(
            &interval_path,
            "must be 0 (the default, 60s) or at least 1s",
        ));
    }
    Ok((given.enabled, millis(interval)))
}

/// Per-node limits.
fn limits(path: &str, given: Option<&Limits>) -> Result<StoredLimits, Status> {
    let Some(given) = given else {
        return Ok(StoredLimits {
            max_qps_per_node: 0,
            max_bytes_per_sec_per_node: 0,
            max_connections_per_node: 0,
            over_limit: OverLimit::Wait,
            max_wait_ms: 0,
        });
    };
    let bytes_path = field(path, "max_bytes_per_sec_per_node");
    let max_bytes = i64::try_from(given.max_bytes_per_sec_per_node)
        .map_err(|_| invalid(&bytes_path, format!("must be at most {}", i64::MAX)))?;
    let policy: OverLimitPolicy =
        validate::enum_value(&field(path, "over_limit"), given.over_limit, true)?;
    let max_wait = validate::duration(
        &field(path, "max_wait"),
        given.max_wait.as_ref(),
        MAX_LIMIT_WAIT,
    )?;
    Ok(StoredLimits {
        max_qps_per_node: i64::from(given.max_qps_per_node),
        max_bytes_per_sec_per_node: max_bytes,
        max_connections_per_node: i64::from(given.max_connections_per_node),
        over_limit: match policy {
            OverLimitPolicy::Reject => OverLimit::Reject,
            OverLimitPolicy::Unspecified | OverLimitPolicy::Wait => OverLimit::Wait,
        },
        max_wait_ms: millis(max_wait),
    })
}

fn millis(span: Duration) -> i64 {
    span.as_millis().try_into().unwrap_or(i64::MAX)
}
