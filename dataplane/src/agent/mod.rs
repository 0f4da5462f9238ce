//! # The agent: the gateway's end of `GatewayService.AgentStream`
//!
//! When `[control_plane]` is configured, the gateway runs an agent as a
//! Pingora background service. It keeps one long-lived bidirectional gRPC
//! stream open to the control plane (`proto/tandem/v1/gateway.proto`):
//!
//! ```text
//! gateway (agent)                                   control plane
//!   ── AgentHello (id, addresses, version, capabilities,
//!                  applied_version, local_task_ids) ──▶
//!   ◀── AgentWelcome (intervals) ─────────────────────
//!   ◀── DesiredState (version N) ─────────────────────
//!   ── AgentHeartbeat (applied_version = N, task status) ──▶   every heartbeat
//!   ── QueueStatsReport, DeadLetterReport ─────────────▶       every stats interval
//!   ◀── GatewayCommand (command_id) ──────────────────
//!   ── CommandResult (command_id, outcome) ───────────▶
//! ```
//!
//! - **Identity**: the gateway id is `control_plane.gateway_id`, or a UUID
//!   generated once and kept in `<data_dir>/gateway_id`.
//! - **Desired state**: a state whose version is not higher than the last
//!   one accepted is ignored. Otherwise it is reduced to what this gateway
//!   can apply ([`protocol::Target`]: the one task's replay paused or
//!   running, and its direction), persisted in `<data_dir>/agent_state.json`
//!   and handed to the reconcile loop, which pauses / resumes the replayer
//!   and, when the direction differs from the current roles, swaps them with
//!   [`Replication::cutover`] (bounded by the task's `WriteHold.timeout`).
//!   Once everything applied, the version becomes the applied version and a
//!   heartbeat reports it at once. A swap that cannot happen yet (lag above
//!   [`DEFAULT_CUTOVER_MAX_LAG`], queue not drained within the hold) is
//!   retried with backoff and the applied version stays behind meanwhile.
//!   Fields the gateway cannot apply at run time (upstream endpoints and
//!   credentials, limits, index filters, drain...) are logged at debug level
//!   and otherwise ignored: the gateway's TOML configuration rules them.
//! - **Task id**: the gateway runs one replication (its `[backup]`); it is
//!   reported under the id of the task the control plane assigned, or
//!   [`protocol::LOCAL_TASK_ID`] before any assignment.
//! - **Commands** are executed at most once per `command_id` (an in-memory
//!   log answers a redelivered command with its first result) and each gets
//!   one `CommandResult`: dead-letter retry / skip / fetch, queue peeking
//!   and queue repair run against [`Replication`].
//! - **Control plane down**: the stream is reopened forever with
//!   exponential backoff and jitter (capped by `reconnect_max_ms`); the proxy
//!   and the replayer never wait for it and keep running with the last
//!   applied state (restored from disk after a restart). State changes are
//!   logged once; `tandem_agent_connected` is 1 while the stream is open.
//!
//! [`protocol`] holds the message mapping and the desired-state logic as
//! pure functions; this module is the thin I/O around them.

mod commands;
pub mod config;
pub mod protocol;
pub mod state;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use parking_lot::Mutex;
use tandem_proto::codes;
use tandem_proto::v1 as pb;
use tandem_proto::v1::gateway_service_client::GatewayServiceClient;
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

pub use config::{ControlPlaneConfig, validate_gateway_id};

use crate::config::GatewayConfig;
use crate::metrics::Metrics;
use crate::replication::{DEFAULT_CUTOVER_MAX_LAG, Replication};
use crate::roles::Roles;
use crate::traffic::Traffic;
use protocol::{
    Action, Actual, Backoff, CAPABILITIES, CommandLog, CommandSeen, DiskUsage, Identity,
    Interpretation, LOCAL_TASK_ID, RateTracker, Target, TaskSnapshot,
};

/// Time allowed to open the TCP connection to the control plane.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for the control plane to accept the stream.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings detect a control plane that vanished without closing.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// A control plane that does not read for this long is treated as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages buffered towards the control plane.
const OUTBOUND_CAPACITY: usize = 64;
/// First reconnection delay.
const RECONNECT_INITIAL: Duration = Duration::from_millis(100);
/// Retry delays of a desired state that could not be fully applied.
const RECONCILE_RETRY_INITIAL: Duration = Duration::from_secs(1);
const RECONCILE_RETRY_MAX: Duration = Duration::from_secs(60);
/// Commands remembered for de-duplication.
const COMMAND_LOG_CAPACITY: usize = 1024;

/// The gateway's agent; see the [module documentation](self).
pub struct Agent {
    config: ControlPlaneConfig,
    identity: Identity,
    data_dir: PathBuf,
    replication: Option<Arc<Replication>>,
    roles: Arc<Roles>,
    traffic: Arc<Traffic>,
    metrics: Arc<Metrics>,
    shared: Mutex<Shared>,
    target_changed: Notify,
    applied: watch::Sender<u64>,
    connected: AtomicBool,
    results_tx: mpsc::UnboundedSender<pb::CommandResult>,
    results_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<pb::CommandResult>>,
    commands: Mutex<CommandLog>,
}

/// State shared by the stream and the reconcile loop.
#[derive(Debug, Default)]
struct Shared {
    /// The latest desired state accepted (persisted).
    target: Option<Target>,
    /// The task the gateway serves, as assigned by the control plane.
    task_id: Option<String>,
    /// The control plane's last welcome.
    welcome: Option<pb::AgentWelcome>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("endpoint", &self.config.endpoint)
            .field("gateway_id", &self.identity.gateway_id)
            .field("connected", &self.is_connected())
            .field("applied_version", &self.applied_version())
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Prepares the agent of the gateway configured by `gateway`: loads (or
    /// creates) the gateway id and the last accepted desired state from
    /// `data_dir`. Nothing is connected until [`Agent::run`].
    pub fn new(
        gateway: &GatewayConfig,
        config: &ControlPlaneConfig,
        replication: Option<Arc<Replication>>,
        roles: Arc<Roles>,
        traffic: Arc<Traffic>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Agent>> {
        let gateway_id =
            state::load_or_create_gateway_id(&gateway.data_dir, config.gateway_id.as_deref())?;
        let hostname = hostname();
        let name = config
            .name
            .clone()
            .or_else(|| (!hostname.is_empty()).then(|| hostname.clone()))
            .unwrap_or_else(|| gateway_id.clone());
        let identity = Identity {
            gateway_id,
            name,
            labels: config.labels.clone(),
            advertised_address: config
                .advertised_address
                .clone()
                .unwrap_or_else(|| gateway.listen.to_string()),
            admin_address: gateway.admin_listen.to_string(),
            hostname,
            version: env!("CARGO_PKG_VERSION").to_string(),
            build: option_env!("TANDEM_BUILD").unwrap_or_default().to_string(),
            capabilities: if replication.is_some() {
                CAPABILITIES.iter().map(|c| c.to_string()).collect()
            } else {
                Vec::new()
            },
            listeners: vec![pb::Listener {
                name: "default".into(),
                address: gateway.listen.to_string(),
                tls: false,
            }],
            started_at: SystemTime::now(),
        };
        let target = state::load_target(&gateway.data_dir);
        if let Some(target) = &target {
            tracing::info!(
                version = target.version,
                task_id = ?target.task_id,
                "restoring the last desired state accepted from the control plane"
            );
        }
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        Ok(Arc::new(Agent {
            config: config.clone(),
            identity,
            data_dir: gateway.data_dir.clone(),
            replication,
            roles,
            traffic,
            metrics,
            shared: Mutex::new(Shared {
                task_id: target.as_ref().and_then(|t| t.task_id.clone()),
                target,
                welcome: None,
            }),
            target_changed: Notify::new(),
            applied: watch::channel(0).0,
            connected: AtomicBool::new(false),
            results_tx,
            results_rx: tokio::sync::Mutex::new(results_rx),
            commands: Mutex::new(CommandLog::new(COMMAND_LOG_CAPACITY)),
        }))
    }

    /// The gateway's id.
    pub fn gateway_id(&self) -> &str {
        &self.identity.gateway_id
    }

    /// Whether the stream to the control plane is open.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Version of the desired state fully applied (0 before any).
    pub fn applied_version(&self) -> u64 {
        *self.applied.borrow()
    }

    /// The control plane's last `AgentWelcome`, once connected.
    pub fn welcome(&self) -> Option<pb::AgentWelcome> {
        self.shared.lock().welcome.clone()
    }

    /// The task id the gateway reports its replication under.
    pub fn task_id(&self) -> String {
        self.shared
            .lock()
            .task_id
            .clone()
            .unwrap_or_else(|| LOCAL_TASK_ID.to_string())
    }

    /// Runs the agent until the future is dropped: the reconcile loop and
    /// the connection loop, which reconnects forever.
    pub async fn run(self: Arc<Self>) {
        tokio::join!(
            self.clone().reconcile_loop(),
            self.clone().connection_loop()
        );
    }

    fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        self.metrics.agent_connected.set(i64::from(connected));
    }

    // -- connection ---------------------------------------------------------

    async fn connection_loop(self: Arc<Self>) {
        // Only this loop reads command results; the lock is held for good.
        let mut results = self.results_rx.lock().await;
        let mut backoff = Backoff::new(RECONNECT_INITIAL, self.config.reconnect_max());
        let mut down_logged = false;
        loop {
            let (established, reason) = self.session(&mut results).await;
            self.set_connected(false);
            if established {
                tracing::warn!(
                    endpoint = %self.config.endpoint,
                    reason = %reason,
                    "control plane stream closed; serving with the last known state, reconnecting"
                );
                backoff.reset();
                down_logged = true;
            } else if !down_logged {
                tracing::warn!(
                    endpoint = %self.config.endpoint,
                    reason = %reason,
                    "cannot reach the control plane; serving with the last known state, retrying in the background"
                );
                down_logged = true;
            } else {
                tracing::debug!(reason = %reason, "control plane still unreachable");
            }
            tokio::time::sleep(backoff.next_delay(jitter())).await;
        }
    }

    /// One stream: `(whether it was established, why it ended)`.
    async fn session(
        self: &Arc<Self>,
        results: &mut mpsc::UnboundedReceiver<pb::CommandResult>,
    ) -> (bool, String) {
        match self.open_stream().await {
            Err(reason) => (false, reason),
            Ok((tx, inbound)) => {
                self.set_connected(true);
                tracing::info!(
                    endpoint = %self.config.endpoint,
                    gateway_id = %self.identity.gateway_id,
                    "connected to the control plane"
                );
                (true, self.serve_stream(tx, inbound, results).await)
            }
        }
    }

    async fn open_stream(
        &self,
    ) -> Result<
        (
            mpsc::Sender<pb::AgentStreamRequest>,
            tonic::Streaming<pb::AgentStreamResponse>,
        ),
        String,
    > {
        let mut endpoint = tonic::transport::Endpoint::from_shared(self.config.endpoint.clone())
            .map_err(|e| format!("invalid endpoint: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        if let Some(tls) = self
            .config
            .tls()
            .map_err(|(field, message)| format!("{field}: {message}"))?
        {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| format!("TLS settings refused: {}", error_chain(&e)))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("connect: {}", error_chain(&e)))?;
        let mut client = GatewayServiceClient::new(channel);
        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        // The hello is the first message of the stream.
        tx.try_send(self.hello())
            .map_err(|_| "cannot queue the hello".to_string())?;
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(token) = &self.config.token {
            let value = tonic::metadata::MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| "control_plane.token is not valid gRPC metadata".to_string())?;
            request.metadata_mut().insert("authorization", value);
        }
        let response = tokio::time::timeout(OPEN_TIMEOUT, client.agent_stream(request))
            .await
            .map_err(|_| format!("no answer to the stream within {OPEN_TIMEOUT:?}"))?
            .map_err(|status| describe_status(&status))?;
        Ok((tx, response.into_inner()))
    }

    fn hello(&self) -> pb::AgentStreamRequest {
        let local_task_ids = if self.replication.is_some() {
            vec![self.task_id()]
        } else {
            Vec::new()
        };
        protocol::hello(&self.identity, self.applied_version(), local_task_ids)
    }

    /// Serves an open stream until it ends; returns why it ended.
    async fn serve_stream(
        self: &Arc<Self>,
        tx: mpsc::Sender<pb::AgentStreamRequest>,
        mut inbound: tonic::Streaming<pb::AgentStreamResponse>,
        results: &mut mpsc::UnboundedReceiver<pb::CommandResult>,
    ) -> String {
        let heartbeat_every = self.config.heartbeat_interval();
        let mut heartbeat = ticker(heartbeat_every);
        let mut stats = ticker(heartbeat_every);
        let mut applied = self.applied.subscribe();
        let mut rates = RateTracker::default();
        let mut reported_dead_letters = HashMap::new();
        loop {
            let outgoing: Vec<pb::AgentStreamRequest> = tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(message)) => match message.payload {
                        Some(pb::agent_stream_response::Payload::Welcome(welcome)) => {
                            let (hb, st) = self.on_welcome(welcome);
                            if let Some(every) = hb.filter(|d| *d != heartbeat.period()) {
                                heartbeat = ticker(every);
                            }
                            if let Some(every) = st.or(hb).filter(|d| *d != stats.period()) {
                                stats = ticker(every);
                            }
                            Vec::new()
                        }
                        Some(pb::agent_stream_response::Payload::DesiredState(state)) => {
                            if self.accept_desired_state(state) {
                                Vec::new()
                            } else {
                                // Stale: tell the control plane where we are.
                                vec![self.heartbeat_message()]
                            }
                        }
                        Some(pb::agent_stream_response::Payload::Command(command)) => {
                            self.on_command(command);
                            Vec::new()
                        }
                        Some(pb::agent_stream_response::Payload::EventAck(ack)) => {
                            tracing::debug!(sequence = ack.sequence, "event ack (no outbox to trim)");
                            Vec::new()
                        }
                        None => {
                            tracing::debug!("ignoring an unknown message from the control plane");
                            Vec::new()
                        }
                    },
                    Ok(None) => return "the control plane ended the stream".into(),
                    Err(status) => return describe_status(&status),
                },
                _ = heartbeat.tick() => vec![self.heartbeat_message()],
                _ = stats.tick() => self.stats_messages(&mut rates, &mut reported_dead_letters),
                changed = applied.changed() => match changed {
                    Ok(()) => vec![self.heartbeat_message()],
                    Err(_) => return "the agent is shutting down".into(),
                },
                Some(result) = results.recv() => vec![protocol::command_result_message(result)],
            };
            for message in outgoing {
                match tokio::time::timeout(SEND_TIMEOUT, tx.send(message)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return "the stream closed".into(),
                    Err(_) => {
                        return format!("the control plane did not read for {SEND_TIMEOUT:?}");
                    }
                }
            }
        }
    }

    /// Records the welcome; returns the heartbeat and stats intervals it
    /// asks for.
    fn on_welcome(&self, welcome: pb::AgentWelcome) -> (Option<Duration>, Option<Duration>) {
        if welcome.gateway_id != self.identity.gateway_id {
            tracing::warn!(
                expected = %self.identity.gateway_id,
                echoed = %welcome.gateway_id,
                "the control plane welcomed another gateway id"
            );
        }
        tracing::debug!(
            control_plane_version = %welcome.control_plane_version,
            "welcomed by the control plane"
        );
        let intervals = (
            protocol::clamp_interval(welcome.heartbeat_interval),
            protocol::clamp_interval(welcome.stats_interval),
        );
        self.shared.lock().welcome = Some(welcome);
        intervals
    }

    fn heartbeat_message(&self) -> pb::AgentStreamRequest {
        let task = self.task_snapshot(false);
        let lag = task.as_ref().map_or(0, |t| t.lag_records());
        let drain = protocol::DrainView {
            draining: self.traffic.is_draining(),
            drained: self.traffic.is_drained(lag),
            in_flight_requests: self.traffic.in_flight(),
            idle_for: self.traffic.idle_for(),
        };
        protocol::heartbeat(
            SystemTime::now(),
            self.applied_version(),
            self.disk_usage(),
            task.as_ref(),
            drain,
        )
    }

    fn stats_messages(
        &self,
        rates: &mut RateTracker,
        reported: &mut HashMap<u64, u32>,
    ) -> Vec<pb::AgentStreamRequest> {
        let now = SystemTime::now();
        let task = self.task_snapshot(true);
        let current_rates = task
            .as_ref()
            .map(|t| rates.update(Instant::now(), t.queue.next_offset, t.committed_offset()))
            .unwrap_or_default();
        let mut out = vec![protocol::queue_stats_report(
            task.as_ref(),
            current_rates,
            now,
        )];
        if let (Some(replication), Some(task)) = (&self.replication, &task) {
            let current = replication.dead_letters.list();
            let live: HashSet<u64> = current.iter().map(|e| e.id).collect();
            reported.retain(|id, _| live.contains(id));
            let changes = protocol::dead_letter_changes(reported, &current);
            if !changes.is_empty() {
                for entry in &changes {
                    reported.insert(entry.id, entry.retries);
                }
                out.push(protocol::dead_letter_report(
                    &changes,
                    &task.task_id,
                    &self.identity.gateway_id,
                ));
            }
        }
        out
    }

    /// The replication's state now; `with_corruption` adds a repair dry
    /// run (a segment scan) when the replayer is halted.
    fn task_snapshot(&self, with_corruption: bool) -> Option<TaskSnapshot> {
        let replication = self.replication.as_ref()?;
        let status = replication.status();
        let queue = replication.queue_stats();
        let halted = status.halted.is_some() || queue.consumers.iter().any(|c| c.halted.is_some());
        let corruption = if with_corruption && halted {
            replication.repair(true).ok()
        } else {
            None
        };
        Some(TaskSnapshot {
            task_id: self.task_id(),
            queue,
            paused: replication.is_paused(),
            halted: status.halted,
            last_error: status.last_error,
            reversed: self.roles.current().reversed,
            dead_letters: replication.dead_letters.len() as u64,
            replay_retries_total: self.metrics.replay_retries.get(),
            corruption,
            divergence: replication.counters.current(&self.metrics),
            pending_reconciles: replication.pending_reconciles() as u64,
        })
    }

    fn disk_usage(&self) -> Option<DiskUsage> {
        let stat = rustix::fs::statvfs(&self.data_dir).ok()?;
        Some(DiskUsage {
            free_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
            total_bytes: stat.f_blocks.saturating_mul(stat.f_frsize),
        })
    }

    // -- desired state --------------------------------------------------------

    /// Accepts `state` when it is newer than anything accepted; returns
    /// false when it was ignored as stale.
    fn accept_desired_state(&self, state: pb::DesiredState) -> bool {
        let applied = self.applied_version();
        let version = state.version;
        let target = {
            let mut shared = self.shared.lock();
            let known = shared.target.as_ref().map_or(0, |t| t.version).max(applied);
            if version <= known {
                tracing::debug!(
                    version,
                    known,
                    "ignoring a desired state not newer than the one accepted"
                );
                return false;
            }
            let Interpretation {
                mut target,
                ignored,
            } = protocol::interpret_desired_state(&state, shared.task_id.as_deref());
            self.traffic.set_draining(state.drain);
            for note in &ignored {
                tracing::debug!(version, "desired state field not applied: {note}");
            }
            // What the new state leaves open stays as last accepted, so the
            // persisted target is the whole state to restore after a restart.
            if target.task_id.is_none() {
                target.task_id = shared.task_id.clone();
            }
            if let Some(previous) = &shared.target {
                target.paused = target.paused.or(previous.paused);
                target.reversed = target.reversed.or(previous.reversed);
                target.primary_auth = target.primary_auth.or(previous.primary_auth.clone());
                target.backup_auth = target.backup_auth.or(previous.backup_auth.clone());
                target.primary_limits = target.primary_limits.or(previous.primary_limits);
                target.backup_limits = target.backup_limits.or(previous.backup_limits);
            }
            shared.task_id = target.task_id.clone();
            shared.target = Some(target.clone());
            target
        };
        tracing::info!(
            version,
            task_id = ?target.task_id,
            paused = ?target.paused,
            reversed = ?target.reversed,
            "desired state received"
        );
        if let Err(err) = state::save_target(&self.data_dir, &target) {
            tracing::warn!(error = %format!("{err:#}"), "cannot persist the desired state; it applies until the gateway restarts");
        }
        self.target_changed.notify_one();
        true
    }

    async fn reconcile_loop(self: Arc<Self>) {
        let mut retry = Backoff::new(RECONCILE_RETRY_INITIAL, RECONCILE_RETRY_MAX);
        loop {
            if self.reconcile_once().await {
                retry.reset();
                self.target_changed.notified().await;
            } else {
                let delay = retry.next_delay(jitter());
                tokio::select! {
                    _ = self.target_changed.notified() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }

    fn actual(&self) -> Actual {
        match &self.replication {
            None => Actual {
                replication: false,
                paused: false,
                reversed: false,
            },
            Some(replication) => Actual {
                replication: true,
                paused: replication.is_paused(),
                reversed: self.roles.current().reversed,
            },
        }
    }

    /// Applies the accepted target; true once it is fully applied.
    async fn reconcile_once(&self) -> bool {
        let Some(target) = self.shared.lock().target.clone() else {
            return true;
        };
        if target.version <= self.applied_version() {
            return true;
        }
        let mut complete = true;
        for action in protocol::plan(&target, self.actual()) {
            let Some(replication) = &self.replication else {
                break;
            };
            match action {
                Action::Pause => {
                    replication.pause();
                    tracing::info!(version = target.version, "replay paused (desired state)");
                }
                Action::Resume => {
                    replication.resume();
                    tracing::info!(version = target.version, "replay resumed (desired state)");
                }
                Action::SwapRoles { max_hold } => {
                    let max_hold = max_hold.unwrap_or_else(|| replication.max_hold());
                    match replication.cutover(DEFAULT_CUTOVER_MAX_LAG, max_hold).await {
                        Ok(report) => tracing::info!(
                            version = target.version,
                            primary = %report.primary,
                            backup = %report.backup,
                            reversed = report.reversed,
                            held_ms = report.held_for.as_millis() as u64,
                            "roles swapped (desired state)"
                        ),
                        Err(err) => {
                            tracing::warn!(
                                version = target.version,
                                error = %err,
                                "cannot swap roles for the desired state yet; retrying"
                            );
                            complete = false;
                        }
                    }
                }
            }
        }
        if complete {
            self.apply_upstream_settings(&target);
            let version = target.version;
            let advanced = self.applied.send_if_modified(|applied| {
                let newer = version > *applied;
                if newer {
                    *applied = version;
                }
                newer
            });
            if advanced {
                tracing::info!(version, "desired state applied");
            }
        }
        complete
    }

    /// Gives the upstreams, in their current roles (the target's direction
    /// is applied by now), the credentials and per-node limits of the
    /// assigned clusters. What the gateway's configuration sets for an
    /// upstream is kept.
    fn apply_upstream_settings(&self, target: &Target) {
        let roles = self.roles.current();
        let upstreams = [
            (
                Some(&roles.primary),
                &target.primary_auth,
                target.primary_limits,
            ),
            (
                roles.backup.as_ref(),
                &target.backup_auth,
                target.backup_limits,
            ),
        ];
        for (upstream, auth, limits) in upstreams {
            let Some(upstream) = upstream else {
                continue;
            };
            if let Some(auth) = auth
                && upstream.set_assigned_authorization(auth.as_ref().map(|h| h.0.clone()))
            {
                tracing::info!(
                    version = target.version,
                    upstream = upstream.role,
                    "credentials for the gateway's own requests set from the control plane"
                );
            }
            if let Some(limits) = limits
                && upstream.set_assigned_limits(Some(limits.to_config()))
            {
                tracing::info!(
                    version = target.version,
                    upstream = upstream.role,
                    ?limits,
                    "per-node limits set from the control plane"
                );
            }
        }
    }

    // -- commands -------------------------------------------------------------

    fn on_command(self: &Arc<Self>, command: pb::GatewayCommand) {
        let id = command.command_id.clone();
        if id.is_empty() {
            tracing::warn!("ignoring a command without command_id");
            return;
        }
        match self.commands.lock().begin(&id) {
            CommandSeen::New => {}
            CommandSeen::Running => {
                tracing::debug!(command_id = %id, "command delivered again while running");
                return;
            }
            CommandSeen::Done(result) => {
                tracing::debug!(command_id = %id, "command delivered again; answering its result");
                let _ = self.results_tx.send(*result);
                return;
            }
        }
        let task_id = self.task_id();
        let checked = protocol::check_command(
            &command,
            SystemTime::now(),
            &task_id,
            self.replication.is_some(),
        );
        let (kind, replication) = match (checked, self.replication.clone()) {
            (Ok(kind), Some(replication)) => (kind, replication),
            (Err(result), _) => {
                tracing::info!(
                    command_id = %id,
                    reason = %result.error.as_ref().map_or("", |e| e.reason.as_str()),
                    "command rejected"
                );
                self.finish_command(*result);
                return;
            }
            (Ok(_), None) => {
                self.finish_command(protocol::rejected(
                    &id,
                    codes::REPLICATION_NOT_CONFIGURED,
                    "this gateway has no backup cluster",
                    SystemTime::now(),
                ));
                return;
            }
        };
        let agent = self.clone();
        let ctx = commands::Context {
            command_id: id,
            task_id,
            gateway_id: self.identity.gateway_id.clone(),
        };
        tokio::spawn(async move {
            let result = commands::execute(replication, kind, &ctx).await;
            agent.finish_command(result);
        });
    }

    fn finish_command(&self, result: pb::CommandResult) {
        self.commands.lock().finish(&result);
        let _ = self.results_tx.send(result);
    }
}

/// Runs an [`Agent`] as a Pingora background service.
#[derive(Debug)]
pub struct AgentService(pub Arc<Agent>);

#[async_trait]
impl pingora::services::background::BackgroundService for AgentService {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        tokio::select! {
            _ = self.0.clone().run() => {}
            _ = shutdown.changed() => {}
        }
        self.0.set_connected(false);
    }
}

/// An interval whose first tick is immediate and which does not burst
/// after a stall.
fn ticker(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

/// A number in `[0, 1)` for backoff jitter.
fn jitter() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

fn describe_status(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The machine's host name, or empty when unknown.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    //! The glue between the stream and the gateway, on a real queue and
    //! replayer state (no cluster is contacted: pausing, resuming and the
    //! dead-letter store are local).

    use super::*;
    use crate::upstream::Upstream;

    struct Fixture {
        config: GatewayConfig,
        replication: Arc<Replication>,
        roles: Arc<Roles>,
        metrics: Arc<Metrics>,
    }

    fn fixture(data_dir: &std::path::Path, start_paused: bool) -> Fixture {
        let text = format!(
            "listen = \"127.0.0.1:19200\"\nadmin_listen = \"127.0.0.1:19280\"\n\
             data_dir = {:?}\n\
             [primary]\nurl = \"http://127.0.0.1:1\"\n\
             [backup]\nurl = \"http://127.0.0.1:2\"\n\
             [replay]\nstart_paused = {start_paused}\n\
             [control_plane]\nendpoint = \"http://127.0.0.1:3\"\ngateway_id = \"gw-test\"\n",
            data_dir.display().to_string()
        );
        let config = GatewayConfig::from_toml_with_env(&text, []).unwrap();
        let upstream = |role, c: &crate::config::UpstreamConfig| {
            Arc::new(Upstream::new(role, c.endpoint("url").unwrap(), c.clone()))
        };
        let primary = upstream("primary", &config.primary);
        let backup = upstream("backup", config.backup.as_ref().unwrap());
        let roles = Arc::new(Roles::new(primary, Some(backup)));
        let metrics = Arc::new(Metrics::new());
        let replication = Replication::open(
            config.data_dir.clone(),
            config.queue.to_queue_config(),
            config.replay.clone(),
            roles.clone(),
            metrics.clone(),
        )
        .unwrap();
        Fixture {
            config,
            replication,
            roles,
            metrics,
        }
    }

    fn start_agent(f: &Fixture) -> Arc<Agent> {
        Agent::new(
            &f.config,
            f.config.control_plane.as_ref().unwrap(),
            Some(f.replication.clone()),
            f.roles.clone(),
            Arc::new(Traffic::default()),
            f.metrics.clone(),
        )
        .unwrap()
    }

    fn desired(version: u64, task: &str, mode: pb::TaskMode) -> pb::DesiredState {
        pb::DesiredState {
            version,
            tasks: vec![pb::TaskAssignment {
                task_id: task.into(),
                mode: mode as i32,
                direction: pb::ReplicationDirection::Forward as i32,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn desired_states_are_applied_persisted_and_restored() {
        let dir = tempfile::tempdir().unwrap();
        let f = fixture(dir.path(), false);
        let agent = start_agent(&f);
        assert_eq!(agent.gateway_id(), "gw-test");
        assert_eq!(agent.task_id(), LOCAL_TASK_ID);

        assert!(agent.accept_desired_state(desired(1, "t-1", pb::TaskMode::RecordOnly)));
        assert!(agent.reconcile_once().await);
        assert!(f.replication.is_paused());
        assert_eq!(agent.applied_version(), 1);
        assert_eq!(agent.task_id(), "t-1");

        // Not newer: ignored.
        assert!(!agent.accept_desired_state(desired(1, "t-1", pb::TaskMode::Replay)));
        assert!(agent.reconcile_once().await);
        assert!(f.replication.is_paused());

        assert!(agent.accept_desired_state(desired(2, "t-1", pb::TaskMode::Replay)));
        assert!(agent.reconcile_once().await);
        assert!(!f.replication.is_paused());
        assert_eq!(agent.applied_version(), 2);

        // A state without tasks keeps the task id and the replayer as is.
        assert!(agent.accept_desired_state(pb::DesiredState {
            version: 3,
            ..Default::default()
        }));
        assert!(agent.reconcile_once().await);
        assert_eq!(agent.applied_version(), 3);
        assert_eq!(agent.task_id(), "t-1");
        assert!(!f.replication.is_paused());

        // After a restart configured with `start_paused`, the last desired
        // state (running) wins.
        drop(agent);
        drop(f);
        let f = fixture(dir.path(), true);
        assert!(f.replication.is_paused());
        let agent = start_agent(&f);
        assert_eq!(agent.task_id(), "t-1");
        assert_eq!(agent.applied_version(), 0);
        assert!(agent.reconcile_once().await);
        assert_eq!(agent.applied_version(), 3);
        assert!(!f.replication.is_paused());
        assert!(!agent.accept_desired_state(desired(3, "t-1", pb::TaskMode::RecordOnly)));
    }

    #[tokio::test]
    async fn commands_are_answered_once_per_id() {
        let dir = tempfile::tempdir().unwrap();
        let f = fixture(dir.path(), false);
        let agent = start_agent(&f);
        let skip = pb::GatewayCommand {
            command_id: "c-1".into(),
            command: Some(pb::gateway_command::Command::SkipDeadLetters(
                pb::SkipDeadLettersCommand {
                    task_id: String::new(),
                    dead_letter_ids: vec!["42".into()],
                    comment: "test".into(),
                },
            )),
            ..Default::default()
        };
        let mut results = agent.results_rx.lock().await;
        agent.on_command(skip.clone());
        let first = tokio::time::timeout(Duration::from_secs(5), results.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.command_id, "c-1");
        assert_eq!(first.outcome, pb::CommandOutcome::Succeeded as i32);
        let Some(pb::command_result::Detail::DeadLetters(detail)) = &first.detail else {
            panic!("no dead-letter detail: {first:?}");
        };
        assert_eq!(detail.unknown_ids, vec!["42".to_string()]);
        // Delivered again: same answer, not executed again.
        agent.on_command(skip);
        let again = results.recv().await.unwrap();
        assert_eq!(again, first);

        let repair = pb::GatewayCommand {
            command_id: "c-2".into(),
            command: Some(pb::gateway_command::Command::RepairQueue(
                pb::RepairQueueCommand {
                    dry_run: true,
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        agent.on_command(repair);
        let result = tokio::time::timeout(Duration::from_secs(5), results.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(result.outcome, pb::CommandOutcome::Rejected as i32);
        assert_eq!(result.error.unwrap().reason, codes::QUEUE_NOT_BLOCKED);
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..1000 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
