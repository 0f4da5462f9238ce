//! Replication between major versions whose APIs differ: Elasticsearch 6
//! (mapping types, typed URLs and `_type` in bulk lines) and a typeless
//! backup (OpenSearch 2), in both directions.

use std::time::Duration;

use serde_json::json;
use tandem_integration::client::{bulk, call};
use tandem_integration::compare::assert_index_equal;
use tandem_integration::gateway::{GatewayOptions, TestGateway, drain};
use tandem_integration::{SearchCluster, env, unique_index};

const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

fn cluster_with_major(major: u32) -> &'static SearchCluster {
    env()
        .clusters
        .iter()
        .find(|c| c.major() == major)
        .unwrap_or_else(|| panic!("the test environment needs a {major}.x cluster"))
}

fn typeless() -> &'static SearchCluster {
    env()
        .clusters
        .iter()
        .find(|c| c.distribution == "opensearch")
        .expect("an OpenSearch cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_writes_on_elasticsearch_6_replay_to_a_typeless_backup() {
    use reqwest::Method;
    let (primary, backup) = (cluster_with_major(6), typeless());
    let dir = tempfile::tempdir().unwrap();
    let mut options = GatewayOptions::replicating(&primary.url, &backup.url, dir.path());
    options.paused = true;
    let gw = TestGateway::start_with(options).await;
    let index = unique_index("typed");
    let g = &gw.url;

    // 6.x typed mapping: the backup must receive it without the type level.
    let (status, body) = call(
        Method::PUT,
        format!("{g}/{index}"),
        Some(json!({
            "settings": { "number_of_shards": 1, "number_of_replicas": 0 },
            "mappings": { "item": { "properties": { "name": { "type": "keyword" }, "n": { "type": "long" } } } }
        })),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Typed bulk lines and a typed bulk URL.
    let mut lines = Vec::new();
    for i in 0..20 {
        lines.push(json!({ "index": { "_index": index, "_type": "item", "_id": i.to_string() } }));
        lines.push(json!({ "name": format!("n{i}"), "n": i }));
    }
    let (_, result) = bulk(format!("{g}/_bulk"), &lines).await;
    assert_eq!(result["errors"], false, "{result}");
    let (_, result) = bulk(
        format!("{g}/{index}/item/_bulk"),
        &[
            json!({ "index": { "_id": "20" } }),
            json!({ "name": "typed-url", "n": 20 }),
            json!({ "delete": { "_id": "0" } }),
            json!({ "update": { "_id": "1" } }),
            json!({ "doc": { "n": 100 } }),
        ],
    )
    .await;
    assert_eq!(result["errors"], false, "{result}");

    // Typed single-document endpoints.
    let (status, _) = call(
        Method::PUT,
        format!("{g}/{index}/item/30"),
        Some(json!({ "name": "put", "n": 30 })),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = call(
        Method::POST,
        format!("{g}/{index}/item/30/_update"),
        Some(json!({ "doc": { "n": 31 } })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        Method::POST,
        format!("{g}/{index}/item/2/_update"),
        Some(json!({ "script": { "source": "ctx._source.n += 1000", "lang": "painless" } })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(Method::DELETE, format!("{g}/{index}/item/3"), None).await;
    assert_eq!(status, 200);
    let (status, _) = call(
        Method::POST,
        format!("{g}/{index}/item"),
        Some(json!({ "name": "auto", "n": 0 })),
    )
    .await;
    assert_eq!(status, 201);

    let status = drain(&gw.admin_url, DRAIN_TIMEOUT).await;
    assert_eq!(status["dead_letters"], 0, "{status}");
    // 0..=20, minus 0 and 3, plus 30 and one auto id.
    assert_eq!(
        assert_index_equal(&primary.url, &backup.url, &index).await,
        21
    );
    let (_, mapping) = call(
        Method::GET,
        format!("{}/{index}/_mapping", backup.url),
        None,
    )
    .await;
    assert_eq!(
        mapping[&index]["mappings"]["properties"]["name"]["type"], "keyword",
        "type level removed for the typeless backup: {mapping}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typeless_writes_replay_to_an_elasticsearch_6_backup() {
    use reqwest::Method;
    let (primary, backup) = (typeless(), cluster_with_major(6));
    let dir = tempfile::tempdir().unwrap();
    let mut options = GatewayOptions::replicating(&primary.url, &backup.url, dir.path());
    options.paused = true;
    let gw = TestGateway::start_with(options).await;
    let index = unique_index("typeless");
    let g = &gw.url;
    let (status, body) = call(
        Method::PUT,
        format!("{g}/{index}"),
        Some(json!({
            "settings": { "number_of_shards": 1, "number_of_replicas": 0 },
            "mappings": { "properties": { "name": { "type": "keyword" } } }
        })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut lines = Vec::new();
    for i in 0..10 {
        lines.push(json!({ "index": { "_index": index, "_id": i.to_string() } }));
        lines.push(json!({ "name": format!("n{i}") }));
    }
    lines.push(json!({ "delete": { "_index": index, "_id": "9" } }));
    let (_, result) = bulk(format!("{g}/_bulk"), &lines).await;
    assert_eq!(result["errors"], false, "{result}");
    let (status, _) = call(
        Method::POST,
        format!("{g}/{index}/_update/1"),
        Some(json!({ "doc": { "name": "updated" } })),
    )
    .await;
    assert_eq!(status, 200);

    let status = drain(&gw.admin_url, DRAIN_TIMEOUT).await;
    assert_eq!(status["dead_letters"], 0, "{status}");
    assert_eq!(
        assert_index_equal(&primary.url, &backup.url, &index).await,
        9
    );
}
