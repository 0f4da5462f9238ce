//! The replay logic against in-memory clusters ([`MemoryCluster`]): a real
//! queue, dead-letter store and replayer, with the clusters replaced so
//! ordering, retries, conflicts and refusals can be planted exactly.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use tandem_es::ops::ReplicationOp;

use super::memory::{ItemFault, MemoryCluster};
use super::{REPLAYER, Replication};
use crate::config::ReplayConfig;
use crate::metrics::Metrics;
use crate::queue::QueueConfig;
use crate::roles::Roles;

struct Rig {
    primary: Arc<MemoryCluster>,
    backup: Arc<MemoryCluster>,
    replication: Arc<Replication<MemoryCluster>>,
    replayer: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.replayer.abort();
    }
}

fn rig(start_paused: bool) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let primary = Arc::new(MemoryCluster::new("primary"));
    let backup = Arc::new(MemoryCluster::new("backup"));
    let roles = Arc::new(Roles::new(primary.clone(), Some(backup.clone())));
    let config = ReplayConfig {
        start_paused,
        retry_initial_ms: 5,
        retry_max_ms: 20,
        reconcile_delay_ms: 10,
        verify_docs_per_second: 0,
        ..ReplayConfig::default()
    };
    let replication = Replication::open(
        dir.path().to_path_buf(),
        QueueConfig::default(),
        config,
        roles,
        Arc::new(Metrics::new()),
    )
    .unwrap();
    let replayer = tokio::spawn(replication.clone().run());
    Rig {
        primary,
        backup,
        replication,
        replayer,
        _dir: dir,
    }
}

impl Rig {
    /// Waits until every recorded op was applied or dead-lettered.
    async fn drained(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.replication.lag_records() > 0 || self.replication.pending_reconciles() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "replay did not drain: lag {}, last error {:?}",
                self.replication.lag_records(),
                self.replication.status().last_error
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Writes a document to the primary and records it, as the write path
    /// does after the primary accepted it.
    async fn index(&self, index: &str, id: &str, version: i64, source: &str) {
        self.primary.put(index, id, version, source);
        self.replication
            .record(&[index_op(index, id, version, source)])
            .await
            .unwrap();
    }
}

fn index_op(index: &str, id: &str, version: i64, source: &str) -> ReplicationOp {
    ReplicationOp::Index {
        index: index.into(),
        doc_type: None,
        id: id.into(),
        routing: None,
        version,
        seq_no: None,
        primary_term: None,
        source: Bytes::copy_from_slice(source.as_bytes()),
    }
}

fn delete_op(index: &str, id: &str, version: i64) -> ReplicationOp {
    ReplicationOp::Delete {
        index: index.into(),
        doc_type: None,
        id: id.into(),
        routing: None,
        version,
    }
}

fn read_repair_op(index: &str, id: &str) -> ReplicationOp {
    ReplicationOp::ReadRepair {
        index: index.into(),
        doc_type: None,
        id: id.into(),
        routing: None,
        version: 1,
    }
}

fn meta_op(method: Method, path: &str, body: &str) -> ReplicationOp {
    ReplicationOp::IndexMeta {
        method,
        path: path.into(),
        body: Bytes::copy_from_slice(body.as_bytes()),
    }
}

#[tokio::test]
async fn ops_arriving_out_of_order_end_at_the_primarys_latest_state() {
    let rig = rig(true);
    // Several gateways recorded writes of one document; the queue holds
    // them out of order. The primary ended at version 3, then deleted
    // another document at version 2.
    rig.primary.put("books", "1", 3, r#"{"v":3}"#);
    rig.primary.delete("books", "2", 2);
    rig.replication
        .record(&[
            index_op("books", "1", 3, r#"{"v":3}"#),
            index_op("books", "1", 1, r#"{"v":1}"#),
            index_op("books", "2", 1, r#"{"v":1}"#),
            delete_op("books", "2", 2),
            index_op("books", "1", 2, r#"{"v":2}"#),
        ])
        .await
        .unwrap();
    rig.replication.resume();
    rig.drained().await;

    assert_eq!(rig.backup.live(), rig.primary.live());
    assert_eq!(rig.backup.doc("books", "1").unwrap().version, 3);
    assert_eq!(rig.backup.doc("books", "2").unwrap().source, None);
    // The stale writes of "1" were conflicts the primary proved older.
    assert_eq!(rig.replication.status().conflicts_older, 2);
    assert_eq!(rig.replication.dead_letters.len(), 0);
}

#[tokio::test]
async fn a_backup_that_is_down_makes_the_queue_wait_not_lose() {
    let rig = rig(false);
    rig.backup.set_down(true);
    for i in 0..20 {
        rig.index("logs", &i.to_string(), 1, &format!(r#"{{"n":{i}}}"#))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rig.replication.lag_records() > 0, "nothing can be replayed");
    let error = rig.replication.status().last_error.unwrap();
    assert!(error.contains("backup"), "{error}");

    rig.backup.set_down(false);
    rig.drained().await;
    assert_eq!(rig.backup.live(), rig.primary.live());
    assert_eq!(rig.backup.live().len(), 20);
    assert_eq!(rig.replication.status().last_error, None);
}

#[tokio::test]
async fn a_whole_bulk_refused_with_503_is_sent_again() {
    let rig = rig(true);
    for i in 0..5 {
        rig.index("logs", &i.to_string(), 1, "{}").await;
    }
    rig.backup.fail_requests("/_bulk", 3, 503);
    rig.replication.resume();
    rig.drained().await;
    assert_eq!(rig.backup.live(), rig.primary.live());
    let sent = rig
        .backup
        .log()
        .iter()
        .filter(|l| l.starts_with("POST /_bulk"))
        .count();
    assert_eq!(sent, 4, "three 503s, then the bulk that landed");
    assert_eq!(rig.replication.dead_letters.len(), 0);
}

#[tokio::test]
async fn throttled_items_are_retried_alone() {
    let rig = rig(true);
    for i in 0..10 {
        rig.index("logs", &i.to_string(), 1, "{}").await;
    }
    rig.backup.fail_items(
        "7",
        ItemFault {
            status: 429,
            error_type: "es_rejected_execution_exception",
            times: Some(2),
        },
    );
    rig.replication.resume();
    rig.drained().await;

    assert_eq!(rig.backup.live(), rig.primary.live());
    let bulks = rig.backup.bulks();
    assert_eq!(bulks.len(), 3, "{bulks:?}");
    // The retries carry only the throttled document.
    for retry in &bulks[1..] {
        assert_eq!(retry.lines().count(), 2, "{retry}");
        assert!(retry.contains(r#""_id":"7""#), "{retry}");
    }
    assert_eq!(rig.replication.dead_letters.len(), 0);
}

#[tokio::test]
async fn an_item_the_backup_refuses_for_good_is_dead_lettered_and_replay_goes_on() {
    let rig = rig(true);
    for i in 0..4 {
        rig.index("logs", &i.to_string(), 1, "{}").await;
    }
    rig.backup.fail_items(
        "2",
        ItemFault {
            status: 400,
            error_type: "mapper_parsing_exception",
            times: None,
        },
    );
    rig.replication.resume();
    rig.drained().await;

    let letters = rig.replication.dead_letters.list();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].doc_id.as_deref(), Some("2"));
    assert_eq!(letters[0].status, 400);
    assert!(letters[0].reason.contains("mapper_parsing_exception"));
    let mut expected = rig.primary.live();
    expected.remove(&("logs".to_owned(), "2".to_owned()));
    assert_eq!(rig.backup.live(), expected);

    // Once the backup accepts it, an operator's retry lands it.
    rig.backup.fail_items(
        "2",
        ItemFault {
            status: 400,
            error_type: "mapper_parsing_exception",
            times: Some(0),
        },
    );
    let report = rig.replication.retry_dead_letters(None).await.unwrap();
    assert_eq!(report.applied, 1, "{report:?}");
    assert_eq!(rig.replication.dead_letters.len(), 0);
    assert_eq!(rig.backup.live(), rig.primary.live());
}

#[tokio::test]
async fn read_repair_writes_what_the_primary_holds_at_replay_time() {
    let rig = rig(true);
    // A scripted update: the record names the document only.
    rig.primary.put("users", "a", 7, r#"{"visits":7}"#);
    rig.primary.put("users", "b", 2, r#"{"visits":1}"#);
    rig.primary.delete("users", "b", 3);
    rig.replication
        .record(&[read_repair_op("users", "a"), read_repair_op("users", "b")])
        .await
        .unwrap();
    rig.backup.put("users", "b", 2, r#"{"visits":1}"#);
    rig.replication.resume();
    rig.drained().await;

    assert_eq!(rig.backup.live(), rig.primary.live());
    assert_eq!(rig.backup.doc("users", "a").unwrap().version, 7);
    assert_eq!(rig.backup.doc("users", "b").unwrap().source, None);
}

#[tokio::test]
async fn a_conflict_the_primary_does_not_prove_older_is_reconciled() {
    let rig = rig(true);
    // The backup holds version 9 of a document the primary re-created
    // at version 1 (its tombstone was pruned): a replayed version 1 is
    // refused, but the primary's state must still win.
    rig.backup.put("books", "x", 9, r#"{"old":true}"#);
    rig.index("books", "x", 1, r#"{"new":true}"#).await;
    rig.replication.resume();
    rig.drained().await;

    let doc = rig.backup.doc("books", "x").unwrap();
    assert_eq!(doc.source.as_deref(), Some(r#"{"new":true}"#));
    assert!(doc.version > 9, "written above the backup's version");
    assert_eq!(rig.replication.status().repaired_documents, 1);
    assert_eq!(rig.replication.status().conflicts_older, 0);
}

#[tokio::test]
async fn a_metadata_write_is_a_barrier_between_document_batches() {
    let rig = rig(true);
    rig.index("old", "1", 1, "{}").await;
    rig.replication
        .record(&[meta_op(Method::PUT, "/fresh", "{}")])
        .await
        .unwrap();
    rig.index("fresh", "1", 1, "{}").await;
    rig.replication.resume();
    rig.drained().await;

    let writes: Vec<String> = rig
        .backup
        .log()
        .into_iter()
        .filter(|l| l.starts_with("POST /_bulk") || l == "PUT /fresh")
        .collect();
    assert_eq!(writes.len(), 3, "{writes:?}");
    assert!(writes[0].starts_with("POST /_bulk"));
    assert_eq!(writes[1], "PUT /fresh");
    assert!(writes[2].starts_with("POST /_bulk"));
    assert!(rig.backup.has_index("fresh"));
    assert_eq!(rig.backup.live(), rig.primary.live());
}

#[tokio::test]
async fn an_index_created_twice_counts_as_applied() {
    let rig = rig(true);
    // The full copy created the index before the recorded create replays.
    rig.backup.put("made", "seed", 1, "{}");
    rig.replication
        .record(&[meta_op(Method::PUT, "/made", "{}")])
        .await
        .unwrap();
    rig.replication.resume();
    rig.drained().await;
    assert_eq!(rig.replication.dead_letters.len(), 0);
    assert_eq!(rig.replication.status().applied_ops, 1);
}

#[tokio::test]
async fn pausing_stops_replay_and_resuming_finishes_it() {
    let rig = rig(true);
    for i in 0..3 {
        rig.index("logs", &i.to_string(), 1, "{}").await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rig.replication.lag_records(), 3);
    assert!(rig.backup.bulks().is_empty(), "paused replays nothing");

    rig.replication.resume();
    rig.drained().await;
    rig.replication.pause();
    rig.index("logs", "late", 1, "{}").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rig.replication.lag_records(), 1);
    assert_eq!(rig.backup.doc("logs", "late"), None);

    rig.replication.resume();
    rig.drained().await;
    assert_eq!(rig.backup.live(), rig.primary.live());
}

#[tokio::test]
async fn an_undecodable_record_is_kept_as_a_dead_letter() {
    let rig = rig(true);
    rig.index("logs", "1", 1, "{}").await;
    rig.replication
        .queue
        .append_accepted(vec![Bytes::from_static(b"\xffnot an op")])
        .await
        .unwrap();
    rig.index("logs", "2", 1, "{}").await;
    rig.replication.resume();
    rig.drained().await;

    let letters = rig.replication.dead_letters.list();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].queue_offset, 1);
    assert_eq!(rig.backup.live(), rig.primary.live());
}

#[tokio::test]
async fn a_by_query_write_makes_the_backup_hold_the_primarys_state_of_its_matches() {
    let rig = rig(true);
    // Replayed before the by-query op: three documents.
    for id in ["a", "b", "c"] {
        rig.index("jobs", id, 1, r#"{"state":"new"}"#).await;
    }
    // The primary ran `_update_by_query` (a → v2) and a delete (c gone).
    rig.primary.put("jobs", "a", 2, r#"{"state":"done"}"#);
    rig.primary.delete("jobs", "c", 2);
    rig.replication
        .record(&[ReplicationOp::QueryScoped {
            method: Method::POST,
            path: "/jobs/_update_by_query?conflicts=proceed".into(),
            body: Bytes::from_static(br#"{"query":{"match_all":{}}}"#),
        }])
        .await
        .unwrap();
    rig.replication.resume();
    rig.drained().await;

    assert_eq!(rig.backup.live(), rig.primary.live());
    assert_eq!(
        rig.backup.doc("jobs", "a").unwrap().source.as_deref(),
        Some(r#"{"state":"done"}"#)
    );
    // No script ran on the backup: only searches and versioned bulks.
    assert!(
        !rig.backup
            .log()
            .iter()
            .any(|l| l.contains("_update_by_query")),
        "{:?}",
        rig.backup.log()
    );
    assert!(
        rig.backup
            .log()
            .iter()
            .any(|l| l.starts_with("DELETE /_search/scroll")),
        "the scroll is freed"
    );
}

#[tokio::test]
async fn acknowledgements_survive_a_restart_without_replaying_twice() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Arc::new(MemoryCluster::new("primary"));
    let backup = Arc::new(MemoryCluster::new("backup"));
    let open = || {
        Replication::open(
            dir.path().to_path_buf(),
            QueueConfig::default(),
            ReplayConfig {
                retry_initial_ms: 5,
                retry_max_ms: 20,
                verify_docs_per_second: 0,
                ..ReplayConfig::default()
            },
            Arc::new(Roles::new(primary.clone(), Some(backup.clone()))),
            Arc::new(Metrics::new()),
        )
        .unwrap()
    };
    let replication = open();
    let replayer = tokio::spawn(replication.clone().run());
    primary.put("logs", "1", 1, "{}");
    replication
        .record(&[index_op("logs", "1", 1, "{}")])
        .await
        .unwrap();
    while replication.lag_records() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    replayer.abort();
    let _ = replayer.await;
    drop(replication);

    let before = backup.bulks().len();
    let replication = open();
    let stats = replication.queue.stats();
    let consumer = stats.consumers.iter().find(|c| c.name == REPLAYER).unwrap();
    assert_eq!(consumer.lag_records, 0);
    let replayer = tokio::spawn(replication.clone().run());
    tokio::time::sleep(Duration::from_millis(100)).await;
    replayer.abort();
    assert_eq!(backup.bulks().len(), before, "nothing replayed twice");
}
