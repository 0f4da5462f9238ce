//! Steps of the operator's workflow, shared by the tests that walk it:
//! writing and deleting documents through a gateway, waiting on a task's
//! state and lag, running a migration job and a
//! comparison job to their end.

use std::time::{Duration, SystemTime};

use serde_json::json;

use tandem_client::AuthenticatedChannel;
use tandem_client::v1 as pb;
use tandem_client::v1::compare_service_client::CompareServiceClient;
use tandem_client::v1::migration_service_client::MigrationServiceClient;
use tandem_client::v1::replication_service_client::ReplicationServiceClient;

/// How long a step may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(180);

type Tasks = ReplicationServiceClient<AuthenticatedChannel>;

/// GetTask.
pub async fn get_task(tasks: &mut Tasks, id: &str) -> pb::ReplicationTask {
    tasks
        .get_task(pb::GetTaskRequest {
            task_id: id.to_string(),
        })
        .await
        .unwrap_or_else(|e| panic!("get task {id}: {e:?}"))
        .into_inner()
        .task
        .expect("a task")
}

/// Polls GetTask until `done` holds; fails after [`WAIT`] naming `what`.
pub async fn wait_task(
    tasks: &mut Tasks,
    id: &str,
    what: &str,
    done: impl Fn(&pb::ReplicationTask) -> bool,
) -> pb::ReplicationTask {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let task = get_task(tasks, id).await;
        if done(&task) {
            return task;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task never became {what}: {task:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The task's state.
pub fn task_state(task: &pb::ReplicationTask) -> pb::TaskState {
    pb::TaskState::try_from(task.state).unwrap_or_default()
}

/// The task's direction.
pub fn task_direction(task: &pb::ReplicationTask) -> pb::ReplicationDirection {
    pb::ReplicationDirection::try_from(task.direction).unwrap_or_default()
}

/// Every gateway connected, in sync and at lag 0.
pub fn drained(task: &pb::ReplicationTask) -> bool {
    !task.gateways.is_empty()
        && task
            .gateways
            .iter()
            .all(|g| g.connected && g.in_sync && g.lag_records == 0)
}

/// [`drained`] as reported by heartbeats received after `since` (earlier
/// ones may predate the writes being waited for).
pub fn drained_since(since: SystemTime) -> impl Fn(&pb::ReplicationTask) -> bool {
    move |task| {
        drained(task)
            && task.gateways.iter().all(|g| {
                g.reported_at
                    .and_then(|t| SystemTime::try_from(t).ok())
                    .is_some_and(|at| at > since + Duration::from_millis(50))
            })
    }
}

/// Writes `range` through `url` with `phase` in each document, asserting
/// each write is accepted.
pub async fn write(url: &str, doc: &str, index: &str, range: std::ops::Range<u32>, phase: &str) {
    for i in range {
        let (status, body) = crate::client::call(
            reqwest::Method::PUT,
            format!("{url}/{index}/{doc}/{i}"),
            Some(json!({ "i": i, "phase": phase })),
        )
        .await;
        assert!(
            status == 200 || status == 201,
            "{phase} {i}: {status} {body}"
        );
    }
}

/// Deletes document `id` through `url`, asserting it existed.
pub async fn delete(url: &str, doc: &str, index: &str, id: u32) {
    let (status, body) = crate::client::call(
        reqwest::Method::DELETE,
        format!("{url}/{index}/{doc}/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "delete {id}: {body}");
}

/// Creates a migration job and waits until it ends; returns it.
pub async fn run_migration(
    client: &mut MigrationServiceClient<AuthenticatedChannel>,
    request: pb::CreateMigrationJobRequest,
) -> pb::MigrationJob {
    let id = client
        .create_migration_job(request)
        .await
        .unwrap_or_else(|e| panic!("create migration job: {e:?}"))
        .into_inner()
        .job
        .expect("a job")
        .id;
    wait_migration(client, &id).await
}

/// Waits until migration job `id` ends; returns it.
pub async fn wait_migration(
    client: &mut MigrationServiceClient<AuthenticatedChannel>,
    id: &str,
) -> pb::MigrationJob {
    until_finished(
        "migration job",
        |job: &pb::MigrationJob| job.state,
        || {
            let (mut client, id) = (client.clone(), id.to_string());
            async move {
                client
                    .get_migration_job(pb::GetMigrationJobRequest { job_id: id })
                    .await
                    .unwrap_or_else(|e| panic!("get migration job: {e:?}"))
                    .into_inner()
                    .job
                    .expect("a job")
            }
        },
    )
    .await
}

/// Creates a comparison job and waits until it ends; returns it.
pub async fn run_comparison(
    client: &mut CompareServiceClient<AuthenticatedChannel>,
    request: pb::CreateCompareJobRequest,
) -> pb::CompareJob {
    let id = client
        .create_compare_job(request)
        .await
        .unwrap_or_else(|e| panic!("create comparison job: {e:?}"))
        .into_inner()
        .job
        .expect("a job")
        .id;
    until_finished(
        "comparison job",
        |job: &pb::CompareJob| job.state,
        || {
            let (mut client, id) = (client.clone(), id.clone());
            async move {
                client
                    .get_compare_job(pb::GetCompareJobRequest { job_id: id })
                    .await
                    .unwrap_or_else(|e| panic!("get comparison job: {e:?}"))
                    .into_inner()
                    .job
                    .expect("a job")
            }
        },
    )
    .await
}

/// Polls `get` until the job it returns is terminal; fails after [`WAIT`].
async fn until_finished<J: std::fmt::Debug, F: std::future::Future<Output = J>>(
    what: &str,
    state: impl Fn(&J) -> i32,
    mut get: impl FnMut() -> F,
) -> J {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let job = get().await;
        if job_finished(state(&job)) {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never ended: {job:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn job_finished(state: i32) -> bool {
    matches!(
        pb::JobState::try_from(state).unwrap_or_default(),
        pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled
    )
}
