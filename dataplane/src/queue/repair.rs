//! Repair: measuring a corrupt region exactly and letting a halted consumer
//! continue past it, with the loss recorded in its ledger.

use std::io;
use std::path::PathBuf;

use super::error::{IoContext, QueueError};
use super::ledger::{self, Ledger, Skip};
use super::reader::{Cursor, ReadState, read_step};
use super::segment::{self, SegmentPos};
use super::shared::{CorruptPoint, Shared, now_ms};

/// What [`Queue::repair`](super::Queue::repair) found (and, unless a dry
/// run, skipped).
///
/// Offsets are monotonic and contiguous, so the loss is exact: the records
/// `first_lost_offset..=last_lost_offset`, `records_lost` of them. When only
/// garbage bytes sat between two consecutive records, `records_lost` is 0
/// and `last_lost_offset` is `first_lost_offset - 1` (an empty range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// The consumer repaired.
    pub consumer: String,
    /// Segment file holding the corruption.
    pub segment: PathBuf,
    /// Byte position of the corruption in it.
    pub position: u64,
    /// Why the data was rejected.
    pub detail: String,
    /// First offset lost.
    pub first_lost_offset: u64,
    /// Last offset lost.
    pub last_lost_offset: u64,
    /// Number of records lost.
    pub records_lost: u64,
    /// Bytes skipped in `segment` from `position`.
    pub bytes_skipped: u64,
    /// Offset the consumer reads next, after the loss.
    pub resume_offset: u64,
    /// True when nothing was changed.
    pub dry_run: bool,
}

/// Finds the corruption that halts `consumer` (where its reader stopped, or
/// the first one ahead of its acknowledged offset), measures the loss up to
/// the next valid frame, and unless `dry_run` records the skip in the
/// consumer's ledger.
pub(crate) fn repair(
    shared: &Shared,
    consumer: &str,
    dry_run: bool,
) -> Result<RepairReport, QueueError> {
    let io_guard = shared.lock_ledgers();
    let (mut ledger, halted) = shared
        .lock()
        .consumers
        .get(consumer)
        .map(|c| (c.ledger.clone(), c.halted.clone()))
        .ok_or_else(|| QueueError::UnknownConsumer {
            consumer: consumer.to_owned(),
        })?;
    let point = match halted {
        Some(point) => point,
        None => probe(shared, consumer, &ledger)?.ok_or_else(|| QueueError::NothingToRepair {
            consumer: consumer.to_owned(),
        })?,
    };
    let skip = measure(shared, &point)?;
    let records_lost = skip.resume_offset.saturating_sub(skip.first_lost_offset);
    let report = RepairReport {
        consumer: consumer.to_owned(),
        segment: shared.segment_path(point.at.segment),
        position: point.at.pos,
        detail: point.detail.clone(),
        first_lost_offset: skip.first_lost_offset,
        last_lost_offset: skip.resume_offset.saturating_sub(1),
        records_lost,
        bytes_skipped: skip.bytes_skipped,
        resume_offset: skip.resume_offset,
        dry_run,
    };
    if dry_run {
        return Ok(report);
    }

    if ledger.next_offset == point.expected {
        ledger.next_offset = skip.resume_offset;
        ledger.position = Some(skip.resume);
    }
    ledger.records_lost += records_lost;
    ledger.skips.push(skip);
    ledger::store(&shared.dir, consumer, &ledger)?;
    if let Some(c) = shared.lock().consumers.get_mut(consumer) {
        c.ledger = ledger;
        c.epoch += 1;
        c.halted = None;
    }
    drop(io_guard);
    tracing::warn!(
        consumer,
        segment = %report.segment.display(),
        position = report.position,
        first_lost_offset = report.first_lost_offset,
        last_lost_offset = report.last_lost_offset,
        records_lost,
        bytes_skipped = report.bytes_skipped,
        "repaired consumer: skipped corrupt queue data"
    );
    shared.space_freed.notify_waiters();
    if let Err(e) = shared.collect_garbage() {
        tracing::warn!(error = %e, "deleting acknowledged segments failed");
    }
    Ok(report)
}

/// Reads ahead from the consumer's acknowledged offset to the first
/// corruption, if any.
fn probe(
    shared: &Shared,
    consumer: &str,
    ledger: &Ledger,
) -> Result<Option<CorruptPoint>, QueueError> {
    let mut state = ReadState::new(Cursor::committed(ledger, shared));
    loop {
        let step = read_step(shared, consumer, &mut state, 4096, 16 << 20)?;
        if step.corrupt.is_some() || step.records.is_empty() {
            return Ok(step.corrupt);
        }
    }
}

/// Measures the corrupt region at `point`: up to the next plausible frame in
/// the segment, else to the next segment's first offset, else to the
/// writer's next offset.
fn measure(shared: &Shared, point: &CorruptPoint) -> Result<Skip, QueueError> {
    let path = shared.segment_path(point.at.segment);
    let view = shared
        .lock()
        .view(point.at.segment)
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        .context(|| format!("repairing {}", path.display()))?;
    let data = segment::read_range(&path, point.at.pos, view.len)?;
    let (resume, resume_offset, bytes_skipped) = match segment::resync(&data, 0, point.expected) {
        Some((rel, offset)) => (
            SegmentPos {
                segment: point.at.segment,
                pos: point.at.pos + rel as u64,
            },
            offset,
            rel as u64,
        ),
        None => match view.next_base {
            Some(next) => (
                SegmentPos {
                    segment: next,
                    pos: 0,
                },
                next,
                data.len() as u64,
            ),
            None => (
                SegmentPos {
                    segment: point.at.segment,
                    pos: view.len,
                },
                view.queue_next,
                data.len() as u64,
            ),
        },
    };
    Ok(Skip {
        at: point.at,
        first_lost_offset: point.expected,
        resume,
        resume_offset: resume_offset.max(point.expected),
        bytes_skipped,
        repaired_at_ms: now_ms(),
    })
}
