//! The job worker every control-plane replica runs: plans pending jobs,
//! leases partitions (at most [`WorkerOptions::concurrency`] at a time),
//! runs them with their [`JobHandler`], renews their leases, and reconciles
//! job states. See [`crate::jobs`] for the lifecycle.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tandem_proto::codes;
use tandem_proto::v1 as pb;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::{Handlers, JobFailure, JobHandler, Lease, PartitionRecord, RunOutcome};
use crate::store::jobs::{self as store, NewJobEvent};

/// Tuning of a worker.
#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    /// Partitions run at the same time by this replica.
    pub concurrency: usize,
    /// Pause between two looks for work when there was none.
    pub poll: Duration,
    /// Planning lease of a job.
    pub planning_lease: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: 4,
            poll: Duration::from_millis(500),
            planning_lease: Duration::from_secs(120),
        }
    }
}

/// A running worker; [`WorkerHandle::stop`] ends it.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl WorkerHandle {
    /// Stops running partitions and releases their leases, so other
    /// replicas resume them at once instead of after lease expiry.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// Starts the worker of this replica (`owner` = its instance id).
pub fn spawn(
    pool: PgPool,
    owner: String,
    handlers: Handlers,
    options: WorkerOptions,
) -> WorkerHandle {
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(run(pool, owner, handlers, options, stopped));
    WorkerHandle {
        stop: Some(stop),
        task,
    }
}

async fn run(
    pool: PgPool,
    owner: String,
    handlers: Handlers,
    options: WorkerOptions,
    mut stopped: oneshot::Receiver<()>,
) {
    let kinds: Vec<&'static str> = handlers.keys().copied().collect();
    let mut running: JoinSet<()> = JoinSet::new();
    loop {
        if let Err(err) = store::reconcile(&pool).await {
            tracing::warn!(error = %err, "job reconciliation failed");
        }
        let mut found = false;
        if running.len() < options.concurrency {
            match store::claim_planning(&pool, &owner, &kinds, options.planning_lease).await {
                Ok(Some(job)) => {
                    found = true;
                    if let Some(handler) = handlers.get(job.kind.as_str()).cloned() {
                        let (pool, owner) = (pool.clone(), owner.clone());
                        running.spawn(async move { plan(&pool, &owner, handler, job).await });
                    }
                }
                Ok(None) => {}
                Err(err) => tracing::warn!(error = %err, "cannot look for jobs to plan"),
            }
        }
        while running.len() < options.concurrency {
            match store::lease_partition(&pool, &owner, &kinds).await {
                Ok(Some(partition)) => {
                    found = true;
                    let (pool, owner, handlers) = (pool.clone(), owner.clone(), handlers.clone());
                    running
                        .spawn(async move { process(&pool, &owner, &handlers, partition).await });
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot lease a partition");
                    break;
                }
            }
        }
        let pause = if found {
            Duration::from_millis(50)
        } else {
            options.poll
        };
        tokio::select! {
            _ = &mut stopped => break,
            _ = tokio::time::sleep(pause) => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    running.shutdown().await;
    if let Err(err) = store::release_owned(&pool, &owner).await {
        tracing::warn!(error = %err, "cannot release the leases of this replica");
    }
}

async fn plan(pool: &PgPool, owner: &str, handler: Arc<dyn JobHandler>, job: super::JobRecord) {
    tracing::info!(job_id = %job.id, kind = %job.kind, "planning job");
    let outcome = handler.plan(&job).await;
    let result = match &outcome {
        Ok(plan) => store::finish_planning(pool, job.id, owner, plan)
            .await
            .map(|_| ()),
        Err(failure) => {
            tracing::warn!(job_id = %job.id, %failure, "planning failed");
            store::fail_planning(pool, job.id, owner, failure).await
        }
    };
    if let Err(err) = result {
        tracing::warn!(job_id = %job.id, error = %err, "cannot store the planning outcome");
    }
}

async fn process(pool: &PgPool, owner: &str, handlers: &Handlers, partition: PartitionRecord) {
    let job = match store::get_any(pool, partition.job_id).await {
        Ok(Some(job)) => job,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(job_id = %partition.job_id, error = %err, "cannot read the job of a leased partition");
            return;
        }
    };
    let Some(handler) = handlers.get(job.kind.as_str()).cloned() else {
        return;
    };
    let lease = Lease {
        pool: pool.clone(),
        partition_id: partition.id,
        job_id: job.id,
        owner: owner.to_string(),
    };
    tracing::debug!(job_id = %job.id, unit = %partition.unit, slice = partition.slice_id, attempt = partition.attempts, "partition leased");
    let renewal = {
        let (pool, owner, id) = (pool.clone(), owner.to_string(), partition.id);
        let every = (job.lease / 3).max(Duration::from_millis(200));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match store::renew(&pool, id, &owner).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(err) => tracing::warn!(error = %err, "cannot renew a partition lease"),
                }
            }
        })
    };
    let outcome = handler.run(&job, &partition, &lease).await;
    renewal.abort();
    let result = match outcome {
        Ok(RunOutcome::Completed) => store::complete(pool, partition.id, owner).await.map(|_| ()),
        Ok(RunOutcome::Stopped) => Ok(()),
        Err(failure) => record_failure(pool, owner, &partition, &failure).await,
    };
    if let Err(err) = result {
        tracing::warn!(job_id = %job.id, unit = %partition.unit, error = %err, "cannot store a partition outcome");
    }
}

async fn record_failure(
    pool: &PgPool,
    owner: &str,
    partition: &PartitionRecord,
    failure: &JobFailure,
) -> Result<(), crate::store::StoreError> {
    tracing::warn!(job_id = %partition.job_id, unit = %partition.unit, slice = partition.slice_id, %failure, "partition attempt failed");
    let state = store::fail_attempt(pool, partition.id, owner, failure).await?;
    if state == Some(pb::PartitionState::Failed) {
        let event = NewJobEvent::new(
            pb::EventSeverity::Error,
            codes::PARTITION_FAILED,
            format!(
                "slice {} of {} failed: {failure}",
                partition.slice_id, partition.unit
            ),
        )
        .unit(&partition.unit)
        .attribute("slice_id", partition.slice_id.to_string())
        .attribute("reason", &failure.reason);
        store::insert_event(pool, partition.job_id, &event).await?;
    }
    Ok(())
}
