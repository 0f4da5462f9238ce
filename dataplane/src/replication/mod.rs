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
//!
//! ## Code map
//!
//! - `mod.rs`: the [`Replication`] handle: opening, recording, pause and
//!   resume, status, peek and repair, cluster versions;
//! - `replayer`: the replay loop and everything it sends to the backup;
//! - `reconciling`: reconciliations (unknown outcomes, crashes, version
//!   conflicts) and the sampling verifier's loop;
//! - `cutover`: swapping primary and backup on this gateway;
//! - `dead_letters`: the operator's retry / skip and dead-lettering.

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

mod cluster;
mod cutover;
mod dead_letters;
#[cfg(test)]
mod memory;
mod reconciling;
mod replayer;
#[cfg(test)]
mod tests;

pub use cluster::Cluster;
pub use cutover::{CutoverError, CutoverReport};
pub use dead_letters::RetryReport;
pub use reconciling::ReconcileCause;

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
pub struct Replication<C = Upstream> {
    /// The durable queue of accepted writes, reached only through this
    /// handle (record, replay, peek, repair, statistics).
    queue: Queue,
    /// Ops the backup refused for good.
    pub dead_letters: DeadLetterStore,
    roles: Arc<Roles<C>>,
    config: ReplayConfig,
    metrics: Arc<Metrics>,
    paused: watch::Sender<bool>,
    repaired: Notify,
    status: Mutex<ReplayStatus>,
    gc_done: Mutex<HashSet<String>>,
    /// Mapping types of typed (5.x/6.x) backup indices, learned once.
    index_types: Mutex<std::collections::HashMap<String, String>>,
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
    /// By-query writes recorded as they are (their replay reconciles what
    /// they match).
    ops: Vec<ReplicationOp>,
    note: NoteId,
    cause: ReconcileCause,
}

impl PendingReconcile {
    /// Documents and ops it stands for.
    fn len(&self) -> usize {
        self.keys.len() + self.ops.len()
    }

    /// The records it becomes.
    fn records(&self) -> impl Iterator<Item = ReplicationOp> + '_ {
        self.keys
            .iter()
            .map(|key| key.read_repair(1))
            .chain(self.ops.iter().cloned())
    }
}

/// Cluster versions, re-read at most once a minute.
#[derive(Default)]
struct VersionCache {
    primary: Option<(ClusterVersion, std::time::Instant)>,
    backup: Option<(ClusterVersion, std::time::Instant)>,
}

const VERSION_TTL: Duration = Duration::from_secs(60);

impl<C> std::fmt::Debug for Replication<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl<C: Cluster> Replication<C> {
    /// Opens the queue and dead-letter store under `dir` (recovering the
    /// queue after a crash).
    pub fn open(
        dir: PathBuf,
        queue_config: QueueConfig,
        config: ReplayConfig,
        roles: Arc<Roles<C>>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Replication<C>>> {
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
                ops: Vec::new(),
                note,
                cause: ReconcileCause::Restart,
            });
        }
        if !recovered.by_query.is_empty() {
            let paths: Vec<String> = recovered
                .by_query
                .iter()
                .map(|(_, op)| op.index().map(|i| i.into_owned()).unwrap_or_default())
                .collect();
            tracing::error!(
                writes = recovered.by_query.len(),
                indices = ?paths,
                "by-query writes were in flight when the gateway stopped; they are recorded again so their replay reconciles what they match, but a run may go on on the primary: run a comparison job for their indices"
            );
            // Still counted: the primary may keep running them.
            metrics
                .unreconcilable_writes
                .inc_by(recovered.by_query.len() as u64);
            counters.mark_unreconcilable();
        }
        for (note, op) in recovered.by_query {
            pending.push(PendingReconcile {
                due,
                keys: Vec::new(),
                ops: vec![op],
                note,
                cause: ReconcileCause::Restart,
            });
        }
        metrics.inflight_at_start.inc_by(documents as u64);
        if !recovered.opaque.is_empty() {
            tracing::error!(
                writes = ?recovered.opaque,
                "metadata writes were in flight when the gateway stopped and cannot be reconciled; run a comparison job for their indices"
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
            index_types: Mutex::new(std::collections::HashMap::new()),
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

    /// The cluster currently primary (read-repair source).
    fn primary(&self) -> Arc<C> {
        self.roles.current().primary.clone()
    }

    /// The cluster currently backup (replay target).
    fn backup(&self) -> Arc<C> {
        self.roles
            .current()
            .backup
            .clone()
            .expect("replication always has a backup")
    }

    /// Waits or fails, per the queue's overflow policy, until a write of
    /// `bytes` could be recorded: called before forwarding it, so what the
    /// primary accepts can always be recorded.
    pub async fn ensure_capacity(&self, bytes: u64) -> Result<(), QueueError> {
        self.queue.ensure_capacity(bytes).await
    }

    /// Where the queue stands: records, bytes, offsets, consumers.
    pub fn queue_stats(&self) -> crate::queue::QueueStats {
        self.queue.stats()
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
            "primary": self.primary().url(),
            "backup": self.backup().url(),
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

    /// The replayer loop and the reconciliation scheduler; runs until the
    /// future is dropped.
    pub async fn run(self: Arc<Self>) {
        tokio::join!(
            self.reconcile_scheduler(),
            self.replay_loop(),
            self.verify_loop()
        );
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
        let version = cluster_version(upstream.as_ref()).await?;
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
pub async fn cluster_version(cluster: &impl Cluster) -> anyhow::Result<ClusterVersion> {
    let header = RequestHeader::build(Method::GET, b"/", None)?;
    let response = cluster.exchange(header, Bytes::new()).await?;
    let status = response.header.status.as_u16();
    if status != 200 {
        anyhow::bail!(
            "GET / on the {} answered {status}: {}",
            cluster.role(),
            excerpt(&response.body)
        );
    }
    let body: Value = serde_json::from_slice(&response.body)
        .map_err(|e| anyhow::anyhow!("GET / on the {} is not JSON: {e}", cluster.role()))?;
    ClusterVersion::from_root_response(&body)
        .map_err(|e| anyhow::anyhow!("{} version: {e}", cluster.role()))
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
