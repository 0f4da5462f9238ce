//! Failure paths of dual writing and replay, against real clusters: a
//! gateway killed with SIGKILL, a backup that goes away, corrupt queue
//! data, replay from two gateways in any order, refused ops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{Value, json};
use tandem_integration::client::{admin_post, call, create_index, index_numbered_docs, put_doc};
use tandem_integration::compare::{assert_index_equal, documents};
use tandem_integration::gateway::{
    GatewayOptions, GatewayProcess, TestGateway, drain, replication_status,
};
use tandem_integration::relay::TcpRelay;
use tandem_integration::{SearchCluster, env, http, unique_index};

const DRAIN_TIMEOUT: Duration = Duration::from_secs(90);

fn primary_and_backup() -> (&'static SearchCluster, &'static SearchCluster) {
    let clusters = &env().clusters;
    assert!(clusters.len() >= 2, "need two clusters");
    (&clusters[0], &clusters[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_writes_survive_kill_9_of_the_gateway() {
    let (primary, backup) = primary_and_backup();
    let dir = tempfile::tempdir().unwrap();
    let options = GatewayOptions::replicating(&primary.url, &backup.url, &dir.path().join("data"));
    let config_path = dir.path().join("gateway.toml");
    let gateway = GatewayProcess::start(&options, &config_path).await;
    let index = unique_index("crash");
    create_index(
        &gateway.url,
        &index,
        json!({ "properties": { "w": { "type": "long" } } }),
    )
    .await;

    // Sustained writes from four clients; remember every acknowledged id.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (acked, stop, url, index) = (
            acked.clone(),
            stop.clone(),
            gateway.url.clone(),
            index.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let id = format!("{w}-{i}");
                let status = put_doc(&url, &index, &id, json!({ "w": w, "i": i })).await;
                if status == 201 || status == 200 {
                    acked.lock().push(id);
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    gateway.kill_9();
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().clone();
    assert!(acked.len() > 50, "only {} writes acknowledged", acked.len());

    // Restart on the same queue and let it drain.
    let gateway = GatewayProcess::start(&options, &config_path).await;
    drain(&gateway.admin_url, DRAIN_TIMEOUT).await;
    let on_primary = documents(&primary.url, &index).await;
    let on_backup = documents(&backup.url, &index).await;
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| on_backup.get(*id) != on_primary.get(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes missing or different on the backup: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_grows_while_the_backup_is_down_and_drains_when_it_returns() {
    let (primary, backup) = primary_and_backup();
    let relay = TcpRelay::start(&backup.url).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::replicating(&primary.url, &relay.url, dir.path()).await;
    let index = unique_index("backup-down");
    create_index(
        &gw.url,
        &index,
        json!({ "properties": { "i": { "type": "long" } } }),
    )
    .await;
    index_numbered_docs(&gw.url, &index, 0..50).await;

    relay.set_down();
    // Clients are unaffected while the backup is away.
    index_numbered_docs(&gw.url, &index, 50..250).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = replication_status(&gw.admin_url).await;
    let lag = status["replayer"]["lag_records"].as_u64().unwrap();
    assert!(
        lag >= 150,
        "queue should hold the unreplayed writes: {status}"
    );
    assert!(status["last_error"].is_string(), "{status}");

    relay.set_up();
    let status = drain(&gw.admin_url, DRAIN_TIMEOUT).await;
    assert_eq!(status["dead_letters"], 0);
    assert_eq!(
        assert_index_equal(&primary.url, &backup.url, &index).await,
        250
    );
}

/// Byte positions of the records in a queue segment, by offset.
fn record_positions(segment: &[u8]) -> Vec<(u64, usize)> {
    let mut positions = Vec::new();
    let mut pos = 0;
    while pos + 24 <= segment.len() && &segment[pos..pos + 4] == b"TQR1" {
        let len = u32::from_le_bytes(segment[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let offset = u64::from_le_bytes(segment[pos + 8..pos + 16].try_into().unwrap());
        positions.push((offset, pos));
        pos += 24 + len + 4;
    }
    positions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_record_halts_replay_until_repair_reports_the_exact_loss() {
    let (primary, backup) = primary_and_backup();
    let dir = tempfile::tempdir().unwrap();
    let mut options = GatewayOptions::replicating(&primary.url, &backup.url, dir.path());
    options.paused = true;
    let index = unique_index("corrupt");
    let gw = TestGateway::start_with(options.clone()).await;
    create_index(
        &gw.url,
        &index,
        json!({ "properties": { "i": { "type": "long" } } }),
    )
    .await;
    index_numbered_docs(&gw.url, &index, 0..10).await;
    gw.stop();

    // Record 0 is the index creation, record k+1 is document k: damage the
    // payload of document 4 (offset 5).
    let segment_path = std::fs::read_dir(dir.path().join("queue"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a segment file");
    let mut segment = std::fs::read(&segment_path).unwrap();
    let positions = record_positions(&segment);
    assert_eq!(positions.len(), 11, "one record per write");
    let (offset, pos) = positions[5];
    assert_eq!(offset, 5);
    segment[pos + 24 + 3] ^= 0xFF;
    std::fs::write(&segment_path, &segment).unwrap();

    let gw = TestGateway::start_with(options).await;
    admin_post(&gw.admin_url, "/replication/resume", None).await;
    let mut status = Value::Null;
    for _ in 0..100 {
        status = replication_status(&gw.admin_url).await;
        if status["halted"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let halted = status["halted"]
        .as_str()
        .unwrap_or_else(|| panic!("not halted: {status}"));
    assert!(halted.contains("corrupt"), "{halted}");
    // Everything before the damaged record was replayed, nothing after.
    let before: Vec<String> = documents(&backup.url, &index).await.into_keys().collect();
    assert_eq!(before, vec!["0", "1", "2", "3"]);

    let dry = admin_post(&gw.admin_url, "/replication/repair?dry_run=true", None).await;
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["records_lost"], 1, "{dry}");
    let report = admin_post(&gw.admin_url, "/replication/repair", None).await;
    assert_eq!(report["first_lost_offset"], 5, "{report}");
    assert_eq!(report["last_lost_offset"], 5, "{report}");
    assert_eq!(report["records_lost"], 1, "{report}");

    drain(&gw.admin_url, DRAIN_TIMEOUT).await;
    let after: Vec<String> = documents(&backup.url, &index).await.into_keys().collect();
    let expected: Vec<String> = ["0", "1", "2", "3", "5", "6", "7", "8", "9"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(after, expected, "exactly the reported record is missing");
    let status = replication_status(&gw.admin_url).await;
    assert!(status["halted"].is_null(), "{status}");
    assert_eq!(status["replayer"]["records_lost"], 1, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_two_gateways_in_any_order_converges() {
    let (primary, backup) = primary_and_backup();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut options_a = GatewayOptions::replicating(&primary.url, &backup.url, dir_a.path());
    options_a.paused = true;
    let mut options_b = GatewayOptions::replicating(&primary.url, &backup.url, dir_b.path());
    options_b.paused = true;
    let a = TestGateway::start_with(options_a).await;
    let b = TestGateway::start_with(options_b).await;
    let index = unique_index("two-gateways");
    create_index(
        &a.url,
        &index,
        json!({ "properties": { "v": { "type": "keyword" } } }),
    )
    .await;

    // Interleave versions of the same documents across both gateways.
    for id in 0..30 {
        let id = id.to_string();
        assert_eq!(
            put_doc(&a.url, &index, &id, json!({ "v": "a1" })).await,
            201
        );
        assert_eq!(
            put_doc(&b.url, &index, &id, json!({ "v": "b2" })).await,
            200
        );
        assert_eq!(
            put_doc(&a.url, &index, &id, json!({ "v": "a3" })).await,
            200
        );
    }
    for id in 0..10 {
        // Deleted last on B; A holds older index ops for these documents.
        let status = http()
            .delete(format!("{}/{index}/_doc/{id}", b.url))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    for id in 10..20 {
        // Newest version written through B.
        assert_eq!(
            put_doc(&b.url, &index, &id.to_string(), json!({ "v": "b4" })).await,
            200
        );
    }

    // B replays first (its newer ops land before A's older ones), then A.
    drain(&b.admin_url, DRAIN_TIMEOUT).await;
    drain(&a.admin_url, DRAIN_TIMEOUT).await;
    assert_eq!(
        assert_index_equal(&primary.url, &backup.url, &index).await,
        20
    );
    let docs = documents(&backup.url, &index).await;
    assert_eq!(docs["15"], (4, json!({ "v": "b4" })));
    assert_eq!(docs["25"], (3, json!({ "v": "a3" })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_the_backup_refuses_are_dead_lettered_then_retried_or_skipped() {
    let (primary, backup) = primary_and_backup();
    let index = unique_index("dead-letters");
    // The backup's mapping disagrees with the primary's on purpose.
    create_index(
        &primary.url,
        &index,
        json!({ "properties": { "code": { "type": "keyword" } } }),
    )
    .await;
    create_index(
        &backup.url,
        &index,
        json!({ "properties": { "code": { "type": "long" } } }),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::replicating(&primary.url, &backup.url, dir.path()).await;
    for (id, code) in [("ok", "42"), ("bad-1", "x-1"), ("bad-2", "x-2")] {
        assert_eq!(
            put_doc(&gw.url, &index, id, json!({ "code": code })).await,
            201
        );
    }
    let status = drain(&gw.admin_url, DRAIN_TIMEOUT).await;
    assert_eq!(status["dead_letters"], 2, "{status}");

    let (_, listed) = call(
        Method::GET,
        format!("{}/replication/dead-letters", gw.admin_url),
        None,
    )
    .await;
    let entries = listed["dead_letters"].as_array().unwrap();
    let ids: Vec<&str> = entries
        .iter()
        .map(|e| e["doc_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["bad-1", "bad-2"]);
    assert!(
        entries[0]["reason"]
            .as_str()
            .unwrap()
            .contains("mapper_parsing_exception"),
        "{listed}"
    );
    assert_eq!(entries[0]["status"], 400);

    // Retrying without fixing the cause keeps the entry, with its reason.
    let first = entries[0]["id"].as_u64().unwrap();
    let report = admin_post(
        &gw.admin_url,
        "/replication/dead-letters/retry",
        Some(json!({ "ids": [first] })),
    )
    .await;
    assert_eq!(
        report,
        json!({ "retried": 1, "applied": 0, "still_failing": 1 })
    );

    // Fix the backup's mapping, retry one, skip the other.
    let (deleted, _) = call(Method::DELETE, format!("{}/{index}", backup.url), None).await;
    assert_eq!(deleted, 200);
    create_index(
        &backup.url,
        &index,
        json!({ "properties": { "code": { "type": "keyword" } } }),
    )
    .await;
    let report = admin_post(
        &gw.admin_url,
        "/replication/dead-letters/retry",
        Some(json!({ "ids": [first] })),
    )
    .await;
    assert_eq!(
        report,
        json!({ "retried": 1, "applied": 1, "still_failing": 0 })
    );
    let skipped = admin_post(
        &gw.admin_url,
        "/replication/dead-letters/skip",
        Some(json!({ "all": true })),
    )
    .await;
    assert_eq!(skipped, json!({ "skipped": 1 }));
    let status = replication_status(&gw.admin_url).await;
    assert_eq!(status["dead_letters"], 0);

    let on_backup = documents(&backup.url, &index).await;
    assert_eq!(on_backup["bad-1"].1, json!({ "code": "x-1" }));
    assert!(!on_backup.contains_key("bad-2"), "skipped op not applied");

    let (bad, body) = call(
        Method::POST,
        format!("{}/replication/dead-letters/retry", gw.admin_url),
        Some(json!({ "ids": "all" })),
    )
    .await;
    assert_eq!(bad, 400, "{body}");
}
