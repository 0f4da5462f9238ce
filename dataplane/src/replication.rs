//! Replication: recording accepted writes and replaying them to the backup.
//!
//! [`Replication`] owns one task's durable queue, its dead-letter store and
//! the replayer. The write path calls [`Replication::record`] after the
//! primary accepted a write and before the client gets its answer; the
//! replayer ([`Replication::run`]) reads the queue in order and applies
//! every op to the backup:
//!
//! - index / delete ops go in `_bulk` batches with external versioning
//!   (`version_type=external_gte`, the primary's `_version`), so the backup
//!   converges whatever order ops reach it in;
//! - read-repair ops (partial and scripted updates) re-read the document
//!   from the primary and become a versioned index (or delete when gone);
//! - index-metadata and query-scoped ops are barriers: everything before
//!   them is applied first, then they are sent alone, rewritten for the
//!   backup's version;
//! - 429 / 5xx / connection failures are retried with exponential backoff,
//!   forever: a backup that is down makes the queue grow, never lose data;
//! - an op the backup refuses for good goes to the dead-letter store.
//!
//! Queue records are acknowledged only after each of their ops was applied
//! or dead-lettered, so after a crash the replayer resumes at the last
//! acknowledgement and re-applies at most a batch (harmless: document ops
//! are idempotent under external versioning).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use parking_lot::Mutex;
use pingora::http::RequestHeader;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::config::ReplayConfig;
use crate::counters::DurableCounters;
use crate::dead_letters::DeadLetterStore;
use crate::inflight::{InflightJournal, NoteId};
use crate::metrics::{Metrics, OpKindCounts};
use crate::queue::{Queue, QueueConfig, QueueError, Reader, RepairReport};
use crate::reconcile::{DocIo, ReconcileError, Reconciled, Side, reconcile};
use crate::roles::Roles;
use crate::upstream::Upstream;
use crate::verifier::{self, Samples, Suspect, Verdict};
use tandem_es::by_query::{
    PAGE_SIZE as BY_QUERY_PAGE, SCROLL_PATH, clear_scroll_body, match_search, page_ops,
    parse_match_page, refresh_path, scroll_body, scroll_id_of,
};
use tandem_es::docstate::{
    ConflictClass, CurrentVersion, DocKey, DocState, classify_conflict, parse_source_mget,
    parse_version_mget, source_mget, version_mget,
};
use tandem_es::ops::ReplicationOp;
use tandem_es::replay::{
    ItemOutcome, REPLAY_BULK_PATH, ReadRepairError, ReplayTarget, build_replay_bulk,
    parse_bulk_response_for_replay, read_repair_get_path, read_repair_op, request_outcome,
};
use tandem_es::rewrite::replay_request;
use tandem_es::version::ClusterVersion;

/// Name of the replayer's consumer in the queue.
pub const REPLAYER: &str = "replayer";

/// Replay lag (records) above which a cutover is refused when the request
/// does not say; below it, the cutover's write hold drains the rest.
pub const DEFAULT_CUTOVER_MAX_LAG: u64 = 1000;

/// What the replayer is doing, for the admin API and metrics.
#[derive(Debug, Clone, Default)]
pub struct ReplayStatus {
    /// Set while halted on corrupt queue data (needs a repair).
    pub halted: Option<String>,
    /// The last failure talking to the backup (cleared on success).
    pub last_error: Option<String>,
    /// Ops applied since start.
    pub applied_ops: u64,
    /// The backup's version, once known.
    pub backup_version: Option<String>,
    /// The last repair, if any.
    pub last_repair: Option<RepairReport>,
    /// Version conflicts skipped because the primary had moved past the
    /// backup's version.
    pub conflicts_older: u64,
    /// Documents reconciled that were already equal on both clusters.
    pub reconciled_in_sync: u64,
    /// Documents found different on the backup and repaired from the
    /// primary.
    pub repaired_documents: u64,
    /// Sampled documents the verifier read from both clusters.
    pub verified_documents: u64,
    /// Divergences the verifier confirmed (and queued for repair).
    pub divergences: u64,
    /// The last one, as `index/id`.
    pub last_divergence: Option<String>,
}

/// Result of an operator's dead-letter retry.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetryReport {
    /// Entries retried.
    pub retried: usize,
    /// Entries applied and removed from the store.
    pub applied: usize,
    /// Entries that failed again (kept, with the new reason).
    pub still_failing: usize,
}

/// What a cutover (or rollback) did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CutoverReport {
    /// URL of the cluster that is primary now.
    pub primary: String,
    /// URL of the cluster that is backup now.
    pub backup: String,
    /// True when the roles are swapped relative to the configuration.
    pub reversed: bool,
    /// How long new writes were held.
    #[serde(serialize_with = "millis")]
    pub held_for: Duration,
    /// Records replayed while writes were held.
    pub drained_records: u64,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Why a cutover did not happen (roles unchanged).
#[derive(Debug, thiserror::Error)]
pub enum CutoverError {
    /// Not allowed now (lag too high, replayer paused or halted).
    #[error("cutover refused: {0}")]
    Precondition(String),
    /// The bounded hold ran out.
    #[error("cutover aborted: {0}")]
    Timeout(String),
}

/// Why a batch stopped before it was done.
enum Interrupted {
    /// The replayer was paused; the batch is re-read on resume.
    Paused,
}

/// Records read by [`Replication::peek`] and where the queue stands.
#[derive(Debug, Clone)]
pub struct Peeked {
    /// The records, in offset order.
    pub records: Vec<crate::queue::Record>,
    /// Offset the read started from.
    pub from: u64,
    /// Offset of the oldest retained record.
    pub first_offset: u64,
    /// Offset the next appended record gets.
    pub head_offset: u64,
    /// The replayer's next record (everything before it is replayed).
    pub next_to_replay: u64,
}

/// One replication task on this gateway.
pub struct Replication {
    /// The durable queue of accepted writes.
    pub queue: Queue,
    /// Ops the backup refused for good.
    pub dead_letters: DeadLetterStore,
    roles: Arc<Roles>,
    config: ReplayConfig,
    metrics: Arc<Metrics>,
    paused: watch::Sender<bool>,
    repaired: Notify,
    status: Mutex<ReplayStatus>,
    gc_done: Mutex<HashSet<String>>,
    versions: Mutex<VersionCache>,
    /// Documents of writes in flight, noted before forwarding.
    pub inflight: InflightJournal,
    /// Documents waiting to be queued for reconciliation.
    pending: Mutex<Vec<PendingReconcile>>,
    /// Documents taken from `pending` whose read-repair records are being
    /// appended: still owed to the backup until the queue holds them.
    queuing: AtomicUsize,
    /// Applied documents sampled for the verifier.
    samples: Samples,
    /// Documents the verifier saw different, waiting to be confirmed.
    suspects: Mutex<Vec<Suspect>>,
    /// Divergence counters kept across restarts.
    pub counters: DurableCounters,
}

/// Documents to queue as read-repair ops once `due`, closing `note` then.
#[derive(Debug)]
struct PendingReconcile {
    due: tokio::time::Instant,
    keys: Vec<DocKey>,
    note: NoteId,
    cause: ReconcileCause,
}

/// Cluster versions, re-read at most once a minute.
#[derive(Default)]
struct VersionCache {
    primary: Option<(ClusterVersion, std::time::Instant)>,
    backup: Option<(ClusterVersion, std::time::Instant)>,
}

const VERSION_TTL: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl Replication {
    /// Opens the queue and dead-letter store under `dir` (recovering the
    /// queue after a crash).
    pub fn open(
        dir: PathBuf,
        queue_config: QueueConfig,
        config: ReplayConfig,
        roles: Arc<Roles>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Replication>> {
        if roles.current().backup.is_none() {
            anyhow::bail!("replication needs a backup cluster");
        }
        let queue = Queue::open(dir.join("queue"), queue_config)
            .map_err(|e| anyhow::anyhow!("opening the queue in {}: {e}", dir.display()))?;
        let dead_letters = DeadLetterStore::open(&dir.join("dead_letters"))?;
        metrics.dead_letters.set(dead_letters.len() as i64);
        let counters = DurableCounters::open(&dir, &metrics);
        let (inflight, recovered) = InflightJournal::open(&dir).map_err(|e| {
            anyhow::anyhow!("opening the in-flight journal in {}: {e}", dir.display())
        })?;
        let due = tokio::time::Instant::now() + Duration::from_millis(config.reconcile_delay_ms);
        let mut pending = Vec::new();
        let documents: usize = recovered.notes.iter().map(|(_, keys)| keys.len()).sum();
        if !recovered.notes.is_empty() {
            tracing::warn!(
                writes = recovered.notes.len(),
                documents,
                "writes were in flight when the gateway stopped; their documents will be reconciled from the primary"
            );
        }
        for (note, keys) in recovered.notes {
            pending.push(PendingReconcile {
                due,
                keys,
                note,
                cause: ReconcileCause::Restart,
            });
        }
        metrics.inflight_at_start.inc_by(documents as u64);
        if !recovered.opaque.is_empty() {
            tracing::error!(
                writes = ?recovered.opaque,
                "metadata or by-query writes were in flight when the gateway stopped and cannot be reconciled by id; run a comparison job for their indices"
            );
            metrics
                .unreconcilable_writes
                .inc_by(recovered.opaque.len() as u64);
            counters.mark_unreconcilable();
        }
        if recovered.unreadable_bytes > 0 {
            tracing::error!(
                bytes = recovered.unreadable_bytes,
                "the end of the in-flight journal did not verify (a torn write); the writes it noted cannot be reconciled by id, run a comparison job"
            );
            metrics.unreconcilable_writes.inc();
            counters.mark_unreconcilable();
        }
        let (paused, _) = watch::channel(config.start_paused);
        Ok(Arc::new(Replication {
            inflight,
            pending: Mutex::new(pending),
            queuing: AtomicUsize::new(0),
            samples: Samples::default(),
            suspects: Mutex::new(Vec::new()),
            counters,
            queue,
            dead_letters,
            roles,
            config,
            metrics,
            paused,
            repaired: Notify::new(),
            status: Mutex::new(ReplayStatus::default()),
            gc_done: Mutex::new(HashSet::new()),
            versions: Mutex::new(VersionCache::default()),
        }))
    }

    /// Records ops the primary accepted; returns once they are durable.
    pub async fn record(&self, ops: &[ReplicationOp]) -> Result<(), QueueError> {
        if ops.is_empty() {
            return Ok(());
        }
        let payloads = ops.iter().map(|op| Bytes::from(op.encode())).collect();
        self.queue.append_accepted(payloads).await?;
        let mut kinds = OpKindCounts::default();
        for op in ops {
            kinds.add(op.kind_name());
        }
        kinds.add_to(&self.metrics.recorded_ops);
        Ok(())
    }

    /// Queues `keys` for reconciliation after the configured delay and
    /// closes `note` once they are in the queue (the note keeps them safe
    /// across a crash until then).
    pub fn reconcile_later(&self, keys: Vec<DocKey>, note: NoteId, cause: ReconcileCause) {
        let due =
            tokio::time::Instant::now() + Duration::from_millis(self.config.reconcile_delay_ms);
        self.pending.lock().push(PendingReconcile {
            due,
            keys,
            note,
            cause,
        });
    }

    /// Queues `keys` for reconciliation at once (an operator's repair of
    /// differences a comparison found, a divergence the verifier found).
    pub async fn reconcile_now(
        &self,
        keys: &[DocKey],
        cause: ReconcileCause,
    ) -> Result<(), QueueError> {
        let ops: Vec<ReplicationOp> = keys.iter().map(|key| key.read_repair(1)).collect();
        self.record(&ops).await?;
        self.metrics
            .reconciles_queued
            .get_or_create(&crate::metrics::CauseLabels {
                cause: cause.label().to_owned(),
            })
            .inc_by(keys.len() as u64);
        Ok(())
    }

    /// The verifier loop (see [`crate::verifier`]).
    async fn verify_loop(&self) {
        let per_second = self.config.verify_docs_per_second as usize;
        if per_second == 0 {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if self.is_paused() {
                continue;
            }
            let Ok(target) = self.backup_target().await else {
                continue;
            };
            let io = ClusterDocs {
                replication: self,
                target: &target,
            };
            let read_both = async |key: &DocKey| {
                let primary = io.read(Side::Primary, key).await.ok()?;
                let backup = io.read(Side::Backup, key).await.ok()?;
                Some((primary, backup))
            };
            // Suspects whose records have all been replayed since.
            let replayed_to = self.peek(None, 0).map(|p| p.next_to_replay).unwrap_or(0);
            let due: Vec<Suspect> = {
                let mut suspects = self.suspects.lock();
                let (due, later) = std::mem::take(&mut *suspects).into_iter().partition(|s| {
                    replayed_to >= s.head && s.seen_at.elapsed() >= verifier::SETTLE
                });
                *suspects = later;
                due
            };
            for suspect in due {
                let Some((primary, backup)) = read_both(&suspect.key).await else {
                    self.suspects.lock().push(suspect);
                    continue;
                };
                match verifier::judge(&suspect, &primary, &backup) {
                    Verdict::InSync => {}
                    Verdict::Moved => self.suspect(suspect.key, primary),
                    Verdict::Diverged => self.note_divergence(&suspect.key).await,
                }
            }
            for key in self.samples.next(per_second) {
                let Some((primary, backup)) = read_both(&key).await else {
                    continue;
                };
                self.status.lock().verified_documents += 1;
                self.metrics.verified_documents.inc();
                if !verifier::in_sync(&primary, &backup) {
                    self.suspect(key, primary);
                }
            }
        }
    }

    /// Remembers a document seen different, to confirm later.
    fn suspect(&self, key: DocKey, primary: DocState) {
        let mut suspects = self.suspects.lock();
        if suspects.iter().any(|s| s.key == key) || suspects.len() >= 10_000 {
            return;
        }
        suspects.push(Suspect {
            key,
            head: self.queue.stats().next_offset,
            primary,
            seen_at: tokio::time::Instant::now(),
        });
    }

    /// Reports a confirmed divergence and queues the document's repair.
    async fn note_divergence(&self, key: &DocKey) {
        tracing::error!(
            index = %key.index,
            id = %key.id,
            "verifier: the backup differs from the primary although every record was replayed; repairing the document"
        );
        self.metrics.verifier_divergences.inc();
        self.counters.mark_divergence();
        {
            let mut status = self.status.lock();
            status.divergences += 1;
            status.last_divergence = Some(format!("{}/{}", key.index, key.id));
        }
        if let Err(err) = self
            .reconcile_now(std::slice::from_ref(key), ReconcileCause::Verifier)
            .await
        {
            tracing::error!(error = %err, "cannot queue the repair of a divergence");
        }
    }

    /// Documents waiting to be queued for reconciliation, including those
    /// whose records are being appended right now: until the queue holds
    /// them they are in no lag figure, and the backup may differ on them.
    pub fn pending_reconciles(&self) -> usize {
        // Read `queuing` first: a batch moves from it into the queue, never
        // back into `pending` without passing through it again.
        let queuing = self.queuing.load(Ordering::SeqCst);
        self.pending
            .lock()
            .iter()
            .map(|p| p.keys.len())
            .sum::<usize>()
            + queuing
    }

    /// Queues the pending reconciliations that are due (all of them with
    /// `all`) as read-repair ops; returns how many documents were queued.
    async fn queue_due_reconciles(&self, all: bool) -> usize {
        let now = tokio::time::Instant::now();
        let (due, documents) = {
            let mut pending = self.pending.lock();
            let (due, later): (Vec<PendingReconcile>, _) = std::mem::take(&mut *pending)
                .into_iter()
                .partition(|p| all || p.due <= now);
            *pending = later;
            let documents: usize = due.iter().map(|p| p.keys.len()).sum();
            // Counted while the records are appended (see
            // `pending_reconciles`); taken under the lock so no reader sees
            // the documents in neither place.
            self.queuing.fetch_add(documents, Ordering::SeqCst);
            (due, documents)
        };
        if due.is_empty() {
            return 0;
        }
        let ops: Vec<ReplicationOp> = due
            .iter()
            .flat_map(|p| p.keys.iter().map(|key| key.read_repair(1)))
            .collect();
        match self.record(&ops).await {
            Ok(()) => {
                // The queue holds them now: they are in its lag.
                self.queuing.fetch_sub(documents, Ordering::SeqCst);
                for p in &due {
                    self.inflight.close(p.note);
                    self.metrics
                        .reconciles_queued
                        .get_or_create(&crate::metrics::CauseLabels {
                            cause: p.cause.label().to_owned(),
                        })
                        .inc_by(p.keys.len() as u64);
                }
                ops.len()
            }
            Err(err) => {
                tracing::error!(error = %err, documents = ops.len(), "cannot queue documents for reconciliation; will retry");
                self.pending.lock().extend(due);
                self.queuing.fetch_sub(documents, Ordering::SeqCst);
                0
            }
        }
    }

    /// Moves due reconciliations into the queue and saves changed
    /// divergence counters, forever.
    async fn reconcile_scheduler(&self) {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.queue_due_reconciles(false).await;
            self.counters.save_if_changed(&self.metrics);
        }
    }

    /// Counts a write whose outcome is unknown and that names no document.
    pub fn note_unreconcilable(&self) {
        self.metrics.unreconcilable_writes.inc();
        self.counters.mark_unreconcilable();
    }

    /// The cluster currently primary (read-repair source).
    fn primary(&self) -> Arc<Upstream> {
        self.roles.current().primary.clone()
    }

    /// The cluster currently backup (replay target).
    fn backup(&self) -> Arc<Upstream> {
        self.roles
            .current()
            .backup
            .clone()
            .expect("replication always has a backup")
    }

    /// Swaps primary and backup on this gateway (cutover, or rollback when
    /// already swapped): refuses while the replay lag is above `max_lag`;
    /// otherwise holds new writes (at most `max_hold`), lets in-flight
    /// writes finish, replays the queue to zero lag, swaps, and releases.
    /// On any failure the roles stay as they were and writes resume.
    pub async fn cutover(
        &self,
        max_lag: u64,
        max_hold: Duration,
    ) -> Result<CutoverReport, CutoverError> {
        if self.is_paused() {
            return Err(CutoverError::Precondition(
                "the replayer is paused; resume it so the queue can drain".into(),
            ));
        }
        if let Some(halted) = self.status().halted {
            return Err(CutoverError::Precondition(format!(
                "the replayer is halted: {halted}"
            )));
        }
        // Documents waiting for reconciliation must be settled against
        // the cluster that is primary now, before the roles change.
        self.queue_due_reconciles(true).await;
        let lag = self.lag_records();
        if lag > max_lag {
            return Err(CutoverError::Precondition(format!(
                "replay lag is {lag} records, above the allowed {max_lag}; wait for it to drop"
            )));
        }
        let started = tokio::time::Instant::now();
        let deadline = started + max_hold;
        let hold = self.roles.hold_writes(max_hold).await.ok_or_else(|| {
            CutoverError::Timeout(format!(
                "in-flight writes did not finish within {max_hold:?}"
            ))
        })?;
        self.queue_due_reconciles(true).await;
        let drained = self.lag_records();
        while self.lag_records() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return Err(CutoverError::Timeout(format!(
                    "the queue did not drain within {max_hold:?} ({} records left); writes released, roles unchanged",
                    self.lag_records()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let roles = self.roles.swap(&hold).map_err(CutoverError::Precondition)?;
        *self.versions.lock() = VersionCache::default();
        self.gc_done.lock().clear();
        self.samples.clear();
        self.suspects.lock().clear();
        drop(hold);
        let report = CutoverReport {
            primary: roles.primary.config().url.clone(),
            backup: roles
                .backup
                .as_ref()
                .map(|b| b.config().url.clone())
                .unwrap_or_default(),
            reversed: roles.reversed,
            held_for: started.elapsed(),
            drained_records: drained,
        };
        tracing::warn!(
            primary = %report.primary,
            backup = %report.backup,
            held_ms = report.held_for.as_millis() as u64,
            "roles swapped"
        );
        Ok(report)
    }

    /// The configured longest write hold of a cutover.
    pub fn max_hold(&self) -> Duration {
        Duration::from_millis(self.config.max_hold_ms)
    }

    fn lag_records(&self) -> u64 {
        self.queue
            .stats()
            .consumers
            .iter()
            .find(|c| c.name == REPLAYER)
            .map(|c| c.lag_records)
            .unwrap_or(0)
    }

    /// Up to `limit` records from offset `from` (default: the replayer's
    /// next record), without consuming them, with the queue's position.
    pub fn peek(&self, from: Option<u64>, limit: usize) -> Result<Peeked, QueueError> {
        let stats = self.queue.stats();
        let next_to_replay = stats
            .consumers
            .iter()
            .find(|c| c.name == REPLAYER)
            .and_then(|c| c.acked_offset.map(|o| o + 1))
            .unwrap_or(stats.first_offset);
        let from = from.unwrap_or(next_to_replay);
        Ok(Peeked {
            records: self.queue.peek(from, limit)?,
            from,
            first_offset: stats.first_offset,
            head_offset: stats.next_offset,
            next_to_replay,
        })
    }

    /// The queue view: [`Replication::peek`] with each record decoded with
    /// its op kind, index, id, version and `version_fenced` flag; bodies
    /// redacted unless `with_bodies`.
    pub fn peek_json(
        &self,
        from: Option<u64>,
        limit: usize,
        with_bodies: bool,
    ) -> Result<Value, QueueError> {
        let peeked = self.peek(from, limit)?;
        let next_to_replay = peeked.next_to_replay;
        let records: Vec<Value> = peeked
            .records
            .iter()
            .map(|record| {
                let op = match ReplicationOp::decode(&record.payload) {
                    Ok(op) => op.describe(with_bodies),
                    Err(err) => json!({ "undecodable": err.to_string() }),
                };
                json!({
                    "offset": record.offset,
                    "enqueued_at_ms": record.enqueued_at_ms,
                    "bytes": record.payload.len(),
                    "replayed": record.offset < next_to_replay,
                    "op": op,
                })
            })
            .collect();
        Ok(json!({ "from": peeked.from, "next_to_replay": next_to_replay, "records": records }))
    }

    /// Pauses the replayer (writes are still recorded).
    pub fn pause(&self) {
        self.paused.send_replace(true);
        self.metrics.replay_paused.set(1);
    }

    /// Resumes the replayer.
    pub fn resume(&self) {
        self.paused.send_replace(false);
        self.metrics.replay_paused.set(0);
    }

    /// Whether the replayer is paused.
    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// A snapshot of the replayer's status.
    pub fn status(&self) -> ReplayStatus {
        self.status.lock().clone()
    }

    /// Skips the corrupt region the replayer is halted on (or reports what
    /// would be skipped, with `dry_run`). The report states exactly which
    /// offsets are lost.
    pub fn repair(&self, dry_run: bool) -> Result<RepairReport, QueueError> {
        if dry_run {
            return self.queue.repair_dry_run(REPLAYER);
        }
        let report = self.queue.repair(REPLAYER)?;
        tracing::warn!(
            first_lost = report.first_lost_offset,
            last_lost = report.last_lost_offset,
            records_lost = report.records_lost,
            bytes_skipped = report.bytes_skipped,
            "queue repaired: corrupt records skipped"
        );
        {
            let mut status = self.status.lock();
            status.halted = None;
            status.last_repair = Some(report.clone());
        }
        self.metrics.replay_halted.set(0);
        self.repaired.notify_waiters();
        Ok(report)
    }

    /// Refreshes queue gauges from the queue's current state.
    pub fn update_gauges(&self) {
        let stats = self.queue.stats();
        self.metrics.queue_depth_records.set(stats.records as i64);
        self.metrics.queue_depth_bytes.set(stats.bytes as i64);
        self.metrics.queue_oldest_age_seconds.set(
            stats
                .oldest_unacked_age
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        );
        if let Some(consumer) = stats.consumers.iter().find(|c| c.name == REPLAYER) {
            self.metrics
                .replay_lag_records
                .set(consumer.lag_records as i64);
            self.metrics
                .replay_lag_seconds
                .set(consumer.lag.as_secs_f64());
        }
        self.metrics
            .dead_letters
            .set(self.dead_letters.len() as i64);
        self.metrics.replay_paused.set(self.is_paused() as i64);
    }

    /// Status, queue and dead-letter summary as JSON (admin API).
    pub fn status_json(&self) -> Value {
        self.update_gauges();
        let stats = self.queue.stats();
        let status = self.status();
        let consumer = stats.consumers.iter().find(|c| c.name == REPLAYER);
        json!({
            "paused": self.is_paused(),
            "halted": status.halted,
            "last_error": status.last_error,
            "applied_ops": status.applied_ops,
            "backup_version": status.backup_version,
            "primary": self.primary().config().url,
            "backup": self.backup().config().url,
            "reversed": self.roles.current().reversed,
            "queue": {
                "records": stats.records,
                "bytes": stats.bytes,
                "oldest_unacked_age_secs": stats.oldest_unacked_age.map(|d| d.as_secs_f64()),
                "first_offset": stats.first_offset,
                "next_offset": stats.next_offset,
                "segments": stats.segments,
            },
            "replayer": consumer.map(|c| json!({
                "acked_offset": c.acked_offset,
                "lag_records": c.lag_records,
                "lag_secs": c.lag.as_secs_f64(),
                "records_lost": c.records_lost,
            })),
            "dead_letters": self.dead_letters.len(),
            "last_repair": status.last_repair.map(|r| repair_json(&r)),
            "conflicts_older": status.conflicts_older,
            "reconciled_in_sync": status.reconciled_in_sync,
            "repaired_documents": status.repaired_documents,
            "inflight_writes": self.inflight.open_notes(),
            "pending_reconciles": self.pending_reconciles(),
            "verifier": {
                "verified_documents": status.verified_documents,
                "divergences": status.divergences,
                "last_divergence": status.last_divergence,
                "suspects": self.suspects.lock().len(),
            },
        })
    }

    /// Re-applies the dead letters with `ids` (all when `None`); applied
    /// ones leave the store.
    pub async fn retry_dead_letters(&self, ids: Option<&[u64]>) -> anyhow::Result<RetryReport> {
        let target = self.backup_target().await?;
        let mut report = RetryReport::default();
        for entry in self.dead_letters.select(ids) {
            report.retried += 1;
            let outcome = match entry.op() {
                Ok(op) => self.apply_once(&op, &target).await,
                Err(reason) => ItemOutcome::Failed { status: 0, reason },
            };
            match outcome {
                ItemOutcome::Applied => {
                    self.dead_letters.remove(&[entry.id])?;
                    report.applied += 1;
                }
                ItemOutcome::VersionConflict { .. } => {
                    unreachable!("apply_once settles version conflicts")
                }
                ItemOutcome::Retryable { status, reason }
                | ItemOutcome::Failed { status, reason } => {
                    self.dead_letters
                        .record_retry_failure(entry.id, status, &reason)?;
                    report.still_failing += 1;
                }
            }
        }
        self.metrics
            .dead_letters
            .set(self.dead_letters.len() as i64);
        Ok(report)
    }

    /// Discards the dead letters with `ids` (all when `None`); returns how
    /// many were discarded.
    pub fn skip_dead_letters(&self, ids: Option<&[u64]>) -> anyhow::Result<usize> {
        let selected: Vec<u64> = self.dead_letters.select(ids).iter().map(|e| e.id).collect();
        let removed = self.dead_letters.remove(&selected)?;
        if removed > 0 {
            tracing::warn!(count = removed, ids = ?selected, "dead letters skipped by operator");
        }
        self.metrics
            .dead_letters
            .set(self.dead_letters.len() as i64);
        Ok(removed)
    }

    /// The replayer loop and the reconciliation scheduler; runs until the
    /// future is dropped.
    pub async fn run(self: Arc<Self>) {
        tokio::join!(
            self.reconcile_scheduler(),
            self.replay_loop(),
            self.verify_loop()
        );
    }

    async fn replay_loop(&self) {
        let mut reader = loop {
            match self.queue.reader(REPLAYER) {
                Ok(reader) => break reader,
                Err(err) => {
                    tracing::error!(error = %err, "cannot open the replay consumer; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        self.metrics.replay_paused.set(self.is_paused() as i64);
        loop {
            self.wait_while_paused().await;
            let mut paused = self.paused.subscribe();
            let batch = tokio::select! {
                batch = reader.next_batch(self.config.max_batch_ops, self.config.max_batch_bytes) => batch,
                _ = paused.wait_for(|p| *p) => continue,
            };
            match batch {
                Ok(records) => {
                    // Resolved per batch: a cutover may have swapped the
                    // backup while the replayer waited for records.
                    let target = match self.backup_target().await {
                        Ok(target) => target,
                        Err(err) => {
                            self.note_error(format!("backup unreachable: {err:#}"));
                            if let Err(err) = reader.seek_to_committed() {
                                tracing::error!(error = %err, "cannot rewind the replay consumer");
                            }
                            let _ = self
                                .pause_aware_sleep(Duration::from_millis(self.config.retry_max_ms))
                                .await;
                            continue;
                        }
                    };
                    if let Err(Interrupted::Paused) =
                        self.apply_records(&mut reader, records, &target).await
                    {
                        // Re-read from the last acknowledgement on resume.
                        if let Err(err) = reader.seek_to_committed() {
                            tracing::error!(error = %err, "cannot rewind the replay consumer");
                        }
                    }
                    self.update_gauges();
                }
                Err(err @ QueueError::Corrupt { .. }) => {
                    let message = err.to_string();
                    tracing::error!(error = %message, "replayer halted on corrupt queue data; run a repair");
                    self.status.lock().halted = Some(message);
                    self.metrics.replay_halted.set(1);
                    let repaired = self.repaired.notified();
                    // Also poll: a repair may come from another handle.
                    let _ = tokio::time::timeout(Duration::from_secs(1), repaired).await;
                }
                Err(err) => {
                    self.note_error(format!("reading the queue: {err}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn wait_while_paused(&self) {
        let mut paused = self.paused.subscribe();
        let _ = paused.wait_for(|p| !*p).await;
    }

    /// Sleeps for `delay`, returning early (with `Err`) when paused.
    async fn pause_aware_sleep(&self, delay: Duration) -> Result<(), Interrupted> {
        let mut paused = self.paused.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            _ = paused.wait_for(|p| *p) => Err(Interrupted::Paused),
        }
    }

    fn note_error(&self, message: String) {
        tracing::warn!(error = %message, "replay attempt failed; will retry");
        self.metrics.replay_retries.inc();
        self.status.lock().last_error = Some(message);
    }

    /// Counts ops applied to the backup (once per batch).
    fn note_applied(&self, kinds: &OpKindCounts) {
        let applied = kinds.total();
        if applied == 0 {
            return;
        }
        kinds.add_to(&self.metrics.replayed_ops);
        let mut status = self.status.lock();
        status.applied_ops += applied;
        status.last_error = None;
    }

    async fn version_of(&self, primary: bool) -> anyhow::Result<ClusterVersion> {
        {
            let cache = self.versions.lock();
            let slot = if primary {
                &cache.primary
            } else {
                &cache.backup
            };
            if let Some((version, at)) = slot
                && at.elapsed() < VERSION_TTL
            {
                return Ok(*version);
            }
        }
        let upstream = if primary {
            self.primary()
        } else {
            self.backup()
        };
        let version = cluster_version(&upstream).await?;
        let mut cache = self.versions.lock();
        let slot = if primary {
            &mut cache.primary
        } else {
            &mut cache.backup
        };
        *slot = Some((version, std::time::Instant::now()));
        Ok(version)
    }

    async fn backup_target(&self) -> anyhow::Result<ReplayTarget> {
        let version = self.version_of(false).await?;
        self.status.lock().backup_version = Some(format!(
            "{:?} {}.{}",
            version.distribution, version.major, version.minor
        ));
        Ok(ReplayTarget::new(version))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let ms = self
            .config
            .retry_initial_ms
            .saturating_mul(1u64 << attempt.min(16))
            .min(self.config.retry_max_ms);
        Duration::from_millis(ms)
    }

    /// Applies every op of `records` in order, acknowledging as it goes.
    async fn apply_records(
        &self,
        reader: &mut Reader,
        records: Vec<crate::queue::Record>,
        target: &ReplayTarget,
    ) -> Result<(), Interrupted> {
        let Some(last) = records.last().map(|r| r.offset) else {
            return Ok(());
        };
        let mut group: Vec<(u64, ReplicationOp)> = Vec::new();
        for record in records {
            let op = match ReplicationOp::decode(&record.payload) {
                Ok(op) => op,
                Err(err) => {
                    // The record passed its checksum, so this is a format
                    // this build does not read: keep it for an operator.
                    tracing::error!(offset = record.offset, error = %err, "undecodable queue record");
                    self.dead_letter_raw(record.offset, &record.payload, &err.to_string());
                    continue;
                }
            };
            match op {
                ReplicationOp::Index { .. } | ReplicationOp::Delete { .. } => {
                    group.push((record.offset, op));
                }
                ReplicationOp::ReadRepair { .. } => {
                    if let Some(resolved) = self.resolve_read_repair(record.offset, &op).await? {
                        group.push((record.offset, resolved));
                    }
                }
                ReplicationOp::IndexMeta { .. } | ReplicationOp::QueryScoped { .. } => {
                    self.flush(&mut group, target).await?;
                    self.apply_request(record.offset, &op, target).await?;
                    self.ack(reader, record.offset);
                }
            }
            if group.len() >= self.config.max_batch_ops {
                self.flush(&mut group, target).await?;
            }
        }
        self.flush(&mut group, target).await?;
        self.ack(reader, last);
        Ok(())
    }

    fn ack(&self, reader: &mut Reader, offset: u64) {
        if let Err(err) = reader.ack(offset) {
            // Not fatal: the records are re-applied after a restart.
            tracing::error!(offset, error = %err, "cannot persist the replay position");
        }
    }

    fn dead_letter(&self, offset: u64, op: &ReplicationOp, status: u16, reason: &str) {
        tracing::warn!(offset, kind = op.kind_name(), index = ?op.index(), id = ?op.id(), status, reason, "op dead-lettered");
        // The store must hold the op before the queue forgets it: retry
        // until it does (a full disk is worth waiting out).
        loop {
            match self.dead_letters.add(offset, op, status, reason) {
                Ok(_) => break,
                Err(err) => {
                    tracing::error!(error = %err, "cannot store a dead letter; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        self.metrics
            .dead_letters
            .set(self.dead_letters.len() as i64);
    }

    fn dead_letter_raw(&self, offset: u64, payload: &[u8], reason: &str) {
        let op = ReplicationOp::QueryScoped {
            method: Method::POST,
            path: format!("/_tandem/undecodable/{offset}"),
            body: Bytes::copy_from_slice(payload),
        };
        self.dead_letter(offset, &op, 0, &format!("undecodable record: {reason}"));
    }

    /// Reads a read-repair op's document from the primary: the versioned
    /// op to apply, or `None` when it was dead-lettered.
    async fn resolve_read_repair(
        &self,
        offset: u64,
        op: &ReplicationOp,
    ) -> Result<Option<ReplicationOp>, Interrupted> {
        let mut attempt = 0;
        loop {
            let result = async {
                let version = self.version_of(true).await?;
                let path = read_repair_get_path(op, &version)
                    .ok_or_else(|| anyhow::anyhow!("not a read-repair op"))?;
                let header = RequestHeader::build(Method::GET, path.as_bytes(), None)?;
                let response = self.primary().exchange(header, Bytes::new(), true).await?;
                Ok::<_, anyhow::Error>(read_repair_op(
                    op,
                    response.header.status.as_u16(),
                    &response.body,
                ))
            }
            .await;
            match result {
                Ok(Ok(resolved)) => return Ok(Some(resolved)),
                Ok(Err(ReadRepairError::Failed { status, reason })) => {
                    self.dead_letter(offset, op, status, &format!("read-repair: {reason}"));
                    return Ok(None);
                }
                Ok(Err(ReadRepairError::NotReadRepair)) => return Ok(None),
                Ok(Err(ReadRepairError::Retryable { status, reason })) => {
                    self.note_error(format!("read-repair on the primary ({status}): {reason}"));
                }
                Err(err) => self.note_error(format!("read-repair on the primary: {err:#}")),
            }
            self.pause_aware_sleep(self.backoff(attempt)).await?;
            attempt += 1;
        }
    }

    /// Applies a group of index/delete ops with one `_bulk` per attempt,
    /// retrying only the items that may succeed later.
    async fn flush(
        &self,
        group: &mut Vec<(u64, ReplicationOp)>,
        target: &ReplayTarget,
    ) -> Result<(), Interrupted> {
        let mut remaining = std::mem::take(group);
        let mut conflicts = Vec::new();
        let mut attempt = 0;
        while !remaining.is_empty() {
            let body = match build_replay_bulk(remaining.iter().map(|(_, op)| op), target) {
                Ok(body) => body,
                Err(_) => {
                    // Find and dead-letter the op(s) that cannot be encoded.
                    remaining.retain(|(offset, op)| {
                        match build_replay_bulk(std::iter::once(op), target) {
                            Ok(_) => true,
                            Err(err) => {
                                self.dead_letter(*offset, op, 0, &err.to_string());
                                false
                            }
                        }
                    });
                    continue;
                }
            };
            let indices: Vec<String> = remaining
                .iter()
                .filter_map(|(_, op)| op.index().map(|i| i.into_owned()))
                .collect();
            self.ensure_gc_deletes(&indices).await;
            match self.send_bulk(body).await {
                Err(reason) => self.note_error(reason),
                Ok(outcomes) if outcomes.len() != remaining.len() => self.note_error(format!(
                    "backup answered {} bulk items for {} ops",
                    outcomes.len(),
                    remaining.len()
                )),
                Ok(outcomes) => {
                    let mut retry = Vec::new();
                    let mut retry_reason = None;
                    let mut applied = OpKindCounts::default();
                    for ((offset, op), outcome) in remaining.into_iter().zip(outcomes) {
                        match outcome {
                            ItemOutcome::Applied => {
                                applied.add(op.kind_name());
                                self.samples.offer(|| DocKey::of(&op));
                            }
                            ItemOutcome::VersionConflict { current } => {
                                conflicts.push((offset, op, current))
                            }
                            ItemOutcome::Retryable { status, reason } => {
                                retry_reason = Some(format!("{status}: {reason}"));
                                retry.push((offset, op));
                            }
                            ItemOutcome::Failed { status, reason } => {
                                self.dead_letter(offset, &op, status, &reason)
                            }
                        }
                    }
                    self.note_applied(&applied);
                    remaining = retry;
                    match retry_reason {
                        Some(reason) => self.note_error(format!(
                            "{} bulk items to retry, e.g. {reason}",
                            remaining.len()
                        )),
                        None => break,
                    }
                }
            }
            // Newly created indices get their gc_deletes on the next pass.
            self.ensure_gc_deletes(&indices).await;
            self.pause_aware_sleep(self.backoff(attempt)).await?;
            attempt += 1;
        }
        self.settle_conflicts(conflicts, target).await
    }

    /// Decides what each replay version conflict means (see
    /// [`tandem_es::docstate`]): an op the primary has moved past is
    /// skipped; any other document is reconciled from the primary. Waits
    /// out an unavailable primary; a document the backup refuses is
    /// dead-lettered.
    async fn settle_conflicts(
        &self,
        conflicts: Vec<(u64, ReplicationOp, Option<i64>)>,
        target: &ReplayTarget,
    ) -> Result<(), Interrupted> {
        if conflicts.is_empty() {
            return Ok(());
        }
        let keys: Vec<DocKey> = conflicts
            .iter()
            .map(|(_, op, _)| DocKey::of(op).expect("only document ops conflict"))
            .collect();
        let mut attempt = 0;
        let versions = loop {
            match self.primary_versions(&keys).await {
                Ok(versions) => break versions,
                Err(reason) => self.note_error(format!(
                    "reading the primary's versions of {} conflicting documents: {reason}",
                    keys.len()
                )),
            }
            self.pause_aware_sleep(self.backoff(attempt)).await?;
            attempt += 1;
        };
        let mut older = 0;
        let mut to_reconcile = 0;
        for ((offset, op, current), (key, primary)) in
            conflicts.into_iter().zip(keys.into_iter().zip(versions))
        {
            match classify_conflict(current, &primary) {
                ConflictClass::Older => older += 1,
                ConflictClass::Reconcile => {
                    to_reconcile += 1;
                    self.reconcile_document(
                        offset,
                        &op,
                        &key,
                        target,
                        ReconcileCause::VersionConflict,
                    )
                    .await?;
                }
            }
        }
        self.metrics.observe_conflicts(older, to_reconcile);
        self.status.lock().conflicts_older += older;
        Ok(())
    }

    /// Reconciles one document until it is done or refused for good; the
    /// op it came from is dead-lettered when the backup refuses it.
    async fn reconcile_document(
        &self,
        offset: u64,
        op: &ReplicationOp,
        key: &DocKey,
        target: &ReplayTarget,
        cause: ReconcileCause,
    ) -> Result<(), Interrupted> {
        let io = ClusterDocs {
            replication: self,
            target,
        };
        let mut attempt = 0;
        loop {
            match reconcile(&io, key).await {
                Ok(outcome) => {
                    self.note_reconciled(cause, key, &outcome);
                    return Ok(());
                }
                Err(ReconcileError::Failed { status, reason }) => {
                    self.dead_letter(offset, op, status, &format!("reconcile: {reason}"));
                    return Ok(());
                }
                Err(ReconcileError::Retryable(reason)) => self.note_error(format!(
                    "reconciling [{}] in [{}]: {reason}",
                    key.id, key.index
                )),
            }
            self.pause_aware_sleep(self.backoff(attempt)).await?;
            attempt += 1;
        }
    }

    /// Counts and reports a finished reconciliation.
    fn note_reconciled(&self, cause: ReconcileCause, key: &DocKey, outcome: &Reconciled) {
        self.metrics.observe_reconciled(cause.label(), outcome);
        let mut status = self.status.lock();
        match outcome {
            Reconciled::InSync => status.reconciled_in_sync += 1,
            Reconciled::Repaired { version, ahead_by } => {
                status.repaired_documents += 1;
                tracing::warn!(
                    index = %key.index,
                    id = %key.id,
                    cause = cause.label(),
                    version,
                    ahead_by,
                    "backup differed from the primary; document repaired"
                );
            }
        }
    }

    /// The primary's current version of each of `keys` (one `_mget` per
    /// 1000 documents).
    async fn primary_versions(&self, keys: &[DocKey]) -> Result<Vec<CurrentVersion>, String> {
        let version = self.version_of(true).await.map_err(|e| format!("{e:#}"))?;
        let mut versions = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(1000) {
            let (path, body) = version_mget(chunk, &version);
            let header = build_header(&Method::POST, path, true)?;
            let response = self
                .primary()
                .exchange(header, Bytes::from(body), true)
                .await
                .map_err(|e| format!("primary _mget: {e}"))?;
            let status = response.header.status.as_u16();
            if status != 200 {
                return Err(format!(
                    "primary _mget answered {status}: {}",
                    String::from_utf8_lossy(&response.body[..response.body.len().min(300)])
                ));
            }
            versions.extend(parse_version_mget(&response.body, chunk.len())?);
        }
        Ok(versions)
    }

    /// Sends a replay `_bulk`; `Err` means the whole request should be
    /// retried.
    async fn send_bulk(&self, body: Vec<u8>) -> Result<Vec<ItemOutcome>, String> {
        let mut header = RequestHeader::build(Method::POST, REPLAY_BULK_PATH.as_bytes(), None)
            .map_err(|e| e.to_string())?;
        header
            .insert_header("content-type", "application/x-ndjson")
            .map_err(|e| e.to_string())?;
        let response = self
            .backup()
            .exchange(header, Bytes::from(body), true)
            .await
            .map_err(|e| format!("backup _bulk: {e}"))?;
        let status = response.header.status.as_u16();
        if status != 200 {
            return Err(format!(
                "backup _bulk answered {status}: {}",
                String::from_utf8_lossy(&response.body[..response.body.len().min(300)])
            ));
        }
        parse_bulk_response_for_replay(&response.body)
            .map_err(|e| format!("backup _bulk answer is not a bulk answer: {e}"))
    }

    /// Applies a metadata or query-scoped op, retrying while it may succeed.
    async fn apply_request(
        &self,
        offset: u64,
        op: &ReplicationOp,
        target: &ReplayTarget,
    ) -> Result<(), Interrupted> {
        let mut attempt = 0;
        loop {
            match self.apply_once(op, target).await {
                ItemOutcome::Applied => {
                    let mut applied = OpKindCounts::default();
                    applied.add(op.kind_name());
                    self.note_applied(&applied);
                    // A replayed settings change, or an index deleted and
                    // created again under the same name, may have lowered
                    // the backup's `index.gc_deletes`: raise it again
                    // before the next document batch.
                    if matches!(op, ReplicationOp::IndexMeta { .. }) {
                        self.gc_done.lock().clear();
                    }
                    return Ok(());
                }
                ItemOutcome::Failed { status, reason } => {
                    self.dead_letter(offset, op, status, &reason);
                    return Ok(());
                }
                ItemOutcome::Retryable { status, reason } => {
                    self.note_error(format!("{} ({status}): {reason}", op.kind_name()));
                }
                ItemOutcome::VersionConflict { .. } => {
                    unreachable!("apply_once settles version conflicts")
                }
            }
            self.pause_aware_sleep(self.backoff(attempt)).await?;
            attempt += 1;
        }
    }

    /// One attempt at applying any op on its own.
    /// One request to the backup: status and body, `Err` when no answer
    /// came.
    async fn backup_request(
        &self,
        method: &Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Bytes), String> {
        let header = build_header(method, path, !body.is_empty())?;
        let response = self
            .backup()
            .exchange(header, Bytes::from(body), true)
            .await
            .map_err(|e| format!("{method} {path} on the backup: {e}"))?;
        Ok((response.header.status.as_u16(), response.body))
    }

    /// Replays a by-query op as the reconciliation of the documents it
    /// matches on the backup (see [`tandem_es::by_query`]), in one
    /// attempt: refresh, then page by page list the matches, read them
    /// from the primary and write the primary's state, version-fenced.
    /// Every step is idempotent, so a failed attempt is simply repeated.
    async fn by_query_once(&self, op: &ReplicationOp, target: &ReplayTarget) -> ItemOutcome {
        let retryable = |reason: String| ItemOutcome::Retryable { status: 0, reason };
        let search = match match_search(op, target) {
            Ok(search) => search,
            Err(err) => {
                return ItemOutcome::Failed {
                    status: 0,
                    reason: err.to_string(),
                };
            }
        };
        let primary_version = match self.version_of(true).await {
            Ok(version) => version,
            Err(err) => return retryable(format!("{err:#}")),
        };
        if let Some(path) = refresh_path(op) {
            match self.backup_request(&Method::POST, &path, Vec::new()).await {
                Ok((status, _)) if (200..300).contains(&status) => {}
                Ok((status, body)) => {
                    return ItemOutcome::Retryable {
                        status,
                        reason: format!("refresh before a by-query write: {}", excerpt(&body)),
                    };
                }
                Err(reason) => return retryable(reason),
            }
        }
        let mut response = self
            .backup_request(&Method::POST, &search.path, search.body)
            .await;
        let mut scroll_id = None;
        let mut reconciled = 0u64;
        let outcome = loop {
            let (status, body) = match response {
                Ok(answer) => answer,
                Err(reason) => break retryable(reason),
            };
            if let Some(id) = scroll_id_of(&body) {
                scroll_id = Some(id);
            }
            if !(200..300).contains(&status) {
                let reason = format!(
                    "listing what the by-query write matches on the backup: {}",
                    excerpt(&body)
                );
                break if status == 429 || status >= 500 {
                    ItemOutcome::Retryable { status, reason }
                } else {
                    ItemOutcome::Failed { status, reason }
                };
            }
            let page = match parse_match_page(&body) {
                Ok(page) => page,
                Err(reason) => break retryable(format!("by-query matches: {reason}")),
            };
            if page.hits.is_empty() {
                break ItemOutcome::Applied;
            }
            let keys: Vec<DocKey> = page.hits.iter().map(|(key, _)| key.clone()).collect();
            let states = match self.primary_documents(&keys, &primary_version).await {
                Ok(states) => states,
                Err(reason) => break retryable(reason),
            };
            let ops = page_ops(&page.hits, &states);
            reconciled += ops.len() as u64;
            if let Err(outcome) = self.apply_ops_once(&ops, target).await {
                break outcome;
            }
            match (&page.scroll_id, page.hits.len() < BY_QUERY_PAGE) {
                (_, true) => break ItemOutcome::Applied,
                (Some(id), false) => {
                    response = self
                        .backup_request(&Method::POST, SCROLL_PATH, scroll_body(id))
                        .await;
                }
                (None, false) => break retryable("a full page came without a scroll id".into()),
            }
        };
        if let Some(id) = scroll_id {
            // Best effort: the backup frees it after the keep-alive anyway.
            let _ = self
                .backup_request(&Method::DELETE, SCROLL_PATH, clear_scroll_body(&id))
                .await;
        }
        if outcome == ItemOutcome::Applied {
            tracing::debug!(
                path = ?op.index(),
                documents = reconciled,
                "by-query write replayed as the reconciliation of its matches"
            );
        }
        outcome
    }

    /// The primary's current state of each of `keys` (one `_mget` per
    /// page).
    async fn primary_documents(
        &self,
        keys: &[DocKey],
        version: &ClusterVersion,
    ) -> Result<Vec<DocState>, String> {
        let (path, body) = source_mget(keys, version);
        let header = build_header(&Method::POST, path, true)?;
        let response = self
            .primary()
            .exchange(header, Bytes::from(body), true)
            .await
            .map_err(|e| format!("primary _mget: {e}"))?;
        let status = response.header.status.as_u16();
        if status != 200 {
            return Err(format!(
                "primary _mget answered {status}: {}",
                excerpt(&response.body)
            ));
        }
        parse_source_mget(&response.body, keys).map_err(|e| format!("primary _mget: {e}"))
    }

    /// Applies index/delete ops to the backup in one `_bulk`, settling
    /// version conflicts; the first other failure is returned.
    async fn apply_ops_once(
        &self,
        ops: &[ReplicationOp],
        target: &ReplayTarget,
    ) -> Result<(), ItemOutcome> {
        if ops.is_empty() {
            return Ok(());
        }
        let body = build_replay_bulk(ops.iter(), target).map_err(|e| ItemOutcome::Failed {
            status: 0,
            reason: e.to_string(),
        })?;
        let indices: Vec<String> = ops
            .iter()
            .filter_map(|op| op.index().map(|i| i.into_owned()))
            .collect();
        self.ensure_gc_deletes(&indices).await;
        let outcomes = self
            .send_bulk(body)
            .await
            .map_err(|reason| ItemOutcome::Retryable { status: 0, reason })?;
        if outcomes.len() != ops.len() {
            return Err(ItemOutcome::Retryable {
                status: 0,
                reason: format!(
                    "backup answered {} bulk items for {} ops",
                    outcomes.len(),
                    ops.len()
                ),
            });
        }
        let mut applied = OpKindCounts::default();
        let mut failure = None;
        for (op, outcome) in ops.iter().zip(outcomes) {
            let outcome = match outcome {
                ItemOutcome::VersionConflict { current } => {
                    self.settle_one_conflict(op, current, target).await
                }
                outcome => outcome,
            };
            match outcome {
                ItemOutcome::Applied => {
                    applied.add(op.kind_name());
                    self.samples.offer(|| DocKey::of(op));
                }
                other => {
                    failure.get_or_insert(other);
                }
            }
        }
        self.note_applied(&applied);
        failure.map_or(Ok(()), Err)
    }

    async fn apply_once(&self, op: &ReplicationOp, target: &ReplayTarget) -> ItemOutcome {
        match op {
            ReplicationOp::Index { .. } | ReplicationOp::Delete { .. } => {
                let body = match build_replay_bulk(std::iter::once(op), target) {
                    Ok(body) => body,
                    Err(err) => {
                        return ItemOutcome::Failed {
                            status: 0,
                            reason: err.to_string(),
                        };
                    }
                };
                match self.send_bulk(body).await {
                    Ok(mut outcomes) if outcomes.len() == 1 => match outcomes.remove(0) {
                        ItemOutcome::VersionConflict { current } => {
                            self.settle_one_conflict(op, current, target).await
                        }
                        outcome => outcome,
                    },
                    Ok(_) => ItemOutcome::Retryable {
                        status: 0,
                        reason: "unpaired bulk answer".into(),
                    },
                    Err(reason) => ItemOutcome::Retryable { status: 0, reason },
                }
            }
            ReplicationOp::ReadRepair { .. } => match self.resolve_read_repair_once(op).await {
                Ok(resolved) => Box::pin(self.apply_once(&resolved, target)).await,
                Err(outcome) => outcome,
            },
            ReplicationOp::QueryScoped { .. } => self.by_query_once(op, target).await,
            ReplicationOp::IndexMeta { .. } => {
                let request = match replay_request(op, target) {
                    Ok(request) => request,
                    Err(err) => {
                        return ItemOutcome::Failed {
                            status: 0,
                            reason: err.to_string(),
                        };
                    }
                };
                let header =
                    match build_header(&request.method, &request.path, !request.body.is_empty()) {
                        Ok(header) => header,
                        Err(reason) => return ItemOutcome::Failed { status: 0, reason },
                    };
                match self.backup().exchange(header, request.body, true).await {
                    Ok(response) => {
                        let json = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
                        request_outcome(op, response.header.status.as_u16(), &json)
                    }
                    Err(err) => ItemOutcome::Retryable {
                        status: 0,
                        reason: err.to_string(),
                    },
                }
            }
        }
    }

    /// [`Replication::settle_conflicts`] for one op applied on its own, in
    /// one attempt: applied when older or reconciled.
    async fn settle_one_conflict(
        &self,
        op: &ReplicationOp,
        current: Option<i64>,
        target: &ReplayTarget,
    ) -> ItemOutcome {
        let retryable = |reason: String| ItemOutcome::Retryable { status: 0, reason };
        let Some(key) = DocKey::of(op) else {
            return retryable("version conflict on a non-document op".into());
        };
        let primary = match self.primary_versions(std::slice::from_ref(&key)).await {
            Ok(mut versions) => versions.remove(0),
            Err(reason) => return retryable(reason),
        };
        let class = classify_conflict(current, &primary);
        let older = class == ConflictClass::Older;
        self.metrics.observe_conflicts(older as u64, !older as u64);
        if older {
            self.status.lock().conflicts_older += 1;
            return ItemOutcome::Applied;
        }
        let io = ClusterDocs {
            replication: self,
            target,
        };
        match reconcile(&io, &key).await {
            Ok(outcome) => {
                self.note_reconciled(ReconcileCause::VersionConflict, &key, &outcome);
                ItemOutcome::Applied
            }
            Err(ReconcileError::Retryable(reason)) => retryable(reason),
            Err(ReconcileError::Failed { status, reason }) => ItemOutcome::Failed {
                status,
                reason: format!("reconcile: {reason}"),
            },
        }
    }

    async fn resolve_read_repair_once(
        &self,
        op: &ReplicationOp,
    ) -> Result<ReplicationOp, ItemOutcome> {
        let retryable = |reason: String| ItemOutcome::Retryable { status: 0, reason };
        let version = self
            .version_of(true)
            .await
            .map_err(|e| retryable(format!("{e:#}")))?;
        let path = read_repair_get_path(op, &version).ok_or_else(|| ItemOutcome::Failed {
            status: 0,
            reason: "not a read-repair op".into(),
        })?;
        let header = build_header(&Method::GET, &path, false).map_err(retryable)?;
        let response = self
            .primary()
            .exchange(header, Bytes::new(), true)
            .await
            .map_err(|e| retryable(e.to_string()))?;
        read_repair_op(op, response.header.status.as_u16(), &response.body).map_err(|e| match e {
            ReadRepairError::Retryable { status, reason } => {
                ItemOutcome::Retryable { status, reason }
            }
            ReadRepairError::Failed { status, reason } => ItemOutcome::Failed { status, reason },
            ReadRepairError::NotReadRepair => ItemOutcome::Failed {
                status: 0,
                reason: "not a read-repair op".into(),
            },
        })
    }

    /// Raises `index.gc_deletes` on backup indices not yet handled, so
    /// versioned delete tombstones outlive the replay window. Best effort:
    /// an index that does not exist yet is retried on the next call.
    async fn ensure_gc_deletes(&self, indices: &[String]) {
        if self.config.gc_deletes.is_empty() {
            return;
        }
        let todo: Vec<String> = {
            let done = self.gc_done.lock();
            let mut todo: Vec<String> = indices
                .iter()
                .filter(|i| !done.contains(*i))
                .cloned()
                .collect();
            todo.sort();
            todo.dedup();
            todo
        };
        for index in todo {
            let path = format!("/{}/_settings", tandem_es::uri::encode_path_segment(&index));
            let body = json!({ "index": { "gc_deletes": self.config.gc_deletes } }).to_string();
            let Ok(header) = build_header(&Method::PUT, &path, true) else {
                continue;
            };
            match self
                .backup()
                .exchange(header, Bytes::from(body), true)
                .await
            {
                Ok(r) if r.header.status.is_success() => {
                    self.gc_done.lock().insert(index);
                }
                Ok(r) if r.header.status.as_u16() == 404 => {}
                Ok(r) => tracing::warn!(
                    index,
                    status = r.header.status.as_u16(),
                    "cannot raise index.gc_deletes on the backup"
                ),
                Err(err) => {
                    tracing::debug!(index, error = %err, "cannot raise index.gc_deletes yet")
                }
            }
        }
    }
}

/// What made the gateway reconcile a document (metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileCause {
    /// A replay version conflict not provably older.
    VersionConflict,
    /// A write whose outcome on the primary is unknown (connection broke
    /// after sending, a 5xx, an answer that could not be paired).
    UnknownOutcome,
    /// A write in flight when the gateway stopped (found at start-up).
    Restart,
    /// Differences a comparison job found (RepairCompareDiffs).
    CompareRepair,
    /// A divergence the sampling verifier confirmed.
    Verifier,
}

impl ReconcileCause {
    /// Label value for metrics.
    pub fn label(self) -> &'static str {
        match self {
            ReconcileCause::VersionConflict => "version_conflict",
            ReconcileCause::UnknownOutcome => "unknown_outcome",
            ReconcileCause::Restart => "restart",
            ReconcileCause::CompareRepair => "compare_repair",
            ReconcileCause::Verifier => "verifier",
        }
    }
}

/// The clusters as [`reconcile`] sees them: per-document GETs with the
/// gateway's credentials, writes as one-item replay `_bulk`s.
struct ClusterDocs<'a> {
    replication: &'a Replication,
    target: &'a ReplayTarget,
}

impl DocIo for ClusterDocs<'_> {
    async fn read(&self, side: Side, key: &DocKey) -> Result<DocState, ReconcileError> {
        let retryable = |reason: String| ReconcileError::Retryable(reason);
        let (upstream, version, key) = match side {
            Side::Primary => (
                self.replication.primary(),
                self.replication
                    .version_of(true)
                    .await
                    .map_err(|e| retryable(format!("{e:#}")))?,
                key.clone(),
            ),
            Side::Backup => (
                self.replication.backup(),
                self.target.version,
                DocKey {
                    doc_type: self
                        .target
                        .doc_type_for(&key.index, key.doc_type.as_deref())
                        .map(String::from),
                    ..key.clone()
                },
            ),
        };
        let probe = key.read_repair(1);
        let path = read_repair_get_path(&probe, &version)
            .ok_or_else(|| retryable("not a document key".into()))?;
        let header = build_header(&Method::GET, &path, false).map_err(retryable)?;
        let response = upstream
            .exchange(header, Bytes::new(), true)
            .await
            .map_err(|e| retryable(format!("GET on the {}: {e}", upstream.role)))?;
        let op = read_repair_op(&probe, response.header.status.as_u16(), &response.body).map_err(
            |e| match e {
                ReadRepairError::Retryable { status, reason } => {
                    retryable(format!("{} answered {status}: {reason}", upstream.role))
                }
                ReadRepairError::Failed { status, reason } => ReconcileError::Failed {
                    status,
                    reason: format!("reading from the {}: {reason}", upstream.role),
                },
                ReadRepairError::NotReadRepair => retryable("not a read-repair op".into()),
            },
        )?;
        DocState::from_read_repair(op).ok_or_else(|| retryable("unexpected read answer".into()))
    }

    async fn write(&self, op: &ReplicationOp) -> ItemOutcome {
        let body = match build_replay_bulk(std::iter::once(op), self.target) {
            Ok(body) => body,
            Err(err) => {
                return ItemOutcome::Failed {
                    status: 0,
                    reason: err.to_string(),
                };
            }
        };
        match self.replication.send_bulk(body).await {
            Ok(mut outcomes) if outcomes.len() == 1 => outcomes.remove(0),
            Ok(_) => ItemOutcome::Retryable {
                status: 0,
                reason: "unpaired bulk answer".into(),
            },
            Err(reason) => ItemOutcome::Retryable { status: 0, reason },
        }
    }
}

/// The start of an answer body, for error messages.
fn excerpt(body: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(&body[..body.len().min(300)])
}

fn build_header(method: &Method, path: &str, json_body: bool) -> Result<RequestHeader, String> {
    let mut header =
        RequestHeader::build(method.clone(), path.as_bytes(), None).map_err(|e| e.to_string())?;
    if json_body {
        header
            .insert_header("content-type", "application/json")
            .map_err(|e| e.to_string())?;
    }
    Ok(header)
}

/// Asks a cluster for its version (`GET /` with the gateway's credentials).
pub async fn cluster_version(upstream: &Upstream) -> anyhow::Result<ClusterVersion> {
    let (status, body) = upstream.get_json("/").await?;
    if status != 200 {
        anyhow::bail!("GET / on the {} answered {status}", upstream.role);
    }
    ClusterVersion::from_root_response(&body)
        .map_err(|e| anyhow::anyhow!("{} version: {e}", upstream.role))
}

/// A repair report as JSON.
pub fn repair_json(report: &RepairReport) -> Value {
    json!({
        "segment": report.segment.display().to_string(),
        "position": report.position,
        "detail": report.detail,
        "first_lost_offset": report.first_lost_offset,
        "last_lost_offset": report.last_lost_offset,
        "records_lost": report.records_lost,
        "bytes_skipped": report.bytes_skipped,
        "resume_offset": report.resume_offset,
        "dry_run": report.dry_run,
    })
}
