//! The gateway forwards requests to a real primary cluster and answers with
//! the primary's response, on every cluster version of the test environment.

use serde_json::{Value, json};
use tandem_integration::gateway::TestGateway;
use tandem_integration::{env, free_port, http, unique_index};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_written_through_the_gateway_are_readable_on_every_version() {
    let env = env();
    assert!(
        env.clusters.len() >= 2,
        "the environment must have two clusters"
    );
    let majors: std::collections::BTreeSet<u32> = env.clusters.iter().map(|c| c.major()).collect();
    assert!(
        majors.len() >= 2,
        "clusters must span two major versions: {majors:?}"
    );

    for cluster in &env.clusters {
        let gateway = TestGateway::start(&cluster.url).await;
        let client = http();
        let index = unique_index("passthrough");

        let properties = json!({ "properties": { "name": { "type": "keyword" } } });
        // 5.x/6.x mappings are keyed by type.
        let mappings = if cluster.major() < 7 && cluster.distribution == "elasticsearch" {
            json!({ "_doc": properties })
        } else {
            properties
        };
        let created = client
            .put(format!("{}/{index}", gateway.url))
            .json(&json!({
                "settings": { "number_of_shards": 1, "number_of_replicas": 0 },
                "mappings": mappings
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 200, "{}: create index", cluster.flavor);

        let indexed: Value = client
            .put(format!("{}/{index}/_doc/1?refresh=true", gateway.url))
            .json(&json!({ "name": "espresso", "price": 249 }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            indexed["result"], "created",
            "{}: {indexed}",
            cluster.flavor
        );
        assert_eq!(indexed["_version"], 1);

        // Read through the gateway and directly: the same document.
        let via_gateway: Value = client
            .get(format!("{}/{index}/_doc/1", gateway.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let direct: Value = client
            .get(format!("{}/{index}/_doc/1", cluster.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            via_gateway["_source"],
            json!({ "name": "espresso", "price": 249 })
        );
        assert_eq!(via_gateway, direct, "{}", cluster.flavor);

        let search: Value = client
            .post(format!("{}/{index}/_search", gateway.url))
            .json(&json!({ "query": { "term": { "name": "espresso" } } }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            search["hits"]["hits"][0]["_id"], "1",
            "{}: {search}",
            cluster.flavor
        );

        // The primary's errors reach the client unchanged.
        let missing = client
            .get(format!("{}/{index}-does-not-exist/_doc/1", gateway.url))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        let body: Value = missing.json().await.unwrap();
        assert_eq!(body["error"]["type"], "index_not_found_exception");

        let root: Value = client
            .get(&gateway.url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(root["version"]["number"], cluster.version.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_down_gives_a_json_502() {
    // Nothing listens on this port.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gateway = TestGateway::start(&dead).await;

    let response = http()
        .put(format!("{}/orders/_doc/1", gateway.url))
        .json(&json!({ "total": 10 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], 502);
    assert_eq!(body["error"]["type"], "tandem_primary_unavailable");
    assert!(
        body["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("primary cluster"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoint_reports_health_and_rejects_unknown_paths() {
    let gateway = TestGateway::start(&env().clusters[0].url).await;
    let client = http();
    let health = client
        .get(format!("{}/health", gateway.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let unknown = client
        .get(format!("{}/nope", gateway.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("/nope"));
}
