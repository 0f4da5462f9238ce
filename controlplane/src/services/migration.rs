//! `tandem.v1.MigrationService`: full-copy jobs from a source cluster to a
//! target cluster, run by the job workers of every replica (see
//! [`crate::jobs`] and [`crate::migration`]).
//!
//! The handlers validate, store and read; they never talk to the clusters
//! themselves (except through the stored probe of the source, to refuse
//! `READ_STRATEGY_POINT_IN_TIME` early). Progress is computed from the
//! partitions on every read ([`progress`]).

mod convert;
mod progress;
mod watch;

use std::collections::BTreeMap;
use std::time::Duration;

use tandem_proto::v1 as pb;
use tandem_proto::v1::migration_service_server::MigrationService;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::job_list::{JobListRequest, list_jobs};
use super::replication::check_ref_shape;
use super::store_status;
use crate::api::Api;
use crate::jobs::{JobRecord, NewJob};
use crate::migration::snapshot::SnapshotSpec;
use crate::migration::snapshot::rule::{self as snapshot_rule, Release};
use crate::migration::{
    CopyMode, IndexSelection, KIND, MetadataSpec, MigrationSpec, ReadMode, TypeRewrite,
    TypeRewriteMode,
};
use crate::pagination::PageRequest;
use crate::store::clusters as cluster_store;
use crate::store::jobs::{self as store, InsertOutcome};
use crate::validate::{self, invalid};

/// Longest keep-alive of scrolls and points in time.
const MAX_KEEP_ALIVE: Duration = Duration::from_secs(24 * 3600);
/// Longest partition lease.
const MAX_LEASE: Duration = Duration::from_secs(3600);
/// Shortest partition lease.
const MIN_LEASE: Duration = Duration::from_secs(1);
/// Default partition lease.
const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Largest batch size.
const MAX_BATCH: u32 = 10_000;
/// Most slices per index.
const MAX_SLICES: u32 = 1024;
/// Most attempts per partition.
const MAX_ATTEMPTS: u32 = 100;

#[tonic::async_trait]
impl MigrationService for Api {
    async fn create_migration_job(
        &self,
        request: Request<pb::CreateMigrationJobRequest>,
    ) -> Result<Response<pb::CreateMigrationJobResponse>, Status> {
        let request = request.into_inner();
        let job = self.check_create_job(&request).await?;
        let id = Uuid::new_v4();
        let outcome = store::insert(&self.pool, id, &job)
            .await
            .map_err(|e| store_status(e, "creating the migration job"))?;
        let record = match outcome {
            InsertOutcome::Created(record) => {
                tracing::info!(job_id = %record.id, name = %record.name, "migration job created");
                *record
            }
            InsertOutcome::Existing(record) => *record,
        };
        Ok(Response::new(pb::CreateMigrationJobResponse {
            job: Some(self.migration_snapshot(&record, true).await?),
        }))
    }

    async fn get_migration_job(
        &self,
        request: Request<pb::GetMigrationJobRequest>,
    ) -> Result<Response<pb::GetMigrationJobResponse>, Status> {
        let job = self.load_job(&request.get_ref().job_id).await?;
        Ok(Response::new(pb::GetMigrationJobResponse {
            job: Some(self.migration_snapshot(&job, true).await?),
        }))
    }

    async fn list_migration_jobs(
        &self,
        request: Request<pb::ListMigrationJobsRequest>,
    ) -> Result<Response<pb::ListMigrationJobsResponse>, Status> {
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
            "migration jobs",
        )
        .await?;
        let mut jobs = Vec::with_capacity(records.len());
        for record in &records {
            jobs.push(self.migration_snapshot(record, false).await?);
        }
        Ok(Response::new(pb::ListMigrationJobsResponse {
            jobs,
            next_page_token,
        }))
    }

    async fn pause_migration_job(
        &self,
        request: Request<pb::PauseMigrationJobRequest>,
    ) -> Result<Response<pb::PauseMigrationJobResponse>, Status> {
        let job = self
            .move_job(
                &request.get_ref().job_id,
                "pause",
                &[pb::JobState::Pending, pb::JobState::Running],
                &[pb::JobState::Pausing, pb::JobState::Paused],
                pb::JobState::Pausing,
            )
            .await?;
        Ok(Response::new(pb::PauseMigrationJobResponse {
            job: Some(self.migration_snapshot(&job, true).await?),
        }))
    }

    async fn resume_migration_job(
        &self,
        request: Request<pb::ResumeMigrationJobRequest>,
    ) -> Result<Response<pb::ResumeMigrationJobResponse>, Status> {
        let request = request.into_inner();
        let job = self
            .move_job(
                &request.job_id,
                "resume",
                &[pb::JobState::Pausing, pb::JobState::Paused],
                &[pb::JobState::Running, pb::JobState::Pending],
                pb::JobState::Running,
            )
            .await?;
        if request.retry_failed_partitions {
            let retried = store::retry_failed(&self.pool, job.id)
                .await
                .map_err(|e| store_status(e, "retrying failed partitions"))?;
            tracing::info!(job_id = %job.id, retried, "failed partitions retried");
        }
        Ok(Response::new(pb::ResumeMigrationJobResponse {
            job: Some(self.migration_snapshot(&job, true).await?),
        }))
    }

    async fn cancel_migration_job(
        &self,
        request: Request<pb::CancelMigrationJobRequest>,
    ) -> Result<Response<pb::CancelMigrationJobResponse>, Status> {
        let job = self
            .move_job(
                &request.get_ref().job_id,
                "cancel",
                &[
                    pb::JobState::Pending,
                    pb::JobState::Running,
                    pb::JobState::Pausing,
                    pb::JobState::Paused,
                ],
                &[
                    pb::JobState::Cancelling,
                    pb::JobState::Cancelled,
                    pb::JobState::Succeeded,
                    pb::JobState::Failed,
                ],
                pb::JobState::Cancelling,
            )
            .await?;
        Ok(Response::new(pb::CancelMigrationJobResponse {
            job: Some(self.migration_snapshot(&job, true).await?),
        }))
    }

    async fn watch_migration_job(
        &self,
        request: Request<pb::WatchMigrationJobRequest>,
    ) -> Result<Response<BoxStream<pb::WatchMigrationJobResponse>>, Status> {
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
        let job = self.load_job(&request.job_id).await?;
        let first = self.migration_snapshot(&job, true).await?;
        Ok(Response::new(watch::spawn(
            self.clone(),
            job.id,
            first,
            interval,
        )))
    }

    async fn list_migration_partitions(
        &self,
        request: Request<pb::ListMigrationPartitionsRequest>,
    ) -> Result<Response<pb::ListMigrationPartitionsResponse>, Status> {
        let request = request.into_inner();
        let mut states = Vec::new();
        for (i, state) in request.states.iter().enumerate() {
            let state: pb::PartitionState =
                validate::enum_value(&validate::index("states", i), *state, false)?;
            states.push(state);
        }
        validate::max_chars("index", &request.index, 255)?;
        let job = self.load_job(&request.job_id).await?;
        let fingerprint = format!("{}|{}|{:?}", job.id, request.index, request.states);
        let page = PageRequest::<(String, i32)>::parse(
            request.page_size,
            &request.page_token,
            &fingerprint,
        )?;
        let unit = (!request.index.is_empty()).then_some(request.index.as_str());
        let mut partitions = store::list_partitions(
            &self.pool,
            job.id,
            unit,
            &states,
            page.after.clone(),
            page.fetch_limit(),
        )
        .await
        .map_err(|e| store_status(e, "listing partitions"))?;
        let next_page_token = page.finish(
            &mut partitions,
            |p| (p.unit.clone(), p.slice_id as i32),
            &fingerprint,
        );
        Ok(Response::new(pb::ListMigrationPartitionsResponse {
            partitions: partitions.iter().map(convert::partition).collect(),
            next_page_token,
        }))
    }
}

impl Api {
    /// The migration job whose id is the request field `job_id`.
    async fn load_job(&self, job_id: &str) -> Result<JobRecord, Status> {
        let id = validate::id("job_id", job_id)?;
        store::get(&self.pool, KIND, id)
            .await
            .map_err(|e| store_status(e, &format!("reading migration job {id}")))?
            .ok_or_else(|| Status::not_found(format!("job_id: no migration job with id {id}")))
    }

    /// Moves the job `job_id` from one of `from` to `to`; jobs already in
    /// one of `unchanged` are returned as they are; other states give
    /// FAILED_PRECONDITION.
    async fn move_job(
        &self,
        job_id: &str,
        action: &str,
        from: &[pb::JobState],
        unchanged: &[pb::JobState],
        to: pb::JobState,
    ) -> Result<JobRecord, Status> {
        let job = self.load_job(job_id).await?;
        if let Some(moved) = store::transition(&self.pool, KIND, job.id, from, to)
            .await
            .map_err(|e| store_status(e, &format!("changing migration job {}", job.id)))?
        {
            tracing::info!(job_id = %moved.id, state = ?moved.state, "migration job {action}");
            return Ok(moved);
        }
        // Read again: the state may have moved since the first read.
        let job = self.load_job(job_id).await?;
        if unchanged.contains(&job.state) {
            return Ok(job);
        }
        let allowed: Vec<&str> = from.iter().map(|s| s.as_str_name()).collect();
        Err(Status::failed_precondition(format!(
            "job_id: cannot {action} a job in state {}; allowed from {}",
            job.state.as_str_name(),
            allowed.join(", ")
        )))
    }

    /// The `MigrationJob` of `job`, with per-index progress when
    /// `per_index`.
    pub(crate) async fn migration_snapshot(
        &self,
        job: &JobRecord,
        per_index: bool,
    ) -> Result<pb::MigrationJob, Status> {
        let partitions = store::all_partitions(&self.pool, job.id)
            .await
            .map_err(|e| store_status(e, &format!("reading partitions of job {}", job.id)))?;
        let mut names = BTreeMap::new();
        for id in &job.cluster_ids {
            if let Ok(Some(cluster)) = cluster_store::get(&self.pool, *id).await {
                names.insert(*id, cluster.settings.name);
            }
        }
        Ok(convert::job(job, &partitions, &names, per_index))
    }

    /// Checks a CreateMigrationJobRequest and builds the job to insert.
    async fn check_create_job(
        &self,
        request: &pb::CreateMigrationJobRequest,
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
        let options = request.options.clone().unwrap_or_default();
        let (mut spec, max_attempts, lease) = check_options(&options, indices)?;
        let task_id = if request.task_id.is_empty() {
            None
        } else {
            Some(validate::id("task_id", &request.task_id)?)
        };

        spec.source_cluster_id = self.resolve_cluster("source", source).await?;
        spec.target_cluster_id = self.resolve_cluster("target", target).await?;
        if spec.source_cluster_id == spec.target_cluster_id {
            return Err(invalid(
                "target",
                format!(
                    "must differ from source (both are cluster {})",
                    spec.source_cluster_id
                ),
            ));
        }
        if task_id.is_some() {
            self.check_task(&request.task_id, &spec).await?;
        }
        if spec.mode == CopyMode::Snapshot {
            self.check_snapshot_versions(&spec).await?;
        } else if spec.read_mode == ReadMode::PointInTime {
            self.check_point_in_time(spec.source_cluster_id).await?;
        }
        let name = if request.name.is_empty() {
            format!("migration-{}", &Uuid::new_v4().simple().to_string()[..8])
        } else {
            request.name.clone()
        };
        Ok(NewJob {
            kind: KIND,
            name,
            labels: request.labels.clone().into_iter().collect(),
            spec: serde_json::to_value(&spec).map_err(|e| Status::internal(e.to_string()))?,
            cluster_ids: vec![spec.source_cluster_id, spec.target_cluster_id],
            task_id,
            max_attempts,
            lease,
            request_id: (!request.request_id.is_empty()).then(|| request.request_id.clone()),
        })
    }

    /// FAILED_PRECONDITION unless the task records on every gateway and
    /// currently replicates from the source to the target.
    async fn check_task(&self, task_id: &str, spec: &MigrationSpec) -> Result<(), Status> {
        let task = self.load_task(task_id).await?;
        let (primary, backup) = match task.direction {
            pb::ReplicationDirection::Reversed => (task.backup_cluster_id, task.primary_cluster_id),
            _ => (task.primary_cluster_id, task.backup_cluster_id),
        };
        if primary != spec.source_cluster_id || backup != spec.target_cluster_id {
            return Err(Status::failed_precondition(format!(
                "task_id: task {} replicates from cluster {primary} to {backup}; \
                 the job must copy from its primary to its backup",
                task.id
            )));
        }
        let view = self.view(&task).await?;
        let lagging: Vec<&str> = view
            .gateways
            .iter()
            .filter(|g| !g.in_sync)
            .map(|g| g.gateway_id.as_str())
            .collect();
        if !lagging.is_empty() {
            return Err(Status::failed_precondition(format!(
                "task_id: gateways {} do not record for task {} yet (not in_sync); \
                 writes made during the copy could be missed",
                lagging.join(", "),
                task.id
            )));
        }
        Ok(())
    }

    /// FAILED_PRECONDITION, naming the rule, when the clusters' last probes
    /// already show that the target cannot restore the source's snapshots
    /// (of indices the source creates today; older indices are checked at
    /// planning, one by one).
    async fn check_snapshot_versions(&self, spec: &MigrationSpec) -> Result<(), Status> {
        let mut releases = Vec::new();
        for id in [spec.source_cluster_id, spec.target_cluster_id] {
            let record = cluster_store::get(&self.pool, id)
                .await
                .map_err(|e| store_status(e, "reading a cluster"))?;
            match record.and_then(|r| r.last_probe).and_then(|p| p.version) {
                Some(version) => releases.push(Release::of(&version)),
                None => return Ok(()),
            }
        }
        let (source, target) = (releases[0], releases[1]);
        if let Some(reason) = snapshot_rule::snapshot_refusal(source, target)
            .or_else(|| snapshot_rule::index_refusal(source, target))
        {
            return Err(Status::failed_precondition(format!(
                "options.mode: MIGRATION_MODE_SNAPSHOT is impossible from {source} to {target}: \
                 {reason}. Rule: {}. Use MIGRATION_MODE_DOCUMENTS",
                snapshot_rule::RULE
            )));
        }
        Ok(())
    }

    /// FAILED_PRECONDITION when the source's last probe shows a version
    /// without point in time.
    async fn check_point_in_time(&self, source: Uuid) -> Result<(), Status> {
        let record = cluster_store::get(&self.pool, source)
            .await
            .map_err(|e| store_status(e, "reading the source cluster"))?;
        let Some(version) = record.and_then(|r| r.last_probe).and_then(|p| p.version) else {
            return Ok(());
        };
        let supported = match version.distribution {
            crate::probe::Distribution::Elasticsearch => {
                version.major > 7 || (version.major == 7 && version.minor >= 10)
            }
            crate::probe::Distribution::OpenSearch => {
                version.major > 2 || (version.major == 2 && version.minor >= 4)
            }
        };
        if !supported {
            return Err(Status::failed_precondition(format!(
                "options.read_strategy: the source runs {} {}, without point in time \
                 (Elasticsearch 7.10+, OpenSearch 2.4+); use READ_STRATEGY_SCROLL or AUTO",
                version.distribution.as_str(),
                version.number
            )));
        }
        Ok(())
    }
}

pub(crate) fn check_indices(filter: Option<&pb::IndexFilter>) -> Result<IndexSelection, Status> {
    let filter = filter.cloned().unwrap_or_default();
    for (list, values) in [
        ("indices.include", &filter.include),
        ("indices.exclude", &filter.exclude),
    ] {
        for (i, value) in values.iter().enumerate() {
            let path = validate::index(list, i);
            validate::required(&path, value)?;
            validate::max_chars(&path, value, 255)?;
            if value.contains(',') || value.contains('/') || value.contains(' ') {
                return Err(invalid(
                    path,
                    format!(
                        "{value:?}: one index name or pattern per entry, without ',', '/' or spaces"
                    ),
                ));
            }
        }
    }
    Ok(IndexSelection {
        include: filter.include,
        exclude: filter.exclude,
        include_hidden: filter.include_hidden,
    })
}

/// The spec (clusters left nil), attempts and lease of `options`.
fn check_options(
    options: &pb::MigrationOptions,
    indices: IndexSelection,
) -> Result<(MigrationSpec, u32, Duration), Status> {
    if options.slices_per_index > MAX_SLICES {
        return Err(invalid(
            "options.slices_per_index",
            format!("must be at most {MAX_SLICES}"),
        ));
    }
    if options.batch_size > MAX_BATCH {
        return Err(invalid(
            "options.batch_size",
            format!("must be at most {MAX_BATCH}"),
        ));
    }
    let read_mode = match validate::enum_value::<pb::ReadStrategy>(
        "options.read_strategy",
        options.read_strategy,
        true,
    )? {
        pb::ReadStrategy::Unspecified | pb::ReadStrategy::Auto => ReadMode::Auto,
        pb::ReadStrategy::Scroll => ReadMode::Scroll,
        pb::ReadStrategy::PointInTime => ReadMode::PointInTime,
    };
    let keep_alive = validate::duration(
        "options.keep_alive",
        options.keep_alive.as_ref(),
        MAX_KEEP_ALIVE,
    )?;
    if !keep_alive.is_zero() && keep_alive < Duration::from_secs(1) {
        return Err(invalid("options.keep_alive", "must be at least 1s"));
    }
    if options.max_partition_attempts > MAX_ATTEMPTS {
        return Err(invalid(
            "options.max_partition_attempts",
            format!("must be at most {MAX_ATTEMPTS}"),
        ));
    }
    let lease = validate::duration(
        "options.lease_duration",
        options.lease_duration.as_ref(),
        MAX_LEASE,
    )?;
    let lease = if lease.is_zero() {
        DEFAULT_LEASE
    } else if lease < MIN_LEASE {
        return Err(invalid("options.lease_duration", "must be at least 1s"));
    } else {
        lease
    };
    let metadata = check_metadata(options.metadata.as_ref())?;
    let rewrite = options.type_rewrite.clone().unwrap_or_default();
    let mode = match validate::enum_value::<pb::TypeRewriteMode>(
        "options.type_rewrite.mode",
        rewrite.mode,
        true,
    )? {
        pb::TypeRewriteMode::Unspecified | pb::TypeRewriteMode::Auto => TypeRewriteMode::Auto,
        pb::TypeRewriteMode::None => TypeRewriteMode::None,
        pb::TypeRewriteMode::Strip => TypeRewriteMode::Strip,
    };
    validate::max_chars(
        "options.type_rewrite.target_type",
        &rewrite.target_type,
        255,
    )?;
    if rewrite.target_type.starts_with('_') && rewrite.target_type != "_doc" {
        return Err(invalid(
            "options.type_rewrite.target_type",
            "must not start with '_' (except \"_doc\")",
        ));
    }
    let (copy_mode, snapshot) = check_mode(options)?;
    let spec = MigrationSpec {
        mode: copy_mode,
        snapshot,
        source_cluster_id: Uuid::nil(),
        target_cluster_id: Uuid::nil(),
        indices,
        slices_per_index: options.slices_per_index,
        batch_size: options.batch_size,
        max_docs_per_second: options.max_docs_per_second,
        max_bytes_per_second: options.max_bytes_per_second,
        read_mode,
        keep_alive_ms: keep_alive.as_millis() as u64,
        metadata,
        type_rewrite: TypeRewrite {
            mode,
            target_type: rewrite.target_type,
        },
    };
    let attempts = match options.max_partition_attempts {
        0 => 5,
        n => n,
    };
    Ok((spec, attempts, lease))
}

/// The copy mode and, in snapshot mode, its checked options.
fn check_mode(options: &pb::MigrationOptions) -> Result<(CopyMode, Option<SnapshotSpec>), Status> {
    let mode = validate::enum_value::<pb::MigrationMode>("options.mode", options.mode, true)?;
    let snapshot = options.snapshot.as_ref();
    match mode {
        pb::MigrationMode::Unspecified | pb::MigrationMode::Documents => {
            if snapshot.is_some() {
                return Err(invalid(
                    "options.snapshot",
                    "only with options.mode = MIGRATION_MODE_SNAPSHOT",
                ));
            }
            Ok((CopyMode::Documents, None))
        }
        pb::MigrationMode::Snapshot => {
            let snapshot = snapshot.ok_or_else(|| {
                invalid("options.snapshot", "required in MIGRATION_MODE_SNAPSHOT")
            })?;
            if !snapshot.repository.is_empty() {
                validate::max_chars("options.snapshot.repository", &snapshot.repository, 255)?;
                if snapshot.repository.starts_with(['_', '-', '.'])
                    || snapshot.repository.chars().any(|c| {
                        c.is_ascii_uppercase() || c.is_whitespace() || "\\/*?\"<>|,#:".contains(c)
                    })
                {
                    return Err(invalid(
                        "options.snapshot.repository",
                        "a repository name is lowercase, without spaces or any of \\/*?\"<>|,#: \
                         and does not start with '_', '-' or '.'",
                    ));
                }
            }
            for (field, value) in [
                (
                    "options.snapshot.source_location",
                    &snapshot.source_location,
                ),
                (
                    "options.snapshot.target_location",
                    &snapshot.target_location,
                ),
            ] {
                if value.is_empty() {
                    return Err(invalid(
                        field,
                        "required in MIGRATION_MODE_SNAPSHOT: the shared fs repository \
                         directory as this cluster's nodes see it (listed in their path.repo)",
                    ));
                }
                validate::max_chars(field, value, 4096)?;
            }
            Ok((
                CopyMode::Snapshot,
                Some(SnapshotSpec {
                    repository: snapshot.repository.clone(),
                    source_location: snapshot.source_location.clone(),
                    target_location: snapshot.target_location.clone(),
                    delete_snapshot: snapshot.delete_snapshot,
                }),
            ))
        }
    }
}

fn check_metadata(options: Option<&pb::MetadataCopyOptions>) -> Result<MetadataSpec, Status> {
    let options = options.cloned().unwrap_or_default();
    let policy: pb::ExistingIndexPolicy =
        validate::enum_value("options.metadata.if_exists", options.if_exists, true)?;
    for (key, value) in &options.settings_overrides {
        let path = validate::key("options.metadata.settings_overrides", key);
        validate::required(&path, key)?;
        validate::max_chars(&path, value, 4096)?;
    }
    for (i, name) in options.excluded_settings.iter().enumerate() {
        let path = validate::index("options.metadata.excluded_settings", i);
        validate::required(&path, name)?;
        validate::max_chars(&path, name, 255)?;
    }
    Ok(MetadataSpec {
        skip_settings: options.skip_settings,
        skip_mappings: options.skip_mappings,
        skip_aliases: options.skip_aliases,
        reuse_existing: policy == pb::ExistingIndexPolicy::Reuse,
        settings_overrides: options.settings_overrides.into_iter().collect(),
        excluded_settings: options.excluded_settings,
        copy_templates: options.copy_templates,
        copy_ingest_pipelines: options.copy_ingest_pipelines,
        copy_data_streams: options.copy_data_streams,
        copy_lifecycle_policies: options.copy_lifecycle_policies,
    })
}
