use super::*;

/// Appends `n` records into one segment, closes the queue, and returns the
/// segment path and its frames.
async fn closed_queue_with(dir: &Path, n: u64) -> (PathBuf, Vec<Frame>) {
    let queue = Queue::open(dir, config(1 << 20)).unwrap();
    append_n(&queue, n).await;
    drop(queue);
    let (_, path) = segment_files(dir).pop().unwrap();
    let frames = frames(&path);
    assert_eq!(frames.len() as u64, n);
    (path, frames)
}

async fn assert_reads_back(queue: &Queue, n: u64) {
    let mut reader = queue.reader("check").unwrap();
    let records = read_n(&mut reader, n as usize).await;
    for (i, record) in records.iter().enumerate() {
        assert_eq!(
            (record.offset, &record.payload),
            (i as u64, &payload(i as u64))
        );
    }
    assert_nothing_to_read(&mut reader).await;
}

#[tokio::test]
async fn torn_tail_is_truncated_to_the_last_valid_record() {
    let dir = tempfile::tempdir().unwrap();
    let (path, frames) = closed_queue_with(dir.path(), 10).await;
    let last = frames[9];
    // A crash in the middle of writing record 9.
    edit_file(&path, |data| data.truncate(last.pos + last.len / 2));

    let queue = Queue::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), last.pos as u64);
    assert_eq!(queue.stats().next_offset, 9);
    assert_eq!(queue.append(vec![payload(9)]).await.unwrap(), 9..10);
    assert_eq!(queue.append(vec![payload(10)]).await.unwrap(), 10..11);
    assert_reads_back(&queue, 11).await;
}

#[tokio::test]
async fn torn_header_is_truncated_too() {
    let dir = tempfile::tempdir().unwrap();
    let (path, frames) = closed_queue_with(dir.path(), 3).await;
    edit_file(&path, |data| data.truncate(frames[2].pos + 5));
    let queue = Queue::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(queue.stats().next_offset, 2);
    assert_eq!(queue.append(vec![payload(2)]).await.unwrap(), 2..3);
    assert_reads_back(&queue, 3).await;
}

#[tokio::test]
async fn garbage_after_the_last_record_is_truncated() {
    for garbage in [
        vec![0u8; 4096],
        (0..3000u32).map(|i| (i * 7919 % 251) as u8).collect(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = closed_queue_with(dir.path(), 10).await;
        let clean_len = fs::metadata(&path).unwrap().len();
        edit_file(&path, |data| data.extend_from_slice(&garbage));

        let queue = Queue::open(dir.path(), config(1 << 20)).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), clean_len);
        assert_eq!(queue.append(vec![payload(10)]).await.unwrap(), 10..11);
        assert_reads_back(&queue, 11).await;
    }
}

#[tokio::test]
async fn empty_segment_left_by_a_crash_during_rollover_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let queue = Queue::open(dir.path(), config(256)).unwrap();
        append_n(&queue, 12).await;
    }
    // A crash right after creating the next segment, before writing to it.
    fs::write(dir.path().join(segment::file_name(12)), b"").unwrap();
    let queue = Queue::open(dir.path(), config(256)).unwrap();
    assert_eq!(queue.stats().next_offset, 12);
    assert_eq!(queue.append(vec![payload(12)]).await.unwrap(), 12..13);
    assert_eq!(segment_files(dir.path()).last().unwrap().0, 12);
    assert_reads_back(&queue, 13).await;
}

#[tokio::test]
async fn mid_log_corruption_in_the_last_segment_is_kept_and_new_records_go_to_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (path, frames) = closed_queue_with(dir.path(), 10).await;
    let len_before = fs::metadata(&path).unwrap().len();
    edit_file(&path, |data| data[frames[4].pos + 30] ^= 0x01);

    let queue = Queue::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        len_before,
        "nothing acknowledged is cut"
    );
    assert_eq!(queue.stats().next_offset, 10);
    assert_eq!(queue.append(vec![payload(10)]).await.unwrap(), 10..11);
    let bases: Vec<u64> = segment_files(dir.path()).iter().map(|(b, _)| *b).collect();
    assert_eq!(bases, vec![0, 10], "new records go to a new segment");

    let mut reader = queue.reader("replayer").unwrap();
    assert_eq!(read_n(&mut reader, 4).await.last().unwrap().offset, 3);
    let err = reader.next_batch(10, usize::MAX).await.unwrap_err();
    assert_corrupt_at(&err, 0, frames[4].pos, 4);

    let report = queue.repair("replayer").unwrap();
    assert_eq!(
        (
            report.first_lost_offset,
            report.last_lost_offset,
            report.records_lost
        ),
        (4, 4, 1)
    );
    let offsets: Vec<u64> = read_n(&mut reader, 6)
        .await
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets, (5..11).collect::<Vec<_>>());
}

#[tokio::test]
async fn reopen_after_rollovers_keeps_every_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let queue = Queue::open(dir.path(), config(700)).unwrap();
        append_n(&queue, 80).await;
    }
    let queue = Queue::open(dir.path(), config(700)).unwrap();
    assert!(queue.stats().segments > 5);
    assert_eq!(queue.append(vec![payload(80)]).await.unwrap(), 80..81);
    assert_reads_back(&queue, 81).await;
}

#[test]
fn segment_scan_survives_random_damage() {
    let mut rng = Rng::new(7);
    for round in 0..300 {
        let mut data = Vec::new();
        for offset in 100..100 + rng.below(20) {
            record::encode(offset, 0, &payload(offset), &mut data).unwrap();
        }
        for _ in 0..rng.below(4) {
            match rng.below(4) {
                0 if !data.is_empty() => {
                    let at = rng.below(data.len() as u64) as usize;
                    data[at] ^= 1 << rng.below(8);
                }
                1 => data.truncate(rng.below(data.len() as u64 + 1) as usize),
                2 => {
                    let at = rng.below(data.len() as u64 + 1) as usize;
                    let junk: Vec<u8> = (0..rng.below(64)).map(|_| rng.below(256) as u8).collect();
                    data.splice(at..at, junk);
                }
                _ => {
                    // Splice a copy of some region elsewhere (stale frames).
                    let from = rng.below(data.len() as u64 + 1) as usize;
                    let to = from + rng.below((data.len() - from) as u64 + 1) as usize;
                    let copy = data[from..to].to_vec();
                    let at = rng.below(data.len() as u64 + 1) as usize;
                    data.splice(at..at, copy);
                }
            }
        }
        let scan = segment::scan(&data, 100);
        assert!(scan.valid_end as usize <= data.len(), "round {round}");
        assert!(scan.next_offset >= 100 + scan.records, "round {round}");
        // What recovery keeps scans cleanly to its end, to the same offset.
        let kept = segment::scan(&data[..scan.valid_end as usize], 100);
        assert_eq!(
            (kept.valid_end, kept.next_offset),
            (scan.valid_end, scan.next_offset),
            "round {round}"
        );
        for from in [0, data.len() / 2, data.len()] {
            if let Some((pos, offset)) = segment::resync(&data, from, 100) {
                assert!(pos >= from && offset >= 100, "round {round}");
            }
        }
    }
}
