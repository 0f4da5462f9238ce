//! Convergence over time, against real clusters: documents deleted and
//! re-created after the primary pruned their tombstones (the primary's
//! `_version` starts again at 1 while the backup still holds the higher
//! tombstone), in both directions across major versions, under concurrent
//! writers on a small id space. Every test ends with an independent full
//! scan of both clusters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tandem_integration::client::{bulk, call, create_index, index_numbered_docs, put_doc};
use tandem_integration::compare::assert_converged;
use tandem_integration::gateway::{GatewayOptions, GatewayProcess, TestGateway, drain};
use tandem_integration::relay::TcpRelay;
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
    let gw = TestGateway::replicating(&primary.url, &backup.url, dir.path()).await;
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
    // Pruning runs at a refresh once the node's cached clock (updated every
    // 200 ms) has moved past the delete.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        refresh(&primary.url, &index).await;
    }
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
    let gw = TestGateway::replicating(&primary.url, &backup.url, dir.path()).await;
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
    let accepted = Arc::new(AtomicU32::new(0));
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let (stop, url, index) = (stop.clone(), gw.url.clone(), index.clone());
        let accepted = accepted.clone();
        writers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w + 1));
            let mut i = 0u64;
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
                    accepted.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    wait_for_count(&accepted, 150, Duration::from_secs(30)).await;
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }
    let accepted = accepted.load(Ordering::SeqCst);
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

/// Sends a request and returns its status, 0 when the connection failed
/// (the gateway was killed mid-request, say).
async fn status_of(method: Method, url: String, body: Option<String>, ndjson: bool) -> u16 {
    let mut request = http().request(method, url);
    if let Some(body) = body {
        let content_type = if ndjson {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        request = request.header("content-type", content_type).body(body);
    }
    request
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// One random write of the mixed workload on ids `0..ids` through `url`:
/// index, delete, partial update with upsert, auto-id create, or a bulk
/// mixing them. Returns the HTTP status (0 when the connection failed).
async fn random_write(url: &str, index: &str, rng: &mut Rng, w: u64, i: u64, ids: u64) -> u16 {
    let id = rng.below(ids).to_string();
    let doc = |extra: serde_json::Value| {
        let mut doc = json!({ "w": w, "i": i });
        doc.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        Some(doc.to_string())
    };
    match rng.below(12) {
        0..=3 => {
            status_of(
                Method::PUT,
                format!("{url}/{index}/_doc/{id}"),
                doc(json!({})),
                false,
            )
            .await
        }
        4..=5 => {
            status_of(
                Method::DELETE,
                format!("{url}/{index}/_doc/{id}"),
                None,
                false,
            )
            .await
        }
        6..=7 => {
            let body = json!({ "doc": { "i": i, "updated": true }, "doc_as_upsert": true });
            status_of(
                Method::POST,
                format!("{url}/{index}/_update/{id}"),
                Some(body.to_string()),
                false,
            )
            .await
        }
        8 => {
            status_of(
                Method::POST,
                format!("{url}/{index}/_doc"),
                doc(json!({ "auto": true })),
                false,
            )
            .await
        }
        _ => {
            let other = rng.below(ids).to_string();
            let lines = [
                json!({ "delete": { "_index": index, "_id": id } }),
                json!({ "index": { "_index": index, "_id": other } }),
                json!({ "w": w, "i": i, "bulk": true }),
                json!({ "create": { "_index": index } }),
                json!({ "w": w, "i": i, "bulk_auto": true }),
            ];
            let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
            status_of(Method::POST, format!("{url}/_bulk"), Some(body), true).await
        }
    }
}

/// Clients of [`random_write`] running until stopped, counting the
/// writes the gateway accepted. Statuses in `allowed` are ordinary
/// answers; anything else fails the test.
struct Writers {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU32>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn spawn(url: &str, index: &str, writers: u64, ids: u64, allowed: &'static [u16]) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU32::new(0));
        let handles = (0..writers)
            .map(|w| {
                let (stop, accepted) = (stop.clone(), accepted.clone());
                let (url, index) = (url.to_string(), index.to_string());
                tokio::spawn(async move {
                    let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ (w + 1));
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        i += 1;
                        let status = random_write(&url, &index, &mut rng, w, i, ids).await;
                        assert!(allowed.contains(&status), "writer {w}: status {status}");
                        if (200..300).contains(&status) {
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        Writers {
            stop,
            accepted,
            handles,
        }
    }

    /// Waits until at least `count` writes were accepted, or `within`
    /// passed: a loaded machine gets more time instead of a thinner test.
    async fn until_accepted(&self, count: u32, within: Duration) {
        wait_for_count(&self.accepted, count, within).await;
    }

    /// Stops the writers; returns how many writes were accepted.
    async fn stop(self) -> u32 {
        self.stop.store(true, Ordering::SeqCst);
        for handle in self.handles {
            handle.await.unwrap();
        }
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Waits until `counter` reaches `count`, at most `within`.
async fn wait_for_count(counter: &AtomicU32, count: u32, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while counter.load(Ordering::SeqCst) < count && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills the gateway with SIGKILL while eight writers hammer 16 ids; writes
/// the primary applied but the gateway had not recorded yet are found in
/// the in-flight journal at restart and reconciled.
async fn kill_9_under_concurrent_writes(primary: &SearchCluster, backup: &SearchCluster) {
    let dir = tempfile::tempdir().unwrap();
    let mut options =
        GatewayOptions::replicating(&primary.url, &backup.url, &dir.path().join("data"));
    options.replay_toml = "reconcile_delay_ms = 300".into();
    let config_path = dir.path().join("gateway.toml");
    let index = unique_index("kill9");
    let mut accepted = 0;
    let mut found_in_flight = 0.0;
    let mut gateway = GatewayProcess::start(&options, &config_path).await;
    create_index(
        &gateway.url,
        &index,
        json!({ "properties": { "w": { "type": "long" }, "i": { "type": "long" } } }),
    )
    .await;
    // At least three kills, more (up to eight) until one of them caught a
    // write in flight: on a loaded machine a kill can fall between writes.
    for round in 0..8 {
        if round >= 3 && found_in_flight > 0.0 {
            break;
        }
        // 0: the connection died with the gateway.
        let writers = Writers::spawn(&gateway.url, &index, 8, 16, &[0, 200, 201, 404, 409]);
        tokio::time::sleep(Duration::from_millis(1500 + 500 * (round % 3))).await;
        writers.until_accepted(40, Duration::from_secs(20)).await;
        gateway.kill_9();
        accepted += writers.stop().await;
        gateway = GatewayProcess::start(&options, &config_path).await;
        found_in_flight += metric(
            &gateway.admin_url,
            "tandem_inflight_documents_at_start_total",
        )
        .await;
    }
    assert!(accepted > 100, "only {accepted} writes accepted");
    assert!(
        found_in_flight > 0.0,
        "no write was in flight at any of the kills: the test did not exercise the journal"
    );
    drain(&gateway.admin_url, DRAIN_TIMEOUT).await;
    assert_converged(&primary.url, &backup.url, &index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_concurrent_writes_converges_es7_to_os2() {
    kill_9_under_concurrent_writes(env().cluster("es7"), env().cluster("os2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_concurrent_writes_converges_os2_to_es6() {
    kill_9_under_concurrent_writes(env().cluster("os2"), env().cluster("es6")).await;
}

/// By-query writes race with eight writers on 16 ids, with no refresh in
/// between: each run may select documents the other cluster's run would
/// not (and, without `conflicts=proceed`, stop part way with a 409). The
/// replay reconciles what each matches, so the backup ends equal.
async fn by_query_writes_racing_with_writers(primary: &SearchCluster, backup: &SearchCluster) {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::replicating(&primary.url, &backup.url, dir.path()).await;
    let index = unique_index("byquery");
    create_index(
        &gw.url,
        &index,
        json!({ "properties": { "w": { "type": "long" }, "i": { "type": "long" } } }),
    )
    .await;
    let writers = Writers::spawn(&gw.url, &index, 8, 16, &[200, 201, 404, 409]);
    let (mut changed, mut conflicted) = (0, 0);
    for round in 0..16u64 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (path, query) = match round % 4 {
            0 => (
                "_delete_by_query?conflicts=proceed",
                json!({ "range": { "i": { "lte": 2 * round } } }),
            ),
            1 => ("_update_by_query", json!({ "term": { "w": round % 8 } })),
            2 => ("_delete_by_query", json!({ "term": { "w": round % 8 } })),
            _ => (
                "_update_by_query?conflicts=proceed&routing=x&q=w:3",
                json!({ "match_all": {} }),
            ),
        };
        let (status, answer) = call(
            Method::POST,
            format!("{}/{index}/{path}", gw.url),
            Some(json!({ "query": query })),
        )
        .await;
        assert!(matches!(status, 200 | 409), "{path}: {status} {answer}");
        conflicted += u64::from(status == 409);
        changed +=
            answer["deleted"].as_u64().unwrap_or(0) + answer["updated"].as_u64().unwrap_or(0);
    }
    writers.until_accepted(150, Duration::from_secs(30)).await;
    let accepted = writers.stop().await;
    assert!(accepted > 100, "only {accepted} writes accepted");
    assert!(changed > 0, "the by-query writes changed nothing");
    let status = drain(&gw.admin_url, DRAIN_TIMEOUT).await;
    assert_eq!(status["dead_letters"], 0, "{status}");
    let count = assert_converged(&primary.url, &backup.url, &index).await;
    eprintln!(
        "{count} documents equal; by-query runs changed {changed}, {conflicted} stopped on a conflict"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_query_writes_racing_with_writers_converge_es7_to_os2() {
    by_query_writes_racing_with_writers(env().cluster("es7"), env().cluster("os2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_query_writes_racing_with_writers_converge_os2_to_es6() {
    by_query_writes_racing_with_writers(env().cluster("os2"), env().cluster("es6")).await;
}

/// A by-query write the primary ran is in flight (its answer never reached
/// the gateway) when the gateway is killed with SIGKILL, while eight writers
/// hammer another index through the same gateway: start-up finds it
/// in the in-flight journal and records it, its replay reconciles what the
/// query matches, and it is still counted as unreconcilable (a run may go
/// on on the primary after the gateway lost it).
async fn by_query_in_flight_at_a_crash(primary: &SearchCluster, backup: &SearchCluster) {
    let relay = TcpRelay::start(&primary.url).await;
    let dir = tempfile::tempdir().unwrap();
    let mut options =
        GatewayOptions::replicating(&relay.url, &backup.url, &dir.path().join("data"));
    options.replay_toml = "reconcile_delay_ms = 300".into();
    let config_path = dir.path().join("gateway.toml");
    let gateway = GatewayProcess::start(&options, &config_path).await;
    let index = unique_index("bqcrash");
    create_index(
        &gateway.url,
        &index,
        json!({ "properties": { "i": { "type": "long" } } }),
    )
    .await;
    index_numbered_docs(&gateway.url, &index, 0..20).await;
    drain(&gateway.admin_url, DRAIN_TIMEOUT).await;
    let busy = unique_index("bqcrash-busy");
    create_index(
        &gateway.url,
        &busy,
        json!({ "properties": { "w": { "type": "long" }, "i": { "type": "long" } } }),
    )
    .await;
    // 0: the connection died with the gateway; 502: an answer cut off.
    let writers = Writers::spawn(&gateway.url, &busy, 8, 16, &[0, 200, 201, 404, 409, 502]);
    writers.until_accepted(50, Duration::from_secs(20)).await;

    relay.hold_answers(true);
    let by_query = {
        let url = format!("{}/{index}/_delete_by_query?refresh=true", gateway.url);
        tokio::spawn(async move {
            // The connection dies with the gateway: no answer.
            let _ = http()
                .post(url)
                .json(&json!({ "query": { "range": { "i": { "lt": 10 } } } }))
                .send()
                .await;
        })
    };
    // The primary ran it; the gateway is still waiting for the answer.
    let count_url = format!("{}/{index}/_count", primary.url);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let _ = http()
            .post(format!("{}/{index}/_refresh", primary.url))
            .send()
            .await;
        let (_, answer) = call(Method::GET, count_url.clone(), None).await;
        if answer["count"] == 10 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the primary did not run it: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gateway.kill_9();
    by_query.await.unwrap();
    let accepted = writers.stop().await;
    assert!(accepted >= 50, "only {accepted} writes accepted");
    relay.hold_answers(false);

    let gateway = GatewayProcess::start(&options, &config_path).await;
    assert!(
        metric(&gateway.admin_url, "tandem_unreconcilable_writes_total").await >= 1.0,
        "a by-query write lost by the gateway is reported"
    );
    drain(&gateway.admin_url, DRAIN_TIMEOUT).await;
    assert_eq!(
        assert_converged(&primary.url, &backup.url, &index).await,
        10
    );
    assert_converged(&primary.url, &backup.url, &busy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_query_in_flight_at_a_crash_converges_es7_to_os2() {
    by_query_in_flight_at_a_crash(env().cluster("es7"), env().cluster("os2")).await;
}

/// The primary's answers are cut off (the writes reach it, the gateway
/// never hears back) several times while four writers run: every such
/// write is answered 502 and its documents are reconciled.
async fn unknown_outcomes_under_concurrent_writes(primary: &SearchCluster, backup: &SearchCluster) {
    let relay = TcpRelay::start(&primary.url).await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = GatewayOptions::replicating(&relay.url, &backup.url, dir.path());
    options.replay_toml = "reconcile_delay_ms = 300".into();
    let options_again = options.clone();
    let gw = TestGateway::start_with(options).await;
    let index = unique_index("unknown");
    create_index(
        &gw.url,
        &index,
        json!({ "properties": { "w": { "type": "long" }, "i": { "type": "long" } } }),
    )
    .await;
    let writers = Writers::spawn(&gw.url, &index, 4, 12, &[200, 201, 404, 409, 502]);
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        relay.swallow_answers(true);
        tokio::time::sleep(Duration::from_millis(300)).await;
        relay.swallow_answers(false);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    writers.until_accepted(80, Duration::from_secs(30)).await;
    let accepted = writers.stop().await;
    assert!(accepted > 50, "only {accepted} writes accepted");
    let unknown = metric(&gw.admin_url, "tandem_unknown_outcome_writes_total").await;
    assert!(unknown > 0.0, "no write ended with an unknown outcome");
    drain(&gw.admin_url, DRAIN_TIMEOUT).await;
    assert_converged(&primary.url, &backup.url, &index).await;
    assert!(
        metric(
            &gw.admin_url,
            "tandem_reconciles_queued_total{cause=\"unknown_outcome\"}"
        )
        .await
            > 0.0
    );
    // The evidence survives a restart of the gateway.
    gw.stop();
    let gw = TestGateway::start_with(options_again).await;
    assert_eq!(
        metric(&gw.admin_url, "tandem_unknown_outcome_writes_total").await,
        unknown,
        "unknown-outcome writes counted before the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_outcomes_under_concurrent_writes_converge_es7_to_os2() {
    unknown_outcomes_under_concurrent_writes(env().cluster("es7"), env().cluster("os2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_outcomes_under_concurrent_writes_converge_os2_to_es6() {
    unknown_outcomes_under_concurrent_writes(env().cluster("os2"), env().cluster("es6")).await;
}

/// The soak: for `TANDEM_SOAK_SECS` (default 120) seconds, eight writers on
/// 16 ids while, in turn, the gateway is killed with SIGKILL and restarted,
/// the backup goes away and comes back, and the primary's answers are cut
/// off; then the queue drains and an independent full scan must find both
/// clusters equal. Run by `bench/soak.sh` (not part of the regular suite:
/// it is long by design).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run with bench/soak.sh"]
async fn soak_with_kills_backup_outages_and_lost_answers() {
    let secs: u64 = std::env::var("TANDEM_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let pairs = std::env::var("TANDEM_SOAK_PAIR").unwrap_or_else(|_| "es7:os2".into());
    let (from, to) = pairs
        .split_once(':')
        .expect("TANDEM_SOAK_PAIR is primary:backup");
    let (primary, backup) = (env().cluster(from), env().cluster(to));
    let primary_relay = TcpRelay::start(&primary.url).await;
    let backup_relay = TcpRelay::start(&backup.url).await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = GatewayOptions::replicating(
        &primary_relay.url,
        &backup_relay.url,
        &dir.path().join("data"),
    );
    options.replay_toml = "reconcile_delay_ms = 500".into();
    let config_path = dir.path().join("gateway.toml");
    let index = unique_index("soak");
    let mut gateway = GatewayProcess::start(&options, &config_path).await;
    create_index(
        &gateway.url,
        &index,
        json!({ "properties": { "w": { "type": "long" }, "i": { "type": "long" } } }),
    )
    .await;
    let started = std::time::Instant::now();
    let (mut accepted, mut kills, mut outages, mut cuts) = (0, 0, 0, 0);
    let mut round = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        round += 1;
        let writers = Writers::spawn(&gateway.url, &index, 8, 16, &[0, 200, 201, 404, 409, 502]);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        match round % 3 {
            0 => {
                gateway.kill_9();
                kills += 1;
                accepted += writers.stop().await;
                gateway = GatewayProcess::start(&options, &config_path).await;
                continue;
            }
            1 => {
                backup_relay.set_down();
                outages += 1;
                tokio::time::sleep(Duration::from_millis(1500)).await;
                backup_relay.set_up();
            }
            _ => {
                primary_relay.swallow_answers(true);
                cuts += 1;
                tokio::time::sleep(Duration::from_millis(400)).await;
                primary_relay.swallow_answers(false);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        accepted += writers.stop().await;
    }
    drain(&gateway.admin_url, DRAIN_TIMEOUT).await;
    let docs = assert_converged(&primary.url, &backup.url, &index).await;
    println!(
        "soak {from}->{to}: {secs} s, {accepted} writes accepted, {kills} gateway kills, \
         {outages} backup outages, {cuts} cut-off answer windows; {docs} documents equal on both clusters"
    );
}

/// `call` with a JSON body, asserting the status is one of `expected`.
async fn expect_status(
    method: Method,
    url: String,
    body: Option<serde_json::Value>,
    expected: &[u16],
) {
    let (status, answer) = call(method.clone(), url.clone(), body).await;
    assert!(
        expected.contains(&status),
        "{method} {url}: {status} {answer} (expected {expected:?})"
    );
}

/// The write shapes applications use, each replayed to the backup: after
/// the queue drains, an independent full scan finds both clusters equal.
/// `modules`: the primary has painless and the ingest processors (the
/// `es7` flavor has neither).
async fn write_shapes_converge(primary: &SearchCluster, backup: &SearchCluster, modules: bool) {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::replicating(&primary.url, &backup.url, dir.path()).await;
    let url = gw.url.clone();
    let index = unique_index("shapes");
    create_index(
        &url,
        &index,
        json!({ "properties": { "n": { "type": "long" } } }),
    )
    .await;
    let doc = |path: &str| format!("{url}/{index}/{path}");
    use Method as M;

    // op_type=create: the second create is refused by the primary and
    // nothing of it is replayed.
    expect_status(M::PUT, doc("_create/c"), Some(json!({ "n": 1 })), &[201]).await;
    expect_status(M::PUT, doc("_create/c"), Some(json!({ "n": 2 })), &[409]).await;
    expect_status(
        M::PUT,
        doc("_doc/c2?op_type=create"),
        Some(json!({ "n": 1 })),
        &[201],
    )
    .await;
    // Client-supplied external versions: the primary's version is replayed.
    expect_status(
        M::PUT,
        doc("_doc/ext?version=10&version_type=external"),
        Some(json!({ "n": 10 })),
        &[201],
    )
    .await;
    expect_status(
        M::PUT,
        doc("_doc/ext?version=5&version_type=external"),
        Some(json!({ "n": 5 })),
        &[409],
    )
    .await;
    expect_status(
        M::PUT,
        doc("_doc/ext?version=12&version_type=external_gte"),
        Some(json!({ "n": 12 })),
        &[200],
    )
    .await;
    // Conditional writes on seq_no / primary_term.
    let (_, written) = call(M::PUT, doc("_doc/cas"), Some(json!({ "n": 1 }))).await;
    let (seq_no, term) = (
        written["_seq_no"].as_i64().unwrap(),
        written["_primary_term"].as_i64().unwrap(),
    );
    expect_status(
        M::PUT,
        doc(&format!(
            "_doc/cas?if_seq_no={seq_no}&if_primary_term={term}"
        )),
        Some(json!({ "n": 2 })),
        &[200],
    )
    .await;
    expect_status(
        M::PUT,
        doc(&format!(
            "_doc/cas?if_seq_no={seq_no}&if_primary_term={term}"
        )),
        Some(json!({ "n": 3 })),
        &[409],
    )
    .await;
    // Partial updates, retry_on_conflict, doc_as_upsert.
    expect_status(
        M::POST,
        doc("_update/cas?retry_on_conflict=3"),
        Some(json!({ "doc": { "extra": true } })),
        &[200],
    )
    .await;
    expect_status(
        M::POST,
        doc("_update/up"),
        Some(json!({ "doc": { "n": 7 }, "doc_as_upsert": true })),
        &[201],
    )
    .await;
    expect_status(
        M::POST,
        doc("_update/up"),
        Some(json!({ "doc": { "m": 8 }, "doc_as_upsert": true })),
        &[200],
    )
    .await;
    if modules {
        expect_status(
            M::POST,
            doc("_update/scripted"),
            Some(json!({
                "scripted_upsert": true,
                "script": { "source": "ctx._source.n = (ctx._source.n == null ? 0 : ctx._source.n) + params.by", "params": { "by": 5 } },
                "upsert": {}
            })),
            &[201],
        )
        .await;
        expect_status(
            M::POST,
            doc("_update/scripted"),
            Some(json!({ "script": { "source": "ctx._source.n += params.by", "params": { "by": 5 } } })),
            &[200],
        )
        .await;
    }
    // Custom routing.
    expect_status(
        M::PUT,
        doc("_doc/routed?routing=user-1"),
        Some(json!({ "n": 1 })),
        &[201],
    )
    .await;
    expect_status(M::DELETE, doc("_doc/routed?routing=user-1"), None, &[200]).await;
    expect_status(
        M::PUT,
        doc("_doc/routed2?routing=user-2"),
        Some(json!({ "n": 2 })),
        &[201],
    )
    .await;
    // Ingest pipelines: the backup gets the document the primary stored
    // (read back from it), not the one the client sent.
    if modules {
        let pipeline = format!("{index}-normalise");
        expect_status(
            M::PUT,
            format!("{url}/_ingest/pipeline/{pipeline}"),
            Some(json!({ "processors": [
                { "lowercase": { "field": "name" } },
                { "rename": { "field": "raw", "target_field": "n" } }
            ] })),
            &[200],
        )
        .await;
        for path in [
            format!("_doc/piped?pipeline={pipeline}"),
            format!("_create/piped-create?pipeline={pipeline}"),
        ] {
            expect_status(
                M::PUT,
                doc(&path),
                Some(json!({ "name": "MiXeD", "raw": 3 })),
                &[201],
            )
            .await;
        }
        let (status, answer) = bulk(
            format!("{url}/_bulk?pipeline={pipeline}"),
            &[
                json!({ "index": { "_index": index, "_id": "piped-bulk" } }),
                json!({ "name": "BuLk", "raw": 4 }),
            ],
        )
        .await;
        assert!(status == 200 && answer["errors"] == false, "{answer}");
        let (_, stored) = call(M::GET, format!("{}/{index}/_doc/piped", primary.url), None).await;
        assert_eq!(stored["_source"], json!({ "name": "mixed", "n": 3 }));
    }
    // Writes through an alias with a write index land in the concrete index.
    let alias = format!("{index}-alias");
    expect_status(
        M::POST,
        format!("{url}/_aliases"),
        Some(json!({ "actions": [{ "add": { "index": index, "alias": alias, "is_write_index": true } }] })),
        &[200],
    )
    .await;
    expect_status(
        M::PUT,
        format!("{url}/{alias}/_doc/via-alias"),
        Some(json!({ "n": 42 })),
        &[201],
    )
    .await;
    // An index deleted and re-created under the same name starts over.
    let again = unique_index("shapes-recreated");
    create_index(
        &url,
        &again,
        json!({ "properties": { "n": { "type": "long" } } }),
    )
    .await;
    for id in 0..5 {
        expect_status(
            M::PUT,
            format!("{url}/{again}/_doc/{id}"),
            Some(json!({ "n": id, "life": 1 })),
            &[201],
        )
        .await;
    }
    expect_status(M::DELETE, format!("{url}/{again}"), None, &[200]).await;
    create_index(
        &url,
        &again,
        json!({ "properties": { "n": { "type": "long" } } }),
    )
    .await;
    for id in 3..8 {
        expect_status(
            M::PUT,
            format!("{url}/{again}/_doc/{id}"),
            Some(json!({ "n": id, "life": 2 })),
            &[201],
        )
        .await;
    }
    // A by-query write right after a single-document write: whether or not
    // the primary's run saw the document (no refresh in between), the
    // backup ends as the primary (the replay reconciles what the query
    // matches on the backup).
    expect_status(M::PUT, doc("_doc/q1"), Some(json!({ "n": 100 })), &[201]).await;
    expect_status(
        M::POST,
        format!("{url}/{index}/_delete_by_query?refresh=true"),
        Some(json!({ "query": { "range": { "n": { "gte": 100 } } } })),
        &[200],
    )
    .await;

    // A client lowering gc_deletes through the gateway does not shorten the
    // backup's tombstones for long: the replayer raises it again.
    expect_status(
        M::PUT,
        format!("{url}/{index}/_settings"),
        Some(json!({ "index": { "gc_deletes": "30s" } })),
        &[200],
    )
    .await;
    expect_status(
        M::PUT,
        doc("_doc/after-settings"),
        Some(json!({ "n": 5 })),
        &[201],
    )
    .await;
    expect_status(
        M::PUT,
        format!("{url}/{again}/_doc/after"),
        Some(json!({ "n": 9 })),
        &[201],
    )
    .await;

    drain(&gw.admin_url, DRAIN_TIMEOUT).await;
    for name in [&index, &again] {
        let (_, settings) = call(
            M::GET,
            format!("{}/{name}/_settings/index.gc_deletes", backup.url),
            None,
        )
        .await;
        assert_eq!(
            settings[name.as_str()]["settings"]["index"]["gc_deletes"],
            json!("1h"),
            "gc_deletes of {name} on the backup: {settings}"
        );
    }
    let docs = assert_converged(&primary.url, &backup.url, &index).await;
    assert!(docs >= 8, "{docs} documents");
    assert_eq!(assert_converged(&primary.url, &backup.url, &again).await, 6);
    assert_eq!(version_on(&backup.url, &index, "ext").await, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_shapes_converge_es7_to_os2() {
    write_shapes_converge(env().cluster("es7"), env().cluster("os2"), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_shapes_converge_os2_to_es6() {
    write_shapes_converge(env().cluster("os2"), env().cluster("es6"), true).await;
}

/// Overwrites documents `0..count` of `index` on `cluster` directly (not
/// through the gateway): no record will ever fix them.
async fn change_behind_the_gateway(cluster: &str, index: &str, count: u32) {
    let lines: Vec<serde_json::Value> = (0..count)
        .flat_map(|n| {
            [
                json!({ "index": { "_index": index, "_id": n.to_string() } }),
                json!({ "n": n, "tampered": true }),
            ]
        })
        .collect();
    let (code, answer) = bulk(format!("{cluster}/_bulk?refresh=true"), &lines).await;
    assert_eq!(
        (code, answer["errors"].clone()),
        (200, json!(false)),
        "{answer}"
    );
}

/// The gateway's `/replication` status.
async fn status(admin_url: &str) -> serde_json::Value {
    tandem_integration::gateway::replication_status(admin_url).await
}

/// Documents changed on the backup behind the gateway's back (no record
/// will ever fix them) are found by the sampling verifier, reported and
/// repaired from the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifier_finds_and_repairs_documents_changed_behind_the_gateway() {
    let (primary, backup) = (env().cluster("es7"), env().cluster("os2"));
    let dir = tempfile::tempdir().unwrap();
    let mut options = GatewayOptions::replicating(&primary.url, &backup.url, dir.path());
    options.replay_toml = "verify_docs_per_second = 50".into();
    let gw = TestGateway::start_with(options).await;
    let index = unique_index("verify");
    create_index(
        &gw.url,
        &index,
        json!({ "properties": { "n": { "type": "long" } } }),
    )
    .await;
    index_numbered_docs(&gw.url, &index, 0..64).await;
    drain(&gw.admin_url, DRAIN_TIMEOUT).await;

    // Every document changed on the backup directly.
    change_behind_the_gateway(&backup.url, &index, 64).await;

    // One replayed document in 8 is sampled: all 8 samples are found.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let found = metric(&gw.admin_url, "tandem_verifier_divergences_total").await;
        if found >= 8.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "verifier found {found} divergences: {}",
            status(&gw.admin_url).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        status(&gw.admin_url).await["verifier"]["last_divergence"]
            .as_str()
            .is_some_and(|d| d.starts_with(&index))
    );
    drain(&gw.admin_url, DRAIN_TIMEOUT).await;
    let on_primary = tandem_integration::compare::documents(&primary.url, &index).await;
    let on_backup = tandem_integration::compare::documents(&backup.url, &index).await;
    let repaired = on_primary
        .iter()
        .filter(|(id, (_, source))| on_backup.get(*id).is_some_and(|(_, s)| s == source))
        .count();
    assert_eq!(repaired, 8, "exactly the sampled documents are repaired");

    // Writing the others again through the gateway converges everything.
    for n in 0..64 {
        assert_eq!(
            put_doc(&gw.url, &index, &n.to_string(), json!({ "n": n })).await,
            200
        );
    }
    drain(&gw.admin_url, DRAIN_TIMEOUT).await;
    assert_converged(&primary.url, &backup.url, &index).await;
}

/// A divergence the verifier confirms reaches the control plane: the task
/// is DEGRADED with a BACKUP_DIVERGED problem naming the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_divergence_the_verifier_finds_degrades_the_task() {
    use tandem_integration::controlplane::{
        ControlPlaneApi, InProcessControlPlane, create_task_once_registered,
    };
    use tandem_proto::v1 as pb;

    let (primary, backup) = (env().cluster("es7"), env().cluster("os2"));
    let database = tandem_integration::fresh_database("cnv_health").await;
    let cp = InProcessControlPlane::start(InProcessControlPlane::config(
        &database,
        "convergence-test-token",
    ))
    .await;
    let mut clusters = cp.clusters().await;
    for (name, url) in [("old", &primary.url), ("new", &backup.url)] {
        clusters
            .register_cluster(pb::RegisterClusterRequest {
                name: name.into(),
                endpoints: vec![url.clone()],
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("register {name}: {e:?}"));
    }
    let dir = tempfile::tempdir().unwrap();
    let gateway_id = format!("gw-health-{}", unique_index("g"));
    let mut options = GatewayOptions::replicating(&primary.url, &backup.url, dir.path());
    options.replay_toml = "verify_docs_per_second = 50".into();
    options.extra_toml = cp.agent_section(&gateway_id);
    let gw = TestGateway::start_with(options).await;
    let mut tasks = cp.tasks().await;
    let cluster = |name: &str| {
        Some(pb::ClusterRef {
            cluster_name: name.into(),
            ..Default::default()
        })
    };
    let task = create_task_once_registered(
        &mut tasks,
        pb::CreateTaskRequest {
            name: "health".into(),
            primary: cluster("old"),
            backup: cluster("new"),
            gateway_ids: vec![gateway_id.clone()],
            ..Default::default()
        },
    )
    .await;

    let index = unique_index("health");
    create_index(
        &gw.url,
        &index,
        json!({ "properties": { "n": { "type": "long" } } }),
    )
    .await;
    index_numbered_docs(&gw.url, &index, 0..16).await;
    drain(&gw.admin_url, DRAIN_TIMEOUT).await;
    change_behind_the_gateway(&backup.url, &index, 16).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = tasks
            .get_task(pb::GetTaskRequest {
                task_id: task.id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .task
            .unwrap();
        let diverged = got.problems.iter().find(|p| p.reason == "BACKUP_DIVERGED");
        if got.health == pb::TaskHealth::Degraded as i32
            && let Some(problem) = diverged
        {
            assert!(problem.message.contains(&gateway_id), "{}", problem.message);
            let events = tasks
                .list_task_events(pb::ListTaskEventsRequest {
                    task_id: task.id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .events;
            if events.iter().any(|e| e.reason == "BACKUP_DIVERGED") {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task health {:?}, problems {:?}",
            got.health,
            got.problems
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(gw);
    cp.stop().await;
}
