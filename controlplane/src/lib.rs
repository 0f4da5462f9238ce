//! # tandem-controlplane
//!
//! The Tandem control plane: a tonic gRPC server backed by Postgres. It
//! registers clusters, manages the gateway fleet, drives replication tasks
//! through their lifecycle (start, pause, cutover, rollback), exposes queue
//! inspection, and runs full-migration and comparison jobs.
//!
//! Modules:
//! - [`config`]: command-line / environment settings (authentication and
//!   the secret key have no default: see there).
//! - [`auth`]: bearer-token check in front of every `tandem.v1` service.
//! - [`secrets`]: sealing of stored secrets (XChaCha20-Poly1305).
//! - [`validate`], [`pagination`]: request checks and the List convention
//!   shared by every service.
//! - [`probe`]: probing a search cluster over HTTP(S).
//! - [`fleet`]: the agent streams of the gateways connected to this process,
//!   and how other services push desired states and commands to them.
//! - [`store`]: Postgres pool, embedded migrations (`migrations/`), tables.
//! - [`jobs`]: long-running jobs split into partitions leased through
//!   Postgres, and the worker every replica runs.
//! - [`migration`]: full-copy migration jobs (a [`jobs`] kind), and the
//!   cluster HTTP client and index selection other job kinds reuse.
//! - [`compare`]: comparison (verification) jobs (a [`jobs`] kind).
//! - [`services`]: the `tandem.v1` service implementations.
//! - [`metrics`]: Prometheus metrics and the `--metrics-listen` endpoint.
//! - [`server`]: the gRPC server: every `tandem.v1` service plus gRPC health
//!   and reflection.
//!
//! Start it with
//! `tandem-controlplane --database-url postgres://... --auth-token <token> --secret-key-file <path>`
//! (or `--insecure-no-auth --secret-key-file .tandem/secret.key --create-secret-key-file`
//! on a development machine); see [`serve`] to embed it (tests do).

pub mod api;
pub mod auth;
pub mod compare;
pub mod config;
pub mod console;
pub mod fleet;
pub mod jobs;
pub mod metrics;
pub mod migration;
pub mod pagination;
pub mod probe;
pub mod secrets;
pub mod server;
pub mod services;
pub mod store;
pub mod validate;

pub use server::serve;
