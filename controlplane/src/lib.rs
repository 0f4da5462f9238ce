//! # tandem-controlplane
//!
//! The Tandem control plane: a tonic gRPC server backed by Postgres. It
//! registers clusters, manages the gateway fleet, drives replication tasks
//! through their lifecycle (start, pause, cutover, rollback), exposes queue
//! inspection, and runs full-migration and comparison jobs.
//!
//! Modules:
//! - [`config`]: command-line / environment settings.
//! - [`store`]: Postgres pool and embedded migrations (`migrations/`).
//! - [`server`]: the gRPC server: every `tandem.v1` service plus gRPC health
//!   and reflection.
//!
//! Start it with `tandem-controlplane --database-url postgres://...`; see
//! [`serve`] to embed it (tests do).

pub mod config;
pub mod server;
pub mod store;

pub use server::serve;
