//! Comparison (verification) jobs: the `compare` kind of [`crate::jobs`].
//!
//! # Design
//!
//! Planning ([`CompareHandler::plan`]) connects to both clusters, selects
//! the indices matching the job's filter on each side (an index present on
//! one side only is still compared, against an empty other side), counts
//! the source documents, and plans **one job partition per index**. The
//! index is split further into *digest partitions* (hash buckets) inside
//! that job partition, see below.
//!
//! Running the partition of one index ([`run::run`]) goes through three
//! phases, each stored in the partition checkpoint ([`IndexResult`]):
//!
//! 1. **Counts**: `_count` on both sides. `COUNT_ONLY` stops here.
//! 2. **Digests**: both sides are read in full with a plain scroll
//!    (`"version": true`, sorted by `_doc`), which works the same on
//!    Elasticsearch 6 (typed; `_type` is ignored), 7 and OpenSearch, and
//!    needs neither `_id` fielddata nor scripting. Every document goes to
//!    digest partition `sha256(_id) mod n` (`n` = `partitions_per_index`,
//!    or about one per 100 000 source documents, at most 1024): a stable
//!    subset of ids whatever the shard layout. Each document contributes
//!    `sha256(_id, _version, sha256(canonical _source))` (the version left
//!    out with `ignore_versions`); a partition's digest is the sum of these
//!    contributions modulo 2^128, so it does not depend on the read order.
//!    The canonical `_source` is the JSON re-serialised with object keys
//!    sorted, so key order does not matter. `DIGEST` stops here.
//! 3. **Drill-down** (`FULL`, only when some digest differs): both sides are
//!    read again, keeping in memory only the documents of the mismatched
//!    partitions (id → version, hash, routing), which are then matched id
//!    by id into missing in target / extra in target / content differs /
//!    version differs (the target's version *behind* the source's; a target
//!    ahead with the same content is what replay leaves after repairing a
//!    document re-created below the target's tombstone, ADR 006, and only
//!    counted as `version_ahead`). With `strict_source` the `_source` hash
//!    is taken over the bytes the cluster returns (compacted) instead of
//!    the canonical JSON, so key order and number spelling count. After `recheck_delay` the candidates are read again
//!    on both sides (an `ids` query); those that disappeared are counted as
//!    transient, the others are recorded in `compare_diffs`
//!    (`migrations/0008_compare.sql`, through
//!    [`crate::store::compare_diffs`]) with their document id, at most
//!    `max_diffs` per job (counting goes on beyond).
//!
//! A partition that loses its lease resumes at the last finished phase
//! (a phase is not resumed halfway: its scrolls are restarted). Recording a
//! difference twice is harmless: `(job, index, doc_id)` is unique.
//!
//! Per-kind difference counts are the partition's counters
//! ([`counters`]); the service sums them into the job summary.
//!
//! Limits: the whole of each mismatched digest partition is held in memory
//! during a drill-down (choose more partitions for very large indices);
//! documents written while the scrolls run can show up as differences,
//! which the recheck then discards.

pub mod digest;
pub mod read;
pub mod repair;
pub mod run;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tandem_proto::codes;
use uuid::Uuid;

use crate::api::Api;
use crate::jobs::{
    JobFailure, JobHandler, JobRecord, Lease, NewPartition, PartitionRecord, Plan, RunOutcome,
};
use crate::migration::IndexSelection;
use crate::migration::search::SearchClient;
use crate::migration::{data_streams, metadata};

/// The `kind` of comparison jobs.
pub const KIND: &str = "compare";

/// Source documents per automatic digest partition.
const DOCS_PER_AUTO_PARTITION: u64 = 100_000;
/// Most digest partitions per index.
pub const MAX_PARTITIONS: u32 = 1024;

/// Names of the partition counters of a comparison.
pub mod counters {
    /// Documents missing in the target.
    pub const MISSING_IN_TARGET: &str = "missing_in_target";
    /// Documents only in the target.
    pub const EXTRA_IN_TARGET: &str = "extra_in_target";
    /// Documents whose content differs.
    pub const CONTENT_DIFFERS: &str = "content_differs";
    /// Documents with the same content whose target version is behind the
    /// source's.
    pub const VERSION_DIFFERS: &str = "version_differs";
    /// Documents with the same content whose target version is ahead of
    /// the source's (not a difference: see ADR 006).
    pub const VERSION_AHEAD: &str = "version_ahead";
    /// Differences that disappeared on recheck.
    pub const TRANSIENT: &str = "transient_diffs";
    /// Persistent differences not recorded because of `max_diffs`.
    pub const NOT_RECORDED: &str = "diffs_not_recorded";
}

/// Depth of a comparison (`CompareMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Depth {
    /// Counts only.
    CountOnly,
    /// Counts and digests.
    Digest,
    /// Counts, digests and document differences.
    Full,
}

/// What a comparison job does: its `spec` in the jobs table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompareSpec {
    /// Reference side.
    pub source_cluster_id: Uuid,
    /// Side checked against the source.
    pub target_cluster_id: Uuid,
    /// Indices compared.
    pub indices: IndexSelection,
    /// Depth.
    pub depth: Depth,
    /// Digest partitions per index; 0 = automatic.
    pub partitions_per_index: u32,
    /// Documents per read page; 0 = 1000.
    pub batch_size: u32,
    /// Job-wide documents read per second on each side; 0 = unlimited.
    pub max_docs_per_second: u64,
    /// Differences recorded at most; 0 = 100 000.
    pub max_diffs: u32,
    /// Delay before a difference is checked again, in ms; 0 = 30 s.
    pub recheck_delay_ms: u64,
    /// Leave `_version` out of digests and differences.
    pub ignore_versions: bool,
    /// Compare `_source` byte for byte instead of as JSON values.
    #[serde(default)]
    pub strict_source: bool,
}

impl CompareSpec {
    /// How sources are compared.
    pub fn source_match(&self) -> digest::SourceMatch {
        if self.strict_source {
            digest::SourceMatch::Exact
        } else {
            digest::SourceMatch::Json
        }
    }

    /// Documents per read page.
    pub fn batch_size(&self) -> u32 {
        if self.batch_size == 0 {
            1000
        } else {
            self.batch_size
        }
    }

    /// Differences recorded at most.
    pub fn max_diffs(&self) -> u64 {
        if self.max_diffs == 0 {
            100_000
        } else {
            u64::from(self.max_diffs)
        }
    }

    /// Delay before a difference is checked again.
    pub fn recheck_delay(&self) -> std::time::Duration {
        if self.recheck_delay_ms == 0 {
            std::time::Duration::from_secs(30)
        } else {
            std::time::Duration::from_millis(self.recheck_delay_ms)
        }
    }

    /// Digest partitions of an index holding `source_docs` documents.
    pub fn partitions_for(&self, source_docs: u64) -> u32 {
        match self.partitions_per_index {
            0 => source_docs
                .div_ceil(DOCS_PER_AUTO_PARTITION)
                .clamp(1, u64::from(MAX_PARTITIONS)) as u32,
            n => n.min(MAX_PARTITIONS),
        }
    }
}

/// What planning found: the job's `plan` in the jobs table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ComparePlan {
    /// Source version, e.g. `6.8.23`.
    pub source_version: String,
    /// Target version.
    pub target_version: String,
    /// Selected indices, by name.
    pub indices: Vec<IndexPlan>,
}

/// One planned index.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexPlan {
    /// Name (the same on both sides).
    pub name: String,
    /// The index exists in the source.
    pub in_source: bool,
    /// The index exists in the target.
    pub in_target: bool,
    /// Source documents when planned.
    pub source_docs: u64,
    /// Digest partitions.
    pub partitions: u32,
}

/// How far the comparison of one index went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Nothing finished yet.
    #[default]
    Started,
    /// Counts known.
    Counted,
    /// Digests compared.
    Digested,
    /// Finished (the depth of the job reached).
    Done,
}

/// A digest partition whose digests differ.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMismatch {
    /// Partition number within the index.
    pub number: u32,
    /// Source documents of the partition.
    pub source_docs: u64,
    /// Target documents of the partition.
    pub target_docs: u64,
    /// Source digest (hex).
    pub source_digest: String,
    /// Target digest (hex).
    pub target_digest: String,
}

/// The result of one index so far: the checkpoint of its job partition.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexResult {
    /// Last finished phase.
    pub phase: Phase,
    /// Documents in the source index.
    pub source_docs: u64,
    /// Documents in the target index.
    pub target_docs: u64,
    /// Digest partitions.
    pub partitions: u32,
    /// Digest partitions whose digests differ, by number.
    pub mismatched: Vec<PartitionMismatch>,
}

impl IndexResult {
    /// The result stored in `partition`'s checkpoint.
    pub fn of(partition: &PartitionRecord) -> IndexResult {
        partition
            .checkpoint
            .clone()
            .and_then(|c| serde_json::from_value(c).ok())
            .unwrap_or_default()
    }
}

/// Id of digest partition `number` of `index`, as shown to users.
pub fn partition_id(index: &str, number: u32) -> String {
    format!("{index}#{number}")
}

/// The comparison job handler.
#[derive(Debug, Clone)]
pub struct CompareHandler {
    api: Api,
}

impl CompareHandler {
    /// A handler reaching clusters through `api`'s store, secrets and
    /// prober.
    pub fn new(api: Api) -> CompareHandler {
        CompareHandler { api }
    }
}

/// The spec of `job`, or a permanent failure.
pub fn spec_of(job: &JobRecord) -> Result<CompareSpec, JobFailure> {
    serde_json::from_value(job.spec.clone()).map_err(|e| {
        JobFailure::permanent(
            codes::SPEC_UNREADABLE,
            format!("stored job spec unreadable: {e}"),
        )
    })
}

/// What `selection` names on `cluster`: its indices, and its data streams
/// as a whole (read and searched by the stream's name, so the split of
/// documents between backing indices does not count), never their backing
/// indices one by one.
async fn selected_names(
    cluster: &SearchClient,
    selection: &IndexSelection,
) -> Result<Vec<String>, JobFailure> {
    let mut names: Vec<String> = metadata::select(cluster, selection)
        .await?
        .into_iter()
        .map(|i| i.name)
        .filter(|name| tandem_es::data_stream::stream_of_backing_index(name).is_none())
        .collect();
    names.extend(
        data_streams::select(cluster, selection)
            .await?
            .into_iter()
            .map(|s| s.name),
    );
    Ok(names)
}

/// The plan of `job`, when planned.
pub fn plan_of(job: &JobRecord) -> Option<ComparePlan> {
    job.plan
        .clone()
        .and_then(|p| serde_json::from_value::<ComparePlan>(p).ok())
}

#[tonic::async_trait]
impl JobHandler for CompareHandler {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn plan(&self, job: &JobRecord) -> Result<Plan, JobFailure> {
        let spec = spec_of(job)?;
        let source = SearchClient::connect(&self.api, spec.source_cluster_id).await?;
        let target = SearchClient::connect(&self.api, spec.target_cluster_id).await?;
        let in_source = selected_names(&source, &spec.indices).await?;
        let in_target = selected_names(&target, &spec.indices).await?;
        let mut names: Vec<&str> = in_source
            .iter()
            .chain(&in_target)
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut plan = ComparePlan {
            source_version: source.version.number.clone(),
            target_version: target.version.number.clone(),
            indices: Vec::new(),
        };
        let mut partitions = Vec::new();
        for name in names {
            let on_source = in_source.iter().any(|i| i == name);
            let source_docs = if on_source {
                metadata::count(&source, name).await?
            } else {
                0
            };
            let index = IndexPlan {
                name: name.to_string(),
                in_source: on_source,
                in_target: in_target.iter().any(|i| i == name),
                source_docs,
                partitions: spec.partitions_for(source_docs),
            };
            partitions.push(NewPartition {
                unit: index.name.clone(),
                slice_id: 0,
                slice_count: 1,
                docs_total: source_docs,
            });
            plan.indices.push(index);
        }
        Ok(Plan {
            details: serde_json::to_value(&plan).unwrap_or(Value::Null),
            partitions,
        })
    }

    async fn run(
        &self,
        job: &JobRecord,
        partition: &PartitionRecord,
        lease: &Lease,
    ) -> Result<RunOutcome, JobFailure> {
        let spec = spec_of(job)?;
        let source = SearchClient::connect(&self.api, spec.source_cluster_id).await?;
        let target = SearchClient::connect(&self.api, spec.target_cluster_id).await?;
        let partitions = plan_of(job)
            .and_then(|p| p.indices.into_iter().find(|i| i.name == partition.unit))
            .map_or_else(|| spec.partitions_for(0), |i| i.partitions);
        let context = run::Context {
            pool: &self.api.pool,
            job_id: job.id,
            spec: &spec,
            source: &source,
            target: &target,
            partitions,
        };
        run::run(&context, partition, lease)
            .await
            .map_err(|f| f.with("index", partition.unit.clone()))
    }
}
