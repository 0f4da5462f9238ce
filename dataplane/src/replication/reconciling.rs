//! Everything that makes one document on the backup equal to the primary's:
//! reconciliations scheduled after an unknown outcome or a crash, version
//! conflicts classified and settled, and the sampling verifier's loop.

use super::*;

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
struct ClusterDocs<'a, C> {
    replication: &'a Replication<C>,
    target: &'a ReplayTarget,
}

impl<C: Cluster> DocIo for ClusterDocs<'_, C> {
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
            .exchange(header, Bytes::new())
            .await
            .map_err(|e| retryable(format!("GET on the {}: {e}", upstream.role())))?;
        let op = read_repair_op(&probe, response.header.status.as_u16(), &response.body).map_err(
            |e| match e {
                ReadRepairError::Retryable { status, reason } => {
                    retryable(format!("{} answered {status}: {reason}", upstream.role()))
                }
                ReadRepairError::Failed { status, reason } => ReconcileError::Failed {
                    status,
                    reason: format!("reading from the {}: {reason}", upstream.role()),
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

impl<C: Cluster> Replication<C> {
    /// Queues `keys` for reconciliation after the configured delay and
    /// closes `note` once they are in the queue (the note keeps them safe
    /// across a crash until then).
    pub fn reconcile_later(&self, keys: Vec<DocKey>, note: NoteId, cause: ReconcileCause) {
        let due =
            tokio::time::Instant::now() + Duration::from_millis(self.config.reconcile_delay_ms);
        self.pending.lock().push(PendingReconcile {
            due,
            keys,
            ops: Vec::new(),
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
    pub(super) async fn verify_loop(&self) {
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
    pub(super) fn suspect(&self, key: DocKey, primary: DocState) {
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
    pub(super) async fn note_divergence(&self, key: &DocKey) {
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
            .map(PendingReconcile::len)
            .sum::<usize>()
            + queuing
    }

    /// Queues the pending reconciliations that are due (all of them with
    /// `all`) as read-repair ops; returns how many documents were queued.
    pub(super) async fn queue_due_reconciles(&self, all: bool) -> usize {
        let now = tokio::time::Instant::now();
        let (due, documents) = {
            let mut pending = self.pending.lock();
            let (due, later): (Vec<PendingReconcile>, _) = std::mem::take(&mut *pending)
                .into_iter()
                .partition(|p| all || p.due <= now);
            *pending = later;
            let documents: usize = due.iter().map(PendingReconcile::len).sum();
            // Counted while the records are appended (see
            // `pending_reconciles`); taken under the lock so no reader sees
            // the documents in neither place.
            self.queuing.fetch_add(documents, Ordering::SeqCst);
            (due, documents)
        };
        if due.is_empty() {
            return 0;
        }
        let ops: Vec<ReplicationOp> = due.iter().flat_map(PendingReconcile::records).collect();
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
                        .inc_by(p.len() as u64);
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
    pub(super) async fn reconcile_scheduler(&self) {
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
        // At once, not at the scheduler's next tick: a crash right after
        // must not forget it (rare, so the small write is affordable).
        self.counters.save_if_changed(&self.metrics);
    }

    /// Decides what each replay version conflict means (see
    /// [`tandem_es::docstate`]): an op the primary has moved past is
    /// skipped; any other document is reconciled from the primary. Waits
    /// out an unavailable primary; a document the backup refuses is
    /// dead-lettered.
    pub(super) async fn settle_conflicts(
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
    pub(super) async fn reconcile_document(
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
                    self.dead_letter(offset, op, status, &format!("reconcile: {reason}"))
                        .await;
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
    pub(super) fn note_reconciled(
        &self,
        cause: ReconcileCause,
        key: &DocKey,
        outcome: &Reconciled,
    ) {
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
    pub(super) async fn primary_versions(
        &self,
        keys: &[DocKey],
    ) -> Result<Vec<CurrentVersion>, String> {
        let version = self.version_of(true).await.map_err(|e| format!("{e:#}"))?;
        let mut versions = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(1000) {
            let (path, body) = version_mget(chunk, &version);
            let answer = self.primary_mget(path, body).await?;
            versions.extend(parse_version_mget(&answer, chunk.len())?);
        }
        Ok(versions)
    }

    /// Sends an `_mget` to the primary; the body of its 200 answer.
    pub(super) async fn primary_mget(&self, path: &str, body: Vec<u8>) -> Result<Bytes, String> {
        let header = build_header(&Method::POST, path, true)?;
        let response = self
            .primary()
            .exchange(header, Bytes::from(body))
            .await
            .map_err(|e| format!("primary _mget: {e}"))?;
        let status = response.header.status.as_u16();
        if status != 200 {
            return Err(format!(
                "primary _mget answered {status}: {}",
                excerpt(&response.body)
            ));
        }
        Ok(response.body)
    }

    /// The primary's current state of each of `keys` (one `_mget` per
    /// page).
    pub(super) async fn primary_documents(
        &self,
        keys: &[DocKey],
        version: &ClusterVersion,
    ) -> Result<Vec<DocState>, String> {
        let (path, body) = source_mget(keys, version);
        let answer = self.primary_mget(path, body).await?;
        parse_source_mget(&answer, keys).map_err(|e| format!("primary _mget: {e}"))
    }

    /// [`Replication::settle_conflicts`] for one op applied on its own, in
    /// one attempt: applied when older or reconciled.
    pub(super) async fn settle_one_conflict(
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
}
