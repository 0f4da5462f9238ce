//! Full-copy migration jobs: the `migration` kind of [`crate::jobs`].
//!
//! Planning ([`MigrationHandler::plan`]) connects to both clusters, selects
//! the source indices ([`metadata::select`]), refuses existing target
//! indices under `EXISTING_INDEX_POLICY_FAIL` (before creating anything),
//! creates every target index from the source's metadata
//! ([`metadata::copy_index`]), counts the documents, and plans one
//! partition per index × slice. A metadata failure fails the job, naming
//! the index. A crash in the middle of planning re-plans the job; under
//! `EXISTING_INDEX_POLICY_FAIL` the indices the first attempt created then
//! count as existing and fail the job (use `REUSE` to resume such a job by
//! creating it again).
//!
//! Each partition is then copied by [`copy::run`] (see there for reading,
//! versioned writes and checkpoints).
//!
//! Throttling: `max_docs_per_second` / `max_bytes_per_second` are job-wide;
//! every partition paces itself to its share, the limit divided by the
//! number of partitions of the job leased at its last checkpoint (on any
//! replica).
//!
//! On request, planning first copies the cluster-level metadata the
//! indices depend on: templates matching a selected index and ingest
//! pipelines ([`cluster_metadata`], each reported in the plan).
//!
//! In `MIGRATION_MODE_SNAPSHOT` the documents are carried by a snapshot
//! of the source restored on the target instead ([`snapshot`]: version
//! rule, planning and the snapshot → restore partition).
//!
//! Not supported yet: data streams, ILM / ISM policies.

pub mod cluster_metadata;
pub mod copy;
pub mod data_streams;
pub mod hits;
pub mod metadata;
pub mod search;
pub mod snapshot;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tandem_proto::codes;
use uuid::Uuid;

use crate::api::Api;
use crate::jobs::{
    JobFailure, JobHandler, JobRecord, Lease, NewPartition, PartitionRecord, Plan, RunOutcome,
};
use search::SearchClient;

/// The `kind` of migration jobs.
pub const KIND: &str = "migration";

/// Most slices per index chosen automatically.
const MAX_AUTO_SLICES: u32 = 32;

/// Which indices a job copies (`IndexFilter`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSelection {
    /// Patterns to include; empty means every index.
    pub include: Vec<String>,
    /// Patterns excluded after `include`.
    pub exclude: Vec<String>,
    /// Also hidden (dot) indices.
    pub include_hidden: bool,
}

/// How documents are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadMode {
    /// Point in time where supported, scroll otherwise.
    Auto,
    /// Sliced scroll.
    Scroll,
    /// Point in time (refused when unsupported).
    PointInTime,
}

/// Mapping-type rewrite mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeRewriteMode {
    /// Rewrite only when the versions need it.
    Auto,
    /// Never rewrite.
    None,
    /// Always strip types.
    Strip,
}

/// Mapping-type rewriting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeRewrite {
    /// Mode.
    pub mode: TypeRewriteMode,
    /// Type for typed targets; empty means the target's default (`_doc`
    /// on 6.x, `doc` on 5.x, where names starting with `_` are reserved).
    pub target_type: String,
}

impl TypeRewrite {
    /// The type written to typed targets: the one asked for, else the
    /// target's default type (the gateway's replay uses the same rule).
    pub fn target_type<'a>(&'a self, target: &tandem_es::ClusterVersion) -> &'a str {
        if self.target_type.is_empty() {
            target.default_doc_type().unwrap_or("_doc")
        } else {
            &self.target_type
        }
    }
}

/// Metadata copy options (`MetadataCopyOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataSpec {
    /// Do not copy settings.
    pub skip_settings: bool,
    /// Do not copy mappings.
    pub skip_mappings: bool,
    /// Do not copy aliases.
    pub skip_aliases: bool,
    /// Existing target indices are reused instead of failing the job.
    pub reuse_existing: bool,
    /// Settings set on creation on top of the copied ones.
    pub settings_overrides: BTreeMap<String, String>,
    /// Setting names or patterns never copied.
    pub excluded_settings: Vec<String>,
    /// Copy templates matching a selected index (and their components).
    #[serde(default)]
    pub copy_templates: bool,
    /// Copy every ingest pipeline.
    #[serde(default)]
    pub copy_ingest_pipelines: bool,
    /// Copy the data streams the selection names, with their documents.
    #[serde(default)]
    pub copy_data_streams: bool,
    /// Copy ILM / ISM policies.
    #[serde(default)]
    pub copy_lifecycle_policies: bool,
}

/// How a job carries the documents over (`MigrationMode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyMode {
    /// Read and bulk-write documents.
    #[default]
    Documents,
    /// Snapshot on the source, restore on the target.
    Snapshot,
}

/// What a migration job does: its `spec` in the jobs table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationSpec {
    /// Cluster read from.
    pub source_cluster_id: Uuid,
    /// Cluster written to.
    pub target_cluster_id: Uuid,
    /// Indices copied.
    pub indices: IndexSelection,
    /// Slices per index; 0 = primary shards, at most 32.
    pub slices_per_index: u32,
    /// Documents per page and bulk; 0 = 1000.
    pub batch_size: u32,
    /// Job-wide documents per second; 0 = unlimited.
    pub max_docs_per_second: u64,
    /// Job-wide `_source` bytes per second; 0 = unlimited.
    pub max_bytes_per_second: u64,
    /// How documents are read.
    pub read_mode: ReadMode,
    /// Keep-alive of scrolls and points in time, in ms; 0 = 5 min.
    pub keep_alive_ms: u64,
    /// Metadata options.
    pub metadata: MetadataSpec,
    /// Mapping-type rewriting.
    pub type_rewrite: TypeRewrite,
    /// How documents are carried over.
    #[serde(default)]
    pub mode: CopyMode,
    /// Snapshot options, in [`CopyMode::Snapshot`].
    #[serde(default)]
    pub snapshot: Option<snapshot::SnapshotSpec>,
}

impl MigrationSpec {
    /// Documents per page and per bulk request.
    pub fn batch_size(&self) -> u32 {
        if self.batch_size == 0 {
            1000
        } else {
            self.batch_size
        }
    }

    /// The snapshot options when the job restores a snapshot.
    pub fn snapshot_mode(&self) -> Option<&snapshot::SnapshotSpec> {
        match self.mode {
            CopyMode::Snapshot => self.snapshot.as_ref(),
            CopyMode::Documents => None,
        }
    }

    /// Keep-alive of scrolls and points in time.
    pub fn keep_alive(&self) -> Duration {
        if self.keep_alive_ms == 0 {
            Duration::from_secs(300)
        } else {
            Duration::from_millis(self.keep_alive_ms)
        }
    }
}

/// What planning found: the job's `plan` in the jobs table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MigrationPlan {
    /// Source version, e.g. `6.8.23`.
    pub source_version: String,
    /// Target version.
    pub target_version: String,
    /// Whether documents are read with point in time (else scroll).
    pub point_in_time: bool,
    /// Selected indices, by name.
    pub indices: Vec<IndexPlan>,
    /// Templates and pipelines asked for, with their outcomes.
    #[serde(default)]
    pub cluster_metadata: Vec<cluster_metadata::ItemResult>,
    /// Repository and snapshot, in [`CopyMode::Snapshot`].
    #[serde(default)]
    pub snapshot: Option<snapshot::SnapshotPlan>,
}

/// One planned index.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexPlan {
    /// Name (same on both sides).
    pub name: String,
    /// Source documents when planned.
    pub docs_total: u64,
    /// Slices.
    pub slices: u32,
    /// Non-fatal metadata findings.
    pub warnings: Vec<String>,
}

/// The migration job handler.
#[derive(Debug, Clone)]
pub struct MigrationHandler {
    api: Api,
}

impl MigrationHandler {
    /// A handler reaching clusters through `api`'s store, secrets and
    /// prober.
    pub fn new(api: Api) -> MigrationHandler {
        MigrationHandler { api }
    }
}

/// The spec of `job`, or a permanent failure.
pub fn spec_of(job: &JobRecord) -> Result<MigrationSpec, JobFailure> {
    serde_json::from_value(job.spec.clone()).map_err(|e| {
        JobFailure::permanent(
            codes::SPEC_UNREADABLE,
            format!("stored job spec unreadable: {e}"),
        )
    })
}

/// The plan of `job`, when planned.
pub fn plan_of(job: &JobRecord) -> Option<MigrationPlan> {
    job.plan
        .clone()
        .and_then(|p| serde_json::from_value::<MigrationPlan>(p).ok())
}

fn use_pit(spec: &MigrationSpec, source: &SearchClient) -> Result<bool, JobFailure> {
    match spec.read_mode {
        ReadMode::Scroll => Ok(false),
        ReadMode::Auto => Ok(source.supports_pit()),
        ReadMode::PointInTime if source.supports_pit() => Ok(true),
        ReadMode::PointInTime => Err(JobFailure::permanent(
            codes::POINT_IN_TIME_UNSUPPORTED,
            format!(
                "the source ({}) does not support point in time; use READ_STRATEGY_SCROLL",
                source.version.number
            ),
        )),
    }
}

#[tonic::async_trait]
impl JobHandler for MigrationHandler {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn plan(&self, job: &JobRecord) -> Result<Plan, JobFailure> {
        let spec = spec_of(job)?;
        let source = SearchClient::connect(&self.api, spec.source_cluster_id).await?;
        let target = SearchClient::connect(&self.api, spec.target_cluster_id).await?;
        if let Some(options) = spec.snapshot_mode() {
            let mut selected = metadata::select(&source, &spec.indices).await?;
            selected.retain(|index| {
                tandem_es::data_stream::stream_of_backing_index(&index.name).is_none()
            });
            let streams = data_streams::select(&source, &spec.indices).await?;
            let refused = streams.iter().map(data_streams::not_in_snapshot).collect();
            return snapshot::plan(job, &spec, options, &source, &target, selected, refused).await;
        }
        let mut point_in_time = use_pit(&spec, &source)?;
        let mut selected = metadata::select(&source, &spec.indices).await?;
        let streams = data_streams::select(&source, &spec.indices).await?;
        // Backing indices (selected with hidden indices) go with their
        // stream, never as plain indices.
        selected
            .retain(|index| tandem_es::data_stream::stream_of_backing_index(&index.name).is_none());
        let mut read_warning = None;
        let first_unit = selected.first().map(|i| &i.name).or_else(|| {
            streams
                .iter()
                .filter(|_| spec.metadata.copy_data_streams)
                .flat_map(|s| s.backing_indices.first())
                .next()
        });
        if point_in_time
            && let Some(first) = first_unit
            && let Err(refused) = copy::point_in_time_works(&source, first).await
        {
            if spec.read_mode == ReadMode::PointInTime {
                return Err(JobFailure::permanent(
                    codes::POINT_IN_TIME_UNSUPPORTED,
                    format!(
                        "the source ({}) refused a point in time: {}; use READ_STRATEGY_SCROLL",
                        source.version.number, refused.message
                    ),
                ));
            }
            point_in_time = false;
            read_warning = Some(format!(
                "the source refused a point in time ({}); documents are read with sliced scroll",
                refused.message
            ));
        }
        if !spec.metadata.reuse_existing {
            let mut existing = Vec::new();
            for index in &selected {
                if metadata::exists(&target, &index.name).await? {
                    existing.push(index.name.clone());
                }
            }
            if !existing.is_empty() {
                return Err(JobFailure::permanent(
                    codes::TARGET_INDEX_EXISTS,
                    format!(
                        "target indices already exist: {} (EXISTING_INDEX_POLICY_FAIL); \
                         delete them or use EXISTING_INDEX_POLICY_REUSE",
                        existing.join(", ")
                    ),
                )
                .with("indices", existing.join(",")));
            }
        }
        // Templates first: indices the target creates later (rollover,
        // auto-created) already find them.
        // A data stream's template matches the stream's name.
        let names: Vec<String> = selected
            .iter()
            .map(|i| i.name.clone())
            .chain(streams.iter().map(|s| s.name.clone()))
            .collect();
        let wanted = cluster_metadata::Wanted {
            templates: spec.metadata.copy_templates,
            pipelines: spec.metadata.copy_ingest_pipelines,
            policies: spec.metadata.copy_lifecycle_policies,
        };
        let mut cluster_metadata = cluster_metadata::copy(&source, &target, wanted, &names).await?;
        // Streams after their templates; their backing indices are copy
        // units whose documents go through the target's stream.
        let mut backing = Vec::new();
        for stream in &streams {
            if !spec.metadata.copy_data_streams {
                cluster_metadata.push(data_streams::not_asked(stream));
                continue;
            }
            let item = data_streams::recreate(&target, stream).await?;
            if item.outcome != cluster_metadata::Outcome::Refused {
                backing.extend(
                    stream
                        .backing_indices
                        .iter()
                        .map(|index| (stream.name.clone(), index.clone())),
                );
            }
            cluster_metadata.push(item);
        }
        let mut plan = MigrationPlan {
            source_version: source.version.number.clone(),
            target_version: target.version.number.clone(),
            point_in_time,
            indices: Vec::new(),
            cluster_metadata,
            snapshot: None,
        };
        let mut partitions = Vec::new();
        for index in selected {
            let outcome = metadata::copy_index(
                &source,
                &target,
                &index.name,
                &spec.metadata,
                &spec.type_rewrite,
            )
            .await?;
            let mut warnings = outcome.warnings;
            warnings.extend(read_warning.clone());
            if outcome.reused {
                warnings.push("target index existed: its settings and mappings were kept".into());
            }
            let docs_total = metadata::count(&source, &index.name).await?;
            let slices = match spec.slices_per_index {
                0 => index.primaries.clamp(1, MAX_AUTO_SLICES),
                n => n,
            };
            for slice_id in 0..slices {
                partitions.push(NewPartition {
                    unit: index.name.clone(),
                    slice_id,
                    slice_count: slices,
                    docs_total: if slices == 1 { docs_total } else { 0 },
                });
            }
            plan.indices.push(IndexPlan {
                name: index.name,
                docs_total,
                slices,
                warnings,
            });
        }
        for (stream, index) in backing {
            let docs_total = metadata::count(&source, &index).await?;
            partitions.push(NewPartition {
                unit: index.clone(),
                slice_id: 0,
                slice_count: 1,
                docs_total,
            });
            let mut warnings = vec![format!(
                "backing index of data stream {stream}: its documents are created through the target's stream"
            )];
            warnings.extend(read_warning.clone());
            plan.indices.push(IndexPlan {
                name: index,
                docs_total,
                slices: 1,
                warnings,
            });
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
        if let Some(options) = spec.snapshot_mode() {
            let plan = plan_of(job).unwrap_or_default();
            return snapshot::run(&spec, options, &plan, &source, &target, partition, lease).await;
        }
        let point_in_time = plan_of(job)
            .map(|p| p.point_in_time)
            .unwrap_or(use_pit(&spec, &source)?);
        copy::run(&spec, &source, &target, point_in_time, partition, lease)
            .await
            .map_err(|f| f.with("index", partition.unit.clone()))
    }
}

#[cfg(test)]
mod tests {
    use tandem_es::ClusterVersion;

    use super::*;

    #[test]
    fn typeless_documents_get_the_targets_default_type_like_the_replay() {
        let auto = TypeRewrite {
            mode: TypeRewriteMode::Auto,
            target_type: String::new(),
        };
        // 5.x reserves names starting with `_`: the gateway writes `doc`.
        assert_eq!(
            auto.target_type(&ClusterVersion::elasticsearch(5, 6)),
            "doc"
        );
        assert_eq!(
            auto.target_type(&ClusterVersion::elasticsearch(6, 8)),
            "_doc"
        );
        let named = TypeRewrite {
            target_type: "tweet".into(),
            ..auto
        };
        assert_eq!(
            named.target_type(&ClusterVersion::elasticsearch(5, 6)),
            "tweet"
        );
    }
}
