//! ReplicationService end to end: a real control plane on a fresh Postgres
//! database.
//!
//! The seed workflow runs a real gateway (its `[control_plane]` agent) in
//! front of the es7 and os2 clusters: create a task paused, write through
//! the gateway, start it (the backlog drains), cut over, write, roll back,
//! and check both clusters hold the same documents. The other tests use a
//! scripted agent (hello, then heartbeats echoing the desired state with a
//! chosen lag) to check validation, authentication, illegal transitions,
//! the lag precondition of a cutover, and task updates.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tandem_client::v1::cluster_service_client::ClusterServiceClient;
use tandem_client::v1::replication_service_client::ReplicationServiceClient;
use tandem_client::{AuthenticatedChannel, BearerToken};
use tandem_integration::controlplane::{
    ControlPlaneApi, InProcessControlPlane, create_task_once_registered,
};
use tandem_integration::gateway::{GatewayOptions, TestGateway};
use tandem_integration::unique_index;
use tandem_integration::workflow::{
    drained, drained_since, get_task as get, task_direction as direction, task_state as state,
    wait_task,
};
use tandem_proto::v1 as pb;
use tandem_proto::v1::agent_stream_request::Payload as Up;
use tandem_proto::v1::agent_stream_response::Payload as Down;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

const TOKEN: &str = "replication-service-test-token-0123456789";
const WAIT: Duration = Duration::from_secs(30);

type Tasks = ReplicationServiceClient<AuthenticatedChannel>;
type Clusters = ClusterServiceClient<AuthenticatedChannel>;

/// A control plane on a fresh database, with agent intervals of
/// `heartbeat_ms`.
async fn start_control_plane(heartbeat_ms: u64) -> InProcessControlPlane {
    let database_url = tandem_integration::fresh_database("cp_tasks").await;
    let mut config = InProcessControlPlane::config(&database_url, TOKEN);
    config.agent_heartbeat_interval_ms = heartbeat_ms;
    config.agent_stats_interval_ms = heartbeat_ms;
    InProcessControlPlane::start(config).await
}

fn token(bearer: Option<&str>) -> BearerToken {
    BearerToken::new(bearer).unwrap()
}

fn new_gateway_id() -> String {
    format!("gw-{}", uuid_like())
}

fn uuid_like() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Registers `name` at `url` and returns its id.
async fn register(clusters: &mut Clusters, name: &str, url: &str) -> String {
    clusters
        .register_cluster(pb::RegisterClusterRequest {
            name: name.to_string(),
            endpoints: vec![url.to_string()],
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("register {name}: {e:?}"))
        .into_inner()
        .cluster
        .unwrap()
        .id
}

fn by_name(name: &str) -> Option<pb::ClusterRef> {
    Some(pb::ClusterRef {
        cluster_name: name.to_string(),
        ..Default::default()
    })
}

fn create(name: &str, gateway: &str, start_paused: bool) -> pb::CreateTaskRequest {
    pb::CreateTaskRequest {
        name: name.to_string(),
        primary: by_name("old"),
        backup: by_name("new"),
        gateway_ids: vec![gateway.to_string()],
        start_paused,
        ..Default::default()
    }
}

fn expect_err<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, prefix: &str) {
    let status = result.expect_err("expected an error");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().starts_with(prefix),
        "message {:?} should start with {prefix:?}",
        status.message()
    );
}

// ---------------------------------------------------------------------------
// A scripted agent: answers every desired state by applying it at once,
// reports `lag` unreplayed records for each assigned task, and reports
// DRAINED as soon as a desired state asks it to drain.
// ---------------------------------------------------------------------------

struct ScriptedAgent {
    lag: Arc<AtomicU64>,
    /// The last desired state received.
    state: Arc<std::sync::Mutex<Option<pb::DesiredState>>>,
    /// When set, the agent applies versions but never swaps roles (reports
    /// FORWARD whatever it is told).
    stuck: Arc<std::sync::atomic::AtomicBool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ScriptedAgent {
    async fn connect(cp: &InProcessControlPlane, id: &str) -> ScriptedAgent {
        let (up, rx) = mpsc::channel::<pb::AgentStreamRequest>(64);
        up.send(pb::AgentStreamRequest {
            payload: Some(Up::Hello(pb::AgentHello {
                gateway_id: id.to_string(),
                name: id.to_string(),
                listeners: vec![pb::Listener {
                    name: "default".into(),
                    address: "127.0.0.1:9200".into(),
                    tls: false,
                }],
                ..Default::default()
            })),
        })
        .await
        .unwrap();
        let channel = tandem_client::connect(&cp.endpoint()).await.unwrap();
        let mut client = tandem_client::gateway_client(channel, token(Some(TOKEN)));
        let mut down = client
            .agent_stream(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let lag = Arc::new(AtomicU64::new(0));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let reported = lag.clone();
        let stuck = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let frozen = stuck.clone();
        let state = Arc::new(std::sync::Mutex::new(None));
        let received = state.clone();
        tokio::spawn(async move {
            let mut applied = 0;
            let mut draining = false;
            let mut tasks: Vec<pb::TaskAssignment> = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(150));
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    message = down.message() => match message {
                        Ok(Some(pb::AgentStreamResponse { payload: Some(Down::DesiredState(state)) })) => {
                            applied = state.version;
                            draining = state.drain;
                            tasks = state.tasks.clone();
                            *received.lock().unwrap() = Some(state);
                        }
                        Ok(Some(_)) => {}
                        _ => return,
                    },
                    _ = tick.tick() => {
                        let heartbeat = pb::AgentHeartbeat {
                            applied_version: applied,
                            ready: true,
                            drain_state: if draining {
                                pb::DrainState::Drained as i32
                            } else {
                                pb::DrainState::Serving as i32
                            },
                            tasks: tasks.iter().map(|t| pb::TaskRuntimeStatus {
                                task_id: t.task_id.clone(),
                                mode: t.mode,
                                direction: if frozen.load(Ordering::SeqCst) {
                                    pb::ReplicationDirection::Forward as i32
                                } else {
                                    t.direction
                                },
                                lag_records: reported.load(Ordering::SeqCst),
                                consumer_state: pb::ConsumerState::Running as i32,
                                ..Default::default()
                            }).collect(),
                            ..Default::default()
                        };
                        if up.send(pb::AgentStreamRequest { payload: Some(Up::Heartbeat(heartbeat)) }).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        ScriptedAgent {
            lag,
            state,
            stuck,
            stop: Some(stop),
        }
    }

    fn never_swap(&self) {
        self.stuck.store(true, Ordering::SeqCst);
    }

    fn set_lag(&self, lag: u64) {
        self.lag.store(lag, Ordering::SeqCst);
    }

    /// Waits until the last desired state received satisfies `done`.
    async fn wait_state(
        &self,
        what: &str,
        done: impl Fn(&pb::DesiredState) -> bool,
    ) -> pb::DesiredState {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let state = self.state.lock().unwrap().clone();
            if let Some(state) = state.filter(|s| done(s)) {
                return state;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the agent never received a desired state {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ScriptedAgent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A control plane with clusters `old` (es7) and `new` (os2) and one
/// scripted agent.
async fn scripted_setup() -> (InProcessControlPlane, ScriptedAgent, String) {
    let env = tandem_integration::env();
    let cp = start_control_plane(300).await;
    let mut clusters = cp.clusters().await;
    register(&mut clusters, "old", &env.cluster("es7").url).await;
    register(&mut clusters, "new", &env.cluster("os2").url).await;
    let gw = new_gateway_id();
    let agent = ScriptedAgent::connect(&cp, &gw).await;
    (cp, agent, gw)
}

// ---------------------------------------------------------------------------
// The seed workflow, with a real gateway.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_workflow_with_a_real_gateway() {
    let env = tandem_integration::env();
    let (old_url, new_url) = (
        env.cluster("es7").url.clone(),
        env.cluster("os2").url.clone(),
    );
    let cp = start_control_plane(300).await;
    let mut clusters = cp.clusters().await;
    register(&mut clusters, "old", &old_url).await;
    register(&mut clusters, "new", &new_url).await;

    let data = tempfile::tempdir().unwrap();
    let gw = new_gateway_id();
    let mut options = GatewayOptions::replicating(&old_url, &new_url, data.path());
    options.paused = true;
    options.extra_toml = cp.agent_section(&gw);
    let gateway = TestGateway::start_with(options).await;
    let mut tasks = cp.tasks().await;

    // The gateway registers; then the task is created paused on it.
    let task = create_task_once_registered(&mut tasks, create("seed", &gw, true)).await;
    assert_eq!(state(&task), pb::TaskState::Created);
    assert_eq!(direction(&task), pb::ReplicationDirection::Forward);
    assert_eq!(task.primary.as_ref().unwrap().cluster_name, "old");
    let id = task.id.clone();

    // Writes through the gateway are recorded, not replayed.
    let index = unique_index("seed-task");
    for i in 0..5 {
        let status = tandem_integration::client::put_doc(
            &gateway.url,
            &index,
            &i.to_string(),
            serde_json::json!({ "i": i, "phase": "before" }),
        )
        .await;
        assert_eq!(status, 201);
    }
    let lagging = wait_task(&mut tasks, &id, "lagging and in sync", |t| {
        t.gateways.iter().all(|g| g.in_sync)
            && t.gateways.iter().map(|g| g.lag_records).sum::<u64>() >= 5
    })
    .await;
    assert_eq!(lagging.gateways.len(), 1);

    // Cutover is refused while the task is not RUNNING.
    expect_err(
        tasks
            .cutover(pb::CutoverRequest {
                task_id: id.clone(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "task_id: ",
    );

    // Watch, then start: the backlog drains.
    let mut watch = tasks
        .watch_task(pb::WatchTaskRequest {
            task_id: id.clone(),
            exclude_lag_samples: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert!(matches!(
        first.update,
        Some(pb::watch_task_response::Update::Task(_))
    ));

    let started = tasks
        .start_task(pb::StartTaskRequest {
            task_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(state(&started), pb::TaskState::Running);
    let since = std::time::SystemTime::now();
    let task = wait_task(&mut tasks, &id, "drained", drained_since(since)).await;
    assert_eq!(task.queue_stats.unwrap().lag_records, 0);
    // The watch saw the task RUNNING.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let message = tokio::time::timeout_at(deadline, watch.message())
            .await
            .expect("watch shows RUNNING")
            .unwrap()
            .unwrap();
        if let Some(pb::watch_task_response::Update::Task(t)) = message.update
            && state(&t) == pb::TaskState::Running
        {
            break;
        }
    }
    tandem_integration::compare::assert_index_equal(&old_url, &new_url, &index).await;

    // Cutover: the gateway swaps its roles.
    let response = tasks
        .cutover(pb::CutoverRequest {
            task_id: id.clone(),
            max_lag: Some(prost_types_duration(60)),
            hold_timeout: Some(prost_types_duration(10)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        state(response.task.as_ref().unwrap()),
        pb::TaskState::CuttingOver
    );
    let op_id = response.operation.unwrap().id;
    let task = wait_task(&mut tasks, &id, "cut over", |t| {
        state(t) == pb::TaskState::Running && direction(t) == pb::ReplicationDirection::Reversed
    })
    .await;
    assert_eq!(task.primary.as_ref().unwrap().cluster_name, "new");
    let last = task.last_operation.unwrap();
    assert_eq!(last.id, op_id);
    assert_eq!(last.phase, pb::RoleSwapPhase::Succeeded as i32);
    assert_eq!(
        task.gateways[0].direction,
        pb::ReplicationDirection::Reversed as i32
    );

    // Writes now go to the new cluster first, and are replayed to the old.
    for i in 5..10 {
        let status = tandem_integration::client::put_doc(
            &gateway.url,
            &index,
            &i.to_string(),
            serde_json::json!({ "i": i, "phase": "reversed" }),
        )
        .await;
        assert!(status == 201 || status == 200, "status {status}");
    }
    let since = std::time::SystemTime::now();
    wait_task(
        &mut tasks,
        &id,
        "drained after cutover",
        drained_since(since),
    )
    .await;
    tandem_integration::compare::assert_index_equal(&new_url, &old_url, &index).await;

    // Rollback.
    tasks
        .rollback(pb::RollbackRequest {
            task_id: id.clone(),
            max_lag: Some(prost_types_duration(60)),
            hold_timeout: Some(prost_types_duration(10)),
            ..Default::default()
        })
        .await
        .unwrap();
    let task = wait_task(&mut tasks, &id, "rolled back", |t| {
        state(t) == pb::TaskState::Running && direction(t) == pb::ReplicationDirection::Forward
    })
    .await;
    assert_eq!(task.primary.as_ref().unwrap().cluster_name, "old");
    for i in 10..12 {
        let status = tandem_integration::client::put_doc(
            &gateway.url,
            &index,
            &i.to_string(),
            serde_json::json!({ "i": i, "phase": "after" }),
        )
        .await;
        assert!(status == 201 || status == 200, "status {status}");
    }
    let since = std::time::SystemTime::now();
    wait_task(
        &mut tasks,
        &id,
        "drained after rollback",
        drained_since(since),
    )
    .await;
    let count = tandem_integration::compare::assert_index_equal(&old_url, &new_url, &index).await;
    assert_eq!(count, 12);

    // Stop, then delete.
    let stopped = tasks
        .stop_task(pb::StopTaskRequest {
            task_id: id.clone(),
            discard_unreplayed: false,
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(state(&stopped), pb::TaskState::Stopped);
    tasks
        .delete_task(pb::DeleteTaskRequest {
            task_id: id.clone(),
        })
        .await
        .unwrap();
    expect_err(
        tasks.get_task(pb::GetTaskRequest { task_id: id }).await,
        Code::NotFound,
        "task_id: ",
    );
    gateway.stop();
    cp.stop().await;
}

fn prost_types_duration(seconds: i64) -> tandem_client::prost_types::Duration {
    tandem_client::prost_types::Duration { seconds, nanos: 0 }
}

// ---------------------------------------------------------------------------
// Scripted agent: preconditions, transitions, validation, auth.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_is_refused_while_lag_is_high_then_succeeds() {
    let (cp, agent, gw) = scripted_setup().await;
    let mut tasks = cp.tasks().await;
    let id = tasks
        .create_task(pb::CreateTaskRequest {
            lag_thresholds: Some(pb::LagThresholds {
                cutover_max_records: 10,
                ..Default::default()
            }),
            ..create("lagging", &gw, false)
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .id;
    agent.set_lag(500);
    wait_task(&mut tasks, &id, "lagging", |t| {
        t.gateways.iter().all(|g| g.in_sync && g.lag_records == 500)
    })
    .await;
    let refused = |request: pb::CutoverRequest| {
        let mut tasks = tasks.clone();
        async move { tasks.cutover(request).await }
    };
    // The task's threshold (10 records) refuses it...
    expect_err(
        refused(pb::CutoverRequest {
            task_id: id.clone(),
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "max_lag_records: ",
    );
    // ...a dry run reports why...
    let dry = tasks
        .cutover(pb::CutoverRequest {
            task_id: id.clone(),
            dry_run: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let verdict = dry.operation.unwrap();
    assert_eq!(verdict.phase, pb::RoleSwapPhase::Failed as i32);
    assert_eq!(verdict.error.unwrap().reason, "LAG_ABOVE_MAXIMUM");
    assert_eq!(state(dry.task.as_ref().unwrap()), pb::TaskState::Running);
    // ...a request allowing more passes.
    agent.set_lag(0);
    wait_task(&mut tasks, &id, "drained", drained).await;
    tasks
        .cutover(pb::CutoverRequest {
            task_id: id.clone(),
            max_lag_records: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    // While cutting over, most transitions are refused.
    let task = get(&mut tasks, &id).await;
    if state(&task) == pb::TaskState::CuttingOver {
        expect_err(
            tasks
                .stop_task(pb::StopTaskRequest {
                    task_id: id.clone(),
                    discard_unreplayed: true,
                })
                .await,
            Code::FailedPrecondition,
            "task_id: ",
        );
    }
    let task = wait_task(&mut tasks, &id, "reversed", |t| {
        state(t) == pb::TaskState::Running && direction(t) == pb::ReplicationDirection::Reversed
    })
    .await;
    assert_eq!(task.primary.unwrap().cluster_name, "new");
    // A second cutover is refused: already REVERSED.
    expect_err(
        tasks
            .cutover(pb::CutoverRequest {
                task_id: id.clone(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "task_id: ",
    );
    // Events were stored.
    let events = tasks
        .list_task_events(pb::ListTaskEventsRequest {
            task_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let reasons: Vec<_> = events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        ["CUTOVER_SUCCEEDED", "CUTOVER_STARTED", "TASK_CREATED"]
    );
    drop(agent);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutover_no_gateway_applies_fails_and_a_rollback_aborts_one() {
    let (cp, agent, gw) = scripted_setup().await;
    agent.never_swap();
    let mut tasks = cp.tasks().await;
    let id = tasks
        .create_task(create("stuck", &gw, false))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .id;
    wait_task(&mut tasks, &id, "in sync", drained).await;

    // The gateway never reports the new direction: once the hold (1 s) and
    // the grace period expire, the cutover fails and FORWARD is published
    // again.
    let op = tasks
        .cutover(pb::CutoverRequest {
            task_id: id.clone(),
            hold_timeout: Some(prost_types_duration(1)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .operation
        .unwrap();
    let task = get(&mut tasks, &id).await;
    assert_eq!(state(&task), pb::TaskState::CuttingOver);
    assert_eq!(task.current_operation.as_ref().unwrap().id, op.id);
    let task = wait_task(&mut tasks, &id, "back to RUNNING", |t| {
        state(t) == pb::TaskState::Running
    })
    .await;
    assert_eq!(direction(&task), pb::ReplicationDirection::Forward);
    let last = task.last_operation.unwrap();
    assert_eq!(last.id, op.id);
    assert_eq!(last.phase, pb::RoleSwapPhase::Failed as i32);
    assert_eq!(last.error.unwrap().reason, "DEADLINE_EXCEEDED");
    assert!(task.current_operation.is_none());

    // A rollback during a cutover aborts it at once.
    wait_task(&mut tasks, &id, "in sync again", drained).await;
    let op = tasks
        .cutover(pb::CutoverRequest {
            task_id: id.clone(),
            hold_timeout: Some(prost_types_duration(30)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .operation
        .unwrap();
    let aborted = tasks
        .rollback(pb::RollbackRequest {
            task_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        state(aborted.task.as_ref().unwrap()),
        pb::TaskState::Running
    );
    assert_eq!(
        direction(aborted.task.as_ref().unwrap()),
        pb::ReplicationDirection::Forward
    );
    let verdict = aborted.operation.unwrap();
    assert_eq!(verdict.id, op.id);
    assert_eq!(verdict.phase, pb::RoleSwapPhase::Failed as i32);
    assert_eq!(verdict.error.unwrap().reason, "ABORTED_BY_ROLLBACK");
    drop(agent);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_is_refused_when_a_gateway_is_disconnected() {
    let (cp, agent, gw) = scripted_setup().await;
    let mut tasks = cp.tasks().await;
    let id = tasks
        .create_task(create("disconnected", &gw, false))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .id;
    wait_task(&mut tasks, &id, "in sync", drained).await;
    drop(agent);
    wait_task(&mut tasks, &id, "disconnected", |t| {
        t.gateways.iter().all(|g| !g.connected)
    })
    .await;
    let status = tasks
        .cutover(pb::CutoverRequest {
            task_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("disconnected"), "{status:?}");
    // Stopping needs discard_unreplayed: the gateway's lag is unknown.
    expect_err(
        tasks
            .stop_task(pb::StopTaskRequest {
                task_id: id.clone(),
                discard_unreplayed: false,
            })
            .await,
        Code::FailedPrecondition,
        "discard_unreplayed: ",
    );
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_transitions_and_illegal_ones() {
    let (cp, agent, gw) = scripted_setup().await;
    let mut tasks = cp.tasks().await;
    let task = tasks
        .create_task(create("lifecycle", &gw, true))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    let id = task.id.clone();
    assert_eq!(state(&task), pb::TaskState::Created);
    // The agent receives the assignment, RECORD_ONLY.
    let task = wait_task(&mut tasks, &id, "in sync", |t| {
        t.gateways
            .iter()
            .all(|g| g.in_sync && g.mode == pb::TaskMode::RecordOnly as i32)
    })
    .await;
    assert_eq!(task.health, pb::TaskHealth::Healthy as i32);

    let tid = || id.clone();
    // CREATED: pause and resume are refused.
    expect_err(
        tasks
            .pause_task(pb::PauseTaskRequest { task_id: tid() })
            .await,
        Code::FailedPrecondition,
        "task_id: ",
    );
    expect_err(
        tasks
            .resume_task(pb::ResumeTaskRequest { task_id: tid() })
            .await,
        Code::FailedPrecondition,
        "task_id: ",
    );
    // A second task on the same listener is refused.
    expect_err(
        tasks.create_task(create("other", &gw, true)).await,
        Code::FailedPrecondition,
        "listener: ",
    );
    // Start (twice: idempotent), pause (twice), resume.
    for _ in 0..2 {
        let t = tasks
            .start_task(pb::StartTaskRequest { task_id: tid() })
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap();
        assert_eq!(state(&t), pb::TaskState::Running);
        assert!(t.started_at.is_some());
    }
    wait_task(&mut tasks, &id, "replaying", |t| {
        t.gateways
            .iter()
            .all(|g| g.in_sync && g.mode == pb::TaskMode::Replay as i32)
    })
    .await;
    expect_err(
        tasks
            .delete_task(pb::DeleteTaskRequest { task_id: tid() })
            .await,
        Code::FailedPrecondition,
        "task_id: ",
    );
    for _ in 0..2 {
        let t = tasks
            .pause_task(pb::PauseTaskRequest { task_id: tid() })
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap();
        assert_eq!(state(&t), pb::TaskState::Paused);
    }
    expect_err(
        tasks
            .start_task(pb::StartTaskRequest { task_id: tid() })
            .await,
        Code::FailedPrecondition,
        "task_id: ",
    );
    expect_err(
        tasks
            .rollback(pb::RollbackRequest {
                task_id: tid(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "task_id: ",
    );
    let t = tasks
        .resume_task(pb::ResumeTaskRequest { task_id: tid() })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(state(&t), pb::TaskState::Running);
    // Stop needs no discard when nothing is unreplayed.
    wait_task(&mut tasks, &id, "drained", drained).await;
    let t = tasks
        .stop_task(pb::StopTaskRequest {
            task_id: tid(),
            discard_unreplayed: false,
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(state(&t), pb::TaskState::Stopped);
    assert!(t.stopped_at.is_some());
    // STOPPED is terminal.
    expect_err(
        tasks
            .pause_task(pb::PauseTaskRequest { task_id: tid() })
            .await,
        Code::FailedPrecondition,
        "task_id: ",
    );
    expect_err(
        tasks
            .resume_task(pb::ResumeTaskRequest { task_id: tid() })
            .await,
        Code::FailedPrecondition,
        "task_id: ",
    );
    expect_err(
        tasks
            .start_task(pb::StartTaskRequest { task_id: tid() })
            .await,
        Code::FailedPrecondition,
        "task_id: ",
    );
    // The listener is free again once stopped.
    let other = tasks
        .create_task(create("other", &gw, true))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    // Listing: newest first, paginated, filtered.
    let page = tasks
        .list_tasks(pb::ListTasksRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.tasks.len(), 1);
    assert_eq!(page.tasks[0].id, other.id);
    assert!(!page.next_page_token.is_empty());
    let next = tasks
        .list_tasks(pb::ListTasksRequest {
            page_size: 1,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.tasks.len(), 1);
    assert_eq!(next.tasks[0].id, id);
    assert!(next.next_page_token.is_empty());
    let stopped = tasks
        .list_tasks(pb::ListTasksRequest {
            states: vec![pb::TaskState::Stopped as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stopped.tasks.len(), 1);
    assert_eq!(stopped.tasks[0].id, id);
    // A cluster a task uses cannot be deleted, even once the task stopped.
    let mut clusters = cp.clusters().await;
    let old = clusters
        .get_cluster(pb::GetClusterRequest {
            cluster_id: task.primary.as_ref().unwrap().cluster_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .cluster
        .unwrap();
    let refused = clusters
        .delete_cluster(pb::DeleteClusterRequest {
            cluster_id: old.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().starts_with("cluster_id: ") && refused.message().contains(&task.name),
        "{refused:?}"
    );
    // Delete: a stopped task goes; the agent gets a state without it.
    tasks
        .delete_task(pb::DeleteTaskRequest { task_id: tid() })
        .await
        .unwrap();
    expect_err(
        tasks.get_task(pb::GetTaskRequest { task_id: tid() }).await,
        Code::NotFound,
        "task_id: ",
    );
    // The refusal now names only the task still using it.
    let refused = clusters
        .delete_cluster(pb::DeleteClusterRequest { cluster_id: old.id })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("task(s) other;") && !refused.message().contains(&task.name),
        "{refused:?}"
    );
    drop(agent);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_validated_field_by_field() {
    let (cp, agent, gw) = scripted_setup().await;
    let mut tasks = cp.tasks().await;
    let cases: Vec<(pb::CreateTaskRequest, Code, &str)> = vec![
        (create("", &gw, true), Code::InvalidArgument, "name: "),
        (
            create("Bad_Name", &gw, true),
            Code::InvalidArgument,
            "name: ",
        ),
        (
            pb::CreateTaskRequest {
                primary: None,
                ..create("t", &gw, true)
            },
            Code::InvalidArgument,
            "primary: ",
        ),
        (
            pb::CreateTaskRequest {
                backup: Some(pb::ClusterRef::default()),
                ..create("t", &gw, true)
            },
            Code::InvalidArgument,
            "backup: ",
        ),
        (
            pb::CreateTaskRequest {
                primary: Some(pb::ClusterRef {
                    cluster_id: "not-a-uuid".into(),
                    ..Default::default()
                }),
                ..create("t", &gw, true)
            },
            Code::InvalidArgument,
            "primary.cluster_id: ",
        ),
        (
            pb::CreateTaskRequest {
                backup: by_name("old"),
                ..create("t", &gw, true)
            },
            Code::InvalidArgument,
            "backup: ",
        ),
        (
            pb::CreateTaskRequest {
                backup: by_name("missing"),
                ..create("t", &gw, true)
            },
            Code::NotFound,
            "backup.cluster_name: ",
        ),
        (
            pb::CreateTaskRequest {
                primary: Some(pb::ClusterRef {
                    cluster_id: "00000000-0000-0000-0000-000000000001".into(),
                    ..Default::default()
                }),
                ..create("t", &gw, true)
            },
            Code::NotFound,
            "primary.cluster_id: ",
        ),
        (
            pb::CreateTaskRequest {
                gateway_ids: vec![],
                ..create("t", &gw, true)
            },
            Code::InvalidArgument,
            "gateway_ids: ",
        ),
        (
            pb::CreateTaskRequest {
                gateway_ids: vec![gw.clone(), gw.clone()],
                ..create("t", &gw, true)
            },
            Code::InvalidArgument,
            "gateway_ids[1]: ",
        ),
        (
            create("t", "unknown-gateway", true),
            Code::NotFound,
            "gateway_ids[0]: ",
        ),
        (
            create("t", "bad id!", true),
            Code::InvalidArgument,
            "gateway_ids[0]: ",
        ),
        (
            pb::CreateTaskRequest {
                shadow_reads: Some(pb::ShadowReadConfig { sample_ratio: 1.5 }),
                ..create("t", &gw, true)
            },
            Code::InvalidArgument,
            "shadow_reads.sample_ratio: ",
        ),
        (
            pb::CreateTaskRequest {
                lag_thresholds: Some(pb::LagThresholds {
                    warning_lag: Some(tandem_client::prost_types::Duration {
                        seconds: -1,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                ..create("t", &gw, true)
            },
            Code::InvalidArgument,
            "lag_thresholds.warning_lag: ",
        ),
        (
            pb::CreateTaskRequest {
                indices: Some(pb::IndexFilter {
                    include: vec![String::new()],
                    ..Default::default()
                }),
                ..create("t", &gw, true)
            },
            Code::InvalidArgument,
            "indices.include[0]: ",
        ),
    ];
    for (request, code, prefix) in cases {
        expect_err(tasks.create_task(request).await, code, prefix);
    }
    // Names are unique; request ids make creation idempotent.
    let first = tasks
        .create_task(pb::CreateTaskRequest {
            request_id: "req-1".into(),
            ..create("unique", &gw, true)
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    let again = tasks
        .create_task(pb::CreateTaskRequest {
            request_id: "req-1".into(),
            ..create("unique", &gw, true)
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(first.id, again.id);
    expect_err(
        tasks
            .create_task(pb::CreateTaskRequest {
                listener: "other".into(),
                ..create("unique", &gw, true)
            })
            .await,
        Code::AlreadyExists,
        "name: ",
    );

    // Every task RPC checks its task id.
    let bad = "nope".to_string();
    expect_err(
        tasks
            .get_task(pb::GetTaskRequest {
                task_id: bad.clone(),
            })
            .await,
        Code::InvalidArgument,
        "task_id: ",
    );
    expect_err(
        tasks
            .get_task(pb::GetTaskRequest {
                task_id: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "task_id: ",
    );
    let missing = "00000000-0000-0000-0000-000000000002".to_string();
    expect_err(
        tasks
            .get_task(pb::GetTaskRequest {
                task_id: missing.clone(),
            })
            .await,
        Code::NotFound,
        "task_id: ",
    );
    expect_err(
        tasks
            .start_task(pb::StartTaskRequest {
                task_id: bad.clone(),
            })
            .await,
        Code::InvalidArgument,
        "task_id: ",
    );
    expect_err(
        tasks
            .start_task(pb::StartTaskRequest {
                task_id: missing.clone(),
            })
            .await,
        Code::NotFound,
        "task_id: ",
    );
    expect_err(
        tasks
            .pause_task(pb::PauseTaskRequest {
                task_id: bad.clone(),
            })
            .await,
        Code::InvalidArgument,
        "task_id: ",
    );
    expect_err(
        tasks
            .resume_task(pb::ResumeTaskRequest {
                task_id: bad.clone(),
            })
            .await,
        Code::InvalidArgument,
        "task_id: ",
    );
    expect_err(
        tasks
            .stop_task(pb::StopTaskRequest {
                task_id: bad.clone(),
                discard_unreplayed: true,
            })
            .await,
        Code::InvalidArgument,
        "task_id: ",
    );
    expect_err(
        tasks
            .delete_task(pb::DeleteTaskRequest {
                task_id: missing.clone(),
            })
            .await,
        Code::NotFound,
        "task_id: ",
    );
    expect_err(
        tasks
            .cutover(pb::CutoverRequest {
                task_id: bad.clone(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "task_id: ",
    );
    expect_err(
        tasks
            .cutover(pb::CutoverRequest {
                task_id: first.id.clone(),
                hold_timeout: Some(prost_types_duration(120)),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "hold_timeout: ",
    );
    expect_err(
        tasks
            .rollback(pb::RollbackRequest {
                task_id: missing.clone(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "task_id: ",
    );
    expect_err(
        tasks
            .watch_task(pb::WatchTaskRequest {
                task_id: bad.clone(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "task_id: ",
    );
    expect_err(
        tasks
            .list_task_events(pb::ListTaskEventsRequest {
                task_id: missing,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "task_id: ",
    );
    expect_err(
        tasks
            .list_tasks(pb::ListTasksRequest {
                page_size: -1,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_size: ",
    );
    expect_err(
        tasks
            .list_tasks(pb::ListTasksRequest {
                cluster_id: "x".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "cluster_id: ",
    );
    expect_err(
        tasks
            .list_tasks(pb::ListTasksRequest {
                states: vec![0],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "states[0]: ",
    );

    // Authentication: every RPC needs the token.
    for bearer in [None, Some("wrong-token-0123456789-abcdefghij")] {
        let mut client = cp.tasks_with(bearer).await;
        let id = first.id.clone();
        let codes = [
            client
                .create_task(create("x", &gw, true))
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
            client
                .get_task(pb::GetTaskRequest {
                    task_id: id.clone(),
                })
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
            client
                .list_tasks(pb::ListTasksRequest::default())
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
            client
                .update_task(pb::UpdateTaskRequest {
                    task_id: id.clone(),
                    description: Some("not allowed".into()),
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
            client
                .start_task(pb::StartTaskRequest {
                    task_id: id.clone(),
                })
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
            client
                .pause_task(pb::PauseTaskRequest {
                    task_id: id.clone(),
                })
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
            client
                .resume_task(pb::ResumeTaskRequest {
                    task_id: id.clone(),
                })
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
            client
                .stop_task(pb::StopTaskRequest {
                    task_id: id.clone(),
                    discard_unreplayed: true,
                })
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
            client
                .delete_task(pb::DeleteTaskRequest {
                    task_id: id.clone(),
                })
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
            client
                .cutover(pb::CutoverRequest {
                    task_id: id.clone(),
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
            client
                .rollback(pb::RollbackRequest {
                    task_id: id.clone(),
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
            client
                .watch_task(pb::WatchTaskRequest {
                    task_id: id.clone(),
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
            client
                .list_task_events(pb::ListTaskEventsRequest {
                    task_id: id.clone(),
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
        ];
        assert!(
            codes.iter().all(|c| *c == Code::Unauthenticated),
            "{codes:?}"
        );
    }
    // Nothing changed.
    assert_eq!(
        state(&get(&mut tasks, &first.id).await),
        pb::TaskState::Created
    );
    drop(agent);
    cp.stop().await;
}

// ---------------------------------------------------------------------------
// UpdateTask.
// ---------------------------------------------------------------------------

fn update(task_id: &str) -> pb::UpdateTaskRequest {
    pb::UpdateTaskRequest {
        task_id: task_id.to_string(),
        ..Default::default()
    }
}

fn gateways(ids: &[&str]) -> Option<pb::StringList> {
    Some(pb::StringList {
        values: ids.iter().map(|id| id.to_string()).collect(),
    })
}

async fn events(tasks: &mut Tasks, id: &str) -> Vec<pb::Event> {
    tasks
        .list_task_events(pb::ListTaskEventsRequest {
            task_id: id.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updated_settings_are_returned_and_pushed_to_the_gateways() {
    let (cp, agent, gw) = scripted_setup().await;
    let mut tasks = cp.tasks().await;
    let task = tasks
        .create_task(create("before", &gw, false))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    let (id, task_updated_at) = (task.id, task.updated_at);
    let created = agent
        .wait_state("with the task", |s| s.tasks.iter().any(|t| t.task_id == id))
        .await;
    wait_task(&mut tasks, &id, "in sync", drained).await;

    let request = pb::UpdateTaskRequest {
        name: Some("after".into()),
        description: Some("moved to the new cluster".into()),
        labels: Some(pb::LabelSet {
            labels: [("team".to_string(), "search".to_string())].into(),
        }),
        lag_thresholds: Some(pb::LagThresholds {
            warning_lag: Some(prost_types_duration(120)),
            warning_records: 7,
            cutover_max_lag: Some(prost_types_duration(9)),
            cutover_max_records: 3,
        }),
        queue_policy: Some(pb::QueuePolicy {
            max_bytes: 1 << 30,
            max_age: Some(prost_types_duration(3600)),
            on_full: pb::QueueFullPolicy::Reject as i32,
            max_backpressure_wait: Some(prost_types_duration(2)),
        }),
        replay: Some(pb::ReplayOptions {
            max_batch_records: 250,
            max_batch_bytes: 1 << 20,
            request_timeout: Some(prost_types_duration(10)),
            initial_backoff: Some(prost_types_duration(1)),
            max_backoff: Some(prost_types_duration(20)),
        }),
        shadow_reads: Some(pb::ShadowReadConfig { sample_ratio: 0.25 }),
        ..update(&id)
    };
    let answered = tasks
        .update_task(request.clone())
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    let stored = get(&mut tasks, &id).await;
    for task in [&answered, &stored] {
        assert_eq!(task.name, "after");
        assert_eq!(task.description, "moved to the new cluster");
        assert_eq!(task.labels.get("team").map(String::as_str), Some("search"));
        assert_eq!(task.lag_thresholds, request.lag_thresholds);
        assert_eq!(task.queue_policy, request.queue_policy);
        assert_eq!(task.replay, request.replay);
        assert_eq!(task.shadow_reads, request.shadow_reads);
        // Immutable settings and the lifecycle are untouched.
        assert_eq!(state(task), pb::TaskState::Running);
        assert_eq!(task.primary.as_ref().unwrap().cluster_name, "old");
        assert_eq!(task.gateway_ids, [gw.as_str()]);
    }
    assert_ne!(stored.updated_at, task_updated_at);

    // The gateway got a newer desired state carrying the new settings.
    let pushed = agent
        .wait_state("with the new settings", |s| {
            s.version > created.version && s.tasks.iter().any(|t| t.task_name == "after")
        })
        .await;
    let assignment = pushed.tasks.iter().find(|t| t.task_id == id).unwrap();
    assert_eq!(assignment.queue_policy, request.queue_policy);
    assert_eq!(assignment.replay, request.replay);
    assert_eq!(assignment.shadow_reads, request.shadow_reads);
    assert_eq!(assignment.mode, pb::TaskMode::Replay as i32);
    wait_task(&mut tasks, &id, "in sync again", drained).await;

    // The new record threshold drives health at once.
    agent.set_lag(10);
    let degraded = wait_task(&mut tasks, &id, "degraded", |t| {
        t.health == pb::TaskHealth::Degraded as i32
    })
    .await;
    assert!(
        degraded
            .problems
            .iter()
            .any(|p| p.reason == "LAG_ABOVE_THRESHOLD" && p.message.contains("above 7")),
        "{:?}",
        degraded.problems
    );
    agent.set_lag(0);

    // The change is recorded as one event naming what changed.
    let recorded = events(&mut tasks, &id).await;
    assert_eq!(recorded[0].reason, "TASK_UPDATED");
    for part in [
        "name \"before\" -> \"after\"",
        "description",
        "labels",
        "lag thresholds",
        "queue policy",
        "replay options",
        "shadow-read ratio 0 -> 0.25",
    ] {
        assert!(
            recorded[0].message.contains(part),
            "{:?}",
            recorded[0].message
        );
    }

    // The same update again changes nothing: no event, no new version.
    let again = tasks
        .update_task(request)
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(again.updated_at, stored.updated_at);
    assert_eq!(events(&mut tasks, &id).await.len(), recorded.len());

    // Only the fields set change: clearing the labels keeps the rest.
    let renamed = tasks
        .update_task(pb::UpdateTaskRequest {
            labels: Some(pb::LabelSet::default()),
            ..update(&id)
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert!(renamed.labels.is_empty());
    assert_eq!(renamed.name, "after");
    assert_eq!(renamed.description, "moved to the new cluster");
    assert_eq!(renamed.lag_thresholds, stored.lag_thresholds);
    drop(agent);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_updates_are_validated_and_guarded() {
    let (cp, agent, gw) = scripted_setup().await;
    let gw2 = new_gateway_id();
    let agent2 = ScriptedAgent::connect(&cp, &gw2).await;
    let mut tasks = cp.tasks().await;
    let task = tasks
        .create_task(create("guarded", &gw, false))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    let id = task.id.clone();
    tasks
        .create_task(pb::CreateTaskRequest {
            listener: "other".into(),
            ..create("taken", &gw, true)
        })
        .await
        .unwrap();

    let negative = Some(tandem_client::prost_types::Duration {
        seconds: -1,
        nanos: 0,
    });
    let cases: Vec<(pb::UpdateTaskRequest, Code, &str)> = vec![
        (update("nope"), Code::InvalidArgument, "task_id: "),
        (update(""), Code::InvalidArgument, "task_id: "),
        (
            pb::UpdateTaskRequest {
                name: Some("Bad_Name".into()),
                ..update(&id)
            },
            Code::InvalidArgument,
            "name: ",
        ),
        (
            pb::UpdateTaskRequest {
                name: Some(String::new()),
                ..update(&id)
            },
            Code::InvalidArgument,
            "name: ",
        ),
        (
            pb::UpdateTaskRequest {
                description: Some("x".repeat(5000)),
                ..update(&id)
            },
            Code::InvalidArgument,
            "description: ",
        ),
        (
            pb::UpdateTaskRequest {
                labels: Some(pb::LabelSet {
                    labels: [("Bad Key".to_string(), "v".to_string())].into(),
                }),
                ..update(&id)
            },
            Code::InvalidArgument,
            "labels[\"Bad Key\"]: ",
        ),
        (
            pb::UpdateTaskRequest {
                gateway_ids: gateways(&[]),
                ..update(&id)
            },
            Code::InvalidArgument,
            "gateway_ids: ",
        ),
        (
            pb::UpdateTaskRequest {
                gateway_ids: gateways(&[&gw, &gw]),
                ..update(&id)
            },
            Code::InvalidArgument,
            "gateway_ids[1]: ",
        ),
        (
            pb::UpdateTaskRequest {
                gateway_ids: gateways(&["bad id!"]),
                ..update(&id)
            },
            Code::InvalidArgument,
            "gateway_ids[0]: ",
        ),
        (
            pb::UpdateTaskRequest {
                lag_thresholds: Some(pb::LagThresholds {
                    warning_lag: negative,
                    ..Default::default()
                }),
                ..update(&id)
            },
            Code::InvalidArgument,
            "lag_thresholds.warning_lag: ",
        ),
        (
            pb::UpdateTaskRequest {
                lag_thresholds: Some(pb::LagThresholds {
                    cutover_max_lag: Some(prost_types_duration(30 * 24 * 3600)),
                    ..Default::default()
                }),
                ..update(&id)
            },
            Code::InvalidArgument,
            "lag_thresholds.cutover_max_lag: ",
        ),
        (
            pb::UpdateTaskRequest {
                lag_thresholds: Some(pb::LagThresholds {
                    warning_records: u64::MAX,
                    ..Default::default()
                }),
                ..update(&id)
            },
            Code::InvalidArgument,
            "lag_thresholds.warning_records: ",
        ),
        (
            pb::UpdateTaskRequest {
                queue_policy: Some(pb::QueuePolicy {
                    on_full: 99,
                    ..Default::default()
                }),
                ..update(&id)
            },
            Code::InvalidArgument,
            "queue_policy.on_full: ",
        ),
        (
            pb::UpdateTaskRequest {
                queue_policy: Some(pb::QueuePolicy {
                    max_backpressure_wait: Some(prost_types_duration(3600)),
                    ..Default::default()
                }),
                ..update(&id)
            },
            Code::InvalidArgument,
            "queue_policy.max_backpressure_wait: ",
        ),
        (
            pb::UpdateTaskRequest {
                queue_policy: Some(pb::QueuePolicy {
                    max_bytes: u64::MAX,
                    ..Default::default()
                }),
                ..update(&id)
            },
            Code::InvalidArgument,
            "queue_policy.max_bytes: ",
        ),
        (
            pb::UpdateTaskRequest {
                replay: Some(pb::ReplayOptions {
                    max_batch_records: 1_000_000,
                    ..Default::default()
                }),
                ..update(&id)
            },
            Code::InvalidArgument,
            "replay.max_batch_records: ",
        ),
        (
            pb::UpdateTaskRequest {
                replay: Some(pb::ReplayOptions {
                    max_batch_bytes: 1 << 40,
                    ..Default::default()
                }),
                ..update(&id)
            },
            Code::InvalidArgument,
            "replay.max_batch_bytes: ",
        ),
        (
            pb::UpdateTaskRequest {
                replay: Some(pb::ReplayOptions {
                    request_timeout: negative,
                    ..Default::default()
                }),
                ..update(&id)
            },
            Code::InvalidArgument,
            "replay.request_timeout: ",
        ),
        (
            pb::UpdateTaskRequest {
                replay: Some(pb::ReplayOptions {
                    initial_backoff: Some(prost_types_duration(60)),
                    max_backoff: Some(prost_types_duration(5)),
                    ..Default::default()
                }),
                ..update(&id)
            },
            Code::InvalidArgument,
            "replay.initial_backoff: ",
        ),
        (
            pb::UpdateTaskRequest {
                shadow_reads: Some(pb::ShadowReadConfig { sample_ratio: 1.5 }),
                ..update(&id)
            },
            Code::InvalidArgument,
            "shadow_reads.sample_ratio: ",
        ),
        (
            pb::UpdateTaskRequest {
                shadow_reads: Some(pb::ShadowReadConfig {
                    sample_ratio: f64::NAN,
                }),
                ..update(&id)
            },
            Code::InvalidArgument,
            "shadow_reads.sample_ratio: ",
        ),
        (
            update("00000000-0000-0000-0000-000000000003"),
            Code::NotFound,
            "task_id: ",
        ),
        (
            pb::UpdateTaskRequest {
                gateway_ids: gateways(&[&gw, "unknown-gateway"]),
                ..update(&id)
            },
            Code::NotFound,
            "gateway_ids[1]: ",
        ),
        (
            pb::UpdateTaskRequest {
                name: Some("taken".into()),
                ..update(&id)
            },
            Code::AlreadyExists,
            "name: ",
        ),
        // Replacing gw by gw2 removes gw, which is serving (not drained).
        (
            pb::UpdateTaskRequest {
                gateway_ids: gateways(&[&gw2]),
                ..update(&id)
            },
            Code::FailedPrecondition,
            "gateway_ids: ",
        ),
    ];
    for (request, code, prefix) in cases {
        expect_err(tasks.update_task(request).await, code, prefix);
    }
    // Nothing changed.
    let unchanged = get(&mut tasks, &id).await;
    assert_eq!(unchanged.updated_at, task.updated_at);
    assert_eq!(unchanged.name, "guarded");
    assert_eq!(unchanged.gateway_ids, [gw.as_str()]);
    assert_eq!(events(&mut tasks, &id).await.len(), 1);

    // An added gateway must not serve the listener for another task.
    let busy = tasks
        .create_task(create("busy", &gw2, true))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    expect_err(
        tasks
            .update_task(pb::UpdateTaskRequest {
                gateway_ids: gateways(&[&gw, &gw2]),
                ..update(&id)
            })
            .await,
        Code::FailedPrecondition,
        "gateway_ids: ",
    );
    tasks
        .stop_task(pb::StopTaskRequest {
            task_id: busy.id.clone(),
            discard_unreplayed: true,
        })
        .await
        .unwrap();
    // A stopped task is terminal: only name, description and labels change.
    expect_err(
        tasks
            .update_task(pb::UpdateTaskRequest {
                lag_thresholds: Some(pb::LagThresholds {
                    warning_records: 5,
                    ..Default::default()
                }),
                ..update(&busy.id)
            })
            .await,
        Code::FailedPrecondition,
        "lag_thresholds: ",
    );
    let described = tasks
        .update_task(pb::UpdateTaskRequest {
            description: Some("stopped for good".into()),
            ..update(&busy.id)
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(described.description, "stopped for good");

    // Now gw2 can join: both gateways get the task.
    let joined = tasks
        .update_task(pb::UpdateTaskRequest {
            gateway_ids: gateways(&[&gw, &gw2]),
            ..update(&id)
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    let mut both = vec![gw.clone(), gw2.clone()];
    both.sort();
    assert_eq!(joined.gateway_ids, both);
    agent2
        .wait_state("with the task", |s| s.tasks.iter().any(|t| t.task_id == id))
        .await;

    // gw leaves only once drained with nothing left to replay.
    agent.set_lag(5);
    wait_task(&mut tasks, &id, "lagging on gw", |t| {
        t.gateways
            .iter()
            .any(|g| g.gateway_id == gw && g.in_sync && g.lag_records == 5)
    })
    .await;
    let leave = pb::UpdateTaskRequest {
        gateway_ids: gateways(&[&gw2]),
        ..update(&id)
    };
    expect_err(
        tasks.update_task(leave.clone()).await,
        Code::FailedPrecondition,
        "gateway_ids: ",
    );
    let mut fleet = tandem_client::gateway_client(
        tandem_client::connect(&cp.endpoint()).await.unwrap(),
        token(Some(TOKEN)),
    );
    fleet
        .drain_gateway(pb::DrainGatewayRequest {
            gateway_id: gw.clone(),
            quiet_period: Some(prost_types_duration(1)),
            allow_unreplayed_paused: false,
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let gateway = fleet
            .get_gateway(pb::GetGatewayRequest {
                gateway_id: gw.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .gateway
            .unwrap();
        if gateway
            .drain
            .as_ref()
            .is_some_and(|d| d.state == pb::DrainState::Drained as i32)
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{gateway:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Drained, but 5 records are still to replay.
    let status = tasks.update_task(leave.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("not replayed"),
        "{}",
        status.message()
    );
    agent.set_lag(0);
    wait_task(&mut tasks, &id, "replayed on gw", |t| {
        t.gateways
            .iter()
            .any(|g| g.gateway_id == gw && g.lag_records == 0)
    })
    .await;
    let left = tasks
        .update_task(leave)
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(left.gateway_ids, [gw2.as_str()]);
    // The former gateway gets a desired state without the task.
    agent
        .wait_state("without the task", |s| {
            s.tasks.iter().all(|t| t.task_id != id)
        })
        .await;
    let recorded = events(&mut tasks, &id).await;
    assert_eq!(recorded[0].reason, "TASK_UPDATED");
    assert!(
        recorded[0].message.contains(&format!("-{gw}")),
        "{:?}",
        recorded[0].message
    );

    // Gateways cannot change during a role swap.
    agent2.never_swap();
    // The remaining gateway reports the new desired state first (a cutover
    // is refused while a gateway is out of sync).
    wait_task(&mut tasks, &id, "in sync on its one gateway", |t| {
        t.gateways.len() == 1 && t.gateways.iter().all(|g| g.in_sync)
    })
    .await;
    tasks
        .cutover(pb::CutoverRequest {
            task_id: id.clone(),
            hold_timeout: Some(prost_types_duration(30)),
            ..Default::default()
        })
        .await
        .unwrap();
    expect_err(
        tasks
            .update_task(pb::UpdateTaskRequest {
                gateway_ids: gateways(&[&gw, &gw2]),
                ..update(&id)
            })
            .await,
        Code::FailedPrecondition,
        "gateway_ids: ",
    );
    // Other settings may change meanwhile; the swap is not disturbed.
    tasks
        .update_task(pb::UpdateTaskRequest {
            description: Some("cutting over".into()),
            ..update(&id)
        })
        .await
        .unwrap();
    let aborted = tasks
        .rollback(pb::RollbackRequest {
            task_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        state(aborted.task.as_ref().unwrap()),
        pb::TaskState::Running
    );
    assert_eq!(aborted.task.unwrap().description, "cutting over");
    drop(agent);
    drop(agent2);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_replays_with_the_backup_credentials_registered_in_the_control_plane() {
    use tandem_integration::secured::{SecuredFront, basic};
    let env = tandem_integration::env();
    let (old_url, new_url) = (
        env.cluster("es7").url.clone(),
        env.cluster("os2").url.clone(),
    );
    // The backup is secured; only the control plane knows its password.
    let expected = basic("replayer", "s3cret-from-the-control-plane");
    let secured = SecuredFront::start(&new_url, &expected).await;
    let cp = start_control_plane(300).await;
    let mut clusters = cp.clusters().await;
    register(&mut clusters, "old", &old_url).await;
    let backup = pb::RegisterClusterRequest {
        name: "new".into(),
        endpoints: vec![secured.url.clone()],
        credentials: Some(pb::Credentials {
            method: pb::AuthMethod::Basic as i32,
            username: "replayer".into(),
            password: "s3cret-from-the-control-plane".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    clusters.register_cluster(backup).await.unwrap();

    // The gateway's configuration names the backup without credentials.
    let data = tempfile::tempdir().unwrap();
    let gw = new_gateway_id();
    let mut options = GatewayOptions::replicating(&old_url, &secured.url, data.path());
    options.paused = true;
    options.extra_toml = cp.agent_section(&gw);
    let gateway = TestGateway::start_with(options).await;
    let mut tasks = cp.tasks().await;
    let id = create_task_once_registered(&mut tasks, create("secured", &gw, false))
        .await
        .id;

    let index = unique_index("secured-backup");
    for i in 0..20 {
        let status = tandem_integration::client::put_doc(
            &gateway.url,
            &index,
            &i.to_string(),
            serde_json::json!({ "i": i }),
        )
        .await;
        assert_eq!(status, 201);
    }
    let since = std::time::SystemTime::now();
    wait_task(&mut tasks, &id, "drained", drained_since(since)).await;
    assert_eq!(
        tandem_integration::compare::assert_index_equal(&old_url, &new_url, &index).await,
        20
    );
    // Every replayed batch carried the registered credentials.
    let bulks: Vec<_> = secured
        .seen()
        .into_iter()
        .filter(|s| s.path.contains("_bulk"))
        .collect();
    assert!(
        !bulks.is_empty(),
        "the replay went through the secured front"
    );
    assert!(
        bulks.iter().all(|s| s.authorization == expected),
        "{:?}",
        bulks.iter().map(|s| &s.authorization).collect::<Vec<_>>()
    );

    // The password is rotated on the cluster, then in the control plane:
    // the gateway replays with the new one, no restart.
    let rotated = basic("replayer", "rotated-s3cret");
    secured.set_expected(&rotated);
    let cluster_id = tasks
        .get_task(pb::GetTaskRequest {
            task_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .backup
        .unwrap()
        .cluster_id;
    clusters
        .update_cluster(pb::UpdateClusterRequest {
            cluster_id,
            credentials: Some(pb::Credentials {
                method: pb::AuthMethod::Basic as i32,
                username: "replayer".into(),
                password: "rotated-s3cret".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let before = secured.seen().len();
    for i in 20..30 {
        let status = tandem_integration::client::put_doc(
            &gateway.url,
            &index,
            &i.to_string(),
            serde_json::json!({ "i": i }),
        )
        .await;
        assert_eq!(status, 201);
    }
    let since = std::time::SystemTime::now();
    wait_task(
        &mut tasks,
        &id,
        "drained after the rotation",
        drained_since(since),
    )
    .await;
    assert_eq!(
        tandem_integration::compare::assert_index_equal(&old_url, &new_url, &index).await,
        30
    );
    let after: Vec<_> = secured.seen()[before..]
        .iter()
        .filter(|s| s.path.contains("_bulk") && s.authorization == rotated)
        .cloned()
        .collect();
    assert!(!after.is_empty(), "replay used the rotated password");
    drop(gateway);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_node_limits_registered_in_the_control_plane_throttle_the_gateway() {
    let env = tandem_integration::env();
    let (old_url, new_url) = (
        env.cluster("es7").url.clone(),
        env.cluster("os2").url.clone(),
    );
    let cp = start_control_plane(300).await;
    let mut clusters = cp.clusters().await;
    let old = clusters
        .register_cluster(pb::RegisterClusterRequest {
            name: "old".into(),
            endpoints: vec![old_url.clone()],
            limits: Some(pb::Limits {
                max_qps_per_node: 2,
                over_limit: pb::OverLimitPolicy::Reject as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .cluster
        .unwrap();
    register(&mut clusters, "new", &new_url).await;

    // The gateway's configuration sets no limits.
    let data = tempfile::tempdir().unwrap();
    let gw = new_gateway_id();
    let mut options = GatewayOptions::replicating(&old_url, &new_url, data.path());
    options.paused = true;
    options.extra_toml = cp.agent_section(&gw);
    let gateway = TestGateway::start_with(options).await;
    let client = tandem_integration::http();
    let burst = |n: usize| {
        let client = client.clone();
        let url = format!("{}/", gateway.url);
        async move {
            let mut refused = 0;
            for _ in 0..n {
                let response = client.get(&url).send().await.unwrap();
                match response.status().as_u16() {
                    200 => {}
                    429 => {
                        let body: serde_json::Value = response.json().await.unwrap();
                        assert_eq!(body["error"]["type"], "tandem_rate_limited", "{body}");
                        refused += 1;
                    }
                    other => panic!("unexpected status {other}"),
                }
            }
            refused
        }
    };
    assert_eq!(
        burst(10).await,
        0,
        "no limit before the gateway joins a task"
    );

    let mut tasks = cp.tasks().await;
    let id = create_task_once_registered(&mut tasks, create("limited", &gw, true))
        .await
        .id;
    let in_sync =
        |t: &pb::ReplicationTask| !t.gateways.is_empty() && t.gateways.iter().all(|g| g.in_sync);
    wait_task(&mut tasks, &id, "in sync", in_sync).await;
    // 2 requests/s per node, refused over it: most of a quick burst is 429.
    let refused = burst(10).await;
    assert!(refused >= 6, "only {refused} of 10 refused");

    // Raised in the control plane: applied without a restart.
    clusters
        .update_cluster(pb::UpdateClusterRequest {
            cluster_id: old.id,
            limits: Some(pb::Limits {
                max_qps_per_node: 10_000,
                over_limit: pb::OverLimitPolicy::Reject as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    wait_task(&mut tasks, &id, "in sync after the update", in_sync).await;
    assert_eq!(burst(10).await, 0, "the raised limit applies");
    drop(gateway);
    cp.stop().await;
}
