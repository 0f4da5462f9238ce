use super::*;
use crate::queue::RepairReport;

/// A closed queue of `n` records in segments of `segment_max_bytes`.
async fn closed_queue(dir: &Path, n: u64, segment_max_bytes: u64) {
    let queue = Queue::open(dir, config(segment_max_bytes)).unwrap();
    append_n(&queue, n).await;
}

/// Reads until the reader fails, returning the offsets read and the error.
async fn read_until_error(reader: &mut Reader) -> (Vec<u64>, QueueError) {
    let mut offsets = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), reader.next_batch(5, usize::MAX))
            .await
            .expect("reader neither failed nor returned records")
        {
            Ok(batch) => offsets.extend(batch.iter().map(|r| r.offset)),
            Err(err) => return (offsets, err),
        }
    }
}

fn assert_loss(report: &RepairReport, first: u64, last: u64, bytes: usize) {
    assert_eq!(
        (
            report.first_lost_offset,
            report.last_lost_offset,
            report.records_lost,
            report.bytes_skipped
        ),
        (first, last, last + 1 - first, bytes as u64),
        "{report:?}"
    );
}

/// Corrupts one frame of the first (sealed) segment with `damage`, then
/// checks the reader halts exactly there and a repair loses only that record.
async fn corrupt_frame_then_repair(damage: impl FnOnce(&mut [u8])) {
    let dir = tempfile::tempdir().unwrap();
    closed_queue(dir.path(), 40, 1024).await;
    let (base, path) = segment_files(dir.path()).remove(0);
    let frames = frames(&path);
    let victim = frames[frames.len() / 2];
    edit_file(&path, |data| {
        damage(&mut data[victim.pos..victim.pos + victim.len])
    });

    let queue = Queue::open(dir.path(), config(1024)).unwrap();
    let mut reader = queue.reader("replayer").unwrap();
    let (offsets, err) = read_until_error(&mut reader).await;
    assert_eq!(offsets, (0..victim.offset).collect::<Vec<_>>());
    assert_corrupt_at(&err, base, victim.pos, victim.offset);
    // Halted: the same error again, and stats show it.
    let again = reader.next_batch(5, usize::MAX).await.unwrap_err();
    assert_corrupt_at(&again, base, victim.pos, victim.offset);
    assert!(queue.stats().consumers[0].halted.is_some());

    let dry = queue.repair_dry_run("replayer").unwrap();
    assert!(dry.dry_run);
    assert_loss(&dry, victim.offset, victim.offset, victim.len);
    let still = reader.next_batch(5, usize::MAX).await.unwrap_err();
    assert_corrupt_at(&still, base, victim.pos, victim.offset);

    let report = queue.repair("replayer").unwrap();
    assert_eq!(
        RepairReport {
            dry_run: true,
            ..report.clone()
        },
        dry
    );
    assert_eq!(report.resume_offset, victim.offset + 1);
    let rest = read_n(&mut reader, (39 - victim.offset) as usize).await;
    assert_eq!(rest[0].offset, victim.offset + 1);
    assert!(rest.iter().all(|r| r.payload == payload(r.offset)));
    assert_eq!(rest.last().unwrap().offset, 39);
    let stats = queue.stats();
    assert_eq!(
        (
            stats.consumers[0].halted.as_ref(),
            stats.consumers[0].records_lost
        ),
        (None, 1)
    );

    // The skip is durable: after a restart the consumer re-reads past it.
    drop(reader);
    drop(queue);
    let queue = Queue::open(dir.path(), config(1024)).unwrap();
    let mut reader = queue.reader("replayer").unwrap();
    let offsets: Vec<u64> = read_n(&mut reader, 39)
        .await
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(
        offsets,
        (0..40).filter(|o| *o != victim.offset).collect::<Vec<_>>()
    );
    assert!(matches!(
        queue.repair("replayer"),
        Err(QueueError::NothingToRepair { .. })
    ));
}

#[tokio::test]
async fn corrupt_middle_record_halts_the_reader_until_repair_reports_the_exact_loss() {
    corrupt_frame_then_repair(|frame| frame[record::HEADER_LEN + 3] ^= 0x20).await;
}

#[tokio::test]
async fn corrupt_length_field_is_reported_and_repaired_exactly() {
    // Beyond the format's maximum.
    corrupt_frame_then_repair(|frame| frame[4..8].copy_from_slice(&u32::MAX.to_le_bytes())).await;
    // Plausible but wrong: a few bytes longer, so the checksum lands elsewhere.
    corrupt_frame_then_repair(|frame| {
        let len = u32::from_le_bytes(frame[4..8].try_into().unwrap());
        frame[4..8].copy_from_slice(&(len + 7).to_le_bytes());
    })
    .await;
    // Shorter than the frame.
    corrupt_frame_then_repair(|frame| frame[4..8].copy_from_slice(&1u32.to_le_bytes())).await;
}

#[tokio::test]
async fn corrupt_magic_and_offset_fields_are_reported_and_repaired_exactly() {
    corrupt_frame_then_repair(|frame| frame[0] = b'X').await;
    corrupt_frame_then_repair(|frame| frame[9] ^= 0xff).await;
}

#[tokio::test]
async fn corruption_running_to_the_end_of_a_segment_loses_up_to_the_next_segment() {
    let dir = tempfile::tempdir().unwrap();
    closed_queue(dir.path(), 40, 1024).await;
    let segments = segment_files(dir.path());
    let (base, path) = &segments[0];
    let frames = frames(path);
    let (second_last, last) = (frames[frames.len() - 2], frames[frames.len() - 1]);
    edit_file(path, |data| {
        data[second_last.pos + 30] ^= 1;
        data[last.pos + 30] ^= 1;
    });

    let queue = Queue::open(dir.path(), config(1024)).unwrap();
    let mut reader = queue.reader("replayer").unwrap();
    let (_, err) = read_until_error(&mut reader).await;
    assert_corrupt_at(&err, *base, second_last.pos, second_last.offset);
    let report = queue.repair("replayer").unwrap();
    assert_eq!(last.offset + 1, segments[1].0);
    assert_loss(
        &report,
        second_last.offset,
        last.offset,
        second_last.len + last.len,
    );
    assert_eq!(read_n(&mut reader, 1).await[0].offset, segments[1].0);
}

#[tokio::test]
async fn missing_segment_file_is_reported_and_repaired_as_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    closed_queue(dir.path(), 40, 1024).await;
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 3);
    fs::remove_file(&segments[1].1).unwrap();

    let queue = Queue::open(dir.path(), config(1024)).unwrap();
    let mut reader = queue.reader("replayer").unwrap();
    let (offsets, err) = read_until_error(&mut reader).await;
    assert_eq!(offsets.len() as u64, segments[1].0);
    let end_of_first = fs::metadata(&segments[0].1).unwrap().len() as usize;
    assert_corrupt_at(&err, segments[0].0, end_of_first, segments[1].0);

    let report = queue.repair("replayer").unwrap();
    assert_loss(&report, segments[1].0, segments[2].0 - 1, 0);
    assert_eq!(read_n(&mut reader, 1).await[0].offset, segments[2].0);
}

#[tokio::test]
async fn repair_without_a_halted_reader_reads_ahead_to_find_the_corruption() {
    let dir = tempfile::tempdir().unwrap();
    closed_queue(dir.path(), 40, 1024).await;
    let (_, path) = segment_files(dir.path()).remove(0);
    let victim = frames(&path)[3];
    edit_file(&path, |data| data[victim.pos + 28] ^= 0x80);

    let queue = Queue::open(dir.path(), config(1024)).unwrap();
    assert!(matches!(
        queue.repair("nobody"),
        Err(QueueError::UnknownConsumer { .. })
    ));
    drop(queue.reader("replayer").unwrap());
    let dry = queue.repair_dry_run("replayer").unwrap();
    assert_loss(&dry, victim.offset, victim.offset, victim.len);
    let report = queue.repair("replayer").unwrap();
    assert_eq!(report.resume_offset, victim.offset + 1);

    let mut reader = queue.reader("replayer").unwrap();
    let offsets: Vec<u64> = read_n(&mut reader, 39)
        .await
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(
        offsets,
        (0..40).filter(|o| *o != victim.offset).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn corruption_behind_the_acknowledged_offset_does_not_halt_the_consumer() {
    let dir = tempfile::tempdir().unwrap();
    {
        let queue = Queue::open(dir.path(), config(1 << 20)).unwrap();
        append_n(&queue, 20).await;
        let mut reader = queue.reader("replayer").unwrap();
        read_n(&mut reader, 10).await;
        reader.ack(9).unwrap();
    }
    let (_, path) = segment_files(dir.path()).remove(0);
    let victim = frames(&path)[5];
    edit_file(&path, |data| data[victim.pos + 30] ^= 0x04);

    let queue = Queue::open(dir.path(), config(1 << 20)).unwrap();
    let mut reader = queue.reader("replayer").unwrap();
    let offsets: Vec<u64> = read_n(&mut reader, 10)
        .await
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets, (10..20).collect::<Vec<_>>());
}
