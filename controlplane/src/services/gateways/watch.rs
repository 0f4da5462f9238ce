//! `WatchGateway`: snapshots and events of one gateway or the whole fleet,
//! by polling the store.
//!
//! Every [`POLL_INTERVAL`] the watched rows are read again. A gateway is
//! sent first, then whenever its connection, drain state, readiness, sync
//! (desired / applied versions) or announced facts change, and at least
//! every [`DRAINING_REFRESH`] while it drains. Gateway events stored after
//! the watch started follow as `Event` messages. Polling costs one query per
//! watcher per interval, which is fine for operator tools; a fleet-scale
//! consumer would want Postgres notifications instead.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::PgPool;
use tandem_proto::v1 as pb;
use tandem_proto::v1::watch_gateway_response::Update;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Status;

use super::convert;
use crate::fleet::Fleet;
use crate::services::store_status;
use crate::store::gateways as store;

/// How often the watched rows are read.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Longest silence about a draining gateway.
const DRAINING_REFRESH: Duration = Duration::from_secs(5);
/// Consecutive failed polls (about 10 s) before the watch gives up.
const MAX_FAILED_POLLS: u32 = 20;
/// Events sent per poll at most.
const EVENTS_PER_POLL: i64 = 500;

type Sender = mpsc::Sender<Result<pb::WatchGatewayResponse, Status>>;

/// What decides whether a snapshot is worth sending: the gateway without
/// the figures that change with every report.
fn watch_key(gateway: &pb::Gateway) -> pb::Gateway {
    pb::Gateway {
        last_seen_at: None,
        queue_stats: None,
        in_flight_requests: 0,
        disk_free_bytes: 0,
        drain: gateway.drain.map(|d| pb::DrainStatus {
            idle_for: None,
            in_flight_requests: 0,
            lag_records: 0,
            lag_records_paused: 0,
            ..d
        }),
        ..gateway.clone()
    }
}

/// Polls for the watch of `gateway_id` (every gateway when `None`) and
/// sends to `tx` until the client goes away or the server shuts down.
pub(crate) async fn run(pool: PgPool, fleet: Fleet, gateway_id: Option<String>, tx: Sender) {
    let mut sent: HashMap<String, (pb::Gateway, Instant)> = HashMap::new();
    let mut failed_polls = 0;
    let mut last_event = None;
    loop {
        match poll(
            &pool,
            gateway_id.as_deref(),
            &mut sent,
            &mut last_event,
            &tx,
        )
        .await
        {
            Ok(true) => failed_polls = 0,
            Ok(false) => return,
            Err(status) => {
                failed_polls += 1;
                if failed_polls >= MAX_FAILED_POLLS {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = tx.closed() => return,
            _ = fleet.shutting_down() => {
                let _ = tx
                    .send(Err(Status::unavailable(
                        "the control plane is shutting down; watch again",
                    )))
                    .await;
                return;
            }
        }
    }
}

/// One poll. `Ok(false)`: the watch is over (client gone, or the watched
/// gateway was deleted).
async fn poll(
    pool: &PgPool,
    gateway_id: Option<&str>,
    sent: &mut HashMap<String, (pb::Gateway, Instant)>,
    last_event: &mut Option<i64>,
    tx: &Sender,
) -> Result<bool, Status> {
    // Events count from the first poll: only what happens during the watch.
    let after = match *last_event {
        Some(n) => n,
        None => {
            let n = store::last_event_no(pool)
                .await
                .map_err(|e| store_status(e, "watching gateways"))?;
            *last_event = Some(n);
            n
        }
    };
    let records = store::all(pool, gateway_id)
        .await
        .map_err(|e| store_status(e, "watching gateways"))?;
    if let Some(id) = gateway_id
        && records.is_empty()
    {
        let _ = tx
            .send(Err(Status::not_found(format!(
                "gateway_id: gateway {id} was deleted"
            ))))
            .await;
        return Ok(false);
    }
    let now = Instant::now();
    for record in &records {
        let gateway = convert::gateway(record);
        let key = watch_key(&gateway);
        let due = match sent.get(&record.id) {
            None => true,
            Some((previous, at)) => {
                *previous != key
                    || (gateway
                        .drain
                        .is_some_and(|d| d.state == pb::DrainState::Draining as i32)
                        && now.duration_since(*at) >= DRAINING_REFRESH)
            }
        };
        if due {
            sent.insert(record.id.clone(), (key, now));
            let update = Update::Gateway(gateway);
            if tx
                .send(Ok(pb::WatchGatewayResponse {
                    update: Some(update),
                }))
                .await
                .is_err()
            {
                return Ok(false);
            }
        }
    }
    // Forget deleted gateways (a new one with the same id is sent again).
    sent.retain(|id, _| records.iter().any(|r| &r.id == id));

    let events = store::events_after(pool, gateway_id, after, EVENTS_PER_POLL)
        .await
        .map_err(|e| store_status(e, "watching gateway events"))?;
    for stored in events {
        *last_event = Some(stored.event_no);
        let update = Update::Event(stored.event);
        if tx
            .send(Ok(pb::WatchGatewayResponse {
                update: Some(update),
            }))
            .await
            .is_err()
        {
            return Ok(false);
        }
    }
    Ok(true)
}
