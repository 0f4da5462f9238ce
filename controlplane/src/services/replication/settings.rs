//! Checks of the task settings that CreateTask and UpdateTask share (lag
//! thresholds, shadow reads, queue policy, replay options), applied to a
//! [`TaskRecord`]. Both requests use the same field names, so errors name
//! the same paths (`lag_thresholds.warning_lag`, `replay.max_backoff`...).
//!
//! Durations are stored in whole milliseconds; a finer value is truncated.

use std::time::Duration;

use tandem_proto::v1 as pb;
use tonic::Status;

use crate::services::duration;
use crate::store::tasks::TaskRecord;
use crate::validate::{self, invalid};

/// Longest accepted lag threshold or gc_deletes setting.
pub const MAX_SETTING_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest accepted `queue_policy.max_age`.
const MAX_QUEUE_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest accepted `queue_policy.max_backpressure_wait`: a client write is
/// not worth delaying longer.
const MAX_BACKPRESSURE_WAIT: Duration = Duration::from_secs(300);
/// Largest accepted `replay.max_batch_records`.
const MAX_BATCH_RECORDS: u32 = 100_000;
/// Largest accepted `replay.max_batch_bytes` (Elasticsearch refuses bigger
/// requests by default: `http.max_content_length` is 100 MiB).
const MAX_BATCH_BYTES: u64 = 100 << 20;
/// Longest accepted replay timeout or backoff.
const MAX_REPLAY_DURATION: Duration = Duration::from_secs(3600);

/// Milliseconds of the duration field `field` (unset: zero), at most `max`.
pub fn millis(
    field: &str,
    value: Option<&prost_types::Duration>,
    max: Duration,
) -> Result<i64, Status> {
    validate::duration(field, value, max).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A duration checked like [`millis`], truncated to whole milliseconds.
fn whole_millis(
    field: &str,
    value: Option<&prost_types::Duration>,
    max: Duration,
) -> Result<prost_types::Duration, Status> {
    let d = validate::duration(field, value, max)?;
    Ok(duration(Duration::from_millis(
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
    )))
}

/// A record count stored as a signed 64-bit integer.
fn count(field: &str, value: u64) -> Result<i64, Status> {
    i64::try_from(value).map_err(|_| invalid(field, format!("must be at most {}", i64::MAX)))
}

/// Checks `lag_thresholds` and stores them in `task`.
pub fn apply_lag_thresholds(
    task: &mut TaskRecord,
    thresholds: &pb::LagThresholds,
) -> Result<(), Status> {
    task.warning_lag_ms = millis(
        "lag_thresholds.warning_lag",
        thresholds.warning_lag.as_ref(),
        MAX_SETTING_DURATION,
    )?;
    task.warning_records = count("lag_thresholds.warning_records", thresholds.warning_records)?;
    task.cutover_max_lag_ms = millis(
        "lag_thresholds.cutover_max_lag",
        thresholds.cutover_max_lag.as_ref(),
        MAX_SETTING_DURATION,
    )?;
    task.cutover_max_records = count(
        "lag_thresholds.cutover_max_records",
        thresholds.cutover_max_records,
    )?;
    Ok(())
}

/// Checks `shadow_reads` and stores it in `task`.
pub fn apply_shadow_reads(
    task: &mut TaskRecord,
    config: &pb::ShadowReadConfig,
) -> Result<(), Status> {
    let ratio = config.sample_ratio;
    if !(0.0..=1.0).contains(&ratio) {
        return Err(invalid(
            "shadow_reads.sample_ratio",
            format!("must be between 0 and 1 (got {ratio})"),
        ));
    }
    task.shadow_sample_ratio = ratio;
    Ok(())
}

/// Checks `queue_policy` and stores it in `task` (an unspecified `on_full`
/// becomes BACKPRESSURE, as documented).
pub fn apply_queue_policy(task: &mut TaskRecord, policy: &pb::QueuePolicy) -> Result<(), Status> {
    count("queue_policy.max_bytes", policy.max_bytes)?;
    let on_full: pb::QueueFullPolicy =
        validate::enum_value("queue_policy.on_full", policy.on_full, true)?;
    task.queue_policy = pb::QueuePolicy {
        max_bytes: policy.max_bytes,
        max_age: Some(whole_millis(
            "queue_policy.max_age",
            policy.max_age.as_ref(),
            MAX_QUEUE_AGE,
        )?),
        on_full: match on_full {
            pb::QueueFullPolicy::Unspecified => pb::QueueFullPolicy::Backpressure,
            other => other,
        } as i32,
        max_backpressure_wait: Some(whole_millis(
            "queue_policy.max_backpressure_wait",
            policy.max_backpressure_wait.as_ref(),
            MAX_BACKPRESSURE_WAIT,
        )?),
    };
    Ok(())
}

/// Checks `replay` and stores it in `task`.
pub fn apply_replay(task: &mut TaskRecord, replay: &pb::ReplayOptions) -> Result<(), Status> {
    if replay.max_batch_records > MAX_BATCH_RECORDS {
        return Err(invalid(
            "replay.max_batch_records",
            format!(
                "must be at most {MAX_BATCH_RECORDS} (got {})",
                replay.max_batch_records
            ),
        ));
    }
    if replay.max_batch_bytes > MAX_BATCH_BYTES {
        return Err(invalid(
            "replay.max_batch_bytes",
            format!(
                "must be at most {MAX_BATCH_BYTES} (got {})",
                replay.max_batch_bytes
            ),
        ));
    }
    let request_timeout = whole_millis(
        "replay.request_timeout",
        replay.request_timeout.as_ref(),
        MAX_REPLAY_DURATION,
    )?;
    let initial_backoff = whole_millis(
        "replay.initial_backoff",
        replay.initial_backoff.as_ref(),
        MAX_REPLAY_DURATION,
    )?;
    let max_backoff = whole_millis(
        "replay.max_backoff",
        replay.max_backoff.as_ref(),
        MAX_REPLAY_DURATION,
    )?;
    let zero = |d: &prost_types::Duration| d.seconds == 0 && d.nanos == 0;
    let longer = |a: &prost_types::Duration, b: &prost_types::Duration| {
        (a.seconds, a.nanos) > (b.seconds, b.nanos)
    };
    if !zero(&max_backoff) && longer(&initial_backoff, &max_backoff) {
        return Err(invalid(
            "replay.initial_backoff",
            "must not exceed replay.max_backoff",
        ));
    }
    task.replay = pb::ReplayOptions {
        max_batch_records: replay.max_batch_records,
        max_batch_bytes: replay.max_batch_bytes,
        request_timeout: Some(request_timeout),
        initial_backoff: Some(initial_backoff),
        max_backoff: Some(max_backoff),
    };
    Ok(())
}
