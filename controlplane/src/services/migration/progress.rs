//! Throughput of migration jobs: a moving average over about 30 s of the
//! progress samples this process has seen (every snapshot built by Get or
//! Watch adds one). Before two samples 5 s apart exist, the average since
//! the job started is used instead.
//!
//! Samples live in this process only: a replica that just started, or that
//! serves its first Get for a job, falls back to the average since start.

use std::collections::{HashMap, VecDeque};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Samples older than this are dropped.
const WINDOW: Duration = Duration::from_secs(30);
/// Shortest span over which a moving average is trusted.
const MIN_SPAN: Duration = Duration::from_secs(5);
/// Jobs tracked at most (the oldest are forgotten beyond).
const MAX_JOBS: usize = 1024;

type Samples = VecDeque<(Instant, u64, u64)>;

static SAMPLES: LazyLock<Mutex<HashMap<Uuid, Samples>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Documents and bytes per second of job `id`, given its current totals
/// and the seconds it has been running (for the fallback).
pub fn rates(id: Uuid, docs: u64, bytes: u64, running_for: Duration) -> (f64, f64) {
    let now = Instant::now();
    let mut all = SAMPLES.lock().unwrap_or_else(|e| e.into_inner());
    if all.len() > MAX_JOBS {
        all.clear();
    }
    let samples = all.entry(id).or_default();
    samples.push_back((now, docs, bytes));
    while samples
        .front()
        .is_some_and(|(at, _, _)| now.duration_since(*at) > WINDOW)
    {
        samples.pop_front();
    }
    if let Some((at, d0, b0)) = samples.front().copied() {
        let span = now.duration_since(at);
        if span >= MIN_SPAN {
            let secs = span.as_secs_f64();
            return (
                docs.saturating_sub(d0) as f64 / secs,
                bytes.saturating_sub(b0) as f64 / secs,
            );
        }
    }
    let secs = running_for.as_secs_f64();
    if secs < 1.0 {
        return (0.0, 0.0);
    }
    (docs as f64 / secs, bytes as f64 / secs)
}
