//! `tandemctl compare ...`: comparison jobs and their differences
//! (CompareService).

use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};
use tandem_client::AuthenticatedChannel;
use tandem_client::v1::compare_service_client::CompareServiceClient;
use tandem_client::v1::watch_compare_job_response::Update;
use tandem_client::v1::{
    CancelCompareJobRequest, CompareDiff, CompareJob, CompareMode, CompareOptions,
    CreateCompareJobRequest, DiffKind, GetCompareJobRequest, IndexFilter, ListCompareDiffsRequest,
    ListCompareJobsRequest, RepairCompareDiffsRequest, WatchCompareJobRequest,
};

use crate::cli::cluster::{cluster_ref, rpc_error};
use crate::cli::output::{self, Output, print_json, print_rows, print_table, time};

type Client = CompareServiceClient<AuthenticatedChannel>;

/// Depth of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Document counts only.
    CountOnly,
    /// Counts and per-partition digests.
    Digest,
    /// Counts, digests and document differences.
    Full,
}

/// Kind of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// In the source only.
    MissingInTarget,
    /// In the target only.
    ExtraInTarget,
    /// `_source` differs.
    ContentDiffers,
    /// Only `_version` differs.
    VersionDiffers,
}

/// Comparison commands.
#[derive(Debug, Subcommand)]
pub enum CompareCommand {
    /// Create and start a comparison job.
    Create {
        /// Reference cluster (name or id).
        #[arg(long)]
        source: String,
        /// Cluster checked against the source (name or id).
        #[arg(long)]
        target: String,
        /// Index names or patterns (repeatable); none means every index.
        #[arg(long)]
        include: Vec<String>,
        /// Index names or patterns left out (repeatable).
        #[arg(long)]
        exclude: Vec<String>,
        /// Depth.
        #[arg(long, value_enum, default_value = "full")]
        mode: Mode,
        /// Digest partitions per index (0 = automatic).
        #[arg(long, default_value_t = 0)]
        partitions: u32,
        /// Delay before each difference is checked again, in seconds
        /// (0 = 30 s).
        #[arg(long, default_value_t = 0)]
        recheck_delay_secs: u64,
        /// Differences recorded at most (0 = 100 000).
        #[arg(long, default_value_t = 0)]
        max_diffs: u32,
        /// Documents read per second on each side (0 = unlimited).
        #[arg(long, default_value_t = 0)]
        max_docs_per_second: u64,
        /// Do not compare `_version`.
        #[arg(long)]
        ignore_versions: bool,
        /// Compare `_source` byte for byte (key order and number spelling
        /// count), not as JSON values.
        #[arg(long)]
        strict_source: bool,
        /// Replication task the job verifies.
        #[arg(long)]
        task: Option<String>,
        /// Job name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Show one job with its per-index results.
    Get {
        /// Job id.
        id: String,
    },
    /// List jobs, newest first.
    List {
        /// Page size (0 = server default).
        #[arg(long, default_value_t = 0)]
        page_size: i32,
        /// Token of the page to read.
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// List the differences a job found.
    Diffs {
        /// Job id.
        id: String,
        /// Only this index.
        #[arg(long, default_value = "")]
        index: String,
        /// Only these kinds (repeatable).
        #[arg(long, value_enum)]
        kind: Vec<Kind>,
        /// Page size (0 = server default).
        #[arg(long, default_value_t = 0)]
        page_size: i32,
        /// Token of the page to read.
        #[arg(long, default_value = "")]
        page_token: String,
        /// Also read each document from both clusters now and show both
        /// `_source`s (at most 100 differences per page).
        #[arg(long)]
        documents: bool,
    },
    /// Cancel a job.
    Cancel {
        /// Job id.
        id: String,
    },
    /// Repair the differences a finished FULL job found (a gateway of the
    /// task replicating source to target reconciles each document from the
    /// source), then check them again (exit status 1 unless all are equal).
    Repair {
        /// Job id.
        id: String,
        /// Replication task whose gateway repairs (default: the one task
        /// replicating the job's source to its target).
        #[arg(long)]
        task: Option<String>,
        /// Only these kinds (repeatable).
        #[arg(long, value_enum)]
        kind: Vec<Kind>,
        /// Differences repaired at most (0 = 10 000).
        #[arg(long, default_value_t = 0)]
        max_diffs: u32,
        /// How long to wait for the repaired documents to be equal, in
        /// seconds (0 = 60).
        #[arg(long, default_value_t = 0)]
        timeout_secs: u64,
    },
    /// Follow a job until it ends (exit status 1 unless it MATCHes).
    Watch {
        /// Job id.
        id: String,
        /// Print each difference as it is recorded.
        #[arg(long)]
        diffs: bool,
    },
}

fn kinds_of(kinds: &[Kind]) -> Vec<i32> {
    kinds
        .iter()
        .map(|k| match k {
            Kind::MissingInTarget => DiffKind::MissingInTarget,
            Kind::ExtraInTarget => DiffKind::ExtraInTarget,
            Kind::ContentDiffers => DiffKind::ContentDiffers,
            Kind::VersionDiffers => DiffKind::VersionDiffers,
        } as i32)
        .collect()
}

/// Runs a compare command.
pub async fn run(mut client: Client, command: CompareCommand, out: Output) -> anyhow::Result<()> {
    match command {
        CompareCommand::Create {
            source,
            target,
            include,
            exclude,
            mode,
            partitions,
            recheck_delay_secs,
            max_diffs,
            max_docs_per_second,
            ignore_versions,
            strict_source,
            task,
            name,
        } => {
            let mode = match mode {
                Mode::CountOnly => CompareMode::CountOnly,
                Mode::Digest => CompareMode::Digest,
                Mode::Full => CompareMode::Full,
            };
            let job = client
                .create_compare_job(CreateCompareJobRequest {
                    name: name.unwrap_or_default(),
                    source: Some(cluster_ref(&source)),
                    target: Some(cluster_ref(&target)),
                    indices: Some(IndexFilter {
                        include,
                        exclude,
                        include_hidden: false,
                    }),
                    options: Some(CompareOptions {
                        mode: mode as i32,
                        partitions_per_index: partitions,
                        max_docs_per_second,
                        max_diffs,
                        recheck_delay: (recheck_delay_secs > 0).then(|| prost_types::Duration {
                            seconds: recheck_delay_secs.try_into().unwrap_or(i64::MAX),
                            nanos: 0,
                        }),
                        ignore_versions,
                        strict_source,
                        ..Default::default()
                    }),
                    task_id: task.unwrap_or_default(),
                    ..Default::default()
                })
                .await
                .map_err(|s| rpc_error("CreateCompareJob", s))?
                .into_inner();
            print_job(&job.job.unwrap_or_default(), out);
        }
        CompareCommand::Get { id } => {
            let job = client
                .get_compare_job(GetCompareJobRequest { job_id: id })
                .await
                .map_err(|s| rpc_error("GetCompareJob", s))?
                .into_inner();
            print_job(&job.job.unwrap_or_default(), out);
        }
        CompareCommand::List {
            page_size,
            page_token,
        } => {
            let page = client
                .list_compare_jobs(ListCompareJobsRequest {
                    page_size,
                    page_token,
                    ..Default::default()
                })
                .await
                .map_err(|s| rpc_error("ListCompareJobs", s))?
                .into_inner();
            match out {
                Output::Json => print_json(&Value::Array(page.jobs.iter().map(job_json).collect())),
                Output::Table => print_table(
                    &["ID", "NAME", "STATE", "OUTCOME", "DOCS", "CREATED"],
                    &page
                        .jobs
                        .iter()
                        .map(|j| {
                            let progress = j.progress.unwrap_or_default();
                            vec![
                                j.id.clone(),
                                j.name.clone(),
                                state(j),
                                outcome(j),
                                format!("{}/{}", progress.docs_done, progress.docs_total),
                                time(j.created_at.as_ref()),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
            if !page.next_page_token.is_empty() {
                output::next_page(&page.next_page_token);
            }
        }
        CompareCommand::Diffs {
            id,
            index,
            kind,
            page_size,
            page_token,
            documents,
        } => {
            let kinds = kinds_of(&kind);
            let page = client
                .list_compare_diffs(ListCompareDiffsRequest {
                    job_id: id,
                    index,
                    kinds,
                    page_size,
                    page_token,
                    include_documents: documents,
                })
                .await
                .map_err(|s| rpc_error("ListCompareDiffs", s))?
                .into_inner();
            match out {
                Output::Json => print_json(&json!({
                    "diffs": page.diffs.iter().map(diff_json).collect::<Vec<_>>(),
                    "total_size": page.total_size,
                })),
                Output::Table => print_table(
                    &[
                        "INDEX",
                        "DOC ID",
                        "KIND",
                        "SOURCE VERSION",
                        "TARGET VERSION",
                        "SOURCE DOCUMENT",
                        "TARGET DOCUMENT",
                    ],
                    &page
                        .diffs
                        .iter()
                        .map(|d| {
                            let version = |v: Option<i64>| v.map_or("-".into(), |v| v.to_string());
                            vec![
                                d.index.clone(),
                                d.doc_id.clone(),
                                kind_name(d),
                                version(d.source_version),
                                version(d.target_version),
                                document(d.source_document.as_deref(), documents),
                                document(d.target_document.as_deref(), documents),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
            if !page.next_page_token.is_empty() {
                output::next_page(&page.next_page_token);
            }
        }
        CompareCommand::Repair {
            id,
            task,
            kind,
            max_diffs,
            timeout_secs,
        } => {
            let answer = client
                .repair_compare_diffs(RepairCompareDiffsRequest {
                    job_id: id,
                    task_id: task.unwrap_or_default(),
                    kinds: kinds_of(&kind),
                    max_diffs,
                    recheck_timeout: (timeout_secs > 0).then(|| prost_types::Duration {
                        seconds: timeout_secs.try_into().unwrap_or(i64::MAX),
                        nanos: 0,
                    }),
                })
                .await
                .map_err(|s| rpc_error("RepairCompareDiffs", s))?
                .into_inner();
            match out {
                Output::Json => print_json(&json!({
                    "task_id": answer.task_id,
                    "gateway_id": answer.gateway_id,
                    "requested": answer.requested,
                    "repaired": answer.repaired,
                    "still_differing": answer.still_differing.iter().map(diff_json).collect::<Vec<_>>(),
                })),
                Output::Table => {
                    println!(
                        "{} of {} differences repaired by gateway {} (task {})",
                        answer.repaired, answer.requested, answer.gateway_id, answer.task_id
                    );
                    for d in &answer.still_differing {
                        println!("still differs: {} {} {}", d.index, d.doc_id, kind_name(d));
                    }
                }
            }
            if answer.repaired < answer.requested {
                std::process::exit(1);
            }
        }
        CompareCommand::Cancel { id } => {
            let job = client
                .cancel_compare_job(CancelCompareJobRequest { job_id: id })
                .await
                .map_err(|s| rpc_error("CancelCompareJob", s))?
                .into_inner();
            print_job(&job.job.unwrap_or_default(), out);
        }
        CompareCommand::Watch { id, diffs } => {
            let mut stream = client
                .watch_compare_job(WatchCompareJobRequest {
                    job_id: id,
                    update_interval: None,
                    include_diffs: diffs,
                })
                .await
                .map_err(|s| rpc_error("WatchCompareJob", s))?
                .into_inner();
            let mut last = None;
            while let Some(message) = stream
                .message()
                .await
                .map_err(|s| rpc_error("WatchCompareJob", s))?
            {
                match message.update {
                    Some(Update::Job(job)) => {
                        let progress = job.progress.unwrap_or_default();
                        eprintln!(
                            "{} {} docs {}/{}",
                            state(&job),
                            outcome(&job),
                            progress.docs_done,
                            progress.docs_total
                        );
                        last = Some(job);
                    }
                    Some(Update::Event(event)) => eprintln!("{}: {}", event.reason, event.message),
                    Some(Update::Diff(diff)) => {
                        println!("{} {} {}", diff.index, diff.doc_id, kind_name(&diff));
                    }
                    None => {}
                }
            }
            let job = last.unwrap_or_default();
            print_job(&job, out);
            if job.summary.unwrap_or_default().outcome() != tandem_client::v1::CompareOutcome::Match
            {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

fn state(job: &CompareJob) -> String {
    job.state()
        .as_str_name()
        .trim_start_matches("JOB_STATE_")
        .into()
}

fn outcome(job: &CompareJob) -> String {
    let outcome = job.summary.unwrap_or_default().outcome();
    match outcome {
        tandem_client::v1::CompareOutcome::Unspecified => "-".into(),
        other => other
            .as_str_name()
            .trim_start_matches("COMPARE_OUTCOME_")
            .into(),
    }
}

fn kind_name(diff: &CompareDiff) -> String {
    diff.kind()
        .as_str_name()
        .trim_start_matches("DIFF_KIND_")
        .into()
}

fn job_json(job: &CompareJob) -> Value {
    let summary = job.summary.unwrap_or_default();
    let progress = job.progress.unwrap_or_default();
    json!({
        "id": job.id,
        "name": job.name,
        "state": state(job),
        "outcome": outcome(job),
        "source": job.source.as_ref().map(|c| c.cluster_name.clone()),
        "target": job.target.as_ref().map(|c| c.cluster_name.clone()),
        "docs_done": progress.docs_done,
        "docs_total": progress.docs_total,
        "source_docs": summary.source_docs,
        "target_docs": summary.target_docs,
        "missing_in_target": summary.missing_in_target,
        "extra_in_target": summary.extra_in_target,
        "content_differs": summary.content_differs,
        "version_differs": summary.version_differs,
        "transient_diffs": summary.transient_diffs,
        "diffs_recorded": summary.diffs_recorded,
        "indices": job.index_summaries.iter().map(|i| json!({
            "index": i.index,
            "outcome": i.outcome().as_str_name().trim_start_matches("COMPARE_OUTCOME_"),
            "source_doc_count": i.source_doc_count,
            "target_doc_count": i.target_doc_count,
            "partitions_mismatched": i.partitions_mismatched,
        })).collect::<Vec<_>>(),
        "error": job.error.as_ref().map(|e| format!("{}: {}", e.reason, e.message)),
        "created_at": time(job.created_at.as_ref()),
        "finished_at": time(job.finished_at.as_ref()),
    })
}

fn diff_json(diff: &CompareDiff) -> Value {
    json!({
        "index": diff.index,
        "doc_id": diff.doc_id,
        "kind": kind_name(diff),
        "source_version": diff.source_version,
        "target_version": diff.target_version,
        "source_hash": diff.source_hash,
        "target_hash": diff.target_hash,
        "routing": diff.routing,
        "partition_id": diff.partition_id,
        "repaired": diff.repaired_at.is_some(),
        "source_document": diff.source_document.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()),
        "target_document": diff.target_document.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()),
    })
}

/// A document's `_source` for the table: `-` when not asked for, `absent`
/// when the side lacks it.
fn document(source: Option<&str>, asked: bool) -> String {
    match (asked, source) {
        (false, _) => "-".into(),
        (true, None) => "absent".into(),
        (true, Some(source)) => source.to_owned(),
    }
}

fn print_job(job: &CompareJob, out: Output) {
    if out == Output::Json {
        print_json(&job_json(job));
        return;
    }
    let summary = job.summary.unwrap_or_default();
    let progress = job.progress.unwrap_or_default();
    let mut rows = vec![
        ("id", job.id.clone()),
        ("name", job.name.clone()),
        ("state", state(job)),
        ("outcome", outcome(job)),
        (
            "docs",
            format!("{}/{}", progress.docs_done, progress.docs_total),
        ),
        (
            "counts",
            format!(
                "source {} target {}",
                summary.source_docs, summary.target_docs
            ),
        ),
        (
            "differences",
            format!(
                "missing {} extra {} content {} version {} (transient {}, recorded {})",
                summary.missing_in_target,
                summary.extra_in_target,
                summary.content_differs,
                summary.version_differs,
                summary.transient_diffs,
                summary.diffs_recorded
            ),
        ),
        ("created", time(job.created_at.as_ref())),
        ("finished", time(job.finished_at.as_ref())),
    ];
    if let Some(error) = &job.error {
        rows.push(("error", format!("{}: {}", error.reason, error.message)));
    }
    print_rows(&rows);
    if !job.index_summaries.is_empty() {
        println!();
        print_table(
            &[
                "INDEX",
                "OUTCOME",
                "SOURCE DOCS",
                "TARGET DOCS",
                "MISMATCHED",
            ],
            &job.index_summaries
                .iter()
                .map(|i| {
                    vec![
                        i.index.clone(),
                        i.outcome()
                            .as_str_name()
                            .trim_start_matches("COMPARE_OUTCOME_")
                            .into(),
                        i.source_doc_count.to_string(),
                        i.target_doc_count.to_string(),
                        i.partitions_mismatched.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        );
    }
}
