//! Applications keep their official client when a gateway is put in front
//! of their cluster: the Python client matching the primary's major, with
//! sniffing off, writes through the gateway with its bulk helpers
//! (`bulk`, `streaming_bulk`, `parallel_bulk`) and single-document calls,
//! reads everything back with `helpers.scan` (`integration/pyclients/drive.py`
//! checks each answer), and the backup of a replication task run by a real
//! control plane ends up with exactly the primary's documents, sources and
//! versions (an independent full scan of both clusters).
//!
//! The clients come from `scripts/pyclients.sh` (cached venvs, pinned in
//! `integration/pyclients/*.txt`, installed on first use):
//!
//! - elasticsearch-py 7.x against Elasticsearch 7.17, backup OpenSearch 2;
//! - elasticsearch-py 8.x against Elasticsearch 8.19 (compatible-with=8
//!   media types, `X-Elastic-Product` checked on every answer), backup
//!   OpenSearch 3;
//! - opensearch-py 2.x against OpenSearch 2, backup OpenSearch 3.

use tandem_integration::client::call;
use tandem_integration::compare::assert_index_equal;
use tandem_integration::pyclients::PythonClient;
use tandem_integration::workflow::PausedTask;
use tandem_integration::{env, unique_index};

const TOKEN: &str = "python-clients-test-token";

/// `client` writes through a gateway in front of `primary` (a flavor) while
/// a running task replays to `backup`; the backup converges.
async fn client_writes_reach_the_backup(client: PythonClient, primary: &str, backup: &str) {
    let env = env();
    let (primary_url, backup_url) = (&env.cluster(primary).url, &env.cluster(backup).url);
    let name = format!("pyclients_{}_{primary}_{backup}", client.name());
    let mut task = PausedTask::start(&name, TOKEN, primary_url, backup_url).await;
    // Started before the client writes: its writes replay while it writes.
    task.start_replay().await;

    let index = unique_index(&format!("{}-{primary}", client.name()));
    let summary = client.drive(&task.gateway.url, &index).await;
    eprintln!("{} via the gateway: {summary}", client.name());
    assert_eq!(
        summary["server"]["number"],
        env.cluster(primary).version,
        "the client reached the primary through the gateway: {summary}"
    );
    let documents = summary["documents"]
        .as_u64()
        .unwrap_or_else(|| panic!("no document count in {summary}"));

    task.wait_replayed("drained after the client's writes")
        .await;
    let equal = assert_index_equal(primary_url, backup_url, &index).await;
    assert_eq!(equal as u64, documents, "{summary}");

    task.finish().await;
    for url in [primary_url, backup_url] {
        call(reqwest::Method::DELETE, format!("{url}/{index}"), None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn elasticsearch7_client_through_an_es7_gateway_replicates_to_os2() {
    client_writes_reach_the_backup(PythonClient::Elasticsearch7, "es7", "os2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn elasticsearch8_client_through_an_es8_gateway_replicates_to_os3() {
    client_writes_reach_the_backup(PythonClient::Elasticsearch8, "es8", "os3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opensearch_client_through_an_os2_gateway_replicates_to_os3() {
    client_writes_reach_the_backup(PythonClient::OpenSearch2, "os2", "os3").await;
}
