//! Copying the documents of one partition (index × slice).
//!
//! Reading: point in time plus `search_after`, sorted by `_id` (`_shard_doc` on Elasticsearch 8+), or sliced
//! scroll. Every hit carries its `_version` (`"version": true`).
//!
//! Writing: `_bulk` index actions built by the replayer's own builder
//! (`tandem_es::build_replay_bulk`): `version_type=external_gte` at the
//! source `_version`, `_source` bytes as read. A document the gateway's
//! replay already wrote at the same version is written again unchanged; one
//! it wrote at a newer version is kept: the target answers 409, counted as
//! `docs_skipped_newer` — once the source's current version (one `_mget`)
//! shows it moved past the target's. A source still at the version
//! just read, below the target's, was re-created after its delete
//! tombstone was pruned (ADR 006): that document is written again above
//! the target's version (`docs_rewritten_above_target`), as the replayer
//! does. Any other refused item counts as `docs_failed`
//! and is reported as a DOCUMENT_REJECTED event with a sample reason.
//!
//! Checkpoints, after every batch:
//!
//! - point in time: the PIT id and the last sort values. Sorted by `_id`
//!   (`_shard_doc` on Elasticsearch 8+, which refuses sorting on `_id` by
//!   default: there an expired point in time restarts the slice, as an
//!   expired scroll does). `_id` order is the
//!   same in any point in time, so when the PIT expired (long pause, dead
//!   worker) a new one is opened and the copy resumes after the last `_id`:
//!   nothing is redone. Documents created meanwhile with a smaller `_id`
//!   are not copied, which is what a copy started before them would do
//!   too: the replication queue carries them.
//! - scroll: the scroll id. A resume within the keep-alive continues the
//!   scroll; otherwise (expired context, dead worker) the slice restarts
//!   from its first document, counters reset. This is safe because writes
//!   are externally versioned: already copied documents are written again
//!   at the same version, unchanged.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tandem_es::docstate::{CurrentVersion, DocKey, parse_version_mget, version_mget};
use tandem_es::{
    ItemOutcome, ReplayTarget, ReplicationOp, build_replay_bulk, parse_bulk_response_for_replay,
};
use tandem_proto::codes;

use super::hits::{SearchPage, parse_search_page};
use super::search::{Answer, SearchClient};
use super::{MigrationSpec, TypeRewriteMode};
use crate::jobs::{
    JobFailure, Lease, LeaseStatus, NewJobEvent, PartitionProgress, PartitionRecord, RunOutcome,
};
use tandem_es::uri::encode_path_segment;

/// Counter of documents the target already held in the same or a newer
/// version.
pub const SKIPPED_NEWER: &str = "docs_skipped_newer";
/// Partition counter: documents the target held at a higher version than
/// the source although the source had not moved (re-created after the
/// source pruned its tombstone), written above the target's version.
pub const REGRESSIONS: &str = "docs_rewritten_above_target";
/// Counter of documents the target refused.
pub const FAILED: &str = "docs_failed";

/// Bulk attempts for items the target rejected as overloaded (429).
const BULK_ATTEMPTS: u32 = 5;

/// Resume position of a partition, stored as its checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case")]
enum Checkpoint {
    /// Not started.
    #[default]
    Start,
    /// Point in time plus `search_after`.
    PointInTime {
        /// PIT id, reused while alive.
        pit_id: Option<String>,
        /// Sort values of the last document copied.
        search_after: Option<Value>,
    },
    /// Sliced scroll.
    Scroll {
        /// Scroll id, continued while alive.
        scroll_id: Option<String>,
    },
}

/// One document read from the source.
#[derive(Debug, Clone)]
struct Hit {
    id: String,
    doc_type: Option<String>,
    routing: Option<String>,
    version: i64,
    source: String,
}

/// Copies `partition` from its checkpoint.
pub async fn run(
    spec: &MigrationSpec,
    source: &SearchClient,
    target: &SearchClient,
    use_pit: bool,
    partition: &PartitionRecord,
    lease: &Lease,
) -> Result<RunOutcome, JobFailure> {
    let mut progress = PartitionProgress {
        checkpoint: Value::Null,
        docs_done: partition.docs_done,
        bytes_done: partition.bytes_done,
        docs_total: None,
        counters: partition.counters.clone(),
    };
    let stored: Checkpoint = partition
        .checkpoint
        .clone()
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default();
    let mut reader = Reader {
        source,
        index: &partition.unit,
        slice: (partition.slice_count > 1).then_some((partition.slice_id, partition.slice_count)),
        batch: spec.batch_size(),
        keep_alive: format!("{}ms", spec.keep_alive().as_millis()),
        position: stored,
        use_pit,
        restarted: false,
    };
    if reader.start(&mut progress, partition.released_at_checkpoint) {
        restarted_event(lease, partition).await;
    }
    let mut active = 1u32;
    let mut hits = reader.next().await?;
    loop {
        let started = Instant::now();
        if std::mem::take(&mut reader.restarted) && restart(&mut progress) {
            restarted_event(lease, partition).await;
        }

        if hits.is_empty() {
            reader.close().await;
            progress.checkpoint = serde_json::to_value(&reader.position).unwrap_or_default();
            progress.docs_total = Some(progress.docs_done);
            return match lease.checkpoint(&progress).await? {
                LeaseStatus::Continue { .. } => Ok(RunOutcome::Completed),
                LeaseStatus::Stop => Ok(RunOutcome::Stopped),
            };
        }
        let count = hits.len() as u64;
        let bytes: u64 = hits.iter().map(|h| h.source.len() as u64).sum();
        // Where the partition stands once this batch is written.
        let position = serde_json::to_value(&reader.position).unwrap_or_default();
        // With point in time + `search_after` the next batch is read while
        // this one is written: a position is just a sort key, so a
        // checkpoint never depends on the read ahead. A scroll cursor only
        // moves forward on the server, so reading ahead would pass the
        // checkpoint a pause resumes from: scroll reads stay sequential.
        let (written, read_ahead) = if use_pit {
            let (written, next) = tokio::join!(
                write(spec, source, target, &partition.unit, &hits),
                reader.next()
            );
            (written, Some(next))
        } else {
            (
                write(spec, source, target, &partition.unit, &hits).await,
                None,
            )
        };
        let written = written?;
        if let Some(event) = written.rejection_event(&partition.unit) {
            lease.event(event).await;
        }
        if written.regressions > 0 {
            lease
                .event(
                    NewJobEvent::new(
                        tandem_proto::v1::EventSeverity::Info,
                        codes::DOCUMENTS_REWRITTEN_ABOVE_TARGET,
                        format!(
                            "{} document(s) of {} were below the target's version although the source had not moved (re-created after a delete); written above the target's version",
                            written.regressions, partition.unit
                        ),
                    )
                    .unit(&partition.unit),
                )
                .await;
        }
        progress.docs_done += count;
        progress.bytes_done += bytes;
        *progress.counters.entry(SKIPPED_NEWER.into()).or_default() += written.skipped_newer;
        if written.regressions > 0 {
            *progress.counters.entry(REGRESSIONS.into()).or_default() += written.regressions;
        }
        *progress.counters.entry(FAILED.into()).or_default() += written.failed;
        let limits = Limits {
            docs_per_second: spec.max_docs_per_second,
            bytes_per_second: spec.max_bytes_per_second,
        };
        throttle(limits, active, count, bytes, started.elapsed()).await;
        progress.checkpoint = position;
        match lease.checkpoint(&progress).await? {
            LeaseStatus::Continue { active: now } => active = now,
            LeaseStatus::Stop => return Ok(RunOutcome::Stopped),
        }
        hits = match read_ahead {
            Some(next) => next?,
            None => reader.next().await?,
        };
    }
}

/// Resets the progress of a slice that starts over; `true` when some
/// progress was lost.
fn restart(progress: &mut PartitionProgress) -> bool {
    let lost = progress.docs_done > 0;
    progress.docs_done = 0;
    progress.bytes_done = 0;
    progress.counters.clear();
    lost
}

async fn restarted_event(lease: &Lease, partition: &PartitionRecord) {
    lease
        .event(
            NewJobEvent::new(
                tandem_proto::v1::EventSeverity::Info,
                codes::PARTITION_RESTARTED,
                format!(
                    "the scroll or point in time of slice {} cannot continue; the slice restarts from its first document",
                    partition.slice_id
                ),
            )
            .unit(&partition.unit),
        )
        .await;
}

/// Job-wide read limits; zero means unlimited.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Documents per second.
    pub docs_per_second: u64,
    /// Bytes per second.
    pub bytes_per_second: u64,
}

/// Sleeps so that this partition stays within its share (`1 / active`) of
/// the job-wide `limits`, given a batch of `docs` and `bytes` that took
/// `spent`. Shared by every job kind that reads clusters.
pub async fn throttle(limits: Limits, active: u32, docs: u64, bytes: u64, spent: Duration) {
    let share = f64::from(active.max(1));
    let mut needed = Duration::ZERO;
    if limits.docs_per_second > 0 {
        needed = needed.max(Duration::from_secs_f64(
            docs as f64 * share / limits.docs_per_second as f64,
        ));
    }
    if limits.bytes_per_second > 0 {
        needed = needed.max(Duration::from_secs_f64(
            bytes as f64 * share / limits.bytes_per_second as f64,
        ));
    }
    if needed > spent {
        tokio::time::sleep(needed - spent).await;
    }
}

struct Reader<'a> {
    source: &'a SearchClient,
    index: &'a str,
    slice: Option<(u32, u32)>,
    batch: u32,
    keep_alive: String,
    position: Checkpoint,
    use_pit: bool,
    /// Set when an expired scroll made the slice start over.
    restarted: bool,
}

impl Reader<'_> {
    /// Prepares the read from the stored position; returns `true` when the
    /// slice restarts from its first document (counters reset).
    fn start(&mut self, progress: &mut PartitionProgress, released_at_checkpoint: bool) -> bool {
        let resumable = match (&self.position, self.use_pit) {
            (Checkpoint::PointInTime { .. }, true) => true,
            // A scroll has moved past its checkpoint if its holder died
            // between a read and the next checkpoint: only a partition
            // released right at a checkpoint (pause) continues its scroll.
            (Checkpoint::Scroll { scroll_id: Some(_) }, false) => released_at_checkpoint,
            _ => false,
        };
        if resumable {
            return false;
        }
        self.position = self.fresh();
        restart(progress)
    }

    fn fresh(&self) -> Checkpoint {
        if self.use_pit {
            Checkpoint::PointInTime {
                pit_id: None,
                search_after: None,
            }
        } else {
            Checkpoint::Scroll { scroll_id: None }
        }
    }

    fn slice_json(&self) -> Option<Value> {
        self.slice.map(|(id, max)| json!({ "id": id, "max": max }))
    }

    async fn next(&mut self) -> Result<Vec<Hit>, JobFailure> {
        match self.position.clone() {
            Checkpoint::PointInTime {
                pit_id,
                search_after,
            } => self.next_pit(pit_id, search_after).await,
            Checkpoint::Scroll { scroll_id } => self.next_scroll(scroll_id).await,
            Checkpoint::Start => Ok(Vec::new()),
        }
    }

    async fn open_pit(&self) -> Result<String, JobFailure> {
        open_point_in_time(self.source, self.index, &self.keep_alive).await
    }

    async fn next_pit(
        &mut self,
        pit_id: Option<String>,
        mut search_after: Option<Value>,
    ) -> Result<Vec<Hit>, JobFailure> {
        let mut pit_id = match pit_id {
            Some(id) => id,
            None => self.open_pit().await?,
        };
        let mut reopened = false;
        loop {
            let by_id = self.source.version.es().sorts_on_id();
            let sort = if by_id {
                json!([{ "_id": "asc" }])
            } else {
                json!(["_shard_doc"])
            };
            let mut body = json!({
                "size": self.batch,
                "version": true,
                "pit": { "id": pit_id, "keep_alive": self.keep_alive },
                "sort": sort,
                "track_total_hits": false,
            });
            if let Some(slice) = self.slice_json() {
                body["slice"] = slice;
            }
            if let Some(after) = &search_after {
                body["search_after"] = after.clone();
            }
            let (status, bytes) = self
                .source
                .call_bytes(Method::POST, "/_search", Some(&body))
                .await?;
            if !status.is_success() {
                let answer = Answer {
                    status,
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                };
                // An expired point in time: open another and resume after
                // the same `_id`; a `_shard_doc` position means nothing in
                // another point in time, so that slice starts over.
                if !reopened
                    && (answer.status.as_u16() == 404
                        || answer.reason().contains("point in time")
                        || answer.reason().contains("search_context_missing")
                        || answer.reason().contains("No search context"))
                {
                    reopened = true;
                    pit_id = self.open_pit().await?;
                    if !by_id {
                        self.restarted = true;
                        search_after = None;
                    }
                    continue;
                }
                return Err(self.source.refused(&Method::POST, "/_search", &answer));
            }
            let page = self.page(&bytes, "/_search")?;
            let next_pit = page.pit_id.clone().unwrap_or(pit_id.clone());
            let last_sort = page.hits.last().and_then(|h| h.sort.clone());
            self.position = Checkpoint::PointInTime {
                pit_id: Some(next_pit),
                search_after: last_sort.or(search_after),
            };
            return Ok(hits(page));
        }
    }

    async fn next_scroll(&mut self, scroll_id: Option<String>) -> Result<Vec<Hit>, JobFailure> {
        let (status, bytes) = match &scroll_id {
            Some(id) => {
                let body = json!({ "scroll": self.keep_alive, "scroll_id": id });
                self.source
                    .call_bytes(Method::POST, "/_search/scroll", Some(&body))
                    .await?
            }
            None => {
                let mut body = json!({
                    "size": self.batch,
                    "version": true,
                    "sort": ["_doc"],
                });
                if let Some(slice) = self.slice_json() {
                    body["slice"] = slice;
                }
                let path = format!(
                    "/{}/_search?scroll={}",
                    encode_path_segment(self.index),
                    self.keep_alive
                );
                self.source
                    .call_bytes(Method::POST, &path, Some(&body))
                    .await?
            }
        };
        if !status.is_success() {
            let answer = Answer {
                status,
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            if scroll_id.is_some() && answer.status.as_u16() == 404 {
                // The scroll context expired: start the slice over (see
                // the module documentation).
                self.restarted = true;
                return Box::pin(self.next_scroll(None)).await;
            }
            return Err(self
                .source
                .refused(&Method::POST, "/_search/scroll", &answer));
        }
        let page = self.page(&bytes, "/_search/scroll")?;
        self.position = Checkpoint::Scroll {
            scroll_id: page.scroll_id.clone(),
        };
        Ok(hits(page))
    }

    /// Reads a search answer, keeping each `_source`'s bytes.
    fn page(&self, bytes: &[u8], path: &str) -> Result<SearchPage, JobFailure> {
        parse_search_page(bytes).map_err(|e| {
            JobFailure::transient(
                codes::UPSTREAM_PROTOCOL_ERROR,
                format!(
                    "cluster {}: POST {path} answered something that is not a search answer: {e}",
                    self.source.name
                ),
            )
        })
    }

    /// Frees the point in time or scroll context (best effort).
    async fn close(&self) {
        let source = self.source;
        let result = match &self.position {
            Checkpoint::PointInTime {
                pit_id: Some(id), ..
            } => close_point_in_time(source, id).await,
            Checkpoint::Scroll {
                scroll_id: Some(id),
            } => {
                source
                    .call(
                        Method::DELETE,
                        "/_search/scroll",
                        Some(&json!({ "scroll_id": [id] })),
                    )
                    .await
            }
            _ => return,
        };
        if let Err(err) = result {
            tracing::debug!(index = %self.index, error = %err, "cannot free a search context");
        }
    }
}

/// Opens a point in time on `index` (the path differs on OpenSearch).
async fn open_point_in_time(
    source: &SearchClient,
    index: &str,
    keep_alive: &str,
) -> Result<String, JobFailure> {
    let encoded = encode_path_segment(index);
    let path = if source.version.distribution == crate::probe::Distribution::OpenSearch {
        format!("/{encoded}/_search/point_in_time?keep_alive={keep_alive}")
    } else {
        format!("/{encoded}/_pit?keep_alive={keep_alive}")
    };
    let body = source.expect(Method::POST, &path, None).await?;
    body["pit_id"]
        .as_str()
        .or_else(|| body["id"].as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            JobFailure::transient(
                codes::UPSTREAM_PROTOCOL_ERROR,
                format!("opening a point in time on {index}: no id in {body}"),
            )
        })
}

/// Frees a point in time.
async fn close_point_in_time(source: &SearchClient, id: &str) -> Result<Answer, JobFailure> {
    if source.version.distribution == crate::probe::Distribution::OpenSearch {
        source
            .call(
                Method::DELETE,
                "/_search/point_in_time",
                Some(&json!({ "pit_id": [id] })),
            )
            .await
    } else {
        source
            .call(Method::DELETE, "/_pit", Some(&json!({ "id": id })))
            .await
    }
}

/// Whether `source` opens a point in time on `index`: its version may
/// have the API while the build lacks it (an Elasticsearch 7.10+ without
/// x-pack answers `_pit` as a document write). The point in time opened to
/// check is freed at once.
pub async fn point_in_time_works(source: &SearchClient, index: &str) -> Result<(), JobFailure> {
    let id = open_point_in_time(source, index, "1m").await?;
    let _ = close_point_in_time(source, &id).await;
    Ok(())
}

/// The documents of a page, `_source` bytes as the source returned them.
fn hits(page: SearchPage) -> Vec<Hit> {
    page.hits
        .into_iter()
        .map(|hit| Hit {
            id: hit.id,
            doc_type: hit.doc_type,
            routing: hit.routing,
            version: hit.version.unwrap_or(1),
            source: hit.source.unwrap_or_else(|| "{}".into()),
        })
        .collect()
}

/// What one bulk write did.
#[derive(Debug, Default)]
struct Written {
    skipped_newer: u64,
    regressions: u64,
    failed: u64,
    /// A few refused ids with their reasons.
    samples: Vec<(String, String)>,
}

impl Written {
    fn rejection_event(&self, index: &str) -> Option<NewJobEvent> {
        let (id, reason) = self.samples.first()?;
        let ids: Vec<&str> = self.samples.iter().map(|(id, _)| id.as_str()).collect();
        Some(
            NewJobEvent::new(
                tandem_proto::v1::EventSeverity::Warning,
                codes::DOCUMENT_REJECTED,
                format!(
                    "the target refused {} document(s) of {index}, e.g. {id}: {reason}",
                    self.failed
                ),
            )
            .unit(index)
            .attribute("document_ids", ids.join(","))
            .attribute("reason", reason.clone()),
        )
    }
}

/// Writes `hits` to `index` on the target with external versions.
async fn write(
    spec: &MigrationSpec,
    source: &SearchClient,
    target: &SearchClient,
    index: &str,
    hits: &[Hit],
) -> Result<Written, JobFailure> {
    let (mut written, conflicts) = write_once(spec, target, index, hits).await?;
    if conflicts.is_empty() {
        return Ok(written);
    }
    // A conflict is "the target is newer" only if the source moved past
    // the target's version too (the replay wrote it); a source that still
    // holds the version just read, below the target's, was re-created
    // after its tombstone was pruned: write it above the target's version.
    let current = source_versions(source, index, &conflicts).await?;
    let mut above = Vec::new();
    for ((hit, target_version), now) in conflicts.into_iter().zip(current) {
        match (target_version, now) {
            (Some(t), Some(v)) if v == hit.version && t > v => above.push(Hit {
                version: t + 1,
                ..hit.clone()
            }),
            _ => written.skipped_newer += 1,
        }
    }
    if !above.is_empty() {
        let (again, still) = write_once(spec, target, index, &above).await?;
        written.regressions += (above.len() - still.len()) as u64;
        written.skipped_newer += still.len() as u64;
        written.failed += again.failed;
        written.samples.extend(again.samples);
    }
    Ok(written)
}

/// The source's current `_version` of each conflicting hit (`None` when
/// gone or unreadable), from one `_mget` (tandem-es's, as the replayer
/// asks the primary).
async fn source_versions(
    source: &SearchClient,
    index: &str,
    conflicts: &[(&Hit, Option<i64>)],
) -> Result<Vec<Option<i64>>, JobFailure> {
    let keys: Vec<DocKey> = conflicts
        .iter()
        .map(|(hit, _)| DocKey {
            index: index.to_owned(),
            doc_type: hit.doc_type.clone(),
            id: hit.id.clone(),
            routing: hit.routing.clone(),
        })
        .collect();
    let (path, body) = version_mget(&keys, &source.version.es());
    let answer = source
        .expect_json_bytes(Method::POST, path, Some(body))
        .await?;
    let versions = parse_version_mget(&answer, keys.len()).map_err(|e| {
        JobFailure::transient(
            codes::UPSTREAM_PROTOCOL_ERROR,
            format!("cluster {}: {e}", source.name),
        )
    })?;
    Ok(versions
        .into_iter()
        .map(|v| match v {
            CurrentVersion::Found(version) => Some(version),
            CurrentVersion::Missing | CurrentVersion::Unknown(_) => None,
        })
        .collect())
}

/// One `_bulk` of `hits` (retrying the items the target may accept later);
/// returns what it wrote and the hits refused as version conflicts, with
/// the target's current version.
async fn write_once<'h>(
    spec: &MigrationSpec,
    target: &SearchClient,
    index: &str,
    hits: &'h [Hit],
) -> Result<(Written, Vec<(&'h Hit, Option<i64>)>), JobFailure> {
    let mut conflicts = Vec::new();
    let replay_target = ReplayTarget::new(target.version.es());
    let mut written = Written::default();
    let mut pending: Vec<&Hit> = hits.iter().collect();
    for attempt in 1..=BULK_ATTEMPTS {
        let mut body = Vec::new();
        let mut sendable = Vec::with_capacity(pending.len());
        for hit in pending {
            // The replayer's builder: key spelling per target major,
            // `external_gte` at the source's version, `_source` bytes kept
            // (only compacted to one line).
            match build_replay_bulk(
                std::iter::once(&copy_op(spec, &replay_target, index, hit)),
                &replay_target,
            ) {
                Ok(line) => {
                    body.extend_from_slice(&line);
                    sendable.push(hit);
                }
                Err(err) => {
                    written.failed += 1;
                    if written.samples.len() < 5 {
                        written.samples.push((hit.id.clone(), err.to_string()));
                    }
                }
            }
        }
        pending = sendable;
        if pending.is_empty() {
            return Ok((written, conflicts));
        }
        let answer = target.ndjson("/_bulk", body).await?;
        if !answer.ok() {
            let failure = target.refused(&Method::POST, "/_bulk", &answer);
            if failure.retryable && attempt < BULK_ATTEMPTS {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                continue;
            }
            return Err(failure);
        }
        // One reading of bulk answers for the copy and the gateway's
        // replay: the same transient cluster states are retried (429,
        // unavailable shards, cluster blocks, ...), conflicts carry the
        // target's version.
        let outcomes = serde_json::to_vec(&answer.body)
            .map_err(|e| e.to_string())
            .and_then(|body| parse_bulk_response_for_replay(&body).map_err(|e| e.to_string()))
            .map_err(|e| {
                JobFailure::transient(
                    codes::UPSTREAM_PROTOCOL_ERROR,
                    format!("cluster {}: unreadable _bulk answer: {e}", target.name),
                )
            })?;
        if outcomes.len() != pending.len() {
            return Err(JobFailure::transient(
                codes::UPSTREAM_PROTOCOL_ERROR,
                format!(
                    "cluster {}: _bulk answered {} items for {} actions",
                    target.name,
                    outcomes.len(),
                    pending.len()
                ),
            ));
        }
        let mut retry = Vec::new();
        for (hit, outcome) in pending.iter().zip(outcomes) {
            match outcome {
                ItemOutcome::Applied => {}
                ItemOutcome::VersionConflict { current } => conflicts.push((*hit, current)),
                ItemOutcome::Retryable { .. } if attempt < BULK_ATTEMPTS => retry.push(*hit),
                ItemOutcome::Retryable { reason, .. } | ItemOutcome::Failed { reason, .. } => {
                    written.failed += 1;
                    if written.samples.len() < 5 {
                        written.samples.push((hit.id.clone(), reason));
                    }
                }
            }
        }
        if retry.is_empty() {
            return Ok((written, conflicts));
        }
        pending = retry;
        tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
    }
    Ok((written, conflicts))
}

/// The op that writes `hit` to the target at the source's version, typed
/// as the task's type rewrite says on a typed target.
fn copy_op(spec: &MigrationSpec, target: &ReplayTarget, index: &str, hit: &Hit) -> ReplicationOp {
    let doc_type =
        target
            .version
            .has_mapping_types()
            .then(|| match (&hit.doc_type, spec.type_rewrite.mode) {
                (Some(ty), TypeRewriteMode::Auto | TypeRewriteMode::None) if ty != "_doc" => {
                    ty.clone()
                }
                _ => spec.type_rewrite.target_type(&target.version).to_owned(),
            });
    // A document of a data stream is created through the target's stream,
    // which takes no version (`tandem_es::data_stream`): it is written
    // once, as the source holds it now.
    let version = match tandem_es::data_stream::stream_of_backing_index(index) {
        Some(_) => 1,
        None => hit.version,
    };
    ReplicationOp::Index {
        index: index.to_owned(),
        doc_type,
        id: hit.id.clone(),
        routing: hit.routing.clone(),
        version,
        seq_no: None,
        primary_term: None,
        source: bytes::Bytes::copy_from_slice(hit.source.as_bytes()),
    }
}

/// The counters of a partition, summed into `into`.
pub fn add_counters(into: &mut BTreeMap<String, u64>, counters: &BTreeMap<String, u64>) {
    for (key, value) in counters {
        *into.entry(key.clone()).or_default() += value;
    }
}
