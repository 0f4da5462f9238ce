//! Tests of the queue against the real filesystem (in temp directories).
//!
//! - `basic`: append/read/ack, rollover, concurrency, reopen, deletion.
//! - `recovery`: torn tails and mid-log corruption at open; `kill -9`.
//! - `corruption`: halting on corrupt data and exact repair reports.
//! - `limits`: size and age limits under both overflow policies.
//! - `model`: random operation sequences against an in-memory reference.

mod basic;
mod corruption;
mod kill9;
mod limits;
mod model;
mod recovery;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use super::record::{self, Decoded};
use super::{Queue, QueueConfig, QueueError, Reader, Record, segment};

/// A config with small segments so tests roll over often.
fn config(segment_max_bytes: u64) -> QueueConfig {
    QueueConfig {
        segment_max_bytes,
        ..QueueConfig::default()
    }
}

/// The payload for record `i`: recognisable, of varying length.
fn payload(i: u64) -> Bytes {
    let filler = "x".repeat((i * 7 % 61) as usize);
    Bytes::from(format!("record-{i}-{filler}"))
}

/// Appends records `payload(0)..payload(n)` one append each.
async fn append_n(queue: &Queue, n: u64) {
    for i in 0..n {
        let range = queue.append(vec![payload(i)]).await.unwrap();
        assert_eq!(range, i..i + 1);
    }
}

/// Reads exactly `n` records (failing after 10 s).
async fn read_n(reader: &mut Reader, n: usize) -> Vec<Record> {
    let mut out = Vec::new();
    while out.len() < n {
        let batch = tokio::time::timeout(
            Duration::from_secs(10),
            reader.next_batch(n - out.len(), usize::MAX),
        )
        .await
        .expect("timed out waiting for records")
        .unwrap();
        out.extend(batch);
    }
    out
}

/// Asserts that nothing is readable within a short wait.
async fn assert_nothing_to_read(reader: &mut Reader) {
    let res =
        tokio::time::timeout(Duration::from_millis(50), reader.next_batch(10, usize::MAX)).await;
    assert!(res.is_err(), "expected no records, got {res:?}");
}

/// Segment files in `dir` by base offset.
fn segment_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    segment::list(dir).unwrap().into_iter().collect()
}

/// A valid frame found in a segment file.
#[derive(Debug, Clone, Copy)]
struct Frame {
    pos: usize,
    offset: u64,
    len: usize,
}

/// The valid frames at the start of `path`, in order.
fn frames(path: &Path) -> Vec<Frame> {
    let data = fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while let Decoded::Valid(r) = record::decode(&data[pos..]) {
        out.push(Frame {
            pos,
            offset: r.offset,
            len: r.frame_len(),
        });
        pos += r.frame_len();
    }
    out
}

/// Applies `edit` to the bytes of `path`.
fn edit_file(path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut data = fs::read(path).unwrap();
    edit(&mut data);
    fs::write(path, data).unwrap();
}

/// Asserts `err` is `Corrupt` at `position` of segment `base`, expecting `offset`.
#[track_caller]
fn assert_corrupt_at(err: &QueueError, base: u64, position: usize, offset: u64) {
    match err {
        QueueError::Corrupt {
            segment,
            position: p,
            offset_expected,
            ..
        } => {
            assert_eq!(
                segment.file_name().unwrap().to_str().unwrap(),
                segment::file_name(base)
            );
            assert_eq!((*p, *offset_expected), (position as u64, offset), "{err}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// A tiny deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn queue_is_send_and_sync_and_reader_is_send() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Queue>();
    send::<Reader>();
}
