//! Consumers' side: reading records in order, acknowledging them durably,
//! and halting on corrupt data.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use super::error::{IoContext, QueueError};
use super::ledger::{self, Ledger};
use super::record::{self, Decoded, HEADER_LEN, Header};
use super::segment::SegmentPos;
use super::shared::{CorruptPoint, Shared};
use super::{Queue, Record};

const READ_BUFFER: usize = 256 * 1024;

/// Where the next record to deliver is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// Its offset.
    pub next_offset: u64,
    /// Where its frame starts (or the segment to search from).
    pub at: SegmentPos,
}

impl Cursor {
    /// The committed position in `ledger`.
    pub fn committed(ledger: &Ledger, shared: &Shared) -> Cursor {
        let at = ledger
            .position
            .unwrap_or_else(|| shared.lock().locate(ledger.next_offset));
        Cursor {
            next_offset: ledger.next_offset,
            at,
        }
    }
}

/// A cursor plus the open file it reads from.
pub(crate) struct ReadState {
    pub cursor: Cursor,
    file: Option<OpenSegment>,
}

impl ReadState {
    /// A read state at `cursor`, opening files lazily.
    pub fn new(cursor: Cursor) -> ReadState {
        ReadState { cursor, file: None }
    }
}

struct OpenSegment {
    base: u64,
    pos: u64,
    reader: BufReader<File>,
}

/// Records read by [`read_step`], each with the position after it, and the
/// corruption that stopped the step, if any.
pub(crate) struct Step {
    pub records: Vec<(Record, SegmentPos)>,
    pub corrupt: Option<CorruptPoint>,
}

enum Next {
    Record(Record),
    Moved,
    CaughtUp,
    Corrupt(String),
}

/// Reads up to `max_records` records (and about `max_bytes` of payload, at
/// least one record) for `consumer` from `state`, following the consumer's
/// repair skips. Blocking I/O: call from a blocking thread.
pub(crate) fn read_step(
    shared: &Shared,
    consumer: &str,
    state: &mut ReadState,
    max_records: usize,
    max_bytes: usize,
) -> Result<Step, QueueError> {
    let mut records = Vec::new();
    let mut bytes = 0usize;
    let mut corrupt = None;
    while records.len() < max_records && (records.is_empty() || bytes < max_bytes) {
        match advance(shared, state)? {
            Next::Record(record) => {
                bytes += record.payload.len();
                records.push((record, state.cursor.at));
            }
            Next::Moved => {}
            Next::CaughtUp => break,
            Next::Corrupt(detail) => {
                state.file = None;
                let point = CorruptPoint {
                    at: state.cursor.at,
                    expected: state.cursor.next_offset,
                    detail,
                };
                let st = shared.lock();
                let skip = st
                    .consumers
                    .get(consumer)
                    .and_then(|c| c.ledger.skip_at(point.at));
                match skip {
                    Some(skip) => {
                        state.cursor = Cursor {
                            next_offset: skip.resume_offset,
                            at: skip.resume,
                        };
                    }
                    None => {
                        corrupt = Some(point);
                        break;
                    }
                }
            }
        }
    }
    if !records.is_empty() {
        let mut st = shared.lock();
        for (record, _) in &records {
            st.times.note(record.offset, record.enqueued_at_ms);
        }
    }
    Ok(Step { records, corrupt })
}

/// Reads the frame at the cursor, or moves the cursor to the next segment.
fn advance(shared: &Shared, state: &mut ReadState) -> Result<Next, QueueError> {
    let cursor = state.cursor;
    let view = shared.lock().view(cursor.at.segment);
    let Some(view) = view else {
        // The segment was deleted (the cursor sat at its end) or the ledger
        // had no position: search from the segment that holds the offset.
        state.file = None;
        let at = shared.lock().locate(cursor.next_offset);
        if at == cursor.at {
            return Ok(Next::CaughtUp);
        }
        state.cursor.at = at;
        return Ok(Next::Moved);
    };
    if cursor.at.pos >= view.len {
        return Ok(match view.next_base {
            Some(next) if next > cursor.next_offset => Next::Corrupt(format!(
                "records {}..{next} are missing: the segment ends before them and the next one starts after",
                cursor.next_offset
            )),
            Some(next) => {
                state.file = None;
                state.cursor.at = SegmentPos {
                    segment: next,
                    pos: 0,
                };
                Next::Moved
            }
            None if cursor.next_offset < view.queue_next => Next::Corrupt(format!(
                "records {}..{} are missing at the end of the active segment",
                cursor.next_offset, view.queue_next
            )),
            None => Next::CaughtUp,
        });
    }

    let path = shared.segment_path(cursor.at.segment);
    let file = match &mut state.file {
        Some(open) if open.base == cursor.at.segment && open.pos == cursor.at.pos => open,
        slot => {
            let mut file = File::open(&path).context(|| format!("opening {}", path.display()))?;
            file.seek(SeekFrom::Start(cursor.at.pos))
                .context(|| format!("seeking {} to {}", path.display(), cursor.at.pos))?;
            slot.insert(OpenSegment {
                base: cursor.at.segment,
                pos: cursor.at.pos,
                reader: BufReader::with_capacity(READ_BUFFER, file),
            })
        }
    };
    let (record, frame_len) = match read_frame(&mut file.reader, view.len - cursor.at.pos) {
        Ok(Ok(frame)) => frame,
        Ok(Err(detail)) => return Ok(Next::Corrupt(detail)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Ok(Next::Corrupt(format!(
                "the file ends before its recorded length of {} bytes",
                view.len
            )));
        }
        Err(e) => {
            return Err(e)
                .context(|| format!("reading {} at byte {}", path.display(), cursor.at.pos));
        }
    };
    if record.offset > cursor.next_offset {
        return Ok(Next::Corrupt(format!(
            "found offset {} where {} was due",
            record.offset, cursor.next_offset
        )));
    }
    file.pos += frame_len;
    state.cursor.at.pos = file.pos;
    if record.offset < cursor.next_offset {
        // Before the cursor's offset: only when searching from a segment start.
        return Ok(Next::Moved);
    }
    state.cursor.next_offset += 1;
    Ok(Next::Record(record))
}

/// Reads one frame from `reader`, which has `remaining` readable bytes.
/// The inner error describes an invalid frame.
fn read_frame(reader: &mut impl Read, remaining: u64) -> io::Result<Result<(Record, u64), String>> {
    if remaining < HEADER_LEN as u64 {
        return Ok(Err(format!(
            "incomplete frame: {remaining} bytes before the end of the segment"
        )));
    }
    let mut header = [0u8; HEADER_LEN];
    reader.read_exact(&mut header)?;
    let frame_len = match record::decode_header(&header) {
        Header::Valid(h) => h.frame_len(),
        Header::Corrupted(corruption) => return Ok(Err(corruption.to_string())),
        Header::Truncated { needed } => return Ok(Err(format!("truncated header ({needed})"))),
    };
    if frame_len as u64 > remaining {
        return Ok(Err(format!(
            "frame of {frame_len} bytes runs past the end of the segment ({remaining} bytes left)"
        )));
    }
    let mut frame = vec![0u8; frame_len];
    frame[..HEADER_LEN].copy_from_slice(&header);
    reader.read_exact(&mut frame[HEADER_LEN..])?;
    let (offset, enqueued_at_ms, payload_len) = match record::decode(&frame) {
        Decoded::Valid(r) => (r.offset, r.enqueued_at_ms, r.payload.len()),
        Decoded::Corrupted(corruption) => return Ok(Err(corruption.to_string())),
        Decoded::Truncated { needed } => return Ok(Err(format!("truncated frame ({needed})"))),
    };
    let payload = Bytes::from(frame).slice(HEADER_LEN..HEADER_LEN + payload_len);
    let record = Record {
        offset,
        enqueued_at_ms,
        payload,
    };
    Ok(Ok((record, frame_len as u64)))
}

/// A named consumer's view of the queue, from
/// [`Queue::reader`](super::Queue::reader).
///
/// Delivers records in offset order from the consumer's durable offset;
/// [`ack`](Reader::ack) moves that offset. Records delivered but not acked
/// are delivered again after a restart or [`seek_to_committed`](Reader::seek_to_committed)
/// (at-least-once). At most one reader per consumer is open at a time.
pub struct Reader {
    queue: Queue,
    consumer: String,
    cursor: Cursor,
    file: Option<OpenSegment>,
    /// Delivered, unacked offsets with the position after each.
    delivered: VecDeque<(u64, SegmentPos)>,
    halted: Option<CorruptPoint>,
    epoch: u64,
    committed: watch::Receiver<u64>,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("consumer", &self.consumer)
            .field("next_offset", &self.cursor.next_offset)
            .field("unacked", &self.delivered.len())
            .field("halted", &self.halted.is_some())
            .finish()
    }
}

impl Reader {
    pub(crate) fn new(queue: Queue, consumer: String, cursor: Cursor, epoch: u64) -> Reader {
        let committed = queue.shared().committed.subscribe();
        Reader {
            queue,
            consumer,
            cursor,
            file: None,
            delivered: VecDeque::new(),
            halted: None,
            epoch,
            committed,
        }
    }

    /// The consumer's name.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Offset of the next record [`next_batch`](Reader::next_batch) returns.
    pub fn next_offset(&self) -> u64 {
        self.cursor.next_offset
    }

    /// Returns the next records in offset order: up to `max_records`, and
    /// stopping once `max_bytes` of payload are collected (always at least
    /// one record). Waits for new appends when caught up.
    ///
    /// On corrupt data, returns the records before it, then
    /// [`QueueError::Corrupt`] on this and every later call until
    /// [`Queue::repair`](super::Queue::repair) is run for this consumer.
    /// Cancel-safe: a cancelled call delivers nothing.
    pub async fn next_batch(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, QueueError> {
        let max_records = max_records.max(1);
        loop {
            if let Some(point) = &self.halted {
                let epoch = self.consumer_epoch()?;
                if epoch == self.epoch {
                    return Err(self.queue.shared().corrupt_error(point));
                }
                self.epoch = epoch;
                self.halted = None;
            }
            let shared = Arc::clone(self.queue.shared());
            let consumer = self.consumer.clone();
            let mut state = ReadState {
                cursor: self.cursor,
                file: self.file.take(),
            };
            let (state, step) = tokio::task::spawn_blocking(move || {
                let step = read_step(&shared, &consumer, &mut state, max_records, max_bytes);
                (state, step)
            })
            .await
            .map_err(|e| QueueError::Io {
                context: format!("reading for consumer {:?}", self.consumer),
                source: io::Error::other(e),
            })?;
            // On error the cursor stays where it was: nothing was delivered.
            let step = step?;
            self.cursor = state.cursor;
            self.file = state.file;
            let hit_corruption = step.corrupt.is_some();
            if let Some(point) = step.corrupt {
                self.halt(point);
            }
            if !step.records.is_empty() {
                let mut records = Vec::with_capacity(step.records.len());
                for (record, after) in step.records {
                    self.delivered.push_back((record.offset, after));
                    records.push(record);
                }
                return Ok(records);
            }
            if hit_corruption {
                // Halted (the loop returns the error), or repaired meanwhile.
                continue;
            }
            let next = self.cursor.next_offset;
            self.committed
                .wait_for(|committed| *committed > next)
                .await
                .map_err(|_| QueueError::WriterFailed("queue closed".into()))?;
        }
    }

    /// Durably acknowledges every delivered record up to and including
    /// `up_to_inclusive`; they are not delivered again, even after a crash.
    /// Acking an already acknowledged offset is a no-op; acking an offset not
    /// delivered yet is [`QueueError::InvalidAck`].
    ///
    /// Writes and syncs the ledger file (a few milliseconds of blocking I/O):
    /// ack per batch, not per record. Then deletes the segments every
    /// consumer has acknowledged (a failure there is logged, not returned).
    pub fn ack(&mut self, up_to_inclusive: u64) -> Result<(), QueueError> {
        let shared = Arc::clone(self.queue.shared());
        let io_guard = shared.lock_ledgers();
        let mut ledger = self.ledger()?;
        if up_to_inclusive < ledger.next_offset {
            return Ok(());
        }
        let delivered_up_to = self
            .delivered
            .back()
            .is_some_and(|(o, _)| *o >= up_to_inclusive);
        let acked = self
            .delivered
            .iter()
            .take_while(|(offset, _)| *offset <= up_to_inclusive)
            .count();
        let last = acked.checked_sub(1).and_then(|i| self.delivered.get(i));
        let (Some(&(last, after)), true) = (last, delivered_up_to) else {
            return Err(QueueError::InvalidAck {
                consumer: self.consumer.clone(),
                offset: up_to_inclusive,
                committed: ledger.next_offset.checked_sub(1),
            });
        };
        if last >= ledger.next_offset {
            ledger.next_offset = last + 1;
            ledger.position = Some(after);
            ledger.prune_skips();
            ledger::store(&shared.dir, &self.consumer, &ledger)?;
            if let Some(consumer) = shared.lock().consumers.get_mut(&self.consumer) {
                consumer.ledger = ledger;
            }
        }
        self.delivered.drain(..acked);
        drop(io_guard);
        shared.space_freed.notify_waiters();
        // The ack is durable; failing to delete old segments only delays it.
        if let Err(e) = shared.collect_garbage() {
            tracing::warn!(error = %e, "deleting acknowledged segments failed");
        }
        Ok(())
    }

    /// Forgets what was delivered and not acked, and reads again from the
    /// durable acknowledged offset (as after a restart).
    pub fn seek_to_committed(&mut self) -> Result<(), QueueError> {
        let ledger = self.ledger()?;
        self.cursor = Cursor::committed(&ledger, self.queue.shared());
        self.file = None;
        self.delivered.clear();
        self.halted = None;
        Ok(())
    }

    fn ledger(&self) -> Result<Ledger, QueueError> {
        self.queue
            .shared()
            .lock()
            .consumers
            .get(&self.consumer)
            .map(|c| c.ledger.clone())
            .ok_or_else(|| QueueError::UnknownConsumer {
                consumer: self.consumer.clone(),
            })
    }

    fn consumer_epoch(&self) -> Result<u64, QueueError> {
        self.queue
            .shared()
            .lock()
            .consumers
            .get(&self.consumer)
            .map(|c| c.epoch)
            .ok_or_else(|| QueueError::UnknownConsumer {
                consumer: self.consumer.clone(),
            })
    }

    /// Stops at `point` until a repair, unless a repair for it landed
    /// between reading and now.
    fn halt(&mut self, point: CorruptPoint) {
        let shared = Arc::clone(self.queue.shared());
        let mut st = shared.lock();
        let Some(consumer) = st.consumers.get_mut(&self.consumer) else {
            return;
        };
        if consumer.ledger.skip_at(point.at).is_some() {
            return;
        }
        consumer.halted = Some(point.clone());
        self.epoch = consumer.epoch;
        drop(st);
        let error = shared.corrupt_error(&point);
        tracing::error!(consumer = %self.consumer, %error, "consumer halted on corrupt queue data; run repair");
        self.halted = Some(point);
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(consumer) = self.queue.shared().lock().consumers.get_mut(&self.consumer) {
            consumer.reader_open = false;
        }
    }
}
