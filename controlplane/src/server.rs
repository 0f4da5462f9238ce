//! The gRPC server: every `tandem.v1` service, gRPC health and reflection.
//!
//! Every `tandem.v1` service sits behind the bearer-token check of
//! [`crate::auth`]; health and reflection do not. Every RPC of the
//! contract is implemented.
//!
//! Every request, refused by the token check or not, is counted by the
//! [`crate::metrics::grpc`] layer around the whole server; with
//! `--metrics-listen` the metrics are served over HTTP (see
//! [`crate::metrics::endpoint`]).
//!
//! Every replica runs the job worker of [`crate::jobs::worker`] (migration
//! and comparison jobs), stopped on shutdown so its leases are released at
//! once.
//!
//! Shutdown is graceful: when the shutdown future resolves, the gateways'
//! agent streams and the watch streams are closed first (see
//! [`crate::fleet::Fleet::shutdown`]); then in-flight RPCs finish.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use anyhow::Context;

use tandem_proto::v1::cluster_service_server::ClusterServiceServer;
use tandem_proto::v1::compare_service_server::CompareServiceServer;
use tandem_proto::v1::gateway_service_server::GatewayServiceServer;
use tandem_proto::v1::migration_service_server::MigrationServiceServer;
use tandem_proto::v1::queue_service_server::QueueServiceServer;
use tandem_proto::v1::replication_service_server::ReplicationServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::server::NamedService;
use tonic_health::ServingStatus;

use crate::api::Api;
use crate::compare::{self, CompareHandler};
use crate::config::ControlPlaneConfig;
use crate::fleet::{self, Fleet};
use crate::jobs;
use crate::metrics::Metrics;
use crate::metrics::endpoint::{self, MetricsSource};
use crate::metrics::grpc::GrpcMetricsLayer;
use crate::migration::{self, MigrationHandler};
use crate::probe::Prober;
use crate::store;

/// Fully-qualified names of every `tandem.v1` service this server exposes.
pub const SERVICE_NAMES: &[&str] = &[
    <ClusterServiceServer<Api> as NamedService>::NAME,
    <GatewayServiceServer<Api> as NamedService>::NAME,
    <ReplicationServiceServer<Api> as NamedService>::NAME,
    <QueueServiceServer<Api> as NamedService>::NAME,
    <MigrationServiceServer<Api> as NamedService>::NAME,
    <CompareServiceServer<Api> as NamedService>::NAME,
];

/// Connects to Postgres, applies migrations, and serves the gRPC API on
/// `listener` until `shutdown` resolves.
pub async fn serve(
    config: &ControlPlaneConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    // Refuse a configuration without authentication or secret key before
    // touching the database.
    let auth = config.auth()?;
    let tls = config.tls()?;
    let tls_mode = match (&tls, &config.tls_client_ca_file) {
        (None, _) => "off",
        (Some(_), None) => "tls",
        (Some(_), Some(_)) => "mutual",
    };
    let secrets = config.secret_box()?;
    let agent_settings = config.agent_settings()?;
    if !auth.is_enabled() {
        tracing::warn!(
            "--insecure-no-auth: the tandem.v1 API accepts requests without a token; \
             never expose this control plane beyond a development machine"
        );
    }
    // Bind before the database wait, so that a taken port fails at once.
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("--metrics-listen {addr}: {e}"))?,
        ),
        None => None,
    };
    let metrics = Metrics::new();
    let metrics_layer = GrpcMetricsLayer::new(
        metrics.clone(),
        &[
            tandem_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ],
    )?;
    let pool = store::connect_and_migrate(&config.database_url, config.database_wait()).await?;
    let fleet = Fleet::new(agent_settings, metrics.clone(), secrets.clone());
    let sweep = fleet::liveness::spawn(pool.clone(), fleet.clone());
    let commands = fleet::commands::spawn(pool.clone(), fleet.clone());
    let metrics_endpoint = metrics_listener.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "control plane serving /metrics and /health");
        }
        endpoint::spawn(
            listener,
            MetricsSource {
                metrics: metrics.clone(),
                pool: pool.clone(),
                fleet: fleet.clone(),
            },
        )
    });
    let api = Api {
        pool,
        secrets,
        prober: Prober::new(config.probe_timeout()),
        fleet: fleet.clone(),
        metrics,
    };

    // Every replica works on job partitions; leases keep them apart.
    let handlers: jobs::Handlers = Arc::new(BTreeMap::from([
        (
            migration::KIND,
            Arc::new(MigrationHandler::new(api.clone())) as Arc<dyn jobs::JobHandler>,
        ),
        (
            compare::KIND,
            Arc::new(CompareHandler::new(api.clone())) as Arc<dyn jobs::JobHandler>,
        ),
    ]));
    let worker = jobs::worker::spawn(
        api.pool.clone(),
        fleet.instance_id().to_string(),
        handlers,
        jobs::worker::WorkerOptions::default(),
    );
    let resume = tokio::spawn(crate::services::replication::resume_interrupted(
        api.clone(),
    ));
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    for name in SERVICE_NAMES {
        health_reporter
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tandem_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tandem_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let addr = listener.local_addr()?;
    tracing::info!(%addr, tls = tls_mode, instance_id = %fleet.instance_id(), "control plane serving gRPC");
    // Agent streams and watches never end by themselves: close them when the
    // shutdown starts, or the graceful shutdown would wait for them forever.
    let shutdown = async move {
        shutdown.await;
        fleet.shutdown();
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .context("--tls-cert-file / --tls-key-file: the certificate or key is not usable")?;
    }
    let served = builder
        .layer(metrics_layer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(ClusterServiceServer::with_interceptor(
            api.clone(),
            auth.clone(),
        ))
        .add_service(GatewayServiceServer::with_interceptor(
            api.clone(),
            auth.clone(),
        ))
        .add_service(ReplicationServiceServer::with_interceptor(
            api.clone(),
            auth.clone(),
        ))
        .add_service(QueueServiceServer::with_interceptor(
            api.clone(),
            auth.clone(),
        ))
        .add_service(MigrationServiceServer::with_interceptor(
            api.clone(),
            auth.clone(),
        ))
        .add_service(CompareServiceServer::with_interceptor(api, auth))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    worker.stop().await;
    sweep.abort();
    commands.abort();
    resume.abort();
    if let Some(metrics_endpoint) = metrics_endpoint {
        metrics_endpoint.abort();
    }
    served?;
    Ok(())
}
