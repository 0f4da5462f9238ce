//! Reading records without consuming them (the operator's queue view).
//!
//! A peek reads the published prefix of the segment files directly: it
//! takes no consumer position, so it never holds back segment deletion and
//! never disturbs the replayer. A segment deleted between listing and
//! reading simply ends the view early; a corrupt frame ends it at that
//! point (the replayer reports corruption with its exact position).

use std::io::Read;

use bytes::Bytes;

use super::record::{self, Decoded};
use super::{Queue, QueueError, Record};

impl Queue {
    /// Up to `max` records starting at offset `from`, oldest first, without
    /// consuming them. Blocking I/O (reads segment files).
    pub fn peek(&self, from: u64, max: usize) -> Result<Vec<Record>, QueueError> {
        let shared = self.shared();
        let segments: Vec<(u64, u64)> = {
            let st = shared.lock();
            st.segments
                .iter()
                .map(|(base, len)| (*base, *len))
                .collect()
        };
        // The segment holding `from` is the last one whose base is <= from.
        let start = segments
            .iter()
            .rposition(|(base, _)| *base <= from)
            .unwrap_or(0);
        let mut out = Vec::new();
        for (base, len) in &segments[start..] {
            if out.len() >= max {
                break;
            }
            let path = shared.segment_path(*base);
            let mut bytes = Vec::with_capacity(*len as usize);
            match std::fs::File::open(&path) {
                Ok(file) => {
                    file.take(*len)
                        .read_to_end(&mut bytes)
                        .map_err(|source| QueueError::Io {
                            context: format!("reading {}", path.display()),
                            source,
                        })?;
                }
                // Deleted after everyone acknowledged it: nothing to show.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(QueueError::Io {
                        context: format!("opening {}", path.display()),
                        source,
                    });
                }
            }
            let mut pos = 0;
            while pos < bytes.len() && out.len() < max {
                match record::decode(&bytes[pos..]) {
                    Decoded::Valid(rec) => {
                        pos += rec.frame_len();
                        if rec.offset >= from {
                            out.push(Record {
                                offset: rec.offset,
                                enqueued_at_ms: rec.enqueued_at_ms,
                                payload: Bytes::copy_from_slice(rec.payload),
                            });
                        }
                    }
                    Decoded::Corrupted(_) | Decoded::Truncated { .. } => return Ok(out),
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::QueueConfig;
    use super::*;

    #[tokio::test]
    async fn peek_reads_across_segments_without_consuming() {
        let dir = tempfile::tempdir().unwrap();
        let config = QueueConfig {
            segment_max_bytes: 256,
            ..QueueConfig::default()
        };
        let queue = Queue::open(dir.path(), config).unwrap();
        for i in 0..20u32 {
            queue
                .append(vec![Bytes::from(format!(
                    "record-{i:02}-{}",
                    "x".repeat(40)
                ))])
                .await
                .unwrap();
        }
        assert!(queue.stats().segments > 3, "several segments");
        let view = queue.peek(7, 5).unwrap();
        let offsets: Vec<u64> = view.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![7, 8, 9, 10, 11]);
        assert!(view[0].payload.starts_with(b"record-07"));
        // Nothing was consumed: a reader still starts at 0.
        let mut reader = queue.reader("replayer").unwrap();
        let batch = reader.next_batch(1, usize::MAX).await.unwrap();
        assert_eq!(batch[0].offset, 0);
        assert_eq!(queue.peek(19, 10).unwrap().len(), 1);
        assert!(queue.peek(20, 10).unwrap().is_empty());
    }
}
