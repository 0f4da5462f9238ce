//! Long-running jobs, split into partitions leased to workers through
//! Postgres. Kind-agnostic: migration jobs (and later comparison jobs) plug
//! in as a [`JobHandler`] per `kind`.
//!
//! # Design
//!
//! Tables (`migrations/0007_jobs.sql`): `jobs`, `job_partitions`,
//! `job_events`. A job carries a kind-specific `spec` (what to do, as
//! requested) and, once planned, a kind-specific `plan` (what planning
//! found); partitions carry a kind-specific `checkpoint` and `counters`.
//!
//! Lifecycle (`JobState` in `common.proto`):
//!
//! - `PENDING`: waiting to be planned. Every replica's [`worker`] looks for
//!   pending jobs and takes the job's own lease (`FOR UPDATE SKIP LOCKED`)
//!   to call [`JobHandler::plan`]; the plan and its partitions are stored
//!   in one transaction that moves the job to `RUNNING`. A planning failure
//!   marked retryable is retried (at most `max_attempts` times), otherwise
//!   the job is `FAILED`.
//! - `RUNNING`: workers lease partitions (`pending`, or `leased` with an
//!   expired lease) with `FOR UPDATE SKIP LOCKED`; each lease counts one
//!   attempt and names the replica's instance id as owner. The worker
//!   renews the lease in the background and calls
//!   [`Lease::checkpoint`] after every batch: the checkpoint is stored with
//!   the progress, the lease is extended, and the job's state comes back:
//!   when it is no longer `RUNNING` the partition is released in the same
//!   statement (voluntary releases do not count as attempts) and the
//!   handler stops. A failed attempt returns the partition to `pending`,
//!   or marks it `failed` once `max_attempts` is reached. A replica that
//!   dies keeps its leases until they expire; another replica then resumes
//!   the partitions from their checkpoints.
//! - `PAUSING` / `CANCELLING`: set by the API; leased partitions release at
//!   their next checkpoint; once no live lease remains, any replica's
//!   reconciliation moves the job to `PAUSED` / `CANCELLED`.
//! - `SUCCEEDED` / `FAILED`: set by reconciliation when every partition is
//!   `done` (or some `failed`).
//!
//! Writers must therefore tolerate a partition being processed twice from
//! the same checkpoint (a lease that expired while its owner was merely
//! slow): migration writes are idempotent thanks to external versioning.

pub mod store;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use tandem_proto::codes;
use tandem_proto::v1 as pb;
use uuid::Uuid;

/// A stored job.
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// Id.
    pub id: Uuid,
    /// Kind, naming its [`JobHandler`].
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
    /// Kind, naming its [`JobHandler`].
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

/// Progress of a partition, stored by [`Lease::checkpoint`].
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

/// How a partition run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every item was processed.
    Completed,
    /// A checkpoint answered [`LeaseStatus::Stop`].
    Stopped,
}

/// The lease of one partition, held by the worker running it.
#[derive(Debug, Clone)]
pub struct Lease {
    pool: PgPool,
    partition_id: Uuid,
    job_id: Uuid,
    owner: String,
}

impl Lease {
    /// Stores `progress`, extends the lease and says whether to go on.
    pub async fn checkpoint(
        &self,
        progress: &PartitionProgress,
    ) -> Result<LeaseStatus, JobFailure> {
        store::checkpoint(&self.pool, self.partition_id, &self.owner, progress)
            .await
            .map_err(|e| JobFailure::transient(codes::STORE_UNAVAILABLE, e.to_string()))
    }

    /// Records an event of the job about `unit`.
    pub async fn event(&self, event: store::NewJobEvent) {
        if let Err(err) = store::insert_event(&self.pool, self.job_id, &event).await {
            tracing::warn!(job_id = %self.job_id, error = %err, "cannot record a job event");
        }
    }
}

/// What a job kind does: plan a job into partitions, then process one
/// partition at a time.
#[tonic::async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// The `kind` stored with the jobs this handler runs.
    fn kind(&self) -> &'static str;

    /// Plans `job`: prepares what every partition needs (for a migration,
    /// the target indices) and lists the partitions. Called again after a
    /// crash during planning, so it must tolerate its own partial effects.
    async fn plan(&self, job: &JobRecord) -> Result<Plan, JobFailure>;

    /// Processes `partition` from its checkpoint, calling
    /// [`Lease::checkpoint`] after each batch and returning
    /// [`RunOutcome::Stopped`] as soon as it answers [`LeaseStatus::Stop`].
    async fn run(
        &self,
        job: &JobRecord,
        partition: &PartitionRecord,
        lease: &Lease,
    ) -> Result<RunOutcome, JobFailure>;
}

/// The handlers of every job kind, by kind.
pub type Handlers = Arc<BTreeMap<&'static str, Arc<dyn JobHandler>>>;

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

/// Whether `state` is terminal.
pub fn is_terminal(state: pb::JobState) -> bool {
    matches!(
        state,
        pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled
    )
}
