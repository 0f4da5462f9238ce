use std::time::Instant;

use super::*;
use crate::queue::OverflowPolicy;

const SEGMENT: u64 = 1024;
const LIMIT: u64 = 3 * SEGMENT;

fn limited(overflow: OverflowPolicy) -> QueueConfig {
    QueueConfig {
        max_bytes: Some(LIMIT),
        overflow,
        ..config(SEGMENT)
    }
}

/// Appends 100-byte payloads until the queue refuses one; returns how many
/// were stored and the refusal.
async fn fill(queue: &Queue) -> (u64, QueueError) {
    for i in 0.. {
        match queue.append(vec![Bytes::from(vec![i as u8; 100])]).await {
            Ok(range) => assert_eq!(range, i..i + 1),
            Err(err) => return (i, err),
        }
    }
    unreachable!()
}

#[tokio::test]
async fn reject_policy_fails_fast_when_full_and_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(dir.path(), limited(OverflowPolicy::Reject)).unwrap();
    let (stored, err) = fill(&queue).await;
    match err {
        QueueError::Full { bytes, limit } => {
            assert_eq!(limit, LIMIT);
            assert!(bytes <= LIMIT && bytes + 128 > LIMIT, "{bytes}");
        }
        other => panic!("expected Full, got {other:?}"),
    }
    let started = Instant::now();
    let again = queue.append(vec![Bytes::from_static(b"x")]).await;
    assert!(again.is_err() && started.elapsed() < Duration::from_millis(50));
    assert!(again.unwrap_err().is_capacity());
    assert!(queue.stats().bytes <= LIMIT);

    let mut reader = queue.reader("replayer").unwrap();
    let records = read_n(&mut reader, stored as usize).await;
    assert!(
        records
            .iter()
            .enumerate()
            .all(|(i, r)| r.payload == vec![i as u8; 100])
    );
}

#[tokio::test]
async fn block_policy_waits_until_a_consumer_frees_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let policy = OverflowPolicy::Block {
        max_wait: Duration::from_secs(10),
    };
    let queue = Queue::open(dir.path(), limited(policy)).unwrap();
    let mut reader = queue.reader("replayer").unwrap();
    // Fill up to the limit without blocking, then one more append waits.
    let mut stored = 0u64;
    while queue.stats().bytes + 128 <= LIMIT {
        queue
            .append(vec![Bytes::from(vec![stored as u8; 100])])
            .await
            .unwrap();
        stored += 1;
    }
    let writer = queue.clone();
    let blocked =
        tokio::spawn(async move { writer.append(vec![Bytes::from_static(b"late")]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !blocked.is_finished(),
        "append must wait while the queue is full"
    );

    let records = read_n(&mut reader, stored as usize).await;
    reader.ack(records.last().unwrap().offset).unwrap();
    let range = tokio::time::timeout(Duration::from_secs(5), blocked)
        .await
        .expect("append still blocked after space was freed")
        .unwrap()
        .unwrap();
    assert_eq!(range, stored..stored + 1);
    assert_eq!(
        read_n(&mut reader, 1).await[0].payload,
        Bytes::from_static(b"late")
    );
}

#[tokio::test]
async fn block_policy_gives_up_after_max_wait() {
    let dir = tempfile::tempdir().unwrap();
    let policy = OverflowPolicy::Block {
        max_wait: Duration::from_millis(100),
    };
    let queue = Queue::open(dir.path(), limited(policy)).unwrap();
    let started = Instant::now();
    let (_, err) = fill(&queue).await;
    assert!(matches!(err, QueueError::Full { .. }), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn append_larger_than_the_limit_fails_at_once_even_when_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let policy = OverflowPolicy::Block {
        max_wait: Duration::from_secs(30),
    };
    let queue = Queue::open(dir.path(), limited(policy)).unwrap();
    let huge = vec![Bytes::from(vec![0u8; 1000]); 4];
    let started = Instant::now();
    assert!(matches!(
        queue.append(huge).await,
        Err(QueueError::Full { .. })
    ));
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn age_limit_refuses_appends_until_the_consumer_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let aged = QueueConfig {
        max_age: Some(Duration::from_millis(1500)),
        ..config(SEGMENT)
    };
    let queue = Queue::open(dir.path(), aged).unwrap();
    let mut reader = queue.reader("replayer").unwrap();
    queue.append(vec![payload(0)]).await.unwrap();
    queue.append(vec![payload(1)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let err = queue.append(vec![payload(2)]).await.unwrap_err();
    assert!(matches!(err, QueueError::TooOld { .. }), "{err:?}");
    assert!(queue.stats().oldest_unacked_age.unwrap() > Duration::from_millis(1500));

    read_n(&mut reader, 2).await;
    reader.ack(1).unwrap();
    assert_eq!(queue.append(vec![payload(2)]).await.unwrap(), 2..3);
}

#[tokio::test]
async fn oversized_record_and_bad_config_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let small_records = QueueConfig {
        max_record_bytes: 10,
        ..config(SEGMENT)
    };
    let queue = Queue::open(dir.path(), small_records).unwrap();
    let err = queue
        .append(vec![Bytes::from(vec![0u8; 11])])
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        QueueError::RecordTooLarge { len: 11, max: 10 }
    ));
    assert_eq!(queue.append(vec![]).await.unwrap(), 0..0);
    assert_eq!(queue.stats().next_offset, 0);

    let bad = QueueConfig {
        max_bytes: Some(SEGMENT),
        ..config(SEGMENT)
    };
    let err = Queue::open(dir.path().join("other"), bad).unwrap_err();
    assert!(err.to_string().contains("max_bytes"), "{err}");
}

#[tokio::test]
async fn ensure_capacity_applies_the_policy_and_accepted_appends_are_never_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policy = OverflowPolicy::Block {
        max_wait: Duration::from_secs(10),
    };
    let queue = Queue::open(dir.path(), limited(policy)).unwrap();
    let mut reader = queue.reader("replayer").unwrap();
    queue.ensure_capacity(100).await.unwrap();
    let mut stored = 0;
    while queue.stats().bytes + 128 <= LIMIT {
        queue.append(vec![payload(stored)]).await.unwrap();
        stored += 1;
    }
    // Already applied elsewhere: recorded even though the queue is full.
    let range = queue
        .append_accepted(vec![payload(stored); 3])
        .await
        .unwrap();
    assert_eq!(range, stored..stored + 3);
    assert!(queue.stats().bytes > LIMIT);

    let checker = queue.clone();
    let waiting = tokio::spawn(async move { checker.ensure_capacity(100).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "capacity check must wait while full"
    );
    let records = read_n(&mut reader, stored as usize + 3).await;
    reader.ack(records.last().unwrap().offset).unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("still waiting after space was freed")
        .unwrap()
        .unwrap();
    assert_eq!(
        queue.stats().records,
        0,
        "the capacity check reserves nothing"
    );
}
