//! The gateway's agent against a control plane: registration, heartbeats
//! and queue statistics, desired state (pause, resume, role swap), commands,
//! and the control plane going away and coming back — with real gateways in
//! front of real clusters.
//!
//! The control plane here is a small in-test tonic server implementing only
//! `GatewayService.AgentStream` (every other RPC keeps its generated
//! UNIMPLEMENTED stub). It stands in for the real control plane, whose
//! server side of the stream is being written separately: it records what
//! the agent sends and lets the test push desired states and commands.
//! "Killing" it drops its runtime, which closes every connection like a
//! crashed process would.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{Value, json};
use tandem_integration::client::{bulk, call, create_index, put_doc};
use tandem_integration::gateway::{GatewayOptions, TestGateway, replication_status};
use tandem_integration::{SearchCluster, env, free_port, http, unique_index};
use tandem_proto::v1 as pb;
use tandem_proto::v1::gateway_service_server::{GatewayService, GatewayServiceServer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

const TOKEN: &str = "agent-test-token-0123456789";
const TASK: &str = "2f1c9a52-7d0e-4c1b-9a57-0b7f4e6d1a10";
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// The stand-in control plane.
// ---------------------------------------------------------------------------

/// What the control plane received, over every stream.
#[derive(Debug, Default)]
struct Recorded {
    /// Hellos with the `authorization` metadata of their stream.
    hellos: Vec<(pb::AgentHello, Option<String>)>,
    heartbeats: Vec<pb::AgentHeartbeat>,
    stats: Vec<pb::QueueStatsReport>,
    results: Vec<pb::CommandResult>,
}

type Outbound = mpsc::Sender<Result<pb::AgentStreamResponse, Status>>;

#[derive(Debug, Clone, Default)]
struct FakeControlPlane {
    recorded: Arc<Mutex<Recorded>>,
    /// Sender of the latest stream.
    outbound: Arc<Mutex<Option<Outbound>>>,
}

#[tonic::async_trait]
impl GatewayService for FakeControlPlane {
    async fn agent_stream(
        &self,
        request: Request<Streaming<pb::AgentStreamRequest>>,
    ) -> Result<Response<tonic::codegen::BoxStream<pb::AgentStreamResponse>>, Status> {
        let auth = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty stream"))?;
        let Some(pb::agent_stream_request::Payload::Hello(hello)) = first.payload else {
            return Err(Status::invalid_argument("the first message must be hello"));
        };
        let welcome = pb::AgentStreamResponse {
            payload: Some(pb::agent_stream_response::Payload::Welcome(
                pb::AgentWelcome {
                    gateway_id: hello.gateway_id.clone(),
                    server_time: Some(SystemTime::now().into()),
                    control_plane_version: "test".into(),
                    ..Default::default()
                },
            )),
        };
        self.recorded.lock().hellos.push((hello, auth));
        let (tx, rx) = mpsc::channel(64);
        let _ = tx.send(Ok(welcome)).await;
        *self.outbound.lock() = Some(tx);
        let recorded = self.recorded.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                use pb::agent_stream_request::Payload;
                let mut recorded = recorded.lock();
                match message.payload {
                    Some(Payload::Heartbeat(hb)) => recorded.heartbeats.push(hb),
                    Some(Payload::QueueStats(stats)) => recorded.stats.push(stats),
                    Some(Payload::CommandResult(result)) => recorded.results.push(result),
                    _ => {}
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

impl FakeControlPlane {
    async fn push(&self, payload: pb::agent_stream_response::Payload) {
        let tx = self.outbound.lock().clone().expect("an agent is connected");
        tx.send(Ok(pb::AgentStreamResponse {
            payload: Some(payload),
        }))
        .await
        .expect("the agent stream is open");
    }

    async fn push_desired(&self, state: pb::DesiredState) {
        self.push(pb::agent_stream_response::Payload::DesiredState(state))
            .await;
    }

    async fn push_command(&self, id: &str, command: pb::gateway_command::Command) {
        self.push(pb::agent_stream_response::Payload::Command(
            pb::GatewayCommand {
                command_id: id.into(),
                issued_at: Some(SystemTime::now().into()),
                expires_at: None,
                command: Some(command),
            },
        ))
        .await;
    }

    fn hellos(&self) -> Vec<(pb::AgentHello, Option<String>)> {
        self.recorded.lock().hellos.clone()
    }

    fn last_heartbeat(&self) -> Option<pb::AgentHeartbeat> {
        self.recorded.lock().heartbeats.last().cloned()
    }

    fn last_stats(&self) -> Option<pb::QueueStats> {
        let recorded = self.recorded.lock();
        let report = recorded.stats.last()?;
        report
            .tasks
            .iter()
            .find(|t| t.task_id == TASK)
            .and_then(|t| t.stats.clone())
    }

    fn results_for(&self, id: &str) -> Vec<pb::CommandResult> {
        self.recorded
            .lock()
            .results
            .iter()
            .filter(|r| r.command_id == id)
            .cloned()
            .collect()
    }
}

/// The stand-in control plane served on its own thread and runtime.
struct ControlPlaneServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlPlaneServer {
    fn start(port: u16, service: FakeControlPlane) -> ControlPlaneServer {
        // The port may linger briefly after a previous server on it.
        let listener = (0..100)
            .find_map(|_| {
                std::net::TcpListener::bind(("127.0.0.1", port))
                    .inspect_err(|_| std::thread::sleep(Duration::from_millis(100)))
                    .ok()
            })
            .expect("bind the control plane port");
        listener.set_nonblocking(true).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let serve = tonic::transport::Server::builder()
                    .add_service(GatewayServiceServer::new(service))
                    .serve_with_incoming(TcpListenerStream::new(listener));
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every connection task: streams
            // die as if the process had been killed.
            drop(runtime);
        });
        ControlPlaneServer {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn kill(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ControlPlaneServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

/// Two clusters that take typeless requests (7.x+ and OpenSearch).
fn typeless_pair() -> (&'static SearchCluster, &'static SearchCluster) {
    let clusters: Vec<&SearchCluster> = env()
        .clusters
        .iter()
        .filter(|c| c.major() >= 7 || c.distribution == "opensearch")
        .collect();
    assert!(clusters.len() >= 2, "need two typeless clusters");
    (clusters[0], clusters[1])
}

fn gateway_options(
    primary: &SearchCluster,
    backup: &SearchCluster,
    dir: &Path,
    cp_port: u16,
) -> GatewayOptions {
    let mut options = GatewayOptions::replicating(&primary.url, &backup.url, dir);
    options.extra_toml = format!(
        "[control_plane]\nendpoint = \"http://127.0.0.1:{cp_port}\"\ntoken = \"{TOKEN}\"\n\
         name = \"agent-test\"\nheartbeat_interval_ms = 200\nreconnect_max_ms = 500\n\
         [control_plane.labels]\nzone = \"test-a\"\n"
    );
    options
}

/// Polls `check` until it returns `Some`, failing after [`WAIT`].
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metrics(admin_url: &str) -> String {
    http()
        .get(format!("{admin_url}/metrics"))
        .send()
        .await
        .expect("admin reachable")
        .text()
        .await
        .expect("metrics text")
}

async fn wait_connected(admin_url: &str, connected: bool) {
    let line = format!("tandem_agent_connected {}", i32::from(connected));
    wait_for(&line, || async {
        metrics(admin_url).await.contains(&line).then_some(())
    })
    .await;
}

async fn wait_status(admin_url: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, || async {
        let status = replication_status(admin_url).await;
        check(&status).then_some(status)
    })
    .await
}

async fn wait_drained(admin_url: &str) -> Value {
    wait_status(admin_url, "replay lag 0", |s| {
        s["paused"] == false && s["replayer"]["lag_records"] == 0
    })
    .await
}

async fn count(cluster: &str, index: &str) -> u64 {
    let (status, body) = call(Method::POST, format!("{cluster}/{index}/_refresh"), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(Method::GET, format!("{cluster}/{index}/_count"), None).await;
    assert_eq!(status, 200, "{body}");
    body["count"].as_u64().expect("count")
}

async fn bulk_docs(gateway: &str, index: &str, ids: std::ops::Range<u32>) {
    let mut lines = Vec::new();
    for i in ids {
        lines.push(json!({ "index": { "_index": index, "_id": i.to_string() } }));
        lines.push(json!({ "n": i }));
    }
    let (status, body) = bulk(format!("{gateway}/_bulk"), &lines).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["errors"], false, "{body}");
}

fn desired(
    version: u64,
    mode: pb::TaskMode,
    direction: pb::ReplicationDirection,
    hold: Option<Duration>,
) -> pb::DesiredState {
    let write_hold = hold.map(|timeout| {
        let mut hold = pb::WriteHold {
            hold_id: format!("hold-{version}"),
            ..Default::default()
        };
        let mut d = hold.timeout.unwrap_or_default();
        d.seconds = timeout.as_secs() as i64;
        hold.timeout = Some(d);
        hold
    });
    pb::DesiredState {
        version,
        generated_at: Some(SystemTime::now().into()),
        tasks: vec![pb::TaskAssignment {
            task_id: TASK.into(),
            task_name: "agent-test".into(),
            mode: mode as i32,
            direction: direction as i32,
            write_hold,
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn wait_applied(cp: &FakeControlPlane, version: u64) -> pb::AgentHeartbeat {
    wait_for(
        &format!("a heartbeat with applied_version {version}"),
        || async {
            cp.last_heartbeat()
                .filter(|hb| hb.applied_version == version)
        },
    )
    .await
}

async fn wait_result(cp: &FakeControlPlane, id: &str, n: usize) -> pb::CommandResult {
    wait_for(&format!("{n} result(s) of command {id}"), || async {
        let results = cp.results_for(id);
        (results.len() >= n).then(|| results[n - 1].clone())
    })
    .await
}

fn reason(result: &pb::CommandResult) -> String {
    result
        .error
        .as_ref()
        .map(|e| e.reason.clone())
        .unwrap_or_default()
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

// ---------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_registers_reports_applies_desired_state_and_survives_control_plane_loss() {
    let (primary, backup) = typeless_pair();
    let cp = FakeControlPlane::default();
    let cp_port = free_port();
    let server = ControlPlaneServer::start(cp_port, cp.clone());
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start_with(gateway_options(primary, backup, dir.path(), cp_port)).await;

    // Registration: hello first, with the persisted id and the token.
    let (hello, auth) = wait_for("the hello", || async { cp.hellos().first().cloned() }).await;
    let id_on_disk = std::fs::read_to_string(dir.path().join("gateway_id")).unwrap();
    assert_eq!(hello.gateway_id, id_on_disk.trim());
    assert_eq!(auth.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(hello.name, "agent-test");
    assert_eq!(hello.labels.get("zone").map(String::as_str), Some("test-a"));
    assert_eq!(hello.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(hello.advertised_address, host_port(&gw.url));
    assert_eq!(hello.admin_address, host_port(&gw.admin_url));
    assert_eq!(hello.listeners.len(), 1);
    assert_eq!(hello.listeners[0].address, host_port(&gw.url));
    for capability in ["dual_write", "cutover", "dead_letters", "queue_repair"] {
        assert!(
            hello.capabilities.iter().any(|c| c == capability),
            "{capability}"
        );
    }
    assert_eq!(hello.applied_version, 0);
    assert_eq!(hello.local_task_ids, vec!["local".to_string()]);
    assert!(hello.started_at.is_some());
    wait_connected(&gw.admin_url, true).await;
    let hb = wait_for("a heartbeat", || async { cp.last_heartbeat() }).await;
    assert!(hb.ready);
    assert!(hb.disk_total_bytes > 0 && hb.disk_free_bytes > 0, "{hb:?}");
    assert_eq!(hb.tasks[0].task_id, "local");

    // Desired state 1: the task records only → the replayer pauses.
    cp.push_desired(desired(
        1,
        pb::TaskMode::RecordOnly,
        pb::ReplicationDirection::Forward,
        None,
    ))
    .await;
    wait_status(&gw.admin_url, "paused", |s| s["paused"] == true).await;
    let hb = wait_applied(&cp, 1).await;
    assert_eq!(hb.tasks[0].task_id, TASK);
    assert_eq!(hb.tasks[0].mode, pb::TaskMode::RecordOnly as i32);
    assert_eq!(hb.tasks[0].consumer_state, pb::ConsumerState::Paused as i32);

    // Writes through the gateway show up in the queue statistics.
    let index = unique_index("agent");
    create_index(
        &gw.url,
        &index,
        json!({ "properties": { "n": { "type": "long" } } }),
    )
    .await;
    bulk_docs(&gw.url, &index, 0..20).await;
    let stats = wait_for("stats with the recorded writes", || async {
        cp.last_stats().filter(|s| s.lag_records >= 21)
    })
    .await;
    assert!(stats.head_offset >= 21, "{stats:?}");
    assert!(stats.depth_records >= 21, "{stats:?}");
    assert!(stats.depth_bytes > 0, "{stats:?}");
    assert_eq!(
        stats.head_offset - stats.committed_offset,
        stats.lag_records
    );
    assert_eq!(stats.consumer_state, pb::ConsumerState::Paused as i32);
    assert!(stats.lag.is_some() && stats.collected_at.is_some());
    assert!(cp.last_heartbeat().unwrap().tasks[0].lag_records >= 21);

    // Desired state 2: running → the replayer resumes and drains.
    cp.push_desired(desired(
        2,
        pb::TaskMode::Replay,
        pb::ReplicationDirection::Forward,
        None,
    ))
    .await;
    wait_drained(&gw.admin_url).await;
    wait_applied(&cp, 2).await;
    let stats = wait_for("stats at zero lag", || async {
        cp.last_stats()
            .filter(|s| s.lag_records == 0 && s.head_offset >= 21)
    })
    .await;
    assert_eq!(stats.committed_offset, stats.head_offset);
    assert_eq!(stats.consumer_state, pb::ConsumerState::Running as i32);
    assert_eq!(count(&backup.url, &index).await, 20);

    // Desired state 3: direction REVERSED (with a write hold bound) → the
    // gateway swaps its roles; new writes go to the other cluster first.
    cp.push_desired(desired(
        3,
        pb::TaskMode::Replay,
        pb::ReplicationDirection::Reversed,
        Some(Duration::from_secs(5)),
    ))
    .await;
    wait_status(&gw.admin_url, "reversed roles", |s| s["reversed"] == true).await;
    let hb = wait_applied(&cp, 3).await;
    assert_eq!(
        hb.tasks[0].direction,
        pb::ReplicationDirection::Reversed as i32
    );
    assert_eq!(
        put_doc(&gw.url, &index, "after-cutover", json!({ "n": 1000 })).await,
        201
    );
    wait_drained(&gw.admin_url).await;
    assert_eq!(count(&primary.url, &index).await, 21);
    assert_eq!(count(&backup.url, &index).await, 21);

    // Desired state 4: FORWARD again (rollback).
    cp.push_desired(desired(
        4,
        pb::TaskMode::Replay,
        pb::ReplicationDirection::Forward,
        None,
    ))
    .await;
    wait_status(&gw.admin_url, "forward roles", |s| s["reversed"] == false).await;
    wait_applied(&cp, 4).await;

    // A stale desired state (version not higher) is ignored.
    cp.push_desired(desired(
        2,
        pb::TaskMode::RecordOnly,
        pb::ReplicationDirection::Forward,
        None,
    ))
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(replication_status(&gw.admin_url).await["paused"], false);
    assert_eq!(cp.last_heartbeat().unwrap().applied_version, 4);

    // Commands, each answered by a CommandResult.
    use pb::gateway_command::Command;
    cp.push_command(
        "cmd-skip",
        Command::SkipDeadLetters(pb::SkipDeadLettersCommand {
            task_id: TASK.into(),
            dead_letter_ids: vec!["999".into(), "bogus".into()],
            comment: "test".into(),
        }),
    )
    .await;
    cp.push_command(
        "cmd-repair",
        Command::RepairQueue(pb::RepairQueueCommand {
            task_id: TASK.into(),
            expected_offset: 0,
            dry_run: true,
            comment: String::new(),
        }),
    )
    .await;
    cp.push_command(
        "cmd-peek",
        Command::PeekRecords(pb::PeekRecordsCommand {
            task_id: TASK.into(),
            start_offset: Some(0),
            max_records: 1000,
            include_bodies: true,
            ..Default::default()
        }),
    )
    .await;
    cp.push_command(
        "cmd-other-task",
        Command::FetchDeadLetters(pb::FetchDeadLettersCommand {
            task_id: "another-task".into(),
            dead_letter_ids: vec!["1".into()],
            max_body_bytes: 0,
        }),
    )
    .await;
    cp.push(pb::agent_stream_response::Payload::Command(
        pb::GatewayCommand {
            command_id: "cmd-expired".into(),
            issued_at: None,
            expires_at: Some((SystemTime::now() - Duration::from_secs(60)).into()),
            command: Some(Command::RetryDeadLetters(Default::default())),
        },
    ))
    .await;

    let skip = wait_result(&cp, "cmd-skip", 1).await;
    assert_eq!(
        skip.outcome,
        pb::CommandOutcome::Succeeded as i32,
        "{skip:?}"
    );
    let Some(pb::command_result::Detail::DeadLetters(detail)) = &skip.detail else {
        panic!("no dead-letter detail: {skip:?}");
    };
    assert!(detail.dead_letters.is_empty());
    assert_eq!(
        detail.unknown_ids,
        vec!["bogus".to_string(), "999".to_string()]
    );
    let repair = wait_result(&cp, "cmd-repair", 1).await;
    assert_eq!(repair.outcome, pb::CommandOutcome::Rejected as i32);
    assert_eq!(reason(&repair), "QUEUE_NOT_BLOCKED");
    // Peeking reads the retained records without consuming them: the
    // document written after the cutover is there, with its body.
    let peek = wait_result(&cp, "cmd-peek", 1).await;
    assert_eq!(
        peek.outcome,
        pb::CommandOutcome::Succeeded as i32,
        "{peek:?}"
    );
    let Some(pb::command_result::Detail::Peek(peeked)) = &peek.detail else {
        panic!("no peek detail: {peek:?}");
    };
    assert_eq!(
        peeked.committed_offset, peeked.head_offset,
        "drained: {peeked:?}"
    );
    let last = peeked
        .records
        .iter()
        .find(|r| r.doc_id == "after-cutover")
        .unwrap_or_else(|| panic!("the last write is retained: {peeked:?}"));
    assert_eq!(last.index, index);
    assert!(last.version_fenced && last.enqueued_at.is_some() && last.size_bytes > 0);
    assert!(
        String::from_utf8_lossy(&last.body).contains("1000"),
        "{last:?}"
    );
    let other = wait_result(&cp, "cmd-other-task", 1).await;
    assert_eq!(reason(&other), "UNKNOWN_TASK");
    let expired = wait_result(&cp, "cmd-expired", 1).await;
    assert_eq!(reason(&expired), "EXPIRED");
    // Delivered again: answered again with the same result.
    cp.push_command(
        "cmd-skip",
        Command::SkipDeadLetters(pb::SkipDeadLettersCommand {
            task_id: TASK.into(),
            dead_letter_ids: vec!["999".into()],
            comment: "again".into(),
        }),
    )
    .await;
    assert_eq!(wait_result(&cp, "cmd-skip", 2).await, skip);

    // The control plane dies: the gateway keeps serving and replaying.
    server.kill();
    wait_connected(&gw.admin_url, false).await;
    bulk_docs(&gw.url, &index, 20..30).await;
    wait_drained(&gw.admin_url).await;
    assert_eq!(count(&primary.url, &index).await, 31);
    assert_eq!(count(&backup.url, &index).await, 31);
    assert_eq!(replication_status(&gw.admin_url).await["paused"], false);

    // It comes back on the same port: the agent reconnects and says hello
    // again, with the state it runs with.
    let server = ControlPlaneServer::start(cp_port, cp.clone());
    let (hello, auth) = wait_for("a second hello", || async { cp.hellos().get(1).cloned() }).await;
    assert_eq!(hello.gateway_id, id_on_disk.trim());
    assert_eq!(auth.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(hello.applied_version, 4);
    assert_eq!(hello.local_task_ids, vec![TASK.to_string()]);
    wait_connected(&gw.admin_url, true).await;
    let stats = wait_for("stats after the reconnection", || async {
        cp.last_stats().filter(|s| s.head_offset >= 32)
    })
    .await;
    assert_eq!(stats.lag_records, 0);

    gw.stop();
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_connects_late_and_restores_its_state_after_a_restart() {
    let (primary, backup) = typeless_pair();
    let cp = FakeControlPlane::default();
    let cp_port = free_port();
    let dir = tempfile::tempdir().unwrap();

    // No control plane yet: the gateway serves and replays on its own.
    let gw = TestGateway::start_with(gateway_options(primary, backup, dir.path(), cp_port)).await;
    wait_connected(&gw.admin_url, false).await;
    let index = unique_index("agent-late");
    create_index(
        &gw.url,
        &index,
        json!({ "properties": { "n": { "type": "long" } } }),
    )
    .await;
    bulk_docs(&gw.url, &index, 0..5).await;
    wait_drained(&gw.admin_url).await;
    assert_eq!(count(&backup.url, &index).await, 5);

    // The control plane appears: the agent registers and takes orders.
    let server = ControlPlaneServer::start(cp_port, cp.clone());
    let (hello, _) = wait_for("the hello", || async { cp.hellos().first().cloned() }).await;
    let gateway_id = hello.gateway_id.clone();
    assert_eq!(hello.applied_version, 0);
    wait_connected(&gw.admin_url, true).await;
    cp.push_desired(desired(
        5,
        pb::TaskMode::RecordOnly,
        pb::ReplicationDirection::Forward,
        None,
    ))
    .await;
    wait_status(&gw.admin_url, "paused", |s| s["paused"] == true).await;
    wait_applied(&cp, 5).await;

    // A restarted gateway (configured to start running) comes back with
    // the same id and the last desired state: paused, version 5.
    gw.stop();
    let gw = TestGateway::start_with(gateway_options(primary, backup, dir.path(), cp_port)).await;
    assert_eq!(replication_status(&gw.admin_url).await["paused"], true);
    let (hello, _) = wait_for("the hello after restart", || async {
        cp.hellos().get(1).cloned()
    })
    .await;
    assert_eq!(hello.gateway_id, gateway_id);
    assert_eq!(hello.applied_version, 5);
    assert_eq!(hello.local_task_ids, vec![TASK.to_string()]);
    bulk_docs(&gw.url, &index, 5..8).await;
    let stats = wait_for("stats of the paused queue", || async {
        cp.last_stats().filter(|s| s.lag_records >= 3)
    })
    .await;
    assert_eq!(stats.consumer_state, pb::ConsumerState::Paused as i32);

    gw.stop();
    server.kill();
}
