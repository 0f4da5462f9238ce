//! QueueService dead letters and the command outbox, with two real
//! control-plane replicas on one Postgres database and a real gateway in
//! front of es7 (primary) and os2 (backup).
//!
//! The gateway holds its agent stream on replica B while every RPC goes to
//! replica A: desired-state changes, PeekRecords, dead-letter bodies, retries
//! and skips all cross replicas. A skip requested while the gateway is
//! disconnected waits in the outbox and runs when it reconnects.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tandem_client::v1::queue_service_client::QueueServiceClient;
use tandem_client::{AuthenticatedChannel, BearerToken};
use tandem_controlplane::secrets::SecretKey;
use tandem_integration::client::{call, create_index, put_doc};
use tandem_integration::controlplane::{
    ControlPlaneApi, InProcessControlPlane, create_task_once_registered,
};
use tandem_integration::gateway::{GatewayOptions, TestGateway};
use tandem_integration::unique_index;
use tandem_proto::v1 as pb;
use tonic::Code;

const TOKEN: &str = "queue-service-test-token-0123456789";
const WAIT: Duration = Duration::from_secs(40);

type Queues = QueueServiceClient<AuthenticatedChannel>;

/// One control-plane replica served in this process.
type Replica = InProcessControlPlane;

/// A replica on `database_url` with the shared `secret_key`, on `addr` (a
/// free port when `None`).
async fn start_replica(database_url: &str, secret_key: &str, addr: Option<SocketAddr>) -> Replica {
    let mut config = InProcessControlPlane::config(database_url, TOKEN);
    config.secret_key = Some(secret_key.to_string());
    if let Some(addr) = addr {
        config.listen = addr;
    }
    InProcessControlPlane::start(config).await
}

fn token(bearer: Option<&str>) -> BearerToken {
    BearerToken::new(bearer).unwrap()
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

async fn list(
    queues: &mut Queues,
    task_id: &str,
    states: &[pb::DeadLetterState],
) -> Vec<pb::DeadLetter> {
    queues
        .list_dead_letters(pb::ListDeadLettersRequest {
            task_id: task_id.to_string(),
            states: states.iter().map(|s| *s as i32).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .dead_letters
}

/// Polls ListDeadLetters (in `states`) until `done` holds.
async fn wait_dead_letters(
    queues: &mut Queues,
    task_id: &str,
    states: &[pb::DeadLetterState],
    what: &str,
    done: impl Fn(&[pb::DeadLetter]) -> bool,
) -> Vec<pb::DeadLetter> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let entries = list(queues, task_id, states).await;
        if done(&entries) {
            return entries;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead letters never {what}: {entries:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn doc_id(entry: &pb::DeadLetter) -> &str {
    &entry.record.as_ref().unwrap().doc_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_rpcs_check_their_arguments_and_token() {
    let database = tandem_integration::fresh_database("cp_queue_args").await;
    let cp = start_replica(&database, &SecretKey::generate().to_base64(), None).await;
    let mut queues = cp.queues().await;
    let unknown = "9d7c6f2e-5b8a-4c1d-9e3f-0a1b2c3d4e5f".to_string();

    let list_with = |f: fn(&mut pb::ListDeadLettersRequest)| {
        let mut request = pb::ListDeadLettersRequest {
            task_id: unknown.clone(),
            ..Default::default()
        };
        f(&mut request);
        request
    };
    for (request, prefix) in [
        (list_with(|r| r.task_id.clear()), "task_id: "),
        (list_with(|r| r.task_id = "nope".into()), "task_id: "),
        (list_with(|r| r.include_bodies = true), "gateway_id: "),
        (
            list_with(|r| r.gateway_id = "has space".into()),
            "gateway_id: ",
        ),
        (list_with(|r| r.states = vec![99]), "states[0]: "),
        (list_with(|r| r.states = vec![0]), "states[0]: "),
        (list_with(|r| r.index = "i".repeat(300)), "index: "),
    ] {
        expect_err(
            queues.list_dead_letters(request).await,
            Code::InvalidArgument,
            prefix,
        );
    }
    expect_err(
        queues.list_dead_letters(list_with(|_| {})).await,
        Code::NotFound,
        "task_id: ",
    );

    let retry_with = |f: fn(&mut pb::RetryDeadLettersRequest)| {
        let mut request = pb::RetryDeadLettersRequest {
            task_id: unknown.clone(),
            dead_letter_ids: vec!["gw-1/1".into()],
            ..Default::default()
        };
        f(&mut request);
        request
    };
    for (request, prefix) in [
        (retry_with(|r| r.task_id.clear()), "task_id: "),
        (
            retry_with(|r| r.dead_letter_ids.clear()),
            "dead_letter_ids: ",
        ),
        (retry_with(|r| r.all = true), "all: "),
        (
            retry_with(|r| r.dead_letter_ids = vec!["42".into()]),
            "dead_letter_ids[0]: ",
        ),
        (
            retry_with(|r| r.dead_letter_ids = vec!["gw-1/1".into(), "gw-1/x".into()]),
            "dead_letter_ids[1]: ",
        ),
        (retry_with(|r| r.gateway_id = "gw-1".into()), "gateway_id: "),
        (retry_with(|r| r.comment = "c".repeat(1001)), "comment: "),
    ] {
        expect_err(
            queues.retry_dead_letters(request).await,
            Code::InvalidArgument,
            prefix,
        );
    }
    expect_err(
        queues.retry_dead_letters(retry_with(|_| {})).await,
        Code::NotFound,
        "task_id: ",
    );

    let skip = |comment: &str| pb::SkipDeadLettersRequest {
        task_id: unknown.clone(),
        all: true,
        comment: comment.to_string(),
        ..Default::default()
    };
    expect_err(
        queues.skip_dead_letters(skip("")).await,
        Code::InvalidArgument,
        "comment: ",
    );
    expect_err(
        queues.skip_dead_letters(skip("abandoned")).await,
        Code::NotFound,
        "task_id: ",
    );

    // PeekRecords and RepairQueue name the bad field; an unknown gateway is
    // NOT_FOUND.
    let repair = |f: fn(&mut pb::RepairQueueRequest)| {
        let mut request = pb::RepairQueueRequest {
            task_id: unknown.clone(),
            gateway_id: "gw-nowhere".into(),
            dry_run: false,
            comment: "accepting the loss".into(),
            ..Default::default()
        };
        f(&mut request);
        request
    };
    for (request, prefix) in [
        (repair(|r| r.task_id.clear()), "task_id: "),
        (repair(|r| r.comment.clear()), "comment: "),
        (repair(|r| r.comment = "c".repeat(1001)), "comment: "),
        (
            repair(|r| r.gateway_id = "has space".into()),
            "gateway_id: ",
        ),
        (repair(|r| r.gateway_id.clear()), "gateway_id: "),
    ] {
        expect_err(
            queues.repair_queue(request).await,
            Code::InvalidArgument,
            prefix,
        );
    }
    expect_err(
        queues.repair_queue(repair(|_| {})).await,
        Code::NotFound,
        "gateway_id: ",
    );
    let peek = pb::PeekRecordsRequest {
        task_id: unknown.clone(),
        gateway_id: "gw-nowhere".into(),
        ..Default::default()
    };
    expect_err(
        queues
            .peek_records(pb::PeekRecordsRequest {
                task_id: String::new(),
                ..peek.clone()
            })
            .await,
        Code::InvalidArgument,
        "task_id: ",
    );
    expect_err(
        queues.peek_records(peek).await,
        Code::NotFound,
        "gateway_id: ",
    );

    for bearer in [None, Some("wrong-token-wrong-token-wrong")] {
        let mut queues = cp.queues_with(bearer).await;
        let code = |status: tonic::Status| status.code();
        assert_eq!(
            code(
                queues
                    .list_dead_letters(list_with(|_| {}))
                    .await
                    .unwrap_err()
            ),
            Code::Unauthenticated
        );
        assert_eq!(
            code(
                queues
                    .retry_dead_letters(retry_with(|_| {}))
                    .await
                    .unwrap_err()
            ),
            Code::Unauthenticated
        );
        assert_eq!(
            code(queues.skip_dead_letters(skip("x")).await.unwrap_err()),
            Code::Unauthenticated
        );
    }
    cp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_retried_and_skipped_across_replicas_and_reconnects() {
    let env = tandem_integration::env();
    let (old_url, new_url) = (
        env.cluster("es7").url.clone(),
        env.cluster("os2").url.clone(),
    );
    let database = tandem_integration::fresh_database("cp_queue").await;
    let key = SecretKey::generate().to_base64();
    let a = start_replica(&database, &key, None).await;
    let b = start_replica(&database, &key, None).await;
    let b_addr = b.settings().listen;

    let mut clusters = tandem_client::cluster_client(a.channel().await, token(Some(TOKEN)));
    for (name, url) in [("old", &old_url), ("new", &new_url)] {
        clusters
            .register_cluster(pb::RegisterClusterRequest {
                name: name.to_string(),
                endpoints: vec![url.to_string()],
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("register {name}: {e:?}"));
    }

    // The backup's mapping disagrees with the primary's on purpose.
    let index = unique_index("cp-dead-letters");
    create_index(
        &old_url,
        &index,
        json!({ "properties": { "code": { "type": "keyword" } } }),
    )
    .await;
    create_index(
        &new_url,
        &index,
        json!({ "properties": { "code": { "type": "long" } } }),
    )
    .await;

    // The gateway's agent talks to replica B only.
    let data = tempfile::tempdir().unwrap();
    let gw = format!("gw-queue-{}", unique_index("g"));
    let mut options = GatewayOptions::replicating(&old_url, &new_url, data.path());
    options.paused = true;
    options.extra_toml = b.agent_section(&gw);
    let gateway = TestGateway::start_with(options).await;

    // Every RPC goes to replica A.
    let mut tasks = a.tasks().await;
    let mut queues = a.queues().await;
    let request = pb::CreateTaskRequest {
        name: "dead-letters".into(),
        primary: Some(pb::ClusterRef {
            cluster_name: "old".into(),
            ..Default::default()
        }),
        backup: Some(pb::ClusterRef {
            cluster_name: "new".into(),
            ..Default::default()
        }),
        gateway_ids: vec![gw.clone()],
        start_paused: true,
        ..Default::default()
    };
    let task_id = create_task_once_registered(&mut tasks, request).await.id;

    for (id, code) in [("ok", "42"), ("bad-1", "x-1"), ("bad-2", "x-2")] {
        assert_eq!(
            put_doc(&gateway.url, &index, id, json!({ "code": code })).await,
            201
        );
    }

    // PeekRecords through A reaches the gateway held by B (the task is
    // still paused: the three writes wait in the queue).
    let deadline = tokio::time::Instant::now() + WAIT;
    let peeked = loop {
        let peek = queues
            .peek_records(pb::PeekRecordsRequest {
                task_id: task_id.clone(),
                gateway_id: gw.clone(),
                max_records: 10,
                ..Default::default()
            })
            .await;
        match peek {
            Ok(peek) => break peek.into_inner(),
            // The gateway applies the new task's assignment within a heartbeat.
            Err(status) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(?status, "peek not possible yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("peek through the other replica: {status:?}"),
        }
    };
    let mut peeked_ids: Vec<&str> = peeked.records.iter().map(|r| r.doc_id.as_str()).collect();
    peeked_ids.sort_unstable();
    assert_eq!(peeked_ids, ["bad-1", "bad-2", "ok"], "{peeked:#?}");
    assert!(
        peeked
            .records
            .iter()
            .all(|r| r.body_redacted && r.body.is_empty())
    );

    // StartTask through A reaches the gateway held by B: the backup refuses
    // two records, which become dead letters reported through B.
    tasks
        .start_task(pb::StartTaskRequest {
            task_id: task_id.clone(),
        })
        .await
        .unwrap();
    let pending = wait_dead_letters(&mut queues, &task_id, &[], "reported", |e| e.len() == 2).await;
    let mut ids: Vec<&str> = pending.iter().map(doc_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["bad-1", "bad-2"]);
    for entry in &pending {
        assert_eq!(entry.gateway_id, gw);
        assert_eq!(entry.task_id, task_id);
        assert!(entry.id.starts_with(&format!("{gw}/")), "{entry:?}");
        assert_eq!(entry.state, pb::DeadLetterState::Pending as i32);
        let failure = entry.failure.as_ref().unwrap();
        assert_eq!(failure.http_status, 400, "{failure:?}");
        assert!(
            failure.error_reason.contains("mapper_parsing_exception"),
            "{failure:?}"
        );
        let record = entry.record.as_ref().unwrap();
        assert!(record.body.is_empty() && record.body_redacted, "{record:?}");
    }
    let bad_1 = pending
        .iter()
        .find(|e| doc_id(e) == "bad-1")
        .unwrap()
        .id
        .clone();

    // Bodies on request, fetched live from the gateway through B.
    let with_bodies = queues
        .list_dead_letters(pb::ListDeadLettersRequest {
            task_id: task_id.clone(),
            gateway_id: gw.clone(),
            include_bodies: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(with_bodies.total_size, 2);
    for entry in &with_bodies.dead_letters {
        let body = String::from_utf8_lossy(&entry.record.as_ref().unwrap().body).to_string();
        let code = if doc_id(entry) == "bad-1" {
            "x-1"
        } else {
            "x-2"
        };
        assert!(body.contains(code), "{body}");
    }

    // Fix the backup's mapping, then retry bad-1.
    let (deleted, _) = call(Method::DELETE, format!("{new_url}/{index}"), None).await;
    assert_eq!(deleted, 200);
    create_index(
        &new_url,
        &index,
        json!({ "properties": { "code": { "type": "keyword" } } }),
    )
    .await;
    let retried = queues
        .retry_dead_letters(pb::RetryDeadLettersRequest {
            task_id: task_id.clone(),
            dead_letter_ids: vec![bad_1.clone()],
            comment: "mapping fixed".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.matched_count, 1);
    assert_eq!(retried.commands.len(), 1);
    assert_eq!(retried.commands[0].gateway_id, gw);
    assert!(retried.commands[0].delivered);
    let done = wait_dead_letters(
        &mut queues,
        &task_id,
        &[pb::DeadLetterState::Retried],
        "retried",
        |e| e.len() == 1,
    )
    .await;
    assert_eq!(done[0].id, bad_1);
    assert_eq!(done[0].comment, "mapping fixed");
    let (status, doc) = call(Method::GET, format!("{new_url}/{index}/_doc/bad-1"), None).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["_source"]["code"], "x-1");
    // A resolved dead letter is not PENDING: retrying it again matches none.
    let again = queues
        .retry_dead_letters(pb::RetryDeadLettersRequest {
            task_id: task_id.clone(),
            dead_letter_ids: vec![bad_1.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.matched_count, again.commands.len()), (0, 0));

    // Replica B stops: the gateway is disconnected; a skip waits for it.
    b.stop().await;
    let mut gateways = tandem_client::gateway_client(a.channel().await, token(Some(TOKEN)));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let g = gateways
            .get_gateway(pb::GetGatewayRequest {
                gateway_id: gw.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .gateway
            .unwrap();
        if g.connection_state == pb::GatewayConnectionState::Disconnected as i32 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gateway still connected: {g:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let skipped = queues
        .skip_dead_letters(pb::SkipDeadLettersRequest {
            task_id: task_id.clone(),
            all: true,
            gateway_id: gw.clone(),
            comment: "bad data, abandoned".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(skipped.matched_count, 1);
    assert!(!skipped.commands[0].delivered, "{skipped:?}");
    let waiting = list(&mut queues, &task_id, &[]).await;
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].state, pb::DeadLetterState::SkipRequested as i32);

    // B comes back on the same address; the gateway reconnects and the skip
    // runs.
    let b = start_replica(&database, &key, Some(b_addr)).await;
    let done = wait_dead_letters(
        &mut queues,
        &task_id,
        &[pb::DeadLetterState::Skipped],
        "skipped",
        |e| e.len() == 1,
    )
    .await;
    assert_eq!(doc_id(&done[0]), "bad-2");
    assert_eq!(done[0].comment, "bad data, abandoned");
    assert!(list(&mut queues, &task_id, &[]).await.is_empty());
    let (status, _) = call(Method::GET, format!("{new_url}/{index}/_doc/bad-2"), None).await;
    assert_eq!(status, 404, "a skipped record is never replayed");
    let (_, admin) = call(
        Method::GET,
        format!("{}/replication/dead-letters", gateway.admin_url),
        None,
    )
    .await;
    assert_eq!(admin["dead_letters"], json!([]), "{admin}");

    drop(gateway);
    b.stop().await;
    a.stop().await;
}
