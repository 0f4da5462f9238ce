//! `tandem.v1.CompareService`: comparison jobs checking that a target
//! cluster holds the same documents as a source cluster, run by the job
//! workers of every replica (see [`crate::jobs`] and [`crate::compare`]).
//!
//! The handlers validate, store and read; they never talk to the clusters,
//! except RepairCompareDiffs, which rechecks the documents it had repaired
//! ([`crate::compare::repair`]).
//! Summaries are computed on every read from the partitions (one per index,
//! whose checkpoint holds the index's result and whose counters hold its
//! difference counts, see [`convert`]) and from `compare_diffs`.

mod convert;
mod repair;
mod watch;

use std::collections::BTreeMap;
use std::time::Duration;

use tandem_proto::v1 as pb;
use tandem_proto::v1::compare_service_server::CompareService;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::job_list::{JobListRequest, list_jobs};
use super::migration::check_indices;
use super::replication::check_ref_shape;
use super::store_status;
use crate::api::Api;
use crate::compare::{CompareSpec, Depth, KIND, MAX_PARTITIONS, read};
use crate::jobs::{JobRecord, NewJob};
use crate::migration::search::SearchClient;
use crate::pagination::PageRequest;
use crate::store::clusters as cluster_store;
use crate::store::compare_diffs::{self as diffs, DiffFilter};
use crate::store::jobs::{self as store, InsertOutcome};
use crate::validate::{self, invalid};

/// Partition lease of comparison jobs.
const LEASE: Duration = Duration::from_secs(60);
/// Largest batch size.
const MAX_BATCH: u32 = 10_000;
/// Most attempts per partition.
const MAX_ATTEMPTS: u32 = 100;
/// Longest recheck delay.
const MAX_RECHECK_DELAY: Duration = Duration::from_secs(3600);

#[tonic::async_trait]
impl CompareService for Api {
    async fn create_compare_job(
        &self,
        request: Request<pb::CreateCompareJobRequest>,
    ) -> Result<Response<pb::CreateCompareJobResponse>, Status> {
        let job = self.check_create_compare(request.get_ref()).await?;
        let outcome = store::insert(&self.pool, Uuid::new_v4(), &job)
            .await
            .map_err(|e| store_status(e, "creating the comparison job"))?;
        let record = match outcome {
            InsertOutcome::Created(record) => {
                tracing::info!(job_id = %record.id, name = %record.name, "comparison job created");
                *record
            }
            InsertOutcome::Existing(record) => *record,
        };
        Ok(Response::new(pb::CreateCompareJobResponse {
            job: Some(self.compare_snapshot(&record, true).await?),
        }))
    }

    async fn get_compare_job(
        &self,
        request: Request<pb::GetCompareJobRequest>,
    ) -> Result<Response<pb::GetCompareJobResponse>, Status> {
        let job = self.load_compare_job(&request.get_ref().job_id).await?;
        Ok(Response::new(pb::GetCompareJobResponse {
            job: Some(self.compare_snapshot(&job, true).await?),
        }))
    }

    async fn list_compare_jobs(
        &self,
        request: Request<pb::ListCompareJobsRequest>,
    ) -> Result<Response<pb::ListCompareJobsResponse>, Status> {
        let request = request.into_inner();
        let (records, next_page_token) = list_jobs(
            &self.pool,
            KIND,
            JobListRequest {
                states: &request.states,
                task_id: &request.task_id,
                cluster_id: &request.cluster_id,
                labels: &request.labels,
                page_size: request.page_size,
                page_token: &request.page_token,
            },
            "comparison jobs",
        )
        .await?;
        let mut jobs = Vec::with_capacity(records.len());
        for record in &records {
            jobs.push(self.compare_snapshot(record, false).await?);
        }
        Ok(Response::new(pb::ListCompareJobsResponse {
            jobs,
            next_page_token,
        }))
    }

    async fn cancel_compare_job(
        &self,
        request: Request<pb::CancelCompareJobRequest>,
    ) -> Result<Response<pb::CancelCompareJobResponse>, Status> {
        let job = self.load_compare_job(&request.get_ref().job_id).await?;
        let cancellable = [
            pb::JobState::Pending,
            pb::JobState::Running,
            pb::JobState::Pausing,
            pb::JobState::Paused,
        ];
        let job = match store::transition(
            &self.pool,
            KIND,
            job.id,
            &cancellable,
            pb::JobState::Cancelling,
        )
        .await
        .map_err(|e| store_status(e, &format!("cancelling comparison job {}", job.id)))?
        {
            Some(moved) => {
                tracing::info!(job_id = %moved.id, "comparison job cancelled");
                moved
            }
            // Terminal or already cancelling: returned unchanged.
            None => self.load_compare_job(&request.get_ref().job_id).await?,
        };
        Ok(Response::new(pb::CancelCompareJobResponse {
            job: Some(self.compare_snapshot(&job, true).await?),
        }))
    }

    async fn watch_compare_job(
        &self,
        request: Request<pb::WatchCompareJobRequest>,
    ) -> Result<Response<BoxStream<pb::WatchCompareJobResponse>>, Status> {
        let request = request.into_inner();
        let interval = validate::duration(
            "update_interval",
            request.update_interval.as_ref(),
            Duration::from_secs(3600),
        )?;
        let interval = if interval.is_zero() {
            Duration::from_secs(2)
        } else {
            interval.max(Duration::from_millis(500))
        };
        let job = self.load_compare_job(&request.job_id).await?;
        let first = self.compare_snapshot(&job, true).await?;
        Ok(Response::new(watch::spawn(
            self.clone(),
            job.id,
            first,
            interval,
            request.include_diffs,
        )))
    }

    async fn list_compare_diffs(
        &self,
        request: Request<pb::ListCompareDiffsRequest>,
    ) -> Result<Response<pb::ListCompareDiffsResponse>, Status> {
        let request = request.into_inner();
        validate::max_chars("index", &request.index, 255)?;
        let mut filter = DiffFilter {
            index: (!request.index.is_empty()).then(|| request.index.clone()),
            kinds: Vec::new(),
        };
        for (i, kind) in request.kinds.iter().enumerate() {
            let kind: pb::DiffKind =
                validate::enum_value(&validate::index("kinds", i), *kind, false)?;
            filter.kinds.push(kind);
        }
        let job = self.load_compare_job(&request.job_id).await?;
        let fingerprint = format!("{}|{}|{:?}", job.id, request.index, request.kinds);
        // Each listed document is read from both clusters: smaller pages.
        let page_size = match (request.include_documents, request.page_size) {
            (true, 0) => MAX_DOCUMENTS_PER_PAGE,
            (true, n) if n > 0 => n.min(MAX_DOCUMENTS_PER_PAGE),
            (_, n) => n,
        };
        let page =
            PageRequest::<(String, String)>::parse(page_size, &request.page_token, &fingerprint)?;
        let mut rows = diffs::list(
            &self.pool,
            job.id,
            &filter,
            page.after.clone(),
            page.fetch_limit(),
        )
        .await
        .map_err(|e| store_status(e, "listing differences"))?;
        let next_page_token = page.finish(
            &mut rows,
            |d| (d.index_name.clone(), d.doc_id.clone()),
            &fingerprint,
        );
        let total_size = diffs::count(&self.pool, job.id, &filter)
            .await
            .map_err(|e| store_status(e, "counting differences"))?;
        let mut listed: Vec<pb::CompareDiff> = rows.iter().map(convert::diff).collect();
        if request.include_documents {
            self.add_documents(&job, &mut listed).await?;
        }
        Ok(Response::new(pb::ListCompareDiffsResponse {
            diffs: listed,
            next_page_token,
            total_size,
        }))
    }

    async fn repair_compare_diffs(
        &self,
        request: Request<pb::RepairCompareDiffsRequest>,
    ) -> Result<Response<pb::RepairCompareDiffsResponse>, Status> {
        let request = request.into_inner();
        let job = self.load_compare_job(&request.job_id).await?;
        Ok(Response::new(
            self.repair_compare_diffs_impl(request, job).await?,
        ))
    }
}

/// Most differences a page lists with their documents.
const MAX_DOCUMENTS_PER_PAGE: i32 = 100;

impl Api {
    /// Reads the documents of `listed` from both clusters of `job` now
    /// (one search per index and side) into their `source_document` and
    /// `target_document`.
    async fn add_documents(
        &self,
        job: &JobRecord,
        listed: &mut [pb::CompareDiff],
    ) -> Result<(), Status> {
        let spec = crate::compare::spec_of(job)
            .map_err(|e| Status::internal(format!("comparison job {}: {e}", job.id)))?;
        let mut by_index: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for diff in listed.iter() {
            by_index
                .entry(diff.index.clone())
                .or_default()
                .push(diff.doc_id.clone());
        }
        for (side, cluster_id) in [
            ("source", spec.source_cluster_id),
            ("target", spec.target_cluster_id),
        ] {
            let unavailable = |e: crate::jobs::JobFailure| {
                Status::unavailable(format!(
                    "reading the documents from the {side} cluster: {e}"
                ))
            };
            let client = SearchClient::connect(self, cluster_id)
                .await
                .map_err(unavailable)?;
            for (index, ids) in &by_index {
                let mut found = read::sources(&client, index, ids)
                    .await
                    .map_err(unavailable)?;
                for diff in listed.iter_mut().filter(|d| &d.index == index) {
                    let document = found.remove(&diff.doc_id);
                    match side {
                        "source" => diff.source_document = document,
                        _ => diff.target_document = document,
                    }
                }
            }
        }
        Ok(())
    }

    /// The comparison job whose id is the request field `job_id`.
    async fn load_compare_job(&self, job_id: &str) -> Result<JobRecord, Status> {
        let id = validate::id("job_id", job_id)?;
        store::get(&self.pool, KIND, id)
            .await
            .map_err(|e| store_status(e, &format!("reading comparison job {id}")))?
            .ok_or_else(|| Status::not_found(format!("job_id: no comparison job with id {id}")))
    }

    /// The `CompareJob` of `job`, with per-index summaries when
    /// `per_index`.
    pub(crate) async fn compare_snapshot(
        &self,
        job: &JobRecord,
        per_index: bool,
    ) -> Result<pb::CompareJob, Status> {
        let partitions = store::all_partitions(&self.pool, job.id)
            .await
            .map_err(|e| store_status(e, &format!("reading partitions of job {}", job.id)))?;
        let recorded = diffs::count(&self.pool, job.id, &DiffFilter::default())
            .await
            .map_err(|e| store_status(e, &format!("counting differences of job {}", job.id)))?;
        let mut names = BTreeMap::new();
        for id in &job.cluster_ids {
            if let Ok(Some(cluster)) = cluster_store::get(&self.pool, *id).await {
                names.insert(*id, cluster.settings.name);
            }
        }
        Ok(convert::job(job, &partitions, recorded, &names, per_index))
    }

    /// Checks a CreateCompareJobRequest and builds the job to insert.
    async fn check_create_compare(
        &self,
        request: &pb::CreateCompareJobRequest,
    ) -> Result<NewJob, Status> {
        validate::max_chars("request_id", &request.request_id, 128)?;
        if !request.name.is_empty() {
            validate::resource_name("name", &request.name)?;
        }
        validate::labels("labels", &request.labels)?;
        let source = request
            .source
            .as_ref()
            .ok_or_else(|| invalid("source", "required"))?;
        let target = request
            .target
            .as_ref()
            .ok_or_else(|| invalid("target", "required"))?;
        check_ref_shape("source", source)?;
        check_ref_shape("target", target)?;
        let indices = check_indices(request.indices.as_ref())?;
        let options = request.options.unwrap_or_default();
        let depth =
            match validate::enum_value::<pb::CompareMode>("options.mode", options.mode, true)? {
                pb::CompareMode::CountOnly => Depth::CountOnly,
                pb::CompareMode::Digest => Depth::Digest,
                pb::CompareMode::Unspecified | pb::CompareMode::Full => Depth::Full,
            };
        if options.partitions_per_index > MAX_PARTITIONS {
            return Err(invalid(
                "options.partitions_per_index",
                format!("must be at most {MAX_PARTITIONS}"),
            ));
        }
        if options.batch_size > MAX_BATCH {
            return Err(invalid(
                "options.batch_size",
                format!("must be at most {MAX_BATCH}"),
            ));
        }
        if options.max_partition_attempts > MAX_ATTEMPTS {
            return Err(invalid(
                "options.max_partition_attempts",
                format!("must be at most {MAX_ATTEMPTS}"),
            ));
        }
        let recheck = validate::duration(
            "options.recheck_delay",
            options.recheck_delay.as_ref(),
            MAX_RECHECK_DELAY,
        )?;
        let task_id = if request.task_id.is_empty() {
            None
        } else {
            Some(validate::id("task_id", &request.task_id)?)
        };
        let source_cluster_id = self.resolve_cluster("source", source).await?;
        let target_cluster_id = self.resolve_cluster("target", target).await?;
        if source_cluster_id == target_cluster_id {
            return Err(invalid(
                "target",
                format!("must differ from source (both are cluster {source_cluster_id})"),
            ));
        }
        if task_id.is_some() {
            let task = self.load_task(&request.task_id).await?;
            let (primary, backup) = match task.direction {
                pb::ReplicationDirection::Reversed => {
                    (task.backup_cluster_id, task.primary_cluster_id)
                }
                _ => (task.primary_cluster_id, task.backup_cluster_id),
            };
            if primary != source_cluster_id || backup != target_cluster_id {
                return Err(Status::failed_precondition(format!(
                    "task_id: task {} replicates from cluster {primary} to {backup}; \
                     the job must compare its current primary (source) with its backup (target)",
                    task.id
                )));
            }
        }
        let spec = CompareSpec {
            source_cluster_id,
            target_cluster_id,
            indices,
            depth,
            partitions_per_index: options.partitions_per_index,
            batch_size: options.batch_size,
            max_docs_per_second: options.max_docs_per_second,
            max_diffs: options.max_diffs,
            // A recheck delay below 1 ms would read as "default" once stored.
            recheck_delay_ms: (recheck.as_millis() as u64).max(u64::from(!recheck.is_zero())),
            ignore_versions: options.ignore_versions,
            strict_source: options.strict_source,
        };
        let name = if request.name.is_empty() {
            format!("compare-{}", &Uuid::new_v4().simple().to_string()[..8])
        } else {
            request.name.clone()
        };
        Ok(NewJob {
            kind: KIND,
            name,
            labels: request.labels.clone().into_iter().collect(),
            spec: serde_json::to_value(&spec).map_err(|e| Status::internal(e.to_string()))?,
            cluster_ids: vec![source_cluster_id, target_cluster_id],
            task_id,
            max_attempts: match options.max_partition_attempts {
                0 => 5,
                n => n,
            },
            lease: LEASE,
            request_id: (!request.request_id.is_empty()).then(|| request.request_id.clone()),
        })
    }
}
