//! The sampling verifier: a continuous, throttled check that documents the
//! replayer applied are equal on both clusters.
//!
//! Replay plus reconciliation should leave nothing different; the verifier
//! is the independent check that says so, or finds what a fault nobody
//! foresaw left behind (a write to the backup behind the gateway's back, a
//! power loss, a bug). The replayer keeps a sample of the documents it
//! applied (one in [`SAMPLE_EVERY`], the newest [`SAMPLE_CAPACITY`]); every
//! second the verifier reads up to `replay.verify_docs_per_second` of them
//! from both clusters.
//!
//! A document that differs is only a *suspect* at first: newer records of
//! it may still be in this gateway's queue (or another gateway's). It is
//! read again once the replayer has passed every record that existed when
//! the difference was seen and at least [`SETTLE`] has gone by; a document
//! the primary changed meanwhile starts over. Still different then, it is a
//! **divergence**: counted (`tandem_verifier_divergences_total`), logged with
//! its index and id, shown in `GET /replication`, and repaired through the
//! same reconciliation as everything else (queued as a read-repair op).

use std::collections::VecDeque;
use std::time::Duration;

use parking_lot::Mutex;

use tandem_es::docstate::{DocKey, DocState};

/// One applied document in this many is sampled.
pub const SAMPLE_EVERY: u64 = 8;
/// Samples kept (the newest).
pub const SAMPLE_CAPACITY: usize = 1024;
/// Least time between seeing a difference and confirming it.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Documents the replayer applied, sampled.
#[derive(Debug, Default)]
pub struct Samples {
    seen: std::sync::atomic::AtomicU64,
    inner: Mutex<SamplesInner>,
}

#[derive(Debug, Default)]
struct SamplesInner {
    keys: VecDeque<DocKey>,
    cursor: usize,
}

impl Samples {
    /// Offers one applied document; `key` is called (and the document
    /// kept) for one in [`SAMPLE_EVERY`] only, so the replay path pays a
    /// counter increment for the others.
    pub fn offer(&self, key: impl FnOnce() -> Option<DocKey>) {
        let seen = self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if !seen.is_multiple_of(SAMPLE_EVERY) {
            return;
        }
        let Some(key) = key() else {
            return;
        };
        let mut inner = self.inner.lock();
        if inner.keys.len() == SAMPLE_CAPACITY {
            inner.keys.pop_front();
        }
        inner.keys.push_back(key);
    }

    /// The next `n` samples, round robin (none are removed).
    pub fn next(&self, n: usize) -> Vec<DocKey> {
        let mut inner = self.inner.lock();
        let len = inner.keys.len();
        if len == 0 {
            return Vec::new();
        }
        let start = inner.cursor % len;
        let taken = (0..n.min(len))
            .map(|i| inner.keys[(start + i) % len].clone())
            .collect();
        inner.cursor = (start + n.min(len)) % len;
        taken
    }

    /// Forgets every sample (the roles changed).
    pub fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.keys.clear();
        inner.cursor = 0;
    }
}

/// A document seen different, waiting to be confirmed.
#[derive(Debug, Clone)]
pub struct Suspect {
    /// The document.
    pub key: DocKey,
    /// The queue's next offset when the difference was seen: every record
    /// before it must be replayed before the difference is confirmed.
    pub head: u64,
    /// The primary's state when the difference was seen.
    pub primary: DocState,
    /// When it was seen.
    pub seen_at: tokio::time::Instant,
}

/// Whether the backup holds what the primary holds: the same content, and
/// a version at or above the primary's (it runs ahead after a repair).
pub fn in_sync(primary: &DocState, backup: &DocState) -> bool {
    primary.same_content(backup) && backup.version() >= primary.version()
}

/// What a recheck of a suspect found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Equal now: it was lagging.
    InSync,
    /// The primary changed meanwhile: watch it again from now.
    Moved,
    /// Still different, with the primary unchanged: a divergence.
    Diverged,
}

/// Judges a suspect re-read as (`primary`, `backup`).
pub fn judge(suspect: &Suspect, primary: &DocState, backup: &DocState) -> Verdict {
    if in_sync(primary, backup) {
        Verdict::InSync
    } else if primary.version() != suspect.primary.version()
        || !primary.same_content(&suspect.primary)
    {
        Verdict::Moved
    } else {
        Verdict::Diverged
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn key(id: u32) -> DocKey {
        DocKey {
            index: "i".into(),
            doc_type: None,
            id: id.to_string(),
            routing: None,
        }
    }

    fn doc(version: i64, source: &'static str) -> DocState {
        DocState::Present {
            version,
            source: Bytes::from_static(source.as_bytes()),
            doc_type: None,
            routing: None,
        }
    }

    #[test]
    fn samples_keep_one_in_n_round_robin_and_are_bounded() {
        let samples = Samples::default();
        let every = SAMPLE_EVERY as u32;
        for id in 1..=every * 3 {
            samples.offer(|| Some(key(id)));
        }
        let ids = |keys: Vec<DocKey>| keys.into_iter().map(|k| k.id).collect::<Vec<_>>();
        let kept = [every, 2 * every, 3 * every].map(|n| n.to_string());
        assert_eq!(ids(samples.next(2)), kept[..2]);
        assert_eq!(ids(samples.next(2)), [kept[2].clone(), kept[0].clone()]);
        assert_eq!(ids(samples.next(10)).len(), 3, "never more than held");
        for id in 0..(SAMPLE_CAPACITY as u32 * every * 2) {
            samples.offer(|| Some(key(id)));
        }
        assert_eq!(samples.next(usize::MAX).len(), SAMPLE_CAPACITY);
        samples.clear();
        assert!(samples.next(1).is_empty());
    }

    #[test]
    fn a_suspect_is_a_divergence_only_if_the_primary_did_not_move() {
        let suspect = Suspect {
            key: key(1),
            head: 10,
            primary: doc(3, r#"{"a":1}"#),
            seen_at: tokio::time::Instant::now(),
        };
        assert_eq!(
            judge(&suspect, &doc(3, r#"{"a":1}"#), &doc(3, r#"{"a":1}"#)),
            Verdict::InSync
        );
        assert_eq!(
            judge(&suspect, &doc(3, r#"{"a":1}"#), &doc(5, r#"{"a":1}"#)),
            Verdict::InSync,
            "ahead after a repair"
        );
        assert_eq!(
            judge(&suspect, &doc(4, r#"{"a":2}"#), &doc(3, r#"{"a":1}"#)),
            Verdict::Moved
        );
        assert_eq!(
            judge(&suspect, &doc(3, r#"{"a":1}"#), &doc(3, r#"{"a":9}"#)),
            Verdict::Diverged
        );
        assert_eq!(
            judge(&suspect, &doc(3, r#"{"a":1}"#), &DocState::Absent),
            Verdict::Diverged
        );
        assert!(!in_sync(&doc(3, r#"{"a":1}"#), &doc(2, r#"{"a":1}"#)));
    }
}
