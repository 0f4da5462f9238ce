//! State shared by the writer thread, readers and the [`Queue`](super::Queue)
//! handle: the segment table, consumer ledgers, byte accounting and the
//! time index, behind one mutex held only for bookkeeping (never for I/O).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, watch};

use super::QueueConfig;
use super::error::{IoContext, QueueError};
use super::ledger::Ledger;
use super::segment::{self, SegmentPos, sync_dir};

/// Everything the queue's parts share.
pub(crate) struct Shared {
    /// The queue directory.
    pub dir: PathBuf,
    /// The configuration the queue was opened with.
    pub config: QueueConfig,
    /// Bookkeeping; never held across I/O.
    pub state: Mutex<State>,
    /// The durable next offset, published after every group commit.
    pub committed: watch::Sender<u64>,
    /// Woken when segments are deleted or consumers ack (space or age freed).
    pub space_freed: Notify,
    /// Serialises ledger writes (acks, repairs, consumer creation).
    pub ledger_io: Mutex<()>,
}

/// The bookkeeping behind [`Shared::state`].
pub(crate) struct State {
    /// Durable length of every segment, by base offset.
    pub segments: BTreeMap<u64, u64>,
    /// Base offset of the segment the writer appends to.
    pub active: u64,
    /// Offset the next appended record gets; everything below is durable.
    pub next_offset: u64,
    /// Sum of the segment lengths.
    pub disk_bytes: u64,
    /// Bytes admitted by `append` and not yet written or failed.
    pub pending_bytes: u64,
    /// Enqueue times of some offsets, for age and lag.
    pub times: TimeIndex,
    /// Consumers by name.
    pub consumers: BTreeMap<String, Consumer>,
    /// Set when the writer cannot continue.
    pub writer_failed: Option<String>,
}

/// A consumer's in-memory state.
pub(crate) struct Consumer {
    /// Mirror of the durable ledger file.
    pub ledger: Ledger,
    /// Bumped by every repair so a halted reader re-reads.
    pub epoch: u64,
    /// Whether a [`Reader`](super::Reader) is open for it.
    pub reader_open: bool,
    /// Where its reader stopped on corrupt data, until repaired.
    pub halted: Option<CorruptPoint>,
}

/// Where and why a reader stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CorruptPoint {
    /// Position of the bad frame (or of the end of a segment with missing records).
    pub at: SegmentPos,
    /// Offset the reader expected there.
    pub expected: u64,
    /// What is wrong.
    pub detail: String,
}

/// What a reader needs to know about one segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentView {
    /// Readable (durable) length.
    pub len: u64,
    /// Base of the following segment; `None` for the active segment.
    pub next_base: Option<u64>,
    /// The queue's next offset at the time of the view.
    pub queue_next: u64,
}

impl Shared {
    /// Locks the bookkeeping. A panic elsewhere while holding the lock leaves
    /// consistent data (updates are single assignments), so poison is ignored.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks the ledger writer.
    pub fn lock_ledgers(&self) -> MutexGuard<'_, ()> {
        self.ledger_io
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Path of the segment with base offset `base`.
    pub fn segment_path(&self, base: u64) -> PathBuf {
        self.dir.join(segment::file_name(base))
    }

    /// The error a reader halted at `point` returns.
    pub fn corrupt_error(&self, point: &CorruptPoint) -> QueueError {
        QueueError::Corrupt {
            segment: self.segment_path(point.at.segment),
            position: point.at.pos,
            offset_expected: point.expected,
            detail: point.detail.clone(),
        }
    }

    /// Checks that `bytes` more fit the limits; with `reserve`, reserves
    /// them for an append (released by the writer).
    pub fn try_admit(&self, bytes: u64, now_ms: u64, reserve: bool) -> Result<(), QueueError> {
        let mut st = self.lock();
        if let Some(reason) = &st.writer_failed {
            return Err(QueueError::WriterFailed(reason.clone()));
        }
        if let Some(limit) = self.config.max_bytes {
            let used = st.disk_bytes + st.pending_bytes;
            if used + bytes > limit {
                return Err(QueueError::Full { bytes: used, limit });
            }
        }
        if let Some(limit) = self.config.max_age {
            let age = st.oldest_unacked_age(now_ms).unwrap_or_default();
            if age > limit {
                return Err(QueueError::TooOld { age, limit });
            }
        }
        if reserve {
            st.pending_bytes += bytes;
        }
        Ok(())
    }

    /// Reserves `bytes` for an append that must not be refused for capacity.
    pub fn force_admit(&self, bytes: u64) -> Result<(), QueueError> {
        let mut st = self.lock();
        if let Some(reason) = &st.writer_failed {
            return Err(QueueError::WriterFailed(reason.clone()));
        }
        st.pending_bytes += bytes;
        Ok(())
    }

    /// Deletes the segments every consumer has acknowledged entirely, except
    /// the active one. With no consumer, nothing is deleted.
    pub fn collect_garbage(&self) -> Result<(), QueueError> {
        let doomed: Vec<u64> = {
            let mut st = self.lock();
            if st.consumers.is_empty() {
                return Ok(());
            }
            let acked_below = st.min_committed();
            let bases: Vec<u64> = st.segments.keys().copied().collect();
            let doomed: Vec<u64> = bases
                .windows(2)
                .take_while(|pair| pair[0] != st.active && pair[1] <= acked_below)
                .map(|pair| pair[0])
                .collect();
            for base in &doomed {
                let len = st.segments.remove(base).unwrap_or(0);
                st.disk_bytes -= len;
            }
            st.times.prune_below(acked_below);
            doomed
        };
        if doomed.is_empty() {
            return Ok(());
        }
        for base in &doomed {
            let path = self.segment_path(*base);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).context(|| format!("deleting {}", path.display()));
                }
                _ => tracing::debug!(segment = %path.display(), "deleted acknowledged segment"),
            }
        }
        sync_dir(&self.dir)?;
        self.space_freed.notify_waiters();
        Ok(())
    }
}

impl State {
    /// What a reader needs to know about segment `base`, if it exists.
    pub fn view(&self, base: u64) -> Option<SegmentView> {
        let len = *self.segments.get(&base)?;
        let next_base = (base != self.active)
            .then(|| self.segments.range(base + 1..).next().map(|(b, _)| *b))
            .flatten();
        Some(SegmentView {
            len,
            next_base,
            queue_next: self.next_offset,
        })
    }

    /// Where to start looking for `offset`: the start of the last segment
    /// whose base is not above it (or of the first segment).
    pub fn locate(&self, offset: u64) -> SegmentPos {
        let segment = self
            .segments
            .range(..=offset)
            .next_back()
            .or_else(|| self.segments.iter().next())
            .map_or(self.active, |(base, _)| *base);
        SegmentPos { segment, pos: 0 }
    }

    /// Offset of the oldest record still on disk.
    pub fn first_offset(&self) -> u64 {
        self.segments
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_offset)
    }

    /// Lowest durable committed offset over all consumers (every record below
    /// it is acknowledged by everyone); the first offset when there are none.
    pub fn min_committed(&self) -> u64 {
        self.consumers
            .values()
            .map(|c| c.ledger.next_offset)
            .min()
            .unwrap_or_else(|| self.first_offset())
    }

    /// Age of record `offset`, `None` if it was not written yet.
    pub fn age_of(&self, offset: u64, now_ms: u64) -> Option<Duration> {
        if offset >= self.next_offset {
            return None;
        }
        let enqueued = self.times.at_or_before(offset).unwrap_or(now_ms);
        Some(Duration::from_millis(now_ms.saturating_sub(enqueued)))
    }

    /// Age of the oldest record some consumer has not acknowledged.
    pub fn oldest_unacked_age(&self, now_ms: u64) -> Option<Duration> {
        self.age_of(self.min_committed(), now_ms)
    }
}

/// Sparse map from offset to enqueue time: at most one entry per second of
/// enqueue time, plus the first record of every segment and each consumer's
/// next record found at open. The age of a record is read from the nearest
/// entry at or before it, so it is overstated by less than a second once the
/// writer or a reader has passed that region in this process.
#[derive(Debug, Default)]
pub(crate) struct TimeIndex(BTreeMap<u64, u64>);

impl TimeIndex {
    /// Notes that record `offset` was enqueued at `enqueued_at_ms`.
    pub fn note(&mut self, offset: u64, enqueued_at_ms: u64) {
        let near = self
            .0
            .range(..=offset)
            .next_back()
            .is_some_and(|(_, ts)| ts.abs_diff(enqueued_at_ms) < 1000);
        if !near {
            self.0.insert(offset, enqueued_at_ms);
        }
    }

    /// Enqueue time of the nearest noted record at or before `offset`.
    pub fn at_or_before(&self, offset: u64) -> Option<u64> {
        self.0.range(..=offset).next_back().map(|(_, ts)| *ts)
    }

    /// Forgets entries no longer needed to date `offset` or later records.
    pub fn prune_below(&mut self, offset: u64) {
        if let Some(floor) = self.0.range(..=offset).next_back().map(|(o, _)| *o) {
            self.0 = self.0.split_off(&floor);
        }
    }
}

/// Current unix time in milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_index_keeps_one_entry_per_second_and_prunes_behind_the_floor() {
        let mut index = TimeIndex::default();
        index.note(0, 10_000);
        index.note(5, 10_500);
        index.note(9, 11_200);
        assert_eq!(index.at_or_before(7), Some(10_000));
        assert_eq!(index.at_or_before(9), Some(11_200));
        index.prune_below(9);
        assert_eq!(index.at_or_before(8), None);
        assert_eq!(index.at_or_before(20), Some(11_200));
    }
}
