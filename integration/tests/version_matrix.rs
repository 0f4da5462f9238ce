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

use std::time::SystemTime;

use tandem_integration::client::call;
use tandem_integration::compare::assert_index_equal;
use tandem_integration::controlplane::{
    ControlPlaneApi, InProcessControlPlane, create_task_once_registered,
};
use tandem_integration::gateway::{GatewayOptions, TestGateway};
use tandem_integration::workflow::{
    delete, drained_since, run_comparison, run_migration, task_direction, task_state, wait_task,
    write,
};
use tandem_integration::{env, fresh_database, unique_index};
use tandem_proto::v1 as pb;

const TOKEN: &str = "matrix-test-token";

fn by_name(name: &str) -> Option<pb::ClusterRef> {
    Some(pb::ClusterRef {
        cluster_name: name.to_string(),
        ..Default::default()
    })
}

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
    let database = fresh_database(&format!("matrix_{source}_{target}")).await;
    let cp = InProcessControlPlane::start(InProcessControlPlane::config(&database, TOKEN)).await;
    let mut clusters = cp.clusters().await;
    for (name, url) in [("old", &old_url), ("new", &new_url)] {
        clusters
            .register_cluster(pb::RegisterClusterRequest {
                name: name.to_string(),
                endpoints: vec![url.clone()],
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("register {name} ({url}): {e:?}"));
    }

    // What the source held before the gateway was put in front of it.
    let index = unique_index(&format!("matrix-{source}-{target}"));
    let (old_doc, new_doc) = (doc_type(source), doc_type(target));
    write(&old_url, old_doc, &index, 0..40, "existing").await;

    let data = tempfile::tempdir().unwrap();
    let gw = format!("gw-matrix-{source}-{target}");
    let mut options = GatewayOptions::replicating(&old_url, &new_url, data.path());
    options.paused = true;
    options.extra_toml = cp.agent_section(&gw);
    let gateway = TestGateway::start_with(options).await;
    let mut tasks = cp.tasks().await;
    let task = create_task_once_registered(
        &mut tasks,
        pb::CreateTaskRequest {
            name: format!("matrix-{source}-{target}"),
            primary: by_name("old"),
            backup: by_name("new"),
            gateway_ids: vec![gw.clone()],
            start_paused: true,
            ..Default::default()
        },
    )
    .await;
    let id = task.id.clone();
    wait_task(&mut tasks, &id, "in sync", |t| {
        !t.gateways.is_empty() && t.gateways.iter().all(|g| g.in_sync)
    })
    .await;

    // Recorded while paused: creates, updates of documents the copy will
    // also carry, deletes.
    write(&gateway.url, old_doc, &index, 30..60, "recorded").await;
    for i in [3, 31] {
        delete(&gateway.url, old_doc, &index, i).await;
    }

    let mut migrations = cp.migrations().await;
    let copy = run_migration(
        &mut migrations,
        pb::CreateMigrationJobRequest {
            source: by_name("old"),
            target: by_name("new"),
            indices: only(&index),
            task_id: id.clone(),
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

    tasks
        .start_task(pb::StartTaskRequest {
            task_id: id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("start: {e:?}"));
    let since = SystemTime::now();
    wait_task(&mut tasks, &id, "drained", drained_since(since)).await;
    assert_eq!(assert_index_equal(&old_url, &new_url, &index).await, 58);

    let mut compare = cp.compare().await;
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

    let hold = Some(pb_duration(10));
    let max_lag = Some(pb_duration(60));
    tasks
        .cutover(pb::CutoverRequest {
            task_id: id.clone(),
            max_lag,
            hold_timeout: hold,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("cutover: {e:?}"));
    let task = wait_task(&mut tasks, &id, "cut over", |t| {
        task_state(t) == pb::TaskState::Running
            && task_direction(t) == pb::ReplicationDirection::Reversed
    })
    .await;
    assert_eq!(task.primary.as_ref().unwrap().cluster_name, "new");
    write(&gateway.url, new_doc, &index, 50..70, "reversed").await;
    delete(&gateway.url, new_doc, &index, 4).await;
    let since = SystemTime::now();
    wait_task(
        &mut tasks,
        &id,
        "drained after cutover",
        drained_since(since),
    )
    .await;
    assert_eq!(assert_index_equal(&new_url, &old_url, &index).await, 67);

    tasks
        .rollback(pb::RollbackRequest {
            task_id: id.clone(),
            max_lag,
            hold_timeout: hold,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("rollback: {e:?}"));
    let task = wait_task(&mut tasks, &id, "rolled back", |t| {
        task_state(t) == pb::TaskState::Running
            && task_direction(t) == pb::ReplicationDirection::Forward
    })
    .await;
    assert_eq!(task.primary.as_ref().unwrap().cluster_name, "old");
    write(&gateway.url, old_doc, &index, 65..75, "rolled back").await;
    let since = SystemTime::now();
    wait_task(
        &mut tasks,
        &id,
        "drained after rollback",
        drained_since(since),
    )
    .await;
    assert_eq!(assert_index_equal(&old_url, &new_url, &index).await, 72);

    tasks
        .stop_task(pb::StopTaskRequest {
            task_id: id,
            discard_unreplayed: false,
        })
        .await
        .unwrap_or_else(|e| panic!("stop: {e:?}"));
    gateway.stop();
    for url in [&old_url, &new_url] {
        call(reqwest::Method::DELETE, format!("{url}/{index}"), None).await;
    }
    cp.stop().await;
}

fn pb_duration(seconds: i64) -> tandem_client::prost_types::Duration {
    tandem_client::prost_types::Duration { seconds, nanos: 0 }
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
