//! Long-running jobs, split into partitions leased to workers through
//! Postgres. Kind-agnostic: migration jobs (and later comparison jobs) plug
//! in as a [`JobHandler`] per `kind`.
//!
//! # Design
//!
//! Tables (`migrations/0007_jobs.sql`): `jobs`, `job_partitions`,
//! `job_events`, read and written by [`crate::store::jobs`], which also
//! owns the records (re-exported here). A job carries a kind-specific
//! `spec` (what to do, as requested) and, once planned, a kind-specific
//! `plan` (what planning found); partitions carry a kind-specific
//! `checkpoint` and `counters`.
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

pub mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;

use sqlx::PgPool;
use tandem_proto::codes;
use tandem_proto::v1 as pb;
use uuid::Uuid;

use crate::store::jobs as store;
pub use crate::store::jobs::{
    JobFailure, JobRecord, LeaseStatus, NewJob, NewJobEvent, NewPartition, PartitionError,
    PartitionProgress, PartitionRecord, Plan, state_name,
};

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
    pub async fn event(&self, event: NewJobEvent) {
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

/// Whether `state` is terminal.
pub fn is_terminal(state: pb::JobState) -> bool {
    matches!(
        state,
        pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled
    )
}
