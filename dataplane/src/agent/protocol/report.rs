//! Messages the gateway sends about itself: hello, heartbeats, queue
//! statistics.

use super::*;

// ---------------------------------------------------------------------------
// Hello.
// ---------------------------------------------------------------------------

/// What the gateway says about itself in `AgentHello`.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Persistent gateway id.
    pub gateway_id: String,
    /// Display name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `host:port` clients reach it at.
    pub advertised_address: String,
    /// `host:port` of the admin endpoint.
    pub admin_address: String,
    /// Host name of the machine.
    pub hostname: String,
    /// Gateway software version.
    pub version: String,
    /// Build identifier (git commit), when known at build time.
    pub build: String,
    /// Capabilities announced.
    pub capabilities: Vec<String>,
    /// Listeners served.
    pub listeners: Vec<pb::Listener>,
    /// When the process started.
    pub started_at: SystemTime,
}

/// The first message of every stream.
pub fn hello(
    identity: &Identity,
    applied_version: u64,
    local_task_ids: Vec<String>,
) -> pb::AgentStreamRequest {
    request(pb::agent_stream_request::Payload::Hello(pb::AgentHello {
        gateway_id: identity.gateway_id.clone(),
        name: identity.name.clone(),
        labels: identity
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        advertised_address: identity.advertised_address.clone(),
        admin_address: identity.admin_address.clone(),
        hostname: identity.hostname.clone(),
        version: identity.version.clone(),
        build: identity.build.clone(),
        capabilities: identity.capabilities.clone(),
        listeners: identity.listeners.clone(),
        applied_version,
        local_task_ids,
        // The gateway keeps no event outbox yet; it emits no events.
        last_event_sequence: 0,
        started_at: Some(timestamp(identity.started_at)),
    }))
}

pub(super) fn request(payload: pb::agent_stream_request::Payload) -> pb::AgentStreamRequest {
    pb::AgentStreamRequest {
        payload: Some(payload),
    }
}

// ---------------------------------------------------------------------------
// Heartbeats and queue statistics.
// ---------------------------------------------------------------------------

/// The gateway's replication as seen at one moment.
#[derive(Debug, Clone)]
pub struct TaskSnapshot {
    /// Task id reported (see [`LOCAL_TASK_ID`]).
    pub task_id: String,
    /// The queue's statistics.
    pub queue: QueueStats,
    /// The replayer is paused.
    pub paused: bool,
    /// The replayer is halted on a corrupt record (why).
    pub halted: Option<String>,
    /// The last replay failure, cleared by the next success.
    pub last_error: Option<String>,
    /// Primary and backup are swapped relative to the configuration.
    pub reversed: bool,
    /// Dead letters in the store.
    pub dead_letters: u64,
    /// Replay attempts retried since start.
    pub replay_retries_total: u64,
    /// Where the replayer is blocked (a repair dry run), when halted.
    pub corruption: Option<RepairReport>,
    /// Divergence counters kept across restarts.
    pub divergence: crate::counters::Persisted,
    /// Documents waiting to be queued for reconciliation.
    pub pending_reconciles: u64,
}

impl TaskSnapshot {
    fn replayer(&self) -> Option<&ConsumerStats> {
        self.queue.consumers.iter().find(|c| c.name == REPLAYER)
    }

    /// Records appended and not yet replayed (or dead-lettered), plus the
    /// documents waiting to be reconciled: the backup may differ on those
    /// too, so the task is not in sync while there are any.
    pub fn lag_records(&self) -> u64 {
        self.replayer()
            .map_or(0, |c| c.lag_records)
            .saturating_add(self.pending_reconciles)
    }

    /// Offset of the next record to replay.
    pub fn committed_offset(&self) -> u64 {
        match self.replayer() {
            Some(c) => c.acked_offset.map_or(0, |acked| acked + 1),
            None => self.queue.first_offset,
        }
    }

    fn blocked(&self) -> bool {
        self.halted.is_some() || self.replayer().is_some_and(|c| c.halted.is_some())
    }
}

/// Free and total bytes of the queue volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes available to the gateway.
    pub free_bytes: u64,
    /// Size of the volume.
    pub total_bytes: u64,
}

/// State of the replay consumer, as the contract names it.
pub fn consumer_state(task: &TaskSnapshot) -> pb::ConsumerState {
    if task.blocked() {
        pb::ConsumerState::BlockedCorrupt
    } else if task.paused {
        pb::ConsumerState::Paused
    } else if task.last_error.is_some() && task.lag_records() > 0 {
        pb::ConsumerState::BackingOff
    } else {
        pb::ConsumerState::Running
    }
}

/// Direction of a task given whether the roles are swapped.
pub fn direction(reversed: bool) -> pb::ReplicationDirection {
    if reversed {
        pb::ReplicationDirection::Reversed
    } else {
        pb::ReplicationDirection::Forward
    }
}

/// Runtime status of the task for a heartbeat.
///
/// Not tracked by this gateway and reported as zero/false: write holds
/// (`hold_id`, `held_writes`, `in_flight_writes`), `primary_reachable`,
/// limiter totals and shadow reads. `backup_reachable` is true unless the
/// last replay attempt failed.
pub fn task_status(task: &TaskSnapshot) -> pb::TaskRuntimeStatus {
    pb::TaskRuntimeStatus {
        task_id: task.task_id.clone(),
        mode: if task.paused {
            pb::TaskMode::RecordOnly
        } else {
            pb::TaskMode::Replay
        } as i32,
        direction: direction(task.reversed) as i32,
        lag_records: task.lag_records(),
        consumer_state: consumer_state(task) as i32,
        backup_reachable: task.last_error.is_none(),
        ..Default::default()
    }
}

/// Client traffic as a heartbeat reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainView {
    /// A drain was requested.
    pub draining: bool,
    /// Nothing left to wait for (no requests in flight, quiet, replayed).
    pub drained: bool,
    /// Client requests being served.
    pub in_flight_requests: u32,
    /// Time since the last client request.
    pub idle_for: Option<std::time::Duration>,
}

/// A heartbeat.
pub fn heartbeat(
    now: SystemTime,
    applied_version: u64,
    disk: Option<DiskUsage>,
    task: Option<&TaskSnapshot>,
    drain: DrainView,
) -> pb::AgentStreamRequest {
    let drain_state = match (drain.draining, drain.drained) {
        (false, _) => pb::DrainState::Serving,
        (true, false) => pb::DrainState::Draining,
        (true, true) => pb::DrainState::Drained,
    };
    request(pb::agent_stream_request::Payload::Heartbeat(
        pb::AgentHeartbeat {
            sent_at: Some(timestamp(now)),
            applied_version,
            // /ready answers 503 while draining.
            ready: !drain.draining,
            drain_state: drain_state as i32,
            in_flight_requests: drain.in_flight_requests,
            idle_for: drain
                .idle_for
                .and_then(|d| prost_types::Duration::try_from(d).ok()),
            disk_free_bytes: disk.map_or(0, |d| d.free_bytes),
            disk_total_bytes: disk.map_or(0, |d| d.total_bytes),
            tasks: task.map(task_status).into_iter().collect(),
        },
    ))
}

/// Append and replay rates.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    /// Records appended per second.
    pub append_records_per_second: f64,
    /// Records replayed per second.
    pub replay_records_per_second: f64,
}

/// Rates computed from successive samples of the head and committed offsets
/// (over the report interval, rather than the contract's ~10 s average).
#[derive(Debug, Default)]
pub struct RateTracker {
    last: Option<(Instant, u64, u64)>,
    rates: Rates,
}

impl RateTracker {
    /// Takes a sample; returns the rates since the previous one (zero for
    /// the first).
    pub fn update(&mut self, at: Instant, head: u64, committed: u64) -> Rates {
        if let Some((then, last_head, last_committed)) = self.last {
            let secs = at.saturating_duration_since(then).as_secs_f64();
            if secs < 0.001 {
                return self.rates;
            }
            self.rates = Rates {
                append_records_per_second: head.saturating_sub(last_head) as f64 / secs,
                replay_records_per_second: committed.saturating_sub(last_committed) as f64 / secs,
            };
        }
        self.last = Some((at, head, committed));
        self.rates
    }
}

/// The contract's `QueueStats` of the task's queue.
///
/// Mapping from the gateway's queue: `depth_records` counts every record
/// still on disk (`head - first`), `oldest_record_age` is the age of the
/// oldest record not yet acknowledged by every consumer, `lag_bytes`,
/// `replay_bytes_per_second`, `dead_letters_total` and
/// `writes_refused_total` are not tracked (zero).
pub fn queue_stats(task: &TaskSnapshot, rates: Rates, now: SystemTime) -> pb::QueueStats {
    let q = &task.queue;
    let replayer = task.replayer();
    pb::QueueStats {
        depth_records: q.next_offset.saturating_sub(q.first_offset),
        depth_bytes: q.bytes,
        oldest_record_age: Some(duration(q.oldest_unacked_age.unwrap_or_default())),
        lag_records: task.lag_records(),
        lag_bytes: 0,
        lag: Some(duration(replayer.map(|c| c.lag).unwrap_or_default())),
        append_records_per_second: rates.append_records_per_second,
        replay_records_per_second: rates.replay_records_per_second,
        replay_bytes_per_second: 0.0,
        dead_letters: task.dead_letters,
        dead_letters_total: 0,
        writes_refused_total: 0,
        replay_retries_total: task.replay_retries_total,
        first_offset: q.first_offset,
        head_offset: q.next_offset,
        committed_offset: task.committed_offset(),
        segments: u32::try_from(q.segments).unwrap_or(u32::MAX),
        consumer_state: consumer_state(task) as i32,
        corruption: if task.blocked() {
            Some(corruption(task))
        } else {
            None
        },
        collected_at: Some(timestamp(now)),
        verifier_divergences: task.divergence.verifier_divergences,
        unreconcilable_writes: task.divergence.unreconcilable_writes,
        last_divergence_at: task.divergence.last_divergence_at().map(timestamp),
        last_unreconcilable_at: task.divergence.last_unreconcilable_at().map(timestamp),
        pending_reconciles: task.pending_reconciles,
    }
}

pub(super) fn corruption(task: &TaskSnapshot) -> pb::QueueCorruption {
    match &task.corruption {
        Some(report) => pb::QueueCorruption {
            offset: report.first_lost_offset,
            segment: segment_name(report),
            segment_position: report.position,
            next_valid_offset: Some(report.resume_offset),
            detail: report.detail.clone(),
            detected_at: None,
        },
        None => pb::QueueCorruption {
            offset: task.committed_offset(),
            detail: task
                .halted
                .clone()
                .or_else(|| task.replayer().and_then(|c| c.halted.clone()))
                .unwrap_or_default(),
            ..Default::default()
        },
    }
}

pub(super) fn segment_name(report: &RepairReport) -> String {
    report
        .segment
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| report.segment.display().to_string())
}

/// A `QueueStatsReport` (empty without replication).
pub fn queue_stats_report(
    task: Option<&TaskSnapshot>,
    rates: Rates,
    now: SystemTime,
) -> pb::AgentStreamRequest {
    request(pb::agent_stream_request::Payload::QueueStats(
        pb::QueueStatsReport {
            tasks: task
                .map(|task| pb::TaskQueueReport {
                    task_id: task.task_id.clone(),
                    stats: Some(queue_stats(task, rates, now)),
                })
                .into_iter()
                .collect(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn snapshot() -> TaskSnapshot {
        TaskSnapshot {
            task_id: "t-1".into(),
            queue: QueueStats {
                records: 30,
                bytes: 4096,
                oldest_unacked_age: Some(Duration::from_secs(3)),
                first_offset: 10,
                next_offset: 50,
                segments: 2,
                consumers: vec![ConsumerStats {
                    name: REPLAYER.into(),
                    acked_offset: Some(19),
                    lag_records: 30,
                    lag: Duration::from_millis(2500),
                    halted: None,
                    records_lost: 0,
                }],
            },
            paused: false,
            halted: None,
            last_error: None,
            reversed: false,
            divergence: Default::default(),
            dead_letters: 2,
            replay_retries_total: 7,
            corruption: None,
            pending_reconciles: 0,
        }
    }

    #[test]
    fn queue_stats_map_the_gateway_queue() {
        let now = SystemTime::now();
        let rates = Rates {
            append_records_per_second: 4.0,
            replay_records_per_second: 2.0,
        };
        let stats = queue_stats(&snapshot(), rates, now);
        assert_eq!(stats.depth_records, 40);
        assert_eq!(stats.depth_bytes, 4096);
        assert_eq!(stats.lag_records, 30);
        assert_eq!(stats.first_offset, 10);
        assert_eq!(stats.head_offset, 50);
        assert_eq!(stats.committed_offset, 20);
        assert_eq!(
            stats.head_offset - stats.committed_offset,
            stats.lag_records
        );
        assert_eq!(stats.segments, 2);
        assert_eq!(stats.dead_letters, 2);
        assert_eq!(stats.replay_retries_total, 7);
        assert_eq!(
            stats.lag,
            Some(prost_types::Duration {
                seconds: 2,
                nanos: 500_000_000
            })
        );
        assert_eq!(stats.oldest_record_age.unwrap().seconds, 3);
        assert_eq!(stats.append_records_per_second, 4.0);
        // Documents waiting to be reconciled are lag too: the task is not
        // in sync until they are replayed.
        let waiting = TaskSnapshot {
            pending_reconciles: 3,
            ..snapshot()
        };
        let stats = queue_stats(&waiting, rates, now);
        assert_eq!((stats.lag_records, stats.pending_reconciles), (33, 3));
        assert_eq!(
            stats.head_offset - stats.committed_offset + stats.pending_reconciles,
            stats.lag_records
        );
        assert_eq!(task_status(&waiting).lag_records, 33);
        assert_eq!(stats.consumer_state, pb::ConsumerState::Running as i32);
        assert_eq!(stats.corruption, None);
        assert_eq!(stats.collected_at, Some(timestamp(now)));
    }

    #[test]
    fn consumer_state_follows_pause_halt_and_errors() {
        let mut task = snapshot();
        assert_eq!(consumer_state(&task), pb::ConsumerState::Running);
        task.last_error = Some("backup 503".into());
        assert_eq!(consumer_state(&task), pb::ConsumerState::BackingOff);
        task.paused = true;
        assert_eq!(consumer_state(&task), pb::ConsumerState::Paused);
        task.halted = Some("CRC mismatch".into());
        assert_eq!(consumer_state(&task), pb::ConsumerState::BlockedCorrupt);
        let stats = queue_stats(&task, Rates::default(), SystemTime::now());
        let corruption = stats.corruption.unwrap();
        assert_eq!(corruption.offset, 20);
        assert_eq!(corruption.detail, "CRC mismatch");

        task.corruption = Some(RepairReport {
            consumer: REPLAYER.into(),
            segment: PathBuf::from("/data/queue/00000000000000000003.seg"),
            position: 128,
            detail: "crc".into(),
            first_lost_offset: 20,
            last_lost_offset: 21,
            records_lost: 2,
            bytes_skipped: 77,
            resume_offset: 22,
            dry_run: true,
        });
        let corruption = queue_stats(&task, Rates::default(), SystemTime::now())
            .corruption
            .unwrap();
        assert_eq!(corruption.segment, "00000000000000000003.seg");
        assert_eq!(corruption.segment_position, 128);
        assert_eq!(corruption.next_valid_offset, Some(22));
    }

    #[test]
    fn heartbeat_reports_draining_then_drained_and_not_ready() {
        let draining = DrainView {
            draining: true,
            drained: false,
            in_flight_requests: 3,
            idle_for: Some(Duration::from_millis(1500)),
        };
        let Some(pb::agent_stream_request::Payload::Heartbeat(hb)) =
            heartbeat(SystemTime::now(), 1, None, None, draining).payload
        else {
            panic!("not a heartbeat");
        };
        assert!(!hb.ready);
        assert_eq!(hb.drain_state, pb::DrainState::Draining as i32);
        assert_eq!(hb.in_flight_requests, 3);
        assert_eq!(hb.idle_for.unwrap().seconds, 1);
        let drained = DrainView {
            drained: true,
            in_flight_requests: 0,
            ..draining
        };
        let Some(pb::agent_stream_request::Payload::Heartbeat(hb)) =
            heartbeat(SystemTime::now(), 1, None, None, drained).payload
        else {
            panic!("not a heartbeat");
        };
        assert_eq!(hb.drain_state, pb::DrainState::Drained as i32);
    }

    #[test]
    fn heartbeat_carries_task_status_and_disk() {
        let mut task = snapshot();
        task.reversed = true;
        task.paused = true;
        let msg = heartbeat(
            SystemTime::now(),
            4,
            Some(DiskUsage {
                free_bytes: 10,
                total_bytes: 100,
            }),
            Some(&task),
            DrainView::default(),
        );
        let Some(pb::agent_stream_request::Payload::Heartbeat(hb)) = msg.payload else {
            panic!("not a heartbeat");
        };
        assert_eq!(hb.applied_version, 4);
        assert!(hb.ready);
        assert_eq!(hb.drain_state, pb::DrainState::Serving as i32);
        assert_eq!(hb.disk_free_bytes, 10);
        assert_eq!(hb.disk_total_bytes, 100);
        let status = &hb.tasks[0];
        assert_eq!(status.task_id, "t-1");
        assert_eq!(status.mode, pb::TaskMode::RecordOnly as i32);
        assert_eq!(status.direction, pb::ReplicationDirection::Reversed as i32);
        assert_eq!(status.consumer_state, pb::ConsumerState::Paused as i32);
        assert_eq!(status.lag_records, 30);
        assert!(status.backup_reachable);

        let msg = heartbeat(SystemTime::now(), 0, None, None, DrainView::default());
        let Some(pb::agent_stream_request::Payload::Heartbeat(hb)) = msg.payload else {
            panic!("not a heartbeat");
        };
        assert!(hb.tasks.is_empty());
    }

    #[test]
    fn rates_come_from_successive_samples() {
        let mut tracker = RateTracker::default();
        let t0 = Instant::now();
        assert_eq!(tracker.update(t0, 100, 50), Rates::default());
        let rates = tracker.update(t0 + Duration::from_secs(2), 120, 60);
        assert_eq!(rates.append_records_per_second, 10.0);
        assert_eq!(rates.replay_records_per_second, 5.0);
        // A sample at the same instant keeps the last rates.
        assert_eq!(tracker.update(t0 + Duration::from_secs(2), 500, 500), rates);
    }

    #[test]
    fn hello_announces_the_gateway() {
        let identity = Identity {
            gateway_id: "gw-1".into(),
            name: "edge".into(),
            labels: BTreeMap::from([("zone".to_string(), "a".to_string())]),
            advertised_address: "10.0.0.1:9200".into(),
            admin_address: "127.0.0.1:9280".into(),
            hostname: "host".into(),
            version: "0.1.0".into(),
            build: String::new(),
            capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            listeners: vec![pb::Listener {
                name: "default".into(),
                address: "0.0.0.0:9200".into(),
                tls: false,
            }],
            started_at: UNIX_EPOCH + Duration::from_secs(1000),
        };
        let msg = hello(&identity, 12, vec!["t-1".into()]);
        let Some(pb::agent_stream_request::Payload::Hello(hello)) = msg.payload else {
            panic!("not a hello");
        };
        assert_eq!(hello.gateway_id, "gw-1");
        assert_eq!(hello.applied_version, 12);
        assert_eq!(hello.local_task_ids, vec!["t-1".to_string()]);
        assert_eq!(hello.labels.get("zone").map(String::as_str), Some("a"));
        assert_eq!(hello.started_at.unwrap().seconds, 1000);
        assert!(hello.capabilities.iter().any(|c| c == "cutover"));
    }
}
