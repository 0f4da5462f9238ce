//! `WatchCompareJob`: a first snapshot, then the job's events and (with
//! `include_diffs`) its newly recorded differences as they are stored
//! (polled every 500 ms), a snapshot every `update_interval` and on every
//! state change, and a last snapshot once the job is terminal.

use std::time::Duration;

use tandem_proto::v1 as pb;
use tandem_proto::v1::watch_compare_job_response::Update;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::codegen::BoxStream;
use uuid::Uuid;

use super::convert;
use crate::api::Api;
use crate::compare::KIND;
use crate::jobs::is_terminal;
use crate::store::compare_diffs as diffs;
use crate::store::jobs as store;

/// How often events, differences and the state are looked at.
const POLL: Duration = Duration::from_millis(500);

type Sender = mpsc::Sender<Result<pb::WatchCompareJobResponse, Status>>;

async fn send(tx: &Sender, update: Update) -> bool {
    tx.send(Ok(pb::WatchCompareJobResponse {
        update: Some(update),
    }))
    .await
    .is_ok()
}

/// Starts the watch of `job_id`, `first` being its current snapshot.
pub fn spawn(
    api: Api,
    job_id: Uuid,
    first: pb::CompareJob,
    interval: Duration,
    include_diffs: bool,
) -> BoxStream<pb::WatchCompareJobResponse> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        tokio::select! {
            _ = run(&api, job_id, first, interval, include_diffs, &tx) => {}
            _ = api.fleet.shutting_down() => {
                let _ = tx.send(Err(Status::unavailable("the control plane is shutting down; watch again"))).await;
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

async fn run(
    api: &Api,
    job_id: Uuid,
    first: pb::CompareJob,
    interval: Duration,
    include_diffs: bool,
    tx: &Sender,
) {
    let mut state = first.state;
    let terminal = |state: i32| pb::JobState::try_from(state).is_ok_and(is_terminal);
    // Events and differences already stored are history; only new ones are
    // streamed.
    let mut last_event = match store::events(&api.pool, job_id, 0, i64::MAX).await {
        Ok(events) => events.last().map_or(0, |e| e.event_no),
        Err(_) => 0,
    };
    let mut last_diff = diffs::last_diff_no(&api.pool, job_id).await.unwrap_or(0);
    if !send(tx, Update::Job(first)).await || terminal(state) {
        return;
    }
    let mut next_snapshot = tokio::time::Instant::now() + interval;
    loop {
        tokio::time::sleep(POLL).await;
        if tx.is_closed() {
            return;
        }
        if let Ok(events) = store::events(&api.pool, job_id, last_event, 100).await {
            for event in events {
                last_event = event.event_no;
                if !send(tx, Update::Event(event.event)).await {
                    return;
                }
            }
        }
        if include_diffs
            && let Ok(rows) = diffs::recorded_after(&api.pool, job_id, last_diff, 1000).await
        {
            for row in rows {
                last_diff = row.diff_no;
                if !send(tx, Update::Diff(convert::diff(&row))).await {
                    return;
                }
            }
        }
        let job = match store::get(&api.pool, KIND, job_id).await {
            Ok(Some(job)) => job,
            Ok(None) => {
                let _ = tx
                    .send(Err(Status::not_found(format!(
                        "job_id: job {job_id} was deleted"
                    ))))
                    .await;
                return;
            }
            Err(err) => {
                tracing::debug!(%job_id, error = %err, "watch: cannot read the job; retrying");
                continue;
            }
        };
        let changed = job.state as i32 != state;
        if !changed && tokio::time::Instant::now() < next_snapshot {
            continue;
        }
        let Ok(snapshot) = api.compare_snapshot(&job, true).await else {
            continue;
        };
        state = snapshot.state;
        next_snapshot = tokio::time::Instant::now() + interval;
        if !send(tx, Update::Job(snapshot)).await || terminal(state) {
            return;
        }
    }
}
