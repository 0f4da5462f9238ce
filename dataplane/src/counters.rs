//! Counters that must survive restarts: the evidence that the backup may
//! differ (or did, and was repaired) must not reset to zero when the
//! gateway restarts — a crash is exactly when it matters.
//!
//! The counters live in the gateway's Prometheus registry as usual; their
//! values are written to `<data_dir>/divergence.json` (write to a temporary
//! file, then rename) at most every 100 ms when they changed, and added
//! back to the fresh counters at start-up. The file also keeps when the
//! last divergence and the last unreconcilable write happened, which the
//! agent reports to the control plane (task health).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

/// The file's name in the task's data directory.
pub const FILE_NAME: &str = "divergence.json";

/// What is kept across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Persisted {
    /// `tandem_unknown_outcome_writes_total`.
    pub unknown_outcome_writes: u64,
    /// `tandem_unrecorded_writes_total`.
    pub unrecorded_writes: u64,
    /// `tandem_unreconcilable_writes_total`.
    pub unreconcilable_writes: u64,
    /// `tandem_verifier_divergences_total`.
    pub verifier_divergences: u64,
    /// When the verifier last confirmed a divergence (unix ms).
    pub last_divergence_at_ms: Option<u64>,
    /// When the last unreconcilable write happened (unix ms).
    pub last_unreconcilable_at_ms: Option<u64>,
}

impl Persisted {
    /// When the verifier last confirmed a divergence.
    pub fn last_divergence_at(&self) -> Option<SystemTime> {
        self.last_divergence_at_ms.map(from_ms)
    }

    /// When the last unreconcilable write happened.
    pub fn last_unreconcilable_at(&self) -> Option<SystemTime> {
        self.last_unreconcilable_at_ms.map(from_ms)
    }
}

/// The counters of one replication task, kept across restarts.
#[derive(Debug)]
pub struct DurableCounters {
    path: PathBuf,
    saved: Mutex<Persisted>,
    last_divergence_at_ms: AtomicU64,
    last_unreconcilable_at_ms: AtomicU64,
}

impl DurableCounters {
    /// Loads the counters saved in `dir` and adds them to `metrics`. An
    /// unreadable file is reported and counted from zero (never fatal).
    pub fn open(dir: &Path, metrics: &Metrics) -> DurableCounters {
        let path = dir.join(FILE_NAME);
        let saved: Persisted = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                tracing::error!(path = %path.display(), error = %err, "unreadable divergence counters; counting from zero");
                Persisted::default()
            }),
            Err(_) => Persisted::default(),
        };
        metrics
            .unknown_outcome_writes
            .inc_by(saved.unknown_outcome_writes);
        metrics.unrecorded_writes.inc_by(saved.unrecorded_writes);
        metrics
            .unreconcilable_writes
            .inc_by(saved.unreconcilable_writes);
        metrics
            .verifier_divergences
            .inc_by(saved.verifier_divergences);
        DurableCounters {
            path,
            last_divergence_at_ms: AtomicU64::new(saved.last_divergence_at_ms.unwrap_or(0)),
            last_unreconcilable_at_ms: AtomicU64::new(saved.last_unreconcilable_at_ms.unwrap_or(0)),
            saved: Mutex::new(saved),
        }
    }

    /// Notes that the verifier confirmed a divergence now.
    pub fn mark_divergence(&self) {
        self.last_divergence_at_ms
            .store(now_ms(), Ordering::Relaxed);
    }

    /// Notes an unreconcilable write now.
    pub fn mark_unreconcilable(&self) {
        self.last_unreconcilable_at_ms
            .store(now_ms(), Ordering::Relaxed);
    }

    /// The values now.
    pub fn current(&self, metrics: &Metrics) -> Persisted {
        let at = |v: &AtomicU64| Some(v.load(Ordering::Relaxed)).filter(|ms| *ms > 0);
        Persisted {
            unknown_outcome_writes: metrics.unknown_outcome_writes.get(),
            unrecorded_writes: metrics.unrecorded_writes.get(),
            unreconcilable_writes: metrics.unreconcilable_writes.get(),
            verifier_divergences: metrics.verifier_divergences.get(),
            last_divergence_at_ms: at(&self.last_divergence_at_ms),
            last_unreconcilable_at_ms: at(&self.last_unreconcilable_at_ms),
        }
    }

    /// Writes the values when they changed since the last save.
    pub fn save_if_changed(&self, metrics: &Metrics) {
        let current = self.current(metrics);
        let mut saved = self.saved.lock();
        if *saved == current {
            return;
        }
        let tmp = self.path.with_extension("json.tmp");
        let result = serde_json::to_vec(&current)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        match result {
            Ok(()) => *saved = current,
            Err(err) => {
                tracing::warn!(error = %err, "cannot save the divergence counters; will retry")
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_continue_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let counters = DurableCounters::open(dir.path(), &metrics);
        metrics.unknown_outcome_writes.inc_by(3);
        metrics.verifier_divergences.inc();
        counters.mark_divergence();
        counters.save_if_changed(&metrics);

        let restarted = Metrics::new();
        let counters = DurableCounters::open(dir.path(), &restarted);
        assert_eq!(restarted.unknown_outcome_writes.get(), 3);
        assert_eq!(restarted.verifier_divergences.get(), 1);
        let now = counters.current(&restarted);
        assert!(now.last_divergence_at().is_some());
        assert!(now.last_unreconcilable_at().is_none());
        restarted.unrecorded_writes.inc();
        counters.save_if_changed(&restarted);
        let again = Metrics::new();
        DurableCounters::open(dir.path(), &again);
        assert_eq!(
            (
                again.unknown_outcome_writes.get(),
                again.unrecorded_writes.get()
            ),
            (3, 1)
        );
    }

    #[test]
    fn an_unreadable_file_counts_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        let metrics = Metrics::new();
        DurableCounters::open(dir.path(), &metrics);
        assert_eq!(metrics.unknown_outcome_writes.get(), 0);
    }
}
