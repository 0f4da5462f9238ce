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
use crate::auth::BearerAuth;
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

/// Every `tandem.v1` service, behind the token check; over gRPC-web as
/// well when `web` (the console's listener).
fn tandem_routes(api: &Api, auth: &BearerAuth, web: bool) -> tonic::service::Routes {
    let routes = tonic::service::Routes::from(axum::Router::new());
    let routes = add(
        routes,
        web,
        ClusterServiceServer::with_interceptor(api.clone(), auth.clone()),
    );
    let routes = add(
        routes,
        web,
        GatewayServiceServer::with_interceptor(api.clone(), auth.clone()),
    );
    let routes = add(
        routes,
        web,
        ReplicationServiceServer::with_interceptor(api.clone(), auth.clone()),
    );
    let routes = add(
        routes,
        web,
        QueueServiceServer::with_interceptor(api.clone(), auth.clone()),
    );
    let routes = add(
        routes,
        web,
        MigrationServiceServer::with_interceptor(api.clone(), auth.clone()),
    );
    add(
        routes,
        web,
        CompareServiceServer::with_interceptor(api.clone(), auth.clone()),
    )
}

/// `routes` with `service`, translated from gRPC-web when `web` (only the
/// services: the console's files are plain HTTP/1.1, which the gRPC-web
/// layer refuses).
fn add<S, B>(routes: tonic::service::Routes, web: bool, service: S) -> tonic::service::Routes
where
    S: tower_service::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + std::fmt::Display,
{
    if web {
        routes.add_service(tower_layer::Layer::layer(
            &tonic_web::GrpcWebLayer::new(),
            service,
        ))
    } else {
        routes.add_service(service)
    }
}

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
    let ui_listener = match config.ui_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("--ui-listen {addr}: {e}"))?,
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
    // The console: the same services over gRPC-web, and its files.
    let (ui_stop, ui_stopped) = tokio::sync::oneshot::channel::<()>();
    let console = ui_listener.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "control plane serving the web console");
        }
        let server = tonic::transport::Server::builder()
            .accept_http1(true)
            .layer(metrics_layer.clone())
            .add_routes(crate::console::routes(tandem_routes(&api, &auth, true)));
        tokio::spawn(async move {
            let stopped = async {
                let _ = ui_stopped.await;
            };
            if let Err(err) = server
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stopped)
                .await
            {
                tracing::error!(error = %err, "the web console stopped");
            }
        })
    });
    let shutdown = async move {
        shutdown.await;
        let _ = ui_stop.send(());
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .context("--tls-cert-file / --tls-key-file: the certificate or key is not usable")?;
    }
    let served = builder
        .layer(metrics_layer)
        .add_routes(tandem_routes(&api, &auth, false))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    if let Some(console) = console {
        let _ = console.await;
    }
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
