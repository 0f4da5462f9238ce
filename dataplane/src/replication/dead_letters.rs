//! The operator's dead-letter controls (retry, skip) and how the replayer
//! hands an op it cannot apply to the dead-letter store.

use super::*;

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

impl<C: Cluster> Replication<C> {
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

    pub(super) async fn dead_letter(
        &self,
        offset: u64,
        op: &ReplicationOp,
        status: u16,
        reason: &str,
    ) {
        tracing::warn!(offset, kind = op.kind_name(), index = ?op.index(), id = ?op.id(), status, reason, "op dead-lettered");
        // The store must hold the op before the queue forgets it: retry
        // until it does (a full disk is worth waiting out).
        loop {
            match self.dead_letters.add(offset, op, status, reason) {
                Ok(_) => break,
                Err(err) => {
                    tracing::error!(error = %err, "cannot store a dead letter; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        self.metrics
            .dead_letters
            .set(self.dead_letters.len() as i64);
    }

    pub(super) async fn dead_letter_raw(&self, offset: u64, payload: &[u8], reason: &str) {
        let op = ReplicationOp::QueryScoped {
            method: Method::POST,
            path: format!("/_tandem/undecodable/{offset}"),
            body: Bytes::copy_from_slice(payload),
        };
        self.dead_letter(offset, &op, 0, &format!("undecodable record: {reason}"))
            .await;
    }
}
