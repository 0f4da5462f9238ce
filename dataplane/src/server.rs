//! Assembling and running the Pingora server.
//!
//! Pingora builds its own runtimes and `run_forever` exits the process, so
//! the server runs on a dedicated OS thread via [`Server::run`] with a
//! shutdown signal we control. This gives the binary graceful shutdown on
//! SIGTERM/SIGINT and lets tests start and stop gateways in-process.

use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;
use tokio::sync::Notify;

use crate::admin::AdminApp;
use crate::config::GatewayConfig;
use crate::metrics::Metrics;
use crate::proxy::GatewayProxy;
use crate::replication::Replication;
use crate::roles::Roles;
use crate::upstream::Upstream;
use crate::write_path::WritePath;

/// A gateway running on its own thread; dropping it does not stop it, call
/// [`GatewayHandle::shutdown`].
#[derive(Debug)]
pub struct GatewayHandle {
    stop: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

impl GatewayHandle {
    /// Requests a fast shutdown and waits for the server thread to exit.
    pub fn shutdown(mut self) {
        self.stop.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Blocks until the server exits on its own (e.g. after a signal).
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Resolves to a shutdown request from either a [`Notify`] or (optionally)
/// the process's SIGTERM / SIGINT.
struct StopSignal {
    stop: Arc<Notify>,
    unix_signals: bool,
}

#[async_trait]
impl ShutdownSignalWatch for StopSignal {
    async fn recv(&self) -> ShutdownSignal {
        if !self.unix_signals {
            self.stop.notified().await;
            return ShutdownSignal::FastShutdown;
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .expect("install SIGINT handler");
        tokio::select! {
            _ = self.stop.notified() => ShutdownSignal::FastShutdown,
            _ = term.recv() => ShutdownSignal::GracefulTerminate,
            _ = int.recv() => ShutdownSignal::FastShutdown,
        }
    }
}

/// Write buffer of a client connection: room for the answer to a large
/// `_bulk` (about 250 bytes per item) with its header.
const RESPONSE_WRITE_BUFFER: usize = 64 * 1024;

/// Builds the Pingora server for `config` without starting it.
pub fn build_server(config: &GatewayConfig) -> anyhow::Result<Server> {
    let mut conf = ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    // No hot-upgrade socket handover: each gateway owns its own files.
    conf.upgrade_sock = String::new();
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let metrics = Arc::new(Metrics::new());
    let primary = Arc::new(Upstream::new(
        "primary",
        config.primary.endpoint("primary.url")?,
        config.primary.clone(),
    ));
    if config.primary.discovery {
        let discovery = primary.clone();
        server.add_service(pingora::services::background::background_service(
            "primary node discovery",
            DiscoveryService(discovery),
        ));
    }
    let mut upstreams = vec![primary.clone()];
    let backup = match &config.backup {
        None => None,
        Some(backup_config) => {
            let backup = Arc::new(Upstream::new(
                "backup",
                backup_config.endpoint("backup.url")?,
                backup_config.clone(),
            ));
            if backup_config.discovery {
                server.add_service(pingora::services::background::background_service(
                    "backup node discovery",
                    DiscoveryService(backup.clone()),
                ));
            }
            upstreams.push(backup.clone());
            Some(backup)
        }
    };
    let roles = Arc::new(match backup {
        // With replication, the direction survives restarts.
        Some(backup) => {
            std::fs::create_dir_all(&config.data_dir)
                .map_err(|e| anyhow::anyhow!("data_dir {}: {e}", config.data_dir.display()))?;
            Roles::open(primary, Some(backup), config.data_dir.join("roles.json"))?
        }
        None => Roles::new(primary, None),
    });
    let replication = match &config.backup {
        None => None,
        Some(_) => {
            let replication = Replication::open(
                config.data_dir.clone(),
                config.queue.to_queue_config(),
                config.replay.clone(),
                roles.clone(),
                metrics.clone(),
            )?;
            server.add_service(pingora::services::background::background_service(
                "replayer",
                ReplayerService(replication.clone()),
            ));
            Some(replication)
        }
    };
    let writes = replication.as_ref().map(|replication| {
        Arc::new(WritePath {
            roles: roles.clone(),
            replication: replication.clone(),
            metrics: metrics.clone(),
            max_body_bytes: config.max_body_bytes,
            max_hold_wait: std::time::Duration::from_millis(config.replay.max_hold_ms + 1_000),
        })
    });
    let traffic = Arc::new(crate::traffic::Traffic::default());
    if let Some(control_plane) = &config.control_plane {
        let agent = crate::agent::Agent::new(
            config,
            control_plane,
            replication.clone(),
            roles.clone(),
            traffic.clone(),
            metrics.clone(),
        )?;
        server.add_service(pingora::services::background::background_service(
            "control plane agent",
            crate::agent::AgentService(agent),
        ));
    }
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        GatewayProxy::new(roles, traffic.clone(), metrics.clone(), writes),
        "tandem proxy",
    );
    // A write's answer (header, then a body of tens of KB) leaves in one
    // send: with Pingora's default 1460-byte write buffer the header went
    // out alone, then the body. Bodies are flushed when they end.
    proxy.add_listener(
        ListenerConfig::tcp(config.listen.to_string())
            .l4_buffer(L4BufferSettings::default().write(RESPONSE_WRITE_BUFFER)),
    );
    server.add_service(proxy);

    let mut admin = Service::new(
        "tandem admin".to_string(),
        AdminApp::new(metrics, traffic, replication, upstreams),
    );
    admin.add_tcp(&config.admin_listen.to_string());
    server.add_service(admin);
    Ok(server)
}

/// Starts the gateway on a new thread. With `unix_signals` the server also
/// stops on SIGTERM (graceful) and SIGINT (fast).
pub fn spawn(config: &GatewayConfig, unix_signals: bool) -> anyhow::Result<GatewayHandle> {
    let server = build_server(config)?;
    let stop = Arc::new(Notify::new());
    let signal = StopSignal {
        stop: stop.clone(),
        unix_signals,
    };
    let thread = std::thread::Builder::new()
        .name("tandem-gateway".into())
        .spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(signal),
            })
        })?;
    Ok(GatewayHandle {
        stop,
        thread: Some(thread),
    })
}

/// Runs an upstream's node discovery as a Pingora background service.
struct DiscoveryService(Arc<Upstream>);

#[async_trait]
impl pingora::services::background::BackgroundService for DiscoveryService {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        tokio::select! {
            _ = self.0.clone().discovery_loop() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Runs the replayer as a Pingora background service.
struct ReplayerService(Arc<Replication>);

#[async_trait]
impl pingora::services::background::BackgroundService for ReplayerService {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        tokio::select! {
            _ = self.0.clone().run() => {}
            _ = shutdown.changed() => {}
        }
    }
}
