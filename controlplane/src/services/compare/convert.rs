//! Job, partition and difference records to `CompareJob` / `CompareDiff`.
//!
//! Each index has one job partition: its checkpoint is the index's
//! [`IndexResult`] (counts, digest partitions, mismatches) and its
//! counters are the index's difference counts. Job progress counts the job
//! partitions (one per index); an index's `partitions` counts its digest
//! partitions (all done once digests are compared).

use std::collections::BTreeMap;
use std::time::Duration;

use tandem_proto::v1 as pb;
use uuid::Uuid;

use crate::compare::{
    CompareSpec, Depth, IndexPlan, IndexResult, Phase, counters, partition_id, plan_of, spec_of,
};
use crate::jobs::{JobRecord, PartitionRecord};
use crate::services::{duration, timestamp};
use crate::store::compare_diffs::{DiffRecord, kind_of};

/// Mismatched partitions listed per index at most.
const MAX_LISTED_MISMATCHES: usize = 1000;

fn cluster_ref(id: Uuid, names: &BTreeMap<Uuid, String>) -> pb::ClusterRef {
    pb::ClusterRef {
        cluster_id: id.to_string(),
        cluster_name: names.get(&id).cloned().unwrap_or_default(),
    }
}

fn options(spec: &CompareSpec, job: &JobRecord) -> pb::CompareOptions {
    pb::CompareOptions {
        mode: match spec.depth {
            Depth::CountOnly => pb::CompareMode::CountOnly,
            Depth::Digest => pb::CompareMode::Digest,
            Depth::Full => pb::CompareMode::Full,
        } as i32,
        partitions_per_index: spec.partitions_per_index,
        batch_size: spec.batch_size,
        max_docs_per_second: spec.max_docs_per_second,
        max_diffs: spec.max_diffs,
        recheck_delay: (spec.recheck_delay_ms > 0)
            .then(|| duration(Duration::from_millis(spec.recheck_delay_ms))),
        ignore_versions: spec.ignore_versions,
        strict_source: spec.strict_source,
        max_partition_attempts: job.max_attempts,
    }
}

fn counter(partition: &PartitionRecord, name: &str) -> u64 {
    partition.counters.get(name).copied().unwrap_or(0)
}

/// The summary of one planned index and its job partition.
fn index_summary(
    depth: Depth,
    index: &IndexPlan,
    partition: Option<&PartitionRecord>,
) -> pb::IndexCompareSummary {
    let result = partition.map(IndexResult::of).unwrap_or_default();
    let done = partition.is_some_and(|p| p.state == pb::PartitionState::Done)
        && result.phase == Phase::Done;
    let count = |name: &str| partition.map_or(0, |p| counter(p, name));
    let (missing, extra, content, version) = (
        count(counters::MISSING_IN_TARGET),
        count(counters::EXTRA_IN_TARGET),
        count(counters::CONTENT_DIFFERS),
        count(counters::VERSION_DIFFERS),
    );
    let differing = !index.in_source
        || !index.in_target
        || match depth {
            Depth::CountOnly => result.source_docs != result.target_docs,
            Depth::Digest => {
                result.source_docs != result.target_docs || !result.mismatched.is_empty()
            }
            Depth::Full => missing + extra + content + version > 0,
        };
    let outcome = match (done, differing) {
        (false, _) => pb::CompareOutcome::Unspecified,
        (true, true) => pb::CompareOutcome::Mismatch,
        (true, false) => pb::CompareOutcome::Match,
    };
    let digested = result.phase >= Phase::Digested;
    let partitions = if depth == Depth::CountOnly {
        pb::PartitionCounts::default()
    } else {
        let total = result.partitions;
        pb::PartitionCounts {
            total,
            pending: if digested { 0 } else { total },
            leased: 0,
            done: if digested { total } else { 0 },
            failed: 0,
        }
    };
    pb::IndexCompareSummary {
        index: index.name.clone(),
        outcome: outcome as i32,
        missing_in_target: index.in_source && !index.in_target,
        missing_in_source: !index.in_source && index.in_target,
        source_doc_count: result.source_docs,
        target_doc_count: result.target_docs,
        partitions: Some(partitions),
        mismatched_partitions: result
            .mismatched
            .iter()
            .take(MAX_LISTED_MISMATCHES)
            .map(|m| pb::ComparePartitionMismatch {
                partition_id: partition_id(&index.name, m.number),
                partition_number: m.number,
                source_docs: m.source_docs,
                target_docs: m.target_docs,
                source_digest: m.source_digest.clone(),
                target_digest: m.target_digest.clone(),
            })
            .collect(),
        partitions_mismatched: result.mismatched.len() as u32,
        missing_in_target_docs: missing,
        extra_in_target_docs: extra,
        content_differs_docs: content,
        version_differs_docs: version,
        error: partition
            .filter(|p| p.state == pb::PartitionState::Failed)
            .and_then(|p| p.error.as_ref())
            .map(|e| pb::ErrorInfo {
                reason: e.reason.clone(),
                message: e.message.clone(),
                occurred_at: Some(timestamp(e.at)),
                metadata: Default::default(),
            }),
    }
}

/// The `CompareJob` of `job` and its `partitions`, `recorded` differences
/// being stored; `names` gives cluster names by id.
pub fn job(
    job: &JobRecord,
    partitions: &[PartitionRecord],
    recorded: u64,
    names: &BTreeMap<Uuid, String>,
    per_index: bool,
) -> pb::CompareJob {
    let spec = spec_of(job).ok();
    let depth = spec.as_ref().map_or(Depth::Full, |s| s.depth);
    let plan = plan_of(job).unwrap_or_default();
    let by_unit: BTreeMap<&str, &PartitionRecord> =
        partitions.iter().map(|p| (p.unit.as_str(), p)).collect();
    let indices: Vec<pb::IndexCompareSummary> = plan
        .indices
        .iter()
        .map(|i| index_summary(depth, i, by_unit.get(i.name.as_str()).copied()))
        .collect();

    let mut counts = pb::PartitionCounts::default();
    let mut docs_done = 0;
    for partition in partitions {
        docs_done += partition.docs_done;
        counts.total += 1;
        match partition.state {
            pb::PartitionState::Leased => counts.leased += 1,
            pb::PartitionState::Done => counts.done += 1,
            pb::PartitionState::Failed => counts.failed += 1,
            _ => counts.pending += 1,
        }
    }
    let total = |name: &str| partitions.iter().map(|p| counter(p, name)).sum::<u64>();
    let outcome = |wanted: pb::CompareOutcome| {
        indices
            .iter()
            .filter(|i| i.outcome == wanted as i32)
            .count() as u32
    };
    let matching = outcome(pb::CompareOutcome::Match);
    let differing = outcome(pb::CompareOutcome::Mismatch);
    let summary = pb::CompareSummary {
        outcome: match job.state {
            pb::JobState::Succeeded if differing > 0 => pb::CompareOutcome::Mismatch,
            pb::JobState::Succeeded => pb::CompareOutcome::Match,
            _ => pb::CompareOutcome::Unspecified,
        } as i32,
        indices_total: indices.len() as u32,
        indices_compared: matching + differing,
        indices_matching: matching,
        indices_differing: differing,
        source_docs: indices.iter().map(|i| i.source_doc_count).sum(),
        target_docs: indices.iter().map(|i| i.target_doc_count).sum(),
        partitions_mismatched: indices.iter().map(|i| i.partitions_mismatched).sum(),
        missing_in_target: total(counters::MISSING_IN_TARGET),
        extra_in_target: total(counters::EXTRA_IN_TARGET),
        content_differs: total(counters::CONTENT_DIFFERS),
        version_differs: total(counters::VERSION_DIFFERS),
        transient_diffs: total(counters::TRANSIENT),
        diffs_recorded: recorded,
        diffs_truncated: total(counters::NOT_RECORDED) > 0,
        version_ahead: total(counters::VERSION_AHEAD),
    };
    let (source, target) = match &spec {
        Some(spec) => (
            Some(cluster_ref(spec.source_cluster_id, names)),
            Some(cluster_ref(spec.target_cluster_id, names)),
        ),
        None => (None, None),
    };
    pb::CompareJob {
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
        progress: Some(pb::Progress {
            docs_total: plan.indices.iter().map(|i| i.source_docs).sum(),
            docs_done,
            bytes_done: 0,
            docs_per_second: 0.0,
            bytes_per_second: 0.0,
            eta: None,
            partitions: Some(counts),
            updated_at: Some(timestamp(chrono::Utc::now())),
        }),
        summary: Some(summary),
        index_summaries: if per_index { indices } else { Vec::new() },
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

/// The `CompareDiff` of a recorded difference.
pub fn diff(record: &DiffRecord) -> pb::CompareDiff {
    pb::CompareDiff {
        id: record.id.to_string(),
        index: record.index_name.clone(),
        doc_id: record.doc_id.clone(),
        kind: kind_of(&record.kind) as i32,
        source_version: record.source_version,
        target_version: record.target_version,
        source_hash: record.source_hash.clone(),
        target_hash: record.target_hash.clone(),
        routing: record.routing.clone(),
        partition_id: record.partition_id.clone(),
        detected_at: Some(timestamp(record.detected_at)),
        repaired_at: record.repaired_at.map(timestamp),
        source_document: None,
        target_document: None,
    }
}
