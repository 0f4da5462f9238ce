//! `CompareService.RepairCompareDiffs`: choose the replication task and
//! gateway, send the differences' documents to it for reconciliation, and
//! recheck them (see [`crate::compare::repair`]).

use std::time::Duration;

use tandem_proto::v1 as pb;
use tandem_proto::v1::gateway_command::Command;
use tonic::Status;

use super::convert;
use crate::api::Api;
use crate::compare::repair::recheck;
use crate::compare::{CompareSpec, Depth};
use crate::jobs::JobRecord;
use crate::migration::search::SearchClient;
use crate::services::store_status;
use crate::store::compare_diffs as diffs;
use crate::store::gateways::{self as gateway_store, Connection};
use crate::store::tasks::{self as task_store, TaskFilter, TaskRecord};
use crate::validate::{self, invalid};

/// Differences repaired per call unless `max_diffs` says otherwise; also
/// the most one gateway command carries.
const DEFAULT_MAX_DIFFS: u32 = 10_000;
/// Recheck time unless `recheck_timeout` says otherwise.
const DEFAULT_RECHECK: Duration = Duration::from_secs(60);
/// Longest recheck time.
const MAX_RECHECK: Duration = Duration::from_secs(600);
/// Differences listed as still differing at most.
const MAX_LISTED: usize = 100;

impl Api {
    pub(super) async fn repair_compare_diffs_impl(
        &self,
        request: pb::RepairCompareDiffsRequest,
        job: JobRecord,
    ) -> Result<pb::RepairCompareDiffsResponse, Status> {
        let mut kinds = Vec::new();
        for (i, kind) in request.kinds.iter().enumerate() {
            kinds.push(validate::enum_value::<pb::DiffKind>(
                &validate::index("kinds", i),
                *kind,
                false,
            )?);
        }
        let max_diffs = match request.max_diffs {
            0 => DEFAULT_MAX_DIFFS,
            n if n > DEFAULT_MAX_DIFFS => {
                return Err(invalid(
                    "max_diffs",
                    format!("at most {DEFAULT_MAX_DIFFS} per call"),
                ));
            }
            n => n,
        };
        let recheck_timeout = match request.recheck_timeout {
            None => DEFAULT_RECHECK,
            Some(d) => {
                let d = Duration::try_from(d)
                    .map_err(|_| invalid("recheck_timeout", "must not be negative"))?;
                if d > MAX_RECHECK {
                    return Err(invalid("recheck_timeout", "at most 10 minutes"));
                }
                if d.is_zero() { DEFAULT_RECHECK } else { d }
            }
        };
        let spec: CompareSpec = serde_json::from_value(job.spec.clone())
            .map_err(|e| Status::internal(format!("job {} has an unreadable spec: {e}", job.id)))?;
        if job.state != pb::JobState::Succeeded || spec.depth != Depth::Full {
            return Err(Status::failed_precondition(format!(
                "job_id: job {} is {:?} in {:?} mode; only a SUCCEEDED FULL comparison lists the documents to repair",
                job.id, job.state, spec.depth
            )));
        }
        let task = self.repair_task(&request.task_id, &spec).await?;
        let gateway = self.connected_gateway(&task).await?;

        let todo = diffs::unrepaired(&self.pool, job.id, &kinds, i64::from(max_diffs))
            .await
            .map_err(|e| store_status(e, "reading differences"))?;
        let mut response = pb::RepairCompareDiffsResponse {
            task_id: task.id.to_string(),
            gateway_id: gateway.id.clone(),
            requested: todo.len() as u64,
            ..Default::default()
        };
        if todo.is_empty() {
            return Ok(response);
        }
        let command = Command::ReconcileDocuments(pb::ReconcileDocumentsCommand {
            task_id: task.id.to_string(),
            documents: todo
                .iter()
                .map(|d| pb::DocumentRef {
                    index: d.index_name.clone(),
                    doc_type: String::new(),
                    id: d.doc_id.clone(),
                    routing: d.routing.clone(),
                })
                .collect(),
        });
        self.relay(
            &gateway,
            "RepairCompareDiffs",
            &task.id.to_string(),
            command,
        )
        .await?;
        tracing::warn!(
            audit = true,
            job_id = %job.id,
            task_id = %task.id,
            gateway_id = %gateway.id,
            documents = todo.len(),
            "differences of a comparison sent for repair"
        );

        let unavailable = |e: crate::jobs::JobFailure| {
            Status::unavailable(format!("rechecking the repaired documents: {e}"))
        };
        let source = SearchClient::connect(self, spec.source_cluster_id)
            .await
            .map_err(unavailable)?;
        let target = SearchClient::connect(self, spec.target_cluster_id)
            .await
            .map_err(unavailable)?;
        let repaired = recheck(
            &source,
            &target,
            &todo,
            spec.source_match(),
            spec.ignore_versions,
            recheck_timeout,
        )
        .await
        .map_err(unavailable)?;
        diffs::mark_repaired(&self.pool, job.id, &repaired)
            .await
            .map_err(|e| store_status(e, "marking differences repaired"))?;
        response.repaired = repaired.len() as u64;
        response.still_differing = todo
            .iter()
            .filter(|d| !repaired.contains(&d.id))
            .take(MAX_LISTED)
            .map(convert::diff)
            .collect::<Vec<pb::CompareDiff>>();
        Ok(response)
    }

    /// The task that replicates `spec`'s source (as current primary) to its
    /// target: `task_id` when given (checked), else the only such task.
    async fn repair_task(&self, task_id: &str, spec: &CompareSpec) -> Result<TaskRecord, Status> {
        let replicates = |task: &TaskRecord| {
            let (primary, backup) = match task.direction {
                pb::ReplicationDirection::Reversed => {
                    (task.backup_cluster_id, task.primary_cluster_id)
                }
                _ => (task.primary_cluster_id, task.backup_cluster_id),
            };
            primary == spec.source_cluster_id && backup == spec.target_cluster_id
        };
        if !task_id.is_empty() {
            let id = validate::id("task_id", task_id)?;
            let task = task_store::get(&self.pool, id)
                .await
                .map_err(|e| store_status(e, "reading the task"))?
                .ok_or_else(|| Status::not_found(format!("task_id: no task with id {id}")))?;
            if !replicates(&task) {
                return Err(Status::failed_precondition(format!(
                    "task_id: task {} does not replicate the job's source to its target in its current direction",
                    task.id
                )));
            }
            return Ok(task);
        }
        let filter = TaskFilter {
            cluster_id: Some(spec.source_cluster_id),
            ..Default::default()
        };
        let mut tasks: Vec<TaskRecord> = task_store::list(&self.pool, &filter, None, 1000)
            .await
            .map_err(|e| store_status(e, "listing tasks"))?
            .into_iter()
            .filter(|t| replicates(t) && t.state != pb::TaskState::Stopped)
            .collect();
        match tasks.len() {
            1 => Ok(tasks.remove(0)),
            0 => Err(Status::failed_precondition(
                "task_id: no replication task replicates the job's source to its target; create one (its gateways repair the documents) or name one",
            )),
            n => Err(Status::failed_precondition(format!(
                "task_id: {n} tasks replicate the job's source to its target; name the one to use"
            ))),
        }
    }

    /// A connected gateway of `task`.
    async fn connected_gateway(
        &self,
        task: &TaskRecord,
    ) -> Result<gateway_store::GatewayRecord, Status> {
        for id in &task.gateway_ids {
            if let Some(gateway) = gateway_store::get(&self.pool, id)
                .await
                .map_err(|e| store_status(e, "reading gateways"))?
                && gateway.connection == Connection::Connected
            {
                return Ok(gateway);
            }
        }
        Err(Status::unavailable(format!(
            "task_id: no gateway of task {} is connected; the repair runs on one of its gateways",
            task.id
        )))
    }
}
