//! GatewayService and QueueService.GetQueueStats end to end: a real control
//! plane on a fresh Postgres database, driven by agents speaking the real
//! agent protocol.
//!
//! Most tests play the agent themselves with a tonic client of
//! `GatewayService.AgentStream` (hello, heartbeats, statistics, events,
//! command results), so every message and every failure is under the
//! test's control. The last test runs a real gateway (its `[control_plane]`
//! agent) in front of real clusters and checks that the fleet view shows
//! what goes through it.

use std::collections::HashMap;
use std::time::Duration;

use tandem_client::AuthenticatedChannel;
use tandem_client::v1::gateway_service_client::GatewayServiceClient;
use tandem_integration::controlplane::{ControlPlaneApi, InProcessControlPlane};
use tandem_integration::gateway::{GatewayOptions, TestGateway};
use tandem_integration::{free_port, unique_index};
use tandem_proto::v1 as pb;
use tandem_proto::v1::agent_stream_request::Payload as Up;
use tandem_proto::v1::agent_stream_response::Payload as Down;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

const TOKEN: &str = "gateway-service-test-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);

type Gateways = GatewayServiceClient<AuthenticatedChannel>;

// ---------------------------------------------------------------------------
// Harness: a control plane, and agents played by the test.
// ---------------------------------------------------------------------------

/// A control plane running in this process, on a fresh database.
type TestControlPlane = InProcessControlPlane;

/// A control plane with 1 s heartbeat and statistics intervals.
async fn start_control_plane() -> TestControlPlane {
    start_with_heartbeat(1_000).await
}

/// A control plane with heartbeat and statistics intervals of
/// `heartbeat_ms`.
async fn start_with_heartbeat(heartbeat_ms: u64) -> TestControlPlane {
    let database_url = tandem_integration::fresh_database("cp_gateways").await;
    let mut config = InProcessControlPlane::config(&database_url, TOKEN);
    config.agent_heartbeat_interval_ms = heartbeat_ms;
    config.agent_stats_interval_ms = heartbeat_ms;
    InProcessControlPlane::start(config).await
}

/// An agent played by the test over a real `AgentStream`.
struct FakeAgent {
    id: String,
    up: Option<mpsc::Sender<pb::AgentStreamRequest>>,
    down: tonic::Streaming<pb::AgentStreamResponse>,
}

/// Opens an agent stream sending `first` messages, with `bearer`.
async fn open_stream(
    cp: &TestControlPlane,
    bearer: Option<&str>,
    first: Vec<Up>,
) -> Result<
    (
        mpsc::Sender<pb::AgentStreamRequest>,
        tonic::Streaming<pb::AgentStreamResponse>,
    ),
    tonic::Status,
> {
    let (up, rx) = mpsc::channel(64);
    for payload in first {
        up.send(pb::AgentStreamRequest {
            payload: Some(payload),
        })
        .await
        .unwrap();
    }
    let mut client = cp.gateways_with(bearer).await;
    let down = client
        .agent_stream(ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((up, down))
}

fn hello(id: &str, name: &str) -> pb::AgentHello {
    pb::AgentHello {
        gateway_id: id.to_string(),
        name: name.to_string(),
        labels: [("zone".to_string(), "eu-1a".to_string())].into(),
        advertised_address: "10.0.0.7:9200".into(),
        admin_address: "10.0.0.7:9300".into(),
        hostname: format!("{name}.internal"),
        version: "0.1.0".into(),
        build: "abc123".into(),
        capabilities: vec!["queue.v1".into(), "read_repair".into()],
        listeners: vec![pb::Listener {
            name: "default".into(),
            address: "0.0.0.0:9200".into(),
            tls: false,
        }],
        started_at: Some(std::time::SystemTime::now().into()),
        ..Default::default()
    }
}

impl FakeAgent {
    /// Connects with `hello`; returns the agent, its welcome and its first
    /// desired state.
    async fn connect(
        cp: &TestControlPlane,
        hello: pb::AgentHello,
    ) -> (FakeAgent, pb::AgentWelcome, pb::DesiredState) {
        let id = hello.gateway_id.clone();
        let (up, down) = open_stream(cp, Some(TOKEN), vec![Up::Hello(hello)])
            .await
            .unwrap_or_else(|e| panic!("agent stream of {id}: {e:?}"));
        let mut agent = FakeAgent {
            id,
            up: Some(up),
            down,
        };
        let Down::Welcome(welcome) = agent.next().await else {
            panic!("the first answer must be the welcome");
        };
        let Down::DesiredState(state) = agent.next().await else {
            panic!("the welcome must be followed by the desired state");
        };
        (agent, welcome, state)
    }

    async fn send(&self, payload: Up) {
        self.up
            .as_ref()
            .expect("stream open")
            .send(pb::AgentStreamRequest {
                payload: Some(payload),
            })
            .await
            .expect("the control plane reads the stream");
    }

    /// The next message from the control plane (panics on end or error).
    async fn next(&mut self) -> Down {
        match self.next_result().await {
            Ok(Some(payload)) => payload,
            other => panic!("{}: expected a message, got {other:?}", self.id),
        }
    }

    /// The next message, the end of the stream (`None`) or its error.
    async fn next_result(&mut self) -> Result<Option<Down>, tonic::Status> {
        let message = tokio::time::timeout(WAIT, self.down.message())
            .await
            .unwrap_or_else(|_| panic!("{}: nothing from the control plane", self.id))?;
        Ok(message.map(|m| m.payload.expect("a payload")))
    }

    /// Ends the agent's side of the stream.
    fn close(&mut self) {
        self.up = None;
    }
}

/// A heartbeat reporting `tasks` as (task id, lag records, consumer state).
fn heartbeat(applied: u64, drain: pb::DrainState, tasks: &[(&str, u64, pb::ConsumerState)]) -> Up {
    Up::Heartbeat(pb::AgentHeartbeat {
        sent_at: Some(std::time::SystemTime::now().into()),
        applied_version: applied,
        ready: drain == pb::DrainState::Serving,
        drain_state: drain as i32,
        in_flight_requests: 2,
        idle_for: Some(prost_types_duration(1)),
        disk_free_bytes: 1 << 30,
        disk_total_bytes: 4 << 30,
        tasks: tasks
            .iter()
            .map(|(task, lag, consumer)| pb::TaskRuntimeStatus {
                task_id: task.to_string(),
                mode: pb::TaskMode::Replay as i32,
                direction: pb::ReplicationDirection::Forward as i32,
                lag_records: *lag,
                consumer_state: *consumer as i32,
                primary_reachable: true,
                backup_reachable: true,
                ..Default::default()
            })
            .collect(),
    })
}

fn prost_types_duration(seconds: i64) -> tandem_client::prost_types::Duration {
    tandem_client::prost_types::Duration { seconds, nanos: 0 }
}

/// Queue statistics of one task: `lag` records behind, `depth` retained.
fn queue(lag: u64, depth: u64, lag_secs: i64, consumer: pb::ConsumerState) -> pb::QueueStats {
    pb::QueueStats {
        depth_records: depth,
        depth_bytes: depth * 100,
        lag_records: lag,
        lag_bytes: lag * 100,
        lag: Some(prost_types_duration(lag_secs)),
        replay_records_per_second: 10.0,
        dead_letters: 1,
        head_offset: depth,
        committed_offset: depth - lag,
        consumer_state: consumer as i32,
        collected_at: Some(std::time::SystemTime::now().into()),
        ..Default::default()
    }
}

fn stats_report(tasks: &[(&str, pb::QueueStats)]) -> Up {
    Up::QueueStats(pb::QueueStatsReport {
        tasks: tasks
            .iter()
            .map(|(task, stats)| pb::TaskQueueReport {
                task_id: task.to_string(),
                stats: Some(stats.clone()),
            })
            .collect(),
    })
}

async fn get(client: &mut Gateways, id: &str) -> Result<pb::Gateway, tonic::Status> {
    client
        .get_gateway(pb::GetGatewayRequest {
            gateway_id: id.to_string(),
        })
        .await
        .map(|r| r.into_inner().gateway.unwrap())
}

/// Polls GetGateway until `done` holds; returns that snapshot.
async fn wait_for(
    client: &mut Gateways,
    id: &str,
    what: &str,
    done: impl Fn(&pb::Gateway) -> bool,
) -> pb::Gateway {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let gateway = get(client, id).await.unwrap();
        if done(&gateway) {
            return gateway;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gateway {id} never {what}: {gateway:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn connected(g: &pb::Gateway) -> bool {
    g.connection_state() == pb::GatewayConnectionState::Connected
}

fn disconnected(g: &pb::Gateway) -> bool {
    g.connection_state() == pb::GatewayConnectionState::Disconnected
}

fn drain_state(g: &pb::Gateway) -> pb::DrainState {
    g.drain.unwrap_or_default().state()
}

/// Asserts `result` failed with `code` and a message starting with
/// `prefix`; returns the message.
#[track_caller]
fn expect_err<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    prefix: &str,
) -> String {
    let status = result.expect_err("the call should have failed");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().starts_with(prefix),
        "{:?} does not start with {prefix:?}",
        status.message()
    );
    status.message().to_string()
}

fn new_id() -> String {
    uuid_like(&unique_index("gw"))
}

/// A UUID-shaped id derived from `seed`, as gateways generate them.
fn uuid_like(seed: &str) -> String {
    let mut hash: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for byte in seed.bytes() {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    let hex = format!("{hash:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

// ---------------------------------------------------------------------------
// Registration, reports and the fleet view.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_is_welcomed_and_its_heartbeats_show_in_the_fleet_view() {
    let cp = start_control_plane().await;
    let id = new_id();
    let (agent, welcome, state) = FakeAgent::connect(&cp, hello(&id, "edge-1")).await;

    assert_eq!(welcome.gateway_id, id);
    assert_eq!(welcome.heartbeat_interval, Some(prost_types_duration(1)));
    assert_eq!(welcome.stats_interval, Some(prost_types_duration(1)));
    assert!(welcome.server_time.is_some());
    assert!(!welcome.control_plane_version.is_empty());
    assert_eq!(
        state.version, 0,
        "nothing was ever decided for a new gateway"
    );
    assert!(!state.drain && state.tasks.is_empty());

    let mut client = cp.gateways().await;
    let registered = get(&mut client, &id).await.unwrap();
    assert!(connected(&registered), "{registered:#?}");
    assert_eq!(registered.name, "edge-1");
    assert_eq!(
        registered.labels.get("zone").map(String::as_str),
        Some("eu-1a")
    );
    assert_eq!(registered.advertised_address, "10.0.0.7:9200");
    assert_eq!(registered.admin_address, "10.0.0.7:9300");
    assert_eq!(registered.hostname, "edge-1.internal");
    assert_eq!(registered.capabilities, ["queue.v1", "read_repair"]);
    assert_eq!(registered.listeners.len(), 1);
    assert_eq!(drain_state(&registered), pb::DrainState::Serving);
    assert!(registered.connected_at.is_some() && registered.first_seen_at.is_some());
    assert!(
        registered.queue_stats.is_none(),
        "no statistics reported yet"
    );

    agent
        .send(heartbeat(
            0,
            pb::DrainState::Serving,
            &[
                ("task-a", 42, pb::ConsumerState::Running),
                ("task-b", 8, pb::ConsumerState::Paused),
            ],
        ))
        .await;
    agent
        .send(stats_report(&[
            ("task-a", queue(42, 50, 3, pb::ConsumerState::Running)),
            ("task-b", queue(8, 8, 9, pb::ConsumerState::Paused)),
        ]))
        .await;
    let reported = wait_for(&mut client, &id, "showed its reports", |g| {
        g.queue_stats.is_some() && g.ready
    })
    .await;
    assert!(connected(&reported));
    assert!(reported.last_seen_at.is_some());
    assert_eq!(reported.task_ids, ["task-a", "task-b"]);
    assert_eq!(reported.in_flight_requests, 2);
    assert_eq!(reported.disk_free_bytes, 1 << 30);
    let drain = reported.drain.unwrap();
    assert_eq!(
        drain.lag_records, 50,
        "per-task lag from the heartbeat, summed"
    );
    assert_eq!(drain.lag_records_paused, 8);
    let stats = reported.queue_stats.unwrap();
    assert_eq!(stats.lag_records, 50);
    assert_eq!(stats.depth_records, 58);
    assert_eq!(stats.lag, Some(prost_types_duration(9)));
    assert_eq!(stats.consumer_state(), pb::ConsumerState::Paused);

    // The list shows the same, and its filters select on what was reported.
    let list = |request: pb::ListGatewaysRequest| {
        let mut client = client.clone();
        async move {
            client
                .list_gateways(request)
                .await
                .unwrap()
                .into_inner()
                .gateways
                .into_iter()
                .map(|g| g.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(pb::ListGatewaysRequest::default()).await,
        vec![id.clone()]
    );
    for (request, expected) in [
        (
            pb::ListGatewaysRequest {
                connection_state: pb::GatewayConnectionState::Connected as i32,
                ..Default::default()
            },
            1,
        ),
        (
            pb::ListGatewaysRequest {
                connection_state: pb::GatewayConnectionState::Disconnected as i32,
                ..Default::default()
            },
            0,
        ),
        (
            pb::ListGatewaysRequest {
                task_id: "task-b".into(),
                ..Default::default()
            },
            1,
        ),
        (
            pb::ListGatewaysRequest {
                task_id: "task-z".into(),
                ..Default::default()
            },
            0,
        ),
        (
            pb::ListGatewaysRequest {
                drain_state: pb::DrainState::Draining as i32,
                ..Default::default()
            },
            0,
        ),
        (
            pb::ListGatewaysRequest {
                labels: [("zone".to_string(), "eu-1a".to_string())].into(),
                ..Default::default()
            },
            1,
        ),
        (
            pb::ListGatewaysRequest {
                labels: [("zone".to_string(), "us-1".to_string())].into(),
                ..Default::default()
            },
            0,
        ),
    ] {
        assert_eq!(list(request.clone()).await.len(), expected, "{request:?}");
    }
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_gateways_pages_by_name_and_checks_its_arguments() {
    let cp = start_control_plane().await;
    let mut agents = Vec::new();
    for name in ["edge-c", "edge-a", "edge-b"] {
        let (agent, _, _) = FakeAgent::connect(&cp, hello(&new_id(), name)).await;
        agents.push(agent);
    }
    let mut client = cp.gateways().await;
    let first = client
        .list_gateways(pb::ListGatewaysRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = first.gateways.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["edge-a", "edge-b"]);
    assert!(!first.next_page_token.is_empty());
    let second = client
        .list_gateways(pb::ListGatewaysRequest {
            page_size: 2,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = second.gateways.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["edge-c"]);
    assert!(second.next_page_token.is_empty());

    expect_err(
        client
            .list_gateways(pb::ListGatewaysRequest {
                page_size: 2,
                page_token: first.next_page_token,
                task_id: "other".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_token: ",
    );
    expect_err(
        client
            .list_gateways(pb::ListGatewaysRequest {
                page_size: -1,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_size: ",
    );
    expect_err(
        client
            .list_gateways(pb::ListGatewaysRequest {
                connection_state: 42,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "connection_state: ",
    );
    expect_err(
        client
            .list_gateways(pb::ListGatewaysRequest {
                labels: [("Bad Key".to_string(), "x".to_string())].into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "labels[",
    );
    expect_err(
        get(&mut client, "no-such-gateway").await,
        Code::NotFound,
        "gateway_id: ",
    );
    expect_err(
        get(&mut client, "not a gateway id").await,
        Code::InvalidArgument,
        "gateway_id: ",
    );
    drop(agents);
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_stats_aggregate_the_latest_report_of_every_gateway() {
    let cp = start_control_plane().await;
    let (a, b) = (new_id(), new_id());
    let (agent_a, _, _) = FakeAgent::connect(&cp, hello(&a, "edge-a")).await;
    let (mut agent_b, _, _) = FakeAgent::connect(&cp, hello(&b, "edge-b")).await;
    // An older report of A, replaced by the next one.
    agent_a
        .send(stats_report(&[(
            "task-1",
            queue(1000, 1000, 60, pb::ConsumerState::Running),
        )]))
        .await;
    agent_a
        .send(stats_report(&[
            ("task-1", queue(10, 100, 5, pb::ConsumerState::Running)),
            ("task-2", queue(3, 30, 2, pb::ConsumerState::Paused)),
        ]))
        .await;
    agent_b
        .send(stats_report(&[(
            "task-1",
            queue(20, 200, 7, pb::ConsumerState::BackingOff),
        )]))
        .await;

    let mut queues = cp.queues().await;
    let stats = |request: pb::GetQueueStatsRequest| {
        let mut queues = queues.clone();
        async move {
            queues
                .get_queue_stats(request)
                .await
                .map(|r| r.into_inner())
        }
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let all = loop {
        let all = stats(pb::GetQueueStatsRequest::default()).await.unwrap();
        let fleet = all.fleet.clone().unwrap_or_default();
        if fleet.lag_records == 33 && all.gateways.len() == 2 {
            break all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "statistics never aggregated: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let fleet = all.fleet.unwrap();
    assert_eq!(fleet.depth_records, 330);
    assert_eq!(fleet.lag, Some(prost_types_duration(7)), "the worst lag");
    assert_eq!(fleet.dead_letters, 3);
    assert_eq!(fleet.replay_records_per_second, 30.0);
    assert_eq!(fleet.consumer_state(), pb::ConsumerState::BackingOff);
    assert_eq!((fleet.head_offset, fleet.committed_offset), (0, 0));
    assert!(all.generated_at.is_some());

    let tasks: Vec<_> = all.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(tasks, ["task-1", "task-2"]);
    let task_1 = &all.tasks[0];
    assert_eq!(task_1.total.as_ref().unwrap().lag_records, 30);
    let mut expected_ids = vec![a.clone(), b.clone()];
    expected_ids.sort();
    let per_gateway: Vec<_> = task_1
        .gateways
        .iter()
        .map(|g| g.gateway_id.clone())
        .collect();
    assert_eq!(per_gateway, expected_ids, "ordered by gateway id");
    assert!(task_1.gateways.iter().all(|g| !g.stale));
    let of = |id: &str| all.gateways.iter().find(|g| g.gateway_id == id).unwrap();
    assert_eq!(of(&a).total.as_ref().unwrap().lag_records, 13);
    assert_eq!(of(&b).total.as_ref().unwrap().lag_records, 20);

    // Filters.
    let only_task_2 = stats(pb::GetQueueStatsRequest {
        task_id: "task-2".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(only_task_2.fleet.unwrap().lag_records, 3);
    assert_eq!(only_task_2.gateways.len(), 1, "only A holds task-2");
    let only_b = stats(pb::GetQueueStatsRequest {
        gateway_id: b.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(only_b.fleet.unwrap().lag_records, 20);
    expect_err(
        stats(pb::GetQueueStatsRequest {
            gateway_id: "unknown-gateway".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "gateway_id: ",
    );

    // A disconnected gateway's figures stay, flagged stale.
    agent_b.close();
    assert_eq!(agent_b.next_result().await.unwrap(), None);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let all = queues
            .get_queue_stats(pb::GetQueueStatsRequest::default())
            .await
            .unwrap()
            .into_inner();
        let b_stats = all.gateways.iter().find(|g| g.gateway_id == b).unwrap();
        if b_stats.stale {
            assert_eq!(all.fleet.unwrap().lag_records, 33, "last known values kept");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "B never stale");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(agent_a);
    cp.stop().await;
}

// ---------------------------------------------------------------------------
// Connection lifecycle.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_stream_disconnects_and_delete_is_refused_until_then() {
    let cp = start_control_plane().await;
    let id = new_id();
    let (mut agent, _, _) = FakeAgent::connect(&cp, hello(&id, "edge-1")).await;
    let mut client = cp.gateways().await;

    let refused = expect_err(
        client
            .delete_gateway(pb::DeleteGatewayRequest {
                gateway_id: id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "gateway_id: ",
    );
    assert!(refused.contains("connected"), "{refused}");

    agent.close();
    assert_eq!(agent.next_result().await.unwrap(), None, "stream ends OK");
    let gone = wait_for(&mut client, &id, "disconnected", disconnected).await;
    assert!(gone.last_seen_at.is_some());

    client
        .delete_gateway(pb::DeleteGatewayRequest {
            gateway_id: id.clone(),
        })
        .await
        .unwrap();
    expect_err(get(&mut client, &id).await, Code::NotFound, "gateway_id: ");
    expect_err(
        client
            .delete_gateway(pb::DeleteGatewayRequest { gateway_id: id })
            .await,
        Code::NotFound,
        "gateway_id: ",
    );
    expect_err(
        client
            .delete_gateway(pb::DeleteGatewayRequest {
                gateway_id: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "gateway_id: required",
    );
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_agent_is_disconnected_after_three_heartbeat_intervals() {
    let cp = start_with_heartbeat(200).await;
    let id = new_id();
    let (mut agent, welcome, _) = FakeAgent::connect(&cp, hello(&id, "quiet")).await;
    assert_eq!(
        welcome.heartbeat_interval,
        Some(tandem_client::prost_types::Duration {
            seconds: 0,
            nanos: 200_000_000
        })
    );
    let started = tokio::time::Instant::now();
    let status = agent.next_result().await.expect_err("the stream is closed");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "closed after {:?}",
        started.elapsed()
    );
    let mut client = cp.gateways().await;
    wait_for(&mut client, &id, "disconnected", disconnected).await;
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_stream_of_a_gateway_replaces_the_first() {
    let cp = start_control_plane().await;
    let id = new_id();
    let (mut first, _, _) = FakeAgent::connect(&cp, hello(&id, "edge-1")).await;
    let (second, _, _) = FakeAgent::connect(&cp, hello(&id, "edge-1-restarted")).await;

    let status = first
        .next_result()
        .await
        .expect_err("the older stream is closed");
    assert_eq!(status.code(), Code::Aborted, "{status:?}");

    second
        .send(heartbeat(
            0,
            pb::DrainState::Serving,
            &[("task-a", 5, pb::ConsumerState::Running)],
        ))
        .await;
    let mut client = cp.gateways().await;
    let gateway = wait_for(&mut client, &id, "took the second stream's reports", |g| {
        g.task_ids == ["task-a"]
    })
    .await;
    // The older stream ending did not mark the gateway disconnected.
    assert!(connected(&gateway), "{gateway:#?}");
    assert_eq!(gateway.name, "edge-1-restarted");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(connected(&get(&mut client, &id).await.unwrap()));
    drop(second);
    cp.stop().await;
}

// ---------------------------------------------------------------------------
// Drain.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_undrain_are_stored_and_pushed_to_the_agent() {
    let cp = start_control_plane().await;
    let id = new_id();
    let (mut agent, _, _) = FakeAgent::connect(&cp, hello(&id, "edge-1")).await;
    let mut client = cp.gateways().await;

    let draining = client
        .drain_gateway(pb::DrainGatewayRequest {
            gateway_id: id.clone(),
            quiet_period: None,
            allow_unreplayed_paused: true,
        })
        .await
        .unwrap()
        .into_inner()
        .gateway
        .unwrap();
    assert_eq!(drain_state(&draining), pb::DrainState::Draining);
    assert_eq!(draining.desired_version, 1);
    let drain = draining.drain.unwrap();
    assert!(drain.started_at.is_some() && drain.drained_at.is_none());
    assert_eq!(
        drain.quiet_period,
        Some(prost_types_duration(30)),
        "default"
    );

    let Down::DesiredState(state) = agent.next().await else {
        panic!("a drain is pushed as a desired state");
    };
    assert_eq!(state.version, 1);
    assert!(state.drain && state.drain_allow_unreplayed_paused);
    assert_eq!(state.drain_quiet_period, Some(prost_types_duration(30)));

    // Draining again is idempotent: same version, nothing new pushed.
    let again = client
        .drain_gateway(pb::DrainGatewayRequest {
            gateway_id: id.clone(),
            quiet_period: None,
            allow_unreplayed_paused: true,
        })
        .await
        .unwrap()
        .into_inner()
        .gateway
        .unwrap();
    assert_eq!(again.desired_version, 1);

    // DRAINED once the gateway applied the drain and says so.
    agent
        .send(heartbeat(
            1,
            pb::DrainState::Draining,
            &[("task-a", 4, pb::ConsumerState::Running)],
        ))
        .await;
    let still = wait_for(&mut client, &id, "applied the drain", |g| {
        g.applied_version == 1
    })
    .await;
    assert_eq!(drain_state(&still), pb::DrainState::Draining);
    assert_eq!(still.drain.unwrap().lag_records, 4);
    agent
        .send(heartbeat(
            1,
            pb::DrainState::Drained,
            &[("task-a", 0, pb::ConsumerState::Running)],
        ))
        .await;
    let drained = wait_for(&mut client, &id, "drained", |g| {
        drain_state(g) == pb::DrainState::Drained
    })
    .await;
    assert!(drained.drain.unwrap().drained_at.is_some());
    let listed = client
        .list_gateways(pb::ListGatewaysRequest {
            drain_state: pb::DrainState::Drained as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .gateways;
    assert_eq!(listed.len(), 1);

    let serving = client
        .undrain_gateway(pb::UndrainGatewayRequest {
            gateway_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .gateway
        .unwrap();
    assert_eq!(drain_state(&serving), pb::DrainState::Serving);
    assert_eq!(serving.desired_version, 2);
    let Down::DesiredState(state) = agent.next().await else {
        panic!("an undrain is pushed as a desired state");
    };
    assert_eq!(state.version, 2);
    assert!(!state.drain);
    // A late heartbeat still saying DRAINED does not make it drained again.
    agent.send(heartbeat(1, pb::DrainState::Drained, &[])).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        drain_state(&get(&mut client, &id).await.unwrap()),
        pb::DrainState::Serving
    );

    // Arguments and states.
    expect_err(
        client
            .drain_gateway(pb::DrainGatewayRequest {
                gateway_id: id.clone(),
                quiet_period: Some(tandem_client::prost_types::Duration {
                    seconds: -1,
                    nanos: 0,
                }),
                allow_unreplayed_paused: false,
            })
            .await,
        Code::InvalidArgument,
        "quiet_period: ",
    );
    expect_err(
        client
            .drain_gateway(pb::DrainGatewayRequest {
                gateway_id: "unknown".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "gateway_id: ",
    );
    expect_err(
        client
            .undrain_gateway(pb::UndrainGatewayRequest {
                gateway_id: "unknown".into(),
            })
            .await,
        Code::NotFound,
        "gateway_id: ",
    );
    agent.close();
    wait_for(&mut client, &id, "disconnected", disconnected).await;
    expect_err(
        client
            .drain_gateway(pb::DrainGatewayRequest {
                gateway_id: id.clone(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "gateway_id: ",
    );
    cp.stop().await;
}

// ---------------------------------------------------------------------------
// Authentication and the agent stream's own checks.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_token_is_unauthenticated_on_every_rpc() {
    let cp = start_control_plane().await;
    for bearer in [None, Some("wrong-token-wrong-token-0000")] {
        let mut client = cp.gateways_with(bearer).await;
        let mut results: Vec<(&str, Code)> = vec![
            (
                "ListGateways",
                client
                    .list_gateways(pb::ListGatewaysRequest::default())
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "GetGateway",
                get(&mut client, "gw-1").await.unwrap_err().code(),
            ),
            (
                "WatchGateway",
                client
                    .watch_gateway(pb::WatchGatewayRequest::default())
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "DrainGateway",
                client
                    .drain_gateway(pb::DrainGatewayRequest {
                        gateway_id: "gw-1".into(),
                        ..Default::default()
                    })
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "UndrainGateway",
                client
                    .undrain_gateway(pb::UndrainGatewayRequest {
                        gateway_id: "gw-1".into(),
                    })
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "DeleteGateway",
                client
                    .delete_gateway(pb::DeleteGatewayRequest {
                        gateway_id: "gw-1".into(),
                    })
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "AgentStream",
                open_stream(&cp, bearer, vec![Up::Hello(hello("gw-1", "edge"))])
                    .await
                    .unwrap_err()
                    .code(),
            ),
        ];
        let mut queues = cp.queues_with(bearer).await;
        results.push((
            "GetQueueStats",
            queues
                .get_queue_stats(pb::GetQueueStatsRequest::default())
                .await
                .unwrap_err()
                .code(),
        ));
        for (rpc, code) in results {
            assert_eq!(code, Code::Unauthenticated, "{rpc} with {bearer:?}");
        }
    }
    // Nothing was registered by the refused agent.
    let listed = cp
        .gateways()
        .await
        .list_gateways(pb::ListGatewaysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .gateways;
    assert!(listed.is_empty(), "{listed:#?}");
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_stream_needs_a_well_formed_hello_first() {
    let cp = start_control_plane().await;

    let message = expect_err(
        open_stream(
            &cp,
            Some(TOKEN),
            vec![heartbeat(0, pb::DrainState::Serving, &[])],
        )
        .await,
        Code::InvalidArgument,
        "hello: ",
    );
    assert!(message.contains("heartbeat"), "{message}");

    // A stream closed before any message.
    let (up, rx) = mpsc::channel::<pb::AgentStreamRequest>(1);
    drop(up);
    let mut client = cp.gateways().await;
    expect_err(
        client.agent_stream(ReceiverStream::new(rx)).await,
        Code::InvalidArgument,
        "hello: ",
    );

    for bad in ["", "has spaces", "slash/ed", &"x".repeat(129)] {
        expect_err(
            open_stream(&cp, Some(TOKEN), vec![Up::Hello(hello(bad, "edge"))]).await,
            Code::InvalidArgument,
            "hello.gateway_id: ",
        );
    }
    let mut bad_labels = hello(&new_id(), "edge");
    bad_labels.labels.insert("Zone".into(), "x".into());
    expect_err(
        open_stream(&cp, Some(TOKEN), vec![Up::Hello(bad_labels)]).await,
        Code::InvalidArgument,
        "hello.labels[\"Zone\"]: ",
    );
    let mut long_name = hello(&new_id(), "edge");
    long_name.name = "n".repeat(300);
    expect_err(
        open_stream(&cp, Some(TOKEN), vec![Up::Hello(long_name)]).await,
        Code::InvalidArgument,
        "hello.name: ",
    );

    let listed = client
        .list_gateways(pb::ListGatewaysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .gateways;
    assert!(listed.is_empty(), "refused hellos register nothing");
    cp.stop().await;
}

// ---------------------------------------------------------------------------
// Restart, events, commands.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_survives_a_control_plane_restart_and_the_agent_reconnects() {
    let cp = start_control_plane().await;
    let id = new_id();
    let (mut agent, _, _) = FakeAgent::connect(&cp, hello(&id, "edge-1")).await;
    agent
        .send(stats_report(&[(
            "task-a",
            queue(7, 9, 1, pb::ConsumerState::Running),
        )]))
        .await;
    let mut client = cp.gateways().await;
    client
        .drain_gateway(pb::DrainGatewayRequest {
            gateway_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let Down::DesiredState(state) = agent.next().await else {
        panic!("drain pushed");
    };
    assert_eq!(state.version, 1);
    let before = wait_for(&mut client, &id, "stored its statistics", |g| {
        g.queue_stats.is_some()
    })
    .await;

    // A stopping server closes the open agent streams (UNAVAILABLE: the
    // agent reconnects, to another replica if there is one).
    let restarting = tokio::spawn(cp.restart());
    let status = agent
        .next_result()
        .await
        .expect_err("closed by the shutdown");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let cp = restarting.await.unwrap();

    let mut client = cp.gateways().await;
    let after = get(&mut client, &id).await.unwrap();
    assert!(disconnected(&after), "marked on shutdown: {after:#?}");
    assert_eq!(after.name, "edge-1");
    assert_eq!(after.labels, before.labels);
    assert_eq!(after.first_seen_at, before.first_seen_at);
    assert_eq!(drain_state(&after), pb::DrainState::Draining);
    assert_eq!(after.desired_version, 1);
    assert_eq!(
        after.queue_stats.unwrap().lag_records,
        7,
        "last report kept"
    );

    // The agent comes back running version 1: it gets the same state again.
    let mut again = hello(&id, "edge-1");
    again.applied_version = 1;
    let (agent, _, state) = FakeAgent::connect(&cp, again).await;
    assert_eq!(state.version, 1);
    assert!(state.drain, "the drain request survived the restart");
    let back = wait_for(&mut client, &id, "reconnected", connected).await;
    assert_eq!(back.applied_version, 1);
    let (was, now) = (before.connected_at.unwrap(), back.connected_at.unwrap());
    assert!((now.seconds, now.nanos) > (was.seconds, was.nanos));
    drop(agent);
    cp.stop().await;
}

async fn next_update(
    watch: &mut tonic::Streaming<pb::WatchGatewayResponse>,
) -> pb::watch_gateway_response::Update {
    tokio::time::timeout(WAIT, watch.message())
        .await
        .expect("a watch update")
        .unwrap()
        .expect("the watch goes on")
        .update
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_stored_once_acknowledged_and_watched() {
    use pb::watch_gateway_response::Update;

    let cp = start_control_plane().await;
    let mut client = cp.gateways().await;
    let mut watch = client
        .watch_gateway(pb::WatchGatewayRequest::default())
        .await
        .unwrap()
        .into_inner();
    let id = new_id();
    let (mut agent, _, _) = FakeAgent::connect(&cp, hello(&id, "edge-1")).await;

    let Update::Gateway(seen) = next_update(&mut watch).await else {
        panic!("a snapshot first");
    };
    assert_eq!(seen.id, id);
    assert!(connected(&seen));

    let event = |sequence: u64, reason: &str| pb::Event {
        sequence,
        occurred_at: Some(std::time::SystemTime::now().into()),
        severity: pb::EventSeverity::Warning as i32,
        reason: reason.into(),
        message: format!("{reason} happened"),
        task_id: "task-a".into(),
        attributes: [("offset".to_string(), sequence.to_string())].into(),
        ..Default::default()
    };
    agent
        .send(Up::Events(pb::AgentEventBatch {
            events: vec![
                event(1, "QUEUE_LIMIT_REACHED"),
                event(2, "DEAD_LETTER_ADDED"),
            ],
        }))
        .await;
    let Down::EventAck(ack) = agent.next().await else {
        panic!("events are acknowledged");
    };
    assert_eq!(ack.sequence, 2);
    // Sent again after a reconnect: stored once, acknowledged again.
    agent
        .send(Up::Events(pb::AgentEventBatch {
            events: vec![
                event(2, "DEAD_LETTER_ADDED"),
                event(3, "UPSTREAM_UNREACHABLE"),
            ],
        }))
        .await;
    let Down::EventAck(ack) = agent.next().await else {
        panic!("events are acknowledged");
    };
    assert_eq!(ack.sequence, 3);

    let mut reasons = Vec::new();
    while reasons.len() < 3 {
        match next_update(&mut watch).await {
            Update::Event(event) => {
                assert_eq!(event.gateway_id, id);
                assert!(!event.id.is_empty(), "stored events get an id");
                assert_eq!(event.task_id, "task-a");
                reasons.push(event.reason);
            }
            Update::Gateway(_) => {}
        }
    }
    assert_eq!(
        reasons,
        [
            "QUEUE_LIMIT_REACHED",
            "DEAD_LETTER_ADDED",
            "UPSTREAM_UNREACHABLE"
        ]
    );

    agent.close();
    loop {
        if let Update::Gateway(g) = next_update(&mut watch).await
            && g.id == id
            && disconnected(&g)
        {
            break;
        }
    }
    // Watching one unknown gateway is refused up front.
    expect_err(
        client
            .watch_gateway(pb::WatchGatewayRequest {
                gateway_id: "unknown".into(),
            })
            .await,
        Code::NotFound,
        "gateway_id: ",
    );
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peek_records_is_relayed_to_the_gateway_holding_the_queue() {
    let cp = start_control_plane().await;
    let id = new_id();
    let (mut agent, _, _) = FakeAgent::connect(&cp, hello(&id, "edge-1")).await;
    let mut queues = cp.queues().await;

    let peek = |include_bodies: bool| pb::PeekRecordsRequest {
        task_id: "task-a".into(),
        gateway_id: id.clone(),
        start_offset: Some(5),
        max_records: 5000,
        include_bodies,
        max_body_bytes: 0,
    };
    let call = {
        let mut queues = queues.clone();
        let request = peek(true);
        tokio::spawn(async move { queues.peek_records(request).await })
    };
    let Down::Command(command) = agent.next().await else {
        panic!("PeekRecords is relayed as a command");
    };
    assert!(!command.command_id.is_empty() && command.expires_at.is_some());
    let Some(pb::gateway_command::Command::PeekRecords(asked)) = command.command else {
        panic!("a peek command: {command:?}");
    };
    assert_eq!(asked.task_id, "task-a");
    assert_eq!(asked.start_offset, Some(5));
    assert_eq!(asked.max_records, 1000, "capped");
    assert_eq!(asked.max_body_bytes, 65_536, "defaulted");
    assert!(asked.include_bodies);
    agent
        .send(Up::CommandResult(pb::CommandResult {
            command_id: command.command_id.clone(),
            outcome: pb::CommandOutcome::Succeeded as i32,
            completed_at: Some(std::time::SystemTime::now().into()),
            detail: Some(pb::command_result::Detail::Peek(
                pb::PeekRecordsCommandResult {
                    records: vec![pb::QueueRecord {
                        offset: 5,
                        op_kind: pb::OpKind::DocumentIndex as i32,
                        index: "logs".into(),
                        doc_id: "1".into(),
                        body: b"{\"a\":1}".to_vec(),
                        ..Default::default()
                    }],
                    next_offset: 6,
                    first_offset: 0,
                    head_offset: 9,
                    committed_offset: 5,
                },
            )),
            ..Default::default()
        }))
        .await;
    let peeked = call.await.unwrap().unwrap().into_inner();
    assert_eq!(peeked.records.len(), 1);
    assert_eq!(peeked.records[0].doc_id, "1");
    assert_eq!((peeked.next_offset, peeked.head_offset), (6, 9));

    // A rejection is FAILED_PRECONDITION with the gateway's reason.
    let call = {
        let mut queues = queues.clone();
        let request = peek(false);
        tokio::spawn(async move { queues.peek_records(request).await })
    };
    let Down::Command(command) = agent.next().await else {
        panic!("relayed");
    };
    agent
        .send(Up::CommandResult(pb::CommandResult {
            command_id: command.command_id,
            outcome: pb::CommandOutcome::Rejected as i32,
            error: Some(pb::ErrorInfo {
                reason: "UNSUPPORTED_COMMAND".into(),
                message: "queue peeking is not supported".into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await;
    let message = expect_err(
        call.await.unwrap(),
        Code::FailedPrecondition,
        &format!("gateway {id} rejected PeekRecords"),
    );
    assert!(message.contains("UNSUPPORTED_COMMAND"), "{message}");

    expect_err(
        queues
            .peek_records(pb::PeekRecordsRequest {
                gateway_id: id.clone(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "task_id: ",
    );
    agent.close();
    let mut client = cp.gateways().await;
    wait_for(&mut client, &id, "disconnected", disconnected).await;
    expect_err(
        queues.peek_records(peek(false)).await,
        Code::Unavailable,
        "gateway_id: ",
    );
    cp.stop().await;
}

// ---------------------------------------------------------------------------
// A real gateway.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_gateway_registers_and_its_queue_shows_in_the_fleet_view() {
    let env = tandem_integration::env();
    let (primary, backup) = (env.cluster("es7"), env.cluster("os2"));
    let cp = start_with_heartbeat(300).await;
    let data = tempfile::tempdir().unwrap();
    let id = new_id();
    let mut options = GatewayOptions::replicating(&primary.url, &backup.url, data.path());
    // Replay paused: what is written through the gateway stays in its queue.
    options.paused = true;
    options.extra_toml = format!(
        "[control_plane]\nendpoint = \"{}\"\ntoken = \"{TOKEN}\"\ngateway_id = \"{id}\"\n\
         name = \"real-edge\"\nheartbeat_interval_ms = 300\nreconnect_max_ms = 1000\n\
         advertised_address = \"127.0.0.1:{}\"\n[control_plane.labels]\nzone = \"test-a\"\n",
        cp.endpoint(),
        free_port()
    );
    let gateway = TestGateway::start_with(options).await;

    let mut client = cp.gateways().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let registered = loop {
        if let Ok(g) = get(&mut client, &id).await
            && connected(&g)
            && g.last_seen_at.is_some()
        {
            break g;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the real gateway never registered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(registered.name, "real-edge");
    assert_eq!(
        registered.labels.get("zone").map(String::as_str),
        Some("test-a")
    );
    assert!(!registered.version.is_empty());

    // Writes through the gateway are queued (replay paused)...
    let index = unique_index("fleet-view");
    let mut statuses = HashMap::new();
    for i in 0..3 {
        let status = tandem_integration::client::put_doc(
            &gateway.url,
            &index,
            &i.to_string(),
            serde_json::json!({ "i": i }),
        )
        .await;
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&201), Some(&3), "{statuses:?}");

    // ...and the fleet view shows them as lag of this gateway.
    let mut queues = cp.queues().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let stats = loop {
        let stats = queues
            .get_queue_stats(pb::GetQueueStatsRequest {
                gateway_id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        // Index creation may be recorded too (metadata write): at least the
        // three documents.
        if stats.fleet.as_ref().is_some_and(|f| f.lag_records >= 3) {
            break stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway's queue never showed the writes: {stats:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stats.gateways.len(), 1);
    assert!(!stats.gateways[0].stale);
    assert_eq!(stats.tasks.len(), 1, "one replication on this gateway");
    let listed = get(&mut client, &id).await.unwrap();
    assert_eq!(listed.task_ids, [stats.tasks[0].task_id.clone()]);
    assert!(listed.queue_stats.unwrap().lag_records >= 3);

    // Draining: the gateway reports not ready (its /ready answers 503 so a
    // load balancer moves traffic away), then DRAINED once nothing is in
    // flight and its queue is replayed; undrain makes it ready again.
    tandem_integration::gateway::drain(&gateway.admin_url, WAIT).await;
    client
        .drain_gateway(pb::DrainGatewayRequest {
            gateway_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let drained = wait_for(&mut client, &id, "drained", |g| {
        g.drain
            .as_ref()
            .is_some_and(|d| d.state() == pb::DrainState::Drained)
    })
    .await;
    assert!(!drained.ready, "{drained:#?}");
    let ready = tandem_integration::http()
        .get(format!("{}/ready", gateway.admin_url))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(ready, 503);
    client
        .undrain_gateway(pb::UndrainGatewayRequest {
            gateway_id: id.clone(),
        })
        .await
        .unwrap();
    wait_for(&mut client, &id, "serving again", |g| {
        g.ready
            && g.drain
                .as_ref()
                .is_none_or(|d| d.state() == pb::DrainState::Serving)
    })
    .await;
    let ready = tandem_integration::http()
        .get(format!("{}/ready", gateway.admin_url))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(ready, 200);

    // The gateway stops: it shows disconnected, its figures stale.
    gateway.stop();
    wait_for(&mut client, &id, "disconnected", disconnected).await;
    let stale = queues
        .get_queue_stats(pb::GetQueueStatsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(stale.gateways.iter().all(|g| g.stale));
    cp.stop().await;
}
