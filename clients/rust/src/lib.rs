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

/// Opens a channel to the control plane at `endpoint` (`http://host:port`).
pub async fn connect(endpoint: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(endpoint.to_string())
        .with_context(|| format!("--endpoint: not a valid URL: {endpoint:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot connect to the control plane at {endpoint}"))
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
