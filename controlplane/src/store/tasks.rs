//! Replication tasks (`replication_tasks`), their role swaps
//! (`task_operations`) and events (`task_events`); see
//! `migrations/0004_replication_tasks.sql` and `0006_task_settings.sql`.
//!
//! Writers read a [`TaskRecord`], change it in memory and [`save`] it with
//! the version they read (optimistic concurrency): a concurrent change makes
//! the save return `None` and the caller reports `ABORTED`. Every change
//! also raises the desired-state version of the task's gateways in the same
//! transaction, so what the gateways get is always built from committed
//! rows (see [`crate::fleet`]). [`save`] writes the lifecycle columns
//! (state, direction, role swap, error); [`update_settings`] writes the
//! settings UpdateTask changes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Transaction};
use tandem_proto::codes;
use tandem_proto::v1 as pb;
use uuid::Uuid;

use super::{StoreError, finish};

/// Stored name of a task state.
pub fn state_name(state: pb::TaskState) -> &'static str {
    match state {
        pb::TaskState::Unspecified | pb::TaskState::Created => "created",
        pb::TaskState::Running => "running",
        pb::TaskState::Paused => "paused",
        pb::TaskState::CuttingOver => "cutting_over",
        pb::TaskState::RollingBack => "rolling_back",
        pb::TaskState::Stopped => "stopped",
        pb::TaskState::Failed => "failed",
    }
}

fn parse_state(text: &str) -> Result<pb::TaskState, StoreError> {
    Ok(match text {
        "created" => pb::TaskState::Created,
        "running" => pb::TaskState::Running,
        "paused" => pb::TaskState::Paused,
        "cutting_over" => pb::TaskState::CuttingOver,
        "rolling_back" => pb::TaskState::RollingBack,
        "stopped" => pb::TaskState::Stopped,
        "failed" => pb::TaskState::Failed,
        other => return Err(StoreError::Corrupt(format!("unknown task state {other:?}"))),
    })
}

/// Stored name of a direction.
pub fn direction_name(direction: pb::ReplicationDirection) -> &'static str {
    match direction {
        pb::ReplicationDirection::Reversed => "reversed",
        _ => "forward",
    }
}

fn parse_direction(text: &str) -> Result<pb::ReplicationDirection, StoreError> {
    match text {
        "forward" => Ok(pb::ReplicationDirection::Forward),
        "reversed" => Ok(pb::ReplicationDirection::Reversed),
        other => Err(StoreError::Corrupt(format!(
            "unknown task direction {other:?}"
        ))),
    }
}

/// Stored name of a queue-full policy (unspecified is BACKPRESSURE).
fn on_full_name(policy: i32) -> &'static str {
    match pb::QueueFullPolicy::try_from(policy) {
        Ok(pb::QueueFullPolicy::Reject) => "reject",
        _ => "backpressure",
    }
}

fn parse_on_full(text: &str) -> Result<pb::QueueFullPolicy, StoreError> {
    match text {
        "backpressure" => Ok(pb::QueueFullPolicy::Backpressure),
        "reject" => Ok(pb::QueueFullPolicy::Reject),
        other => Err(StoreError::Corrupt(format!(
            "unknown queue_on_full {other:?}"
        ))),
    }
}

/// A stored millisecond count as a protobuf duration.
fn millis(ms: i64) -> prost_types::Duration {
    tandem_proto::time::duration(std::time::Duration::from_millis(
        u64::try_from(ms).unwrap_or(0),
    ))
}

/// A protobuf duration (unset: zero) in whole milliseconds, as stored.
fn to_millis(d: Option<&prost_types::Duration>) -> i64 {
    d.map_or(0, |d| {
        d.seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(d.nanos / 1_000_000))
    })
}

/// A write hold published with a role swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Id (the operation id).
    pub id: Uuid,
    /// Maximum duration, in milliseconds.
    pub timeout_ms: i64,
    /// Control plane's deadline.
    pub deadline: DateTime<Utc>,
}

/// A replication task as stored.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    /// Id.
    pub id: Uuid,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Primary as created (FORWARD).
    pub primary_cluster_id: Uuid,
    /// Its name.
    pub primary_cluster_name: String,
    /// Backup as created (FORWARD).
    pub backup_cluster_id: Uuid,
    /// Its name.
    pub backup_cluster_name: String,
    /// Gateways serving the task.
    pub gateway_ids: Vec<String>,
    /// Listener name; empty means the default listener.
    pub listener: String,
    /// Lifecycle state.
    pub state: pb::TaskState,
    /// State to return to when a FAILED task is resumed.
    pub state_before_failure: Option<pb::TaskState>,
    /// Committed direction.
    pub direction: pb::ReplicationDirection,
    /// Direction being pushed during a role swap.
    pub target_direction: Option<pb::ReplicationDirection>,
    /// Write hold of the role swap in progress.
    pub hold: Option<Hold>,
    /// Indices replicated.
    pub indices: pb::IndexFilter,
    /// Warning lag in milliseconds (0 = default).
    pub warning_lag_ms: i64,
    /// Warning record count (0 = none).
    pub warning_records: i64,
    /// Cutover maximum lag in milliseconds (0 = default).
    pub cutover_max_lag_ms: i64,
    /// Cutover maximum records (0 = not checked).
    pub cutover_max_records: i64,
    /// Shadow-read sample ratio.
    pub shadow_sample_ratio: f64,
    /// Queue limits (durations in whole milliseconds; `on_full` never
    /// unspecified).
    pub queue_policy: pb::QueuePolicy,
    /// Replay tuning (durations in whole milliseconds).
    pub replay: pb::ReplayOptions,
    /// `index.gc_deletes` in milliseconds (0 = default).
    pub backup_gc_deletes_ms: i64,
    /// Why the task is FAILED: (reason, message).
    pub error: Option<(String, String)>,
    /// Idempotency key of the creating request.
    pub request_id: Option<String>,
    /// Optimistic-concurrency version.
    pub version: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// First replay start.
    pub started_at: Option<DateTime<Utc>>,
    /// Stop time.
    pub stopped_at: Option<DateTime<Utc>>,
}

impl TaskRecord {
    /// The direction gateways must apply: the target of a role swap in
    /// progress, else the committed one.
    pub fn effective_direction(&self) -> pb::ReplicationDirection {
        self.target_direction.unwrap_or(self.direction)
    }

    /// What gateways do for the task in its current state.
    pub fn mode(&self) -> pb::TaskMode {
        match self.state {
            pb::TaskState::Created | pb::TaskState::Paused => pb::TaskMode::RecordOnly,
            pb::TaskState::Running | pb::TaskState::CuttingOver | pb::TaskState::RollingBack => {
                pb::TaskMode::Replay
            }
            pb::TaskState::Stopped => pb::TaskMode::Passthrough,
            // A failed task keeps its gateways as they were.
            pb::TaskState::Failed | pb::TaskState::Unspecified => match self.state_before_failure {
                Some(pb::TaskState::Created | pb::TaskState::Paused) => pb::TaskMode::RecordOnly,
                _ => pb::TaskMode::Replay,
            },
        }
    }
}

#[derive(sqlx::FromRow)]
struct TaskRow {
    id: Uuid,
    name: String,
    description: String,
    labels: Json<BTreeMap<String, String>>,
    primary_cluster_id: Uuid,
    primary_name: String,
    backup_cluster_id: Uuid,
    backup_name: String,
    gateway_ids: Vec<String>,
    listener: String,
    state: String,
    state_before_failure: Option<String>,
    direction: String,
    target_direction: Option<String>,
    hold_id: Option<Uuid>,
    hold_timeout_ms: Option<i64>,
    hold_deadline: Option<DateTime<Utc>>,
    index_include: Vec<String>,
    index_exclude: Vec<String>,
    index_include_hidden: bool,
    warning_lag_ms: i64,
    warning_records: i64,
    cutover_max_lag_ms: i64,
    cutover_max_records: i64,
    shadow_sample_ratio: f64,
    queue_max_bytes: i64,
    queue_max_age_ms: i64,
    queue_on_full: String,
    queue_max_backpressure_wait_ms: i64,
    replay_max_batch_records: i64,
    replay_max_batch_bytes: i64,
    replay_request_timeout_ms: i64,
    replay_initial_backoff_ms: i64,
    replay_max_backoff_ms: i64,
    backup_gc_deletes_ms: i64,
    error_reason: Option<String>,
    error_message: Option<String>,
    request_id: Option<String>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    stopped_at: Option<DateTime<Utc>>,
}

impl TryFrom<TaskRow> for TaskRecord {
    type Error = StoreError;

    fn try_from(row: TaskRow) -> Result<Self, StoreError> {
        let hold = match (row.hold_id, row.hold_timeout_ms, row.hold_deadline) {
            (Some(id), Some(timeout_ms), Some(deadline)) => Some(Hold {
                id,
                timeout_ms,
                deadline,
            }),
            _ => None,
        };
        Ok(TaskRecord {
            id: row.id,
            name: row.name,
            description: row.description,
            labels: row.labels.0,
            primary_cluster_id: row.primary_cluster_id,
            primary_cluster_name: row.primary_name,
            backup_cluster_id: row.backup_cluster_id,
            backup_cluster_name: row.backup_name,
            gateway_ids: row.gateway_ids,
            listener: row.listener,
            state: parse_state(&row.state)?,
            state_before_failure: row
                .state_before_failure
                .as_deref()
                .map(parse_state)
                .transpose()?,
            direction: parse_direction(&row.direction)?,
            target_direction: row
                .target_direction
                .as_deref()
                .map(parse_direction)
                .transpose()?,
            hold,
            indices: pb::IndexFilter {
                include: row.index_include,
                exclude: row.index_exclude,
                include_hidden: row.index_include_hidden,
            },
            warning_lag_ms: row.warning_lag_ms,
            warning_records: row.warning_records,
            cutover_max_lag_ms: row.cutover_max_lag_ms,
            cutover_max_records: row.cutover_max_records,
            shadow_sample_ratio: row.shadow_sample_ratio,
            queue_policy: pb::QueuePolicy {
                max_bytes: u64::try_from(row.queue_max_bytes).unwrap_or(0),
                max_age: Some(millis(row.queue_max_age_ms)),
                on_full: parse_on_full(&row.queue_on_full)? as i32,
                max_backpressure_wait: Some(millis(row.queue_max_backpressure_wait_ms)),
            },
            replay: pb::ReplayOptions {
                max_batch_records: u32::try_from(row.replay_max_batch_records).unwrap_or(0),
                max_batch_bytes: u64::try_from(row.replay_max_batch_bytes).unwrap_or(0),
                request_timeout: Some(millis(row.replay_request_timeout_ms)),
                initial_backoff: Some(millis(row.replay_initial_backoff_ms)),
                max_backoff: Some(millis(row.replay_max_backoff_ms)),
            },
            backup_gc_deletes_ms: row.backup_gc_deletes_ms,
            error: row.error_reason.zip(row.error_message),
            request_id: row.request_id,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
            started_at: row.started_at,
            stopped_at: row.stopped_at,
        })
    }
}

const SELECT: &str = "SELECT t.*, p.name AS primary_name, b.name AS backup_name \
     FROM replication_tasks t \
     JOIN clusters p ON p.id = t.primary_cluster_id \
     JOIN clusters b ON b.id = t.backup_cluster_id";

/// An event to store with a change.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Severity.
    pub severity: pb::EventSeverity,
    /// Machine-readable reason (`TASK_STARTED`...).
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl NewEvent {
    /// An INFO event.
    pub fn info(reason: &str, message: impl Into<String>) -> NewEvent {
        NewEvent {
            severity: pb::EventSeverity::Info,
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    /// A WARNING event.
    pub fn warning(reason: &str, message: impl Into<String>) -> NewEvent {
        NewEvent {
            severity: pb::EventSeverity::Warning,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// Desired-state versions raised by a change, per gateway.
pub type Bumped = Vec<(String, u64)>;

/// Raises the desired-state version of every gateway serving a task that
/// uses cluster `cluster_id` (its settings, e.g. credentials, changed).
pub async fn bump_gateways_of_cluster(
    pool: &PgPool,
    cluster_id: Uuid,
) -> Result<Bumped, StoreError> {
    let rows = sqlx::query_as::<_, (String, i64)>(
        "UPDATE gateways SET desired_version = GREATEST(desired_version, applied_version) + 1 \
         WHERE id IN (SELECT unnest(gateway_ids) FROM replication_tasks \
                      WHERE primary_cluster_id = $1 OR backup_cluster_id = $1) \
         RETURNING id, desired_version",
    )
    .bind(cluster_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, v)| (id, u64::try_from(v).unwrap_or(0)))
        .collect())
}

async fn bump_gateways(
    tx: &mut Transaction<'static, Postgres>,
    gateway_ids: &[String],
) -> Result<Bumped, StoreError> {
    let rows = sqlx::query_as::<_, (String, i64)>(
        "UPDATE gateways SET desired_version = GREATEST(desired_version, applied_version) + 1 \
         WHERE id = ANY($1) RETURNING id, desired_version",
    )
    .bind(gateway_ids)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, v)| (id, u64::try_from(v).unwrap_or(0)))
        .collect())
}

async fn insert_event(
    tx: &mut Transaction<'static, Postgres>,
    task_id: Uuid,
    event: &NewEvent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO task_events (task_id, severity, reason, message) VALUES ($1, $2, $3, $4)",
    )
    .bind(task_id)
    .bind(event.severity.as_str_name())
    .bind(&event.reason)
    .bind(&event.message)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn fetch(
    executor: impl sqlx::PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<TaskRecord>, StoreError> {
    sqlx::query_as::<_, TaskRow>(&format!("{SELECT} WHERE t.id = $1"))
        .bind(id)
        .fetch_optional(executor)
        .await?
        .map(TaskRecord::try_from)
        .transpose()
}

/// A query returning a task id.
type IdQuery<'q> = sqlx::query::QueryScalar<'q, Postgres, Uuid, sqlx::postgres::PgArguments>;

/// Binds the queue policy and replay options of `record`, in column order
/// (`queue_max_bytes` ... `replay_max_backoff_ms`, see migration 0006).
fn bind_queue_and_replay<'q>(query: IdQuery<'q>, record: &TaskRecord) -> IdQuery<'q> {
    let queue = &record.queue_policy;
    let replay = &record.replay;
    query
        .bind(i64::try_from(queue.max_bytes).unwrap_or(i64::MAX))
        .bind(to_millis(queue.max_age.as_ref()))
        .bind(on_full_name(queue.on_full))
        .bind(to_millis(queue.max_backpressure_wait.as_ref()))
        .bind(i64::from(replay.max_batch_records))
        .bind(i64::try_from(replay.max_batch_bytes).unwrap_or(i64::MAX))
        .bind(to_millis(replay.request_timeout.as_ref()))
        .bind(to_millis(replay.initial_backoff.as_ref()))
        .bind(to_millis(replay.max_backoff.as_ref()))
}

/// The name of a non-stopped task other than `except` that serves
/// `listener` on one of `gateway_ids` (a listener serves at most one task
/// per gateway). Empty and `default` both name the default listener.
async fn listener_user(
    tx: &mut Transaction<'static, Postgres>,
    except: Option<Uuid>,
    listener: &str,
    gateway_ids: &[String],
) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar::<_, String>(include_str!("queries/task_listener_user.sql"))
            .bind(listener)
            .bind(gateway_ids)
            .bind(except)
            .fetch_optional(&mut **tx)
            .await?,
    )
}

/// Why [`insert`] refused a task.
#[derive(Debug)]
pub enum InsertOutcome {
    /// Created (or found by its request id), with the raised versions.
    Created(Box<TaskRecord>, Bumped),
    /// A task with the same request id exists.
    Existing(Box<TaskRecord>),
    /// Another non-stopped task uses the listener on one of the gateways.
    ListenerBusy(String),
}

/// Stores a new task (`record.id`, `version` and timestamps are ignored)
/// and raises its gateways' desired-state versions.
pub async fn insert(pool: &PgPool, record: &TaskRecord) -> Result<InsertOutcome, StoreError> {
    if let Some(request_id) = &record.request_id {
        let existing = sqlx::query_scalar::<_, Uuid>(
            "SELECT id FROM replication_tasks WHERE request_id = $1 \
             AND created_at > now() - INTERVAL '24 hours'",
        )
        .bind(request_id)
        .fetch_optional(pool)
        .await?;
        if let Some(id) = existing
            && let Some(task) = fetch(pool, id).await?
        {
            return Ok(InsertOutcome::Existing(Box::new(task)));
        }
    }
    let mut tx = pool.begin().await?;
    let result = async {
        // Serialise task creations so the listener check cannot race.
        sqlx::query("LOCK TABLE replication_tasks IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let busy = listener_user(&mut tx, None, &record.listener, &record.gateway_ids).await?;
        if let Some(name) = busy {
            return Ok(InsertOutcome::ListenerBusy(name));
        }
        let insert = sqlx::query_scalar::<_, Uuid>(
            "INSERT INTO replication_tasks (name, description, labels, primary_cluster_id, \
             backup_cluster_id, gateway_ids, listener, state, direction, index_include, \
             index_exclude, index_include_hidden, warning_lag_ms, warning_records, \
             cutover_max_lag_ms, cutover_max_records, shadow_sample_ratio, \
             backup_gc_deletes_ms, request_id, started_at, queue_max_bytes, queue_max_age_ms, \
             queue_on_full, queue_max_backpressure_wait_ms, replay_max_batch_records, \
             replay_max_batch_bytes, replay_request_timeout_ms, replay_initial_backoff_ms, \
             replay_max_backoff_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, $19, CASE WHEN $8 = 'running' THEN now() END, \
             $20, $21, $22, $23, $24, $25, $26, $27, $28) \
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(&record.name)
        .bind(&record.description)
        .bind(Json(&record.labels))
        .bind(record.primary_cluster_id)
        .bind(record.backup_cluster_id)
        .bind(&record.gateway_ids)
        .bind(&record.listener)
        .bind(state_name(record.state))
        .bind(direction_name(record.direction))
        .bind(&record.indices.include)
        .bind(&record.indices.exclude)
        .bind(record.indices.include_hidden)
        .bind(record.warning_lag_ms)
        .bind(record.warning_records)
        .bind(record.cutover_max_lag_ms)
        .bind(record.cutover_max_records)
        .bind(record.shadow_sample_ratio)
        .bind(record.backup_gc_deletes_ms)
        .bind(&record.request_id);
        let id = bind_queue_and_replay(insert, record)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NameTaken(record.name.clone()))?;
        insert_event(
            &mut tx,
            id,
            &NewEvent::info(
                codes::TASK_CREATED,
                format!("task created in state {}", state_name(record.state)),
            ),
        )
        .await?;
        let bumped = bump_gateways(&mut tx, &record.gateway_ids).await?;
        let task = fetch(&mut *tx, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("task vanished after insert".into()))?;
        Ok(InsertOutcome::Created(Box::new(task), bumped))
    }
    .await;
    finish(tx, "create task", result).await
}

/// One task.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<TaskRecord>, StoreError> {
    fetch(pool, id).await
}

/// Filters of [`list`]; empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only in one of these states.
    pub states: Vec<pb::TaskState>,
    /// Only using this cluster.
    pub cluster_id: Option<Uuid>,
    /// Only served by this gateway.
    pub gateway_id: Option<String>,
    /// Only carrying all these labels.
    pub labels: BTreeMap<String, String>,
}

/// Up to `limit` tasks, newest first, after the key `(created_at in
/// microseconds since the epoch, id)`.
pub async fn list(
    pool: &PgPool,
    filter: &TaskFilter,
    after: Option<(i64, Uuid)>,
    limit: i64,
) -> Result<Vec<TaskRecord>, StoreError> {
    let states: Vec<&str> = filter.states.iter().map(|s| state_name(*s)).collect();
    let sql = format!(
        "{SELECT} WHERE (cardinality($1::text[]) = 0 OR t.state = ANY($1)) \
         AND ($2::uuid IS NULL OR t.primary_cluster_id = $2 OR t.backup_cluster_id = $2) \
         AND ($3::text IS NULL OR $3 = ANY(t.gateway_ids)) \
         AND t.labels @> $4 \
         AND ($5::bigint IS NULL OR (t.created_at, t.id) < \
              (TIMESTAMPTZ 'epoch' + $5 * INTERVAL '1 microsecond', $6::uuid)) \
         ORDER BY t.created_at DESC, t.id DESC LIMIT $7"
    );
    let rows = sqlx::query_as::<_, TaskRow>(&sql)
        .bind(&states)
        .bind(filter.cluster_id)
        .bind(&filter.gateway_id)
        .bind(Json(&filter.labels))
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(TaskRecord::try_from).collect()
}

/// Tasks assigned to `gateway_id`, oldest first.
pub async fn for_gateway(pool: &PgPool, gateway_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
    let rows = sqlx::query_as::<_, TaskRow>(&format!(
        "{SELECT} WHERE $1 = ANY(t.gateway_ids) ORDER BY t.created_at, t.id"
    ))
    .bind(gateway_id)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(TaskRecord::try_from).collect()
}

/// Saves the mutable fields of `record` if the stored version is still
/// `record.version`, stores `event`, and raises the desired-state version of
/// the task's gateways. `None` when the task changed (or vanished) meanwhile.
pub async fn save(
    pool: &PgPool,
    record: &TaskRecord,
    event: Option<NewEvent>,
) -> Result<Option<(TaskRecord, Bumped)>, StoreError> {
    let mut tx = pool.begin().await?;
    let result = async {
        let updated = sqlx::query(
            "UPDATE replication_tasks SET state = $3, state_before_failure = $4, \
             direction = $5, target_direction = $6, hold_id = $7, hold_timeout_ms = $8, \
             hold_deadline = $9, error_reason = $10, error_message = $11, \
             started_at = $12, stopped_at = $13, version = version + 1, updated_at = now() \
             WHERE id = $1 AND version = $2",
        )
        .bind(record.id)
        .bind(record.version)
        .bind(state_name(record.state))
        .bind(record.state_before_failure.map(state_name))
        .bind(direction_name(record.direction))
        .bind(record.target_direction.map(direction_name))
        .bind(record.hold.as_ref().map(|h| h.id))
        .bind(record.hold.as_ref().map(|h| h.timeout_ms))
        .bind(record.hold.as_ref().map(|h| h.deadline))
        .bind(record.error.as_ref().map(|e| &e.0))
        .bind(record.error.as_ref().map(|e| &e.1))
        .bind(record.started_at)
        .bind(record.stopped_at)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        if let Some(event) = &event {
            insert_event(&mut tx, record.id, event).await?;
        }
        let bumped = bump_gateways(&mut tx, &record.gateway_ids).await?;
        let task = fetch(&mut *tx, record.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("task vanished after update".into()))?;
        Ok(Some((task, bumped)))
    }
    .await;
    finish(tx, "update task", result).await
}

/// What [`update_settings`] did.
#[derive(Debug)]
pub enum UpdateOutcome {
    /// Saved, with the raised desired-state versions.
    Updated(Box<TaskRecord>, Bumped),
    /// The task changed or vanished since it was read.
    Changed,
    /// An added gateway already serves the task's listener for another
    /// non-stopped task (its name).
    ListenerBusy(String),
}

/// Saves the settings UpdateTask changes (name, description, labels,
/// gateways, lag thresholds, shadow reads, queue policy, replay options) of
/// `record` if the stored version is still `record.version`, stores
/// `event`, and raises the desired-state version of the gateways in
/// `notify` (those whose assignment changed, former ones included), all in
/// one transaction. `added` are the gateways new to the task: they must not
/// serve its listener for another task. A name used by another task gives
/// [`StoreError::NameTaken`].
pub async fn update_settings(
    pool: &PgPool,
    record: &TaskRecord,
    added: &[String],
    notify: &[String],
    event: &NewEvent,
) -> Result<UpdateOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let result = async {
        if !added.is_empty() {
            // Same lock as `insert`: the listener check cannot race.
            sqlx::query("LOCK TABLE replication_tasks IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
            if let Some(name) =
                listener_user(&mut tx, Some(record.id), &record.listener, added).await?
            {
                return Ok(UpdateOutcome::ListenerBusy(name));
            }
        }
        let update =
            sqlx::query_scalar::<_, Uuid>(include_str!("queries/task_update_settings.sql"))
                .bind(record.id)
                .bind(record.version)
                .bind(&record.name)
                .bind(&record.description)
                .bind(Json(&record.labels))
                .bind(&record.gateway_ids)
                .bind(record.warning_lag_ms)
                .bind(record.warning_records)
                .bind(record.cutover_max_lag_ms)
                .bind(record.cutover_max_records)
                .bind(record.shadow_sample_ratio);
        let updated = bind_queue_and_replay(update, record)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|err| match &err {
                sqlx::Error::Database(db) if db.is_unique_violation() => {
                    StoreError::NameTaken(record.name.clone())
                }
                _ => StoreError::Database(err),
            })?;
        if updated.is_none() {
            return Ok(UpdateOutcome::Changed);
        }
        insert_event(&mut tx, record.id, event).await?;
        let bumped = bump_gateways(&mut tx, notify).await?;
        let task = fetch(&mut *tx, record.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("task vanished after update".into()))?;
        Ok(UpdateOutcome::Updated(Box::new(task), bumped))
    }
    .await;
    finish(tx, "update task settings", result).await
}

/// Deletes the task if its stored version is still `version`; returns the
/// raised desired-state versions of its former gateways, `None` when the
/// task changed or vanished meanwhile.
pub async fn delete(pool: &PgPool, record: &TaskRecord) -> Result<Option<Bumped>, StoreError> {
    let mut tx = pool.begin().await?;
    let result = async {
        let deleted = sqlx::query("DELETE FROM replication_tasks WHERE id = $1 AND version = $2")
            .bind(record.id)
            .bind(record.version)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Ok(None);
        }
        Ok(Some(bump_gateways(&mut tx, &record.gateway_ids).await?))
    }
    .await;
    finish(tx, "delete task", result).await
}

/// A stored role swap.
#[derive(Debug, Clone)]
pub struct OperationRecord {
    /// Id (also the hold id).
    pub id: Uuid,
    /// Cutover or rollback.
    pub kind: pb::RoleSwapKind,
    /// Phase.
    pub phase: pb::RoleSwapPhase,
    /// Maximum lag allowed to start, in milliseconds.
    pub max_lag_ms: i64,
    /// Maximum records allowed to start.
    pub max_lag_records: i64,
    /// Hold timeout in milliseconds.
    pub hold_timeout_ms: i64,
    /// Unreplayed records at start.
    pub start_lag_records: i64,
    /// Gateways taking part.
    pub gateways_total: i32,
    /// Gateways done with the current phase.
    pub gateways_ready: i32,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// Hold published.
    pub hold_started_at: Option<DateTime<Utc>>,
    /// Hold released.
    pub hold_released_at: Option<DateTime<Utc>>,
    /// End.
    pub finished_at: Option<DateTime<Utc>>,
    /// Failure: (reason, message).
    pub error: Option<(String, String)>,
}

#[derive(sqlx::FromRow)]
struct OperationRow {
    id: Uuid,
    kind: String,
    phase: String,
    max_lag_ms: i64,
    max_lag_records: i64,
    hold_timeout_ms: i64,
    start_lag_records: i64,
    gateways_total: i32,
    gateways_ready: i32,
    started_at: DateTime<Utc>,
    hold_started_at: Option<DateTime<Utc>>,
    hold_released_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    error_reason: Option<String>,
    error_message: Option<String>,
}

fn phase_name(phase: pb::RoleSwapPhase) -> &'static str {
    match phase {
        pb::RoleSwapPhase::Unspecified | pb::RoleSwapPhase::Checking => "checking",
        pb::RoleSwapPhase::HoldingWrites => "holding_writes",
        pb::RoleSwapPhase::Draining => "draining",
        pb::RoleSwapPhase::Swapping => "swapping",
        pb::RoleSwapPhase::Succeeded => "succeeded",
        pb::RoleSwapPhase::Failed => "failed",
    }
}

impl From<OperationRow> for OperationRecord {
    fn from(row: OperationRow) -> Self {
        OperationRecord {
            id: row.id,
            kind: if row.kind == "rollback" {
                pb::RoleSwapKind::Rollback
            } else {
                pb::RoleSwapKind::Cutover
            },
            phase: match row.phase.as_str() {
                "holding_writes" => pb::RoleSwapPhase::HoldingWrites,
                "draining" => pb::RoleSwapPhase::Draining,
                "swapping" => pb::RoleSwapPhase::Swapping,
                "succeeded" => pb::RoleSwapPhase::Succeeded,
                "failed" => pb::RoleSwapPhase::Failed,
                _ => pb::RoleSwapPhase::Checking,
            },
            max_lag_ms: row.max_lag_ms,
            max_lag_records: row.max_lag_records,
            hold_timeout_ms: row.hold_timeout_ms,
            start_lag_records: row.start_lag_records,
            gateways_total: row.gateways_total,
            gateways_ready: row.gateways_ready,
            started_at: row.started_at,
            hold_started_at: row.hold_started_at,
            hold_released_at: row.hold_released_at,
            finished_at: row.finished_at,
            error: row.error_reason.zip(row.error_message),
        }
    }
}

/// Stores a new (unfinished) operation of `task_id`.
pub async fn insert_operation(
    pool: &PgPool,
    task_id: Uuid,
    op: &OperationRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO task_operations (id, task_id, kind, phase, max_lag_ms, max_lag_records, \
         hold_timeout_ms, start_lag_records, gateways_total, gateways_ready, started_at, \
         hold_started_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(op.id)
    .bind(task_id)
    .bind(if op.kind == pb::RoleSwapKind::Rollback {
        "rollback"
    } else {
        "cutover"
    })
    .bind(phase_name(op.phase))
    .bind(op.max_lag_ms)
    .bind(op.max_lag_records)
    .bind(op.hold_timeout_ms)
    .bind(op.start_lag_records)
    .bind(op.gateways_total)
    .bind(op.gateways_ready)
    .bind(op.started_at)
    .bind(op.hold_started_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Updates the progress (phase, readiness, end) of an operation.
pub async fn update_operation(pool: &PgPool, op: &OperationRecord) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE task_operations SET phase = $2, gateways_ready = $3, hold_released_at = $4, \
         finished_at = $5, error_reason = $6, error_message = $7 WHERE id = $1",
    )
    .bind(op.id)
    .bind(phase_name(op.phase))
    .bind(op.gateways_ready)
    .bind(op.hold_released_at)
    .bind(op.finished_at)
    .bind(op.error.as_ref().map(|e| &e.0))
    .bind(op.error.as_ref().map(|e| &e.1))
    .execute(pool)
    .await?;
    Ok(())
}

/// The unfinished operation of a task and its latest finished one.
pub async fn operations(
    pool: &PgPool,
    task_id: Uuid,
) -> Result<(Option<OperationRecord>, Option<OperationRecord>), StoreError> {
    let current = sqlx::query_as::<_, OperationRow>(
        "SELECT * FROM task_operations WHERE task_id = $1 AND finished_at IS NULL",
    )
    .bind(task_id)
    .fetch_optional(pool)
    .await?
    .map(OperationRecord::from);
    let last = sqlx::query_as::<_, OperationRow>(
        "SELECT * FROM task_operations WHERE task_id = $1 AND finished_at IS NOT NULL \
         ORDER BY finished_at DESC LIMIT 1",
    )
    .bind(task_id)
    .fetch_optional(pool)
    .await?
    .map(OperationRecord::from);
    Ok((current, last))
}

#[derive(sqlx::FromRow)]
struct EventRow {
    event_no: i64,
    id: Uuid,
    task_id: Uuid,
    occurred_at: DateTime<Utc>,
    severity: String,
    reason: String,
    message: String,
    gateway_id: String,
}

/// A stored task event with its position.
#[derive(Debug, Clone)]
pub struct StoredTaskEvent {
    /// Position (increasing in storage order).
    pub event_no: i64,
    /// The event.
    pub event: pb::Event,
}

/// Events of `task_id`: with `after`, those stored after that position
/// (oldest first); else the newest first, before position `before` when
/// given. At most `limit`, at least `min_severity`.
pub async fn events(
    pool: &PgPool,
    task_id: Uuid,
    after: Option<i64>,
    before: Option<i64>,
    min_severity: pb::EventSeverity,
    limit: i64,
) -> Result<Vec<StoredTaskEvent>, StoreError> {
    let severities: Vec<&str> = [
        pb::EventSeverity::Info,
        pb::EventSeverity::Warning,
        pb::EventSeverity::Error,
    ]
    .into_iter()
    .filter(|s| *s as i32 >= min_severity as i32)
    .map(|s| s.as_str_name())
    .collect();
    let order = if after.is_some() { "ASC" } else { "DESC" };
    let rows = sqlx::query_as::<_, EventRow>(&format!(
        "SELECT * FROM task_events WHERE task_id = $1 \
         AND ($2::bigint IS NULL OR event_no > $2) AND ($3::bigint IS NULL OR event_no < $3) \
         AND severity = ANY($4) ORDER BY event_no {order} LIMIT $5"
    ))
    .bind(task_id)
    .bind(after)
    .bind(before)
    .bind(&severities)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| StoredTaskEvent {
            event_no: row.event_no,
            event: pb::Event {
                id: row.id.to_string(),
                sequence: u64::try_from(row.event_no).unwrap_or(0),
                occurred_at: Some(tandem_proto::time::timestamp(row.occurred_at)),
                severity: pb::EventSeverity::from_str_name(&row.severity)
                    .map(|s| s as i32)
                    .unwrap_or_default(),
                reason: row.reason,
                message: row.message,
                task_id: row.task_id.to_string(),
                gateway_id: row.gateway_id,
                ..Default::default()
            },
        })
        .collect())
}

/// Id of the cluster named `name`, if registered.
pub async fn cluster_id_by_name(pool: &PgPool, name: &str) -> Result<Option<Uuid>, StoreError> {
    Ok(
        sqlx::query_scalar::<_, Uuid>("SELECT id FROM clusters WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?,
    )
}

/// Whether a cluster with this id is registered.
pub async fn cluster_exists(pool: &PgPool, id: Uuid) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM clusters WHERE id = $1)")
            .bind(id)
            .fetch_one(pool)
            .await?,
    )
}
