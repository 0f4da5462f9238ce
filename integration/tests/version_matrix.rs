//! The operator's whole workflow for pairs of versions, on real clusters, a
//! real gateway and a control plane on real Postgres:
//!
//! 1. register both clusters; documents already on the source;
//! 2. a task created paused on a gateway; writes through the gateway
//!    (creates, updates of copied documents, deletes) are recorded only;
//! 3. a full copy (migration job tied to the task);
//! 4. start: the recorded writes replay, lag falls to 0;
//! 5. a comparison job says MATCH;
//! 6. cutover: writes go to the new cluster first and replay to the old;
//! 7. rollback: the old cluster is primary again;
//!
//! and after each of 4, 6 and 7 both clusters hold exactly the same
//! documents (an independent full scan).
//!
//! CI runs the pairs named by the tests below: every major of es6, es7,
//! es8, os1, os2, os3 takes part, and the cutover and rollback of each
//! pair replay in both directions; `scripts/matrix.sh` runs
//! every pair of the flavors it starts through
//! `version_matrix_pairs_from_the_environment` (`TANDEM_MATRIX_PAIRS`,
//! e.g. `es6:os2,os2:es6`).

use tandem_integration::client::call;
use tandem_integration::compare::assert_index_equal;
use tandem_integration::controlplane::ControlPlaneApi;
use tandem_integration::workflow::{
    PausedTask, by_name, delete, run_comparison, run_migration, write,
};
use tandem_integration::{env, unique_index};
use tandem_proto::v1 as pb;

const TOKEN: &str = "matrix-test-token";

fn only(index: &str) -> Option<pb::IndexFilter> {
    Some(pb::IndexFilter {
        include: vec![index.to_string()],
        ..Default::default()
    })
}

/// The type segment of document URLs on `flavor`'s major: Elasticsearch
/// 5.x refuses names starting with `_`, so clients use `doc` there.
fn doc_type(flavor: &str) -> &'static str {
    let cluster = env().cluster(flavor);
    if cluster.distribution == "elasticsearch" && cluster.major() == 5 {
        "doc"
    } else {
        "_doc"
    }
}

/// The whole workflow from `source` to `target` (flavor names).
async fn seed_workflow(source: &str, target: &str) {
    let env = env();
    let (old_url, new_url) = (
        env.cluster(source).url.clone(),
        env.cluster(target).url.clone(),
    );
    // What the source held before the gateway was put in front of it.
    let index = unique_index(&format!("matrix-{source}-{target}"));
    let (old_doc, new_doc) = (doc_type(source), doc_type(target));
    write(&old_url, old_doc, &index, 0..40, "existing").await;

    let mut task = PausedTask::start(
        &format!("matrix_{source}_{target}"),
        TOKEN,
        &old_url,
        &new_url,
    )
    .await;
    let gateway = task.gateway.url.clone();

    // Recorded while paused: creates, updates of documents the copy will
    // also carry, deletes.
    write(&gateway, old_doc, &index, 30..60, "recorded").await;
    for i in [3, 31] {
        delete(&gateway, old_doc, &index, i).await;
    }

    let mut migrations = task.cp.migrations().await;
    let copy = run_migration(
        &mut migrations,
        pb::CreateMigrationJobRequest {
            source: by_name("old"),
            target: by_name("new"),
            indices: only(&index),
            task_id: task.id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        pb::JobState::try_from(copy.state).unwrap_or_default(),
        pb::JobState::Succeeded,
        "copy {source} -> {target}: {:?}",
        copy.error
    );

    task.start_replay().await;
    assert_eq!(assert_index_equal(&old_url, &new_url, &index).await, 58);

    let mut compare = task.cp.compare().await;
    let comparison = run_comparison(
        &mut compare,
        pb::CreateCompareJobRequest {
            source: by_name("old"),
            target: by_name("new"),
            indices: only(&index),
            ..Default::default()
        },
    )
    .await;
    let summary = comparison.summary.unwrap_or_default();
    assert_eq!(
        summary.outcome,
        pb::CompareOutcome::Match as i32,
        "comparison {source} -> {target}: {summary:?} {:?}",
        comparison.error
    );

    task.cutover().await;
    write(&gateway, new_doc, &index, 50..70, "reversed").await;
    delete(&gateway, new_doc, &index, 4).await;
    task.wait_replayed("drained after cutover").await;
    assert_eq!(assert_index_equal(&new_url, &old_url, &index).await, 67);

    task.rollback().await;
    write(&gateway, old_doc, &index, 65..75, "rolled back").await;
    task.wait_replayed("drained after rollback").await;
    assert_eq!(assert_index_equal(&old_url, &new_url, &index).await, 72);

    task.finish().await;
    for url in [&old_url, &new_url] {
        call(reqwest::Method::DELETE, format!("{url}/{index}"), None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn es7_to_es8() {
    seed_workflow("es7", "es8").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn es6_to_es8() {
    seed_workflow("es6", "es8").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn es8_to_os2() {
    seed_workflow("es8", "os2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn os2_to_os3() {
    seed_workflow("os2", "os3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn es7_to_os3() {
    seed_workflow("es7", "os3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn os1_to_os2() {
    seed_workflow("os1", "os2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn es6_to_os2() {
    seed_workflow("es6", "os2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn os2_to_es6() {
    seed_workflow("os2", "es6").await;
}

/// Every pair of `TANDEM_MATRIX_PAIRS` (`source:target,...`), one after the
/// other; `scripts/matrix.sh` sets it. Without it, nothing is asked of this
/// test.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn version_matrix_pairs_from_the_environment() {
    let Ok(pairs) = std::env::var("TANDEM_MATRIX_PAIRS") else {
        return;
    };
    let mut failed = Vec::new();
    for pair in pairs.split(',').filter(|p| !p.trim().is_empty()) {
        let (source, target) = pair
            .trim()
            .split_once(':')
            .unwrap_or_else(|| panic!("TANDEM_MATRIX_PAIRS: {pair:?} is not source:target"));
        let (source, target) = (source.to_owned(), target.to_owned());
        let started = std::time::Instant::now();
        // Each pair in its own task, so one failure does not hide the rest.
        let run = tokio::spawn({
            let (source, target) = (source.clone(), target.clone());
            async move { seed_workflow(&source, &target).await }
        });
        let verdict = if run.await.is_ok() {
            "passed"
        } else {
            failed.push(format!("{source}:{target}"));
            "FAILED"
        };
        eprintln!(
            "matrix {source} -> {target}: {verdict} in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    assert!(failed.is_empty(), "failed pairs: {}", failed.join(","));
}
