//! Dual writing through the gateway and convergent replay to the backup,
//! against real clusters of two major versions.

use std::time::Duration;

use serde_json::json;
use tandem_integration::client::{bulk, call};
use tandem_integration::compare::{assert_index_equal, documents};
use tandem_integration::gateway::{GatewayOptions, TestGateway, drain, replication_status};
use tandem_integration::{SearchCluster, env, unique_index};

const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Every ordered pair of distinct typeless clusters (7.x+ and OpenSearch)
/// in the environment; typed 5.x/6.x APIs have tests of their own in
/// `cross_version.rs`.
fn pairs() -> Vec<(&'static SearchCluster, &'static SearchCluster)> {
    let clusters: Vec<&SearchCluster> = env()
        .clusters
        .iter()
        .filter(|c| c.major() >= 7 || c.distribution == "opensearch")
        .collect();
    let mut pairs = Vec::new();
    for a in &clusters {
        for b in &clusters {
            if a.flavor != b.flavor {
                pairs.push((*a, *b));
            }
        }
    }
    assert!(!pairs.is_empty(), "need two clusters");
    pairs
}

fn supports_painless(cluster: &SearchCluster) -> bool {
    // Elasticsearch's painless module is not on Maven Central after 7.10,
    // so the es7, es8 and es9 test nodes have no scripting (see
    // scripts/search/README.md).
    !matches!(cluster.flavor.as_str(), "es7" | "es8" | "es9")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_workload_converges_on_the_backup_in_both_directions() {
    use reqwest::Method;
    for (primary, backup) in pairs() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = GatewayOptions::replicating(&primary.url, &backup.url, dir.path());
        // Record everything first, replay afterwards (the seed workflow).
        options.paused = true;
        let gw = TestGateway::start_with(options).await;
        let index = unique_index("mixed");
        let alias = format!("{index}-alias");
        let g = &gw.url;

        let (status, body) = call(
            Method::PUT,
            format!("{g}/{index}"),
            Some(json!({
                "settings": { "number_of_shards": 1, "number_of_replicas": 0 },
                "mappings": { "properties": { "name": { "type": "keyword" }, "n": { "type": "long" } } }
            })),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = call(
            Method::POST,
            format!("{g}/_aliases"),
            Some(json!({ "actions": [ { "add": { "index": index, "alias": alias } } ] })),
        )
        .await;
        assert_eq!(status, 200, "{body}");

        // _bulk: index (some through the alias), create, auto ids, update,
        // delete.
        let mut lines = Vec::new();
        for i in 1..=40 {
            let target = if i % 2 == 0 { &alias } else { &index };
            lines.push(json!({ "index": { "_index": target, "_id": i.to_string() } }));
            lines.push(json!({ "name": format!("doc-{i}"), "n": i }));
        }
        for i in 41..=45 {
            lines.push(json!({ "create": { "_index": index, "_id": i.to_string() } }));
            lines.push(json!({ "name": format!("created-{i}"), "n": i }));
        }
        for _ in 0..5 {
            lines.push(json!({ "index": { "_index": index } }));
            lines.push(json!({ "name": "auto-id", "n": 0 }));
        }
        for i in 1..=10 {
            lines.push(json!({ "update": { "_index": index, "_id": i.to_string() } }));
            lines.push(json!({ "doc": { "n": i * 100 } }));
        }
        for i in 11..=15 {
            lines.push(json!({ "delete": { "_index": index, "_id": i.to_string() } }));
        }
        let (status, body) = bulk(format!("{g}/_bulk"), &lines).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["errors"], false, "{body}");

        // Single-document writes.
        let (status, _) = call(
            Method::PUT,
            format!("{g}/{index}/_doc/100"),
            Some(json!({ "name": "single", "n": 1 })),
        )
        .await;
        assert_eq!(status, 201);
        let (status, _) = call(
            Method::POST,
            format!("{g}/{index}/_update/100"),
            Some(json!({ "doc": { "n": 2 } })),
        )
        .await;
        assert_eq!(status, 200);
        let (status, _) = call(
            Method::POST,
            format!("{g}/{index}/_update/200"),
            Some(json!({ "doc": { "name": "upserted", "n": 7 }, "doc_as_upsert": true })),
        )
        .await;
        assert_eq!(status, 201);
        let (status, _) = call(Method::DELETE, format!("{g}/{index}/_doc/20"), None).await;
        assert_eq!(status, 200);
        let (status, _) = call(
            Method::POST,
            format!("{g}/{index}/_doc"),
            Some(json!({ "name": "single-auto", "n": 3 })),
        )
        .await;
        assert_eq!(status, 201);
        // Overwrite: version 2 on the primary.
        let (status, _) = call(
            Method::PUT,
            format!("{g}/{alias}/_doc/21"),
            Some(json!({ "name": "overwritten", "n": 21 })),
        )
        .await;
        assert_eq!(status, 200);
        if supports_painless(primary) {
            let (status, body) = call(
                Method::POST,
                format!("{g}/{index}/_update/3"),
                Some(
                    json!({ "script": { "source": "ctx._source.n += 1000", "lang": "painless" } }),
                ),
            )
            .await;
            assert_eq!(status, 200, "{body}");
        }

        // Nothing replayed while paused: the backup has no such index yet.
        let status = replication_status(&gw.admin_url).await;
        assert_eq!(status["paused"], true);
        assert!(
            status["replayer"]["lag_records"].as_u64().unwrap() > 50,
            "{status}"
        );
        let (missing, _) = call(Method::GET, format!("{}/{index}", backup.url), None).await;
        assert_eq!(missing, 404, "backup must not be written while paused");

        let status = drain(&gw.admin_url, DRAIN_TIMEOUT).await;
        assert_eq!(status["dead_letters"], 0, "{status}");
        let count = assert_index_equal(&primary.url, &backup.url, &index).await;
        // 40 indexed + 5 created + 5 auto ids - 5 deleted, then 100, 200
        // and one more auto id, minus 20.
        assert_eq!(count, 47, "{} → {}", primary.flavor, backup.flavor);

        let (alias_status, body) =
            call(Method::GET, format!("{}/_alias/{alias}", backup.url), None).await;
        assert_eq!(alias_status, 200, "alias replayed: {body}");
        let (mapping_status, mapping) = call(
            Method::GET,
            format!("{}/{index}/_mapping", backup.url),
            None,
        )
        .await;
        assert_eq!(mapping_status, 200);
        assert_eq!(
            mapping[&index]["mappings"]["properties"]["name"]["type"], "keyword",
            "mapping replayed before the documents: {mapping}"
        );
        let (settings_status, settings) = call(
            Method::GET,
            format!("{}/{index}/_settings/index.gc_deletes", backup.url),
            None,
        )
        .await;
        assert_eq!(settings_status, 200);
        assert_eq!(
            settings[&index]["settings"]["index"]["gc_deletes"], "1h",
            "gc_deletes raised on the backup: {settings}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_items_rejected_by_the_primary_are_not_replayed() {
    let (primary, backup) = pairs()[0];
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::replicating(&primary.url, &backup.url, dir.path()).await;
    let index = unique_index("partial");
    let (status, _) = call(
        reqwest::Method::PUT,
        format!("{}/{index}", gw.url),
        Some(json!({ "mappings": { "properties": { "n": { "type": "long" } } } })),
    )
    .await;
    assert_eq!(status, 200);

    let mut lines = Vec::new();
    for i in 0..20 {
        lines.push(json!({ "index": { "_index": index, "_id": i.to_string() } }));
        // Every third document conflicts with the mapping.
        if i % 3 == 0 {
            lines.push(json!({ "n": "not a number" }));
        } else {
            lines.push(json!({ "n": i }));
        }
    }
    // A create of an existing document is a 409 on the primary.
    lines.push(json!({ "create": { "_index": index, "_id": "1" } }));
    lines.push(json!({ "n": 999 }));
    let (status, body) = bulk(format!("{}/_bulk", gw.url), &lines).await;
    assert_eq!(status, 200);
    assert_eq!(body["errors"], true);
    let failed = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| {
            item.as_object().unwrap().values().next().unwrap()["status"].as_u64() >= Some(300)
        })
        .count();
    assert_eq!(failed, 8, "{body}");

    drain(&gw.admin_url, DRAIN_TIMEOUT).await;
    let on_backup = documents(&backup.url, &index).await;
    let expected: Vec<String> = (0..20)
        .filter(|i| i % 3 != 0)
        .map(|i| i.to_string())
        .collect();
    let mut ids: Vec<String> = on_backup.keys().cloned().collect();
    ids.sort_by_key(|id| id.parse::<u32>().unwrap());
    assert_eq!(ids, expected);
    assert_eq!(
        on_backup["1"].1,
        json!({ "n": 1 }),
        "rejected create not replayed"
    );
    let status = replication_status(&gw.admin_url).await;
    assert_eq!(status["dead_letters"], 0, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_view_flags_query_scoped_writes_and_never_holds_client_credentials() {
    use base64::Engine;
    use reqwest::Method;
    let (primary, backup) = pairs()[0];
    let dir = tempfile::tempdir().unwrap();
    let mut options = GatewayOptions::replicating(&primary.url, &backup.url, dir.path());
    options.paused = true;
    let gw = TestGateway::start_with(options).await;
    let index = unique_index("queue-view");
    let client = tandem_integration::http();
    // The client's own credentials travel to the primary (which has no
    // security plugin here and ignores them) but must never be recorded.
    let secret = "queue-view-user:s3cr3t-hunter2";
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(secret)
    );
    for (method, path, body) in [
        (
            Method::PUT,
            format!("{index}/_doc/1?refresh=true"),
            json!({ "n": 1, "secret": "doc-body" }),
        ),
        (
            Method::POST,
            format!("{index}/_update_by_query?refresh=true"),
            json!({ "query": { "match_all": {} } }),
        ),
    ] {
        let response = client
            .request(method, format!("{}/{path}", gw.url))
            .header("authorization", &auth)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap()
        );
    }

    let (status, view) = call(
        Method::GET,
        format!("{}/replication/records", gw.admin_url),
        None,
    )
    .await;
    assert_eq!(status, 200, "{view}");
    let records = view["records"].as_array().unwrap();
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["op"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["index", "query_scoped"], "{view}");
    assert_eq!(records[0]["op"]["version_fenced"], true);
    assert_eq!(
        records[1]["op"]["version_fenced"], true,
        "by-query writes are replayed as version-fenced reconciliation"
    );
    assert!(
        records[0]["op"]["source"]["redacted_bytes"]
            .as_u64()
            .unwrap()
            > 0,
        "bodies redacted by default: {view}"
    );
    let (_, with_bodies) = call(
        Method::GET,
        format!("{}/replication/records?bodies=true&limit=1", gw.admin_url),
        None,
    )
    .await;
    assert!(
        with_bodies["records"][0]["op"]["source"]
            .as_str()
            .unwrap()
            .contains("doc-body")
    );
    let (bad, _) = call(
        Method::GET,
        format!("{}/replication/records?limit=0", gw.admin_url),
        None,
    )
    .await;
    assert_eq!(bad, 400);

    // Nothing under the queue directory holds the credentials.
    let encoded = auth.trim_start_matches("Basic ").to_string();
    for entry in std::fs::read_dir(dir.path().join("queue")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("hunter2") && !text.contains(&encoded),
            "credentials recorded"
        );
    }
}
