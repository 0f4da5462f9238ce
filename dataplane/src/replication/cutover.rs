//! Cutover and rollback on this gateway: swap primary and backup once the
//! queue is drained, holding new writes for a bounded moment.

use super::*;

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

impl<C: Cluster> Replication<C> {
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
        self.index_types.lock().clear();
        self.samples.clear();
        self.suspects.lock().clear();
        drop(hold);
        let report = CutoverReport {
            primary: roles.primary.url().to_owned(),
            backup: roles
                .backup
                .as_ref()
                .map(|b| b.url().to_owned())
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
}
