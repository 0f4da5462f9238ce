//! The gateways connected to this control-plane process, and the way other
//! services reach them.
//!
//! # Agent streams
//!
//! Every gateway runs an agent that keeps one `GatewayService.AgentStream`
//! open (`fleet::session` runs the control plane's side of one stream):
//!
//! 1. The first message must be `AgentHello` (anything else, or a malformed
//!    hello, fails the RPC with `INVALID_ARGUMENT` naming the field). The
//!    gateway row is created or refreshed and marked CONNECTED, owned by the
//!    new stream (`connection_id`) on this process (`instance_id`). The
//!    answer is `AgentWelcome`, then the gateway's current `DesiredState`.
//! 2. Heartbeats and queue statistics are kept in memory and written by one
//!    writer task per stream that always writes the latest values: while a
//!    write is in flight, newer reports replace older ones instead of
//!    queueing (a slow database costs freshness, never memory). Every write
//!    is conditioned on the stream still owning the row; a write that finds
//!    another owner closes the stream with `ABORTED` (a newer stream of the
//!    same gateway exists, possibly on another replica).
//! 3. Events are stored (once per gateway sequence number) and acknowledged
//!    with `EventAck`; command results complete the matching
//!    [`Fleet::send_command`] call.
//! 4. A second stream of the same gateway on this process replaces the first,
//!    which is closed with `ABORTED`. A stream silent for three heartbeat
//!    intervals is closed with `DEADLINE_EXCEEDED`. When a stream ends, the
//!    gateway is marked DISCONNECTED — only if that stream still owns it.
//! 5. [`liveness`] marks DISCONNECTED the gateways nobody heard from for three
//!    heartbeat intervals, whichever replica held them (it may have died).
//!
//! # Desired state
//!
//! The desired state of a gateway is built from its row ([`desired_state`]):
//! its version (`desired_version`), the drain request, and its task
//! assignments ([`load_desired_state`], [`task_assignment`]). Whoever changes it
//! persists the change first (raising `desired_version`), then calls
//! [`Fleet::push_desired_state`] to deliver it at once if the gateway is
//! connected here. A gateway connected to another replica gets it from that
//! replica within one heartbeat: after each write, a stream whose row shows
//! a higher `desired_version` than it last sent pushes the new state.
//!
//! # Commands
//!
//! Commands go through an outbox in Postgres ([`commands`]), so any replica
//! can send a command to any gateway and nothing is lost to a reconnect:
//! [`commands::execute`] stores the command and waits for its result;
//! commands that may wait for a gateway to come back are stored with the
//! change they carry (see [`crate::store::dead_letters::request`]). The replica holding the
//! gateway's stream claims and sends it (woken by a Postgres notification,
//! or by its periodic sweep); the result, received by whichever replica
//! holds the stream then, is stored and wakes the caller. A command sent on
//! a stream that broke before the answer is sent again on the next stream
//! (the gateway answers a repeated command id with its first result).
//!
pub mod commands;
pub mod liveness;
pub(crate) mod session;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_proto::v1 as pb;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::Status;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::secrets::SecretBox;
use crate::store::gateways::GatewayRecord;
use crate::store::tasks::TaskRecord;
use tandem_proto::time::{duration, timestamp};

/// Default quiet period of a drain (DrainGatewayRequest: "Zero means 30 s").
pub const DEFAULT_DRAIN_QUIET_PERIOD: Duration = Duration::from_secs(30);

/// Default time [`Fleet::send_command`] callers wait for a gateway's answer.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a new stream may take to send its `AgentHello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// Messages queued towards one agent before senders wait.
const OUTBOUND_CAPACITY: usize = 64;

/// Intervals told to every agent in its `AgentWelcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentSettings {
    /// Interval between heartbeats; three without any message close the
    /// stream and mark the gateway disconnected.
    pub heartbeat_interval: Duration,
    /// Interval between queue statistics reports; statistics older than
    /// three intervals are stale.
    pub stats_interval: Duration,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            heartbeat_interval: Duration::from_secs(10),
            stats_interval: Duration::from_secs(10),
        }
    }
}

/// Why a gateway could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    /// The gateway has no agent stream on this control-plane process.
    #[error("gateway {0} is not connected to this control plane")]
    NotConnected(String),
    /// The gateway did not answer in time.
    #[error("gateway {gateway_id} did not answer command {command_id} within {timeout:?}")]
    Timeout {
        /// Gateway.
        gateway_id: String,
        /// Command.
        command_id: String,
        /// How long the caller waited.
        timeout: Duration,
    },
    /// The agent stream closed before the gateway answered.
    #[error("the agent stream of gateway {0} closed before the gateway answered")]
    Disconnected(String),
    /// The command could not be stored or its result read.
    #[error("the control plane's database failed: {0}")]
    Database(String),
}

impl FleetError {
    /// The gRPC status for this failure (`UNAVAILABLE` or
    /// `DEADLINE_EXCEEDED`), naming `field` (the request's gateway field).
    pub fn status(&self, field: &str) -> Status {
        match self {
            FleetError::NotConnected(_) | FleetError::Disconnected(_) => {
                Status::unavailable(format!("{field}: {self}; retry once it is connected"))
            }
            FleetError::Timeout { .. } => Status::deadline_exceeded(format!("{field}: {self}")),
            FleetError::Database(_) => Status::unavailable(format!("{self}; retry later")),
        }
    }
}

/// One open agent stream, as other services see it.
pub(crate) struct AgentLink {
    gateway_id: String,
    connection_id: Uuid,
    /// Messages to the agent; taken when the session ends, which ends the
    /// response stream even while a caller still holds the link.
    outbound: Mutex<Option<mpsc::Sender<Result<pb::AgentStreamResponse, Status>>>>,
    /// Highest desired-state version sent on this stream.
    last_pushed_version: AtomicU64,
    /// Ends the stream with the given status (taken by the first closer).
    close: Mutex<Option<oneshot::Sender<Status>>>,
}

impl AgentLink {
    /// Asks the session to end the stream with `status`. Later calls do
    /// nothing.
    pub(crate) fn close(&self, status: Status) {
        let sender = self.close.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(sender) = sender {
            let _ = sender.send(status);
        }
    }

    /// Sends `state` unless a state of the same or a higher version was
    /// already sent (the gateway would ignore it).
    async fn push(&self, state: pb::DesiredState) -> Result<(), FleetError> {
        let version = state.version;
        if self
            .last_pushed_version
            .fetch_max(version, Ordering::SeqCst)
            >= version
        {
            return Ok(());
        }
        self.send(pb::agent_stream_response::Payload::DesiredState(state))
            .await
    }

    async fn send(&self, payload: pb::agent_stream_response::Payload) -> Result<(), FleetError> {
        let disconnected = || FleetError::Disconnected(self.gateway_id.clone());
        let outbound = self
            .outbound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(disconnected)?;
        outbound
            .send(Ok(pb::AgentStreamResponse {
                payload: Some(payload),
            }))
            .await
            .map_err(|_| disconnected())
    }

    /// Ends the response stream, with `status` as its final status when
    /// given (otherwise it ends OK).
    async fn end_stream(&self, status: Option<Status>) {
        let outbound = self
            .outbound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let (Some(outbound), Some(status)) = (outbound, status) {
            // A peer that stopped reading must not hold the session.
            let _ = tokio::time::timeout(Duration::from_secs(1), outbound.send(Err(status))).await;
        }
    }

    /// Highest desired-state version sent on this stream.
    fn pushed_version(&self) -> u64 {
        self.last_pushed_version.load(Ordering::SeqCst)
    }
}

/// A caller's registration for one command result (see
/// [`Fleet::await_result`]).
pub(crate) struct ResultWaiter {
    fleet: Fleet,
    command_id: String,
    receiver: oneshot::Receiver<pb::CommandResult>,
}

impl ResultWaiter {
    /// The result once [`Fleet::complete`] hands it over.
    pub(crate) fn receiver(&mut self) -> &mut oneshot::Receiver<pb::CommandResult> {
        &mut self.receiver
    }
}

impl Drop for ResultWaiter {
    fn drop(&mut self) {
        self.fleet
            .inner
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.command_id);
    }
}

/// The registry of the agent streams open on this control-plane process.
/// Cheap to clone; every clone shares the registry.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

struct Inner {
    instance_id: String,
    settings: AgentSettings,
    agents: Mutex<HashMap<String, Arc<AgentLink>>>,
    /// Callers of [`commands::execute`] on this process waiting for a
    /// result, by command id.
    waiters: Mutex<HashMap<String, oneshot::Sender<pb::CommandResult>>>,
    /// Where command outcomes are counted.
    metrics: Metrics,
    /// Opens the cluster credentials sent in desired states.
    secrets: SecretBox,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("instance_id", &self.inner.instance_id)
            .field("settings", &self.inner.settings)
            .field("connected", &self.agents().len())
            .finish()
    }
}

impl Fleet {
    /// An empty registry for a process identified by a fresh instance id,
    /// counting command outcomes in `metrics` and opening cluster
    /// credentials with `secrets`.
    pub fn new(settings: AgentSettings, metrics: Metrics, secrets: SecretBox) -> Fleet {
        Fleet {
            inner: Arc::new(Inner {
                instance_id: Uuid::new_v4().to_string(),
                settings,
                agents: Mutex::new(HashMap::new()),
                waiters: Mutex::new(HashMap::new()),
                metrics,
                secrets,
                shutdown: watch::channel(false).0,
            }),
        }
    }

    /// Id of this control-plane process, stored as `connected_to` on the
    /// gateways whose stream it holds.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// Intervals told to the agents.
    pub fn settings(&self) -> AgentSettings {
        self.inner.settings
    }

    /// Opens the cluster credentials sent in desired states.
    pub(crate) fn secrets(&self) -> &SecretBox {
        &self.inner.secrets
    }

    /// The metrics command outcomes are counted in.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    fn agents(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<AgentLink>>> {
        self.inner.agents.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn link(&self, gateway_id: &str) -> Result<Arc<AgentLink>, FleetError> {
        self.agents()
            .get(gateway_id)
            .cloned()
            .ok_or_else(|| FleetError::NotConnected(gateway_id.to_string()))
    }

    /// Whether `gateway_id` has an agent stream on this process.
    pub fn is_connected(&self, gateway_id: &str) -> bool {
        self.agents().contains_key(gateway_id)
    }

    /// Ids of the gateways with an agent stream on this process, sorted.
    pub fn connected(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.agents().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Delivers `state` to `gateway_id` if it is connected to this process.
    /// Persist the state first (its `version` as the gateway's
    /// `desired_version`): a gateway connected elsewhere, or reconnecting
    /// later, gets it from the database. A state whose version is not
    /// higher than one already sent on the stream is skipped (the gateway
    /// would ignore it).
    pub async fn push_desired_state(
        &self,
        gateway_id: &str,
        state: pb::DesiredState,
    ) -> Result<(), FleetError> {
        self.link(gateway_id)?.push(state).await
    }

    /// The stream of `gateway_id` on this process, if any.
    pub(crate) fn connection_id(&self, gateway_id: &str) -> Option<Uuid> {
        self.agents().get(gateway_id).map(|link| link.connection_id)
    }

    /// Sends `command` on the stream of `gateway_id` (without waiting for
    /// the answer, which arrives through [`Fleet::complete`]).
    pub(crate) async fn deliver(
        &self,
        gateway_id: &str,
        command: pb::GatewayCommand,
    ) -> Result<(), FleetError> {
        self.link(gateway_id)?
            .send(pb::agent_stream_response::Payload::Command(command))
            .await
    }

    /// Registers a caller waiting for the result of `command_id`; the
    /// registration ends when the returned receiver is dropped.
    pub(crate) fn await_result(&self, command_id: &str) -> ResultWaiter {
        let (sender, receiver) = oneshot::channel();
        self.inner
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(command_id.to_string(), sender);
        ResultWaiter {
            fleet: self.clone(),
            command_id: command_id.to_string(),
            receiver,
        }
    }

    /// Whether a caller on this process waits for `command_id`.
    pub(crate) fn awaits(&self, command_id: &str) -> bool {
        self.inner
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(command_id)
    }

    /// Hands `result` to the caller on this process waiting for it; false
    /// when nobody here waits (unknown id, another replica's caller, or
    /// the caller gave up).
    pub(crate) fn complete(&self, result: pb::CommandResult) -> bool {
        let waiter = self
            .inner
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&result.command_id);
        waiter.is_some_and(|w| w.send(result).is_ok())
    }

    /// Closes every agent stream with `UNAVAILABLE` (the agents reconnect,
    /// to another replica if there is one) and ends every watch: called
    /// when the server shuts down, since open streams would otherwise hold
    /// the graceful shutdown forever.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Resolves once [`Fleet::shutdown`] was called.
    pub(crate) async fn shutting_down(&self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        // The sender lives as long as `self`: `wait_for` cannot fail here.
        let _ = shutdown.wait_for(|down| *down).await;
    }

    /// Registers a new stream of `gateway_id`; returns the link and the
    /// receiver of its close request. The older stream of the same gateway,
    /// if any, is closed with `ABORTED`.
    fn attach(
        &self,
        gateway_id: &str,
        connection_id: Uuid,
        outbound: mpsc::Sender<Result<pb::AgentStreamResponse, Status>>,
        pushed_version: u64,
    ) -> (Arc<AgentLink>, oneshot::Receiver<Status>, bool) {
        let (close, closed) = oneshot::channel();
        let link = Arc::new(AgentLink {
            gateway_id: gateway_id.to_string(),
            connection_id,
            outbound: Mutex::new(Some(outbound)),
            last_pushed_version: AtomicU64::new(pushed_version),
            close: Mutex::new(Some(close)),
        });
        let older = self.agents().insert(gateway_id.to_string(), link.clone());
        let replaced = older.is_some();
        if let Some(older) = older {
            older.close(Status::aborted(
                "replaced by a newer agent stream of the same gateway",
            ));
        }
        (link, closed, replaced)
    }

    /// Removes the stream `connection_id` of `gateway_id` (not a newer one).
    /// Callers still waiting for its commands get
    /// [`FleetError::Disconnected`].
    fn detach(&self, gateway_id: &str, connection_id: Uuid) {
        let mut agents = self.agents();
        if agents
            .get(gateway_id)
            .is_some_and(|link| link.connection_id == connection_id)
        {
            agents.remove(gateway_id);
        }
    }
}

/// The desired state of a gateway as stored: its version and drain request,
/// without task assignments (see [`load_desired_state`] for the full state).
pub fn desired_state(record: &GatewayRecord) -> pb::DesiredState {
    desired_state_with_tasks(record, &[])
}

/// The desired state of a gateway: its version, drain request, and one
/// [`task_assignment`] per task in `tasks` (the tasks assigned to it).
pub fn desired_state_with_tasks(record: &GatewayRecord, tasks: &[TaskRecord]) -> pb::DesiredState {
    let drain = &record.drain;
    pb::DesiredState {
        version: record.desired_version,
        generated_at: Some(timestamp(chrono::Utc::now())),
        tasks: tasks.iter().map(task_assignment).collect(),
        drain: drain.requested,
        drain_quiet_period: drain.requested.then(|| duration(drain.quiet_period)),
        deletable_queue_task_ids: Vec::new(),
        drain_allow_unreplayed_paused: drain.requested && drain.allow_unreplayed_paused,
    }
}

/// The full desired state of a gateway, with the tasks assigned to it read
/// from the database and the credentials and limits of their clusters (see
/// [`attach_cluster_settings`]). If the tasks cannot be read, the error is
/// returned: never send a state without tasks that would make the gateway
/// drop them.
pub async fn load_desired_state(
    pool: &sqlx::PgPool,
    secrets: &SecretBox,
    record: &GatewayRecord,
) -> Result<pb::DesiredState, crate::store::StoreError> {
    let tasks = crate::store::tasks::for_gateway(pool, &record.id).await?;
    let mut state = desired_state_with_tasks(record, &tasks);
    attach_cluster_settings(pool, secrets, &mut state).await?;
    Ok(state)
}

/// Adds to every cluster assignment of `state` the cluster's per-node
/// limits and its credentials, opened from the store: the gateway uses the
/// credentials for its own requests (replay, read-repair, node discovery)
/// and the limits for every request, unless its configuration sets them
/// for that upstream. A secret that cannot be opened (key changed) is left
/// out and logged; the gateway keeps what it has.
async fn attach_cluster_settings(
    pool: &sqlx::PgPool,
    secrets: &SecretBox,
    state: &mut pb::DesiredState,
) -> Result<(), crate::store::StoreError> {
    type Settings = (Option<pb::Credentials>, Option<pb::Limits>);
    let mut known: HashMap<String, Settings> = HashMap::new();
    for task in &mut state.tasks {
        for upstream in [task.primary.as_mut(), task.backup.as_mut()]
            .into_iter()
            .flatten()
        {
            let (credentials, limits) = match known.get(&upstream.cluster_id) {
                Some(settings) => settings.clone(),
                None => {
                    let settings = cluster_settings(pool, secrets, &upstream.cluster_id).await?;
                    known.insert(upstream.cluster_id.clone(), settings.clone());
                    settings
                }
            };
            upstream.credentials = credentials;
            upstream.limits = limits;
        }
    }
    Ok(())
}

/// The credentials (secret opened) and limits of cluster `cluster_id`.
async fn cluster_settings(
    pool: &sqlx::PgPool,
    secrets: &SecretBox,
    cluster_id: &str,
) -> Result<(Option<pb::Credentials>, Option<pb::Limits>), crate::store::StoreError> {
    use crate::store::clusters::{self, AuthKind};
    let Ok(id) = Uuid::parse_str(cluster_id) else {
        return Ok((None, None));
    };
    let Some(record) = clusters::get(pool, id).await? else {
        return Ok((None, None));
    };
    let limits = crate::services::clusters::convert::cluster(&record).limits;
    let stored = &record.settings.credentials;
    let secret = match stored.secret_encrypted.as_deref() {
        None => String::new(),
        Some(sealed) => {
            let context = crate::services::clusters::settings::credentials_context(id);
            match secrets.open(sealed, &context) {
                Ok(secret) => secret.expose().to_string(),
                Err(err) => {
                    tracing::error!(cluster_id = %id, error = %err, "cannot open the cluster's stored credentials; gateways keep their own");
                    return Ok((None, limits));
                }
            }
        }
    };
    let credentials = match stored.method {
        AuthKind::None => pb::Credentials {
            method: pb::AuthMethod::None as i32,
            ..Default::default()
        },
        AuthKind::Basic => pb::Credentials {
            method: pb::AuthMethod::Basic as i32,
            username: stored.username.clone(),
            password: secret,
            ..Default::default()
        },
        AuthKind::ApiKey => pb::Credentials {
            method: pb::AuthMethod::ApiKey as i32,
            api_key: secret,
            ..Default::default()
        },
    };
    Ok((Some(credentials), limits))
}

/// What one gateway must do for `task`: mode from its state, direction (the
/// target of a role swap in progress, with its write hold), and the
/// clusters in their current roles. Endpoints and TLS are not sent:
/// gateways take them from their own configuration; credentials and limits
/// are added by [`load_desired_state`].
pub fn task_assignment(task: &TaskRecord) -> pb::TaskAssignment {
    let direction = task.effective_direction();
    let original_primary = pb::UpstreamAssignment {
        cluster_id: task.primary_cluster_id.to_string(),
        cluster_name: task.primary_cluster_name.clone(),
        ..Default::default()
    };
    let original_backup = pb::UpstreamAssignment {
        cluster_id: task.backup_cluster_id.to_string(),
        cluster_name: task.backup_cluster_name.clone(),
        ..Default::default()
    };
    let (mut primary, mut backup) = if direction == pb::ReplicationDirection::Reversed {
        (original_backup, original_primary)
    } else {
        (original_primary, original_backup)
    };
    primary.role = pb::ClusterRole::Primary as i32;
    backup.role = pb::ClusterRole::Backup as i32;
    pb::TaskAssignment {
        task_id: task.id.to_string(),
        task_name: task.name.clone(),
        listener: task.listener.clone(),
        mode: task.mode() as i32,
        direction: direction as i32,
        primary: Some(primary),
        backup: Some(backup),
        indices: Some(task.indices.clone()),
        queue_policy: Some(task.queue_policy),
        replay: Some(task.replay),
        shadow_reads: Some(pb::ShadowReadConfig {
            sample_ratio: task.shadow_sample_ratio,
        }),
        write_hold: task.hold.as_ref().map(|hold| pb::WriteHold {
            hold_id: hold.id.to_string(),
            timeout: Some(duration(Duration::from_millis(
                u64::try_from(hold.timeout_ms).unwrap_or(0),
            ))),
            deadline: Some(timestamp(hold.deadline)),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(id: &str) -> pb::GatewayCommand {
        pb::GatewayCommand {
            command_id: id.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn commands_are_delivered_and_results_reach_their_waiter_only() {
        let fleet = Fleet::new(
            AgentSettings::default(),
            Metrics::default(),
            SecretBox::new(&crate::secrets::SecretKey::generate()),
        );
        let (tx, mut rx) = mpsc::channel(8);
        let connection = Uuid::new_v4();
        fleet.attach("gw-1", connection, tx, 0);
        assert_eq!(fleet.connection_id("gw-1"), Some(connection));
        let mut waiter = fleet.await_result("c-1");
        assert!(fleet.awaits("c-1"));
        fleet.deliver("gw-1", command("c-1")).await.unwrap();
        let sent = rx.recv().await.unwrap().unwrap();
        let Some(pb::agent_stream_response::Payload::Command(cmd)) = sent.payload else {
            panic!("expected a command, got {sent:?}");
        };
        assert_eq!(cmd.command_id, "c-1");
        assert!(!fleet.complete(pb::CommandResult {
            command_id: "someone-else".into(),
            ..Default::default()
        }));
        assert!(fleet.complete(pb::CommandResult {
            command_id: "c-1".into(),
            outcome: pb::CommandOutcome::Succeeded as i32,
            ..Default::default()
        }));
        assert_eq!(waiter.receiver().await.unwrap().command_id, "c-1");
    }

    #[tokio::test]
    async fn unknown_gateways_fail_fast_and_dropped_waiters_unregister() {
        let fleet = Fleet::new(
            AgentSettings::default(),
            Metrics::default(),
            SecretBox::new(&crate::secrets::SecretKey::generate()),
        );
        let err = fleet.deliver("nope", command("c-2")).await.unwrap_err();
        assert_eq!(err, FleetError::NotConnected("nope".into()));
        assert_eq!(err.status("gateway_id").code(), tonic::Code::Unavailable);
        assert_eq!(fleet.connection_id("nope"), None);

        let waiter = fleet.await_result("c-3");
        drop(waiter);
        assert!(!fleet.awaits("c-3"));
        assert!(!fleet.complete(pb::CommandResult {
            command_id: "c-3".into(),
            ..Default::default()
        }));
    }

    #[tokio::test]
    async fn a_newer_stream_replaces_and_closes_the_older_one() {
        let fleet = Fleet::new(
            AgentSettings::default(),
            Metrics::default(),
            SecretBox::new(&crate::secrets::SecretKey::generate()),
        );
        let (tx1, _rx1) = mpsc::channel(8);
        let (tx2, _rx2) = mpsc::channel(8);
        let first = Uuid::new_v4();
        let (_, closed, _) = fleet.attach("gw-1", first, tx1, 0);
        let (_, _closed2, replaced) = fleet.attach("gw-1", Uuid::new_v4(), tx2, 0);
        assert!(replaced);
        assert_eq!(closed.await.unwrap().code(), tonic::Code::Aborted);
        // The older stream ending does not unregister the newer one.
        fleet.detach("gw-1", first);
        assert!(fleet.is_connected("gw-1"));
        assert_eq!(fleet.connected(), ["gw-1"]);
    }

    #[tokio::test]
    async fn desired_states_are_sent_in_version_order() {
        let fleet = Fleet::new(
            AgentSettings::default(),
            Metrics::default(),
            SecretBox::new(&crate::secrets::SecretKey::generate()),
        );
        let (tx, mut rx) = mpsc::channel(8);
        fleet.attach("gw-1", Uuid::new_v4(), tx, 3);
        for version in [2, 4, 4, 1] {
            let state = pb::DesiredState {
                version,
                ..Default::default()
            };
            fleet.push_desired_state("gw-1", state).await.unwrap();
        }
        let mut versions = Vec::new();
        while let Ok(Ok(message)) = rx.try_recv() {
            if let Some(pb::agent_stream_response::Payload::DesiredState(s)) = message.payload {
                versions.push(s.version);
            }
        }
        assert_eq!(versions, [4]);
    }

    fn task(state: pb::TaskState) -> TaskRecord {
        let now = chrono::Utc::now();
        TaskRecord {
            id: Uuid::new_v4(),
            name: "seed".into(),
            description: String::new(),
            labels: Default::default(),
            primary_cluster_id: Uuid::new_v4(),
            primary_cluster_name: "old".into(),
            backup_cluster_id: Uuid::new_v4(),
            backup_cluster_name: "new".into(),
            gateway_ids: vec!["gw-1".into()],
            listener: String::new(),
            state,
            state_before_failure: None,
            direction: pb::ReplicationDirection::Forward,
            target_direction: None,
            hold: None,
            indices: pb::IndexFilter::default(),
            warning_lag_ms: 0,
            warning_records: 0,
            cutover_max_lag_ms: 0,
            cutover_max_records: 0,
            shadow_sample_ratio: 0.0,
            queue_policy: pb::QueuePolicy::default(),
            replay: pb::ReplayOptions::default(),
            backup_gc_deletes_ms: 0,
            error: None,
            request_id: None,
            version: 1,
            created_at: now,
            updated_at: now,
            started_at: None,
            stopped_at: None,
        }
    }

    #[test]
    fn assignments_follow_the_task_state_and_role_swap() {
        for (state, mode) in [
            (pb::TaskState::Created, pb::TaskMode::RecordOnly),
            (pb::TaskState::Paused, pb::TaskMode::RecordOnly),
            (pb::TaskState::Running, pb::TaskMode::Replay),
            (pb::TaskState::CuttingOver, pb::TaskMode::Replay),
            (pb::TaskState::Stopped, pb::TaskMode::Passthrough),
        ] {
            let a = task_assignment(&task(state));
            assert_eq!(a.mode, mode as i32, "{state:?}");
            assert_eq!(a.direction, pb::ReplicationDirection::Forward as i32);
            assert_eq!(a.primary.unwrap().cluster_name, "old");
            assert!(a.write_hold.is_none());
        }
        // A cutover in progress: the target direction, swapped clusters and
        // the hold.
        let mut swapping = task(pb::TaskState::CuttingOver);
        let hold_id = Uuid::new_v4();
        swapping.target_direction = Some(pb::ReplicationDirection::Reversed);
        swapping.hold = Some(crate::store::tasks::Hold {
            id: hold_id,
            timeout_ms: 7_000,
            deadline: chrono::Utc::now(),
        });
        let a = task_assignment(&swapping);
        assert_eq!(a.direction, pb::ReplicationDirection::Reversed as i32);
        let primary = a.primary.unwrap();
        assert_eq!(primary.cluster_name, "new");
        assert_eq!(primary.role, pb::ClusterRole::Primary as i32);
        assert_eq!(a.backup.unwrap().cluster_name, "old");
        let hold = a.write_hold.unwrap();
        assert_eq!(hold.hold_id, hold_id.to_string());
        assert_eq!(hold.timeout.unwrap().seconds, 7);
    }
}
