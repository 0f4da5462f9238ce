//! The queue's error type.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong with a [`Queue`](super::Queue) or a
/// [`Reader`](super::Reader). Variants carry the path and offset they
/// concern.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A filesystem operation failed.
    #[error("queue I/O error: {context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The size limit is reached (the gateway answers 507).
    #[error("queue is full: {bytes} bytes on disk or being written, limit {limit}")]
    Full {
        /// Bytes on disk plus bytes admitted but not yet written.
        bytes: u64,
        /// The configured `max_bytes`.
        limit: u64,
    },

    /// The oldest unacknowledged record is older than `max_age` (the gateway
    /// answers 507, as for [`QueueError::Full`]).
    #[error("queue is full: oldest unacknowledged record is {age:?} old, limit {limit:?}")]
    TooOld {
        /// Age of the oldest record not acknowledged by every consumer.
        age: Duration,
        /// The configured `max_age`.
        limit: Duration,
    },

    /// A payload exceeds `max_record_bytes`.
    #[error("record of {len} bytes exceeds max_record_bytes ({max})")]
    RecordTooLarge {
        /// The payload length.
        len: usize,
        /// The configured limit.
        max: u32,
    },

    /// A record cannot be read. The consumer is halted until
    /// [`Queue::repair`](super::Queue::repair) is called.
    #[error(
        "corrupt queue data in {} at byte {position} (expected offset {offset_expected}): {detail}",
        segment.display()
    )]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Byte position of the bad frame in the segment file.
        position: u64,
        /// Offset the consumer expected to read there.
        offset_expected: u64,
        /// What is wrong.
        detail: String,
    },

    /// [`Queue::repair`](super::Queue::repair) found no corruption ahead of
    /// the consumer.
    #[error("nothing to repair: consumer {consumer:?} reads cleanly to the end of the queue")]
    NothingToRepair {
        /// The consumer.
        consumer: String,
    },

    /// Another process holds the queue directory.
    #[error("queue directory {} is locked by another process", dir.display())]
    Locked {
        /// The queue directory.
        dir: PathBuf,
    },

    /// Consumer names are 1–64 characters of `[A-Za-z0-9_-]`.
    #[error("invalid consumer name {name:?}: use 1-64 characters of [A-Za-z0-9_-]")]
    InvalidConsumerName {
        /// The rejected name.
        name: String,
    },

    /// A [`Reader`](super::Reader) for this consumer is already open.
    #[error("consumer {consumer:?} already has an open reader")]
    ReaderBusy {
        /// The consumer.
        consumer: String,
    },

    /// No such consumer.
    #[error("unknown consumer {consumer:?}")]
    UnknownConsumer {
        /// The consumer.
        consumer: String,
    },

    /// [`Reader::ack`](super::Reader::ack) of an offset this reader has not
    /// delivered.
    #[error(
        "consumer {consumer:?} cannot ack offset {offset}: not delivered yet (committed up to {committed:?})"
    )]
    InvalidAck {
        /// The consumer.
        consumer: String,
        /// The offset passed to `ack`.
        offset: u64,
        /// The consumer's durable acknowledged offset.
        committed: Option<u64>,
    },

    /// A consumer ledger file cannot be parsed.
    #[error("corrupt consumer ledger {}: {detail}", path.display())]
    Ledger {
        /// The ledger file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// The writer could not restore a consistent segment after an I/O error
    /// and refuses further appends; reopen the queue.
    #[error("queue writer stopped: {0}")]
    WriterFailed(String),

    /// The configuration is unusable; the message names the field.
    #[error("invalid queue configuration: {0}")]
    Config(String),
}

impl QueueError {
    /// True for the capacity errors ([`QueueError::Full`],
    /// [`QueueError::TooOld`]) that the gateway maps to HTTP 507.
    pub fn is_capacity(&self) -> bool {
        matches!(self, QueueError::Full { .. } | QueueError::TooOld { .. })
    }
}

/// Attaches context to I/O results.
pub(crate) trait IoContext<T> {
    /// Wraps the error with the context built by `context`.
    fn context(self, context: impl FnOnce() -> String) -> Result<T, QueueError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, QueueError> {
        self.map_err(|source| QueueError::Io {
            context: context(),
            source,
        })
    }
}
