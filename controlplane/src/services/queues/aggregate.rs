//! Aggregation of queue statistics, as `QueueStats` in queue.proto defines
//! it: counts, sizes and rates are summed; ages and lags take the maximum
//! (the worst queue); offsets are left at zero; `consumer_state` is the most
//! severe state; `corruption` is left unset; `collected_at` is the oldest
//! report included.

use tandem_proto::v1 as pb;

/// How much a consumer state needs attention, for "most severe".
fn severity(state: i32) -> u8 {
    match pb::ConsumerState::try_from(state).unwrap_or(pb::ConsumerState::Unspecified) {
        pb::ConsumerState::Unspecified => 0,
        pb::ConsumerState::Stopped => 1,
        pb::ConsumerState::Running => 2,
        pb::ConsumerState::Paused => 3,
        pb::ConsumerState::BackingOff => 4,
        pb::ConsumerState::BlockedCorrupt => 5,
    }
}

fn longer(
    a: Option<prost_types::Duration>,
    b: Option<prost_types::Duration>,
) -> Option<prost_types::Duration> {
    match (a, b) {
        (Some(a), Some(b)) if (b.seconds, b.nanos) > (a.seconds, a.nanos) => Some(b),
        (Some(a), _) => Some(a),
        (None, b) => b,
    }
}

fn older(
    a: Option<prost_types::Timestamp>,
    b: Option<prost_types::Timestamp>,
) -> Option<prost_types::Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) if (b.seconds, b.nanos) < (a.seconds, a.nanos) => Some(b),
        (Some(a), _) => Some(a),
        (None, b) => b,
    }
}

/// The aggregate of `stats` (all zero when empty).
pub(crate) fn aggregate<'a>(stats: impl IntoIterator<Item = &'a pb::QueueStats>) -> pb::QueueStats {
    let mut total = pb::QueueStats::default();
    for s in stats {
        total.depth_records = total.depth_records.saturating_add(s.depth_records);
        total.depth_bytes = total.depth_bytes.saturating_add(s.depth_bytes);
        total.oldest_record_age = longer(total.oldest_record_age, s.oldest_record_age);
        total.lag_records = total.lag_records.saturating_add(s.lag_records);
        total.pending_reconciles = total
            .pending_reconciles
            .saturating_add(s.pending_reconciles);
        total.lag_bytes = total.lag_bytes.saturating_add(s.lag_bytes);
        total.lag = longer(total.lag, s.lag);
        total.append_records_per_second += s.append_records_per_second;
        total.replay_records_per_second += s.replay_records_per_second;
        total.replay_bytes_per_second += s.replay_bytes_per_second;
        total.dead_letters = total.dead_letters.saturating_add(s.dead_letters);
        total.dead_letters_total = total
            .dead_letters_total
            .saturating_add(s.dead_letters_total);
        total.writes_refused_total = total
            .writes_refused_total
            .saturating_add(s.writes_refused_total);
        total.replay_retries_total = total
            .replay_retries_total
            .saturating_add(s.replay_retries_total);
        total.segments = total.segments.saturating_add(s.segments);
        if severity(s.consumer_state) > severity(total.consumer_state) {
            total.consumer_state = s.consumer_state;
        }
        total.collected_at = older(total.collected_at, s.collected_at);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(seconds: i64) -> Option<prost_types::Duration> {
        Some(prost_types::Duration { seconds, nanos: 0 })
    }

    fn at(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn sums_counts_takes_worst_ages_and_oldest_collection() {
        let a = pb::QueueStats {
            depth_records: 10,
            lag_records: 4,
            lag: secs(3),
            oldest_record_age: secs(50),
            replay_records_per_second: 1.5,
            dead_letters: 1,
            head_offset: 99,
            committed_offset: 95,
            consumer_state: pb::ConsumerState::Running as i32,
            collected_at: at(200),
            corruption: Some(pb::QueueCorruption::default()),
            ..Default::default()
        };
        let b = pb::QueueStats {
            depth_records: 5,
            lag_records: 6,
            lag: secs(7),
            oldest_record_age: secs(20),
            replay_records_per_second: 2.0,
            segments: 2,
            consumer_state: pb::ConsumerState::BackingOff as i32,
            collected_at: at(100),
            ..Default::default()
        };
        let total = aggregate([&a, &b]);
        assert_eq!(total.depth_records, 15);
        assert_eq!(total.lag_records, 10);
        assert_eq!(total.lag, secs(7));
        assert_eq!(total.oldest_record_age, secs(50));
        assert_eq!(total.replay_records_per_second, 3.5);
        assert_eq!(total.dead_letters, 1);
        assert_eq!(total.segments, 2);
        assert_eq!(total.head_offset, 0);
        assert_eq!(total.committed_offset, 0);
        assert_eq!(total.consumer_state, pb::ConsumerState::BackingOff as i32);
        assert_eq!(total.collected_at, at(100));
        assert!(total.corruption.is_none());
        assert_eq!(aggregate([]), pb::QueueStats::default());
    }
}
