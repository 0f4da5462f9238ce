//! The writer thread: group commit of appends.
//!
//! `append` sends its payloads over a channel; this thread takes everything
//! waiting (up to `max_batch_bytes`), encodes it, writes it with one
//! `write`, makes it durable with one `fdatasync`, publishes the new end and
//! only then answers the callers. While it syncs, new appends queue up and
//! form the next batch, so the number of syncs per second stays bounded by
//! the disk's sync latency, not by the number of callers.
//!
//! Callers answered by one commit come back one at a time, so the next batch
//! would often start with a single request. When the previous batch had
//! several, the writer lingers for as many, at most half the previous
//! commit's duration (capped at 1 ms); a lone appender never waits.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::error::{IoContext, QueueError};
use super::record;
use super::segment::sync_dir;
use super::shared::Shared;

/// Longest the writer waits to grow a batch.
const MAX_LINGER: Duration = Duration::from_millis(1);

/// One `append` call waiting for the writer.
pub(crate) struct AppendRequest {
    /// The payloads, written contiguously.
    pub payloads: Vec<Bytes>,
    /// Enqueue time stamped on every record.
    pub enqueued_at_ms: u64,
    /// Encoded size, as admitted against `max_bytes`.
    pub encoded_len: u64,
    /// Where the offsets (or the error) go once durable.
    pub reply: oneshot::Sender<Result<Range<u64>, QueueError>>,
}

/// Owns the writer thread; dropping it drains the channel and joins.
pub(crate) struct WriterHandle {
    tx: Option<mpsc::Sender<AppendRequest>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl WriterHandle {
    /// Starts the writer on `file`, the active segment (base `base`, durable
    /// length `len`), assigning offsets from `next_offset`.
    pub fn spawn(
        shared: Arc<Shared>,
        file: File,
        base: u64,
        len: u64,
        next_offset: u64,
    ) -> Result<WriterHandle, QueueError> {
        let (tx, rx) = mpsc::channel();
        let dir = shared.dir.clone();
        let writer = Writer {
            shared,
            file,
            base,
            len,
            next_offset,
            buf: Vec::new(),
        };
        let thread = thread::Builder::new()
            .name("tandem-queue-writer".into())
            .spawn(move || writer.run(rx))
            .context(|| format!("starting the writer thread for {}", dir.display()))?;
        Ok(WriterHandle {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Hands a request to the writer; gives it back if the writer is gone.
    pub fn send(&self, request: AppendRequest) -> Result<(), AppendRequest> {
        match &self.tx {
            Some(tx) => tx.send(request).map_err(|e| e.0),
            None => Err(request),
        }
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            // The thread only ends by draining the channel; a panic there has
            // already been reported by the panic hook.
            let _ = thread.join();
        }
    }
}

struct Writer {
    shared: Arc<Shared>,
    /// The active segment, opened for appending.
    file: File,
    /// Its base offset.
    base: u64,
    /// Its durable length.
    len: u64,
    /// Next offset to assign; everything below is durable.
    next_offset: u64,
    /// Frames encoded but not yet written.
    buf: Vec<u8>,
}

/// Requests encoded into `Writer::buf`, with their offsets.
type Chunk = Vec<(AppendRequest, Range<u64>)>;

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<AppendRequest>) {
        let max_batch = self.shared.config.max_batch_bytes;
        let mut last_batch_len = 1;
        let mut last_commit = Duration::ZERO;
        while let Ok(first) = rx.recv() {
            // Appenders answered by the last commit come back one by one; if
            // that batch had several, wait a little (at most half a commit)
            // for as many, rather than syncing for the first one alone.
            let linger_until = Instant::now() + (last_commit / 2).min(MAX_LINGER);
            let mut bytes = first.encoded_len;
            let mut batch = vec![first];
            while bytes < max_batch {
                let next = match rx.try_recv() {
                    Ok(next) => next,
                    Err(mpsc::TryRecvError::Empty) if batch.len() < last_batch_len => {
                        match rx
                            .recv_timeout(linger_until.saturating_duration_since(Instant::now()))
                        {
                            Ok(next) => next,
                            Err(_) => break,
                        }
                    }
                    Err(_) => break,
                };
                bytes += next.encoded_len;
                batch.push(next);
            }
            last_batch_len = batch.len();
            let started = Instant::now();
            self.write_batch(batch);
            last_commit = started.elapsed();
        }
    }

    fn write_batch(&mut self, batch: Vec<AppendRequest>) {
        let mut chunk: Chunk = Vec::new();
        for request in batch {
            // Roll over between requests only, so one append never spans a
            // failed and a successful write.
            let used = self.len + self.buf.len() as u64;
            let roll =
                used > 0 && used + request.encoded_len > self.shared.config.segment_max_bytes;
            if roll {
                self.commit(&mut chunk);
            }
            if let Some(reason) = self.shared.lock().writer_failed.clone() {
                self.finish(request, Err(QueueError::WriterFailed(reason)));
                continue;
            }
            if roll && let Err(e) = self.roll() {
                self.finish(request, Err(e));
                continue;
            }
            let start = chunk.last().map_or(self.next_offset, |(_, r)| r.end);
            let mark = self.buf.len();
            let mut end = start;
            let encoded = request.payloads.iter().try_for_each(|payload| {
                record::encode(end, request.enqueued_at_ms, payload, &mut self.buf)?;
                end += 1;
                Ok(())
            });
            match encoded {
                Ok(()) => chunk.push((request, start..end)),
                Err(record::PayloadTooLarge { len }) => {
                    self.buf.truncate(mark);
                    let max = self.shared.config.max_record_bytes;
                    self.finish(request, Err(QueueError::RecordTooLarge { len, max }));
                }
            }
        }
        self.commit(&mut chunk);
    }

    /// Writes and syncs the encoded chunk, publishes it and answers its
    /// callers. On failure, cuts the segment back to its durable length.
    fn commit(&mut self, chunk: &mut Chunk) {
        if chunk.is_empty() {
            return;
        }
        let written = self.buf.len() as u64;
        let result = self
            .file
            .write_all(&self.buf)
            .and_then(|()| self.file.sync_data());
        self.buf.clear();
        match result {
            Ok(()) => {
                self.len += written;
                self.next_offset = chunk.last().map_or(self.next_offset, |(_, r)| r.end);
                self.publish(chunk, written);
                for (request, range) in chunk.drain(..) {
                    let _ = request.reply.send(Ok(range));
                }
            }
            Err(e) => {
                let path = self.shared.segment_path(self.base);
                tracing::error!(segment = %path.display(), error = %e, "queue write failed; rolling back the batch");
                self.roll_back();
                for (request, _) in chunk.drain(..) {
                    let error = Err(io::Error::new(e.kind(), e.to_string()))
                        .context(|| format!("appending to {}", path.display()));
                    self.finish(request, error);
                }
            }
        }
    }

    /// Truncates the active segment to its durable length after a failed
    /// write or sync, so a partial batch never precedes later records. If even
    /// that fails, the writer refuses further appends.
    fn roll_back(&mut self) {
        let restored = self
            .file
            .set_len(self.len)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = restored {
            let path = self.shared.segment_path(self.base);
            let reason = format!(
                "cannot truncate {} back to {} bytes after a failed write: {e}",
                path.display(),
                self.len
            );
            tracing::error!("{reason}; refusing further appends until the queue is reopened");
            self.shared.lock().writer_failed = Some(reason);
        }
    }

    fn publish(&self, chunk: &Chunk, written: u64) {
        {
            let mut st = self.shared.lock();
            st.segments.insert(self.base, self.len);
            st.disk_bytes += written;
            st.pending_bytes = st.pending_bytes.saturating_sub(written);
            st.next_offset = self.next_offset;
            for (request, range) in chunk {
                st.times.note(range.start, request.enqueued_at_ms);
            }
        }
        self.shared.committed.send_replace(self.next_offset);
    }

    /// Answers a request that was not written, releasing its reservation.
    fn finish(&self, request: AppendRequest, result: Result<Range<u64>, QueueError>) {
        {
            let mut st = self.shared.lock();
            st.pending_bytes = st.pending_bytes.saturating_sub(request.encoded_len);
        }
        self.shared.space_freed.notify_waiters();
        let _ = request.reply.send(result);
    }

    /// Starts a new segment named after the next offset. The previous one is
    /// already synced (by `commit`); the directory is synced so the new file
    /// survives a crash before any record is acknowledged from it.
    fn roll(&mut self) -> Result<(), QueueError> {
        let base = self.next_offset;
        let path = self.shared.segment_path(base);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .context(|| format!("creating segment {}", path.display()))?;
        sync_dir(&self.shared.dir)?;
        {
            let mut st = self.shared.lock();
            st.segments.insert(base, 0);
            st.active = base;
        }
        tracing::debug!(segment = %path.display(), "rolled over to a new segment");
        self.file = file;
        self.base = base;
        self.len = 0;
        // The old segment may already be acknowledged by everyone.
        if let Err(e) = self.shared.collect_garbage() {
            tracing::warn!(error = %e, "deleting acknowledged segments failed");
        }
        Ok(())
    }
}
