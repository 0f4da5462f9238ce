//! # tandem-client
//!
//! Rust SDK for the Tandem control plane. It re-exports the generated
//! `tandem.v1` clients and adds a [`connect`] helper; the `tandemctl` binary
//! in this crate is built on it.
//!
//! Every `tandem.v1` RPC needs the control plane's bearer token: wrap the
//! channel with [`BearerToken`] (see [`cluster_client`]).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let channel = tandem_client::connect("http://127.0.0.1:50051").await?;
//! let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
//! # Ok(()) }
//! ```

/// Well-known protobuf types (`Duration`, `Timestamp`) used by [`v1`].
pub use prost_types;
pub use tandem_proto::v1;

use std::time::Duration;

use anyhow::Context;
use tonic::transport::{Channel, Endpoint};

/// Opens a channel to the control plane at `endpoint` (`http://host:port`,
/// or `https://` with the system's trusted roots).
pub async fn connect(endpoint: &str) -> anyhow::Result<Channel> {
    connect_with(endpoint, &Tls::default()).await
}

/// TLS settings of an `https://` endpoint, as PEM files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// CA certificate(s) the server's certificate must chain to; `None`
    /// trusts the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate, for a control plane requiring mutual TLS.
    pub cert_file: Option<std::path::PathBuf>,
    /// Private key of `cert_file`.
    pub key_file: Option<std::path::PathBuf>,
}

/// [`connect`] with TLS settings.
pub async fn connect_with(endpoint: &str, tls: &Tls) -> anyhow::Result<Channel> {
    let mut target = Endpoint::from_shared(endpoint.to_string())
        .with_context(|| format!("--endpoint: not a valid URL: {endpoint:?}"))?
        .connect_timeout(Duration::from_secs(5));
    if endpoint.starts_with("https://") {
        target = target
            .tls_config(client_tls(tls)?)
            .context("--endpoint: TLS settings refused")?;
    } else if tls != &Tls::default() {
        anyhow::bail!(
            "--ca-file / --cert-file / --key-file need an https:// endpoint (got {endpoint:?})"
        );
    }
    target
        .connect()
        .await
        .with_context(|| format!("cannot connect to the control plane at {endpoint}"))
}

/// The rustls client settings for `tls`: files are read here so that a
/// missing or unreadable one is reported by its flag.
pub fn client_tls(tls: &Tls) -> anyhow::Result<tonic::transport::ClientTlsConfig> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("{flag}: cannot read {}", path.display()))
    };
    let mut config = ClientTlsConfig::new();
    config = match &tls.ca_file {
        Some(ca) => config.ca_certificate(Certificate::from_pem(read("--ca-file", ca)?)),
        None => config.with_native_roots(),
    };
    match (&tls.cert_file, &tls.key_file) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            config = config.identity(Identity::from_pem(
                read("--cert-file", cert)?,
                read("--key-file", key)?,
            ));
        }
        (Some(_), None) => anyhow::bail!("--cert-file needs --key-file"),
        (None, Some(_)) => anyhow::bail!("--key-file needs --cert-file"),
    }
    Ok(config)
}

/// Adds `authorization: Bearer <token>` to every request, as the control
/// plane requires on every `tandem.v1` service (health and reflection need
/// no token). With no token, requests go out unchanged (for a control plane
/// run with `--insecure-no-auth`).
#[derive(Clone, Default)]
pub struct BearerToken(Option<tonic::metadata::AsciiMetadataValue>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "BearerToken(***)"
        } else {
            "BearerToken(none)"
        })
    }
}

impl BearerToken {
    /// A token to send; `None` or an empty one sends nothing.
    pub fn new(token: Option<&str>) -> anyhow::Result<BearerToken> {
        match token.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(BearerToken(None)),
            Some(token) => {
                let mut value: tonic::metadata::AsciiMetadataValue = format!("Bearer {token}")
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--token: must be printable ASCII"))?;
                value.set_sensitive(true);
                Ok(BearerToken(Some(value)))
            }
        }
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel that sends the bearer token with every request.
pub type AuthenticatedChannel =
    tonic::service::interceptor::InterceptedService<Channel, BearerToken>;

/// A ClusterService client sending `token` with every request.
pub fn cluster_client(
    channel: Channel,
    token: BearerToken,
) -> v1::cluster_service_client::ClusterServiceClient<AuthenticatedChannel> {
    v1::cluster_service_client::ClusterServiceClient::with_interceptor(channel, token)
}

/// A GatewayService client sending `token` with every request.
pub fn gateway_client(
    channel: Channel,
    token: BearerToken,
) -> v1::gateway_service_client::GatewayServiceClient<AuthenticatedChannel> {
    v1::gateway_service_client::GatewayServiceClient::with_interceptor(channel, token)
}

/// A QueueService client sending `token` with every request.
pub fn queue_client(
    channel: Channel,
    token: BearerToken,
) -> v1::queue_service_client::QueueServiceClient<AuthenticatedChannel> {
    v1::queue_service_client::QueueServiceClient::with_interceptor(channel, token)
}

/// A ReplicationService client sending `token` with every request.
pub fn replication_client(
    channel: Channel,
    token: BearerToken,
) -> v1::replication_service_client::ReplicationServiceClient<AuthenticatedChannel> {
    v1::replication_service_client::ReplicationServiceClient::with_interceptor(channel, token)
}

/// A MigrationService client sending `token` with every request.
pub fn migration_client(
    channel: Channel,
    token: BearerToken,
) -> v1::migration_service_client::MigrationServiceClient<AuthenticatedChannel> {
    v1::migration_service_client::MigrationServiceClient::with_interceptor(channel, token)
}

/// A CompareService client sending `token` with every request.
pub fn compare_client(
    channel: Channel,
    token: BearerToken,
) -> v1::compare_service_client::CompareServiceClient<AuthenticatedChannel> {
    v1::compare_service_client::CompareServiceClient::with_interceptor(channel, token)
}
