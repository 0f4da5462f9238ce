//! Comparing one index: the job partition of a comparison (counts, digests,
//! drill-down and recheck; see [`crate::compare`] for the design).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tandem_proto::codes;
use tandem_proto::v1 as pb;
use uuid::Uuid;

use super::digest::{SetDigest, partition_of};
use super::read::{DocSummary, Scroll, lookup};
use super::{CompareSpec, Depth, IndexResult, PartitionMismatch, Phase, counters, partition_id};
use crate::jobs::{JobFailure, Lease, LeaseStatus, PartitionProgress, PartitionRecord, RunOutcome};
use crate::migration::copy::{Limits, throttle};
use crate::migration::metadata;
use crate::migration::search::SearchClient;
use crate::store::compare_diffs::{self as diffs, NewDiff};

/// What every partition of a job shares.
#[derive(Debug)]
pub struct Context<'a> {
    /// Store of the differences.
    pub pool: &'a PgPool,
    /// The job.
    pub job_id: Uuid,
    /// What the job does.
    pub spec: &'a CompareSpec,
    /// Reference side.
    pub source: &'a SearchClient,
    /// Side checked.
    pub target: &'a SearchClient,
    /// Digest partitions of this index.
    pub partitions: u32,
}

/// Which side of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Target,
}

/// Whether the run goes on.
enum Flow {
    Continue,
    Stop,
}

/// The running state of one partition: what is stored at each checkpoint.
struct State<'a> {
    lease: &'a Lease,
    result: IndexResult,
    progress: PartitionProgress,
    active: u32,
}

impl State<'_> {
    async fn checkpoint(&mut self) -> Result<Flow, JobFailure> {
        self.progress.checkpoint = serde_json::to_value(&self.result).unwrap_or_default();
        match self.lease.checkpoint(&self.progress).await? {
            LeaseStatus::Continue { active } => {
                self.active = active;
                Ok(Flow::Continue)
            }
            LeaseStatus::Stop => Ok(Flow::Stop),
        }
    }
}

/// Compares the index of `partition` from its checkpoint.
pub async fn run(
    ctx: &Context<'_>,
    partition: &PartitionRecord,
    lease: &Lease,
) -> Result<RunOutcome, JobFailure> {
    let index = partition.unit.as_str();
    let mut state = State {
        lease,
        result: IndexResult::of(partition),
        progress: PartitionProgress {
            checkpoint: serde_json::Value::Null,
            docs_done: partition.docs_done,
            bytes_done: 0,
            docs_total: None,
            counters: partition.counters.clone(),
        },
        active: 1,
    };
    if state.result.phase == Phase::Done {
        return Ok(RunOutcome::Completed);
    }
    let in_source = metadata::exists(ctx.source, index).await?;
    let in_target = metadata::exists(ctx.target, index).await?;

    if state.result.phase < Phase::Counted {
        state.result = IndexResult {
            phase: Phase::Counted,
            source_docs: count(ctx.source, index, in_source).await?,
            target_docs: count(ctx.target, index, in_target).await?,
            partitions: ctx.partitions,
            mismatched: Vec::new(),
        };
        state.progress.docs_total = Some(state.result.source_docs);
        if ctx.spec.depth == Depth::CountOnly {
            state.result.phase = Phase::Done;
            state.progress.docs_done = state.result.source_docs;
        }
        if let Flow::Stop = state.checkpoint().await? {
            return Ok(RunOutcome::Stopped);
        }
        if state.result.phase == Phase::Done {
            return Ok(RunOutcome::Completed);
        }
    }

    if state.result.phase < Phase::Digested {
        state.progress.docs_done = 0;
        let mut source_digests = vec![SetDigest::default(); ctx.partitions as usize];
        let mut target_digests = source_digests.clone();
        for (side, exists, digests) in [
            (Side::Source, in_source, &mut source_digests),
            (Side::Target, in_target, &mut target_digests),
        ] {
            let flow = scan(ctx, &mut state, side, index, exists, |doc| {
                let version = (!ctx.spec.ignore_versions).then_some(doc.version);
                digests[partition_of(&doc.id, ctx.partitions) as usize]
                    .add(&doc.id, version, &doc.hash);
            })
            .await?;
            if let Flow::Stop = flow {
                return Ok(RunOutcome::Stopped);
            }
        }
        state.result.mismatched = source_digests
            .iter()
            .zip(&target_digests)
            .enumerate()
            .filter(|(_, (s, t))| s != t)
            .map(|(number, (s, t))| PartitionMismatch {
                number: number as u32,
                source_docs: s.docs,
                target_docs: t.docs,
                source_digest: s.hex(),
                target_digest: t.hex(),
            })
            .collect();
        state.result.phase = if ctx.spec.depth == Depth::Full && !state.result.mismatched.is_empty()
        {
            Phase::Digested
        } else {
            Phase::Done
        };
        if let Flow::Stop = state.checkpoint().await? {
            return Ok(RunOutcome::Stopped);
        }
        if state.result.phase == Phase::Done {
            return Ok(RunOutcome::Completed);
        }
    }

    // Drill-down into the mismatched digest partitions.
    let wanted: BTreeSet<u32> = state.result.mismatched.iter().map(|m| m.number).collect();
    let mut sides: [HashMap<String, DocSummary>; 2] = [HashMap::new(), HashMap::new()];
    for (side, exists) in [(Side::Source, in_source), (Side::Target, in_target)] {
        let docs = &mut sides[side as usize];
        let flow = scan(ctx, &mut state, side, index, exists, |doc| {
            if wanted.contains(&partition_of(&doc.id, ctx.partitions)) {
                docs.insert(doc.id.clone(), doc);
            }
        })
        .await?;
        if let Flow::Stop = flow {
            return Ok(RunOutcome::Stopped);
        }
    }
    let [source_docs, target_docs] = sides;
    let (candidates, version_ahead) = differences(ctx, index, &source_docs, &target_docs);

    // Recheck after the delay: writes in flight may have landed meanwhile.
    let deadline = Instant::now() + ctx.spec.recheck_delay();
    while !candidates.is_empty() && Instant::now() < deadline {
        tokio::time::sleep((deadline - Instant::now()).min(Duration::from_secs(1))).await;
        if let Flow::Stop = state.checkpoint().await? {
            return Ok(RunOutcome::Stopped);
        }
    }
    let ids: Vec<String> = candidates.iter().map(|d| d.doc_id.clone()).collect();
    let mode = ctx.spec.source_match();
    let again_source = by_id(lookup(ctx.source, index, in_source, &ids, mode).await?);
    let again_target = by_id(lookup(ctx.target, index, in_target, &ids, mode).await?);
    // Only the candidates were read again, so only they can come back.
    let (confirmed, _) = differences(ctx, index, &again_source, &again_target);

    let mut found: BTreeMap<String, u64> = BTreeMap::new();
    for diff in &confirmed {
        let name = match diff.kind {
            pb::DiffKind::ExtraInTarget => counters::EXTRA_IN_TARGET,
            pb::DiffKind::ContentDiffers => counters::CONTENT_DIFFERS,
            pb::DiffKind::VersionDiffers => counters::VERSION_DIFFERS,
            _ => counters::MISSING_IN_TARGET,
        };
        *found.entry(name.to_string()).or_default() += 1;
    }
    found.insert(counters::VERSION_AHEAD.to_string(), version_ahead);
    found.insert(
        counters::TRANSIENT.to_string(),
        (candidates.len() - confirmed.len()) as u64,
    );
    let dropped = diffs::record(ctx.pool, ctx.job_id, ctx.spec.max_diffs(), &confirmed)
        .await
        .map_err(|e| JobFailure::transient(codes::STORE_UNAVAILABLE, e.to_string()))?;
    found.insert(counters::NOT_RECORDED.to_string(), dropped);
    state.progress.counters = found;
    state.result.phase = Phase::Done;
    match state.checkpoint().await? {
        Flow::Continue => Ok(RunOutcome::Completed),
        Flow::Stop => Ok(RunOutcome::Stopped),
    }
}

async fn count(client: &SearchClient, index: &str, exists: bool) -> Result<u64, JobFailure> {
    if exists {
        metadata::count(client, index).await
    } else {
        Ok(0)
    }
}

fn by_id(docs: Vec<DocSummary>) -> HashMap<String, DocSummary> {
    docs.into_iter().map(|d| (d.id.clone(), d)).collect()
}

/// Reads every document of `index` on `side`, handing each to `visit`,
/// pacing the reads and checkpointing after every page.
async fn scan(
    ctx: &Context<'_>,
    state: &mut State<'_>,
    side: Side,
    index: &str,
    exists: bool,
    mut visit: impl FnMut(DocSummary),
) -> Result<Flow, JobFailure> {
    let client = match side {
        Side::Source => ctx.source,
        Side::Target => ctx.target,
    };
    let mut scroll = Scroll::new(
        client,
        index,
        exists,
        ctx.spec.batch_size(),
        ctx.spec.source_match(),
    );
    loop {
        let started = Instant::now();
        let page = scroll.next().await?;
        if page.is_empty() {
            return Ok(Flow::Continue);
        }
        let docs = page.len() as u64;
        page.into_iter().for_each(&mut visit);
        // Progress counts the source documents of the digest phase.
        if side == Side::Source && state.result.phase < Phase::Digested {
            state.progress.docs_done += docs;
        }
        let limits = Limits {
            docs_per_second: ctx.spec.max_docs_per_second,
            bytes_per_second: 0,
        };
        throttle(limits, state.active, docs, 0, started.elapsed()).await;
        if let Flow::Stop = state.checkpoint().await? {
            scroll.close().await;
            return Ok(Flow::Stop);
        }
    }
}

/// The differences between the documents read on both sides, by document
/// id, and how many documents are equal with the target's version ahead.
fn differences(
    ctx: &Context<'_>,
    index: &str,
    source: &HashMap<String, DocSummary>,
    target: &HashMap<String, DocSummary>,
) -> (Vec<NewDiff>, u64) {
    let ids: BTreeSet<&String> = source.keys().chain(target.keys()).collect();
    let mut found = Vec::new();
    let mut ahead = 0;
    for id in ids {
        let (s, t) = (source.get(id), target.get(id));
        if let (Some(s), Some(t)) = (s, t)
            && s.hash == t.hash
            && t.version > s.version
        {
            ahead += 1;
        }
        let kind = match (s, t) {
            (Some(_), None) => pb::DiffKind::MissingInTarget,
            (None, Some(_)) => pb::DiffKind::ExtraInTarget,
            (Some(s), Some(t)) if s.hash != t.hash => pb::DiffKind::ContentDiffers,
            // A target ahead of the source with the same content is what
            // replay leaves after repairing a document re-created below
            // the target's tombstone (ADR 006): converged, not a difference.
            (Some(s), Some(t)) if s.version > t.version && !ctx.spec.ignore_versions => {
                pb::DiffKind::VersionDiffers
            }
            _ => continue,
        };
        found.push(NewDiff {
            index: index.to_string(),
            doc_id: id.clone(),
            kind,
            source_version: s.map(|d| d.version),
            target_version: t.map(|d| d.version),
            source_hash: s.map(|d| d.hash.clone()).unwrap_or_default(),
            target_hash: t.map(|d| d.hash.clone()).unwrap_or_default(),
            routing: s.or(t).map(|d| d.routing.clone()).unwrap_or_default(),
            partition_id: partition_id(index, partition_of(id, ctx.partitions)),
        });
    }
    (found, ahead)
}
