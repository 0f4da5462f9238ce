//! Model-based test: random sequences of append / read / ack / seek / reopen
//! against a plain in-memory reference of what must be observed.

use std::collections::VecDeque;

use super::*;

/// What a single consumer must observe.
#[derive(Default)]
struct Model {
    /// Records not yet acknowledged, from offset `committed`.
    unacked: VecDeque<Bytes>,
    /// Every offset below is acknowledged.
    committed: u64,
    /// Offset the next read returns.
    read_pos: u64,
}

impl Model {
    fn next_offset(&self) -> u64 {
        self.committed + self.unacked.len() as u64
    }

    /// The records a `next_batch(max_records, max_bytes)` must return.
    fn expected_batch(&self, max_records: usize, max_bytes: usize) -> Vec<(u64, Bytes)> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for offset in self.read_pos..self.next_offset() {
            if out.len() >= max_records || (!out.is_empty() && bytes >= max_bytes) {
                break;
            }
            let payload = self.unacked[(offset - self.committed) as usize].clone();
            bytes += payload.len();
            out.push((offset, payload));
        }
        out
    }
}

async fn run(seed: u64, steps: usize) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(600);
    let mut rng = Rng::new(seed);
    let mut model = Model::default();
    let mut queue = Some(Queue::open(dir.path(), cfg.clone()).unwrap());
    let mut reader = Some(queue.as_ref().unwrap().reader("replayer").unwrap());

    for step in 0..steps {
        let q = queue.as_ref().unwrap();
        let r = reader.as_mut().unwrap();
        let ctx = format!("seed {seed} step {step}");
        match rng.below(100) {
            0..=39 => {
                let n = rng.below(4) + 1;
                let payloads: Vec<Bytes> = (0..n)
                    .map(|_| {
                        let len = rng.below(200) as usize;
                        Bytes::from((0..len).map(|_| rng.below(256) as u8).collect::<Vec<u8>>())
                    })
                    .collect();
                let start = model.next_offset();
                assert_eq!(
                    q.append(payloads.clone()).await.unwrap(),
                    start..start + n,
                    "{ctx}"
                );
                model.unacked.extend(payloads);
            }
            40..=69 => {
                let max_records = rng.below(10) as usize + 1;
                let max_bytes = rng.below(800) as usize + 1;
                let expected = model.expected_batch(max_records, max_bytes);
                if expected.is_empty() {
                    assert_nothing_to_read(r).await;
                    continue;
                }
                let batch = r.next_batch(max_records, max_bytes).await.unwrap();
                let got: Vec<(u64, Bytes)> =
                    batch.into_iter().map(|r| (r.offset, r.payload)).collect();
                assert_eq!(got, expected, "{ctx}");
                model.read_pos += got.len() as u64;
            }
            70..=84 => {
                if model.read_pos == model.committed {
                    let err = r.ack(model.read_pos).unwrap_err();
                    assert!(
                        matches!(err, QueueError::InvalidAck { .. }),
                        "{ctx}: {err:?}"
                    );
                    continue;
                }
                let up_to = model.committed + rng.below(model.read_pos - model.committed);
                r.ack(up_to).unwrap();
                let acked = up_to + 1 - model.committed;
                model.unacked.drain(..acked as usize);
                model.committed = up_to + 1;
            }
            85..=92 => {
                r.seek_to_committed().unwrap();
                model.read_pos = model.committed;
            }
            _ => {
                // Close everything (the writer thread is joined) and reopen.
                drop(reader.take());
                drop(queue.take());
                let q = Queue::open(dir.path(), cfg.clone()).unwrap();
                reader = Some(q.reader("replayer").unwrap());
                queue = Some(q);
                model.read_pos = model.committed;
            }
        }

        let q = queue.as_ref().unwrap();
        let stats = q.stats();
        assert_eq!(stats.next_offset, model.next_offset(), "{ctx}");
        assert_eq!(stats.records, model.unacked.len() as u64, "{ctx}");
        assert_eq!(
            stats.consumers[0].acked_offset,
            model.committed.checked_sub(1),
            "{ctx}"
        );
        // Exactly the segments holding unacknowledged records (or the active one) remain.
        let bases: Vec<u64> = segment_files(dir.path()).iter().map(|(b, _)| *b).collect();
        assert_eq!(bases.len(), stats.segments, "{ctx}");
        assert!(
            bases[0] <= model.committed,
            "{ctx}: segment {} deleted too early",
            bases[0]
        );
        if let Some(second) = bases.get(1) {
            assert!(
                *second > model.committed,
                "{ctx}: segment {} kept too long",
                bases[0]
            );
        }
    }
}

#[tokio::test]
async fn random_operations_match_the_in_memory_model() {
    for seed in 1..=6 {
        run(seed, 300).await;
    }
}
