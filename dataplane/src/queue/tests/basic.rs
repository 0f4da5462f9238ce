use std::collections::BTreeMap;

use bytes::Bytes;

use super::*;

#[tokio::test]
async fn append_read_ack_round_trip_across_segment_rollovers() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(dir.path(), config(1024)).unwrap();

    let mut next = 0;
    for batch in 0..60u64 {
        let payloads: Vec<Bytes> = (next..next + batch % 5 + 1).map(payload).collect();
        let range = queue.append(payloads.clone()).await.unwrap();
        assert_eq!(
            range,
            next..next + payloads.len() as u64,
            "contiguous offsets"
        );
        next = range.end;
    }
    let stats = queue.stats();
    assert_eq!(stats.next_offset, next);
    assert!(
        stats.segments >= 8,
        "expected many rollovers, got {stats:?}"
    );
    assert_eq!(segment_files(dir.path()).len(), stats.segments);

    let mut reader = queue.reader("replayer").unwrap();
    let mut seen = 0;
    while seen < next {
        let batch = reader.next_batch(7, 300).await.unwrap();
        assert!(!batch.is_empty() && batch.len() <= 7);
        for record in &batch {
            assert_eq!(record.offset, seen);
            assert_eq!(record.payload, payload(seen));
            assert!(record.enqueued_at_ms > 0);
            seen += 1;
        }
        reader.ack(batch.last().unwrap().offset).unwrap();
    }
    assert_nothing_to_read(&mut reader).await;

    let stats = queue.stats();
    assert_eq!(stats.records, 0);
    assert_eq!(stats.segments, 1, "all but the active segment deleted");
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(stats.consumers[0].acked_offset, Some(next - 1));
    assert_eq!(stats.consumers[0].lag_records, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_get_distinct_offsets_and_are_read_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(dir.path(), config(16 * 1024)).unwrap();

    let mut tasks = Vec::new();
    for task in 0..32u64 {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut written = Vec::new();
            for seq in 0..40u64 {
                let payloads: Vec<Bytes> = (0..seq % 3 + 1)
                    .map(|i| Bytes::from(format!("task {task} seq {seq} item {i}")))
                    .collect();
                let range = queue.append(payloads.clone()).await.unwrap();
                assert_eq!(range.end - range.start, payloads.len() as u64);
                written.extend(range.zip(payloads));
            }
            written
        }));
    }
    let mut expected = BTreeMap::new();
    for task in tasks {
        for (offset, payload) in task.await.unwrap() {
            assert!(
                expected.insert(offset, payload).is_none(),
                "offset {offset} given twice"
            );
        }
    }
    let total = expected.len() as u64;
    assert_eq!(
        expected.keys().copied().collect::<Vec<_>>(),
        (0..total).collect::<Vec<_>>()
    );

    let mut reader = queue.reader("replayer").unwrap();
    let records = read_n(&mut reader, total as usize).await;
    for (record, (offset, payload)) in records.iter().zip(&expected) {
        assert_eq!((&record.offset, &record.payload), (offset, payload));
    }
}

#[tokio::test]
async fn reopen_keeps_records_and_consumer_resumes_from_durable_offset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let queue = Queue::open(dir.path(), config(2048)).unwrap();
        append_n(&queue, 50).await;
        let mut reader = queue.reader("replayer").unwrap();
        let records = read_n(&mut reader, 30).await;
        assert_eq!(records.last().unwrap().offset, 29);
        reader.ack(19).unwrap();
    }

    let queue = Queue::open(dir.path(), config(2048)).unwrap();
    assert_eq!(queue.stats().next_offset, 50);
    assert_eq!(queue.stats().records, 30);
    let mut reader = queue.reader("replayer").unwrap();
    // At-least-once: 20..30 were delivered but not acknowledged.
    let records = read_n(&mut reader, 30).await;
    let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (20..50).collect::<Vec<_>>());
    assert!(records.iter().all(|r| r.payload == payload(r.offset)));

    assert_eq!(queue.append(vec![payload(50)]).await.unwrap(), 50..51);
    assert_eq!(read_n(&mut reader, 1).await[0].payload, payload(50));
}

#[tokio::test]
async fn next_batch_waits_for_an_append_when_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(dir.path(), config(1024)).unwrap();
    let mut reader = queue.reader("replayer").unwrap();
    assert_nothing_to_read(&mut reader).await;

    let writer = queue.clone();
    let append = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        writer.append(vec![payload(0)]).await.unwrap()
    });
    let records = read_n(&mut reader, 1).await;
    assert_eq!(records[0].payload, payload(0));
    assert_eq!(append.await.unwrap(), 0..1);
}

#[tokio::test]
async fn seek_to_committed_redelivers_unacked_records() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(dir.path(), config(1024)).unwrap();
    append_n(&queue, 20).await;
    let mut reader = queue.reader("replayer").unwrap();
    read_n(&mut reader, 12).await;
    reader.ack(4).unwrap();
    reader.seek_to_committed().unwrap();
    assert_eq!(reader.next_offset(), 5);
    assert_eq!(read_n(&mut reader, 1).await[0].offset, 5);
}

#[tokio::test]
async fn acks_are_validated_and_readers_are_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(dir.path(), config(1024)).unwrap();
    append_n(&queue, 5).await;
    let mut reader = queue.reader("replayer").unwrap();
    assert!(matches!(
        queue.reader("replayer"),
        Err(QueueError::ReaderBusy { .. })
    ));
    assert!(matches!(
        queue.reader("bad name"),
        Err(QueueError::InvalidConsumerName { .. })
    ));
    assert!(matches!(
        reader.ack(0),
        Err(QueueError::InvalidAck { offset: 0, .. })
    ));
    read_n(&mut reader, 2).await;
    assert!(matches!(
        reader.ack(3),
        Err(QueueError::InvalidAck { offset: 3, .. })
    ));
    reader.ack(1).unwrap();
    reader.ack(0).unwrap(); // already acknowledged: no-op
    assert_eq!(queue.stats().consumers[0].acked_offset, Some(1));
    drop(reader);
    assert!(queue.reader("replayer").is_ok());
    assert!(matches!(
        Queue::open(dir.path(), config(1024)),
        Err(QueueError::Locked { .. })
    ));
}

#[tokio::test]
async fn segments_are_deleted_only_after_every_consumer_acked_them() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(dir.path(), config(512)).unwrap();
    let mut fast = queue.reader("fast").unwrap();
    let mut slow = queue.reader("slow").unwrap();
    append_n(&queue, 60).await;
    let segments_before = segment_files(dir.path());
    assert!(segments_before.len() > 4);

    read_n(&mut fast, 60).await;
    fast.ack(59).unwrap();
    assert_eq!(
        segment_files(dir.path()),
        segments_before,
        "slow consumer holds every segment"
    );

    read_n(&mut slow, 60).await;
    let third_base = segments_before[2].0;
    // Acking up to the last record of the second segment frees the first two only.
    slow.ack(third_base - 1).unwrap();
    assert_eq!(segment_files(dir.path()), segments_before[2..]);
    assert_eq!(queue.stats().first_offset, third_base);

    slow.ack(59).unwrap();
    let left = segment_files(dir.path());
    assert_eq!(
        left,
        segments_before[segments_before.len() - 1..],
        "the active segment stays"
    );

    // Removing a consumer also releases what it held.
    let mut late = queue.reader("late").unwrap();
    append_n_from(&queue, 60, 40).await;
    read_n(&mut fast, 40).await;
    fast.ack(99).unwrap();
    read_n(&mut slow, 40).await;
    slow.ack(99).unwrap();
    assert!(
        segment_files(dir.path()).len() > 1,
        "the new consumer holds segments"
    );
    assert_eq!(read_n(&mut late, 1).await[0].offset, left[0].0);
    drop(late);
    queue.remove_consumer("late").unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
}

async fn append_n_from(queue: &Queue, from: u64, n: u64) {
    for i in from..from + n {
        assert_eq!(queue.append(vec![payload(i)]).await.unwrap(), i..i + 1);
    }
}

#[tokio::test]
async fn stats_report_depth_age_and_lag() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(dir.path(), config(1024)).unwrap();
    let mut reader = queue.reader("replayer").unwrap();
    assert_eq!(queue.stats().oldest_unacked_age, None);
    append_n(&queue, 10).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let stats = queue.stats();
    assert_eq!(
        (stats.records, stats.next_offset, stats.first_offset),
        (10, 10, 0)
    );
    assert!(stats.oldest_unacked_age.unwrap() >= Duration::from_millis(20));
    assert!(stats.bytes > 10 * record::FRAME_OVERHEAD as u64);
    assert_eq!(stats.consumers[0].lag_records, 10);
    assert!(stats.consumers[0].lag >= Duration::from_millis(20));
    read_n(&mut reader, 10).await;
    reader.ack(9).unwrap();
    let stats = queue.stats();
    assert_eq!((stats.records, stats.oldest_unacked_age), (0, None));
    assert_eq!(stats.consumers[0].lag, Duration::ZERO);
}
