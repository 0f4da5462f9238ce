//! `WatchTask`: a first snapshot, then every 500 ms a new snapshot when the
//! task changed significantly, the events stored since, and periodic lag
//! samples, until the client cancels or the server shuts down.

use std::time::Duration;

use tandem_proto::v1 as pb;
use tandem_proto::v1::watch_task_response::Update;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::codegen::BoxStream;
use uuid::Uuid;

use crate::api::Api;
use crate::services::{duration, timestamp};
use crate::store::tasks as store;

/// How often the task is looked at.
const POLL: Duration = Duration::from_millis(500);

/// What the client asked for.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Interval between lag samples.
    pub lag_sample_interval: Duration,
    /// Send lag samples.
    pub lag_samples: bool,
    /// Lowest severity of events sent.
    pub min_severity: pb::EventSeverity,
}

type Sender = mpsc::Sender<Result<pb::WatchTaskResponse, Status>>;

/// What makes a new snapshot worth sending.
fn fingerprint(task: &pb::ReplicationTask) -> String {
    let gateways: Vec<_> = task
        .gateways
        .iter()
        .map(|g| {
            (
                g.connected,
                g.in_sync,
                g.mode,
                g.direction,
                g.lag_records == 0,
            )
        })
        .collect();
    format!(
        "{}|{}|{:?}|{:?}|{}|{:?}|{}",
        task.state,
        task.direction,
        task.current_operation
            .as_ref()
            .map(|o| (&o.id, o.phase, o.gateways_ready)),
        task.last_operation.as_ref().map(|o| &o.id),
        task.health,
        gateways,
        task.updated_at
            .as_ref()
            .map_or(0, |t| t.seconds * 1_000_000_000 + i64::from(t.nanos)),
    )
}

fn sample(task: &pb::ReplicationTask) -> pb::LagSample {
    let stats = task.queue_stats.clone().unwrap_or_default();
    let stale = task.gateways.iter().filter(|g| !g.connected).count() as u32;
    pb::LagSample {
        sampled_at: Some(timestamp(chrono::Utc::now())),
        lag_records: stats.lag_records,
        lag: stats.lag.or_else(|| Some(duration(Duration::ZERO))),
        dead_letters: stats.dead_letters,
        gateways_reporting: task.gateways.len() as u32 - stale,
        gateways_stale: stale,
        ..Default::default()
    }
}

async fn send(tx: &Sender, update: Update) -> bool {
    tx.send(Ok(pb::WatchTaskResponse {
        update: Some(update),
    }))
    .await
    .is_ok()
}

/// Starts the watch of `task_id`, `first` being its current snapshot.
pub fn spawn(
    api: Api,
    task_id: Uuid,
    first: pb::ReplicationTask,
    options: Options,
) -> BoxStream<pb::WatchTaskResponse> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        tokio::select! {
            _ = run(&api, task_id, first, options, &tx) => {}
            _ = api.fleet.shutting_down() => {
                let _ = tx.send(Err(Status::unavailable("the control plane is shutting down; watch again"))).await;
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

async fn run(api: &Api, task_id: Uuid, first: pb::ReplicationTask, options: Options, tx: &Sender) {
    let mut last_event = match store::events(
        &api.pool,
        task_id,
        None,
        None,
        pb::EventSeverity::Unspecified,
        1,
    )
    .await
    {
        Ok(events) => events.first().map_or(0, |e| e.event_no),
        Err(_) => 0,
    };
    let mut last = fingerprint(&first);
    let first_sample = sample(&first);
    if !send(tx, Update::Task(first)).await {
        return;
    }
    if options.lag_samples && !send(tx, Update::LagSample(first_sample)).await {
        return;
    }
    let mut next_sample = tokio::time::Instant::now() + options.lag_sample_interval;
    loop {
        tokio::time::sleep(POLL).await;
        if tx.is_closed() {
            return;
        }
        let task = match store::get(&api.pool, task_id).await {
            Ok(Some(task)) => task,
            Ok(None) => {
                let _ = tx
                    .send(Err(Status::not_found(format!(
                        "task_id: task {task_id} was deleted"
                    ))))
                    .await;
                return;
            }
            Err(err) => {
                tracing::debug!(%task_id, error = %err, "watch: cannot read the task; retrying");
                continue;
            }
        };
        if let Ok(events) = store::events(
            &api.pool,
            task_id,
            Some(last_event),
            None,
            options.min_severity,
            100,
        )
        .await
        {
            for event in events {
                last_event = last_event.max(event.event_no);
                if !send(tx, Update::Event(event.event)).await {
                    return;
                }
            }
        }
        let Ok(snapshot) = api.snapshot(&task).await else {
            continue;
        };
        if options.lag_samples && tokio::time::Instant::now() >= next_sample {
            next_sample = tokio::time::Instant::now() + options.lag_sample_interval;
            if !send(tx, Update::LagSample(sample(&snapshot))).await {
                return;
            }
        }
        let print = fingerprint(&snapshot);
        if print != last {
            last = print;
            if !send(tx, Update::Task(snapshot)).await {
                return;
            }
        }
    }
}
