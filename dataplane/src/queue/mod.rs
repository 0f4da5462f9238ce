//! # The durable local queue
//!
//! The gateway appends every write the primary accepted to this queue and
//! answers the client only once the append is durable; the replayer consumes
//! the queue and applies the records to the backup. One queue per directory,
//! one directory per replication task. Payloads are opaque [`Bytes`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), tandem_gateway::queue::QueueError> {
//! use tandem_gateway::queue::{Queue, QueueConfig};
//! let queue = Queue::open("/var/lib/tandem/task-1", QueueConfig::default())?;
//! let offsets = queue.append(vec!["op 1".into(), "op 2".into()]).await?; // durable now
//! let mut reader = queue.reader("replayer")?;
//! let batch = reader.next_batch(1000, 8 << 20).await?; // waits when caught up
//! // ... apply to the backup (idempotently) ...
//! reader.ack(batch.last().unwrap().offset)?;
//! # let _ = offsets; Ok(()) }
//! ```
//!
//! ## Guarantees and constraints
//!
//! - An acknowledged append (the `append` future resolved `Ok`) survives
//!   `kill -9` and power loss: it is written and `fdatasync`ed first.
//! - Offsets start at 0, increase by one per record, and are never reused
//!   for an acknowledged record. The records of one `append` call are
//!   contiguous.
//! - Delivery is in offset order and at-least-once: a consumer sees again,
//!   after a restart, what it read but had not acknowledged.
//! - Corrupt data is never skipped silently. A torn tail (the write a crash
//!   interrupted, never acknowledged) is cut at start-up; anything else
//!   halts the consumer with [`QueueError::Corrupt`] until an operator runs
//!   [`Queue::repair`], which reports exactly which offsets are lost.
//! - Nothing is dropped to make room: when a limit is reached, appends are
//!   refused ([`QueueError::Full`], [`QueueError::TooOld`]) or wait.
//! - Little-endian on disk; one process per directory (`flock` on `LOCK`).
//!
//! ## On-disk layout
//!
//! ```text
//! <dir>/LOCK                              advisory lock, empty
//! <dir>/00000000000000000000.seg          segment: frames, back to back
//! <dir>/00000000000000052113.seg          named by its first record's offset
//! <dir>/replayer.consumer                 ledger of consumer "replayer" (JSON)
//! ```
//!
//! A **segment** holds frames and nothing else. The writer rolls over to a
//! new segment (named by the next offset) before an append that would take
//! the active one past `segment_max_bytes`; one append never spans two
//! segments, so a segment only exceeds the size when a single append does.
//!
//! A **frame** (see [`record`]):
//!
//! ```text
//! magic u32 "TQR1" | payload_len u32 | offset u64 | enqueued_at_ms u64 | payload | crc32c u32
//! ```
//!
//! with the CRC32C covering everything before it. 28 bytes of overhead.
//!
//! A **ledger** (`<consumer>.consumer`) holds the consumer's next offset
//! (everything below is acknowledged), the byte position of that record, and
//! the corrupt regions repairs told it to skip. It is replaced atomically:
//! temp file, fsync, rename, fsync of the directory.
//!
//! ## Writing
//!
//! [`Queue::append`] checks the limits, then hands the payloads to the
//! writer thread over a channel and awaits its answer. The writer takes
//! everything queued (up to `max_batch_bytes`, lingering up to half a
//! commit for as many appends as the last batch had): this is group commit. It
//! assigns offsets, encodes the frames, writes them with one `write`, calls
//! `fdatasync` once, publishes the new end to readers, and then resolves
//! every caller's future with its offsets. On rollover it syncs the old
//! segment, creates the new one and syncs the directory before writing to it.
//! If a write or sync fails, the callers of that batch get the error and the
//! segment is cut back to its durable length; if even that fails, the writer
//! refuses further appends ([`QueueError::WriterFailed`]) until reopened.
//!
//! ## Reading and acknowledging
//!
//! [`Queue::reader`] opens the named consumer (created at the oldest
//! retained record on first use) at its durable offset. [`Reader::next_batch`]
//! reads frames on a blocking thread, only up to the durable end the writer
//! published (never a half-written frame), and waits on a watch channel when
//! caught up. [`Reader::ack`] rewrites the ledger with the new offset and the
//! byte position after the acknowledged record, so a restart seeks directly
//! there.
//!
//! A segment is deleted once every consumer acknowledged all its records
//! (the next segment's base) and it is not the active segment. With no
//! consumer, nothing is deleted.
//!
//! ## Recovery
//!
//! [`Queue::open`] locks the directory and scans the **last** segment frame
//! by frame (earlier ones were synced before rollover and are checked by the
//! readers as they go). At an invalid frame, it searches forward for the
//! next plausible frame: valid magic, length and CRC, an offset at least the
//! expected one, and no more skipped records than the skipped bytes could
//! hold (28 bytes each).
//!
//! - Nothing plausible after it: a **torn tail**, from a write the crash
//!   interrupted before it was acknowledged. The file is truncated to the
//!   last valid frame (logged with the bytes dropped) and appends continue
//!   from there.
//! - Valid frames after it: **mid-log corruption**. Truncating would lose
//!   acknowledged records, so the segment is kept as is, new appends go to a
//!   new segment, and consumers report the region when they reach it.
//!
//! A power loss can leave unsynced pages of the last batch in any order; if
//! one is lost and a later one survives, that looks like mid-log corruption
//! and needs a repair (of records no client was told were stored).
//!
//! ## Corruption and repair
//!
//! A reader that meets an invalid frame, a frame running past the end of
//! its segment, or an offset gap (also across segments) returns the records
//! before it, then [`QueueError::Corrupt`] (segment, byte position, expected
//! offset) on every call: the consumer is halted. [`Queue::repair`] measures
//! the region from that position to the next plausible frame (or to the next
//! segment's first offset, or the writer's next offset, when the corruption
//! runs to the end of the segment). Offsets are contiguous, so the
//! [`RepairReport`] states exactly which offsets are lost. The skip is
//! recorded in the ledger, and the reader continues after it.
//! [`Queue::repair_dry_run`] reports without changing anything.
//!
//! ## Limits
//!
//! - `max_bytes` bounds the on-disk size of all segments, counting appends
//!   admitted but not yet written. Space comes back a whole segment at a time,
//!   when every consumer has acknowledged it, so `max_bytes` must be at least
//!   two segments.
//! - `max_age` bounds the age of the oldest record some consumer has not
//!   acknowledged (also in [`QueueStats::oldest_unacked_age`]); with no
//!   consumer at all, of the oldest record.
//!
//! When either is exceeded, [`OverflowPolicy`] decides: `Reject` fails the
//! append at once with [`QueueError::Full`] or [`QueueError::TooOld`] (the
//! gateway answers 507), `Block { max_wait }` waits for consumers to free
//! space or catch up, for at most `max_wait`, then fails the same way. An
//! append larger than `max_bytes` fails at once. Records are never dropped.
//!
//! The gateway cannot refuse to record a write the primary already applied,
//! so it works in two phases: [`Queue::ensure_capacity`] applies the policy
//! before the write is forwarded, and [`Queue::append_accepted`] records
//! what the primary accepted without checking the limits again. The queue
//! can then exceed `max_bytes` by the writes in flight at that moment.
//!
//! Ages come from a sparse in-memory index (about one entry per second of
//! enqueue time, plus each segment's first record and each consumer's next
//! record at open), so they may be overstated by up to a second, and by more
//! for old segments no reader has passed since the process started.
//!
//! ## Code map
//!
//! - [`record`]: frame encoding and the (fuzzed) decoder.
//! - `segment`: segment names, listing, frame walking and resync.
//! - `ledger`: consumer ledger files, written atomically.
//! - `writer`: the group-commit writer thread.
//! - `reader`: [`Reader`] and the frame-reading step shared with repair.
//! - `recovery`: locking and recovering a directory at open.
//! - `repair`: measuring and skipping corrupt regions.
//! - `shared`: bookkeeping shared by all of the above, and the time index.
//! - `tests/`: filesystem tests, a `kill -9` test and a model-based test.

mod error;
mod ledger;
mod peek;
mod reader;
pub mod record;
mod recovery;
mod repair;
mod segment;
mod shared;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, oneshot, watch};

pub use error::QueueError;
pub use reader::Reader;
pub use repair::RepairReport;

use reader::Cursor;
use shared::{Consumer, Shared, now_ms};
use writer::{AppendRequest, WriterHandle};

/// What to do when an append would exceed `max_bytes` or `max_age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Fail at once with [`QueueError::Full`] / [`QueueError::TooOld`].
    Reject,
    /// Wait for consumers to free space, at most `max_wait`, then fail as
    /// `Reject` does.
    Block {
        /// Longest wait for space.
        max_wait: Duration,
    },
}

/// Queue settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Roll over to a new segment before the active one would exceed this
    /// size. Default 64 MiB.
    pub segment_max_bytes: u64,
    /// Limit on the total size of the segments; at least two segments.
    /// Default: none.
    pub max_bytes: Option<u64>,
    /// Limit on the age of the oldest unacknowledged record. Default: none.
    pub max_age: Option<Duration>,
    /// What to do when a limit is reached. Default [`OverflowPolicy::Reject`].
    pub overflow: OverflowPolicy,
    /// Largest payload accepted. Default 64 MiB, at most 1 GiB.
    pub max_record_bytes: u32,
    /// The writer stops adding appends to a group commit past this many
    /// bytes. Default 8 MiB.
    pub max_batch_bytes: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            segment_max_bytes: 64 << 20,
            max_bytes: None,
            max_age: None,
            overflow: OverflowPolicy::Reject,
            max_record_bytes: 64 << 20,
            max_batch_bytes: 8 << 20,
        }
    }
}

impl QueueConfig {
    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<(), QueueError> {
        let fail = |msg: String| Err(QueueError::Config(msg));
        if self.segment_max_bytes == 0 {
            return fail("segment_max_bytes must be positive".into());
        }
        if self.max_record_bytes == 0 || self.max_record_bytes > record::MAX_PAYLOAD_LEN {
            return fail(format!(
                "max_record_bytes must be between 1 and {}",
                record::MAX_PAYLOAD_LEN
            ));
        }
        if self.max_batch_bytes == 0 {
            return fail("max_batch_bytes must be positive".into());
        }
        if let Some(max) = self.max_bytes
            && max < 2 * self.segment_max_bytes
        {
            return fail(format!(
                "max_bytes ({max}) must be at least twice segment_max_bytes ({})",
                self.segment_max_bytes
            ));
        }
        if self.max_age == Some(Duration::ZERO) {
            return fail("max_age must be positive".into());
        }
        Ok(())
    }
}

/// A record as delivered to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its offset.
    pub offset: u64,
    /// When it was appended, unix milliseconds.
    pub enqueued_at_ms: u64,
    /// The payload given to [`Queue::append`].
    pub payload: Bytes,
}

/// A snapshot of the queue's depth and consumers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// Records not acknowledged by the slowest consumer.
    pub records: u64,
    /// Bytes of all segments on disk.
    pub bytes: u64,
    /// Age of the oldest record not acknowledged by every consumer.
    pub oldest_unacked_age: Option<Duration>,
    /// Offset of the oldest record on disk.
    pub first_offset: u64,
    /// Offset the next record gets.
    pub next_offset: u64,
    /// Number of segment files.
    pub segments: usize,
    /// One entry per consumer, by name.
    pub consumers: Vec<ConsumerStats>,
}

/// One consumer's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerStats {
    /// The consumer's name.
    pub name: String,
    /// Highest acknowledged offset (every offset up to it is done).
    pub acked_offset: Option<u64>,
    /// Records appended and not acknowledged.
    pub lag_records: u64,
    /// Age of its oldest unacknowledged record (zero when caught up).
    pub lag: Duration,
    /// Set while its reader is halted on corrupt data.
    pub halted: Option<String>,
    /// Records lost to repairs over its life.
    pub records_lost: u64,
}

/// A durable, append-only, multi-consumer queue in one directory. Cheap to
/// clone; the writer thread and the directory lock live until the last
/// clone and the last [`Reader`] are dropped.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    // Dropped in this order: the writer drains and joins, then the lock goes.
    writer: WriterHandle,
    _lock: std::fs::File,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("dir", &self.inner.shared.dir)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// Opens (creating if needed) the queue in `dir` and recovers it: cuts a
    /// torn tail, loads consumers, deletes fully acknowledged segments and
    /// starts the writer thread. Blocking I/O.
    pub fn open(dir: impl AsRef<Path>, config: QueueConfig) -> Result<Queue, QueueError> {
        config.validate()?;
        let dir = dir.as_ref().to_owned();
        std::fs::create_dir_all(&dir).map_err(|source| QueueError::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            segment::sync_dir(parent)?;
        }
        let lock = recovery::lock_dir(&dir)?;
        let recovered = recovery::recover(&dir)?;
        let (base, next_offset) = (recovered.state.active, recovered.state.next_offset);
        let (committed, _) = watch::channel(next_offset);
        let shared = Arc::new(Shared {
            dir,
            config,
            state: Mutex::new(recovered.state),
            committed,
            space_freed: Notify::new(),
            ledger_io: Mutex::new(()),
        });
        shared.collect_garbage()?;
        let writer = WriterHandle::spawn(
            Arc::clone(&shared),
            recovered.active_file,
            base,
            recovered.active_len,
            next_offset,
        )?;
        Ok(Queue {
            inner: Arc::new(Inner {
                shared,
                writer,
                _lock: lock,
            }),
        })
    }

    /// The queue directory.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// The configuration the queue was opened with.
    pub fn config(&self) -> &QueueConfig {
        &self.inner.shared.config
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Appends `payloads` as consecutive records and returns their offsets
    /// once they are durable (written and `fdatasync`ed, batched with
    /// concurrent appends). An empty `payloads` returns an empty range.
    ///
    /// Fails with [`QueueError::Full`] / [`QueueError::TooOld`] under the
    /// configured [`OverflowPolicy`], [`QueueError::RecordTooLarge`], or an
    /// I/O error, in which case none of the payloads was stored. If the
    /// future is dropped after the payloads were handed to the writer, they
    /// are still written.
    pub async fn append(&self, payloads: Vec<Bytes>) -> Result<Range<u64>, QueueError> {
        self.append_checked(payloads, true).await
    }

    /// Appends records describing something that already happened and must
    /// not be refused for capacity (writes the primary accepted): like
    /// [`Queue::append`] but without the size and age limits, which the
    /// caller checked beforehand with [`Queue::ensure_capacity`]. The queue
    /// may exceed `max_bytes` by what was admitted concurrently.
    pub async fn append_accepted(&self, payloads: Vec<Bytes>) -> Result<Range<u64>, QueueError> {
        self.append_checked(payloads, false).await
    }

    /// Waits (under [`OverflowPolicy::Block`]) or fails (with `Reject`)
    /// until `bytes` more fit the size and age limits, reserving nothing.
    ///
    /// For two-phase writers: check capacity before causing an effect
    /// elsewhere (forwarding to the primary), then record the effect with
    /// [`Queue::append_accepted`], which cannot fail for capacity.
    pub async fn ensure_capacity(&self, bytes: u64) -> Result<(), QueueError> {
        self.admit(bytes, false).await
    }

    async fn append_checked(
        &self,
        payloads: Vec<Bytes>,
        limits: bool,
    ) -> Result<Range<u64>, QueueError> {
        let shared = self.shared();
        let max = shared.config.max_record_bytes;
        if let Some(p) = payloads.iter().find(|p| p.len() > max as usize) {
            return Err(QueueError::RecordTooLarge { len: p.len(), max });
        }
        if payloads.is_empty() {
            let next = shared.lock().next_offset;
            return Ok(next..next);
        }
        let encoded_len: u64 = payloads
            .iter()
            .map(|p| record::frame_len(p.len()) as u64)
            .sum();
        if limits {
            self.admit(encoded_len, true).await?;
        } else {
            shared.force_admit(encoded_len)?;
        }
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest {
            payloads,
            enqueued_at_ms: now_ms(),
            encoded_len,
            reply,
        };
        if self.inner.writer.send(request).is_err() {
            let mut st = shared.lock();
            st.pending_bytes = st.pending_bytes.saturating_sub(encoded_len);
            return Err(QueueError::WriterFailed("the writer thread is gone".into()));
        }
        answer.await.unwrap_or_else(|_| {
            Err(QueueError::WriterFailed(
                "the writer thread exited before answering".into(),
            ))
        })
    }

    /// Checks `bytes` against the limits, waiting under
    /// [`OverflowPolicy::Block`]; with `reserve`, reserves them.
    async fn admit(&self, bytes: u64, reserve: bool) -> Result<(), QueueError> {
        let shared = self.shared();
        if let Some(limit) = shared.config.max_bytes.filter(|limit| bytes > *limit) {
            return Err(QueueError::Full { bytes, limit });
        }
        let deadline = match shared.config.overflow {
            OverflowPolicy::Reject => None,
            OverflowPolicy::Block { max_wait } => Some(tokio::time::Instant::now() + max_wait),
        };
        loop {
            let freed = shared.space_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let err = match shared.try_admit(bytes, now_ms(), reserve) {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            let Some(deadline) = deadline.filter(|_| err.is_capacity()) else {
                return Err(err);
            };
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(err);
            }
        }
    }

    /// Opens the reader of `consumer`, creating the consumer at the oldest
    /// retained record if it is new. Reading starts at its acknowledged
    /// offset. Names are 1-64 characters of `[A-Za-z0-9_-]`.
    pub fn reader(&self, consumer: &str) -> Result<Reader, QueueError> {
        validate_consumer_name(consumer)?;
        let shared = self.shared();
        let _io = shared.lock_ledgers();
        let (ledger, epoch, created) = {
            let mut st = shared.lock();
            let first = st.first_offset();
            let at = st.locate(first);
            match st.consumers.get_mut(consumer) {
                Some(c) if c.reader_open => {
                    return Err(QueueError::ReaderBusy {
                        consumer: consumer.to_owned(),
                    });
                }
                Some(c) => {
                    c.reader_open = true;
                    (c.ledger.clone(), c.epoch, false)
                }
                None => {
                    // Registered before its file is written so that no
                    // segment it needs is deleted meanwhile.
                    let ledger = ledger::Ledger::new(first, at);
                    let c = Consumer {
                        ledger: ledger.clone(),
                        epoch: 0,
                        reader_open: true,
                        halted: None,
                    };
                    st.consumers.insert(consumer.to_owned(), c);
                    (ledger, 0, true)
                }
            }
        };
        if created && let Err(e) = ledger::store(&shared.dir, consumer, &ledger) {
            shared.lock().consumers.remove(consumer);
            return Err(e);
        }
        let cursor = Cursor::committed(&ledger, shared);
        Ok(Reader::new(
            self.clone(),
            consumer.to_owned(),
            cursor,
            epoch,
        ))
    }

    /// Unblocks a consumer halted on corrupt data: measures the corrupt
    /// region, records it as lost in the consumer's ledger, and lets its
    /// reader continue with the next valid record. Blocking I/O.
    ///
    /// Without a halted reader, reads ahead from the consumer's acknowledged
    /// offset to find the corruption; [`QueueError::NothingToRepair`] if
    /// there is none.
    pub fn repair(&self, consumer: &str) -> Result<RepairReport, QueueError> {
        repair::repair(self.shared(), consumer, false)
    }

    /// What [`Queue::repair`] would report, changing nothing.
    pub fn repair_dry_run(&self, consumer: &str) -> Result<RepairReport, QueueError> {
        repair::repair(self.shared(), consumer, true)
    }

    /// Deletes a consumer (no reader may be open), so it no longer holds
    /// segments back.
    pub fn remove_consumer(&self, consumer: &str) -> Result<(), QueueError> {
        let shared = self.shared();
        let _io = shared.lock_ledgers();
        match shared.lock().consumers.get(consumer) {
            None => {
                return Err(QueueError::UnknownConsumer {
                    consumer: consumer.to_owned(),
                });
            }
            Some(c) if c.reader_open => {
                return Err(QueueError::ReaderBusy {
                    consumer: consumer.to_owned(),
                });
            }
            Some(_) => {}
        }
        ledger::remove(&shared.dir, consumer)?;
        shared.lock().consumers.remove(consumer);
        shared.space_freed.notify_waiters();
        shared.collect_garbage()
    }

    /// Depth, age and per-consumer lag.
    pub fn stats(&self) -> QueueStats {
        let now = now_ms();
        let st = self.shared().lock();
        let consumers = st
            .consumers
            .iter()
            .map(|(name, c)| {
                let next = c.ledger.next_offset;
                ConsumerStats {
                    name: name.clone(),
                    acked_offset: next.checked_sub(1),
                    lag_records: st.next_offset.saturating_sub(next),
                    lag: st.age_of(next, now).unwrap_or_default(),
                    halted: c
                        .halted
                        .as_ref()
                        .map(|p| self.shared().corrupt_error(p).to_string()),
                    records_lost: c.ledger.records_lost,
                }
            })
            .collect();
        QueueStats {
            records: st.next_offset.saturating_sub(st.min_committed()),
            bytes: st.disk_bytes,
            oldest_unacked_age: st.oldest_unacked_age(now),
            first_offset: st.first_offset(),
            next_offset: st.next_offset,
            segments: st.segments.len(),
            consumers,
        }
    }
}

fn validate_consumer_name(name: &str) -> Result<(), QueueError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(QueueError::InvalidConsumerName {
            name: name.to_owned(),
        })
    }
}
