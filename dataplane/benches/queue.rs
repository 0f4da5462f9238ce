//! Queue append throughput against raw sequential writes of the same bytes.
//!
//! ```text
//! cargo bench -p tandem-gateway --bench queue            # defaults
//! QUEUE_BENCH_RECORDS=50000 QUEUE_BENCH_DIR=/data cargo bench -p tandem-gateway --bench queue
//! ```
//!
//! Every queue append is durable when it returns (group commit: one
//! `fdatasync` per batch of concurrent appends). The raw baselines write the
//! same encoded frames to one file: "raw, sync per N" calls `fdatasync` every
//! N records (what perfect group commit of N appenders would do), "raw, one
//! sync" once at the end (the disk's streaming ceiling).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem_gateway::queue::{Queue, QueueConfig, record};

const PAYLOAD: usize = 1024;

fn main() {
    let records: u64 = env_or("QUEUE_BENCH_RECORDS", 20_000);
    let base = std::env::var_os("QUEUE_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let payload = Bytes::from(vec![b'x'; PAYLOAD]);
    let frame_bytes = (record::frame_len(PAYLOAD) as u64 * records) as f64;
    println!(
        "{records} records of {PAYLOAD} B ({:.1} MB framed) in {}",
        frame_bytes / 1e6,
        base.display()
    );
    println!(
        "{:<26} {:>12} {:>10} {:>10}",
        "", "records/s", "MB/s", "vs raw"
    );

    let ceiling = raw(&base, records, &payload, records);
    report("raw, one sync", records, ceiling, ceiling);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    for appenders in [1u64, 8, 64] {
        // One sync per record is slow; a tenth of the records shows the rate.
        let n = if appenders == 1 {
            (records / 10).max(1)
        } else {
            records
        };
        let raw_grouped = raw(&base, n, &payload, appenders);
        report(
            &format!("raw, sync per {appenders}"),
            n,
            raw_grouped,
            raw_grouped,
        );
        let queued = runtime.block_on(queue(&base, n, &payload, appenders));
        report(
            &format!("queue, {appenders} appenders"),
            n,
            queued,
            raw_grouped,
        );
    }
}

/// Writes `records` frames to a fresh file, syncing every `sync_every`.
fn raw(base: &Path, records: u64, payload: &[u8], sync_every: u64) -> Duration {
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let mut file = File::create(dir.path().join("raw.seg")).expect("raw file");
    let mut buf = Vec::new();
    let started = Instant::now();
    for offset in 0..records {
        record::encode(offset, 0, payload, &mut buf).expect("frame");
        if (offset + 1) % sync_every == 0 || offset + 1 == records {
            file.write_all(&buf).expect("write");
            file.sync_data().expect("fdatasync");
            buf.clear();
        }
    }
    started.elapsed()
}

/// Appends `records` single-record appends from `appenders` tasks.
async fn queue(base: &Path, records: u64, payload: &Bytes, appenders: u64) -> Duration {
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let queue = Queue::open(dir.path(), QueueConfig::default()).expect("queue");
    let started = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|task| {
            let queue = queue.clone();
            let payload = payload.clone();
            let count = records / appenders + u64::from(task < records % appenders);
            tokio::spawn(async move {
                for _ in 0..count {
                    queue.append(vec![payload.clone()]).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("appender");
    }
    let elapsed = started.elapsed();
    assert_eq!(queue.stats().next_offset, records);
    elapsed
}

fn report(name: &str, records: u64, took: Duration, raw: Duration) {
    let secs = took.as_secs_f64();
    let mb = (record::frame_len(PAYLOAD) as u64 * records) as f64 / 1e6;
    println!(
        "{name:<26} {:>12.0} {:>10.1} {:>9.2}x",
        records as f64 / secs,
        mb / secs,
        raw.as_secs_f64() / secs
    );
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
