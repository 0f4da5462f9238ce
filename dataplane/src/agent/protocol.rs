//! The agent protocol as pure functions: building the messages the gateway
//! sends from snapshots of its state, reducing a `DesiredState` to what the
//! gateway can apply, planning the actions that converge the gateway to it,
//! and checking commands. Nothing here does I/O, so all of it is unit
//! tested; the stream loop in [`super`] only captures snapshots, calls these
//! functions and moves messages.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tandem_proto::v1 as pb;

use crate::dead_letters::DeadLetter;
use crate::queue::{ConsumerStats, QueueStats, RepairReport};
use crate::replication::{Peeked, REPLAYER};
use tandem_es::ops::ReplicationOp;
use tandem_es::uri::encode_path_segment;

/// Task id reported for the gateway's replication before the control plane
/// assigned one (no desired state received yet, or one without tasks). The
/// gateway runs a single replication (its `[backup]`), so it reports at most
/// one task: the task of the latest desired state, else this id.
pub const LOCAL_TASK_ID: &str = "local";

/// Capabilities announced in `AgentHello` by a gateway that replicates.
/// Not announced: `write_hold` (a hold on its own, without a role swap),
/// `shadow_reads`, queue peeking and draining, which this gateway cannot do.
pub const CAPABILITIES: &[&str] = &[
    "dual_write",
    "queue.v1",
    "read_repair",
    "mapping_type_rewrite",
    "cutover",
    "dead_letters",
    "queue_repair",
];

/// Default and maximum body bytes returned per dead letter by a fetch.
const DEFAULT_MAX_BODY_BYTES: usize = 65_536;
const MAX_BODY_BYTES: usize = 1 << 20;

/// Most dead letters sent in one `DeadLetterReport`.
pub const DEAD_LETTER_REPORT_MAX: usize = 500;

// ---------------------------------------------------------------------------
// Time conversions.
// ---------------------------------------------------------------------------

/// A protobuf timestamp of `time`.
pub fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    time.into()
}

/// A protobuf duration of `d` (saturating).
pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(d).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 999_999_999,
    })
}

/// `d` as a std duration; `None` when negative or invalid.
pub fn std_duration(d: prost_types::Duration) -> Option<Duration> {
    Duration::try_from(d).ok()
}

fn millis_to_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// An interval the control plane asked for, when positive, clamped to the
/// range accepted for `heartbeat_interval_ms`.
pub fn clamp_interval(d: Option<prost_types::Duration>) -> Option<Duration> {
    let d = std_duration(d?)?;
    if d.is_zero() {
        return None;
    }
    let range = super::config::HEARTBEAT_RANGE_MS;
    Some(d.clamp(
        Duration::from_millis(*range.start()),
        Duration::from_millis(*range.end()),
    ))
}

// ---------------------------------------------------------------------------
// Hello.
// ---------------------------------------------------------------------------

/// What the gateway says about itself in `AgentHello`.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Persistent gateway id.
    pub gateway_id: String,
    /// Display name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `host:port` clients reach it at.
    pub advertised_address: String,
    /// `host:port` of the admin endpoint.
    pub admin_address: String,
    /// Host name of the machine.
    pub hostname: String,
    /// Gateway software version.
    pub version: String,
    /// Build identifier (git commit), when known at build time.
    pub build: String,
    /// Capabilities announced.
    pub capabilities: Vec<String>,
    /// Listeners served.
    pub listeners: Vec<pb::Listener>,
    /// When the process started.
    pub started_at: SystemTime,
}

/// The first message of every stream.
pub fn hello(
    identity: &Identity,
    applied_version: u64,
    local_task_ids: Vec<String>,
) -> pb::AgentStreamRequest {
    request(pb::agent_stream_request::Payload::Hello(pb::AgentHello {
        gateway_id: identity.gateway_id.clone(),
        name: identity.name.clone(),
        labels: identity
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        advertised_address: identity.advertised_address.clone(),
        admin_address: identity.admin_address.clone(),
        hostname: identity.hostname.clone(),
        version: identity.version.clone(),
        build: identity.build.clone(),
        capabilities: identity.capabilities.clone(),
        listeners: identity.listeners.clone(),
        applied_version,
        local_task_ids,
        // The gateway keeps no event outbox yet; it emits no events.
        last_event_sequence: 0,
        started_at: Some(timestamp(identity.started_at)),
    }))
}

fn request(payload: pb::agent_stream_request::Payload) -> pb::AgentStreamRequest {
    pb::AgentStreamRequest {
        payload: Some(payload),
    }
}

// ---------------------------------------------------------------------------
// Heartbeats and queue statistics.
// ---------------------------------------------------------------------------

/// The gateway's replication as seen at one moment.
#[derive(Debug, Clone)]
pub struct TaskSnapshot {
    /// Task id reported (see [`LOCAL_TASK_ID`]).
    pub task_id: String,
    /// The queue's statistics.
    pub queue: QueueStats,
    /// The replayer is paused.
    pub paused: bool,
    /// The replayer is halted on a corrupt record (why).
    pub halted: Option<String>,
    /// The last replay failure, cleared by the next success.
    pub last_error: Option<String>,
    /// Primary and backup are swapped relative to the configuration.
    pub reversed: bool,
    /// Dead letters in the store.
    pub dead_letters: u64,
    /// Replay attempts retried since start.
    pub replay_retries_total: u64,
    /// Where the replayer is blocked (a repair dry run), when halted.
    pub corruption: Option<RepairReport>,
    /// Divergence counters kept across restarts.
    pub divergence: crate::counters::Persisted,
    /// Documents waiting to be queued for reconciliation.
    pub pending_reconciles: u64,
}

impl TaskSnapshot {
    fn replayer(&self) -> Option<&ConsumerStats> {
        self.queue.consumers.iter().find(|c| c.name == REPLAYER)
    }

    /// Records appended and not yet replayed (or dead-lettered), plus the
    /// documents waiting to be reconciled: the backup may differ on those
    /// too, so the task is not in sync while there are any.
    pub fn lag_records(&self) -> u64 {
        self.replayer()
            .map_or(0, |c| c.lag_records)
            .saturating_add(self.pending_reconciles)
    }

    /// Offset of the next record to replay.
    pub fn committed_offset(&self) -> u64 {
        match self.replayer() {
            Some(c) => c.acked_offset.map_or(0, |acked| acked + 1),
            None => self.queue.first_offset,
        }
    }

    fn blocked(&self) -> bool {
        self.halted.is_some() || self.replayer().is_some_and(|c| c.halted.is_some())
    }
}

/// Free and total bytes of the queue volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes available to the gateway.
    pub free_bytes: u64,
    /// Size of the volume.
    pub total_bytes: u64,
}

/// State of the replay consumer, as the contract names it.
pub fn consumer_state(task: &TaskSnapshot) -> pb::ConsumerState {
    if task.blocked() {
        pb::ConsumerState::BlockedCorrupt
    } else if task.paused {
        pb::ConsumerState::Paused
    } else if task.last_error.is_some() && task.lag_records() > 0 {
        pb::ConsumerState::BackingOff
    } else {
        pb::ConsumerState::Running
    }
}

/// Direction of a task given whether the roles are swapped.
pub fn direction(reversed: bool) -> pb::ReplicationDirection {
    if reversed {
        pb::ReplicationDirection::Reversed
    } else {
        pb::ReplicationDirection::Forward
    }
}

/// Runtime status of the task for a heartbeat.
///
/// Not tracked by this gateway and reported as zero/false: write holds
/// (`hold_id`, `held_writes`, `in_flight_writes`), `primary_reachable`,
/// limiter totals and shadow reads. `backup_reachable` is true unless the
/// last replay attempt failed.
pub fn task_status(task: &TaskSnapshot) -> pb::TaskRuntimeStatus {
    pb::TaskRuntimeStatus {
        task_id: task.task_id.clone(),
        mode: if task.paused {
            pb::TaskMode::RecordOnly
        } else {
            pb::TaskMode::Replay
        } as i32,
        direction: direction(task.reversed) as i32,
        lag_records: task.lag_records(),
        consumer_state: consumer_state(task) as i32,
        backup_reachable: task.last_error.is_none(),
        ..Default::default()
    }
}

/// Client traffic as a heartbeat reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainView {
    /// A drain was requested.
    pub draining: bool,
    /// Nothing left to wait for (no requests in flight, quiet, replayed).
    pub drained: bool,
    /// Client requests being served.
    pub in_flight_requests: u32,
    /// Time since the last client request.
    pub idle_for: Option<std::time::Duration>,
}

/// A heartbeat.
pub fn heartbeat(
    now: SystemTime,
    applied_version: u64,
    disk: Option<DiskUsage>,
    task: Option<&TaskSnapshot>,
    drain: DrainView,
) -> pb::AgentStreamRequest {
    let drain_state = match (drain.draining, drain.drained) {
        (false, _) => pb::DrainState::Serving,
        (true, false) => pb::DrainState::Draining,
        (true, true) => pb::DrainState::Drained,
    };
    request(pb::agent_stream_request::Payload::Heartbeat(
        pb::AgentHeartbeat {
            sent_at: Some(timestamp(now)),
            applied_version,
            // /ready answers 503 while draining.
            ready: !drain.draining,
            drain_state: drain_state as i32,
            in_flight_requests: drain.in_flight_requests,
            idle_for: drain
                .idle_for
                .and_then(|d| prost_types::Duration::try_from(d).ok()),
            disk_free_bytes: disk.map_or(0, |d| d.free_bytes),
            disk_total_bytes: disk.map_or(0, |d| d.total_bytes),
            tasks: task.map(task_status).into_iter().collect(),
        },
    ))
}

/// Append and replay rates.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    /// Records appended per second.
    pub append_records_per_second: f64,
    /// Records replayed per second.
    pub replay_records_per_second: f64,
}

/// Rates computed from successive samples of the head and committed offsets
/// (over the report interval, rather than the contract's ~10 s average).
#[derive(Debug, Default)]
pub struct RateTracker {
    last: Option<(Instant, u64, u64)>,
    rates: Rates,
}

impl RateTracker {
    /// Takes a sample; returns the rates since the previous one (zero for
    /// the first).
    pub fn update(&mut self, at: Instant, head: u64, committed: u64) -> Rates {
        if let Some((then, last_head, last_committed)) = self.last {
            let secs = at.saturating_duration_since(then).as_secs_f64();
            if secs < 0.001 {
                return self.rates;
            }
            self.rates = Rates {
                append_records_per_second: head.saturating_sub(last_head) as f64 / secs,
                replay_records_per_second: committed.saturating_sub(last_committed) as f64 / secs,
            };
        }
        self.last = Some((at, head, committed));
        self.rates
    }
}

/// The contract's `QueueStats` of the task's queue.
///
/// Mapping from the gateway's queue: `depth_records` counts every record
/// still on disk (`head - first`), `oldest_record_age` is the age of the
/// oldest record not yet acknowledged by every consumer, `lag_bytes`,
/// `replay_bytes_per_second`, `dead_letters_total` and
/// `writes_refused_total` are not tracked (zero).
pub fn queue_stats(task: &TaskSnapshot, rates: Rates, now: SystemTime) -> pb::QueueStats {
    let q = &task.queue;
    let replayer = task.replayer();
    pb::QueueStats {
        depth_records: q.next_offset.saturating_sub(q.first_offset),
        depth_bytes: q.bytes,
        oldest_record_age: Some(duration(q.oldest_unacked_age.unwrap_or_default())),
        lag_records: task.lag_records(),
        lag_bytes: 0,
        lag: Some(duration(replayer.map(|c| c.lag).unwrap_or_default())),
        append_records_per_second: rates.append_records_per_second,
        replay_records_per_second: rates.replay_records_per_second,
        replay_bytes_per_second: 0.0,
        dead_letters: task.dead_letters,
        dead_letters_total: 0,
        writes_refused_total: 0,
        replay_retries_total: task.replay_retries_total,
        first_offset: q.first_offset,
        head_offset: q.next_offset,
        committed_offset: task.committed_offset(),
        segments: u32::try_from(q.segments).unwrap_or(u32::MAX),
        consumer_state: consumer_state(task) as i32,
        corruption: if task.blocked() {
            Some(corruption(task))
        } else {
            None
        },
        collected_at: Some(timestamp(now)),
        verifier_divergences: task.divergence.verifier_divergences,
        unreconcilable_writes: task.divergence.unreconcilable_writes,
        last_divergence_at: task.divergence.last_divergence_at().map(timestamp),
        last_unreconcilable_at: task.divergence.last_unreconcilable_at().map(timestamp),
        pending_reconciles: task.pending_reconciles,
    }
}

fn corruption(task: &TaskSnapshot) -> pb::QueueCorruption {
    match &task.corruption {
        Some(report) => pb::QueueCorruption {
            offset: report.first_lost_offset,
            segment: segment_name(report),
            segment_position: report.position,
            next_valid_offset: Some(report.resume_offset),
            detail: report.detail.clone(),
            detected_at: None,
        },
        None => pb::QueueCorruption {
            offset: task.committed_offset(),
            detail: task
                .halted
                .clone()
                .or_else(|| task.replayer().and_then(|c| c.halted.clone()))
                .unwrap_or_default(),
            ..Default::default()
        },
    }
}

fn segment_name(report: &RepairReport) -> String {
    report
        .segment
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| report.segment.display().to_string())
}

/// A `QueueStatsReport` (empty without replication).
pub fn queue_stats_report(
    task: Option<&TaskSnapshot>,
    rates: Rates,
    now: SystemTime,
) -> pb::AgentStreamRequest {
    request(pb::agent_stream_request::Payload::QueueStats(
        pb::QueueStatsReport {
            tasks: task
                .map(|task| pb::TaskQueueReport {
                    task_id: task.task_id.clone(),
                    stats: Some(queue_stats(task, rates, now)),
                })
                .into_iter()
                .collect(),
        },
    ))
}

// ---------------------------------------------------------------------------
// Desired state.
// ---------------------------------------------------------------------------

/// The part of a `DesiredState` this gateway applies, for its one task.
/// `None` fields leave the gateway as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Version of the desired state this comes from.
    pub version: u64,
    /// Task assigned to this gateway.
    pub task_id: Option<String>,
    /// Replay paused (task mode RECORD_ONLY or PASSTHROUGH) or running
    /// (REPLAY).
    pub paused: Option<bool>,
    /// Primary and backup swapped relative to the configuration (direction
    /// REVERSED).
    pub reversed: Option<bool>,
    /// Bound of the write hold of a role swap, from the task's `WriteHold`.
    pub max_hold_ms: Option<u64>,
    /// `authorization` for the gateway's own requests to the primary, from
    /// the cluster credentials of the assignment (`Some(None)`: the cluster
    /// needs none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_auth: Option<Option<AuthHeader>>,
    /// The same for the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_auth: Option<Option<AuthHeader>>,
    /// Per-node limits of the primary's cluster, from the assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_limits: Option<AssignedLimits>,
    /// The same for the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_limits: Option<AssignedLimits>,
}

/// A cluster's per-node limits as the control plane assigns them (0 means
/// unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedLimits {
    /// Requests per second per node.
    pub max_qps_per_node: u32,
    /// Request body bytes per second per node.
    pub max_bytes_per_sec_per_node: u64,
    /// Requests in flight per node.
    pub max_connections_per_node: u32,
    /// Answer 429 at once instead of waiting.
    pub reject: bool,
    /// Longest wait for capacity, in milliseconds (0: the default).
    pub max_wait_ms: u64,
}

impl AssignedLimits {
    /// From the contract's `Limits`.
    pub fn from_proto(limits: &pb::Limits) -> AssignedLimits {
        AssignedLimits {
            max_qps_per_node: limits.max_qps_per_node,
            max_bytes_per_sec_per_node: limits.max_bytes_per_sec_per_node,
            max_connections_per_node: limits.max_connections_per_node,
            reject: limits.over_limit == pb::OverLimitPolicy::Reject as i32,
            max_wait_ms: limits
                .max_wait
                .and_then(std_duration)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// As the gateway's limits configuration.
    pub fn to_config(self) -> crate::limits::LimitsConfig {
        let mut config = crate::limits::LimitsConfig {
            max_qps_per_node: (self.max_qps_per_node > 0)
                .then_some(f64::from(self.max_qps_per_node)),
            max_bytes_per_sec_per_node: (self.max_bytes_per_sec_per_node > 0)
                .then_some(self.max_bytes_per_sec_per_node),
            max_connections_per_node: (self.max_connections_per_node > 0)
                .then_some(self.max_connections_per_node as usize),
            ..Default::default()
        };
        if self.reject {
            config.over_limit = crate::limits::OverLimitPolicy::Reject;
        }
        if self.max_wait_ms > 0 {
            config.max_wait_ms = self.max_wait_ms;
        }
        config
    }
}

/// An `authorization` header value built from cluster credentials; never
/// printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuthHeader(pub String);

impl std::fmt::Debug for AuthHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthHeader(<redacted>)")
    }
}

/// The `authorization` value for `credentials`: `None` when the message
/// carries no method, `Some(None)` for a cluster without authentication.
pub fn auth_header(credentials: Option<&pb::Credentials>) -> Option<Option<AuthHeader>> {
    use base64::Engine;
    let credentials = credentials?;
    match pb::AuthMethod::try_from(credentials.method).ok()? {
        pb::AuthMethod::Unspecified => None,
        pb::AuthMethod::None => Some(None),
        pb::AuthMethod::Basic => Some(Some(AuthHeader(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", credentials.username, credentials.password))
        )))),
        pb::AuthMethod::ApiKey => Some(Some(AuthHeader(format!("ApiKey {}", credentials.api_key)))),
    }
}

impl Target {
    /// Bound of the write hold of a role swap, when the control plane set
    /// one.
    pub fn max_hold(&self) -> Option<Duration> {
        self.max_hold_ms.map(Duration::from_millis)
    }
}

/// A desired state reduced to a [`Target`], with what was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpretation {
    /// What will be applied.
    pub target: Target,
    /// Fields this gateway cannot apply (for debug logs; never secrets).
    pub ignored: Vec<String>,
}

/// Reduces `state` to what this gateway applies. The task kept is the one
/// with id `current_task` if present, else the first one served by the
/// default listener; other tasks are ignored.
pub fn interpret_desired_state(
    state: &pb::DesiredState,
    current_task: Option<&str>,
) -> Interpretation {
    let mut ignored = Vec::new();
    let chosen = current_task
        .and_then(|current| state.tasks.iter().position(|t| t.task_id == current))
        .or_else(|| {
            state
                .tasks
                .iter()
                .position(|t| t.listener.is_empty() || t.listener == "default")
        });
    for (i, task) in state.tasks.iter().enumerate() {
        if Some(i) != chosen {
            ignored.push(format!(
                "task {:?} (listener {:?}): this gateway serves a single task on its default listener",
                task.task_id, task.listener
            ));
        }
    }
    let mut target = Target {
        version: state.version,
        ..Target::default()
    };
    match chosen.and_then(|i| state.tasks.get(i)) {
        None if state.tasks.is_empty() => ignored.push(
            "no task assigned: the gateway keeps recording and replaying as configured".into(),
        ),
        None => {}
        Some(task) => {
            if !task.task_id.is_empty() {
                target.task_id = Some(task.task_id.clone());
            }
            target.paused = match pb::TaskMode::try_from(task.mode) {
                Ok(pb::TaskMode::RecordOnly) => Some(true),
                Ok(pb::TaskMode::Replay) => Some(false),
                Ok(pb::TaskMode::Passthrough) => {
                    ignored.push(
                        "mode PASSTHROUGH: replay is paused but accepted writes are still \
                         recorded (recording cannot be turned off at run time)"
                            .into(),
                    );
                    Some(true)
                }
                _ => None,
            };
            target.reversed = match pb::ReplicationDirection::try_from(task.direction) {
                Ok(pb::ReplicationDirection::Forward) => Some(false),
                Ok(pb::ReplicationDirection::Reversed) => Some(true),
                _ => None,
            };
            if let Some(hold) = &task.write_hold {
                target.max_hold_ms = hold
                    .timeout
                    .and_then(std_duration)
                    .filter(|d| !d.is_zero())
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                ignored.push(format!(
                    "write hold {:?}: only bounds the hold of a role swap; writes are not held on their own",
                    hold.hold_id
                ));
            }
            if task.primary.is_some() || task.backup.is_some() {
                target.primary_auth =
                    auth_header(task.primary.as_ref().and_then(|p| p.credentials.as_ref()));
                target.backup_auth =
                    auth_header(task.backup.as_ref().and_then(|b| b.credentials.as_ref()));
                target.primary_limits = task
                    .primary
                    .as_ref()
                    .and_then(|p| p.limits.as_ref())
                    .map(AssignedLimits::from_proto);
                target.backup_limits = task
                    .backup
                    .as_ref()
                    .and_then(|b| b.limits.as_ref())
                    .map(AssignedLimits::from_proto);
                ignored.push(
                    "primary/backup endpoints, TLS and node discovery: upstreams come from the \
                     gateway's configuration (credentials and limits apply where it sets none)"
                        .into(),
                );
            }
            let unsupported = [
                ("indices", task.indices.is_some()),
                ("queue_policy", task.queue_policy.is_some()),
                ("replay", task.replay.is_some()),
                ("shadow_reads", task.shadow_reads.is_some()),
                ("type_rewrite", task.type_rewrite.is_some()),
            ];
            for (field, set) in unsupported {
                if set {
                    ignored.push(format!(
                        "task {field}: not applied at run time (gateway configuration rules)"
                    ));
                }
            }
        }
    }
    if !state.deletable_queue_task_ids.is_empty() {
        ignored.push("deletable_queue_task_ids: the agent never deletes queues".into());
    }
    Interpretation { target, ignored }
}

/// The gateway's state that a [`Target`] is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actual {
    /// The gateway replicates (has a backup); without it nothing applies.
    pub replication: bool,
    /// The replayer is paused.
    pub paused: bool,
    /// The roles are swapped.
    pub reversed: bool,
}

/// One step towards a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Pause the replayer.
    Pause,
    /// Resume the replayer.
    Resume,
    /// Swap primary and backup (`Replication::cutover`), holding writes at
    /// most `max_hold` (the gateway's default when `None`).
    SwapRoles {
        /// Bound of the write hold.
        max_hold: Option<Duration>,
    },
}

/// The actions that take the gateway from `actual` to `target`, in order.
/// A role swap drains the queue, so a paused replayer is resumed first (and
/// paused again afterwards when the target wants it paused).
pub fn plan(target: &Target, actual: Actual) -> Vec<Action> {
    if !actual.replication {
        return Vec::new();
    }
    let want_paused = target.paused.unwrap_or(actual.paused);
    let swap = target.reversed.is_some_and(|r| r != actual.reversed);
    let mut actions = Vec::new();
    let mut paused = actual.paused;
    if swap {
        if paused {
            actions.push(Action::Resume);
            paused = false;
        }
        actions.push(Action::SwapRoles {
            max_hold: target.max_hold(),
        });
    }
    if want_paused != paused {
        actions.push(if want_paused {
            Action::Pause
        } else {
            Action::Resume
        });
    }
    actions
}

// ---------------------------------------------------------------------------
// Commands.
// ---------------------------------------------------------------------------

/// A command that passed [`check_command`].
#[derive(Debug, Clone, PartialEq)]
pub enum CommandKind {
    /// Retry dead letters.
    Retry(pb::RetryDeadLettersCommand),
    /// Skip dead letters.
    Skip(pb::SkipDeadLettersCommand),
    /// Fetch dead letters with bodies.
    Fetch(pb::FetchDeadLettersCommand),
    /// Repair the queue.
    Repair(pb::RepairQueueCommand),
    /// Read queue records.
    Peek(pb::PeekRecordsCommand),
    /// Reconcile documents from the primary.
    Reconcile(pb::ReconcileDocumentsCommand),
}

/// Checks what can be checked before executing `command`: expiry, that the
/// gateway replicates, that it supports the command and serves its task.
/// `Err` is the `CommandResult` to answer at once.
pub fn check_command(
    command: &pb::GatewayCommand,
    now: SystemTime,
    task_id: &str,
    replication: bool,
) -> Result<CommandKind, Box<pb::CommandResult>> {
    use pb::gateway_command::Command;
    let id = command.command_id.as_str();
    let expired = command
        .expires_at
        .and_then(|expires| SystemTime::try_from(expires).ok())
        .is_some_and(|expires| expires < now);
    if expired {
        return Err(rejected(id, "EXPIRED", "the command expired before it ran", now).into());
    }
    if !replication {
        return Err(rejected(
            id,
            "REPLICATION_NOT_CONFIGURED",
            "this gateway has no backup cluster, hence no queue nor dead letters",
            now,
        )
        .into());
    }
    let (command_task, kind) = match &command.command {
        None => {
            return Err(rejected(
                id,
                "UNSUPPORTED_COMMAND",
                "unknown command kind (newer control plane?)",
                now,
            )
            .into());
        }
        Some(Command::PeekRecords(c)) => (&c.task_id, CommandKind::Peek(c.clone())),
        Some(Command::RetryDeadLetters(c)) => (&c.task_id, CommandKind::Retry(c.clone())),
        Some(Command::SkipDeadLetters(c)) => (&c.task_id, CommandKind::Skip(c.clone())),
        Some(Command::FetchDeadLetters(c)) => (&c.task_id, CommandKind::Fetch(c.clone())),
        Some(Command::RepairQueue(c)) => (&c.task_id, CommandKind::Repair(c.clone())),
        Some(Command::ReconcileDocuments(c)) => (&c.task_id, CommandKind::Reconcile(c.clone())),
    };
    if !command_task.is_empty() && command_task != task_id {
        return Err(rejected(
            id,
            "UNKNOWN_TASK",
            &format!("this gateway serves task {task_id:?}, not {command_task:?}"),
            now,
        )
        .into());
    }
    Ok(kind)
}

fn error_info(reason: &str, message: &str, now: SystemTime) -> pb::ErrorInfo {
    pb::ErrorInfo {
        reason: reason.to_string(),
        message: message.to_string(),
        occurred_at: Some(timestamp(now)),
        metadata: HashMap::new(),
    }
}

/// A SUCCEEDED result.
pub fn succeeded(
    command_id: &str,
    detail: Option<pb::command_result::Detail>,
    now: SystemTime,
) -> pb::CommandResult {
    pb::CommandResult {
        command_id: command_id.to_string(),
        outcome: pb::CommandOutcome::Succeeded as i32,
        error: None,
        completed_at: Some(timestamp(now)),
        detail,
    }
}

/// A REJECTED result (not executed).
pub fn rejected(
    command_id: &str,
    reason: &str,
    message: &str,
    now: SystemTime,
) -> pb::CommandResult {
    pb::CommandResult {
        command_id: command_id.to_string(),
        outcome: pb::CommandOutcome::Rejected as i32,
        error: Some(error_info(reason, message, now)),
        completed_at: Some(timestamp(now)),
        detail: None,
    }
}

/// A FAILED result (executed, and it failed).
pub fn failed(command_id: &str, reason: &str, message: &str, now: SystemTime) -> pb::CommandResult {
    pb::CommandResult {
        command_id: command_id.to_string(),
        outcome: pb::CommandOutcome::Failed as i32,
        error: Some(error_info(reason, message, now)),
        completed_at: Some(timestamp(now)),
        detail: None,
    }
}

/// The message wrapping a command result.
pub fn command_result_message(result: pb::CommandResult) -> pb::AgentStreamRequest {
    request(pb::agent_stream_request::Payload::CommandResult(result))
}

/// Splits dead-letter ids into the gateway's numeric ids and the ones that
/// cannot be its ids (answered as unknown). Duplicates are dropped.
pub fn parse_dead_letter_ids(ids: &[String]) -> (Vec<u64>, Vec<String>) {
    let mut parsed = Vec::new();
    let mut unknown = Vec::new();
    for id in ids {
        match id.trim().parse::<u64>() {
            Ok(n) if !parsed.contains(&n) => parsed.push(n),
            Ok(_) => {}
            Err(_) => {
                if !unknown.contains(id) {
                    unknown.push(id.clone());
                }
            }
        }
    }
    (parsed, unknown)
}

/// Whether dead-letter bodies are returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bodies {
    /// Redacted: only sizes.
    Redacted,
    /// Included, truncated to this many bytes.
    Included(usize),
}

impl Bodies {
    /// Bodies for a fetch asking for at most `max_body_bytes` (0 = 64 KiB,
    /// capped to 1 MiB).
    pub fn for_fetch(max_body_bytes: u32) -> Bodies {
        let max = match max_body_bytes as usize {
            0 => DEFAULT_MAX_BODY_BYTES,
            n => n.min(MAX_BODY_BYTES),
        };
        Bodies::Included(max)
    }
}

/// Context of a dead letter in the contract.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterContext<'a> {
    /// Task id.
    pub task_id: &'a str,
    /// Gateway id.
    pub gateway_id: &'a str,
    /// Comment of the command that acted on it.
    pub comment: &'a str,
}

/// The contract's view of a dead letter.
pub fn dead_letter(
    entry: &DeadLetter,
    ctx: DeadLetterContext<'_>,
    state: pb::DeadLetterState,
    bodies: Bodies,
) -> pb::DeadLetter {
    let at = Some(timestamp(millis_to_time(entry.failed_at_ms)));
    pb::DeadLetter {
        id: entry.id.to_string(),
        task_id: ctx.task_id.to_string(),
        gateway_id: ctx.gateway_id.to_string(),
        record: Some(queue_record(entry, bodies)),
        failure: Some(pb::DeadLetterFailure {
            http_status: u32::from(entry.status),
            error_type: String::new(),
            error_reason: entry.reason.clone(),
            attempts: entry.retries.saturating_add(1),
            cluster_id: String::new(),
        }),
        state: state as i32,
        created_at: at,
        updated_at: at,
        comment: ctx.comment.to_string(),
    }
}

fn op_kind(kind: &str) -> pb::OpKind {
    match kind {
        "index" => pb::OpKind::DocumentIndex,
        "delete" => pb::OpKind::DocumentDelete,
        "read_repair" => pb::OpKind::DocumentUpdate,
        "index_meta" => pb::OpKind::IndexMetadata,
        "query_scoped" => pb::OpKind::QueryScoped,
        _ => pb::OpKind::Unspecified,
    }
}

fn doc_path(
    index: &str,
    doc_type: Option<&str>,
    id: &str,
    routing: Option<&str>,
    update: bool,
) -> String {
    let (index, id) = (encode_path_segment(index), encode_path_segment(id));
    let mut path = match (doc_type, update) {
        (Some(t), false) => format!("/{index}/{}/{id}", encode_path_segment(t)),
        (Some(t), true) => format!("/{index}/{}/{id}/_update", encode_path_segment(t)),
        (None, false) => format!("/{index}/_doc/{id}"),
        (None, true) => format!("/{index}/_update/{id}"),
    };
    if let Some(routing) = routing {
        path.push_str("?routing=");
        path.push_str(&encode_path_segment(routing));
    }
    path
}

/// The queue record behind a dead letter, body per `bodies`.
pub fn queue_record(entry: &DeadLetter, bodies: Bodies) -> pb::QueueRecord {
    let mut record = match entry.op() {
        Ok(op) => op_record(&op, bodies),
        Err(_) => pb::QueueRecord {
            index: entry.index.clone().unwrap_or_default(),
            doc_id: entry.doc_id.clone().unwrap_or_default(),
            version: entry.version,
            ..Default::default()
        },
    };
    record.offset = entry.queue_offset;
    record.op_kind = op_kind(&entry.kind) as i32;
    record
}

/// The contract's view of a queue record (offset, enqueue time and size
/// left to the caller).
pub fn op_record(op: &ReplicationOp, bodies: Bodies) -> pb::QueueRecord {
    let mut record = pb::QueueRecord {
        op_kind: op_kind(op.kind_name()) as i32,
        index: op.index().map(|i| i.into_owned()).unwrap_or_default(),
        doc_id: op.id().unwrap_or_default().to_string(),
        version: op.version(),
        version_fenced: op.version_fenced(),
        ..Default::default()
    };
    let body = match op {
        ReplicationOp::Index {
            index,
            doc_type,
            id,
            routing,
            seq_no,
            primary_term,
            source,
            ..
        } => {
            record.mapping_type = doc_type.clone().unwrap_or_default();
            record.routing = routing.clone().unwrap_or_default();
            record.seq_no = *seq_no;
            record.primary_term = *primary_term;
            record.http_method = "PUT".into();
            record.path = doc_path(index, doc_type.as_deref(), id, routing.as_deref(), false);
            source.clone()
        }
        ReplicationOp::Delete {
            index,
            doc_type,
            id,
            routing,
            ..
        }
        | ReplicationOp::ReadRepair {
            index,
            doc_type,
            id,
            routing,
            ..
        } => {
            let update = matches!(op, ReplicationOp::ReadRepair { .. });
            record.mapping_type = doc_type.clone().unwrap_or_default();
            record.routing = routing.clone().unwrap_or_default();
            record.http_method = if update { "POST" } else { "DELETE" }.into();
            record.path = doc_path(index, doc_type.as_deref(), id, routing.as_deref(), update);
            bytes::Bytes::new()
        }
        ReplicationOp::IndexMeta { method, path, body }
        | ReplicationOp::QueryScoped { method, path, body } => {
            record.http_method = method.to_string();
            record.path = path.clone();
            body.clone()
        }
    };
    record.body_size_bytes = u32::try_from(body.len()).unwrap_or(u32::MAX);
    match bodies {
        Bodies::Redacted => record.body_redacted = !body.is_empty(),
        Bodies::Included(max) => {
            record.body_truncated = body.len() > max;
            record.body = body.slice(..body.len().min(max)).to_vec();
        }
    }
    record
}

/// The contract's view of a peek: records with their op decoded (an
/// undecodable record keeps only its offset, time and size; the replayer
/// halts on it and RepairQueue deals with it).
pub fn peek_result(peeked: &Peeked, bodies: Bodies) -> pb::PeekRecordsCommandResult {
    let records = peeked
        .records
        .iter()
        .map(|r| {
            let mut record = match ReplicationOp::decode(&r.payload) {
                Ok(op) => op_record(&op, bodies),
                Err(_) => pb::QueueRecord::default(),
            };
            record.offset = r.offset;
            record.enqueued_at = Some(timestamp(millis_to_time(r.enqueued_at_ms)));
            record.size_bytes = u32::try_from(r.payload.len()).unwrap_or(u32::MAX);
            record
        })
        .collect::<Vec<_>>();
    pb::PeekRecordsCommandResult {
        next_offset: peeked.records.last().map_or(peeked.from, |r| r.offset + 1),
        records,
        first_offset: peeked.first_offset,
        head_offset: peeked.head_offset,
        committed_offset: peeked.next_to_replay,
    }
}

/// Dead letters new or changed (retried) since `reported` (id → retries)
/// was last updated, at most [`DEAD_LETTER_REPORT_MAX`].
pub fn dead_letter_changes(
    reported: &HashMap<u64, u32>,
    current: &[DeadLetter],
) -> Vec<DeadLetter> {
    current
        .iter()
        .filter(|e| reported.get(&e.id) != Some(&e.retries))
        .take(DEAD_LETTER_REPORT_MAX)
        .cloned()
        .collect()
}

/// A `DeadLetterReport` (bodies never included).
pub fn dead_letter_report(
    entries: &[DeadLetter],
    task_id: &str,
    gateway_id: &str,
) -> pb::AgentStreamRequest {
    let ctx = DeadLetterContext {
        task_id,
        gateway_id,
        comment: "",
    };
    request(pb::agent_stream_request::Payload::DeadLetters(
        pb::DeadLetterReport {
            dead_letters: entries
                .iter()
                .map(|e| dead_letter(e, ctx, pb::DeadLetterState::Pending, Bodies::Redacted))
                .collect(),
        },
    ))
}

/// The contract's view of a queue repair.
pub fn repair_result(report: &RepairReport, now: SystemTime) -> pb::QueueRepairResult {
    pb::QueueRepairResult {
        dry_run: report.dry_run,
        first_lost_offset: report.first_lost_offset,
        resume_offset: report.resume_offset,
        records_lost: report.records_lost,
        bytes_lost: report.bytes_skipped,
        segments: vec![segment_name(report)],
        repaired_at: (!report.dry_run).then(|| timestamp(now)),
    }
}

// ---------------------------------------------------------------------------
// Command de-duplication and reconnect backoff.
// ---------------------------------------------------------------------------

/// Where a command id stands.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandSeen {
    /// Never seen: execute it.
    New,
    /// Being executed; its result will be sent when done.
    Running,
    /// Done: send this result again.
    Done(Box<pb::CommandResult>),
}

/// Recent command ids and results, so a command delivered again (after a
/// reconnect) is executed at most once and answered with the same result.
/// Bounded: the oldest ids are forgotten first. Kept in memory only.
#[derive(Debug)]
pub struct CommandLog {
    capacity: usize,
    order: VecDeque<String>,
    entries: HashMap<String, Option<pb::CommandResult>>,
}

impl CommandLog {
    /// A log remembering `capacity` commands.
    pub fn new(capacity: usize) -> CommandLog {
        CommandLog {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            entries: HashMap::new(),
        }
    }

    /// Looks `id` up; a new id is recorded as running.
    pub fn begin(&mut self, id: &str) -> CommandSeen {
        match self.entries.get(id) {
            Some(Some(result)) => return CommandSeen::Done(Box::new(result.clone())),
            Some(None) => return CommandSeen::Running,
            None => {}
        }
        while self.order.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(id.to_string());
        self.entries.insert(id.to_string(), None);
        CommandSeen::New
    }

    /// Records the result of `id`.
    pub fn finish(&mut self, result: &pb::CommandResult) {
        if let Some(slot) = self.entries.get_mut(&result.command_id) {
            *slot = Some(result.clone());
        }
    }
}

/// Exponential backoff with jitter: `initial * 2^n` capped at `max`, each
/// delay drawn in `[delay/2, delay]`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `initial` (at most `max`).
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial: initial.min(max),
            max,
            attempt: 0,
        }
    }

    /// The next delay; `jitter` in `[0, 1]` picks where in `[d/2, d]`.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(31));
        let base = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// Back to the initial delay (after a successful connection).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::dead_letters::DeadLetterStore;

    fn snapshot() -> TaskSnapshot {
        TaskSnapshot {
            task_id: "t-1".into(),
            queue: QueueStats {
                records: 30,
                bytes: 4096,
                oldest_unacked_age: Some(Duration::from_secs(3)),
                first_offset: 10,
                next_offset: 50,
                segments: 2,
                consumers: vec![ConsumerStats {
                    name: REPLAYER.into(),
                    acked_offset: Some(19),
                    lag_records: 30,
                    lag: Duration::from_millis(2500),
                    halted: None,
                    records_lost: 0,
                }],
            },
            paused: false,
            halted: None,
            last_error: None,
            reversed: false,
            divergence: Default::default(),
            dead_letters: 2,
            replay_retries_total: 7,
            corruption: None,
            pending_reconciles: 0,
        }
    }

    #[test]
    fn queue_stats_map_the_gateway_queue() {
        let now = SystemTime::now();
        let rates = Rates {
            append_records_per_second: 4.0,
            replay_records_per_second: 2.0,
        };
        let stats = queue_stats(&snapshot(), rates, now);
        assert_eq!(stats.depth_records, 40);
        assert_eq!(stats.depth_bytes, 4096);
        assert_eq!(stats.lag_records, 30);
        assert_eq!(stats.first_offset, 10);
        assert_eq!(stats.head_offset, 50);
        assert_eq!(stats.committed_offset, 20);
        assert_eq!(
            stats.head_offset - stats.committed_offset,
            stats.lag_records
        );
        assert_eq!(stats.segments, 2);
        assert_eq!(stats.dead_letters, 2);
        assert_eq!(stats.replay_retries_total, 7);
        assert_eq!(
            stats.lag,
            Some(prost_types::Duration {
                seconds: 2,
                nanos: 500_000_000
            })
        );
        assert_eq!(stats.oldest_record_age.unwrap().seconds, 3);
        assert_eq!(stats.append_records_per_second, 4.0);
        // Documents waiting to be reconciled are lag too: the task is not
        // in sync until they are replayed.
        let waiting = TaskSnapshot {
            pending_reconciles: 3,
            ..snapshot()
        };
        let stats = queue_stats(&waiting, rates, now);
        assert_eq!((stats.lag_records, stats.pending_reconciles), (33, 3));
        assert_eq!(
            stats.head_offset - stats.committed_offset + stats.pending_reconciles,
            stats.lag_records
        );
        assert_eq!(task_status(&waiting).lag_records, 33);
        assert_eq!(stats.consumer_state, pb::ConsumerState::Running as i32);
        assert_eq!(stats.corruption, None);
        assert_eq!(stats.collected_at, Some(timestamp(now)));
    }

    #[test]
    fn consumer_state_follows_pause_halt_and_errors() {
        let mut task = snapshot();
        assert_eq!(consumer_state(&task), pb::ConsumerState::Running);
        task.last_error = Some("backup 503".into());
        assert_eq!(consumer_state(&task), pb::ConsumerState::BackingOff);
        task.paused = true;
        assert_eq!(consumer_state(&task), pb::ConsumerState::Paused);
        task.halted = Some("CRC mismatch".into());
        assert_eq!(consumer_state(&task), pb::ConsumerState::BlockedCorrupt);
        let stats = queue_stats(&task, Rates::default(), SystemTime::now());
        let corruption = stats.corruption.unwrap();
        assert_eq!(corruption.offset, 20);
        assert_eq!(corruption.detail, "CRC mismatch");

        task.corruption = Some(RepairReport {
            consumer: REPLAYER.into(),
            segment: PathBuf::from("/data/queue/00000000000000000003.seg"),
            position: 128,
            detail: "crc".into(),
            first_lost_offset: 20,
            last_lost_offset: 21,
            records_lost: 2,
            bytes_skipped: 77,
            resume_offset: 22,
            dry_run: true,
        });
        let corruption = queue_stats(&task, Rates::default(), SystemTime::now())
            .corruption
            .unwrap();
        assert_eq!(corruption.segment, "00000000000000000003.seg");
        assert_eq!(corruption.segment_position, 128);
        assert_eq!(corruption.next_valid_offset, Some(22));
    }

    #[test]
    fn heartbeat_reports_draining_then_drained_and_not_ready() {
        let draining = DrainView {
            draining: true,
            drained: false,
            in_flight_requests: 3,
            idle_for: Some(Duration::from_millis(1500)),
        };
        let Some(pb::agent_stream_request::Payload::Heartbeat(hb)) =
            heartbeat(SystemTime::now(), 1, None, None, draining).payload
        else {
            panic!("not a heartbeat");
        };
        assert!(!hb.ready);
        assert_eq!(hb.drain_state, pb::DrainState::Draining as i32);
        assert_eq!(hb.in_flight_requests, 3);
        assert_eq!(hb.idle_for.unwrap().seconds, 1);
        let drained = DrainView {
            drained: true,
            in_flight_requests: 0,
            ..draining
        };
        let Some(pb::agent_stream_request::Payload::Heartbeat(hb)) =
            heartbeat(SystemTime::now(), 1, None, None, drained).payload
        else {
            panic!("not a heartbeat");
        };
        assert_eq!(hb.drain_state, pb::DrainState::Drained as i32);
    }

    #[test]
    fn heartbeat_carries_task_status_and_disk() {
        let mut task = snapshot();
        task.reversed = true;
        task.paused = true;
        let msg = heartbeat(
            SystemTime::now(),
            4,
            Some(DiskUsage {
                free_bytes: 10,
                total_bytes: 100,
            }),
            Some(&task),
            DrainView::default(),
        );
        let Some(pb::agent_stream_request::Payload::Heartbeat(hb)) = msg.payload else {
            panic!("not a heartbeat");
        };
        assert_eq!(hb.applied_version, 4);
        assert!(hb.ready);
        assert_eq!(hb.drain_state, pb::DrainState::Serving as i32);
        assert_eq!(hb.disk_free_bytes, 10);
        assert_eq!(hb.disk_total_bytes, 100);
        let status = &hb.tasks[0];
        assert_eq!(status.task_id, "t-1");
        assert_eq!(status.mode, pb::TaskMode::RecordOnly as i32);
        assert_eq!(status.direction, pb::ReplicationDirection::Reversed as i32);
        assert_eq!(status.consumer_state, pb::ConsumerState::Paused as i32);
        assert_eq!(status.lag_records, 30);
        assert!(status.backup_reachable);

        let msg = heartbeat(SystemTime::now(), 0, None, None, DrainView::default());
        let Some(pb::agent_stream_request::Payload::Heartbeat(hb)) = msg.payload else {
            panic!("not a heartbeat");
        };
        assert!(hb.tasks.is_empty());
    }

    #[test]
    fn rates_come_from_successive_samples() {
        let mut tracker = RateTracker::default();
        let t0 = Instant::now();
        assert_eq!(tracker.update(t0, 100, 50), Rates::default());
        let rates = tracker.update(t0 + Duration::from_secs(2), 120, 60);
        assert_eq!(rates.append_records_per_second, 10.0);
        assert_eq!(rates.replay_records_per_second, 5.0);
        // A sample at the same instant keeps the last rates.
        assert_eq!(tracker.update(t0 + Duration::from_secs(2), 500, 500), rates);
    }

    fn task(
        id: &str,
        listener: &str,
        mode: pb::TaskMode,
        dir: pb::ReplicationDirection,
    ) -> pb::TaskAssignment {
        pb::TaskAssignment {
            task_id: id.into(),
            listener: listener.into(),
            mode: mode as i32,
            direction: dir as i32,
            ..Default::default()
        }
    }

    #[test]
    fn desired_state_reduces_to_the_served_task() {
        let state = pb::DesiredState {
            version: 3,
            tasks: vec![
                task(
                    "other",
                    "search",
                    pb::TaskMode::Replay,
                    pb::ReplicationDirection::Forward,
                ),
                task(
                    "t-1",
                    "",
                    pb::TaskMode::RecordOnly,
                    pb::ReplicationDirection::Reversed,
                ),
            ],
            ..Default::default()
        };
        let interp = interpret_desired_state(&state, None);
        assert_eq!(
            interp.target,
            Target {
                version: 3,
                task_id: Some("t-1".into()),
                paused: Some(true),
                reversed: Some(true),
                max_hold_ms: None,
                ..Target::default()
            }
        );
        assert_eq!(interp.ignored.len(), 1, "{:?}", interp.ignored);
        assert!(interp.ignored[0].contains("other"));

        // The current task wins even on another listener.
        let interp = interpret_desired_state(&state, Some("other"));
        assert_eq!(interp.target.task_id.as_deref(), Some("other"));
        assert_eq!(interp.target.paused, Some(false));
        assert_eq!(interp.target.reversed, Some(false));
    }

    #[test]
    fn unsupported_fields_are_listed_without_secrets() {
        let mut t = task(
            "t-1",
            "default",
            pb::TaskMode::Replay,
            pb::ReplicationDirection::Forward,
        );
        t.backup = Some(pb::UpstreamAssignment {
            endpoints: vec!["http://new:9200".into()],
            credentials: Some(pb::Credentials {
                method: pb::AuthMethod::Basic as i32,
                username: "replayer".into(),
                password: "hunter2-secret".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        t.write_hold = Some(pb::WriteHold {
            hold_id: "h-1".into(),
            timeout: Some(prost_types::Duration {
                seconds: 7,
                nanos: 0,
            }),
            deadline: None,
        });
        t.queue_policy = Some(pb::QueuePolicy::default());
        let state = pb::DesiredState {
            version: 9,
            tasks: vec![t],
            drain: true,
            ..Default::default()
        };
        let interp = interpret_desired_state(&state, None);
        assert_eq!(interp.target.max_hold_ms, Some(7000));
        assert_eq!(interp.target.max_hold(), Some(Duration::from_secs(7)));
        let notes = interp.ignored.join("\n");
        assert!(notes.contains("primary/backup endpoints"), "{notes}");
        // The backup's credentials apply (and never show in Debug output).
        let auth = interp.target.backup_auth.clone().flatten().unwrap();
        assert_eq!(auth.0, "Basic cmVwbGF5ZXI6aHVudGVyMi1zZWNyZXQ=");
        assert!(!format!("{:?}", interp.target).contains("cmVwbGF5"));
        assert_eq!(
            interp.target.primary_auth, None,
            "no credentials sent for the primary"
        );
        assert!(notes.contains("queue_policy"), "{notes}");
        assert!(!notes.contains("drain"), "drain is applied: {notes}");
        assert!(notes.contains("h-1"), "{notes}");
        assert!(!notes.contains("hunter2"), "{notes}");
    }

    #[test]
    fn empty_desired_state_changes_nothing() {
        let state = pb::DesiredState {
            version: 2,
            ..Default::default()
        };
        let interp = interpret_desired_state(&state, Some("t-1"));
        assert_eq!(
            interp.target,
            Target {
                version: 2,
                ..Target::default()
            }
        );
        let actual = Actual {
            replication: true,
            paused: true,
            reversed: true,
        };
        assert!(plan(&interp.target, actual).is_empty());
    }

    #[test]
    fn passthrough_pauses_replay() {
        let state = pb::DesiredState {
            version: 2,
            tasks: vec![task(
                "t",
                "",
                pb::TaskMode::Passthrough,
                pb::ReplicationDirection::Unspecified,
            )],
            ..Default::default()
        };
        let interp = interpret_desired_state(&state, None);
        assert_eq!(interp.target.paused, Some(true));
        assert_eq!(interp.target.reversed, None);
        assert!(interp.ignored[0].contains("PASSTHROUGH"));
    }

    #[test]
    fn plan_pauses_resumes_and_swaps() {
        let actual = |paused, reversed| Actual {
            replication: true,
            paused,
            reversed,
        };
        let target = |paused, reversed| Target {
            version: 1,
            task_id: None,
            paused,
            reversed,
            max_hold_ms: Some(1500),
            ..Target::default()
        };
        assert_eq!(
            plan(&target(Some(true), Some(false)), actual(false, false)),
            vec![Action::Pause]
        );
        assert_eq!(
            plan(&target(Some(false), None), actual(true, false)),
            vec![Action::Resume]
        );
        assert!(plan(&target(Some(false), Some(false)), actual(false, false)).is_empty());
        let swap = Action::SwapRoles {
            max_hold: Some(Duration::from_millis(1500)),
        };
        assert_eq!(
            plan(&target(Some(false), Some(true)), actual(false, false)),
            vec![swap]
        );
        assert_eq!(
            plan(&target(None, Some(false)), actual(false, true)),
            vec![swap]
        );
        // A swap drains the queue: a paused replayer runs for it, then
        // pauses again if the target wants it paused.
        assert_eq!(
            plan(&target(Some(true), Some(true)), actual(true, false)),
            vec![Action::Resume, swap, Action::Pause]
        );
        assert_eq!(
            plan(&target(Some(false), Some(true)), actual(true, false)),
            vec![Action::Resume, swap]
        );
        // Nothing applies to a gateway without replication.
        let proxy = Actual {
            replication: false,
            paused: false,
            reversed: false,
        };
        assert!(plan(&target(Some(true), Some(true)), proxy).is_empty());
    }

    fn command(id: &str, command: pb::gateway_command::Command) -> pb::GatewayCommand {
        pb::GatewayCommand {
            command_id: id.into(),
            issued_at: None,
            expires_at: None,
            command: Some(command),
        }
    }

    fn reason(result: &pb::CommandResult) -> &str {
        result.error.as_ref().map_or("", |e| e.reason.as_str())
    }

    #[test]
    fn commands_are_checked_before_running() {
        use pb::gateway_command::Command;
        let now = SystemTime::now();
        let skip = Command::SkipDeadLetters(pb::SkipDeadLettersCommand {
            task_id: "t-1".into(),
            dead_letter_ids: vec!["1".into()],
            comment: String::new(),
        });
        assert!(matches!(
            check_command(&command("c1", skip.clone()), now, "t-1", true),
            Ok(CommandKind::Skip(_))
        ));
        let err = check_command(&command("c2", skip.clone()), now, "t-2", true).unwrap_err();
        assert_eq!(err.command_id, "c2");
        assert_eq!(err.outcome, pb::CommandOutcome::Rejected as i32);
        assert_eq!(reason(&err), "UNKNOWN_TASK");
        let err = check_command(&command("c3", skip.clone()), now, "t-1", false).unwrap_err();
        assert_eq!(reason(&err), "REPLICATION_NOT_CONFIGURED");
        let mut expired = command("c4", skip);
        expired.expires_at = Some(timestamp(now - Duration::from_secs(1)));
        assert_eq!(
            reason(&check_command(&expired, now, "t-1", true).unwrap_err()),
            "EXPIRED"
        );
        let peek = Command::PeekRecords(pb::PeekRecordsCommand::default());
        assert!(matches!(
            check_command(&command("c5", peek), now, "t-1", true),
            Ok(CommandKind::Peek(_))
        ));
        let mut unknown = command("c6", Command::RepairQueue(Default::default()));
        unknown.command = None;
        assert_eq!(
            reason(&check_command(&unknown, now, "t-1", true).unwrap_err()),
            "UNSUPPORTED_COMMAND"
        );
        // An empty task id means "the gateway's task".
        let repair = Command::RepairQueue(pb::RepairQueueCommand {
            dry_run: true,
            ..Default::default()
        });
        assert!(matches!(
            check_command(&command("c7", repair), now, "t-1", true),
            Ok(CommandKind::Repair(_))
        ));
    }

    #[test]
    fn dead_letter_ids_are_parsed() {
        let ids = ["3", "x", "3", " 4 ", "x", "-1"].map(String::from);
        let (parsed, unknown) = parse_dead_letter_ids(&ids);
        assert_eq!(parsed, vec![3, 4]);
        assert_eq!(unknown, vec!["x".to_string(), "-1".to_string()]);
    }

    fn stored_dead_letters() -> (tempfile::TempDir, Vec<DeadLetter>) {
        let dir = tempfile::tempdir().unwrap();
        let store = DeadLetterStore::open(dir.path()).unwrap();
        let index = ReplicationOp::Index {
            index: "logs".into(),
            doc_type: None,
            id: "a b".into(),
            routing: Some("r1".into()),
            version: 5,
            seq_no: Some(9),
            primary_term: Some(1),
            source: bytes::Bytes::from_static(br#"{"field":"value-0123456789"}"#),
        };
        store
            .add(40, &index, 400, "mapper_parsing_exception: bad")
            .unwrap();
        let meta = ReplicationOp::IndexMeta {
            method: http::Method::PUT,
            path: "/logs/_mapping".into(),
            body: bytes::Bytes::from_static(b"{}"),
        };
        store
            .add(41, &meta, 400, "illegal_argument_exception")
            .unwrap();
        let entries = store.list();
        (dir, entries)
    }

    #[test]
    fn dead_letters_map_with_redacted_or_truncated_bodies() {
        let (_dir, entries) = stored_dead_letters();
        let ctx = DeadLetterContext {
            task_id: "t-1",
            gateway_id: "gw",
            comment: "audit",
        };
        let dl = dead_letter(
            &entries[0],
            ctx,
            pb::DeadLetterState::Pending,
            Bodies::Redacted,
        );
        assert_eq!(dl.id, entries[0].id.to_string());
        assert_eq!(dl.gateway_id, "gw");
        assert_eq!(dl.comment, "audit");
        let failure = dl.failure.unwrap();
        assert_eq!(failure.http_status, 400);
        assert_eq!(failure.attempts, 1);
        let record = dl.record.unwrap();
        assert_eq!(record.offset, 40);
        assert_eq!(record.op_kind, pb::OpKind::DocumentIndex as i32);
        assert_eq!(record.index, "logs");
        assert_eq!(record.doc_id, "a b");
        assert_eq!(record.version, Some(5));
        assert_eq!(record.seq_no, Some(9));
        assert!(record.version_fenced);
        assert_eq!(record.http_method, "PUT");
        assert_eq!(record.path, "/logs/_doc/a%20b?routing=r1");
        assert!(record.body_redacted);
        assert!(record.body.is_empty());
        assert_eq!(record.body_size_bytes, 28);

        let record = queue_record(&entries[0], Bodies::Included(10));
        assert_eq!(record.body, br#"{"field":""#.to_vec());
        assert!(record.body_truncated);
        assert!(!record.body_redacted);

        let record = queue_record(&entries[1], Bodies::for_fetch(0));
        assert_eq!(record.op_kind, pb::OpKind::IndexMetadata as i32);
        assert!(!record.version_fenced);
        assert_eq!(record.path, "/logs/_mapping");
        assert_eq!(record.body, b"{}".to_vec());
        assert!(!record.body_truncated);
        assert_eq!(Bodies::for_fetch(u32::MAX), Bodies::Included(1 << 20));
    }

    #[test]
    fn dead_letter_changes_report_new_and_retried_entries() {
        let (_dir, mut entries) = stored_dead_letters();
        let mut reported = HashMap::new();
        assert_eq!(dead_letter_changes(&reported, &entries).len(), 2);
        for e in &entries {
            reported.insert(e.id, e.retries);
        }
        assert!(dead_letter_changes(&reported, &entries).is_empty());
        entries[1].retries += 1;
        let changed = dead_letter_changes(&reported, &entries);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].id, entries[1].id);
        let msg = dead_letter_report(&changed, "t", "gw");
        let Some(pb::agent_stream_request::Payload::DeadLetters(report)) = msg.payload else {
            panic!("not a dead-letter report");
        };
        assert_eq!(
            report.dead_letters[0].state,
            pb::DeadLetterState::Pending as i32
        );
        assert!(
            report.dead_letters[0]
                .record
                .as_ref()
                .unwrap()
                .body
                .is_empty()
        );
    }

    #[test]
    fn repair_reports_map_to_the_contract() {
        let report = RepairReport {
            consumer: REPLAYER.into(),
            segment: PathBuf::from("/q/00000000000000000001.seg"),
            position: 10,
            detail: "crc".into(),
            first_lost_offset: 5,
            last_lost_offset: 6,
            records_lost: 2,
            bytes_skipped: 99,
            resume_offset: 7,
            dry_run: true,
        };
        let now = SystemTime::now();
        let result = repair_result(&report, now);
        assert!(result.dry_run);
        assert_eq!(result.records_lost, 2);
        assert_eq!(
            result.resume_offset - result.first_lost_offset,
            result.records_lost
        );
        assert_eq!(result.bytes_lost, 99);
        assert_eq!(
            result.segments,
            vec!["00000000000000000001.seg".to_string()]
        );
        assert_eq!(result.repaired_at, None);
        let applied = repair_result(
            &RepairReport {
                dry_run: false,
                ..report
            },
            now,
        );
        assert_eq!(applied.repaired_at, Some(timestamp(now)));
    }

    #[test]
    fn command_log_deduplicates_and_forgets_the_oldest() {
        let mut log = CommandLog::new(2);
        assert_eq!(log.begin("a"), CommandSeen::New);
        assert_eq!(log.begin("a"), CommandSeen::Running);
        let result = succeeded("a", None, SystemTime::now());
        log.finish(&result);
        assert_eq!(log.begin("a"), CommandSeen::Done(Box::new(result)));
        assert_eq!(log.begin("b"), CommandSeen::New);
        assert_eq!(log.begin("c"), CommandSeen::New);
        assert_eq!(log.begin("a"), CommandSeen::New, "a was forgotten");
    }

    #[test]
    fn backoff_grows_with_jitter_up_to_the_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        assert_eq!(backoff.next_delay(1.0), Duration::from_millis(100));
        assert_eq!(backoff.next_delay(1.0), Duration::from_millis(200));
        assert_eq!(backoff.next_delay(0.0), Duration::from_millis(200));
        assert_eq!(backoff.next_delay(1.0), Duration::from_millis(800));
        for _ in 0..100 {
            let d = backoff.next_delay(0.7);
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1000));
        }
        backoff.reset();
        assert_eq!(backoff.next_delay(1.0), Duration::from_millis(100));
    }

    #[test]
    fn intervals_from_the_control_plane_are_clamped() {
        let d = |seconds, nanos| Some(prost_types::Duration { seconds, nanos });
        assert_eq!(clamp_interval(None), None);
        assert_eq!(clamp_interval(d(0, 0)), None);
        assert_eq!(clamp_interval(d(-1, 0)), None);
        assert_eq!(clamp_interval(d(0, 1000)), Some(Duration::from_millis(100)));
        assert_eq!(clamp_interval(d(2, 0)), Some(Duration::from_secs(2)));
        assert_eq!(clamp_interval(d(86_400, 0)), Some(Duration::from_secs(600)));
    }

    #[test]
    fn hello_announces_the_gateway() {
        let identity = Identity {
            gateway_id: "gw-1".into(),
            name: "edge".into(),
            labels: BTreeMap::from([("zone".to_string(), "a".to_string())]),
            advertised_address: "10.0.0.1:9200".into(),
            admin_address: "127.0.0.1:9280".into(),
            hostname: "host".into(),
            version: "0.1.0".into(),
            build: String::new(),
            capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            listeners: vec![pb::Listener {
                name: "default".into(),
                address: "0.0.0.0:9200".into(),
                tls: false,
            }],
            started_at: UNIX_EPOCH + Duration::from_secs(1000),
        };
        let msg = hello(&identity, 12, vec!["t-1".into()]);
        let Some(pb::agent_stream_request::Payload::Hello(hello)) = msg.payload else {
            panic!("not a hello");
        };
        assert_eq!(hello.gateway_id, "gw-1");
        assert_eq!(hello.applied_version, 12);
        assert_eq!(hello.local_task_ids, vec!["t-1".to_string()]);
        assert_eq!(hello.labels.get("zone").map(String::as_str), Some("a"));
        assert_eq!(hello.started_at.unwrap().seconds, 1000);
        assert!(hello.capabilities.iter().any(|c| c == "cutover"));
    }
}
