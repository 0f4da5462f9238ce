//! The `jobs`, `job_partitions` and `job_events` tables (see
//! `migrations/0007_jobs.sql` and the lifecycle in [`crate::jobs`]).
//!
//! This module owns the records those rows become ([`JobRecord`],
//! [`PartitionRecord`], [`JobFailure`]...) and the inputs it stores
//! ([`NewJob`], [`Plan`], [`PartitionProgress`], [`NewJobEvent`]);
//! [`crate::jobs`] re-exports them, so the dependency goes one way: the job
//! framework uses the store, never the reverse.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Transaction};
use tandem_proto::codes;
use tandem_proto::v1 as pb;
use uuid::Uuid;

use super::{StoreError, finish};
use tandem_proto::time::timestamp;

/// A stored job.
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// Id.
    pub id: Uuid,
    /// Kind, naming its [`crate::jobs::JobHandler`].
    pub kind: String,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// State.
    pub state: pb::JobState,
    /// What the job does (kind-specific).
    pub spec: Value,
    /// What planning found (kind-specific); `None` before planning.
    pub plan: Option<Value>,
    /// Clusters the job reads or writes.
    pub cluster_ids: Vec<Uuid>,
    /// Replication task the job belongs to.
    pub task_id: Option<Uuid>,
    /// Attempts per partition.
    pub max_attempts: u32,
    /// Lease duration of a partition.
    pub lease: Duration,
    /// Why the job failed.
    pub error: Option<JobFailure>,
    /// Idempotency key of the creating request.
    pub request_id: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When planning finished.
    pub started_at: Option<DateTime<Utc>>,
    /// When a terminal state was reached.
    pub finished_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A job to insert.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Kind, naming its [`crate::jobs::JobHandler`].
    pub kind: &'static str,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// What the job does (kind-specific).
    pub spec: Value,
    /// Clusters the job reads or writes.
    pub cluster_ids: Vec<Uuid>,
    /// Replication task the job belongs to.
    pub task_id: Option<Uuid>,
    /// Attempts per partition (at least 1).
    pub max_attempts: u32,
    /// Lease duration of a partition.
    pub lease: Duration,
    /// Idempotency key.
    pub request_id: Option<String>,
}

/// A partition of a job.
#[derive(Debug, Clone)]
pub struct PartitionRecord {
    /// Id.
    pub id: Uuid,
    /// Job.
    pub job_id: Uuid,
    /// Unit of work (an index for migrations).
    pub unit: String,
    /// Slice number.
    pub slice_id: u32,
    /// Number of slices of the unit.
    pub slice_count: u32,
    /// State.
    pub state: pb::PartitionState,
    /// Lease holder.
    pub lease_owner: Option<String>,
    /// Lease expiry.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Attempts so far.
    pub attempts: u32,
    /// Whether the last holder released the partition right after storing
    /// its checkpoint, with nothing in flight past it (a pause), rather
    /// than losing its lease (a crash).
    pub released_at_checkpoint: bool,
    /// Items expected (0 when unknown).
    pub docs_total: u64,
    /// Items processed.
    pub docs_done: u64,
    /// Bytes processed.
    pub bytes_done: u64,
    /// Kind-specific counters.
    pub counters: BTreeMap<String, u64>,
    /// Kind-specific resume position.
    pub checkpoint: Option<Value>,
    /// Last failure.
    pub error: Option<PartitionError>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// The last failure of a partition.
#[derive(Debug, Clone)]
pub struct PartitionError {
    /// UPPER_SNAKE_CASE reason.
    pub reason: String,
    /// Explanation.
    pub message: String,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// A partition produced by planning.
#[derive(Debug, Clone)]
pub struct NewPartition {
    /// Unit of work.
    pub unit: String,
    /// Slice number.
    pub slice_id: u32,
    /// Number of slices of the unit.
    pub slice_count: u32,
    /// Items expected (0 when unknown).
    pub docs_total: u64,
}

/// What planning produced.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Kind-specific findings, stored as the job's `plan`.
    pub details: Value,
    /// Partitions to process. None means the job succeeds at once.
    pub partitions: Vec<NewPartition>,
}

/// Why planning, a partition or a job failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    /// UPPER_SNAKE_CASE reason, e.g. `UPSTREAM_UNREACHABLE`.
    pub reason: String,
    /// Explanation.
    pub message: String,
    /// Context such as `index` or `http_status`.
    pub metadata: BTreeMap<String, String>,
    /// Whether another attempt may succeed.
    pub retryable: bool,
}

impl JobFailure {
    /// A failure another attempt may cure (network, overloaded cluster).
    pub fn transient(reason: &str, message: impl Into<String>) -> JobFailure {
        JobFailure {
            reason: reason.to_string(),
            message: message.into(),
            metadata: BTreeMap::new(),
            retryable: true,
        }
    }

    /// A failure no retry will cure (refused metadata, bad request).
    pub fn permanent(reason: &str, message: impl Into<String>) -> JobFailure {
        JobFailure {
            retryable: false,
            ..JobFailure::transient(reason, message)
        }
    }

    /// Adds a metadata entry.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> JobFailure {
        self.metadata.insert(key.to_string(), value.into());
        self
    }
}

impl std::fmt::Display for JobFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// Progress of a partition, stored by [`checkpoint`].
#[derive(Debug, Clone, Default)]
pub struct PartitionProgress {
    /// Where to resume.
    pub checkpoint: Value,
    /// Items processed.
    pub docs_done: u64,
    /// Bytes processed.
    pub bytes_done: u64,
    /// Items expected, when learned while processing.
    pub docs_total: Option<u64>,
    /// Kind-specific counters.
    pub counters: BTreeMap<String, u64>,
}

/// What a checkpoint tells the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStatus {
    /// Keep going; `active` partitions of the job are leased right now
    /// (this one included), to share job-wide rate limits.
    Continue {
        /// Leased partitions of the job.
        active: u32,
    },
    /// Stop now: the job is no longer running (the partition was released)
    /// or the lease was lost to another worker.
    Stop,
}

/// Stored name of a job state.
pub fn state_name(state: pb::JobState) -> &'static str {
    match state {
        pb::JobState::Unspecified | pb::JobState::Pending => "pending",
        pb::JobState::Running => "running",
        pb::JobState::Pausing => "pausing",
        pb::JobState::Paused => "paused",
        pb::JobState::Cancelling => "cancelling",
        pb::JobState::Cancelled => "cancelled",
        pb::JobState::Succeeded => "succeeded",
        pb::JobState::Failed => "failed",
    }
}

const JOB_COLUMNS: &str = "id, kind, name, labels, state, spec, plan, cluster_ids, task_id, \
     max_attempts, lease_ms, error_reason, error_message, error_metadata, request_id, \
     created_at, started_at, finished_at, updated_at";

const PARTITION_COLUMNS: &str = "id, job_id, unit, slice_id, slice_count, state, lease_owner, \
     lease_expires_at, attempts, released_at_checkpoint, docs_total, docs_done, bytes_done, counters, checkpoint, \
     error_reason, error_message, error_at, updated_at";

#[derive(sqlx::FromRow)]
struct JobRow {
    id: Uuid,
    kind: String,
    name: String,
    labels: Json<BTreeMap<String, String>>,
    state: String,
    spec: Value,
    plan: Option<Value>,
    cluster_ids: Vec<Uuid>,
    task_id: Option<Uuid>,
    max_attempts: i32,
    lease_ms: i64,
    error_reason: Option<String>,
    error_message: Option<String>,
    error_metadata: Option<Json<BTreeMap<String, String>>>,
    request_id: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

fn parse_state(text: &str) -> Result<pb::JobState, StoreError> {
    Ok(match text {
        "pending" => pb::JobState::Pending,
        "running" => pb::JobState::Running,
        "pausing" => pb::JobState::Pausing,
        "paused" => pb::JobState::Paused,
        "cancelling" => pb::JobState::Cancelling,
        "cancelled" => pb::JobState::Cancelled,
        "succeeded" => pb::JobState::Succeeded,
        "failed" => pb::JobState::Failed,
        other => return Err(StoreError::Corrupt(format!("unknown job state {other:?}"))),
    })
}

fn partition_state_name(state: pb::PartitionState) -> &'static str {
    match state {
        pb::PartitionState::Unspecified | pb::PartitionState::Pending => "pending",
        pb::PartitionState::Leased => "leased",
        pb::PartitionState::Done => "done",
        pb::PartitionState::Failed => "failed",
    }
}

fn parse_partition_state(text: &str) -> Result<pb::PartitionState, StoreError> {
    Ok(match text {
        "pending" => pb::PartitionState::Pending,
        "leased" => pb::PartitionState::Leased,
        "done" => pb::PartitionState::Done,
        "failed" => pb::PartitionState::Failed,
        other => {
            return Err(StoreError::Corrupt(format!(
                "unknown partition state {other:?}"
            )));
        }
    })
}

impl TryFrom<JobRow> for JobRecord {
    type Error = StoreError;

    fn try_from(row: JobRow) -> Result<JobRecord, StoreError> {
        Ok(JobRecord {
            id: row.id,
            kind: row.kind,
            name: row.name,
            labels: row.labels.0,
            state: parse_state(&row.state)?,
            spec: row.spec,
            plan: row.plan,
            cluster_ids: row.cluster_ids,
            task_id: row.task_id,
            max_attempts: row.max_attempts.max(1) as u32,
            lease: std::time::Duration::from_millis(row.lease_ms.max(1) as u64),
            error: row.error_reason.map(|reason| JobFailure {
                reason,
                message: row.error_message.unwrap_or_default(),
                metadata: row.error_metadata.map(|m| m.0).unwrap_or_default(),
                retryable: false,
            }),
            request_id: row.request_id,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct PartitionRow {
    id: Uuid,
    job_id: Uuid,
    unit: String,
    slice_id: i32,
    slice_count: i32,
    state: String,
    lease_owner: Option<String>,
    lease_expires_at: Option<DateTime<Utc>>,
    attempts: i32,
    released_at_checkpoint: bool,
    docs_total: i64,
    docs_done: i64,
    bytes_done: i64,
    counters: Json<BTreeMap<String, u64>>,
    checkpoint: Option<Value>,
    error_reason: Option<String>,
    error_message: Option<String>,
    error_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<PartitionRow> for PartitionRecord {
    type Error = StoreError;

    fn try_from(row: PartitionRow) -> Result<PartitionRecord, StoreError> {
        Ok(PartitionRecord {
            id: row.id,
            job_id: row.job_id,
            unit: row.unit,
            slice_id: row.slice_id.max(0) as u32,
            slice_count: row.slice_count.max(1) as u32,
            state: parse_partition_state(&row.state)?,
            lease_owner: row.lease_owner,
            lease_expires_at: row.lease_expires_at,
            attempts: row.attempts.max(0) as u32,
            released_at_checkpoint: row.released_at_checkpoint,
            docs_total: row.docs_total.max(0) as u64,
            docs_done: row.docs_done.max(0) as u64,
            bytes_done: row.bytes_done.max(0) as u64,
            counters: row.counters.0,
            checkpoint: row.checkpoint,
            error: row.error_reason.map(|reason| PartitionError {
                reason,
                message: row.error_message.unwrap_or_default(),
                at: row.error_at.unwrap_or(row.updated_at),
            }),
            updated_at: row.updated_at,
        })
    }
}

fn jobs(rows: Vec<JobRow>) -> Result<Vec<JobRecord>, StoreError> {
    rows.into_iter().map(JobRecord::try_from).collect()
}

fn partitions(rows: Vec<PartitionRow>) -> Result<Vec<PartitionRecord>, StoreError> {
    rows.into_iter().map(PartitionRecord::try_from).collect()
}

/// An event to store.
#[derive(Debug, Clone)]
pub struct NewJobEvent {
    /// Severity.
    pub severity: pb::EventSeverity,
    /// UPPER_SNAKE_CASE reason.
    pub reason: String,
    /// Explanation.
    pub message: String,
    /// Unit concerned (index), or empty.
    pub unit: String,
    /// Details.
    pub attributes: BTreeMap<String, String>,
}

impl NewJobEvent {
    /// An event of `severity`.
    pub fn new(severity: pb::EventSeverity, reason: &str, message: impl Into<String>) -> Self {
        NewJobEvent {
            severity,
            reason: reason.to_string(),
            message: message.into(),
            unit: String::new(),
            attributes: BTreeMap::new(),
        }
    }

    /// Names the unit concerned.
    pub fn unit(mut self, unit: &str) -> Self {
        self.unit = unit.to_string();
        self
    }

    /// Adds an attribute.
    pub fn attribute(mut self, key: &str, value: impl Into<String>) -> Self {
        self.attributes.insert(key.to_string(), value.into());
        self
    }

    fn state_change(from: &str, to: &str) -> Self {
        let severity = if to == "failed" {
            pb::EventSeverity::Error
        } else {
            pb::EventSeverity::Info
        };
        NewJobEvent::new(
            severity,
            codes::JOB_STATE_CHANGED,
            format!("job {} -> {}", from.to_uppercase(), to.to_uppercase()),
        )
        .attribute("from_state", from.to_uppercase())
        .attribute("to_state", to.to_uppercase())
    }
}

/// A stored event.
#[derive(Debug, Clone)]
pub struct JobEvent {
    /// Order of storage.
    pub event_no: i64,
    /// The event, as the API returns it.
    pub event: pb::Event,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    event_no: i64,
    id: Uuid,
    job_id: Uuid,
    occurred_at: DateTime<Utc>,
    severity: String,
    reason: String,
    message: String,
    unit: String,
    attributes: Json<BTreeMap<String, String>>,
}

fn severity_name(severity: pb::EventSeverity) -> &'static str {
    match severity {
        pb::EventSeverity::Error => "error",
        pb::EventSeverity::Warning => "warning",
        _ => "info",
    }
}

impl From<EventRow> for JobEvent {
    fn from(row: EventRow) -> JobEvent {
        let severity = match row.severity.as_str() {
            "error" => pb::EventSeverity::Error,
            "warning" => pb::EventSeverity::Warning,
            _ => pb::EventSeverity::Info,
        };
        JobEvent {
            event_no: row.event_no,
            event: pb::Event {
                id: row.id.to_string(),
                sequence: row.event_no.max(0) as u64,
                occurred_at: Some(timestamp(row.occurred_at)),
                severity: severity as i32,
                reason: row.reason,
                message: row.message,
                job_id: row.job_id.to_string(),
                index: row.unit,
                attributes: row.attributes.0.into_iter().collect(),
                ..Default::default()
            },
        }
    }
}

/// Stores `event` for `job_id`.
pub async fn insert_event(
    pool: &PgPool,
    job_id: Uuid,
    event: &NewJobEvent,
) -> Result<(), StoreError> {
    insert_event_with(pool, job_id, event).await
}

async fn insert_event_with<'e, E>(
    executor: E,
    job_id: Uuid,
    event: &NewJobEvent,
) -> Result<(), StoreError>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query(
        "INSERT INTO job_events (job_id, severity, reason, message, unit, attributes) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(job_id)
    .bind(severity_name(event.severity))
    .bind(&event.reason)
    .bind(&event.message)
    .bind(&event.unit)
    .bind(Json(&event.attributes))
    .execute(executor)
    .await?;
    Ok(())
}

/// Events of `job_id` stored after `after` (event number), oldest first.
pub async fn events(
    pool: &PgPool,
    job_id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<JobEvent>, StoreError> {
    let rows: Vec<EventRow> = sqlx::query_as(
        "SELECT event_no, id, job_id, occurred_at, severity, reason, message, unit, attributes \
         FROM job_events WHERE job_id = $1 AND event_no > $2 ORDER BY event_no LIMIT $3",
    )
    .bind(job_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(JobEvent::from).collect())
}

/// Result of [`insert`].
#[derive(Debug)]
pub enum InsertOutcome {
    /// A new job.
    Created(Box<JobRecord>),
    /// The job created by an earlier request with the same `request_id`.
    Existing(Box<JobRecord>),
}

/// Inserts `job` as PENDING, unless a job of the same kind was created
/// with the same `request_id` in the last 24 hours.
pub async fn insert(pool: &PgPool, id: Uuid, job: &NewJob) -> Result<InsertOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let result = async {
        if let Some(request_id) = &job.request_id {
            // Serialise concurrent retries of the same request.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("job-request/{request_id}"))
                .execute(&mut *tx)
                .await?;
            let existing: Option<JobRow> = sqlx::query_as(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE kind = $1 AND request_id = $2"
            ))
            .bind(job.kind)
            .bind(request_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = existing {
                if row.created_at > Utc::now() - chrono::Duration::hours(24) {
                    return Ok(InsertOutcome::Existing(Box::new(row.try_into()?)));
                }
                // An old key may be used again: the old job forgets it.
                sqlx::query("UPDATE jobs SET request_id = NULL WHERE id = $1")
                    .bind(row.id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let row: JobRow = sqlx::query_as(&format!(
            "INSERT INTO jobs (id, kind, name, labels, state, spec, cluster_ids, task_id, \
             max_attempts, lease_ms, request_id) \
             VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10) RETURNING {JOB_COLUMNS}"
        ))
        .bind(id)
        .bind(job.kind)
        .bind(&job.name)
        .bind(Json(&job.labels))
        .bind(&job.spec)
        .bind(&job.cluster_ids)
        .bind(job.task_id)
        .bind(job.max_attempts.clamp(1, i32::MAX as u32) as i32)
        .bind(job.lease.as_millis().clamp(1, i64::MAX as u128) as i64)
        .bind(&job.request_id)
        .fetch_one(&mut *tx)
        .await?;
        insert_event_with(
            &mut *tx,
            id,
            &NewJobEvent::new(pb::EventSeverity::Info, codes::JOB_CREATED, "job created"),
        )
        .await?;
        Ok(InsertOutcome::Created(Box::new(row.try_into()?)))
    }
    .await;
    finish(tx, "insert job", result).await
}

/// The job `id` of `kind`.
pub async fn get(pool: &PgPool, kind: &str, id: Uuid) -> Result<Option<JobRecord>, StoreError> {
    let row: Option<JobRow> = sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND kind = $2"
    ))
    .bind(id)
    .bind(kind)
    .fetch_optional(pool)
    .await?;
    row.map(JobRecord::try_from).transpose()
}

/// The job `id`, whatever its kind.
pub async fn get_any(pool: &PgPool, id: Uuid) -> Result<Option<JobRecord>, StoreError> {
    let row: Option<JobRow> =
        sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?;
    row.map(JobRecord::try_from).transpose()
}

/// Filters of [`list`]; empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only these states.
    pub states: Vec<pb::JobState>,
    /// Only jobs of this replication task.
    pub task_id: Option<Uuid>,
    /// Only jobs using this cluster.
    pub cluster_id: Option<Uuid>,
    /// Only jobs carrying all these labels.
    pub labels: BTreeMap<String, String>,
}

/// Jobs of `kind`, newest first, after the key `(created_at micros, id)`.
pub async fn list(
    pool: &PgPool,
    kind: &str,
    filter: &JobFilter,
    after: Option<(i64, Uuid)>,
    limit: i64,
) -> Result<Vec<JobRecord>, StoreError> {
    let states: Vec<&str> = filter.states.iter().map(|s| state_name(*s)).collect();
    let (after_micros, after_id) = after.unwrap_or((i64::MAX, Uuid::max()));
    let rows: Vec<JobRow> = sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs \
         WHERE kind = $1 \
           AND (cardinality($2::text[]) = 0 OR state = ANY($2)) \
           AND ($3::uuid IS NULL OR task_id = $3) \
           AND ($4::uuid IS NULL OR $4 = ANY(cluster_ids)) \
           AND labels @> $5 \
           AND (created_at, id) < (to_timestamp($6::double precision / 1000000), $7) \
         ORDER BY created_at DESC, id DESC LIMIT $8"
    ))
    .bind(kind)
    .bind(&states)
    .bind(filter.task_id)
    .bind(filter.cluster_id)
    .bind(Json(&filter.labels))
    .bind(after_micros as f64)
    .bind(after_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    jobs(rows)
}

/// Every partition of `job_id`, by unit then slice.
pub async fn all_partitions(
    pool: &PgPool,
    job_id: Uuid,
) -> Result<Vec<PartitionRecord>, StoreError> {
    let rows: Vec<PartitionRow> = sqlx::query_as(&format!(
        "SELECT {PARTITION_COLUMNS} FROM job_partitions WHERE job_id = $1 \
         ORDER BY unit, slice_id"
    ))
    .bind(job_id)
    .fetch_all(pool)
    .await?;
    partitions(rows)
}

/// Partitions of `job_id` by unit then slice, after the key
/// `(unit, slice_id)`, optionally of one unit and some states.
pub async fn list_partitions(
    pool: &PgPool,
    job_id: Uuid,
    unit: Option<&str>,
    states: &[pb::PartitionState],
    after: Option<(String, i32)>,
    limit: i64,
) -> Result<Vec<PartitionRecord>, StoreError> {
    let states: Vec<&str> = states.iter().map(|s| partition_state_name(*s)).collect();
    let (after_unit, after_slice) = match after {
        Some((unit, slice)) => (Some(unit), slice),
        None => (None, -1),
    };
    let rows: Vec<PartitionRow> = sqlx::query_as(&format!(
        "SELECT {PARTITION_COLUMNS} FROM job_partitions \
         WHERE job_id = $1 \
           AND ($2::text IS NULL OR unit = $2) \
           AND (cardinality($3::text[]) = 0 OR state = ANY($3)) \
           AND ($4::text IS NULL OR (unit, slice_id) > ($4, $5)) \
         ORDER BY unit, slice_id LIMIT $6"
    ))
    .bind(job_id)
    .bind(unit)
    .bind(&states)
    .bind(after_unit)
    .bind(after_slice)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    partitions(rows)
}

/// Moves job `id` of `kind` from one of `from` to `to` (with an event);
/// `None` when the job is in another state.
pub async fn transition(
    pool: &PgPool,
    kind: &str,
    id: Uuid,
    from: &[pb::JobState],
    to: pb::JobState,
) -> Result<Option<JobRecord>, StoreError> {
    let from: Vec<&str> = from.iter().map(|s| state_name(*s)).collect();
    let mut tx = pool.begin().await?;
    let result = async {
        let previous: Option<String> = sqlx::query_scalar(
            "SELECT state FROM jobs WHERE id = $1 AND kind = $2 AND state = ANY($3) FOR UPDATE",
        )
        .bind(id)
        .bind(kind)
        .bind(&from)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(previous) = previous else {
            return Ok(None);
        };
        // A job resumed before it was ever planned goes back to planning.
        let row: JobRow = sqlx::query_as(&format!(
            "UPDATE jobs SET state = CASE WHEN $2 = 'running' AND plan IS NULL THEN 'pending' ELSE $2 END, \
             updated_at = now(), \
             finished_at = CASE WHEN $2 IN ('cancelled', 'succeeded', 'failed') THEN now() ELSE finished_at END \
             WHERE id = $1 RETURNING {JOB_COLUMNS}"
        ))
        .bind(id)
        .bind(state_name(to))
        .fetch_one(&mut *tx)
        .await?;
        insert_event_with(
            &mut *tx,
            id,
            &NewJobEvent::state_change(&previous, &row.state),
        )
        .await?;
        Ok(Some(row.try_into()?))
    }
    .await;
    finish(tx, "job transition", result).await
}

/// Returns the failed partitions of `job_id` to PENDING with fresh
/// attempts (they resume from their checkpoints).
pub async fn retry_failed(pool: &PgPool, job_id: Uuid) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE job_partitions SET state = 'pending', attempts = 0, lease_owner = NULL, \
         lease_expires_at = NULL, updated_at = now() WHERE job_id = $1 AND state = 'failed'",
    )
    .bind(job_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Takes the planning lease of one PENDING job of the given kinds.
pub async fn claim_planning(
    pool: &PgPool,
    owner: &str,
    kinds: &[&str],
    lease: std::time::Duration,
) -> Result<Option<JobRecord>, StoreError> {
    let row: Option<JobRow> = sqlx::query_as(&format!(
        "WITH candidate AS ( \
           SELECT id FROM jobs \
           WHERE state = 'pending' AND kind = ANY($2) \
             AND (lease_expires_at IS NULL OR lease_expires_at < now()) \
           ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
         UPDATE jobs j SET lease_owner = $1, \
           lease_expires_at = now() + $3 * interval '1 millisecond', \
           plan_attempts = plan_attempts + 1 \
         FROM candidate c WHERE j.id = c.id RETURNING {}",
        JOB_COLUMNS
            .split(", ")
            .map(|c| format!("j.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .bind(owner)
    .bind(kinds)
    .bind(lease.as_millis() as i64)
    .fetch_optional(pool)
    .await?;
    row.map(JobRecord::try_from).transpose()
}

/// Stores the plan of job `id` (planned by `owner`) and its partitions, and
/// starts it (unless it was paused or cancelled meanwhile). `false` when
/// the planning lease was lost.
pub async fn finish_planning(
    pool: &PgPool,
    id: Uuid,
    owner: &str,
    plan: &Plan,
) -> Result<bool, StoreError> {
    let mut tx: Transaction<'static, Postgres> = pool.begin().await?;
    let result = async {
        let state: Option<String> = sqlx::query_scalar(
            "SELECT state FROM jobs WHERE id = $1 AND lease_owner = $2 FOR UPDATE",
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(state) = state else {
            return Ok(false);
        };
        for partition in &plan.partitions {
            insert_partition(&mut tx, id, partition).await?;
        }
        let next = if state == "pending" {
            "running"
        } else {
            &state
        };
        sqlx::query(
            "UPDATE jobs SET plan = $2, state = $3, lease_owner = NULL, lease_expires_at = NULL, \
             started_at = COALESCE(started_at, now()), updated_at = now() WHERE id = $1",
        )
        .bind(id)
        .bind(&plan.details)
        .bind(next)
        .execute(&mut *tx)
        .await?;
        if next != state {
            insert_event_with(&mut *tx, id, &NewJobEvent::state_change(&state, next)).await?;
        }
        Ok(true)
    }
    .await;
    finish(tx, "finish planning", result).await
}

async fn insert_partition(
    tx: &mut Transaction<'static, Postgres>,
    job_id: Uuid,
    partition: &NewPartition,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO job_partitions (id, job_id, unit, slice_id, slice_count, state, docs_total) \
         VALUES ($1, $2, $3, $4, $5, 'pending', $6) ON CONFLICT (job_id, unit, slice_id) DO NOTHING",
    )
    .bind(Uuid::new_v4())
    .bind(job_id)
    .bind(&partition.unit)
    .bind(partition.slice_id as i32)
    .bind(partition.slice_count as i32)
    .bind(partition.docs_total.min(i64::MAX as u64) as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records a planning failure of job `id`: the job FAILED when `failure`
/// is permanent or the attempts are exhausted, otherwise planned again
/// after the lease's expiry.
pub async fn fail_planning(
    pool: &PgPool,
    id: Uuid,
    owner: &str,
    failure: &JobFailure,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let result = async {
        let row: Option<(String, i32, i32)> = sqlx::query_as(
            "SELECT state, plan_attempts, max_attempts FROM jobs \
             WHERE id = $1 AND lease_owner = $2 FOR UPDATE",
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((state, attempts, max)) = row else {
            return Ok(());
        };
        if failure.retryable && attempts < max && state == "pending" {
            // Keep the lease until it expires: the retry waits that long.
            insert_event_with(
                &mut *tx,
                id,
                &NewJobEvent::new(
                    pb::EventSeverity::Warning,
                    codes::PLANNING_RETRY,
                    format!("planning attempt {attempts} failed: {failure}"),
                ),
            )
            .await?;
            return Ok(());
        }
        set_failed(&mut tx, id, &state, failure).await
    }
    .await;
    finish(tx, "fail planning", result).await
}

async fn set_failed(
    tx: &mut Transaction<'static, Postgres>,
    id: Uuid,
    from: &str,
    failure: &JobFailure,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE jobs SET state = 'failed', error_reason = $2, error_message = $3, \
         error_metadata = $4, lease_owner = NULL, lease_expires_at = NULL, \
         finished_at = now(), updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(&failure.reason)
    .bind(&failure.message)
    .bind(Json(&failure.metadata))
    .execute(&mut **tx)
    .await?;
    insert_event_with(
        &mut **tx,
        id,
        &NewJobEvent::state_change(from, "failed").attribute("reason", &failure.reason),
    )
    .await
}

/// Leases one available partition of a RUNNING job of the given kinds to
/// `owner`, counting an attempt.
pub async fn lease_partition(
    pool: &PgPool,
    owner: &str,
    kinds: &[&str],
) -> Result<Option<PartitionRecord>, StoreError> {
    let row: Option<PartitionRow> = sqlx::query_as(&format!(
        "WITH candidate AS ( \
           SELECT p.id FROM job_partitions p JOIN jobs j ON j.id = p.job_id \
           WHERE j.state = 'running' AND j.kind = ANY($2) AND p.attempts < j.max_attempts \
             AND (p.state = 'pending' OR (p.state = 'leased' AND p.lease_expires_at < now())) \
           ORDER BY j.created_at, p.unit, p.slice_id \
           LIMIT 1 FOR UPDATE OF p SKIP LOCKED) \
         UPDATE job_partitions p SET state = 'leased', lease_owner = $1, \
           lease_expires_at = now() + j.lease_ms * interval '1 millisecond', \
           attempts = p.attempts + 1, updated_at = now(), released_at_checkpoint = FALSE \
         FROM candidate c, jobs j WHERE p.id = c.id AND j.id = p.job_id \
         RETURNING {}",
        PARTITION_COLUMNS
            .split(", ")
            .map(|c| format!("p.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .bind(owner)
    .bind(kinds)
    .fetch_optional(pool)
    .await?;
    row.map(PartitionRecord::try_from).transpose()
}

/// Stores `progress` of partition `id` leased by `owner`, extends the
/// lease while the job runs and releases the partition otherwise.
pub async fn checkpoint(
    pool: &PgPool,
    id: Uuid,
    owner: &str,
    progress: &PartitionProgress,
) -> Result<LeaseStatus, StoreError> {
    let row: Option<(String, i64)> = sqlx::query_as(
        "UPDATE job_partitions p SET checkpoint = $3, docs_done = $4, bytes_done = $5, \
           counters = $6, docs_total = COALESCE($7, p.docs_total), updated_at = now(), \
           state = CASE WHEN j.state = 'running' THEN 'leased' ELSE 'pending' END, \
           lease_owner = CASE WHEN j.state = 'running' THEN p.lease_owner END, \
           lease_expires_at = CASE WHEN j.state = 'running' \
             THEN now() + j.lease_ms * interval '1 millisecond' END, \
           attempts = CASE WHEN j.state = 'running' THEN p.attempts ELSE p.attempts - 1 END, \
           released_at_checkpoint = j.state <> 'running' \
         FROM jobs j \
         WHERE p.id = $1 AND p.lease_owner = $2 AND p.state = 'leased' AND j.id = p.job_id \
         RETURNING j.state, (SELECT count(*) FROM job_partitions q \
                             WHERE q.job_id = p.job_id AND q.state = 'leased')",
    )
    .bind(id)
    .bind(owner)
    .bind(&progress.checkpoint)
    .bind(progress.docs_done.min(i64::MAX as u64) as i64)
    .bind(progress.bytes_done.min(i64::MAX as u64) as i64)
    .bind(Json(&progress.counters))
    .bind(progress.docs_total.map(|t| t.min(i64::MAX as u64) as i64))
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some((state, active)) if state == "running" => LeaseStatus::Continue {
            active: active.clamp(1, i64::from(u32::MAX)) as u32,
        },
        _ => LeaseStatus::Stop,
    })
}

/// Extends the lease of partition `id` held by `owner`; `false` when it is
/// no longer held.
pub async fn renew(pool: &PgPool, id: Uuid, owner: &str) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE job_partitions p SET lease_expires_at = now() + j.lease_ms * interval '1 millisecond' \
         FROM jobs j WHERE p.id = $1 AND p.lease_owner = $2 AND p.state = 'leased' AND j.id = p.job_id",
    )
    .bind(id)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks partition `id` held by `owner` DONE.
pub async fn complete(pool: &PgPool, id: Uuid, owner: &str) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE job_partitions SET state = 'done', lease_owner = NULL, lease_expires_at = NULL, \
         updated_at = now() WHERE id = $1 AND lease_owner = $2 AND state = 'leased'",
    )
    .bind(id)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a failed attempt of partition `id` held by `owner`: back to
/// PENDING, or FAILED when `failure` is permanent or the attempts are
/// exhausted. Returns the new state.
pub async fn fail_attempt(
    pool: &PgPool,
    id: Uuid,
    owner: &str,
    failure: &JobFailure,
) -> Result<Option<pb::PartitionState>, StoreError> {
    let state: Option<String> = sqlx::query_scalar(
        "UPDATE job_partitions p SET \
           state = CASE WHEN $3 AND p.attempts < j.max_attempts THEN 'pending' ELSE 'failed' END, \
           lease_owner = NULL, lease_expires_at = NULL, error_reason = $4, error_message = $5, \
           error_at = now(), updated_at = now() \
         FROM jobs j WHERE p.id = $1 AND p.lease_owner = $2 AND p.state = 'leased' AND j.id = p.job_id \
         RETURNING p.state",
    )
    .bind(id)
    .bind(owner)
    .bind(failure.retryable)
    .bind(&failure.reason)
    .bind(&failure.message)
    .fetch_optional(pool)
    .await?;
    state.as_deref().map(parse_partition_state).transpose()
}

/// Releases every partition and planning lease held by `owner` (a replica
/// shutting down): they are available to other replicas at once.
pub async fn release_owned(pool: &PgPool, owner: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE job_partitions SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL, \
         attempts = GREATEST(attempts - 1, 0), updated_at = now() \
         WHERE lease_owner = $1 AND state = 'leased'",
    )
    .bind(owner)
    .execute(pool)
    .await?;
    sqlx::query(
        "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL, \
         plan_attempts = GREATEST(plan_attempts - 1, 0) WHERE lease_owner = $1",
    )
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(())
}

/// Applies the transitions that follow from partitions: expired leases of
/// stopped jobs released, expired leases out of attempts failed, jobs
/// without work left moved to SUCCEEDED / FAILED / PAUSED / CANCELLED.
/// Returns how many jobs changed state.
pub async fn reconcile(pool: &PgPool) -> Result<usize, StoreError> {
    sqlx::query(
        "UPDATE job_partitions p SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL, \
         updated_at = now() FROM jobs j \
         WHERE j.id = p.job_id AND j.state <> 'running' AND p.state = 'leased' \
           AND p.lease_expires_at < now()",
    )
    .execute(pool)
    .await?;
    sqlx::query(
        "UPDATE job_partitions p SET state = 'failed', lease_owner = NULL, lease_expires_at = NULL, \
         error_reason = $1, \
         error_message = 'the worker holding the partition stopped renewing its lease ' || \
                         'and every attempt is used', \
         error_at = now(), updated_at = now() FROM jobs j \
         WHERE j.id = p.job_id AND p.state = 'leased' AND p.lease_expires_at < now() \
           AND p.attempts >= j.max_attempts",
    )
    .bind(codes::LEASE_EXPIRED)
    .execute(pool)
    .await?;
    let candidates: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT j.id, j.state FROM jobs j \
         WHERE j.state IN ('running', 'pausing', 'cancelling') \
           AND NOT EXISTS (SELECT 1 FROM job_partitions p WHERE p.job_id = j.id \
                           AND (p.state = 'leased' OR (j.state = 'running' AND p.state = 'pending'))) \
           AND (j.lease_expires_at IS NULL OR j.lease_expires_at < now())",
    )
    .fetch_all(pool)
    .await?;
    let mut changed = 0;
    for (id, state) in candidates {
        let mut tx = pool.begin().await?;
        let result = settle(&mut tx, id, &state).await;
        if finish(tx, "settle job", result).await? {
            changed += 1;
        }
    }
    Ok(changed)
}

/// Moves job `id` (seen in `state` without live work) to its next state.
async fn settle(
    tx: &mut Transaction<'static, Postgres>,
    id: Uuid,
    state: &str,
) -> Result<bool, StoreError> {
    let current: Option<String> =
        sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    if current.as_deref() != Some(state) {
        return Ok(false);
    }
    let next = match state {
        "pausing" => "paused",
        "cancelling" => "cancelled",
        _ => {
            let failed: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT unit, error_reason, error_message FROM job_partitions \
                 WHERE job_id = $1 AND state = 'failed' ORDER BY unit, slice_id",
            )
            .bind(id)
            .fetch_all(&mut **tx)
            .await?;
            if let Some((unit, reason, message)) = failed.first() {
                let failure = JobFailure::permanent(
                    codes::PARTITION_FAILED,
                    format!(
                        "{} partition(s) failed; first: {unit}: {}",
                        failed.len(),
                        message.as_deref().unwrap_or("unknown error")
                    ),
                )
                .with("index", unit.clone())
                .with("partition_reason", reason.clone().unwrap_or_default());
                set_failed(tx, id, state, &failure).await?;
                return Ok(true);
            }
            "succeeded"
        }
    };
    sqlx::query(
        "UPDATE jobs SET state = $2, updated_at = now(), \
         finished_at = CASE WHEN $2 IN ('cancelled', 'succeeded') THEN now() END WHERE id = $1",
    )
    .bind(id)
    .bind(next)
    .execute(&mut **tx)
    .await?;
    insert_event_with(&mut **tx, id, &NewJobEvent::state_change(state, next)).await?;
    Ok(true)
}
