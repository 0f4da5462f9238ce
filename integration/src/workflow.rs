//! Steps of the operator's workflow, shared by the tests that walk it:
//! a paused task set up in front of two clusters, writing and deleting
//! documents through a gateway, waiting on a task's state and lag, running
//! a migration job and a comparison job to their end, cutover and
//! rollback.

use std::time::{Duration, SystemTime};

use serde_json::json;

use tandem_client::AuthenticatedChannel;
use tandem_client::v1 as pb;
use tandem_client::v1::compare_service_client::CompareServiceClient;
use tandem_client::v1::migration_service_client::MigrationServiceClient;
use tandem_client::v1::replication_service_client::ReplicationServiceClient;

use crate::controlplane::{ControlPlaneApi, InProcessControlPlane, create_task_once_registered};
use crate::fresh_database;
use crate::gateway::{GatewayOptions, TestGateway};

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

/// Steps 1 and 2 of the workflow, set up: a control plane on a fresh
/// database with clusters `old` and `new` registered, a gateway in front of
/// `old` replicating to `new`, and a task between them created paused, its
/// gateway in sync. Writes through [`PausedTask::gateway`] are recorded
/// until [`PausedTask::start_replay`].
pub struct PausedTask {
    /// The control plane.
    pub cp: InProcessControlPlane,
    /// The gateway.
    pub gateway: TestGateway,
    /// A ReplicationService client.
    pub tasks: Tasks,
    /// The task's id.
    pub id: String,
    _queue_dir: tempfile::TempDir,
}

impl PausedTask {
    /// Sets it up; `name` (`[a-z0-9_]`) names the database, the gateway
    /// and the task.
    pub async fn start(name: &str, token: &str, old_url: &str, new_url: &str) -> PausedTask {
        let database = fresh_database(name).await;
        let cp =
            InProcessControlPlane::start(InProcessControlPlane::config(&database, token)).await;
        let mut clusters = cp.clusters().await;
        for (cluster, url) in [("old", old_url), ("new", new_url)] {
            clusters
                .register_cluster(pb::RegisterClusterRequest {
                    name: cluster.to_string(),
                    endpoints: vec![url.to_string()],
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("register {cluster} ({url}): {e:?}"));
        }
        let queue_dir = tempfile::tempdir().expect("queue dir");
        // Task and gateway names take `-` where database names take `_`.
        let dashed = name.replace('_', "-");
        let gateway_id = format!("gw-{dashed}");
        let mut options = GatewayOptions::replicating(old_url, new_url, queue_dir.path());
        options.paused = true;
        options.extra_toml = cp.agent_section(&gateway_id);
        let gateway = TestGateway::start_with(options).await;
        let mut tasks = cp.tasks().await;
        let task = create_task_once_registered(
            &mut tasks,
            pb::CreateTaskRequest {
                name: dashed,
                primary: by_name("old"),
                backup: by_name("new"),
                gateway_ids: vec![gateway_id],
                start_paused: true,
                ..Default::default()
            },
        )
        .await;
        let id = task.id;
        wait_task(&mut tasks, &id, "in sync", |t| {
            !t.gateways.is_empty() && t.gateways.iter().all(|g| g.in_sync)
        })
        .await;
        PausedTask {
            cp,
            gateway,
            tasks,
            id,
            _queue_dir: queue_dir,
        }
    }

    /// StartTask, then waits until the recorded writes are replayed.
    pub async fn start_replay(&mut self) {
        self.tasks
            .start_task(pb::StartTaskRequest {
                task_id: self.id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("start: {e:?}"));
        self.wait_replayed("drained after start").await;
    }

    /// Waits until every write made so far is replayed (lag 0 reported
    /// after this call).
    pub async fn wait_replayed(&mut self, what: &str) {
        let since = SystemTime::now();
        wait_task(&mut self.tasks, &self.id, what, drained_since(since)).await;
    }

    /// Cuts over (`new` becomes the primary) and waits until the task
    /// replays in the reversed direction.
    pub async fn cutover(&mut self) {
        self.tasks
            .cutover(pb::CutoverRequest {
                task_id: self.id.clone(),
                max_lag: Some(seconds(60)),
                hold_timeout: Some(seconds(10)),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("cutover: {e:?}"));
        self.wait_direction(pb::ReplicationDirection::Reversed, "new")
            .await;
    }

    /// Rolls back (`old` is the primary again) and waits until the task
    /// replays forward.
    pub async fn rollback(&mut self) {
        self.tasks
            .rollback(pb::RollbackRequest {
                task_id: self.id.clone(),
                max_lag: Some(seconds(60)),
                hold_timeout: Some(seconds(10)),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("rollback: {e:?}"));
        self.wait_direction(pb::ReplicationDirection::Forward, "old")
            .await;
    }

    async fn wait_direction(&mut self, direction: pb::ReplicationDirection, primary: &str) {
        let task = wait_task(&mut self.tasks, &self.id, "switched", |t| {
            task_state(t) == pb::TaskState::Running && task_direction(t) == direction
        })
        .await;
        assert_eq!(
            task.primary.as_ref().map(|p| p.cluster_name.as_str()),
            Some(primary)
        );
    }

    /// Stops the task (nothing discarded), the gateway and the control
    /// plane.
    pub async fn finish(mut self) {
        self.tasks
            .stop_task(pb::StopTaskRequest {
                task_id: self.id.clone(),
                discard_unreplayed: false,
            })
            .await
            .unwrap_or_else(|e| panic!("stop: {e:?}"));
        self.gateway.stop();
        self.cp.stop().await;
    }
}

/// A reference to the cluster registered as `name`.
pub fn by_name(name: &str) -> Option<pb::ClusterRef> {
    Some(pb::ClusterRef {
        cluster_name: name.to_string(),
        ..Default::default()
    })
}

fn seconds(seconds: i64) -> tandem_client::prost_types::Duration {
    tandem_client::prost_types::Duration { seconds, nanos: 0 }
}
