//! Job and partition records to `MigrationJob` / `MigrationPartition`,
//! with progress summed from the partitions.

use std::collections::BTreeMap;
use std::time::Duration;

use tandem_proto::v1 as pb;
use uuid::Uuid;

use super::progress;
use crate::jobs::{JobRecord, PartitionRecord, is_terminal};
use crate::migration::cluster_metadata::{ItemResult, Kind, Outcome};
use crate::migration::copy::{FAILED, SKIPPED_NEWER, add_counters};
use crate::migration::snapshot::{self, Checkpoint, Phase};
use crate::migration::{
    CopyMode, IndexPlan, MigrationPlan, MigrationSpec, ReadMode, TypeRewriteMode, plan_of, spec_of,
};
use crate::services::{duration, timestamp};

/// Sums of a set of partitions.
#[derive(Debug, Default)]
struct Totals {
    docs_done: u64,
    bytes_done: u64,
    counters: BTreeMap<String, u64>,
    counts: pb::PartitionCounts,
}

impl Totals {
    fn add(&mut self, partition: &PartitionRecord) {
        self.docs_done += partition.docs_done;
        self.bytes_done += partition.bytes_done;
        add_counters(&mut self.counters, &partition.counters);
        self.counts.total += 1;
        match partition.state {
            pb::PartitionState::Leased => self.counts.leased += 1,
            pb::PartitionState::Done => self.counts.done += 1,
            pb::PartitionState::Failed => self.counts.failed += 1,
            _ => self.counts.pending += 1,
        }
    }

    fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

fn progress_of(totals: &Totals, docs_total: u64, rates: (f64, f64)) -> pb::Progress {
    let (docs_per_second, bytes_per_second) = rates;
    let eta = (docs_per_second > 0.0 && docs_total > totals.docs_done).then(|| {
        duration(Duration::from_secs_f64(
            (docs_total - totals.docs_done) as f64 / docs_per_second,
        ))
    });
    pb::Progress {
        docs_total,
        docs_done: totals.docs_done,
        bytes_done: totals.bytes_done,
        docs_per_second,
        bytes_per_second,
        eta,
        partitions: Some(totals.counts),
        updated_at: Some(timestamp(chrono::Utc::now())),
    }
}

fn cluster_metadata_result(item: &ItemResult) -> pb::ClusterMetadataResult {
    pb::ClusterMetadataResult {
        kind: match item.kind {
            Kind::LegacyTemplate => pb::ClusterMetadataKind::LegacyTemplate,
            Kind::IndexTemplate => pb::ClusterMetadataKind::IndexTemplate,
            Kind::ComponentTemplate => pb::ClusterMetadataKind::ComponentTemplate,
            Kind::IngestPipeline => pb::ClusterMetadataKind::IngestPipeline,
            Kind::DataStream => pb::ClusterMetadataKind::DataStream,
            Kind::LifecyclePolicy => pb::ClusterMetadataKind::LifecyclePolicy,
        } as i32,
        name: item.name.clone(),
        outcome: match item.outcome {
            Outcome::Copied => pb::ClusterMetadataOutcome::Copied,
            Outcome::Rewritten => pb::ClusterMetadataOutcome::Rewritten,
            Outcome::KeptExisting => pb::ClusterMetadataOutcome::KeptExisting,
            Outcome::Refused => pb::ClusterMetadataOutcome::Refused,
        } as i32,
        detail: item.detail.clone(),
    }
}

fn cluster_ref(id: Uuid, names: &BTreeMap<Uuid, String>) -> pb::ClusterRef {
    pb::ClusterRef {
        cluster_id: id.to_string(),
        cluster_name: names.get(&id).cloned().unwrap_or_default(),
    }
}

fn options(spec: &MigrationSpec, job: &JobRecord) -> pb::MigrationOptions {
    pb::MigrationOptions {
        slices_per_index: spec.slices_per_index,
        batch_size: spec.batch_size,
        max_docs_per_second: spec.max_docs_per_second,
        max_bytes_per_second: spec.max_bytes_per_second,
        read_strategy: match spec.read_mode {
            ReadMode::Auto => pb::ReadStrategy::Auto,
            ReadMode::Scroll => pb::ReadStrategy::Scroll,
            ReadMode::PointInTime => pb::ReadStrategy::PointInTime,
        } as i32,
        keep_alive: (spec.keep_alive_ms > 0)
            .then(|| duration(Duration::from_millis(spec.keep_alive_ms))),
        metadata: Some(pb::MetadataCopyOptions {
            skip_settings: spec.metadata.skip_settings,
            skip_mappings: spec.metadata.skip_mappings,
            skip_aliases: spec.metadata.skip_aliases,
            copy_templates: spec.metadata.copy_templates,
            copy_ingest_pipelines: spec.metadata.copy_ingest_pipelines,
            copy_data_streams: spec.metadata.copy_data_streams,
            copy_lifecycle_policies: spec.metadata.copy_lifecycle_policies,
            if_exists: if spec.metadata.reuse_existing {
                pb::ExistingIndexPolicy::Reuse
            } else {
                pb::ExistingIndexPolicy::Fail
            } as i32,
            settings_overrides: spec
                .metadata
                .settings_overrides
                .clone()
                .into_iter()
                .collect(),
            excluded_settings: spec.metadata.excluded_settings.clone(),
        }),
        type_rewrite: Some(pb::MappingTypeRewrite {
            mode: match spec.type_rewrite.mode {
                TypeRewriteMode::Auto => pb::TypeRewriteMode::Auto,
                TypeRewriteMode::None => pb::TypeRewriteMode::None,
                TypeRewriteMode::Strip => pb::TypeRewriteMode::Strip,
            } as i32,
            target_type: spec.type_rewrite.target_type.clone(),
        }),
        max_partition_attempts: job.max_attempts,
        lease_duration: Some(duration(job.lease)),
        mode: match spec.mode {
            CopyMode::Documents => pb::MigrationMode::Documents,
            CopyMode::Snapshot => pb::MigrationMode::Snapshot,
        } as i32,
        snapshot: spec.snapshot.as_ref().map(|s| pb::SnapshotOptions {
            repository: s.repository().to_string(),
            source_location: s.source_location.clone(),
            target_location: s.target_location.clone(),
            delete_snapshot: s.delete_snapshot,
        }),
    }
}

fn snapshot_phase(phase: Phase) -> pb::SnapshotPhase {
    match phase {
        Phase::Pending | Phase::Snapshot => pb::SnapshotPhase::Snapshot,
        Phase::Restore => pb::SnapshotPhase::Restore,
        Phase::Done => pb::SnapshotPhase::Done,
    }
}

/// The snapshot progress of a planned snapshot job.
fn snapshot_progress(plan: &MigrationPlan, cp: &Checkpoint) -> Option<pb::SnapshotProgress> {
    let planned = plan.snapshot.as_ref()?;
    Some(pb::SnapshotProgress {
        repository: planned.repository.clone(),
        snapshot: planned.snapshot.clone(),
        phase: snapshot_phase(cp.phase) as i32,
        snapshot_state: cp.snapshot_state.clone(),
        snapshot_shards_total: cp.snapshot_shards_total,
        snapshot_shards_done: cp.snapshot_shards_done,
        snapshot_bytes_total: cp.snapshot_bytes_total,
        snapshot_bytes_done: cp.snapshot_bytes_done,
        restore_shards_total: cp.restore_shards_total,
        restore_shards_done: cp.restore_shards_done,
        restore_bytes_total: cp.restore_bytes_total,
        restore_bytes_done: cp.restore_bytes_done,
        snapshot_deleted: cp.deleted,
    })
}

/// Progress of one index of a snapshot job, from the partition's
/// checkpoint: bytes recovered, documents once restored.
fn snapshot_index_progress(
    index: &IndexPlan,
    cp: &Checkpoint,
    failed: bool,
) -> pb::IndexMigrationProgress {
    let state = cp.indices.get(&index.name).cloned().unwrap_or_default();
    let phase = match state.phase {
        _ if failed && state.phase != Phase::Done => pb::IndexMigrationPhase::Failed,
        Phase::Pending => pb::IndexMigrationPhase::Pending,
        Phase::Snapshot => pb::IndexMigrationPhase::Snapshot,
        Phase::Restore => pb::IndexMigrationPhase::Restore,
        Phase::Done => pb::IndexMigrationPhase::Done,
    };
    pb::IndexMigrationProgress {
        source_index: index.name.clone(),
        target_index: index.name.clone(),
        phase: phase as i32,
        progress: Some(pb::Progress {
            docs_total: index.docs_total,
            docs_done: state.docs,
            bytes_done: state.bytes_done,
            updated_at: Some(timestamp(chrono::Utc::now())),
            ..Default::default()
        }),
        warnings: index.warnings.clone(),
        ..Default::default()
    }
}

/// The `MigrationJob` of `job` and its `partitions`; `names` gives cluster
/// names by id.
pub fn job(
    job: &JobRecord,
    partitions: &[PartitionRecord],
    names: &BTreeMap<Uuid, String>,
    per_index: bool,
) -> pb::MigrationJob {
    let spec = spec_of(job).ok();
    let plan = plan_of(job);
    let mut totals = Totals::default();
    let mut by_index: BTreeMap<&str, Totals> = BTreeMap::new();
    for partition in partitions {
        totals.add(partition);
        by_index.entry(&partition.unit).or_default().add(partition);
    }
    let docs_total = plan
        .as_ref()
        .map_or(0, |p| p.indices.iter().map(|i| i.docs_total).sum());
    let running_for = job
        .started_at
        .map(|s| {
            let end = job.finished_at.unwrap_or_else(chrono::Utc::now);
            (end - s).to_std().unwrap_or_default()
        })
        .unwrap_or_default();
    let rates = if is_terminal(job.state) || job.state == pb::JobState::Paused {
        (0.0, 0.0)
    } else {
        progress::rates(job.id, totals.docs_done, totals.bytes_done, running_for)
    };
    let snapshot_mode = spec.as_ref().is_some_and(|s| s.mode == CopyMode::Snapshot);
    let checkpoint = partitions
        .first()
        .filter(|_| snapshot_mode)
        .and_then(snapshot::checkpoint_of)
        .unwrap_or_default();
    let snapshot = plan
        .as_ref()
        .filter(|_| snapshot_mode)
        .and_then(|p| snapshot_progress(p, &checkpoint));
    let index_progress = if per_index && snapshot_mode {
        plan.iter()
            .flat_map(|p| &p.indices)
            .map(|index| snapshot_index_progress(index, &checkpoint, totals.counts.failed > 0))
            .collect()
    } else if per_index {
        plan.iter()
            .flat_map(|p| &p.indices)
            .map(|index| {
                let empty = Totals::default();
                let t = by_index.get(index.name.as_str()).unwrap_or(&empty);
                let phase = if t.counts.failed > 0 {
                    pb::IndexMigrationPhase::Failed
                } else if t.counts.done == t.counts.total {
                    pb::IndexMigrationPhase::Done
                } else if t.counts.leased > 0 || t.counts.done > 0 || t.docs_done > 0 {
                    pb::IndexMigrationPhase::Documents
                } else {
                    pb::IndexMigrationPhase::Pending
                };
                pb::IndexMigrationProgress {
                    source_index: index.name.clone(),
                    target_index: index.name.clone(),
                    phase: phase as i32,
                    progress: Some(progress_of(t, index.docs_total, (0.0, 0.0))),
                    docs_skipped_newer: t.counter(SKIPPED_NEWER),
                    docs_failed: t.counter(FAILED),
                    warnings: index.warnings.clone(),
                    error: None,
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let (source, target) = match &spec {
        Some(spec) => (
            Some(cluster_ref(spec.source_cluster_id, names)),
            Some(cluster_ref(spec.target_cluster_id, names)),
        ),
        None => (None, None),
    };
    pb::MigrationJob {
        id: job.id.to_string(),
        name: job.name.clone(),
        labels: job.labels.clone().into_iter().collect(),
        source,
        target,
        indices: spec.as_ref().map(|s| pb::IndexFilter {
            include: s.indices.include.clone(),
            exclude: s.indices.exclude.clone(),
            include_hidden: s.indices.include_hidden,
        }),
        options: spec.as_ref().map(|s| options(s, job)),
        task_id: job.task_id.map(|t| t.to_string()).unwrap_or_default(),
        state: job.state as i32,
        progress: Some(progress_of(&totals, docs_total, rates)),
        docs_skipped_newer: totals.counter(SKIPPED_NEWER),
        docs_failed: totals.counter(FAILED),
        index_progress,
        cluster_metadata: plan
            .iter()
            .flat_map(|p| &p.cluster_metadata)
            .map(cluster_metadata_result)
            .collect(),
        snapshot,
        error: job.error.as_ref().map(|e| pb::ErrorInfo {
            reason: e.reason.clone(),
            message: e.message.clone(),
            occurred_at: job.finished_at.map(timestamp),
            metadata: e.metadata.clone().into_iter().collect(),
        }),
        created_at: Some(timestamp(job.created_at)),
        started_at: job.started_at.map(timestamp),
        finished_at: job.finished_at.map(timestamp),
        updated_at: Some(timestamp(
            partitions
                .iter()
                .map(|p| p.updated_at)
                .max()
                .map_or(job.updated_at, |p| p.max(job.updated_at)),
        )),
    }
}

/// The `MigrationPartition` of `partition`.
pub fn partition(partition: &PartitionRecord) -> pb::MigrationPartition {
    pb::MigrationPartition {
        id: partition.id.to_string(),
        index: partition.unit.clone(),
        slice_id: partition.slice_id,
        slice_count: partition.slice_count,
        state: partition.state as i32,
        worker_id: partition.lease_owner.clone().unwrap_or_default(),
        lease_expires_at: partition.lease_expires_at.map(timestamp),
        attempts: partition.attempts,
        docs_total: partition.docs_total,
        docs_done: partition.docs_done,
        bytes_done: partition.bytes_done,
        checkpoint: partition
            .checkpoint
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        last_error: partition.error.as_ref().map(|e| pb::ErrorInfo {
            reason: e.reason.clone(),
            message: e.message.clone(),
            occurred_at: Some(timestamp(e.at)),
            metadata: Default::default(),
        }),
        updated_at: Some(timestamp(partition.updated_at)),
    }
}
