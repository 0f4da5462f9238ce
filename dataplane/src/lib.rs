//! # tandem-gateway
//!
//! The Tandem data plane: a [Pingora](https://github.com/cloudflare/pingora)
//! proxy that applications talk to instead of their search cluster. It
//! forwards every request synchronously to the **primary** cluster and
//! answers with the primary's response.
//!
//! Modules:
//! - [`config`]: the TOML configuration with environment overrides, validated
//!   at start with errors naming the field.
//! - [`proxy`]: the [`pingora::proxy::ProxyHttp`] implementation.
//! - [`admin`]: health and readiness endpoints.
//! - [`agent`]: the control-plane agent (`GatewayService.AgentStream`),
//!   started when `[control_plane]` is configured.
//! - [`server`]: assembling the Pingora server and running it on its own
//!   thread with a controllable shutdown.
//!
//! Run it with `tandem-gateway --config gateway.toml`; see
//! `dataplane/gateway.example.toml`.

pub mod admin;
pub mod agent;
pub mod config;
pub mod counters;
pub mod dead_letters;
pub mod inflight;
pub mod limits;
pub mod metrics;
pub mod proxy;
pub mod queue;
pub mod reconcile;
pub mod replication;
pub mod respond;
pub mod roles;
pub mod server;
pub mod traffic;
pub mod upstream;
pub mod verifier;
pub mod write_path;

pub use config::GatewayConfig;
pub use server::{GatewayHandle, spawn};
