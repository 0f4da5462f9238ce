//! CompareService against a control plane served in-process, real Postgres
//! and real clusters: identical es7 and os2 indices match, known
//! differences are listed with their ids and kinds (and only them), an es6
//! typed index matches its typeless os2 copy, bad requests name their
//! field, and a cancelled job ends CANCELLED.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tandem_client::AuthenticatedChannel;
use tandem_client::v1::compare_service_client::CompareServiceClient;
use tandem_integration::client::{bulk, call};
use tandem_integration::compare::assert_converged;
use tandem_integration::controlplane::{
    ControlPlaneApi, InProcessControlPlane, create_task_once_registered,
};
use tandem_integration::gateway::{GatewayOptions, TestGateway};
use tandem_integration::{env, fresh_database, http, unique_index};
use tandem_proto::v1 as pb;
use tonic::Code;

type Compare = CompareServiceClient<AuthenticatedChannel>;

const WAIT: Duration = Duration::from_secs(180);
const TOKEN: &str = "compare-test-token";
/// A well-formed id no job or task has.
const UNKNOWN_ID: &str = "6d1f2c1e-3b7a-4c55-9a8e-000000000001";

fn url(flavor: &str) -> String {
    env().cluster(flavor).url.clone()
}

/// A control plane on a fresh database with es7, os2 and es6 registered
/// under their flavor names.
async fn control_plane(prefix: &str) -> InProcessControlPlane {
    let database = fresh_database(prefix).await;
    let control_plane =
        InProcessControlPlane::start(InProcessControlPlane::config(&database, TOKEN)).await;
    let mut clusters = control_plane.clusters().await;
    for flavor in ["es7", "os2", "es6"] {
        clusters
            .register_cluster(pb::RegisterClusterRequest {
                name: flavor.to_string(),
                endpoints: vec![url(flavor)],
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("register {flavor}: {e:?}"));
    }
    control_plane
}

fn cluster(name: &str) -> Option<pb::ClusterRef> {
    Some(pb::ClusterRef {
        cluster_name: name.to_string(),
        ..Default::default()
    })
}

/// A FULL comparison of `index` with 8 partitions and a 1 s recheck.
fn request(source: &str, target: &str, index: &str) -> pb::CreateCompareJobRequest {
    pb::CreateCompareJobRequest {
        source: cluster(source),
        target: cluster(target),
        indices: Some(pb::IndexFilter {
            include: vec![index.to_string()],
            ..Default::default()
        }),
        options: Some(pb::CompareOptions {
            partitions_per_index: 8,
            batch_size: 500,
            recheck_delay: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn create(client: &mut Compare, request: pb::CreateCompareJobRequest) -> pb::CompareJob {
    client
        .create_compare_job(request)
        .await
        .unwrap_or_else(|e| panic!("create: {e:?}"))
        .into_inner()
        .job
        .unwrap()
}

async fn get(client: &mut Compare, id: &str) -> pb::CompareJob {
    client
        .get_compare_job(pb::GetCompareJobRequest {
            job_id: id.to_string(),
        })
        .await
        .unwrap_or_else(|e| panic!("get: {e:?}"))
        .into_inner()
        .job
        .unwrap()
}

fn state(job: &pb::CompareJob) -> pb::JobState {
    pb::JobState::try_from(job.state).unwrap()
}

fn summary(job: &pb::CompareJob) -> pb::CompareSummary {
    job.summary.unwrap_or_default()
}

/// Polls the job until it is terminal and returns it; panics after
/// [`WAIT`].
async fn finished(client: &mut Compare, id: &str) -> pb::CompareJob {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let job = get(client, id).await;
        if matches!(
            state(&job),
            pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled
        ) {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job is {:?} with {:?}, error {:?}",
            state(&job),
            job.progress,
            job.error
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every difference of job `id` (following the pages), as (doc id, kind).
async fn all_diffs(client: &mut Compare, id: &str, kinds: &[pb::DiffKind]) -> Vec<pb::CompareDiff> {
    let mut found = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_compare_diffs(pb::ListCompareDiffsRequest {
                job_id: id.to_string(),
                kinds: kinds.iter().map(|k| *k as i32).collect(),
                page_size: 2,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("diffs: {e:?}"))
            .into_inner();
        found.extend(page.diffs);
        if page.next_page_token.is_empty() {
            assert_eq!(page.total_size, found.len() as u64, "total_size");
            return found;
        }
        page_token = page.next_page_token;
    }
}

fn kinds(diffs: &[pb::CompareDiff]) -> Vec<(String, pb::DiffKind)> {
    diffs
        .iter()
        .map(|d| (d.doc_id.clone(), pb::DiffKind::try_from(d.kind).unwrap()))
        .collect()
}

/// A document: id, external version and `_source`.
type Doc = (String, i64, Value);

fn numbered(range: std::ops::Range<u32>) -> Vec<Doc> {
    range
        .map(|i| {
            (
                i.to_string(),
                i64::from(i % 7) + 1,
                json!({ "n": i, "body": format!("document {i}"), "tags": ["a", "b"] }),
            )
        })
        .collect()
}

/// Bulk-indexes `docs` into `index` with their external versions (typed
/// with `doc_type` for Elasticsearch 6).
async fn load(cluster: &str, index: &str, doc_type: Option<&str>, docs: &[Doc]) {
    for chunk in docs.chunks(500) {
        let mut lines = Vec::new();
        for (id, version, source) in chunk {
            let mut action = json!({
                "_index": index, "_id": id, "version": version, "version_type": "external",
            });
            if let Some(ty) = doc_type {
                action["_type"] = json!(ty);
            }
            lines.push(json!({ "index": action }));
            lines.push(source.clone());
        }
        let (status, body) = bulk(format!("{cluster}/_bulk?refresh=true"), &lines).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["errors"], json!(false), "{body}");
    }
}

async fn delete_index(cluster: &str, index: &str) {
    call(Method::DELETE, format!("{cluster}/{index}"), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_es7_and_os2_indices_match() {
    let control_plane = control_plane("cmp_same").await;
    let mut client = control_plane.compare().await;
    let index = unique_index("cmp-same");
    let docs = numbered(0..3000);
    load(&url("es7"), &index, None, &docs).await;
    // The same documents with their keys in another order.
    let reordered: Vec<Doc> = docs
        .iter()
        .map(|(id, v, s)| {
            let text = format!(
                r#"{{"tags":["a","b"],"body":{},"n":{}}}"#,
                s["body"], s["n"]
            );
            (id.clone(), *v, serde_json::from_str(&text).unwrap())
        })
        .collect();
    load(&url("os2"), &index, None, &reordered).await;

    let job = create(&mut client, request("es7", "os2", &index)).await;
    assert_eq!(job.source.as_ref().unwrap().cluster_name, "es7");
    let job = finished(&mut client, &job.id).await;
    assert_eq!(state(&job), pb::JobState::Succeeded, "{:?}", job.error);
    let summary = summary(&job);
    assert_eq!(
        summary.outcome,
        pb::CompareOutcome::Match as i32,
        "{summary:?}"
    );
    assert_eq!((summary.source_docs, summary.target_docs), (3000, 3000));
    assert_eq!(summary.indices_total, 1);
    assert_eq!(summary.indices_matching, 1);
    assert_eq!(summary.partitions_mismatched, 0);
    assert_eq!(summary.diffs_recorded, 0);
    assert_eq!(job.progress.unwrap().docs_done, 3000);
    let per_index = &job.index_summaries[0];
    assert_eq!(per_index.index, index);
    assert_eq!(per_index.outcome, pb::CompareOutcome::Match as i32);
    assert_eq!(per_index.partitions.unwrap().done, 8);
    assert!(all_diffs(&mut client, &job.id, &[]).await.is_empty());

    delete_index(&url("es7"), &index).await;
    delete_index(&url("os2"), &index).await;
    control_plane.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn known_differences_are_listed_with_their_kinds() {
    let control_plane = control_plane("cmp_diff").await;
    let mut client = control_plane.compare().await;
    let index = unique_index("cmp-diff");
    let docs = numbered(0..2000);
    load(&url("es7"), &index, None, &docs).await;
    let mut target: Vec<Doc> = docs
        .iter()
        .filter(|(id, _, _)| id != "10")
        .cloned()
        .collect();
    for (id, version, source) in &mut target {
        match id.as_str() {
            "20" => source["body"] = json!("changed on the target"),
            // Behind the source: a difference.
            "30" => *version = 1,
            // Ahead of the source with the same content: what replay
            // leaves after repairing a re-created document (ADR 006), not
            // a difference.
            "40" => *version += 5,
            _ => {}
        }
    }
    target.push((
        "extra-1".into(),
        1,
        json!({ "n": -1, "body": "only on the target" }),
    ));
    load(&url("os2"), &index, None, &target).await;

    let job = create(&mut client, request("es7", "os2", &index)).await;
    // Differences stream to a watcher as they are recorded.
    let mut watch = client
        .watch_compare_job(pb::WatchCompareJobRequest {
            job_id: job.id.clone(),
            include_diffs: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut watched = Vec::new();
    let mut last_state = pb::JobState::Unspecified;
    while let Some(message) = tokio::time::timeout(WAIT, watch.message())
        .await
        .expect("watch message in time")
        .unwrap()
    {
        match message.update.unwrap() {
            pb::watch_compare_job_response::Update::Diff(diff) => watched.push(diff.doc_id),
            pb::watch_compare_job_response::Update::Job(job) => last_state = state(&job),
            pb::watch_compare_job_response::Update::Event(_) => {}
        }
    }
    assert_eq!(
        last_state,
        pb::JobState::Succeeded,
        "the watch ends on the terminal snapshot"
    );
    watched.sort();
    assert_eq!(watched, ["10", "20", "30", "extra-1"]);

    let job = finished(&mut client, &job.id).await;
    assert_eq!(state(&job), pb::JobState::Succeeded, "{:?}", job.error);
    let s = summary(&job);
    assert_eq!(s.outcome, pb::CompareOutcome::Mismatch as i32, "{s:?}");
    assert_eq!(
        (
            s.missing_in_target,
            s.extra_in_target,
            s.content_differs,
            s.version_differs
        ),
        (1, 1, 1, 1)
    );
    assert_eq!((s.diffs_recorded, s.transient_diffs), (4, 0));
    assert!(!s.diffs_truncated);
    assert!(s.partitions_mismatched >= 1 && s.partitions_mismatched <= 4);
    let per_index = &job.index_summaries[0];
    assert_eq!(per_index.outcome, pb::CompareOutcome::Mismatch as i32);
    assert_eq!(
        per_index.mismatched_partitions.len() as u32,
        per_index.partitions_mismatched
    );

    let diffs = all_diffs(&mut client, &job.id, &[]).await;
    assert_eq!(
        kinds(&diffs),
        [
            ("10".to_string(), pb::DiffKind::MissingInTarget),
            ("20".to_string(), pb::DiffKind::ContentDiffers),
            ("30".to_string(), pb::DiffKind::VersionDiffers),
            ("extra-1".to_string(), pb::DiffKind::ExtraInTarget),
        ]
    );
    let missing = &diffs[0];
    assert_eq!(
        (missing.source_version, missing.target_version),
        (Some(4), None)
    );
    assert!(missing.target_hash.is_empty() && !missing.source_hash.is_empty());
    assert!(
        per_index
            .mismatched_partitions
            .iter()
            .any(|p| p.partition_id == missing.partition_id)
    );
    let version = &diffs[2];
    assert_eq!(version.source_hash, version.target_hash);
    assert_eq!(
        (version.source_version, version.target_version),
        (Some(3), Some(1))
    );
    assert_eq!(s.version_ahead, 1, "document 40, ahead on the target");
    // Both sides of each document, read now, when asked for.
    let page = client
        .list_compare_diffs(pb::ListCompareDiffsRequest {
            job_id: job.id.clone(),
            include_documents: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let document = |d: &Option<String>| -> Option<serde_json::Value> {
        d.as_deref()
            .map(|s| serde_json::from_str(s).expect("a JSON _source"))
    };
    let by_id = |id: &str| page.diffs.iter().find(|d| d.doc_id == id).unwrap();
    let changed = by_id("20");
    assert_eq!(
        document(&changed.target_document).unwrap()["body"],
        "changed on the target"
    );
    assert_ne!(
        document(&changed.source_document),
        document(&changed.target_document)
    );
    let missing = by_id("10");
    assert!(missing.source_document.is_some() && missing.target_document.is_none());
    let extra = by_id("extra-1");
    assert_eq!(
        (
            document(&extra.source_document),
            document(&extra.target_document)
        ),
        (None, Some(json!({ "n": -1, "body": "only on the target" })))
    );
    let only = all_diffs(
        &mut client,
        &job.id,
        &[pb::DiffKind::ContentDiffers, pb::DiffKind::ExtraInTarget],
    )
    .await;
    assert_eq!(
        kinds(&only),
        [
            ("20".to_string(), pb::DiffKind::ContentDiffers),
            ("extra-1".to_string(), pb::DiffKind::ExtraInTarget),
        ]
    );

    // Without versions, the version-only difference is not one.
    let mut no_versions = request("es7", "os2", &index);
    no_versions.options.as_mut().unwrap().ignore_versions = true;
    let job = create(&mut client, no_versions).await;
    let job = finished(&mut client, &job.id).await;
    assert_eq!(
        kinds(&all_diffs(&mut client, &job.id, &[]).await),
        [
            ("10".to_string(), pb::DiffKind::MissingInTarget),
            ("20".to_string(), pb::DiffKind::ContentDiffers),
            ("extra-1".to_string(), pb::DiffKind::ExtraInTarget),
        ]
    );

    // Counts alone cannot see it (one missing, one extra); digests can,
    // without listing documents.
    for (mode, outcome) in [
        (pb::CompareMode::CountOnly, pb::CompareOutcome::Match),
        (pb::CompareMode::Digest, pb::CompareOutcome::Mismatch),
    ] {
        let mut shallow = request("es7", "os2", &index);
        shallow.options.as_mut().unwrap().mode = mode as i32;
        let job = create(&mut client, shallow).await;
        let job = finished(&mut client, &job.id).await;
        let s = summary(&job);
        assert_eq!(s.outcome, outcome as i32, "{mode:?}: {s:?}");
        assert_eq!((s.source_docs, s.target_docs), (2000, 2000), "{mode:?}");
        assert_eq!(s.diffs_recorded, 0, "{mode:?}");
        assert_eq!(s.partitions_mismatched > 0, mode == pb::CompareMode::Digest);
    }

    delete_index(&url("es7"), &index).await;
    delete_index(&url("os2"), &index).await;
    control_plane.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn es6_typed_index_matches_its_typeless_os2_copy() {
    let control_plane = control_plane("cmp_es6").await;
    let mut client = control_plane.compare().await;
    let index = unique_index("cmp-es6");
    let docs = numbered(0..1500);
    load(&url("es6"), &index, Some("doc"), &docs).await;
    load(&url("os2"), &index, None, &docs).await;

    let job = create(&mut client, request("es6", "os2", &index)).await;
    let job = finished(&mut client, &job.id).await;
    assert_eq!(state(&job), pb::JobState::Succeeded, "{:?}", job.error);
    let s = summary(&job);
    assert_eq!(s.outcome, pb::CompareOutcome::Match as i32, "{s:?}");
    assert_eq!((s.source_docs, s.target_docs), (1500, 1500));
    assert_eq!(s.diffs_recorded, 0);

    delete_index(&url("es6"), &index).await;
    delete_index(&url("os2"), &index).await;
    control_plane.stop().await;
}

fn expect_err<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, prefix: &str) {
    let status = result.expect_err("the request must fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().starts_with(prefix),
        "message {:?} should start with {prefix:?}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_name_their_field_and_a_cancelled_job_stops() {
    let control_plane = control_plane("cmp_bad").await;
    let mut client = control_plane.compare().await;
    let index = unique_index("cmp-cancel");

    let mut no_source = request("es7", "os2", &index);
    no_source.source = None;
    expect_err(
        client.create_compare_job(no_source).await,
        Code::InvalidArgument,
        "source",
    );
    expect_err(
        client
            .create_compare_job(request("es7", "es7", &index))
            .await,
        Code::InvalidArgument,
        "target",
    );
    expect_err(
        client
            .create_compare_job(request("es7", "nowhere", &index))
            .await,
        Code::NotFound,
        "target.cluster_name",
    );
    let mut bad_mode = request("es7", "os2", &index);
    bad_mode.options.as_mut().unwrap().mode = 42;
    expect_err(
        client.create_compare_job(bad_mode).await,
        Code::InvalidArgument,
        "options.mode",
    );
    let mut too_many = request("es7", "os2", &index);
    too_many.options.as_mut().unwrap().partitions_per_index = 5000;
    expect_err(
        client.create_compare_job(too_many).await,
        Code::InvalidArgument,
        "options.partitions_per_index",
    );
    let mut bad_pattern = request("es7", "os2", &index);
    bad_pattern.indices.as_mut().unwrap().include = vec!["a,b".into()];
    expect_err(
        client.create_compare_job(bad_pattern).await,
        Code::InvalidArgument,
        "indices.include[0]",
    );
    let mut unknown_task = request("es7", "os2", &index);
    unknown_task.task_id = UNKNOWN_ID.to_string();
    expect_err(
        client.create_compare_job(unknown_task).await,
        Code::NotFound,
        "task_id",
    );
    expect_err(
        client
            .get_compare_job(pb::GetCompareJobRequest {
                job_id: "not-a-uuid".into(),
            })
            .await,
        Code::InvalidArgument,
        "job_id",
    );
    expect_err(
        client
            .get_compare_job(pb::GetCompareJobRequest {
                job_id: UNKNOWN_ID.to_string(),
            })
            .await,
        Code::NotFound,
        "job_id",
    );
    expect_err(
        client
            .cancel_compare_job(pb::CancelCompareJobRequest {
                job_id: UNKNOWN_ID.to_string(),
            })
            .await,
        Code::NotFound,
        "job_id",
    );

    // A slow job (50 documents per second over 3000) is cancelled.
    let docs = numbered(0..3000);
    load(&url("es7"), &index, None, &docs).await;
    load(&url("os2"), &index, None, &docs).await;
    let mut slow = request("es7", "os2", &index);
    slow.options.as_mut().unwrap().max_docs_per_second = 50;
    slow.options.as_mut().unwrap().batch_size = 50;
    let job = create(&mut client, slow).await;
    expect_err(
        client
            .list_compare_diffs(pb::ListCompareDiffsRequest {
                job_id: job.id.clone(),
                kinds: vec![pb::DiffKind::Unspecified as i32],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "kinds[0]",
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while get(&mut client, &job.id).await.progress.unwrap().docs_done == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cancelled = client
        .cancel_compare_job(pb::CancelCompareJobRequest {
            job_id: job.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert!(
        matches!(
            state(&cancelled),
            pb::JobState::Cancelling | pb::JobState::Cancelled
        ),
        "{:?}",
        state(&cancelled)
    );
    let job = finished(&mut client, &job.id).await;
    assert_eq!(state(&job), pb::JobState::Cancelled);
    assert_eq!(
        summary(&job).outcome,
        pb::CompareOutcome::Unspecified as i32
    );
    assert!(job.progress.unwrap().docs_done < 3000);
    // Cancelling a terminal job returns it unchanged.
    let again = client
        .cancel_compare_job(pb::CancelCompareJobRequest {
            job_id: job.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(state(&again), pb::JobState::Cancelled);
    let listed = client
        .list_compare_jobs(pb::ListCompareJobsRequest {
            states: vec![pb::JobState::Cancelled as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].index_summaries.is_empty());

    delete_index(&url("es7"), &index).await;
    delete_index(&url("os2"), &index).await;
    control_plane.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_comparison_survives_kill_9_of_the_control_plane() {
    use tandem_integration::controlplane::{ControlPlaneOptions, ControlPlaneProcess};
    let index = unique_index("cmp-kill");
    let docs = numbered(0..3000);
    load(&url("es7"), &index, None, &docs).await;
    load(&url("os2"), &index, None, &docs).await;
    let database = fresh_database("cmp_kill").await;
    let mut cp = ControlPlaneProcess::start(ControlPlaneOptions::new(&database)).await;
    let mut clusters = cp.clusters().await;
    for flavor in ["es7", "os2"] {
        clusters
            .register_cluster(pb::RegisterClusterRequest {
                name: flavor.to_string(),
                endpoints: vec![url(flavor)],
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("register {flavor}: {e:?}"));
    }
    let mut client = cp.compare().await;
    // Slow enough (500 documents/s per side) to be killed mid-way.
    let mut slow = request("es7", "os2", &index);
    if let Some(options) = slow.options.as_mut() {
        options.max_docs_per_second = 500;
        options.batch_size = 100;
    }
    let job = create(&mut client, slow).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let running = get(&mut client, &job.id).await;
        if running.progress.is_some_and(|p| p.docs_done > 0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never started: {running:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cp.kill_9();
    cp.restart().await;
    let mut client = cp.compare().await;
    // The partition is leased again once the dead process's lease expired,
    // and the job still reaches the right answer.
    let done = finished(&mut client, &job.id).await;
    assert_eq!(state(&done), pb::JobState::Succeeded, "{:?}", done.error);
    let summary = summary(&done);
    assert_eq!(
        summary.outcome,
        pb::CompareOutcome::Match as i32,
        "{summary:?}"
    );
    assert_eq!((summary.source_docs, summary.target_docs), (3000, 3000));
    assert!(all_diffs(&mut client, &done.id, &[]).await.is_empty());
    delete_index(&url("es7"), &index).await;
    delete_index(&url("os2"), &index).await;
}

/// Creates a job and waits until it is terminal.
async fn run_job(client: &mut Compare, request: pb::CreateCompareJobRequest) -> pb::CompareJob {
    let id = create(client, request).await.id;
    finished(client, &id).await
}

/// Writes `body` byte for byte as document `id` at external `version`.
async fn put_raw(cluster: &str, index: &str, id: &str, version: i64, body: &'static str) {
    let response = http()
        .put(format!(
            "{cluster}/{index}/_doc/{id}?version={version}&version_type=external&refresh=true"
        ))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("put");
    assert!(response.status().is_success(), "{}", response.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strict_source_counts_key_order_and_number_spelling() {
    let control_plane = control_plane("cmp_strict").await;
    let mut client = control_plane.compare().await;
    let index = unique_index("cmp-strict");
    let docs = numbered(0..20);
    load(&url("es7"), &index, None, &docs).await;
    load(&url("os2"), &index, None, &docs).await;
    // The same JSON value, spelled differently.
    put_raw(&url("es7"), &index, "5", 9, r#"{"body":"five","n":1.50}"#).await;
    put_raw(&url("os2"), &index, "5", 9, r#"{"n":1.5,"body":"five"}"#).await;

    let lenient = run_job(&mut client, request("es7", "os2", &index)).await;
    assert_eq!(
        summary(&lenient).outcome,
        pb::CompareOutcome::Match as i32,
        "{:?}",
        summary(&lenient)
    );

    let mut strict = request("es7", "os2", &index);
    strict.options.as_mut().unwrap().strict_source = true;
    let strict = run_job(&mut client, strict).await;
    assert_eq!(
        state(&strict),
        pb::JobState::Succeeded,
        "{:?}",
        strict.error
    );
    assert_eq!(
        summary(&strict).outcome,
        pb::CompareOutcome::Mismatch as i32
    );
    assert!(strict.options.unwrap().strict_source);
    assert_eq!(
        kinds(&all_diffs(&mut client, &strict.id, &[]).await),
        [("5".to_string(), pb::DiffKind::ContentDiffers)]
    );
    delete_index(&url("es7"), &index).await;
    delete_index(&url("os2"), &index).await;
    control_plane.stop().await;
}

/// Differences found by a comparison are repaired by the gateway of the task
/// replicating es7 to os2 (through its replayer, version-fenced), rechecked,
/// and a new comparison matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn differences_are_repaired_through_the_tasks_gateway() {
    let control_plane = control_plane("cmp_repair").await;
    let mut client = control_plane.compare().await;
    let (es7, os2) = (url("es7"), url("os2"));
    let index = unique_index("cmp-repair");
    let docs = numbered(0..40);
    load(&es7, &index, None, &docs).await;
    let mut target: Vec<Doc> = docs
        .iter()
        .filter(|(id, _, _)| id != "10")
        .cloned()
        .collect();
    for (id, version, source) in &mut target {
        match id.as_str() {
            "20" => source["body"] = json!("changed on the target"),
            // Different and *ahead* of the source (a re-created document
            // below the target's old version): the repair must go above it.
            "30" => {
                source["body"] = json!("an older life of the document");
                *version = 50;
            }
            _ => {}
        }
    }
    target.push((
        "extra-1".into(),
        1,
        json!({ "n": -1, "body": "only on the target" }),
    ));
    load(&os2, &index, None, &target).await;

    // Bad requests name their field; a job must be a finished FULL one.
    let err = client
        .repair_compare_diffs(pb::RepairCompareDiffsRequest {
            job_id: "not-a-uuid".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("job_id"), "{}", err.message());
    let err = client
        .repair_compare_diffs(pb::RepairCompareDiffsRequest {
            job_id: UNKNOWN_ID.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let job = run_job(&mut client, request("es7", "os2", &index)).await;
    assert_eq!(summary(&job).outcome, pb::CompareOutcome::Mismatch as i32);
    assert_eq!(all_diffs(&mut client, &job.id, &[]).await.len(), 4);

    // No task replicates es7 to os2 yet.
    let err = client
        .repair_compare_diffs(pb::RepairCompareDiffsRequest {
            job_id: job.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().starts_with("task_id"), "{}", err.message());

    let data = tempfile::tempdir().unwrap();
    let gw = format!("gw-repair-{}", unique_index("g"));
    let mut options = GatewayOptions::replicating(&es7, &os2, data.path());
    options.extra_toml = control_plane.agent_section(&gw);
    let _gateway = TestGateway::start_with(options).await;
    let mut tasks = control_plane.tasks().await;
    let task = create_task_once_registered(
        &mut tasks,
        pb::CreateTaskRequest {
            name: "repair".into(),
            primary: cluster("es7"),
            backup: cluster("os2"),
            gateway_ids: vec![gw.clone()],
            ..Default::default()
        },
    )
    .await;

    let repaired = tokio::time::timeout(WAIT, async {
        loop {
            match client
                .repair_compare_diffs(pb::RepairCompareDiffsRequest {
                    job_id: job.id.clone(),
                    ..Default::default()
                })
                .await
            {
                Ok(answer) => return answer.into_inner(),
                // The gateway's stream may not be up yet.
                Err(status) if status.code() == Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(300)).await
                }
                Err(status) => panic!("repair: {status:?}"),
            }
        }
    })
    .await
    .expect("repair in time");
    assert_eq!(repaired.task_id, task.id);
    assert_eq!(repaired.gateway_id, gw);
    assert_eq!(
        (repaired.requested, repaired.repaired),
        (4, 4),
        "{repaired:?}"
    );
    assert!(repaired.still_differing.is_empty());
    let diffs = all_diffs(&mut client, &job.id, &[]).await;
    assert!(diffs.iter().all(|d| d.repaired_at.is_some()), "{diffs:?}");
    assert_converged(&es7, &os2, &index).await;

    // Nothing is left to repair, and a new comparison matches.
    let again = client
        .repair_compare_diffs(pb::RepairCompareDiffsRequest {
            job_id: job.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.requested, 0);
    let check = run_job(&mut client, request("es7", "os2", &index)).await;
    let check = summary(&check);
    assert_eq!(check.outcome, pb::CompareOutcome::Match as i32, "{check:?}");
    assert_eq!(check.version_ahead, 1, "document 30 is ahead on the target");

    delete_index(&es7, &index).await;
    delete_index(&os2, &index).await;
    control_plane.stop().await;
}
