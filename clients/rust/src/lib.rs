//! # tandem-client
//!
//! Rust SDK for the Tandem control plane. It re-exports the generated
//! `tandem.v1` clients and adds a [`connect`] helper; the `tandemctl` binary
//! in this crate is built on it.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let channel = tandem_client::connect("http://127.0.0.1:50051").await?;
//! let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
//! # Ok(()) }
//! ```

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
