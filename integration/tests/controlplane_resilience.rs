//! The control plane end to end, against real processes: the
//! `tandem-controlplane` binary on Postgres, `tandem-gateway` binaries
//! joined to it through their `[control_plane]` section, and real es7 (old
//! cluster) and os2 (new cluster) nodes.
//!
//! - The seed workflow with a fleet of two gateways: record while paused,
//!   start, drain, cut over, roll back, with writes through both gateways in
//!   every phase and both clusters compared document by document.
//! - An outage of the control plane *and* its database in the middle of a
//!   running task: the gateway keeps serving and replaying with its last
//!   state, then reconnects, and lifecycle RPCs reach it again.
//! - Cutover and rollback under continuous writes on both gateways: the
//!   write hold may delay clients but never fail them, and nothing acked is
//!   lost on either cluster.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use tandem_client::AuthenticatedChannel;
use tandem_client::v1::cluster_service_client::ClusterServiceClient;
use tandem_client::v1::replication_service_client::ReplicationServiceClient;
use tandem_integration::client::{bulk, put_doc};
use tandem_integration::compare::{assert_index_equal, documents};
use tandem_integration::controlplane::{ControlPlaneApi, ControlPlaneOptions, ControlPlaneProcess};
use tandem_integration::gateway::{GatewayOptions, GatewayProcess, replication_status};
use tandem_integration::postgres::PrivatePostgres;
use tandem_integration::{http, unique_index};
use tandem_proto::v1 as pb;
use tonic::Code;

/// Longest wait for a task or gateway condition.
const WAIT: Duration = Duration::from_secs(30);

type Tasks = ReplicationServiceClient<AuthenticatedChannel>;
type Clusters = ClusterServiceClient<AuthenticatedChannel>;

/// The old (es7) and new (os2) cluster URLs.
fn cluster_urls() -> (String, String) {
    let env = tandem_integration::env();
    (
        env.cluster("es7").url.clone(),
        env.cluster("os2").url.clone(),
    )
}

/// Registers `old` and `new` on the control plane.
async fn register_clusters(cp: &ControlPlaneProcess, old_url: &str, new_url: &str) {
    let mut clusters: Clusters = cp.clusters().await;
    for (name, url) in [("old", old_url), ("new", new_url)] {
        clusters
            .register_cluster(pb::RegisterClusterRequest {
                name: name.to_string(),
                endpoints: vec![url.to_string()],
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("register {name}: {e:?}"));
    }
}

/// A gateway id unique to this process and call.
fn gateway_id(label: &str) -> String {
    unique_index(&format!("gw-{label}"))
}

/// Starts a real gateway process replicating old → new, joined to `cp` as
/// `id`, its config and queue in `dir`.
async fn start_gateway(
    cp: &ControlPlaneProcess,
    id: &str,
    dir: &Path,
    old_url: &str,
    new_url: &str,
    paused: bool,
) -> GatewayProcess {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut options = GatewayOptions::replicating(old_url, new_url, &data);
    options.paused = paused;
    options.extra_toml = cp.agent_toml(id);
    GatewayProcess::start(&options, &dir.join("gateway.toml")).await
}

fn by_name(name: &str) -> Option<pb::ClusterRef> {
    Some(pb::ClusterRef {
        cluster_name: name.to_string(),
        ..Default::default()
    })
}

/// Creates task `name` (old → new) on `gateways` once they registered, and
/// waits until every gateway applied it.
async fn create_task(
    tasks: &mut Tasks,
    name: &str,
    gateways: &[&str],
    start_paused: bool,
) -> pb::ReplicationTask {
    let request = pb::CreateTaskRequest {
        name: name.to_string(),
        primary: by_name("old"),
        backup: by_name("new"),
        gateway_ids: gateways.iter().map(|g| g.to_string()).collect(),
        start_paused,
        ..Default::default()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let task = loop {
        match tasks.create_task(request.clone()).await {
            Ok(response) => break response.into_inner().task.unwrap(),
            Err(status) if status.code() == Code::NotFound => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "gateways never registered: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("create {name}: {status:?}"),
        }
    };
    wait_task(tasks, &task.id, "applied by every gateway", |t| {
        t.gateways.len() == gateways.len() && t.gateways.iter().all(|g| g.connected && g.in_sync)
    })
    .await
}

async fn get(tasks: &mut Tasks, id: &str) -> pb::ReplicationTask {
    tasks
        .get_task(pb::GetTaskRequest {
            task_id: id.to_string(),
        })
        .await
        .unwrap_or_else(|e| panic!("GetTask {id}: {e:?}"))
        .into_inner()
        .task
        .unwrap()
}

/// Polls GetTask until `done` holds.
async fn wait_task(
    tasks: &mut Tasks,
    id: &str,
    what: &str,
    done: impl Fn(&pb::ReplicationTask) -> bool,
) -> pb::ReplicationTask {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let task = get(tasks, id).await;
        if done(&task) {
            return task;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task never became {what}: {task:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn state(task: &pb::ReplicationTask) -> pb::TaskState {
    pb::TaskState::try_from(task.state).unwrap()
}

fn direction(task: &pb::ReplicationTask) -> pb::ReplicationDirection {
    pb::ReplicationDirection::try_from(task.direction).unwrap()
}

/// Every gateway connected, in sync and fully replayed, as reported by
/// heartbeats received after `since` (older ones may predate the writes).
fn drained_since(since: SystemTime) -> impl Fn(&pb::ReplicationTask) -> bool {
    move |task| {
        !task.gateways.is_empty()
            && task.gateways.iter().all(|g| {
                g.connected
                    && g.in_sync
                    && g.lag_records == 0
                    && g.reported_at
                        .and_then(|t| SystemTime::try_from(t).ok())
                        .is_some_and(|at| at > since + Duration::from_millis(50))
            })
    }
}

/// Running in `dir` on the task and on every gateway's heartbeat.
fn running_in(dir: pb::ReplicationDirection) -> impl Fn(&pb::ReplicationTask) -> bool {
    move |t| {
        state(t) == pb::TaskState::Running
            && direction(t) == dir
            && t.gateways
                .iter()
                .all(|g| g.in_sync && g.direction == dir as i32)
    }
}

fn seconds(seconds: i64) -> Option<tandem_client::prost_types::Duration> {
    Some(tandem_client::prost_types::Duration { seconds, nanos: 0 })
}

/// Polls the gateway's own `/replication` status until `done` holds.
async fn wait_gateway(admin_url: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = replication_status(admin_url).await;
        if done(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gateway {admin_url} never became {what}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the gateway's `tandem_agent_connected` gauge reads `want`.
async fn wait_agent_connected(admin_url: &str, want: bool) {
    let line = format!("tandem_agent_connected {}", u8::from(want));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = http()
            .get(format!("{admin_url}/metrics"))
            .send()
            .await
            .expect("admin reachable")
            .text()
            .await
            .unwrap();
        if metrics.lines().any(|l| l.trim() == line) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gateway {admin_url} never showed `{line}`:\n{}",
            metrics
                .lines()
                .filter(|l| l.contains("agent"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fully replayed, according to the gateway itself.
fn replayed(status: &Value) -> bool {
    status["replayer"]["lag_records"] == 0 && status["paused"] == false
}

/// Writes through `gateway`: `shared` ids (`shared-N`) as `_bulk` index
/// actions in batches of 40 and `own` ids (`<via>-N`) one `PUT` each, every
/// source tagged with `via` and `phase`. Asserts every write is acked.
async fn write_through(
    gateway: &str,
    index: &str,
    via: &str,
    phase: &str,
    shared: std::ops::Range<u32>,
    own: std::ops::Range<u32>,
) {
    let shared: Vec<u32> = shared.collect();
    for chunk in shared.chunks(40) {
        let lines: Vec<Value> = chunk
            .iter()
            .flat_map(|n| {
                [
                    json!({ "index": { "_index": index, "_id": format!("shared-{n}") } }),
                    json!({ "n": n, "via": via, "phase": phase }),
                ]
            })
            .collect();
        let (status, body) = bulk(format!("{gateway}/_bulk"), &lines).await;
        assert_eq!(status, 200, "bulk via {via} ({phase}): {body}");
        assert_eq!(body["errors"], false, "bulk via {via} ({phase}): {body}");
    }
    for n in own {
        let status = put_doc(
            gateway,
            index,
            &format!("{via}-{n}"),
            json!({ "n": n, "via": via, "phase": phase }),
        )
        .await;
        assert!(
            status == 200 || status == 201,
            "PUT {via}-{n} via {via} ({phase}): {status}"
        );
    }
}

/// Deletes `shared-N` for `ids` through `gateway` in one `_bulk`.
async fn delete_through(gateway: &str, index: &str, ids: std::ops::Range<u32>) {
    let lines: Vec<Value> = ids
        .map(|n| json!({ "delete": { "_index": index, "_id": format!("shared-{n}") } }))
        .collect();
    let (status, body) = bulk(format!("{gateway}/_bulk"), &lines).await;
    assert_eq!(status, 200, "bulk delete: {body}");
    assert_eq!(body["errors"], false, "bulk delete: {body}");
}

// ---------------------------------------------------------------------------
// 1. The seed workflow, two gateways, es7 → os2.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_workflow_with_two_gateways_across_major_versions() {
    let (old_url, new_url) = cluster_urls();
    let database = tandem_integration::fresh_database("cp_resilience").await;
    let cp = ControlPlaneProcess::start(ControlPlaneOptions::new(&database)).await;
    register_clusters(&cp, &old_url, &new_url).await;
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (id_a, id_b) = (gateway_id("a"), gateway_id("b"));
    let a = start_gateway(&cp, &id_a, dirs.0.path(), &old_url, &new_url, true).await;
    let b = start_gateway(&cp, &id_b, dirs.1.path(), &old_url, &new_url, true).await;
    let mut tasks = cp.tasks().await;
    let task = create_task(&mut tasks, "fleet-seed", &[&id_a, &id_b], true).await;
    assert_eq!(state(&task), pb::TaskState::Created);
    let id = task.id.clone();

    // Created: writes through both gateways are recorded, not replayed.
    let index = unique_index("cp-seed");
    write_through(&a.url, &index, "a", "recorded", 0..120, 0..40).await;
    write_through(&b.url, &index, "b", "recorded", 80..200, 0..40).await;
    delete_through(&b.url, &index, 0..5).await;
    let (lag_a, lag_b) = (
        replication_status(&a.admin_url).await["replayer"]["lag_records"]
            .as_u64()
            .unwrap(),
        replication_status(&b.admin_url).await["replayer"]["lag_records"]
            .as_u64()
            .unwrap(),
    );
    assert!(
        lag_a > 0 && lag_b > 0,
        "nothing recorded: {lag_a} / {lag_b}"
    );
    let recorded = wait_task(&mut tasks, &id, "reporting the recorded lag", |t| {
        t.gateways.iter().map(|g| g.lag_records).collect::<Vec<_>>() == {
            let mut lags = vec![(id_a.as_str(), lag_a), (id_b.as_str(), lag_b)];
            lags.sort();
            lags.into_iter().map(|(_, lag)| lag).collect::<Vec<_>>()
        }
    })
    .await;
    assert_eq!(state(&recorded), pb::TaskState::Created);
    let backup = http()
        .get(format!("{new_url}/{index}"))
        .send()
        .await
        .unwrap();
    assert_eq!(backup.status(), 404, "replayed while CREATED");

    // Start, and follow the backlog draining with WatchTask.
    let mut watch = tasks
        .watch_task(pb::WatchTaskRequest {
            task_id: id.clone(),
            lag_sample_interval: seconds(1),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
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
    let start = Instant::now();
    let (mut saw_running, mut saw_drained) = (false, false);
    while !(saw_running && saw_drained) {
        let message = tokio::time::timeout(WAIT.saturating_sub(start.elapsed()), watch.message())
            .await
            .expect("WatchTask shows the task RUNNING and drained")
            .unwrap()
            .expect("the watch stays open");
        match message.update {
            Some(pb::watch_task_response::Update::Task(t)) => {
                saw_running |= state(&t) == pb::TaskState::Running;
            }
            Some(pb::watch_task_response::Update::LagSample(sample)) => {
                saw_drained |= saw_running
                    && sample.lag_records == 0
                    && sample.gateways_reporting == 2
                    && sample.gateways_stale == 0;
            }
            _ => {}
        }
    }
    drop(watch);
    for gateway in [&a, &b] {
        wait_gateway(&gateway.admin_url, "replayed", replayed).await;
    }
    let count = assert_index_equal(&old_url, &new_url, &index).await;
    assert_eq!(count, 200 + 40 + 40 - 5);

    // Cutover: both gateways swap roles.
    let response = tasks
        .cutover(pb::CutoverRequest {
            task_id: id.clone(),
            max_lag: seconds(60),
            hold_timeout: seconds(20),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let operation = response.operation.unwrap();
    let task = wait_task(
        &mut tasks,
        &id,
        "cut over",
        running_in(pb::ReplicationDirection::Reversed),
    )
    .await;
    assert_eq!(task.primary.as_ref().unwrap().cluster_name, "new");
    let last = task.last_operation.unwrap();
    assert_eq!(last.id, operation.id);
    assert_eq!(last.phase, pb::RoleSwapPhase::Succeeded as i32);
    assert_eq!(last.gateways_total, 2);
    for gateway in [&a, &b] {
        let status = replication_status(&gateway.admin_url).await;
        assert_eq!(status["reversed"], true, "{status}");
        assert_eq!(status["primary"], new_url.as_str(), "{status}");
    }

    // Writes go to os2 first and are replayed to es7.
    write_through(&a.url, &index, "a", "reversed", 150..260, 30..70).await;
    write_through(&b.url, &index, "b", "reversed", 0..60, 30..70).await;
    let since = SystemTime::now();
    wait_task(
        &mut tasks,
        &id,
        "drained after cutover",
        drained_since(since),
    )
    .await;
    let count = assert_index_equal(&new_url, &old_url, &index).await;
    assert_eq!(count, 260 + 70 + 70);

    // Rollback: es7 is the primary again.
    tasks
        .rollback(pb::RollbackRequest {
            task_id: id.clone(),
            max_lag: seconds(60),
            hold_timeout: seconds(20),
            ..Default::default()
        })
        .await
        .unwrap();
    let task = wait_task(
        &mut tasks,
        &id,
        "rolled back",
        running_in(pb::ReplicationDirection::Forward),
    )
    .await;
    assert_eq!(task.primary.as_ref().unwrap().cluster_name, "old");
    assert_eq!(
        task.last_operation.unwrap().kind,
        pb::RoleSwapKind::Rollback as i32
    );
    write_through(&a.url, &index, "a", "rolled-back", 240..300, 60..90).await;
    write_through(&b.url, &index, "b", "rolled-back", 100..140, 60..90).await;
    delete_through(&a.url, &index, 100..110).await;
    let since = SystemTime::now();
    wait_task(
        &mut tasks,
        &id,
        "drained after rollback",
        drained_since(since),
    )
    .await;
    let count = assert_index_equal(&old_url, &new_url, &index).await;
    assert_eq!(count, 300 + 90 + 90 - 10);
}

// ---------------------------------------------------------------------------
// 2. Control plane and Postgres down in the middle of a running task.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_and_postgres_down_mid_task() {
    let (old_url, new_url) = cluster_urls();
    let mut postgres = PrivatePostgres::start();
    let mut cp = ControlPlaneProcess::start(ControlPlaneOptions::new(postgres.url())).await;
    register_clusters(&cp, &old_url, &new_url).await;
    // A cluster with a stored (sealed) password: probing it after the
    // restart needs the same secret key.
    let sealed = cp
        .clusters()
        .await
        .register_cluster(pb::RegisterClusterRequest {
            name: "sealed".to_string(),
            endpoints: vec![tandem_integration::env().cluster("es6").url.clone()],
            credentials: Some(pb::Credentials {
                method: pb::AuthMethod::Basic as i32,
                username: "tandem".to_string(),
                password: "sealed-password".to_string(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("register sealed: {e:?}"))
        .into_inner()
        .cluster
        .unwrap()
        .id;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_id("outage");
    let gateway = start_gateway(&cp, &gw, dir.path(), &old_url, &new_url, false).await;
    let mut tasks = cp.tasks().await;
    let task = create_task(&mut tasks, "outage", &[&gw], false).await;
    assert_eq!(state(&task), pb::TaskState::Running);
    let id = task.id.clone();
    let index = unique_index("cp-outage");
    write_through(&gateway.url, &index, "gw", "before", 0..40, 0..20).await;
    let since = SystemTime::now();
    let before = wait_task(&mut tasks, &id, "drained", drained_since(since)).await;
    assert_index_equal(&old_url, &new_url, &index).await;
    wait_agent_connected(&gateway.admin_url, true).await;

    // Both down.
    cp.kill_9();
    postgres.stop();
    wait_agent_connected(&gateway.admin_url, false).await;

    // The gateway keeps serving every write, and keeps replaying them.
    let offset_before = replication_status(&gateway.admin_url).await["queue"]["next_offset"]
        .as_u64()
        .unwrap();
    for round in 0..3u32 {
        let shared = 40 + round * 40..80 + round * 40;
        let own = 20 + round * 20..40 + round * 20;
        write_through(&gateway.url, &index, "gw", "outage", shared, own).await;
        let status = wait_gateway(&gateway.admin_url, "replayed during the outage", replayed).await;
        assert!(
            status["queue"]["next_offset"].as_u64().unwrap() > offset_before,
            "nothing recorded during the outage: {status}"
        );
        let count = assert_index_equal(&old_url, &new_url, &index).await;
        assert_eq!(count as u32, 80 + round * 40 + 40 + round * 20);
    }
    assert_eq!(
        replication_status(&gateway.admin_url).await["reversed"],
        false
    );

    // Both back: Postgres on a new port, the control plane on the same
    // address with the same key and token.
    postgres.restart();
    cp.set_database_url(postgres.url());
    let restarted_at = SystemTime::now();
    cp.restart().await;
    wait_agent_connected(&gateway.admin_url, true).await;
    let mut tasks = cp.tasks().await;
    let after = wait_task(&mut tasks, &id, "reconnected", drained_since(restarted_at)).await;
    for (field, was, is) in [
        ("state", before.state, after.state),
        ("direction", before.direction, after.direction),
    ] {
        assert_eq!(was, is, "{field} changed across the outage");
    }
    assert_eq!(before.name, after.name);
    assert_eq!(before.primary, after.primary);
    assert_eq!(before.backup, after.backup);
    assert_eq!(before.gateway_ids, after.gateway_ids);
    assert_eq!(before.started_at, after.started_at);

    let mut gateways = cp.gateways().await;
    let listed = gateways
        .list_gateways(pb::ListGatewaysRequest {
            task_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .gateways;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0].id, gw);
    assert_eq!(
        listed[0].connection_state,
        pb::GatewayConnectionState::Connected as i32,
        "{listed:#?}"
    );
    assert!(listed[0].task_ids.contains(&id), "{listed:#?}");

    // The stored password still opens with the same key.
    let probe = cp
        .clusters()
        .await
        .probe_cluster(pb::ProbeClusterRequest { cluster_id: sealed })
        .await
        .unwrap_or_else(|e| panic!("probe sealed after the restart: {e:?}"))
        .into_inner()
        .probe
        .unwrap();
    assert!(
        probe.reachable && probe.credentials_valid && probe.error.is_none(),
        "{probe:#?}"
    );

    // Queue statistics resume: fresh figures, counting the outage's writes.
    let head = replication_status(&gateway.admin_url).await["queue"]["next_offset"]
        .as_u64()
        .unwrap();
    let mut queues = cp.queues().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = queues
            .get_queue_stats(pb::GetQueueStatsRequest {
                task_id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let fresh = stats
            .tasks
            .first()
            .and_then(|t| t.gateways.first())
            .filter(|g| {
                let s = g.stats.as_ref().unwrap();
                !g.stale
                    && s.head_offset == head
                    && s.lag_records == 0
                    && s.collected_at
                        .and_then(|t| SystemTime::try_from(t).ok())
                        .is_some_and(|at| at > restarted_at)
            });
        if fresh.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue statistics never resumed (gateway head offset {head}): {stats:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Lifecycle RPCs reach the gateway again: pause...
    let paused = tasks
        .pause_task(pb::PauseTaskRequest {
            task_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(state(&paused), pb::TaskState::Paused);
    wait_gateway(&gateway.admin_url, "paused", |s| s["paused"] == true).await;
    write_through(&gateway.url, &index, "gw", "paused", 0..0, 100..110).await;
    wait_task(&mut tasks, &id, "lagging while paused", |t| {
        t.gateways.iter().all(|g| g.lag_records >= 10)
    })
    .await;
    let backup = documents(&new_url, &index).await;
    assert!(
        !backup.contains_key("gw-100"),
        "replayed while paused: {:?}",
        backup.get("gw-100")
    );
    // ...and resume.
    tasks
        .resume_task(pb::ResumeTaskRequest {
            task_id: id.clone(),
        })
        .await
        .unwrap();
    wait_gateway(&gateway.admin_url, "resumed and replayed", replayed).await;
    let since = SystemTime::now();
    let task = wait_task(
        &mut tasks,
        &id,
        "drained after resume",
        drained_since(since),
    )
    .await;
    assert_eq!(state(&task), pb::TaskState::Running);

    // Nothing lost.
    let count = assert_index_equal(&old_url, &new_url, &index).await;
    assert_eq!(count, 160 + 80 + 10);
    drop(gateway);
    drop(cp);
}

// ---------------------------------------------------------------------------
// 3. Fleet cutover and rollback under continuous writes.
// ---------------------------------------------------------------------------

/// What one continuous writer saw.
#[derive(Debug, Default)]
struct WriterLog {
    /// Last acknowledged source of every id written.
    acked: BTreeMap<String, Value>,
    /// Every failed write, with the answer.
    errors: Vec<String>,
    /// Requests sent.
    requests: u64,
    /// Slowest request (a held write shows here).
    slowest: Duration,
    /// When each request was sent and answered.
    spans: Vec<(SystemTime, SystemTime)>,
}

/// Writes through `gateway` until `stop`: mostly single-document `PUT`s,
/// every fifth request a `_bulk` of four, every seventh an overwrite of an
/// earlier id (so versions move past 1).
async fn write_continuously(
    gateway: String,
    index: String,
    prefix: String,
    stop: Arc<AtomicBool>,
) -> WriterLog {
    let client = http();
    let mut log = WriterLog::default();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let sent = SystemTime::now();
        if n.is_multiple_of(5) {
            let items: Vec<(String, Value)> = (0..4)
                .map(|k| {
                    (
                        format!("{prefix}-{n}-{k}"),
                        json!({ "writer": prefix, "n": n, "k": k }),
                    )
                })
                .collect();
            let body: String = items
                .iter()
                .map(|(id, source)| {
                    format!(
                        "{}\n{source}\n",
                        json!({ "index": { "_index": index, "_id": id } })
                    )
                })
                .collect();
            let answer = client
                .post(format!("{gateway}/_bulk"))
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await;
            match answer {
                Ok(response) if response.status().as_u16() == 200 => {
                    let value: Value = response.json().await.unwrap_or(Value::Null);
                    let statuses: Vec<u64> = value["items"]
                        .as_array()
                        .map(|items| {
                            items
                                .iter()
                                .map(|i| i["index"]["status"].as_u64().unwrap_or(0))
                                .collect()
                        })
                        .unwrap_or_default();
                    if value["errors"] == false
                        && statuses.len() == 4
                        && statuses.iter().all(|s| *s == 200 || *s == 201)
                    {
                        log.acked.extend(items);
                    } else {
                        log.errors.push(format!("bulk {n}: {value}"));
                    }
                }
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    log.errors.push(format!("bulk {n}: {status} {text}"));
                }
                Err(e) => log.errors.push(format!("bulk {n}: {e}")),
            }
        } else {
            let id = if n.is_multiple_of(7) && n > 7 {
                format!("{prefix}-{}", n - 7)
            } else {
                format!("{prefix}-{n}")
            };
            let source = json!({ "writer": prefix, "n": n });
            let answer = client
                .put(format!("{gateway}/{index}/_doc/{id}"))
                .json(&source)
                .send()
                .await;
            match answer {
                Ok(response) if matches!(response.status().as_u16(), 200 | 201) => {
                    log.acked.insert(id, source);
                }
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    log.errors.push(format!("PUT {id}: {status} {text}"));
                }
                Err(e) => log.errors.push(format!("PUT {id}: {e}")),
            }
        }
        log.requests += 1;
        let answered = SystemTime::now();
        log.slowest = log
            .slowest
            .max(answered.duration_since(sent).unwrap_or_default());
        log.spans.push((sent, answered));
    }
    log
}

/// One writer per gateway, all stopped together.
struct Writers {
    stop: Arc<AtomicBool>,
    handles: Vec<tokio::task::JoinHandle<WriterLog>>,
}

impl Writers {
    fn start(gateways: &[(&str, &GatewayProcess)], index: &str, phase: &str) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let handles = gateways
            .iter()
            .map(|(label, gateway)| {
                tokio::spawn(write_continuously(
                    gateway.url.clone(),
                    index.to_string(),
                    format!("{label}-{phase}"),
                    stop.clone(),
                ))
            })
            .collect();
        Writers { stop, handles }
    }

    /// Stops the writers; asserts none saw an error and each was writing
    /// while `operation` held writes; returns every acked id with its last
    /// source.
    async fn finish(self, operation: &pb::RoleSwapOperation) -> BTreeMap<String, Value> {
        let at = |t: Option<tandem_client::prost_types::Timestamp>| {
            t.and_then(|t| SystemTime::try_from(t).ok())
                .unwrap_or_else(|| panic!("operation without hold times: {operation:#?}"))
        };
        let (held, released) = (
            at(operation.hold_started_at),
            at(operation.hold_released_at),
        );
        self.stop.store(true, Ordering::SeqCst);
        let mut acked = BTreeMap::new();
        for handle in self.handles {
            let log = handle.await.unwrap();
            assert!(
                log.errors.is_empty(),
                "{} of {} writes failed:\n{}",
                log.errors.len(),
                log.requests,
                log.errors.join("\n")
            );
            assert!(
                log.requests > 20,
                "too few writes: {} requests",
                log.requests
            );
            // The hold happened under this writer's load: a write was sent
            // before the release and answered after the hold began.
            assert!(
                log.spans
                    .iter()
                    .any(|(sent, answered)| *sent <= released && *answered >= held),
                "no write overlapped the hold ({held:?} .. {released:?})"
            );
            eprintln!(
                "writer: {} requests, {} ids, slowest {:?}, hold {:?}",
                log.requests,
                log.acked.len(),
                log.slowest,
                released.duration_since(held).unwrap_or_default()
            );
            acked.extend(log.acked);
        }
        acked
    }
}

/// Every acked id is on both clusters with its last acked source and the
/// same version, and the clusters hold nothing else that differs.
async fn assert_acked_on_both(
    primary: &str,
    backup: &str,
    index: &str,
    acked: &BTreeMap<String, Value>,
) {
    let on_primary = documents(primary, index).await;
    let on_backup = documents(backup, index).await;
    let mut problems = Vec::new();
    for (id, source) in acked {
        match (on_primary.get(id), on_backup.get(id)) {
            (Some((vp, sp)), Some((vb, sb))) if sp == source && sb == source && vp == vb => {}
            (p, b) => problems.push(format!("{id}: acked {source}, primary {p:?}, backup {b:?}")),
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} acked documents wrong:\n{}",
        problems.len(),
        acked.len(),
        problems.join("\n")
    );
    assert_index_equal(primary, backup, index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_cutover_under_continuous_writes_loses_nothing() {
    let (old_url, new_url) = cluster_urls();
    let database = tandem_integration::fresh_database("cp_resilience").await;
    let cp = ControlPlaneProcess::start(ControlPlaneOptions::new(&database)).await;
    register_clusters(&cp, &old_url, &new_url).await;
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (id_a, id_b) = (gateway_id("a"), gateway_id("b"));
    let a = start_gateway(&cp, &id_a, dirs.0.path(), &old_url, &new_url, false).await;
    let b = start_gateway(&cp, &id_b, dirs.1.path(), &old_url, &new_url, false).await;
    let mut tasks = cp.tasks().await;
    let id = create_task(&mut tasks, "fleet-live", &[&id_a, &id_b], false)
        .await
        .id;
    let index = unique_index("cp-live");
    let fleet = [("a", &a), ("b", &b)];
    let mut acked = BTreeMap::new();

    for (kind, to) in [
        (
            pb::RoleSwapKind::Cutover,
            pb::ReplicationDirection::Reversed,
        ),
        (
            pb::RoleSwapKind::Rollback,
            pb::ReplicationDirection::Forward,
        ),
    ] {
        let phase = format!("{kind:?}").to_lowercase();
        let writers = Writers::start(&fleet, &index, &phase);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let operation = match kind {
            pb::RoleSwapKind::Cutover => {
                tasks
                    .cutover(pb::CutoverRequest {
                        task_id: id.clone(),
                        max_lag: seconds(60),
                        max_lag_records: Some(1_000_000),
                        hold_timeout: seconds(20),
                        ..Default::default()
                    })
                    .await
                    .unwrap_or_else(|e| panic!("cutover: {e:?}"))
                    .into_inner()
                    .operation
            }
            _ => {
                tasks
                    .rollback(pb::RollbackRequest {
                        task_id: id.clone(),
                        max_lag: seconds(60),
                        max_lag_records: Some(1_000_000),
                        hold_timeout: seconds(20),
                        ..Default::default()
                    })
                    .await
                    .unwrap_or_else(|e| panic!("rollback: {e:?}"))
                    .into_inner()
                    .operation
            }
        };
        let operation = operation.unwrap();
        let task = wait_task(&mut tasks, &id, &phase, running_in(to)).await;
        let last = task.last_operation.unwrap();
        assert_eq!(last.id, operation.id);
        assert_eq!(last.phase, pb::RoleSwapPhase::Succeeded as i32, "{last:#?}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        acked.extend(writers.finish(&last).await);

        let since = SystemTime::now();
        wait_task(&mut tasks, &id, "drained", drained_since(since)).await;
        let (primary, backup) = match to {
            pb::ReplicationDirection::Reversed => (&new_url, &old_url),
            _ => (&old_url, &new_url),
        };
        for gateway in [&a, &b] {
            let status = replication_status(&gateway.admin_url).await;
            assert_eq!(status["primary"], primary.as_str(), "{status}");
        }
        assert_acked_on_both(primary, backup, &index, &acked).await;
    }
}
