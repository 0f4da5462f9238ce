//! Cutover and rollback on a gateway: hold writes for a bounded moment,
//! drain, swap primary and backup, release — under continuous writes, with
//! nothing lost and no client error.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use tandem_integration::client::{admin_post, call, create_index, index_numbered_docs, put_doc};
use tandem_integration::compare::assert_index_equal;
use tandem_integration::gateway::{GatewayOptions, TestGateway, drain, replication_status};
use tandem_integration::relay::TcpRelay;
use tandem_integration::{SearchCluster, env, unique_index};

fn primary_and_backup() -> (&'static SearchCluster, &'static SearchCluster) {
    let clusters = &env().clusters;
    (&clusters[0], &clusters[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_and_rollback_under_continuous_writes_lose_nothing() {
    let (old, new) = primary_and_backup();
    let dir = tempfile::tempdir().unwrap();
    let gw =
        TestGateway::start_with(GatewayOptions::replicating(&old.url, &new.url, dir.path())).await;
    let index = unique_index("cutover");
    create_index(
        &gw.url,
        &index,
        json!({ "properties": { "w": { "type": "long" } } }),
    )
    .await;

    let statuses = Arc::new(Mutex::new(Vec::<(String, u16)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (statuses, stop, url, index) = (
            statuses.clone(),
            stop.clone(),
            gw.url.clone(),
            index.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                // New documents and rewrites of earlier ones.
                let id = format!("{w}-{}", i % 50);
                let status = put_doc(&url, &index, &id, json!({ "w": w, "i": i })).await;
                statuses.lock().push((id, status));
                i += 1;
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = admin_post(&gw.admin_url, "/replication/cutover?max_hold_ms=5000", None).await;
    assert_eq!(report["reversed"], true, "{report}");
    assert_eq!(report["primary"], new.url.as_str(), "{report}");
    assert!(report["held_for"].as_u64().unwrap() < 5000, "{report}");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = admin_post(&gw.admin_url, "/replication/cutover?max_hold_ms=5000", None).await;
    assert_eq!(report["reversed"], false, "rolled back: {report}");
    assert_eq!(report["primary"], old.url.as_str(), "{report}");

    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }
    let statuses = statuses.lock().clone();
    assert!(statuses.len() > 100, "only {} writes", statuses.len());
    let errors: Vec<&(String, u16)> = statuses
        .iter()
        .filter(|(_, s)| !matches!(s, 200 | 201))
        .collect();
    assert!(errors.is_empty(), "clients saw errors: {errors:?}");

    drain(&gw.admin_url, Duration::from_secs(60)).await;
    let written: std::collections::BTreeSet<&String> = statuses.iter().map(|(id, _)| id).collect();
    assert_eq!(
        assert_index_equal(&old.url, &new.url, &index).await,
        written.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_is_refused_while_the_backup_lags_and_roles_stay() {
    let (old, new) = primary_and_backup();
    let relay = TcpRelay::start(&new.url).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::replicating(&old.url, &relay.url, dir.path()).await;
    let index = unique_index("cutover-refused");
    create_index(
        &gw.url,
        &index,
        json!({ "properties": { "i": { "type": "long" } } }),
    )
    .await;
    relay.set_down();
    index_numbered_docs(&gw.url, &index, 0..30).await;

    let (status, body) = call(
        reqwest::Method::POST,
        format!("{}/replication/cutover?max_lag=5", gw.admin_url),
        None,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("lag"), "{body}");
    let state = replication_status(&gw.admin_url).await;
    assert_eq!(state["reversed"], false);
    assert_eq!(state["primary"], old.url.as_str());

    // Paused replay is refused too: the queue could never drain.
    admin_post(&gw.admin_url, "/replication/pause", None).await;
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{}/replication/cutover?max_lag=1000", gw.admin_url),
        None,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("paused"), "{body}");

    relay.set_up();
    drain(&gw.admin_url, Duration::from_secs(60)).await;
    let report = admin_post(&gw.admin_url, "/replication/cutover", None).await;
    assert_eq!(report["reversed"], true, "{report}");
    let (bad, _) = call(
        reqwest::Method::POST,
        format!("{}/replication/cutover?max_lag=lots", gw.admin_url),
        None,
    )
    .await;
    assert_eq!(bad, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_roles_survive_a_gateway_restart() {
    let (old, new) = primary_and_backup();
    let dir = tempfile::tempdir().unwrap();
    let options = GatewayOptions::replicating(&old.url, &new.url, dir.path());
    let gw = TestGateway::start_with(options.clone()).await;
    let index = unique_index("cutover-restart");
    create_index(
        &gw.url,
        &index,
        json!({ "properties": { "i": { "type": "long" } } }),
    )
    .await;
    drain(&gw.admin_url, Duration::from_secs(60)).await;
    let report = admin_post(&gw.admin_url, "/replication/cutover", None).await;
    assert_eq!(report["reversed"], true, "{report}");
    gw.stop();

    let gw = TestGateway::start_with(options).await;
    let state = replication_status(&gw.admin_url).await;
    assert_eq!(state["reversed"], true, "{state}");
    assert_eq!(state["primary"], new.url.as_str(), "{state}");
    // Writes go to the new primary first; the old cluster gets them by replay.
    admin_post(&gw.admin_url, "/replication/pause", None).await;
    index_numbered_docs(&gw.url, &index, 0..5).await;
    let (on_new, _) = call(
        reqwest::Method::GET,
        format!("{}/{index}/_doc/3", new.url),
        None,
    )
    .await;
    let (on_old, _) = call(
        reqwest::Method::GET,
        format!("{}/{index}/_doc/3", old.url),
        None,
    )
    .await;
    assert_eq!((on_new, on_old), (200, 404));
    drain(&gw.admin_url, Duration::from_secs(60)).await;
    assert_eq!(assert_index_equal(&new.url, &old.url, &index).await, 5);
}
