//! Running the real `tandem-controlplane` binary for resilience tests: it
//! can be killed with SIGKILL and restarted on the same address with the
//! same token and secret key, so gateways reconnect and stored cluster
//! secrets still decrypt.
//!
//! The binary is built by cargo on first use (a private copy, like the
//! gateway's), killed on drop, and killed by a watchdog if the test process
//! dies first. Clients built here send the bearer token with every request;
//! [`ControlPlaneProcess::agent_toml`] is the `[control_plane]` section a
//! gateway needs to join.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tandem_client::v1::cluster_service_client::ClusterServiceClient;
use tandem_client::v1::compare_service_client::CompareServiceClient;
use tandem_client::v1::gateway_service_client::GatewayServiceClient;
use tandem_client::v1::migration_service_client::MigrationServiceClient;
use tandem_client::v1::queue_service_client::QueueServiceClient;
use tandem_client::v1::replication_service_client::ReplicationServiceClient;
use tandem_client::{AuthenticatedChannel, BearerToken};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use tandem_controlplane::config::ControlPlaneConfig;

use crate::{built_binary, free_port, on_test_exit};

/// Longest wait for the control plane to serve (migrations included).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How to run a control plane. Keep the same options across restarts: the
/// secret key seals stored cluster secrets, the token is what gateways send.
#[derive(Clone)]
pub struct ControlPlaneOptions {
    /// Postgres URL (`--database-url`).
    pub database_url: String,
    /// The only accepted bearer token (`--auth-token`).
    pub token: String,
    /// Key sealing stored cluster secrets, as 64 hex digits.
    pub secret_key: String,
    /// Agent heartbeat interval sent to gateways, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Agent queue statistics interval sent to gateways, in milliseconds.
    pub stats_interval_ms: u64,
}

impl ControlPlaneOptions {
    /// Options for a control plane on `database_url` with a random token and
    /// secret key, and 200 ms agent intervals (quick tests).
    pub fn new(database_url: &str) -> ControlPlaneOptions {
        ControlPlaneOptions {
            database_url: database_url.to_string(),
            token: format!("test-token-{}", random_hex(16)),
            secret_key: random_hex(32),
            heartbeat_interval_ms: 200,
            stats_interval_ms: 200,
        }
    }
}

impl std::fmt::Debug for ControlPlaneOptions {
    // Hand-written so that the token and the key stay out of test output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlaneOptions")
            .field("database_url", &self.database_url)
            .field("heartbeat_interval_ms", &self.heartbeat_interval_ms)
            .field("stats_interval_ms", &self.stats_interval_ms)
            .finish_non_exhaustive()
    }
}

/// The `tandem-controlplane` binary running as a child process; killed on
/// drop.
#[derive(Debug)]
pub struct ControlPlaneProcess {
    options: ControlPlaneOptions,
    listen: SocketAddr,
    child: Option<Child>,
}

impl ControlPlaneProcess {
    /// Starts the control plane on a free loopback port and waits until it
    /// serves.
    pub async fn start(options: ControlPlaneOptions) -> ControlPlaneProcess {
        let mut process = ControlPlaneProcess {
            options,
            listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
            child: None,
        };
        process.spawn();
        process.wait_ready().await;
        process
    }

    /// Points the next [`Self::restart`] at another database URL (a Postgres
    /// restarted on a new port).
    pub fn set_database_url(&mut self, url: &str) {
        self.options.database_url = url.to_string();
    }

    /// Waits until gRPC health reports SERVING; panics when the process
    /// exits or does not serve within a minute.
    pub async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("poll the control plane process"))
            {
                panic!("the control plane exited with {status} before serving");
            }
            if serving(&self.endpoint()).await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the control plane at {} did not serve within {READY_TIMEOUT:?}",
                self.endpoint()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGKILL and reaps the process; [`Self::restart`] starts it again.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same address with the same options
    /// (killing it first if it still runs) and waits until it serves.
    pub async fn restart(&mut self) {
        self.kill_9();
        self.spawn();
        self.wait_ready().await;
    }

    /// The `[control_plane]` TOML section joining a gateway to this control
    /// plane as `gateway_id`, reconnecting at most every 500 ms.
    pub fn agent_toml(&self, gateway_id: &str) -> String {
        format!(
            "[control_plane]\nendpoint = \"{}\"\ntoken = \"{}\"\ngateway_id = \"{gateway_id}\"\n\
             name = \"{gateway_id}\"\nheartbeat_interval_ms = {}\nreconnect_max_ms = 500\n",
            self.endpoint(),
            self.options.token,
            self.options.heartbeat_interval_ms,
        )
    }

    fn spawn(&mut self) {
        let options = &self.options;
        let child = Command::new(controlplane_binary())
            .arg("--listen")
            .arg(self.listen.to_string())
            .arg("--database-wait-secs")
            .arg("30")
            .arg("--agent-heartbeat-interval-ms")
            .arg(options.heartbeat_interval_ms.to_string())
            .arg("--agent-stats-interval-ms")
            .arg(options.stats_interval_ms.to_string())
            // Secrets through the environment: flags show in `ps`.
            .env("TANDEM_DATABASE_URL", &options.database_url)
            .env("TANDEM_AUTH_TOKEN", &options.token)
            .env("TANDEM_SECRET_KEY", &options.secret_key)
            .env_remove("TANDEM_SECRET_KEY_FILE")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tandem-controlplane");
        let pid = child.id().to_string();
        on_test_exit(Some(child.id()), "kill -9 $1", &[pid.as_ref()])
            .expect("watch the control plane process");
        self.child = Some(child);
    }
}

impl Drop for ControlPlaneProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// Path of the `tandem-controlplane` binary, built on first use (a private
/// copy, see [`crate::built_binary`]).
pub fn controlplane_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_binary("tandem-controlplane", "tandem-controlplane"))
        .clone()
}

/// `bytes` random bytes from the kernel, as lowercase hex.
fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buffer))
        .expect("read /dev/urandom");
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

/// Typed clients of a control plane, sending a bearer token: shared by
/// [`ControlPlaneProcess`] and [`InProcessControlPlane`].
#[allow(async_fn_in_trait)]
pub trait ControlPlaneApi {
    /// `http://host:port` of the gRPC API.
    fn endpoint(&self) -> String;

    /// The token the control plane accepts.
    fn accepted_token(&self) -> &str;

    /// A new channel to the control plane.
    async fn channel(&self) -> Channel {
        tandem_client::connect(&self.endpoint())
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The interceptor sending `bearer` (none when `None`).
    fn bearer(&self, bearer: Option<&str>) -> BearerToken {
        BearerToken::new(bearer).expect("test tokens are ASCII")
    }

    /// A ClusterService client sending `bearer`.
    async fn clusters_with(
        &self,
        bearer: Option<&str>,
    ) -> ClusterServiceClient<AuthenticatedChannel> {
        tandem_client::cluster_client(self.channel().await, self.bearer(bearer))
    }

    /// A ClusterService client sending the accepted token.
    async fn clusters(&self) -> ClusterServiceClient<AuthenticatedChannel> {
        self.clusters_with(Some(self.accepted_token())).await
    }

    /// A GatewayService client sending `bearer`.
    async fn gateways_with(
        &self,
        bearer: Option<&str>,
    ) -> GatewayServiceClient<AuthenticatedChannel> {
        tandem_client::gateway_client(self.channel().await, self.bearer(bearer))
    }

    /// A GatewayService client sending the accepted token.
    async fn gateways(&self) -> GatewayServiceClient<AuthenticatedChannel> {
        self.gateways_with(Some(self.accepted_token())).await
    }

    /// A QueueService client sending `bearer`.
    async fn queues_with(&self, bearer: Option<&str>) -> QueueServiceClient<AuthenticatedChannel> {
        tandem_client::queue_client(self.channel().await, self.bearer(bearer))
    }

    /// A QueueService client sending the accepted token.
    async fn queues(&self) -> QueueServiceClient<AuthenticatedChannel> {
        self.queues_with(Some(self.accepted_token())).await
    }

    /// A MigrationService client sending `bearer`.
    async fn migrations_with(
        &self,
        bearer: Option<&str>,
    ) -> MigrationServiceClient<AuthenticatedChannel> {
        tandem_client::migration_client(self.channel().await, self.bearer(bearer))
    }

    /// A MigrationService client sending the accepted token.
    async fn migrations(&self) -> MigrationServiceClient<AuthenticatedChannel> {
        self.migrations_with(Some(self.accepted_token())).await
    }

    /// A CompareService client sending `bearer`.
    async fn compare_with(
        &self,
        bearer: Option<&str>,
    ) -> CompareServiceClient<AuthenticatedChannel> {
        tandem_client::compare_client(self.channel().await, self.bearer(bearer))
    }

    /// A CompareService client sending the accepted token.
    async fn compare(&self) -> CompareServiceClient<AuthenticatedChannel> {
        self.compare_with(Some(self.accepted_token())).await
    }

    /// The `[control_plane]` TOML section joining a test gateway to this
    /// control plane as `gateway_id`: 300 ms heartbeats, reconnecting at
    /// most every 500 ms, advertised on a free port.
    fn agent_section(&self, gateway_id: &str) -> String {
        format!(
            "[control_plane]\nendpoint = \"{}\"\ntoken = \"{}\"\ngateway_id = \"{gateway_id}\"\n\
             heartbeat_interval_ms = 300\nreconnect_max_ms = 500\n\
             advertised_address = \"127.0.0.1:{}\"\n",
            self.endpoint(),
            self.accepted_token(),
            free_port()
        )
    }

    /// A ReplicationService client sending `bearer`.
    async fn tasks_with(
        &self,
        bearer: Option<&str>,
    ) -> ReplicationServiceClient<AuthenticatedChannel> {
        tandem_client::replication_client(self.channel().await, self.bearer(bearer))
    }

    /// A ReplicationService client sending the accepted token.
    async fn tasks(&self) -> ReplicationServiceClient<AuthenticatedChannel> {
        self.tasks_with(Some(self.accepted_token())).await
    }
}

impl ControlPlaneApi for ControlPlaneProcess {
    fn endpoint(&self) -> String {
        format!("http://{}", self.listen)
    }

    fn accepted_token(&self) -> &str {
        &self.options.token
    }
}

/// A control plane served inside the test process
/// (`tandem_controlplane::serve`): quicker to start than
/// [`ControlPlaneProcess`], stopped gracefully (not killed).
pub struct InProcessControlPlane {
    config: ControlPlaneConfig,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcessControlPlane {
    /// Test settings: `database_url`, `token` as the only accepted token, a
    /// random secret key, 300 ms agent intervals, a 5 s probe timeout and a
    /// free loopback port.
    pub fn config(database_url: &str, token: &str) -> ControlPlaneConfig {
        ControlPlaneConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
            database_url: database_url.to_string(),
            database_wait_secs: 10,
            auth_tokens: vec![token.to_string()],
            secret_key: Some(random_hex(32)),
            probe_timeout_secs: 5,
            agent_heartbeat_interval_ms: 300,
            agent_stats_interval_ms: 300,
            ..Default::default()
        }
    }

    /// Serves `config` (its first token is [`ControlPlaneApi::accepted_token`])
    /// and waits until gRPC health reports SERVING.
    pub async fn start(config: ControlPlaneConfig) -> InProcessControlPlane {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .unwrap_or_else(|e| panic!("bind {}: {e}", config.listen));
        let mut config = config;
        config.listen = listener.local_addr().unwrap();
        let served = config.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tandem_controlplane::serve(&served, listener, async {
                let _ = stopped.await;
            })
            .await
        });
        let control_plane = InProcessControlPlane {
            config,
            stop: Some(stop),
            task,
        };
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while !serving(&control_plane.endpoint()).await {
            assert!(
                !control_plane.task.is_finished(),
                "the control plane at {} stopped while starting",
                control_plane.endpoint()
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "the control plane at {} did not become ready",
                control_plane.endpoint()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        control_plane
    }

    /// The settings it serves with (`listen` is the bound address).
    pub fn settings(&self) -> &ControlPlaneConfig {
        &self.config
    }

    /// Stops it gracefully (agent streams and watches are closed first) and
    /// checks that it ended without an error.
    pub async fn stop(mut self) {
        let _ = self.stop.take().expect("stopped once").send(());
        tokio::time::timeout(READY_TIMEOUT, &mut self.task)
            .await
            .expect("the control plane stops")
            .expect("the control plane task")
            .expect("the control plane ends without an error");
    }

    /// Stops it and serves the same settings again on the same address.
    pub async fn restart(self) -> InProcessControlPlane {
        let config = self.config.clone();
        self.stop().await;
        InProcessControlPlane::start(config).await
    }
}

impl ControlPlaneApi for InProcessControlPlane {
    fn endpoint(&self) -> String {
        format!("http://{}", self.config.listen)
    }

    fn accepted_token(&self) -> &str {
        self.config
            .auth_tokens
            .first()
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// Whether the control plane at `endpoint` reports SERVING.
async fn serving(endpoint: &str) -> bool {
    let Ok(channel) = tandem_client::connect(endpoint).await else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
}

/// Creates `request`, retrying while one of its gateways is not registered
/// yet (NOT_FOUND: it is still connecting), for up to a minute.
pub async fn create_task_once_registered(
    tasks: &mut ReplicationServiceClient<AuthenticatedChannel>,
    request: tandem_client::v1::CreateTaskRequest,
) -> tandem_client::v1::ReplicationTask {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        match tasks.create_task(request.clone()).await {
            Ok(response) => return response.into_inner().task.expect("a created task"),
            Err(status) if status.code() == tonic::Code::NotFound => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "gateway never registered: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("create: {status:?}"),
        }
    }
}
