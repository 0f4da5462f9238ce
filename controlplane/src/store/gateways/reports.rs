//! The JSON form of the agent reports kept in `gateways.last_heartbeat` and
//! `gateways.last_queue_stats`.
//!
//! The generated `tandem.v1` types have no serde support, so these mirrors
//! spell the stored shape out: proto field names, enums as their proto names
//! (`"CONSUMER_STATE_RUNNING"`; a number when the agent sent a value this
//! control plane does not know), timestamps as RFC 3339, durations as
//! `{"seconds": s, "nanos": n}`. Every field has a default, so a document
//! written by an older or newer control plane still reads.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tandem_proto::v1 as pb;

/// A stored `google.protobuf.Duration`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct DurationJson {
    seconds: i64,
    nanos: i32,
}

impl DurationJson {
    fn from_proto(d: Option<&prost_types::Duration>) -> Option<DurationJson> {
        d.map(|d| DurationJson {
            seconds: d.seconds,
            nanos: d.nanos,
        })
    }

    fn into_proto(d: Option<DurationJson>) -> Option<prost_types::Duration> {
        d.map(|d| prost_types::Duration {
            seconds: d.seconds,
            nanos: d.nanos,
        })
    }
}

/// A `google.protobuf.Timestamp` as a time (unset or out of range: `None`).
pub(crate) fn time_from_proto(t: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
}

fn time_into_proto(t: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    t.map(|t| prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos().min(999_999_999) as i32,
    })
}

/// An enum value as its proto name, or its number when unknown here.
fn enum_name(value: i32, name: Option<&'static str>) -> String {
    name.map(str::to_string)
        .unwrap_or_else(|| value.to_string())
}

/// The number of a stored enum value (0, the `*_UNSPECIFIED` value, when
/// unreadable).
fn enum_number(text: &str, from_name: impl Fn(&str) -> Option<i32>) -> i32 {
    from_name(text)
        .or_else(|| text.parse().ok())
        .unwrap_or_default()
}

/// A stored `AgentHeartbeat`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct HeartbeatJson {
    sent_at: Option<DateTime<Utc>>,
    applied_version: u64,
    ready: bool,
    drain_state: String,
    in_flight_requests: u32,
    idle_for: Option<DurationJson>,
    disk_free_bytes: u64,
    disk_total_bytes: u64,
    tasks: Vec<TaskRuntimeJson>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct TaskRuntimeJson {
    task_id: String,
    mode: String,
    direction: String,
    hold_id: String,
    held_writes: u32,
    in_flight_writes: u32,
    lag_records: u64,
    consumer_state: String,
    primary_reachable: bool,
    backup_reachable: bool,
    limiter_waits_total: u64,
    limiter_rejections_total: u64,
    shadow_reads: Option<ShadowReadsJson>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct ShadowReadsJson {
    sampled_total: u64,
    mismatched_total: u64,
    mismatch_ratio: f64,
    window: Option<DurationJson>,
}

impl HeartbeatJson {
    /// The stored form of `heartbeat`.
    pub(crate) fn from_proto(heartbeat: &pb::AgentHeartbeat) -> HeartbeatJson {
        HeartbeatJson {
            sent_at: time_from_proto(heartbeat.sent_at.as_ref()),
            applied_version: heartbeat.applied_version,
            ready: heartbeat.ready,
            drain_state: enum_name(
                heartbeat.drain_state,
                pb::DrainState::try_from(heartbeat.drain_state)
                    .ok()
                    .map(|s| s.as_str_name()),
            ),
            in_flight_requests: heartbeat.in_flight_requests,
            idle_for: DurationJson::from_proto(heartbeat.idle_for.as_ref()),
            disk_free_bytes: heartbeat.disk_free_bytes,
            disk_total_bytes: heartbeat.disk_total_bytes,
            tasks: heartbeat
                .tasks
                .iter()
                .map(|t| TaskRuntimeJson {
                    task_id: t.task_id.clone(),
                    mode: enum_name(
                        t.mode,
                        pb::TaskMode::try_from(t.mode).ok().map(|m| m.as_str_name()),
                    ),
                    direction: enum_name(
                        t.direction,
                        pb::ReplicationDirection::try_from(t.direction)
                            .ok()
                            .map(|d| d.as_str_name()),
                    ),
                    hold_id: t.hold_id.clone(),
                    held_writes: t.held_writes,
                    in_flight_writes: t.in_flight_writes,
                    lag_records: t.lag_records,
                    consumer_state: consumer_state_name(t.consumer_state),
                    primary_reachable: t.primary_reachable,
                    backup_reachable: t.backup_reachable,
                    limiter_waits_total: t.limiter_waits_total,
                    limiter_rejections_total: t.limiter_rejections_total,
                    shadow_reads: t.shadow_reads.as_ref().map(|s| ShadowReadsJson {
                        sampled_total: s.sampled_total,
                        mismatched_total: s.mismatched_total,
                        mismatch_ratio: s.mismatch_ratio,
                        window: DurationJson::from_proto(s.window.as_ref()),
                    }),
                })
                .collect(),
        }
    }

    /// The heartbeat as the agent sent it.
    pub(crate) fn into_proto(self) -> pb::AgentHeartbeat {
        pb::AgentHeartbeat {
            sent_at: time_into_proto(self.sent_at),
            applied_version: self.applied_version,
            ready: self.ready,
            drain_state: enum_number(&self.drain_state, |n| {
                pb::DrainState::from_str_name(n).map(|s| s as i32)
            }),
            in_flight_requests: self.in_flight_requests,
            idle_for: DurationJson::into_proto(self.idle_for),
            disk_free_bytes: self.disk_free_bytes,
            disk_total_bytes: self.disk_total_bytes,
            tasks: self
                .tasks
                .into_iter()
                .map(|t| pb::TaskRuntimeStatus {
                    task_id: t.task_id,
                    mode: enum_number(&t.mode, |n| {
                        pb::TaskMode::from_str_name(n).map(|m| m as i32)
                    }),
                    direction: enum_number(&t.direction, |n| {
                        pb::ReplicationDirection::from_str_name(n).map(|d| d as i32)
                    }),
                    hold_id: t.hold_id,
                    held_writes: t.held_writes,
                    in_flight_writes: t.in_flight_writes,
                    lag_records: t.lag_records,
                    consumer_state: consumer_state_number(&t.consumer_state),
                    primary_reachable: t.primary_reachable,
                    backup_reachable: t.backup_reachable,
                    limiter_waits_total: t.limiter_waits_total,
                    limiter_rejections_total: t.limiter_rejections_total,
                    shadow_reads: t.shadow_reads.map(|s| pb::ShadowReadStats {
                        sampled_total: s.sampled_total,
                        mismatched_total: s.mismatched_total,
                        mismatch_ratio: s.mismatch_ratio,
                        window: DurationJson::into_proto(s.window),
                    }),
                })
                .collect(),
        }
    }
}

fn consumer_state_name(value: i32) -> String {
    enum_name(
        value,
        pb::ConsumerState::try_from(value)
            .ok()
            .map(|s| s.as_str_name()),
    )
}

fn consumer_state_number(text: &str) -> i32 {
    enum_number(text, |n| {
        pb::ConsumerState::from_str_name(n).map(|s| s as i32)
    })
}

/// A stored `QueueStatsReport`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct QueueStatsReportJson {
    tasks: Vec<TaskQueueJson>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct TaskQueueJson {
    task_id: String,
    stats: Option<QueueStatsJson>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct QueueStatsJson {
    depth_records: u64,
    depth_bytes: u64,
    oldest_record_age: Option<DurationJson>,
    lag_records: u64,
    lag_bytes: u64,
    lag: Option<DurationJson>,
    append_records_per_second: f64,
    replay_records_per_second: f64,
    replay_bytes_per_second: f64,
    dead_letters: u64,
    dead_letters_total: u64,
    writes_refused_total: u64,
    replay_retries_total: u64,
    first_offset: u64,
    head_offset: u64,
    committed_offset: u64,
    segments: u32,
    consumer_state: String,
    corruption: Option<CorruptionJson>,
    collected_at: Option<DateTime<Utc>>,
    verifier_divergences: u64,
    unreconcilable_writes: u64,
    last_divergence_at: Option<DateTime<Utc>>,
    last_unreconcilable_at: Option<DateTime<Utc>>,
    pending_reconciles: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct CorruptionJson {
    offset: u64,
    segment: String,
    segment_position: u64,
    next_valid_offset: Option<u64>,
    detail: String,
    detected_at: Option<DateTime<Utc>>,
}

impl QueueStatsReportJson {
    /// The stored form of `report`.
    pub(crate) fn from_proto(report: &pb::QueueStatsReport) -> QueueStatsReportJson {
        QueueStatsReportJson {
            tasks: report
                .tasks
                .iter()
                .map(|t| TaskQueueJson {
                    task_id: t.task_id.clone(),
                    stats: t.stats.as_ref().map(QueueStatsJson::from_proto),
                })
                .collect(),
        }
    }

    /// The report as the agent sent it.
    pub(crate) fn into_proto(self) -> pb::QueueStatsReport {
        pb::QueueStatsReport {
            tasks: self
                .tasks
                .into_iter()
                .map(|t| pb::TaskQueueReport {
                    task_id: t.task_id,
                    stats: t.stats.map(QueueStatsJson::into_proto),
                })
                .collect(),
        }
    }
}

impl QueueStatsJson {
    fn from_proto(s: &pb::QueueStats) -> QueueStatsJson {
        QueueStatsJson {
            depth_records: s.depth_records,
            depth_bytes: s.depth_bytes,
            oldest_record_age: DurationJson::from_proto(s.oldest_record_age.as_ref()),
            lag_records: s.lag_records,
            lag_bytes: s.lag_bytes,
            lag: DurationJson::from_proto(s.lag.as_ref()),
            append_records_per_second: s.append_records_per_second,
            replay_records_per_second: s.replay_records_per_second,
            replay_bytes_per_second: s.replay_bytes_per_second,
            dead_letters: s.dead_letters,
            dead_letters_total: s.dead_letters_total,
            writes_refused_total: s.writes_refused_total,
            replay_retries_total: s.replay_retries_total,
            first_offset: s.first_offset,
            head_offset: s.head_offset,
            committed_offset: s.committed_offset,
            segments: s.segments,
            consumer_state: consumer_state_name(s.consumer_state),
            corruption: s.corruption.as_ref().map(|c| CorruptionJson {
                offset: c.offset,
                segment: c.segment.clone(),
                segment_position: c.segment_position,
                next_valid_offset: c.next_valid_offset,
                detail: c.detail.clone(),
                detected_at: time_from_proto(c.detected_at.as_ref()),
            }),
            collected_at: time_from_proto(s.collected_at.as_ref()),
            verifier_divergences: s.verifier_divergences,
            unreconcilable_writes: s.unreconcilable_writes,
            last_divergence_at: time_from_proto(s.last_divergence_at.as_ref()),
            last_unreconcilable_at: time_from_proto(s.last_unreconcilable_at.as_ref()),
            pending_reconciles: s.pending_reconciles,
        }
    }

    fn into_proto(self) -> pb::QueueStats {
        pb::QueueStats {
            depth_records: self.depth_records,
            depth_bytes: self.depth_bytes,
            oldest_record_age: DurationJson::into_proto(self.oldest_record_age),
            lag_records: self.lag_records,
            lag_bytes: self.lag_bytes,
            lag: DurationJson::into_proto(self.lag),
            append_records_per_second: self.append_records_per_second,
            replay_records_per_second: self.replay_records_per_second,
            replay_bytes_per_second: self.replay_bytes_per_second,
            dead_letters: self.dead_letters,
            dead_letters_total: self.dead_letters_total,
            writes_refused_total: self.writes_refused_total,
            replay_retries_total: self.replay_retries_total,
            first_offset: self.first_offset,
            head_offset: self.head_offset,
            committed_offset: self.committed_offset,
            segments: self.segments,
            consumer_state: consumer_state_number(&self.consumer_state),
            corruption: self.corruption.map(|c| pb::QueueCorruption {
                offset: c.offset,
                segment: c.segment,
                segment_position: c.segment_position,
                next_valid_offset: c.next_valid_offset,
                detail: c.detail,
                detected_at: time_into_proto(c.detected_at),
            }),
            collected_at: time_into_proto(self.collected_at),
            verifier_divergences: self.verifier_divergences,
            unreconcilable_writes: self.unreconcilable_writes,
            last_divergence_at: time_into_proto(self.last_divergence_at),
            last_unreconcilable_at: time_into_proto(self.last_unreconcilable_at),
            pending_reconciles: self.pending_reconciles,
        }
    }
}

/// A stored `Listener`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ListenerJson {
    name: String,
    address: String,
    tls: bool,
}

impl ListenerJson {
    /// The stored form of `listener`.
    pub(crate) fn from_proto(listener: &pb::Listener) -> ListenerJson {
        ListenerJson {
            name: listener.name.clone(),
            address: listener.address.clone(),
            tls: listener.tls,
        }
    }

    /// The listener as announced.
    pub(crate) fn into_proto(self) -> pb::Listener {
        pb::Listener {
            name: self.name,
            address: self.address,
            tls: self.tls,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos })
    }

    fn dur(seconds: i64, nanos: i32) -> Option<prost_types::Duration> {
        Some(prost_types::Duration { seconds, nanos })
    }

    #[test]
    fn heartbeat_round_trips_through_json() {
        let heartbeat = pb::AgentHeartbeat {
            sent_at: ts(1_700_000_000, 123_456_789),
            applied_version: 7,
            ready: true,
            drain_state: pb::DrainState::Draining as i32,
            in_flight_requests: 3,
            idle_for: dur(2, 500_000_000),
            disk_free_bytes: 10,
            disk_total_bytes: 20,
            tasks: vec![pb::TaskRuntimeStatus {
                task_id: "t1".into(),
                mode: 99, // unknown to this control plane: kept as a number
                direction: pb::ReplicationDirection::Reversed as i32,
                hold_id: "h".into(),
                held_writes: 1,
                in_flight_writes: 2,
                lag_records: 42,
                consumer_state: pb::ConsumerState::BackingOff as i32,
                primary_reachable: true,
                backup_reachable: false,
                limiter_waits_total: 5,
                limiter_rejections_total: 6,
                shadow_reads: Some(pb::ShadowReadStats {
                    sampled_total: 100,
                    mismatched_total: 1,
                    mismatch_ratio: 0.01,
                    window: dur(60, 0),
                }),
            }],
        };
        let json = serde_json::to_value(HeartbeatJson::from_proto(&heartbeat)).unwrap();
        assert_eq!(
            json["tasks"][0]["consumer_state"],
            "CONSUMER_STATE_BACKING_OFF"
        );
        assert_eq!(json["tasks"][0]["mode"], "99");
        let back: HeartbeatJson = serde_json::from_value(json).unwrap();
        assert_eq!(back.into_proto(), heartbeat);
    }

    #[test]
    fn queue_stats_round_trip_through_json() {
        let report = pb::QueueStatsReport {
            tasks: vec![pb::TaskQueueReport {
                task_id: "t1".into(),
                stats: Some(pb::QueueStats {
                    depth_records: 1,
                    depth_bytes: 2,
                    oldest_record_age: dur(3, 0),
                    lag_records: 4,
                    lag_bytes: 5,
                    lag: dur(6, 7),
                    append_records_per_second: 8.5,
                    replay_records_per_second: 9.5,
                    replay_bytes_per_second: 10.5,
                    dead_letters: 11,
                    dead_letters_total: 12,
                    writes_refused_total: 13,
                    replay_retries_total: 14,
                    first_offset: 15,
                    head_offset: 16,
                    committed_offset: 17,
                    segments: 18,
                    consumer_state: pb::ConsumerState::BlockedCorrupt as i32,
                    corruption: Some(pb::QueueCorruption {
                        offset: 19,
                        segment: "00000001.seg".into(),
                        segment_position: 20,
                        next_valid_offset: Some(21),
                        detail: "CRC32C mismatch".into(),
                        detected_at: ts(1_700_000_001, 0),
                    }),
                    collected_at: ts(1_700_000_002, 5),
                    verifier_divergences: 22,
                    unreconcilable_writes: 23,
                    last_divergence_at: ts(1_700_000_003, 0),
                    last_unreconcilable_at: ts(1_700_000_004, 0),
                    pending_reconciles: 24,
                }),
            }],
        };
        let json = serde_json::to_value(QueueStatsReportJson::from_proto(&report)).unwrap();
        let back: QueueStatsReportJson = serde_json::from_value(json).unwrap();
        assert_eq!(back.into_proto(), report);
        // Documents with missing fields still read.
        let sparse: QueueStatsReportJson =
            serde_json::from_str(r#"{"tasks":[{"task_id":"t","stats":{"lag_records":3}}]}"#)
                .unwrap();
        assert_eq!(
            sparse.into_proto().tasks[0]
                .stats
                .as_ref()
                .unwrap()
                .lag_records,
            3
        );
    }
}
