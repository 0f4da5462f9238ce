//! Stored gateways as `tandem.v1.Gateway` messages.

use tandem_proto::v1 as pb;

use crate::services::queues::aggregate::aggregate;
use crate::services::{duration, timestamp};
use crate::store::gateways::{Connection, DrainPhase, GatewayRecord};

/// A stored gateway as returned by the API. Figures the gateway reports
/// (readiness, in-flight requests, disk, queue statistics) are its latest
/// report, also while it is disconnected.
pub(crate) fn gateway(record: &GatewayRecord) -> pb::Gateway {
    let heartbeat = record.last_heartbeat.clone().unwrap_or_default();
    let queue_stats = record.last_queue_stats.as_ref().map(|report| {
        let stats: Vec<pb::QueueStats> = report
            .tasks
            .iter()
            .map(|t| t.stats.clone().unwrap_or_default())
            .collect();
        aggregate(&stats)
    });
    let drain = &record.drain;
    let lag_records = heartbeat.tasks.iter().map(|t| t.lag_records).sum();
    let lag_records_paused = heartbeat
        .tasks
        .iter()
        .filter(|t| t.consumer_state == pb::ConsumerState::Paused as i32)
        .map(|t| t.lag_records)
        .sum();
    pb::Gateway {
        id: record.id.clone(),
        name: record.name.clone(),
        labels: record
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        advertised_address: record.advertised_address.clone(),
        admin_address: record.admin_address.clone(),
        hostname: record.hostname.clone(),
        version: record.version.clone(),
        build: record.build.clone(),
        capabilities: record.capabilities.clone(),
        listeners: record.listeners.clone(),
        connection_state: match record.connection {
            Connection::Connected => pb::GatewayConnectionState::Connected,
            Connection::Disconnected => pb::GatewayConnectionState::Disconnected,
        } as i32,
        drain: Some(pb::DrainStatus {
            state: drain_state(drain.phase) as i32,
            started_at: drain.started_at.map(timestamp),
            drained_at: drain.drained_at.map(timestamp),
            quiet_period: drain.requested.then(|| duration(drain.quiet_period)),
            idle_for: heartbeat.idle_for,
            in_flight_requests: heartbeat.in_flight_requests,
            lag_records,
            lag_records_paused,
        }),
        ready: heartbeat.ready,
        desired_version: record.desired_version,
        applied_version: record.applied_version,
        task_ids: record.task_ids.clone(),
        in_flight_requests: heartbeat.in_flight_requests,
        queue_stats,
        disk_free_bytes: heartbeat.disk_free_bytes,
        disk_total_bytes: heartbeat.disk_total_bytes,
        started_at: record.started_at.map(timestamp),
        first_seen_at: Some(timestamp(record.first_seen_at)),
        connected_at: record.connected_at.map(timestamp),
        last_seen_at: record.last_seen_at.map(timestamp),
    }
}

/// The proto drain state of a stored phase.
pub(crate) fn drain_state(phase: DrainPhase) -> pb::DrainState {
    match phase {
        DrainPhase::Serving => pb::DrainState::Serving,
        DrainPhase::Draining => pb::DrainState::Draining,
        DrainPhase::Drained => pb::DrainState::Drained,
    }
}
