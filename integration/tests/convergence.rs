//! Convergence over time, against real clusters: documents deleted and
//! re-created after the primary pruned their tombstones (the primary's
//! `_version` starts again at 1 while the backup still holds the higher
//! tombstone), in both directions across major versions, under concurrent
//! writers on a small id space. Every test ends with an independent full
//! scan of both clusters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tandem_integration::client::{bulk, call, create_index, put_doc};
use tandem_integration::compare::assert_converged;
use tandem_integration::gateway::{GatewayOptions, TestGateway, drain};
use tandem_integration::{SearchCluster, env, http, unique_index};

const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Sets `index.gc_deletes` to 0 on the primary only (not through the
/// gateway), so every refresh prunes its delete tombstones.
async fn prune_tombstones_at_every_refresh(primary: &str, index: &str) {
    let (status, body) = call(
        Method::PUT,
        format!("{primary}/{index}/_settings"),
        Some(json!({ "index": { "gc_deletes": "0s" } })),
    )
    .await;
    assert_eq!(status, 200, "gc_deletes on the primary: {body}");
}

async fn refresh(cluster: &str, index: &str) {
    let (status, body) = call(Method::POST, format!("{cluster}/{index}/_refresh"), None).await;
    assert_eq!(status, 200, "refresh: {body}");
}

/// The gateway's `/metrics` value of the sample starting with `prefix`
/// (0 when absent).
async fn metric(admin_url: &str, prefix: &str) -> f64 {
    let text = http()
        .get(format!("{admin_url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The document's `_version` on `cluster`, read directly.
async fn version_on(cluster: &str, index: &str, id: &str) -> i64 {
    let (status, body) = call(Method::GET, format!("{cluster}/{index}/_doc/{id}"), None).await;
    assert_eq!(status, 200, "GET {id}: {body}");
    body["_version"].as_i64().expect("_version")
}

/// Delete, then re-create the same id after the primary forgot the
/// tombstone: the re-created document must reach the backup although its
/// version (1) is below the backup's tombstone.
async fn recreated_after_tombstone_pruning(primary: &SearchCluster, backup: &SearchCluster) {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start_with(GatewayOptions::replicating(
        &primary.url,
        &backup.url,
        dir.path(),
    ))
    .await;
    let index = unique_index("recreate");
    create_index(
        &gw.url,
        &index,
        json!({ "properties": { "n": { "type": "long" } } }),
    )
    .await;
    prune_tombstones_at_every_refresh(&primary.url, &index).await;

    for n in 0..3 {
        assert!(matches!(
            put_doc(&gw.url, &index, "x", json!({ "n": n, "life": 1 })).await,
            200 | 201
        ));
    }
    let (status, _) = call(Method::DELETE, format!("{}/{index}/_doc/x", gw.url), None).await;
    assert_eq!(status, 200);
    drain(&gw.admin_url, DRAIN_TIMEOUT).await;

    // The primary forgets the delete; the backup keeps its tombstone (v4).
    refresh(&primary.url, &index).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    refresh(&primary.url, &index).await;
    assert_eq!(
        put_doc(&gw.url, &index, "x", json!({ "n": 10, "life": 2 })).await,
        201
    );
    assert_eq!(
        version_on(&primary.url, &index, "x").await,
        1,
        "the primary should have restarted the re-created document at version 1"
    );
    drain(&gw.admin_url, DRAIN_TIMEOUT).await;
    let docs = assert_converged(&primary.url, &backup.url, &index).await;
    assert_eq!(docs, 1);
    assert!(
        metric(
            &gw.admin_url,
            "tandem_reconciled_documents_total{cause=\"version_conflict\",result=\"repaired\"}"
        )
        .await
            >= 1.0,
        "the repair is counted"
    );

    // Later writes of the re-created document keep converging although the
    // backup's version runs ahead of the primary's.
    for n in 11..14 {
        assert_eq!(
            put_doc(&gw.url, &index, "x", json!({ "n": n, "life": 2 })).await,
            200
        );
    }
    drain(&gw.admin_url, DRAIN_TIMEOUT).await;
    assert_converged(&primary.url, &backup.url, &index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreated_after_tombstone_pruning_converges_es7_to_os2() {
    recreated_after_tombstone_pruning(env().cluster("es7"), env().cluster("os2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreated_after_tombstone_pruning_converges_os2_to_es6() {
    recreated_after_tombstone_pruning(env().cluster("os2"), env().cluster("es6")).await;
}

/// A small deterministic generator (xorshift), so a failure can be re-run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Eight writers index, update, delete and bulk-write 12 ids while the
/// primary prunes tombstones every 100 ms: deletes and re-creations race
/// the replayer all the time. After the queue drains, both clusters hold
/// the same ids and sources.
async fn churn_with_tombstone_pruning(primary: &SearchCluster, backup: &SearchCluster) {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start_with(GatewayOptions::replicating(
        &primary.url,
        &backup.url,
        dir.path(),
    ))
    .await;
    let index = unique_index("churn");
    create_index(
        &gw.url,
        &index,
        json!({ "properties": { "w": { "type": "long" }, "i": { "type": "long" } } }),
    )
    .await;
    prune_tombstones_at_every_refresh(&primary.url, &index).await;

    let stop = Arc::new(AtomicBool::new(false));
    let pruner = {
        let (stop, url, index) = (stop.clone(), primary.url.clone(), index.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let _ = http().post(format!("{url}/{index}/_refresh")).send().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let (stop, url, index) = (stop.clone(), gw.url.clone(), index.clone());
        writers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w + 1));
            let mut i = 0u64;
            let mut accepted = 0u32;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let id = rng.below(12).to_string();
                let status = match rng.below(10) {
                    0..=3 => put_doc(&url, &index, &id, json!({ "w": w, "i": i })).await,
                    4..=6 => {
                        call(Method::DELETE, format!("{url}/{index}/_doc/{id}"), None)
                            .await
                            .0
                    }
                    7 => {
                        call(
                            Method::POST,
                            format!("{url}/{index}/_update/{id}"),
                            Some(json!({ "doc": { "i": i }, "doc_as_upsert": true })),
                        )
                        .await
                        .0
                    }
                    _ => {
                        let other = rng.below(12);
                        bulk(
                            format!("{url}/_bulk"),
                            &[
                                json!({ "delete": { "_index": index, "_id": id } }),
                                json!({ "index": { "_index": index, "_id": other.to_string() } }),
                                json!({ "w": w, "i": i, "bulk": true }),
                            ],
                        )
                        .await
                        .0
                    }
                };
                // 404 (delete of a missing id) and 409 are ordinary answers.
                assert!(
                    matches!(status, 200 | 201 | 404 | 409),
                    "writer {w}: status {status}"
                );
                if status < 300 {
                    accepted += 1;
                }
            }
            accepted
        }));
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::SeqCst);
    let mut accepted = 0;
    for writer in writers {
        accepted += writer.await.unwrap();
    }
    pruner.await.unwrap();
    assert!(accepted > 100, "only {accepted} writes accepted");

    drain(&gw.admin_url, DRAIN_TIMEOUT).await;
    assert_converged(&primary.url, &backup.url, &index).await;
    let reconciled = metric(
        &gw.admin_url,
        "tandem_replay_version_conflicts_total{class=\"reconcile\"}",
    )
    .await;
    assert!(
        reconciled > 0.0,
        "the workload should have produced regressions to reconcile"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_with_tombstone_pruning_converges_es7_to_os2() {
    churn_with_tombstone_pruning(env().cluster("es7"), env().cluster("os2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_with_tombstone_pruning_converges_os2_to_es6() {
    churn_with_tombstone_pruning(env().cluster("os2"), env().cluster("es6")).await;
}
