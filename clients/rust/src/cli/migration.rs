//! `tandemctl migration ...`: full-copy jobs (MigrationService).
//!
//! Clusters are named by id or by name; jobs by id.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tandem_client::AuthenticatedChannel;
use tandem_client::v1::migration_service_client::MigrationServiceClient;
use tandem_client::v1::watch_migration_job_response::Update;
use tandem_client::v1::{
    CancelMigrationJobRequest, ClusterRef, CreateMigrationJobRequest, ExistingIndexPolicy,
    GetMigrationJobRequest, IndexFilter, JobState, ListMigrationJobsRequest, MetadataCopyOptions,
    MigrationJob, MigrationMode, MigrationOptions, PauseMigrationJobRequest, Progress,
    ResumeMigrationJobRequest, SnapshotOptions, WatchMigrationJobRequest,
};

use super::cluster::{cluster_ref, cluster_ref_label, rpc_error};
use super::output::{
    Output, enum_name, next_page, print_json, print_rows, print_table, span, time,
};

type Client = MigrationServiceClient<AuthenticatedChannel>;

/// Migration job commands.
#[derive(Debug, Subcommand)]
pub enum MigrationCommand {
    /// Copy the existing indices (metadata, then documents with their
    /// versions) from one cluster to another, or restore a snapshot of
    /// them (--snapshot).
    Create(Box<CreateArgs>),
    /// Show one job with its per-index progress.
    Get {
        /// Job id.
        job: String,
    },
    /// List jobs, newest first.
    List {
        /// Page size (0: server default).
        #[arg(long, default_value_t = 0)]
        page_size: i32,
        /// Page token from a previous list.
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Pause a job (partitions checkpoint and release their leases).
    Pause {
        /// Job id.
        job: String,
    },
    /// Resume a paused job from its checkpoints.
    Resume {
        /// Job id.
        job: String,
        /// Also retry partitions that failed.
        #[arg(long)]
        retry_failed_partitions: bool,
    },
    /// Cancel a job (what was copied stays in the target).
    Cancel {
        /// Job id.
        job: String,
    },
    /// Follow a job's progress and events until it ends.
    Watch {
        /// Job id.
        job: String,
    },
}

/// `migration create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Job name.
    pub name: String,
    /// Cluster to copy from (id or name).
    #[arg(long)]
    pub source: String,
    /// Cluster to copy to (id or name).
    #[arg(long)]
    pub target: String,
    /// Index pattern to copy (repeatable; default: every non-system index).
    #[arg(long = "include")]
    pub include: Vec<String>,
    /// Index pattern to leave out (repeatable).
    #[arg(long = "exclude")]
    pub exclude: Vec<String>,
    /// Id of the replication task whose backlog is replayed after the copy
    /// (checked: it must replicate from source to target).
    #[arg(long)]
    pub task: Option<String>,
    /// Slices per index (0: server default).
    #[arg(long, default_value_t = 0)]
    pub slices: u32,
    /// Documents per batch (0: server default).
    #[arg(long, default_value_t = 0)]
    pub batch_size: u32,
    /// Throttle: documents per second for the whole job (0: unlimited).
    #[arg(long, default_value_t = 0)]
    pub max_docs_per_second: u64,
    /// Copy into indices that already exist on the target (default: fail).
    #[arg(long)]
    pub reuse_existing: bool,
    /// Also copy the index templates matching a selected index (and the
    /// component templates they use); each is reported with its outcome.
    #[arg(long)]
    pub copy_templates: bool,
    /// Also copy every ingest pipeline; each is reported with its outcome.
    #[arg(long)]
    pub copy_ingest_pipelines: bool,
    /// Also copy the data streams the selection names, with their
    /// documents (the stream's template must exist on the target: see
    /// --copy-templates); each is reported with its outcome.
    #[arg(long)]
    pub copy_data_streams: bool,
    /// Also copy ILM (Elasticsearch) or ISM (OpenSearch) policies; a
    /// policy the target cannot express is reported as refused.
    #[arg(long)]
    pub copy_lifecycle_policies: bool,
    /// Carry the documents by snapshot and restore through a shared `fs`
    /// repository instead of copying them (needs --repo-source-location and
    /// --repo-target-location; refused when the target cannot restore the
    /// source's snapshots).
    #[arg(long)]
    pub snapshot: bool,
    /// Snapshot mode: name of the repository registered on both clusters
    /// (default: tandem-backfill).
    #[arg(long, default_value = "", requires = "snapshot")]
    pub repository: String,
    /// Snapshot mode: the repository directory as the source's nodes see it
    /// (listed in their path.repo).
    #[arg(long, default_value = "", requires = "snapshot")]
    pub repo_source_location: String,
    /// Snapshot mode: the same directory as the target's nodes see it.
    #[arg(long, default_value = "", requires = "snapshot")]
    pub repo_target_location: String,
    /// Snapshot mode: delete the snapshot once restored.
    #[arg(long, requires = "snapshot")]
    pub delete_snapshot: bool,
    /// Idempotency key: the same key returns the same job.
    #[arg(long, default_value = "")]
    pub request_id: String,
    /// Wait until the job ends, showing progress.
    #[arg(long)]
    pub wait: bool,
}

/// Runs one `migration` command.
pub async fn run(
    mut client: Client,
    command: MigrationCommand,
    output: Output,
) -> anyhow::Result<()> {
    match command {
        MigrationCommand::Create(args) => {
            let wait = args.wait;
            let job = client
                .create_migration_job(create_request(*args))
                .await
                .map_err(|s| rpc_error("CreateMigrationJob", s))?
                .into_inner()
                .job
                .context("CreateMigrationJob answered without a job")?;
            print_job(&job, output);
            if wait {
                watch(&mut client, &job.id, output).await?;
            }
        }
        MigrationCommand::Get { job } => {
            let job = client
                .get_migration_job(GetMigrationJobRequest { job_id: job })
                .await
                .map_err(|s| rpc_error("GetMigrationJob", s))?
                .into_inner()
                .job
                .context("GetMigrationJob answered without a job")?;
            print_job(&job, output);
        }
        MigrationCommand::List {
            page_size,
            page_token,
        } => {
            let page = client
                .list_migration_jobs(ListMigrationJobsRequest {
                    page_size,
                    page_token,
                    ..Default::default()
                })
                .await
                .map_err(|s| rpc_error("ListMigrationJobs", s))?
                .into_inner();
            match output {
                Output::Json => print_json(&Value::Array(page.jobs.iter().map(job_json).collect())),
                Output::Table => {
                    let rows: Vec<Vec<String>> = page
                        .jobs
                        .iter()
                        .map(|j| {
                            vec![
                                j.id.clone(),
                                j.name.clone(),
                                state(j),
                                progress_line(j.progress.as_ref()),
                                time(j.created_at.as_ref()),
                            ]
                        })
                        .collect();
                    print_table(&["ID", "NAME", "STATE", "PROGRESS", "CREATED"], &rows);
                    next_page(&page.next_page_token);
                }
            }
        }
        MigrationCommand::Pause { job } => {
            let job = client
                .pause_migration_job(PauseMigrationJobRequest { job_id: job })
                .await
                .map_err(|s| rpc_error("PauseMigrationJob", s))?
                .into_inner()
                .job;
            print_job(
                &job.context("PauseMigrationJob answered without a job")?,
                output,
            );
        }
        MigrationCommand::Resume {
            job,
            retry_failed_partitions,
        } => {
            let job = client
                .resume_migration_job(ResumeMigrationJobRequest {
                    job_id: job,
                    retry_failed_partitions,
                })
                .await
                .map_err(|s| rpc_error("ResumeMigrationJob", s))?
                .into_inner()
                .job;
            print_job(
                &job.context("ResumeMigrationJob answered without a job")?,
                output,
            );
        }
        MigrationCommand::Cancel { job } => {
            let job = client
                .cancel_migration_job(CancelMigrationJobRequest { job_id: job })
                .await
                .map_err(|s| rpc_error("CancelMigrationJob", s))?
                .into_inner()
                .job;
            print_job(
                &job.context("CancelMigrationJob answered without a job")?,
                output,
            );
        }
        MigrationCommand::Watch { job } => watch(&mut client, &job, output).await?,
    }
    Ok(())
}

fn create_request(args: CreateArgs) -> CreateMigrationJobRequest {
    let metadata = (args.reuse_existing
        || args.copy_templates
        || args.copy_ingest_pipelines
        || args.copy_data_streams
        || args.copy_lifecycle_policies)
        .then(|| MetadataCopyOptions {
            if_exists: if args.reuse_existing {
                ExistingIndexPolicy::Reuse
            } else {
                ExistingIndexPolicy::Fail
            } as i32,
            copy_templates: args.copy_templates,
            copy_ingest_pipelines: args.copy_ingest_pipelines,
            copy_data_streams: args.copy_data_streams,
            copy_lifecycle_policies: args.copy_lifecycle_policies,
            ..Default::default()
        });
    CreateMigrationJobRequest {
        request_id: args.request_id,
        name: args.name,
        source: Some(cluster_ref(&args.source)),
        target: Some(cluster_ref(&args.target)),
        indices: (!args.include.is_empty() || !args.exclude.is_empty()).then_some(IndexFilter {
            include: args.include,
            exclude: args.exclude,
            include_hidden: false,
        }),
        options: Some(MigrationOptions {
            slices_per_index: args.slices,
            batch_size: args.batch_size,
            max_docs_per_second: args.max_docs_per_second,
            metadata,
            mode: if args.snapshot {
                MigrationMode::Snapshot
            } else {
                MigrationMode::Unspecified
            } as i32,
            snapshot: args.snapshot.then_some(SnapshotOptions {
                repository: args.repository,
                source_location: args.repo_source_location,
                target_location: args.repo_target_location,
                delete_snapshot: args.delete_snapshot,
            }),
            ..Default::default()
        }),
        task_id: args.task.unwrap_or_default(),
        ..Default::default()
    }
}

/// Follows `job` until it ends: a progress line per snapshot (table) or one
/// JSON object per update; fails when the job does not succeed.
async fn watch(client: &mut Client, job: &str, output: Output) -> anyhow::Result<()> {
    let mut stream = client
        .watch_migration_job(WatchMigrationJobRequest {
            job_id: job.to_string(),
            update_interval: None,
        })
        .await
        .map_err(|s| rpc_error("WatchMigrationJob", s))?
        .into_inner();
    let mut last: Option<MigrationJob> = None;
    while let Some(update) = stream
        .message()
        .await
        .map_err(|s| rpc_error("WatchMigrationJob", s))?
    {
        match update.update {
            Some(Update::Job(job)) => {
                match output {
                    Output::Json => print_json(&job_json(&job)),
                    Output::Table => println!(
                        "{}  {} {}  {}{}",
                        time(job.updated_at.as_ref()),
                        job.name,
                        state(&job),
                        progress_line(job.progress.as_ref()),
                        snapshot_line(&job)
                    ),
                }
                last = Some(job);
            }
            Some(Update::Event(event)) => match output {
                Output::Json => print_json(&json!({
                    "event": event.reason,
                    "message": event.message,
                    "at": time(event.occurred_at.as_ref()),
                })),
                Output::Table => println!(
                    "{}  {}: {}",
                    time(event.occurred_at.as_ref()),
                    event.reason,
                    event.message
                ),
            },
            None => {}
        }
    }
    match last {
        Some(job) if job.state == JobState::Succeeded as i32 => Ok(()),
        Some(job) => anyhow::bail!(
            "migration job {} ended {}{}",
            job.id,
            state(&job),
            job.error
                .as_ref()
                .map(|e| format!(": {} {}", e.reason, e.message))
                .unwrap_or_default()
        ),
        None => anyhow::bail!("WatchMigrationJob ended without a snapshot"),
    }
}

fn state(job: &MigrationJob) -> String {
    let name = JobState::try_from(job.state)
        .unwrap_or_default()
        .as_str_name();
    enum_name(name.strip_prefix("JOB_STATE_").unwrap_or(name))
}

fn progress_line(progress: Option<&Progress>) -> String {
    let Some(p) = progress else {
        return "-".into();
    };
    let partitions = p.partitions.unwrap_or_default();
    format!(
        "{}/{} docs, {:.0} docs/s, ETA {}, partitions {}/{} done",
        p.docs_done,
        p.docs_total,
        p.docs_per_second,
        span(p.eta.as_ref()),
        partitions.done,
        partitions.total
    )
}

/// Where a snapshot-based backfill stands, e.g. ` | restore: 3/5 shards,
/// 1200/4000 bytes`; empty for a document copy.
fn snapshot_line(job: &MigrationJob) -> String {
    let Some(s) = job.snapshot.as_ref() else {
        return String::new();
    };
    match tandem_client::v1::SnapshotPhase::try_from(s.phase).unwrap_or_default() {
        tandem_client::v1::SnapshotPhase::Snapshot => format!(
            " | snapshot {} {}: {}/{} shards, {}/{} bytes",
            s.snapshot,
            s.snapshot_state,
            s.snapshot_shards_done,
            s.snapshot_shards_total,
            s.snapshot_bytes_done,
            s.snapshot_bytes_total
        ),
        tandem_client::v1::SnapshotPhase::Restore => format!(
            " | restore of {}: {}/{} shards, {}/{} bytes",
            s.snapshot,
            s.restore_shards_done,
            s.restore_shards_total,
            s.restore_bytes_done,
            s.restore_bytes_total
        ),
        tandem_client::v1::SnapshotPhase::Done => format!(" | snapshot {} restored", s.snapshot),
        tandem_client::v1::SnapshotPhase::Unspecified => String::new(),
    }
}

fn job_json(job: &MigrationJob) -> Value {
    let progress = job.progress.as_ref();
    json!({
        "id": job.id,
        "name": job.name,
        "state": state(job),
        "source": job.source.as_ref().map(cluster_ref_label),
        "target": job.target.as_ref().map(cluster_ref_label),
        "task_id": job.task_id,
        "docs_total": progress.map(|p| p.docs_total),
        "docs_done": progress.map(|p| p.docs_done),
        "bytes_done": progress.map(|p| p.bytes_done),
        "docs_skipped_newer": job.docs_skipped_newer,
        "docs_failed": job.docs_failed,
        "snapshot": job.snapshot.as_ref().map(|s| json!({
            "repository": s.repository,
            "snapshot": s.snapshot,
            "phase": enum_name(tandem_client::v1::SnapshotPhase::try_from(s.phase).unwrap_or_default().as_str_name().trim_start_matches("SNAPSHOT_PHASE_")),
            "snapshot_state": s.snapshot_state,
            "snapshot_shards": [s.snapshot_shards_done, s.snapshot_shards_total],
            "snapshot_bytes": [s.snapshot_bytes_done, s.snapshot_bytes_total],
            "restore_shards": [s.restore_shards_done, s.restore_shards_total],
            "restore_bytes": [s.restore_bytes_done, s.restore_bytes_total],
            "snapshot_deleted": s.snapshot_deleted,
        })),
        "indices": job.index_progress.iter().map(|i| json!({
            "source_index": i.source_index,
            "target_index": i.target_index,
            "phase": enum_name(tandem_client::v1::IndexMigrationPhase::try_from(i.phase).unwrap_or_default().as_str_name().trim_start_matches("INDEX_MIGRATION_PHASE_")),
            "docs_done": i.progress.as_ref().map(|p| p.docs_done),
            "docs_total": i.progress.as_ref().map(|p| p.docs_total),
            "warnings": i.warnings,
        })).collect::<Vec<_>>(),
        "cluster_metadata": job.cluster_metadata.iter().map(|m| json!({
            "kind": metadata_kind(m),
            "name": m.name,
            "outcome": metadata_outcome(m),
            "detail": m.detail,
        })).collect::<Vec<_>>(),
        "error": job.error.as_ref().map(|e| json!({"reason": e.reason, "message": e.message})),
        "created_at": time(job.created_at.as_ref()),
        "finished_at": time(job.finished_at.as_ref()),
    })
}

fn print_job(job: &MigrationJob, output: Output) {
    if output == Output::Json {
        print_json(&job_json(job));
        return;
    }
    let cluster = |c: Option<&ClusterRef>| c.map(cluster_ref_label).unwrap_or_else(|| "-".into());
    print_rows(&[
        ("id", job.id.clone()),
        ("name", job.name.clone()),
        ("state", state(job)),
        ("source", cluster(job.source.as_ref())),
        ("target", cluster(job.target.as_ref())),
        ("progress", progress_line(job.progress.as_ref())),
        ("skipped newer", job.docs_skipped_newer.to_string()),
        ("failed docs", job.docs_failed.to_string()),
        (
            "error",
            job.error
                .as_ref()
                .map(|e| format!("{}: {}", e.reason, e.message))
                .unwrap_or_else(|| "-".into()),
        ),
        ("created", time(job.created_at.as_ref())),
        ("finished", time(job.finished_at.as_ref())),
    ]);
    if !job.index_progress.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = job
            .index_progress
            .iter()
            .map(|i| {
                let phase = tandem_client::v1::IndexMigrationPhase::try_from(i.phase)
                    .unwrap_or_default()
                    .as_str_name();
                vec![
                    i.source_index.clone(),
                    i.target_index.clone(),
                    enum_name(phase.trim_start_matches("INDEX_MIGRATION_PHASE_")),
                    i.progress
                        .as_ref()
                        .map(|p| format!("{}/{}", p.docs_done, p.docs_total))
                        .unwrap_or_else(|| "-".into()),
                    i.warnings.len().to_string(),
                ]
            })
            .collect();
        print_table(
            &["SOURCE INDEX", "TARGET INDEX", "PHASE", "DOCS", "WARNINGS"],
            &rows,
        );
    }
    if !job.cluster_metadata.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = job
            .cluster_metadata
            .iter()
            .map(|m| {
                vec![
                    metadata_kind(m),
                    m.name.clone(),
                    metadata_outcome(m),
                    if m.detail.is_empty() {
                        "-".into()
                    } else {
                        m.detail.clone()
                    },
                ]
            })
            .collect();
        print_table(&["KIND", "NAME", "OUTCOME", "DETAIL"], &rows);
    }
}

fn metadata_kind(m: &tandem_client::v1::ClusterMetadataResult) -> String {
    let kind = tandem_client::v1::ClusterMetadataKind::try_from(m.kind).unwrap_or_default();
    enum_name(
        kind.as_str_name()
            .trim_start_matches("CLUSTER_METADATA_KIND_"),
    )
}

fn metadata_outcome(m: &tandem_client::v1::ClusterMetadataResult) -> String {
    let outcome =
        tandem_client::v1::ClusterMetadataOutcome::try_from(m.outcome).unwrap_or_default();
    enum_name(
        outcome
            .as_str_name()
            .trim_start_matches("CLUSTER_METADATA_OUTCOME_"),
    )
}
