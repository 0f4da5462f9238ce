//! MigrationService against a real control-plane process, real Postgres and
//! real clusters: es7 → os2 (typeless to typeless), es6 → os2 (typed to
//! typeless), pause/resume and kill -9 in the middle of a copy, version
//! fencing against documents the replay already wrote, validation and
//! illegal transitions.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tandem_client::AuthenticatedChannel;
use tandem_client::v1::migration_service_client::MigrationServiceClient;
use tandem_integration::client::{bulk, call, create_index};
use tandem_integration::compare::{assert_index_equal, documents};
use tandem_integration::controlplane::{ControlPlaneApi, ControlPlaneOptions, ControlPlaneProcess};
use tandem_integration::{env, fresh_database, unique_index};
use tandem_proto::v1 as pb;
use tonic::Code;

type Migrations = MigrationServiceClient<AuthenticatedChannel>;

const WAIT: Duration = Duration::from_secs(180);

fn url(flavor: &str) -> String {
    env().cluster(flavor).url.clone()
}

/// A control plane on a fresh database with es7, os2 and es6 registered
/// under their flavor names.
async fn control_plane(prefix: &str) -> ControlPlaneProcess {
    control_plane_on(&fresh_database(prefix).await).await
}

/// [`control_plane`] on `database`.
async fn control_plane_on(database: &str) -> ControlPlaneProcess {
    let database = database.to_string();
    let process = ControlPlaneProcess::start(ControlPlaneOptions::new(&database)).await;
    let mut clusters = process.clusters().await;
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
    process
}

fn cluster(name: &str) -> Option<pb::ClusterRef> {
    Some(pb::ClusterRef {
        cluster_name: name.to_string(),
        ..Default::default()
    })
}

fn request(
    source: &str,
    target: &str,
    include: &str,
    options: pb::MigrationOptions,
) -> pb::CreateMigrationJobRequest {
    pb::CreateMigrationJobRequest {
        source: cluster(source),
        target: cluster(target),
        indices: Some(pb::IndexFilter {
            include: vec![include.to_string()],
            ..Default::default()
        }),
        options: Some(options),
        ..Default::default()
    }
}

async fn create(
    client: &mut Migrations,
    request: pb::CreateMigrationJobRequest,
) -> pb::MigrationJob {
    client
        .create_migration_job(request)
        .await
        .unwrap_or_else(|e| panic!("create: {e:?}"))
        .into_inner()
        .job
        .unwrap()
}

async fn get(client: &mut Migrations, id: &str) -> pb::MigrationJob {
    client
        .get_migration_job(pb::GetMigrationJobRequest {
            job_id: id.to_string(),
        })
        .await
        .unwrap_or_else(|e| panic!("get: {e:?}"))
        .into_inner()
        .job
        .unwrap()
}

async fn partitions(client: &mut Migrations, id: &str) -> Vec<pb::MigrationPartition> {
    client
        .list_migration_partitions(pb::ListMigrationPartitionsRequest {
            job_id: id.to_string(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("partitions: {e:?}"))
        .into_inner()
        .partitions
}

fn state(job: &pb::MigrationJob) -> pb::JobState {
    pb::JobState::try_from(job.state).unwrap()
}

fn progress(job: &pb::MigrationJob) -> pb::Progress {
    job.progress.unwrap_or_default()
}

/// Polls the job until `done` holds, returning it; panics after [`WAIT`].
async fn wait_for(
    client: &mut Migrations,
    id: &str,
    what: &str,
    done: impl Fn(&pb::MigrationJob) -> bool,
) -> pb::MigrationJob {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let job = get(client, id).await;
        if done(&job) {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: job is {:?} with {:?}, error {:?}",
            state(&job),
            job.progress,
            job.error
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Bulk-indexes `{"n": i, "body": ...}` documents `range` into `index`
/// (typed with `doc_type` for Elasticsearch 6).
async fn load(cluster: &str, index: &str, doc_type: Option<&str>, range: std::ops::Range<u32>) {
    let ids: Vec<u32> = range.collect();
    for chunk in ids.chunks(500) {
        let mut lines = Vec::new();
        for i in chunk {
            let mut action = json!({ "_index": index, "_id": i.to_string() });
            if let Some(ty) = doc_type {
                action["_type"] = json!(ty);
            }
            lines.push(json!({ "index": action }));
            lines.push(json!({ "n": i, "body": format!("document number {i} of {index}") }));
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
async fn es7_indices_with_mappings_and_aliases_are_copied_to_os2() {
    let (es7, os2) = (url("es7"), url("os2"));
    let prefix = unique_index("mig-copy");
    let (mapped, big, routed) = (
        format!("{prefix}-mapped"),
        format!("{prefix}-big"),
        format!("{prefix}-routed"),
    );
    create_index(
        &es7,
        &mapped,
        json!({ "properties": { "title": { "type": "keyword" }, "n": { "type": "integer" } } }),
    )
    .await;
    let (status, body) = call(
        Method::POST,
        format!("{es7}/_aliases"),
        Some(json!({ "actions": [{ "add": { "index": mapped, "alias": format!("{mapped}-alias") } }] })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for i in 0..20 {
        let (status, _) = call(
            Method::PUT,
            format!("{es7}/{mapped}/_doc/{i}?refresh=true"),
            Some(json!({ "title": format!("t{i}"), "n": i })),
        )
        .await;
        assert!(status == 201 || status == 200);
    }
    // Document 3 reaches version 3 on the source.
    for n in [100, 101] {
        call(
            Method::PUT,
            format!("{es7}/{mapped}/_doc/3?refresh=true"),
            Some(json!({ "title": "t3", "n": n })),
        )
        .await;
    }
    let (status, body) = call(
        Method::PUT,
        format!("{es7}/{big}"),
        Some(json!({ "settings": { "number_of_shards": 2, "number_of_replicas": 0 } })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    load(&es7, &big, None, 0..3000).await;
    create_index(&es7, &routed, json!({})).await;
    for (id, routing) in [("a", "r1"), ("b", "r2"), ("c", "r1")] {
        let (status, body) = call(
            Method::PUT,
            format!("{es7}/{routed}/_doc/{id}?routing={routing}&refresh=true"),
            Some(json!({ "id": id })),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }

    let cp = control_plane("migration_copy").await;
    let mut client = cp.migrations().await;
    let job = create(
        &mut client,
        request(
            "es7",
            "os2",
            &format!("{prefix}-*"),
            pb::MigrationOptions {
                batch_size: 400,
                ..Default::default()
            },
        ),
    )
    .await;
    assert_eq!(state(&job), pb::JobState::Pending);
    assert_eq!(job.source.as_ref().unwrap().cluster_name, "es7");

    // Watch until the terminal snapshot ends the stream.
    let mut stream = client
        .watch_migration_job(pb::WatchMigrationJobRequest {
            job_id: job.id.clone(),
            update_interval: Some(prost_types::Duration {
                seconds: 0,
                nanos: 500_000_000,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    let mut events = Vec::new();
    let watched = tokio::time::timeout(WAIT, async {
        while let Some(message) = stream.message().await.unwrap() {
            match message.update.unwrap() {
                pb::watch_migration_job_response::Update::Job(job) => last = Some(job),
                pb::watch_migration_job_response::Update::Event(event) => events.push(event.reason),
            }
        }
    })
    .await;
    assert!(watched.is_ok(), "the watch did not end");
    let last = last.unwrap();
    assert_eq!(state(&last), pb::JobState::Succeeded, "{:?}", last.error);
    assert!(
        events.iter().any(|r| r == "JOB_STATE_CHANGED"),
        "{events:?}"
    );

    let job = get(&mut client, &job.id).await;
    assert_eq!(state(&job), pb::JobState::Succeeded);
    let p = progress(&job);
    assert_eq!(p.docs_total, 3023);
    assert_eq!(p.docs_done, p.docs_total);
    let counts = p.partitions.unwrap();
    assert_eq!(counts.total, 4, "one slice per primary shard");
    assert_eq!(counts.done, 4);
    assert_eq!(job.docs_failed, 0);
    assert!(job.finished_at.is_some() && job.started_at.is_some());
    let indices: Vec<&str> = job
        .index_progress
        .iter()
        .map(|i| i.source_index.as_str())
        .collect();
    assert_eq!(indices, [big.as_str(), mapped.as_str(), routed.as_str()]);
    for index in &job.index_progress {
        assert_eq!(index.phase, pb::IndexMigrationPhase::Done as i32);
        let p = index.progress.unwrap();
        assert_eq!(p.docs_done, p.docs_total, "{}", index.source_index);
    }

    for index in [&mapped, &big, &routed] {
        assert_index_equal(&es7, &os2, index).await;
    }
    let copied = documents(&os2, &mapped).await;
    assert_eq!(copied["3"].0, 3, "the source version is kept");
    let (_, mapping) = call(Method::GET, format!("{os2}/{mapped}/_mapping"), None).await;
    assert_eq!(
        mapping[&mapped]["mappings"]["properties"]["title"]["type"],
        json!("keyword"),
        "{mapping}"
    );
    let (_, aliases) = call(Method::GET, format!("{os2}/{mapped}/_alias"), None).await;
    assert!(
        aliases[&mapped]["aliases"]
            .get(format!("{mapped}-alias"))
            .is_some(),
        "{aliases}"
    );
    let (_, settings) = call(Method::GET, format!("{os2}/{big}/_settings"), None).await;
    assert_eq!(
        settings[&big]["settings"]["index"]["number_of_shards"],
        json!("2")
    );
    let (status, routed_doc) = call(
        Method::GET,
        format!("{os2}/{routed}/_doc/a?routing=r1"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{routed_doc}");
    assert_eq!(routed_doc["_routing"], json!("r1"));

    let listed = client
        .list_migration_jobs(pb::ListMigrationJobsRequest {
            states: vec![pb::JobState::Succeeded as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.jobs.len(), 1);
    assert!(listed.jobs[0].index_progress.is_empty());

    for index in [&mapped, &big, &routed] {
        delete_index(&es7, index).await;
        delete_index(&os2, index).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn es6_typed_index_is_copied_to_typeless_os2() {
    let (es6, os2) = (url("es6"), url("os2"));
    let index = unique_index("mig-typed");
    create_index(
        &es6,
        &index,
        json!({ "doc": { "properties": { "n": { "type": "long" }, "body": { "type": "text" } } } }),
    )
    .await;
    load(&es6, &index, Some("doc"), 0..250).await;

    let cp = control_plane("migration_typed").await;
    let mut client = cp.migrations().await;

    // Elasticsearch 6 has no point in time.
    let err = client
        .create_migration_job(request(
            "es6",
            "os2",
            &index,
            pb::MigrationOptions {
                read_strategy: pb::ReadStrategy::PointInTime as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().starts_with("options.read_strategy: "),
        "{err:?}"
    );

    let job = create(
        &mut client,
        request(
            "es6",
            "os2",
            &index,
            pb::MigrationOptions {
                batch_size: 100,
                ..Default::default()
            },
        ),
    )
    .await;
    let job = wait_for(&mut client, &job.id, "typed copy", |j| {
        state(j) != pb::JobState::Pending && state(j) != pb::JobState::Running
    })
    .await;
    assert_eq!(state(&job), pb::JobState::Succeeded, "{:?}", job.error);
    assert_eq!(progress(&job).docs_done, 250);
    let warnings = &job.index_progress[0].warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("mapping type \"doc\" removed")),
        "{warnings:?}"
    );
    assert_index_equal(&es6, &os2, &index).await;
    let (_, mapping) = call(Method::GET, format!("{os2}/{index}/_mapping"), None).await;
    assert_eq!(
        mapping[&index]["mappings"]["properties"]["n"]["type"],
        json!("long"),
        "{mapping}"
    );
    delete_index(&es6, &index).await;
    delete_index(&os2, &index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paused_copy_resumes_from_its_checkpoint() {
    let (es7, os2) = (url("es7"), url("os2"));
    let index = unique_index("mig-pause");
    create_index(&es7, &index, json!({})).await;
    load(&es7, &index, None, 0..2000).await;

    let cp = control_plane("migration_pause").await;
    let mut client = cp.migrations().await;
    let job = create(
        &mut client,
        request(
            "es7",
            "os2",
            &index,
            pb::MigrationOptions {
                batch_size: 50,
                max_docs_per_second: 400,
                ..Default::default()
            },
        ),
    )
    .await;
    wait_for(&mut client, &job.id, "copy started", |j| {
        progress(j).docs_done >= 200
    })
    .await;
    let paused = client
        .pause_migration_job(pb::PauseMigrationJobRequest {
            job_id: job.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert!(
        matches!(state(&paused), pb::JobState::Pausing | pb::JobState::Paused),
        "{:?}",
        state(&paused)
    );
    let paused = wait_for(&mut client, &job.id, "paused", |j| {
        state(j) == pb::JobState::Paused
    })
    .await;
    let held = progress(&paused).docs_done;
    assert!(held < 2000, "paused before the end ({held})");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = get(&mut client, &job.id).await;
    assert_eq!(state(&still), pb::JobState::Paused);
    assert_eq!(
        progress(&still).docs_done,
        held,
        "nothing is copied while paused"
    );
    let leases = partitions(&mut client, &job.id).await;
    assert!(leases.iter().all(|p| p.worker_id.is_empty()), "{leases:?}");
    assert!(
        leases.iter().all(|p| !p.checkpoint.is_empty()),
        "{leases:?}"
    );

    // Pausing again is a no-op; resuming goes back to RUNNING.
    let again = client
        .pause_migration_job(pb::PauseMigrationJobRequest {
            job_id: job.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(state(&again), pb::JobState::Paused);
    let resumed = client
        .resume_migration_job(pb::ResumeMigrationJobRequest {
            job_id: job.id.clone(),
            retry_failed_partitions: false,
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(state(&resumed), pb::JobState::Running);

    let mut seen = held;
    let deadline = tokio::time::Instant::now() + WAIT;
    let done = loop {
        let job = get(&mut client, &job.id).await;
        let done = progress(&job).docs_done;
        assert!(done >= seen, "progress went back from {seen} to {done}");
        seen = done;
        if state(&job) != pb::JobState::Running {
            break job;
        }
        assert!(tokio::time::Instant::now() < deadline, "never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(state(&done), pb::JobState::Succeeded, "{:?}", done.error);
    assert_eq!(progress(&done).docs_done, 2000);
    assert_eq!(done.docs_skipped_newer, 0, "nothing was copied twice");
    let parts = partitions(&mut client, &job.id).await;
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].attempts, 1, "a pause is not a failed attempt");
    assert_eq!(assert_index_equal(&es7, &os2, &index).await, 2000);
    delete_index(&es7, &index).await;
    delete_index(&os2, &index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_survives_kill_9_of_the_control_plane() {
    let (es7, os2) = (url("es7"), url("os2"));
    let index = unique_index("mig-kill");
    create_index(&es7, &index, json!({})).await;
    load(&es7, &index, None, 0..3000).await;

    let mut cp = control_plane("migration_kill").await;
    let mut client = cp.migrations().await;
    let job = create(
        &mut client,
        request(
            "es7",
            "os2",
            &index,
            pb::MigrationOptions {
                batch_size: 50,
                max_docs_per_second: 300,
                read_strategy: pb::ReadStrategy::PointInTime as i32,
                lease_duration: Some(prost_types::Duration {
                    seconds: 2,
                    nanos: 0,
                }),
                ..Default::default()
            },
        ),
    )
    .await;
    let before = wait_for(&mut client, &job.id, "copy started", |j| {
        progress(j).docs_done >= 500
    })
    .await;
    let before = progress(&before).docs_done;
    cp.kill_9();
    cp.restart().await;
    let mut client = cp.migrations().await;

    // The new process re-leases the partition once the dead lease expired
    // and continues after the last checkpoint.
    let deadline = tokio::time::Instant::now() + WAIT;
    let done = loop {
        let parts = partitions(&mut client, &job.id).await;
        assert_eq!(parts.len(), 1);
        assert!(
            parts[0].docs_done >= before,
            "progress restarted: {} < {before}",
            parts[0].docs_done
        );
        let job = get(&mut client, &job.id).await;
        if state(&job) != pb::JobState::Running {
            break job;
        }
        assert!(tokio::time::Instant::now() < deadline, "never finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(state(&done), pb::JobState::Succeeded, "{:?}", done.error);
    let parts = partitions(&mut client, &job.id).await;
    assert_eq!(parts[0].attempts, 2, "the partition was leased again");
    assert_eq!(parts[0].state, pb::PartitionState::Done as i32);
    // Only the batch in flight at the kill may be written twice (and
    // then skipped as same-version).
    assert!(done.docs_skipped_newer <= 50, "{}", done.docs_skipped_newer);
    assert_eq!(progress(&done).docs_done, 3000);
    assert_eq!(assert_index_equal(&es7, &os2, &index).await, 3000);
    delete_index(&es7, &index).await;
    delete_index(&os2, &index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_existing_target_index_is_refused_unless_reused_and_stays_version_fenced() {
    let (es7, os2) = (url("es7"), url("os2"));
    let index = unique_index("mig-fence");
    create_index(&es7, &index, json!({})).await;
    load(&es7, &index, None, 0..10).await;
    // The replay already wrote a newer version of document 3.
    create_index(&os2, &index, json!({})).await;
    let (status, body) = call(
        Method::PUT,
        format!("{os2}/{index}/_doc/3?version=7&version_type=external&refresh=true"),
        Some(json!({ "n": 3, "body": "newer from the replay" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let cp = control_plane("migration_fence").await;
    let mut client = cp.migrations().await;

    // The default policy refuses an existing target index.
    let refused = create(
        &mut client,
        request("es7", "os2", &index, Default::default()),
    )
    .await;
    let refused = wait_for(&mut client, &refused.id, "refused", |j| {
        state(j) == pb::JobState::Failed
    })
    .await;
    let error = refused.error.unwrap();
    assert_eq!(error.reason, "TARGET_INDEX_EXISTS");
    assert!(error.message.contains(&index), "{}", error.message);

    let job = create(
        &mut client,
        request(
            "es7",
            "os2",
            &index,
            pb::MigrationOptions {
                metadata: Some(pb::MetadataCopyOptions {
                    if_exists: pb::ExistingIndexPolicy::Reuse as i32,
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
    )
    .await;
    let job = wait_for(&mut client, &job.id, "fenced copy", |j| {
        !matches!(state(j), pb::JobState::Pending | pb::JobState::Running)
    })
    .await;
    assert_eq!(state(&job), pb::JobState::Succeeded, "{:?}", job.error);
    assert_eq!(progress(&job).docs_done, 10);
    let target = documents(&os2, &index).await;
    let source = documents(&es7, &index).await;
    assert_eq!(target.len(), 10);
    // The source still holds document 3 at the version the copy read (1),
    // below the target's 7: only a re-creation after a pruned tombstone
    // leads there, and the source is the truth (ADR 006). It is written
    // above the target's version, not skipped.
    assert_eq!(job.docs_skipped_newer, 0);
    assert_eq!(target["3"].0, 8);
    assert_eq!(target["3"].1, source["3"].1);
    for (id, doc) in &source {
        if id != "3" {
            assert_eq!(&target[id], doc, "document {id}");
        }
    }
    delete_index(&es7, &index).await;
    delete_index(&os2, &index).await;
}

fn expect_err<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, prefix: &str) {
    let status = result.expect_err("expected an error");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().starts_with(prefix),
        "message {:?} should start with {prefix:?}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_name_their_field_and_illegal_transitions_are_refused() {
    let cp = control_plane("migration_invalid").await;
    let mut client = cp.migrations().await;
    let ok = || request("es7", "os2", "nothing-matches-this-*", Default::default());
    let with = |options: pb::MigrationOptions| pb::CreateMigrationJobRequest {
        options: Some(options),
        ..ok()
    };
    let cases: Vec<(pb::CreateMigrationJobRequest, Code, &str)> = vec![
        (
            pb::CreateMigrationJobRequest {
                source: None,
                ..ok()
            },
            Code::InvalidArgument,
            "source: ",
        ),
        (
            pb::CreateMigrationJobRequest {
                target: None,
                ..ok()
            },
            Code::InvalidArgument,
            "target: ",
        ),
        (
            pb::CreateMigrationJobRequest {
                source: Some(pb::ClusterRef {
                    cluster_id: "not-a-uuid".into(),
                    ..Default::default()
                }),
                ..ok()
            },
            Code::InvalidArgument,
            "source.cluster_id: ",
        ),
        (
            pb::CreateMigrationJobRequest {
                target: Some(pb::ClusterRef {
                    cluster_id: "00000000-0000-4000-8000-000000000000".into(),
                    ..Default::default()
                }),
                ..ok()
            },
            Code::NotFound,
            "target.cluster_id: ",
        ),
        (
            pb::CreateMigrationJobRequest {
                source: cluster("no-such-cluster"),
                ..ok()
            },
            Code::NotFound,
            "source.cluster_name: ",
        ),
        (
            pb::CreateMigrationJobRequest {
                target: cluster("es7"),
                ..ok()
            },
            Code::InvalidArgument,
            "target: ",
        ),
        (
            pb::CreateMigrationJobRequest {
                name: "Not A Name".into(),
                ..ok()
            },
            Code::InvalidArgument,
            "name: ",
        ),
        (
            pb::CreateMigrationJobRequest {
                indices: Some(pb::IndexFilter {
                    include: vec![String::new()],
                    ..Default::default()
                }),
                ..ok()
            },
            Code::InvalidArgument,
            "indices.include[0]: ",
        ),
        (
            pb::CreateMigrationJobRequest {
                task_id: "nope".into(),
                ..ok()
            },
            Code::InvalidArgument,
            "task_id: ",
        ),
        (
            pb::CreateMigrationJobRequest {
                task_id: "00000000-0000-4000-8000-000000000000".into(),
                ..ok()
            },
            Code::NotFound,
            "task_id: ",
        ),
        (
            with(pb::MigrationOptions {
                batch_size: 1_000_000,
                ..Default::default()
            }),
            Code::InvalidArgument,
            "options.batch_size: ",
        ),
        (
            with(pb::MigrationOptions {
                slices_per_index: 5000,
                ..Default::default()
            }),
            Code::InvalidArgument,
            "options.slices_per_index: ",
        ),
        (
            with(pb::MigrationOptions {
                read_strategy: 42,
                ..Default::default()
            }),
            Code::InvalidArgument,
            "options.read_strategy: ",
        ),
        (
            with(pb::MigrationOptions {
                keep_alive: Some(prost_types::Duration {
                    seconds: -1,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            Code::InvalidArgument,
            "options.keep_alive: ",
        ),
        (
            with(pb::MigrationOptions {
                lease_duration: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 10_000_000,
                }),
                ..Default::default()
            }),
            Code::InvalidArgument,
            "options.lease_duration: ",
        ),
        (
            with(pb::MigrationOptions {
                max_partition_attempts: 1000,
                ..Default::default()
            }),
            Code::InvalidArgument,
            "options.max_partition_attempts: ",
        ),
        (
            with(pb::MigrationOptions {
                metadata: Some(pb::MetadataCopyOptions {
                    if_exists: 9,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            Code::InvalidArgument,
            "options.metadata.if_exists: ",
        ),
        (
            with(pb::MigrationOptions {
                type_rewrite: Some(pb::MappingTypeRewrite {
                    mode: 17,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            Code::InvalidArgument,
            "options.type_rewrite.mode: ",
        ),
    ];
    for (request, code, prefix) in cases {
        expect_err(client.create_migration_job(request).await, code, prefix);
    }
    expect_err(
        client
            .get_migration_job(pb::GetMigrationJobRequest {
                job_id: "00000000-0000-4000-8000-000000000000".into(),
            })
            .await,
        Code::NotFound,
        "job_id: ",
    );
    expect_err(
        client
            .list_migration_jobs(pb::ListMigrationJobsRequest {
                page_size: -1,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_size: ",
    );

    // The same request_id gives the same job.
    let first = create(
        &mut client,
        pb::CreateMigrationJobRequest {
            request_id: "once".into(),
            ..ok()
        },
    )
    .await;
    let again = create(
        &mut client,
        pb::CreateMigrationJobRequest {
            request_id: "once".into(),
            ..ok()
        },
    )
    .await;
    assert_eq!(first.id, again.id);

    // A job selecting nothing succeeds at once; a finished job can be
    // neither paused nor resumed, and cancelling it changes nothing.
    let done = wait_for(&mut client, &first.id, "empty job", |j| {
        state(j) == pb::JobState::Succeeded
    })
    .await;
    assert_eq!(progress(&done).docs_total, 0);
    expect_err(
        client
            .pause_migration_job(pb::PauseMigrationJobRequest {
                job_id: first.id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "job_id: cannot pause a job in state JOB_STATE_SUCCEEDED",
    );
    expect_err(
        client
            .resume_migration_job(pb::ResumeMigrationJobRequest {
                job_id: first.id.clone(),
                retry_failed_partitions: false,
            })
            .await,
        Code::FailedPrecondition,
        "job_id: cannot resume",
    );
    let cancelled = client
        .cancel_migration_job(pb::CancelMigrationJobRequest {
            job_id: first.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(state(&cancelled), pb::JobState::Succeeded);

    // Resuming a running job changes nothing; a cancelled job can be
    // neither resumed nor paused.
    let es7 = url("es7");
    let index = unique_index("mig-cancel");
    create_index(&es7, &index, json!({})).await;
    load(&es7, &index, None, 0..300).await;
    let second = create(
        &mut client,
        request(
            "es7",
            "os2",
            &index,
            pb::MigrationOptions {
                batch_size: 10,
                max_docs_per_second: 20,
                ..Default::default()
            },
        ),
    )
    .await;
    wait_for(&mut client, &second.id, "copying", |j| {
        progress(j).docs_done > 0
    })
    .await;
    let running = client
        .resume_migration_job(pb::ResumeMigrationJobRequest {
            job_id: second.id.clone(),
            retry_failed_partitions: false,
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(state(&running), pb::JobState::Running);
    let cancelled = client
        .cancel_migration_job(pb::CancelMigrationJobRequest {
            job_id: second.id.clone(),
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
    let cancelled = wait_for(&mut client, &second.id, "cancelled", |j| {
        state(j) == pb::JobState::Cancelled
    })
    .await;
    assert!(progress(&cancelled).docs_done < 300);
    expect_err(
        client
            .resume_migration_job(pb::ResumeMigrationJobRequest {
                job_id: second.id.clone(),
                retry_failed_partitions: false,
            })
            .await,
        Code::FailedPrecondition,
        "job_id: cannot resume a job in state JOB_STATE_CANCELLED",
    );
    expect_err(
        client
            .pause_migration_job(pb::PauseMigrationJobRequest {
                job_id: second.id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "job_id: cannot pause a job in state JOB_STATE_CANCELLED",
    );
    // Watching a terminal job sends its snapshot and ends.
    assert_eq!(watch_reasons(&mut client, &second.id).await, ["Cancelled"]);
    delete_index(&es7, &index).await;
    delete_index(&url("os2"), &index).await;

    let listed = client
        .list_migration_jobs(pb::ListMigrationJobsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.jobs.len(), 1);
    assert_eq!(listed.jobs[0].id, second.id, "newest first");
    let next = client
        .list_migration_jobs(pb::ListMigrationJobsRequest {
            page_size: 1,
            page_token: listed.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.jobs[0].id, first.id);
}

/// What a watch of job `id` streams until it ends: job states (as
/// `Debug`) and event reasons.
async fn watch_reasons(client: &mut Migrations, id: &str) -> Vec<String> {
    let mut stream = client
        .watch_migration_job(pb::WatchMigrationJobRequest {
            job_id: id.to_string(),
            update_interval: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut reasons = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        match message.update.unwrap() {
            pb::watch_migration_job_response::Update::Job(job) => {
                reasons.push(format!("{:?}", state(&job)));
            }
            pb::watch_migration_job_response::Update::Event(event) => reasons.push(event.reason),
        }
    }
    reasons
}

/// `PUT`s `body` as document `id` byte for byte (no JSON round trip).
async fn put_raw(cluster: &str, index: &str, id: &str, body: &'static str) {
    let response = tandem_integration::http()
        .put(format!("{cluster}/{index}/_doc/{id}?refresh=true"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("put");
    assert!(response.status().is_success(), "{}", response.status());
}

/// The text of `GET /{index}/_doc/{id}` on `cluster`.
async fn raw_get(cluster: &str, index: &str, id: &str) -> String {
    tandem_integration::http()
        .get(format!("{cluster}/{index}/_doc/{id}"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copied_documents_keep_their_source_bytes() {
    let (es7, os2) = (url("es7"), url("os2"));
    let index = unique_index("mig-bytes");
    create_index(&es7, &index, json!({})).await;
    put_raw(
        &es7,
        &index,
        "spelled",
        r#"{"zeta":1,"alpha":1.50,"exp":1e3,"nested":{"b":2,"a":1}}"#,
    )
    .await;
    put_raw(
        &es7,
        &index,
        "pretty",
        "{\n  \"b\" : 2,\n  \"a\": \"x  y\"\n}",
    )
    .await;

    let cp = control_plane("migration_bytes").await;
    let mut client = cp.migrations().await;
    let job = create(
        &mut client,
        request("es7", "os2", &index, Default::default()),
    )
    .await;
    let job = wait_for(&mut client, &job.id, "copy", |j| {
        !matches!(state(j), pb::JobState::Pending | pb::JobState::Running)
    })
    .await;
    assert_eq!(state(&job), pb::JobState::Succeeded, "{:?}", job.error);
    let spelled = raw_get(&os2, &index, "spelled").await;
    assert!(
        spelled.contains(r#""_source":{"zeta":1,"alpha":1.50,"exp":1e3,"nested":{"b":2,"a":1}}"#),
        "key order and number spelling must survive the copy: {spelled}"
    );
    // One NDJSON line: whitespace between tokens goes, strings keep theirs.
    let pretty = raw_get(&os2, &index, "pretty").await;
    assert!(
        pretty.contains(r#""_source":{"b":2,"a":"x  y"}"#),
        "{pretty}"
    );
    delete_index(&es7, &index).await;
    delete_index(&os2, &index).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_document_recreated_below_the_targets_version_is_copied_above_it() {
    let (es7, os2) = (url("es7"), url("os2"));
    let index = unique_index("mig-recreated");
    create_index(&es7, &index, json!({})).await;
    load(&es7, &index, None, 0..5).await;
    // The target holds an older life of document 3 at version 9 (the
    // source deleted it, pruned the tombstone and created it again at 1),
    // and a genuinely newer document 4 the replay wrote.
    create_index(&os2, &index, json!({})).await;
    for (id, version, body) in [(3, 9, "an older life"), (4, 7, "newer from the replay")] {
        let (status, answer) = call(
            Method::PUT,
            format!("{os2}/{index}/_doc/{id}?version={version}&version_type=external&refresh=true"),
            Some(json!({ "n": id, "body": body })),
        )
        .await;
        assert_eq!(status, 201, "{answer}");
    }
    // Document 4 moved on the source too (version 8, above the target's 7).
    let (status, answer) = call(
        Method::PUT,
        format!("{es7}/{index}/_doc/4?version=8&version_type=external&refresh=true"),
        Some(json!({ "n": 4, "body": "newest, on the source" })),
    )
    .await;
    assert_eq!(status, 200, "{answer}");

    let database = fresh_database("migration_recreated").await;
    let cp = control_plane_on(&database).await;
    let mut client = cp.migrations().await;
    let job = create(
        &mut client,
        request(
            "es7",
            "os2",
            &index,
            pb::MigrationOptions {
                metadata: Some(pb::MetadataCopyOptions {
                    if_exists: pb::ExistingIndexPolicy::Reuse as i32,
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
    )
    .await;
    let job = wait_for(&mut client, &job.id, "copy", |j| {
        !matches!(state(j), pb::JobState::Pending | pb::JobState::Running)
    })
    .await;
    assert_eq!(state(&job), pb::JobState::Succeeded, "{:?}", job.error);
    let source = documents(&es7, &index).await;
    let target = documents(&os2, &index).await;
    assert_eq!(
        target["3"].1, source["3"].1,
        "the re-created document is copied"
    );
    assert!(
        target["3"].0 > 9,
        "above the target's old version: {:?}",
        target["3"]
    );
    assert_eq!(
        target["4"], source["4"],
        "document 4 is copied at the source's version"
    );
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    let (events,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM job_events WHERE job_id = $1::uuid AND reason = 'DOCUMENTS_REWRITTEN_ABOVE_TARGET'",
    )
    .bind(&job.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(events, 1, "the rewrite is reported as a job event");
    delete_index(&es7, &index).await;
    delete_index(&os2, &index).await;
}

/// The job's cluster-metadata line for `kind` `name`, if any.
fn metadata_result<'a>(
    job: &'a pb::MigrationJob,
    kind: pb::ClusterMetadataKind,
    name: &str,
) -> Option<&'a pb::ClusterMetadataResult> {
    job.cluster_metadata
        .iter()
        .find(|m| m.kind == kind as i32 && m.name == name)
}

fn outcome(result: Option<&pb::ClusterMetadataResult>) -> pb::ClusterMetadataOutcome {
    result
        .and_then(|m| pb::ClusterMetadataOutcome::try_from(m.outcome).ok())
        .unwrap_or_default()
}

fn copy_metadata(templates: bool, pipelines: bool) -> pb::MigrationOptions {
    pb::MigrationOptions {
        metadata: Some(pb::MetadataCopyOptions {
            copy_templates: templates,
            copy_ingest_pipelines: pipelines,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn expect_ok(method: Method, url: String, body: serde_json::Value) {
    let (status, answer) = call(method, url.clone(), Some(body)).await;
    assert!((200..300).contains(&status), "{url}: {status} {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn templates_and_pipelines_are_copied_from_es6_to_os2_and_reported() {
    let (es6, os2) = (url("es6"), url("os2"));
    let index = unique_index("mig-tpl");
    let template = format!("{index}-tpl");
    let unrelated = format!("{index}-other");
    let pipeline = format!("{index}-pipe");
    let kept = format!("{index}-kept");
    expect_ok(
        Method::PUT,
        format!("{es6}/_template/{template}"),
        json!({
            "index_patterns": [format!("{index}*")],
            "settings": { "number_of_shards": 1 },
            "mappings": { "_doc": { "properties": { "n": { "type": "long" } } } },
        }),
    )
    .await;
    expect_ok(
        Method::PUT,
        format!("{es6}/_template/{unrelated}"),
        json!({ "index_patterns": [format!("nomatch-{index}*")], "settings": {} }),
    )
    .await;
    for name in [&pipeline, &kept] {
        expect_ok(
            Method::PUT,
            format!("{es6}/_ingest/pipeline/{name}"),
            json!({ "processors": [{ "set": { "field": "copied", "value": "yes" } }] }),
        )
        .await;
    }
    // The target already holds a pipeline of that name: it must be kept.
    expect_ok(
        Method::PUT,
        format!("{os2}/_ingest/pipeline/{kept}"),
        json!({ "description": "the target's own", "processors": [] }),
    )
    .await;
    create_index(&es6, &index, json!({})).await;
    load(&es6, &index, Some("_doc"), 0..20).await;

    let cp = control_plane("migration_templates").await;
    let mut client = cp.migrations().await;
    let job = create(
        &mut client,
        request("es6", "os2", &index, copy_metadata(true, true)),
    )
    .await;
    let job = wait_for(&mut client, &job.id, "copy with metadata", |j| {
        !matches!(state(j), pb::JobState::Pending | pb::JobState::Running)
    })
    .await;
    assert_eq!(state(&job), pb::JobState::Succeeded, "{:?}", job.error);

    let legacy = metadata_result(&job, pb::ClusterMetadataKind::LegacyTemplate, &template);
    assert_eq!(
        outcome(legacy),
        pb::ClusterMetadataOutcome::Rewritten,
        "{legacy:?}"
    );
    assert!(
        metadata_result(&job, pb::ClusterMetadataKind::LegacyTemplate, &unrelated).is_none(),
        "a template matching no selected index is not copied"
    );
    assert_eq!(
        outcome(metadata_result(
            &job,
            pb::ClusterMetadataKind::IngestPipeline,
            &pipeline
        )),
        pb::ClusterMetadataOutcome::Copied
    );
    assert_eq!(
        outcome(metadata_result(
            &job,
            pb::ClusterMetadataKind::IngestPipeline,
            &kept
        )),
        pb::ClusterMetadataOutcome::KeptExisting
    );

    // On the target: the template is typeless, the pipeline runs there.
    let (status, copied) = call(Method::GET, format!("{os2}/_template/{template}"), None).await;
    assert_eq!(status, 200, "{copied}");
    assert_eq!(
        copied[&template]["mappings"]["properties"]["n"]["type"],
        json!("long"),
        "{copied}"
    );
    let (status, _) = call(Method::GET, format!("{os2}/_template/{unrelated}"), None).await;
    assert_eq!(status, 404);
    let (status, simulated) = call(
        Method::POST,
        format!("{os2}/_ingest/pipeline/{pipeline}/_simulate"),
        Some(json!({ "docs": [{ "_source": { "a": 1 } }] })),
    )
    .await;
    assert_eq!(status, 200, "{simulated}");
    assert_eq!(
        simulated["docs"][0]["doc"]["_source"]["copied"],
        json!("yes")
    );
    let (_, own) = call(Method::GET, format!("{os2}/_ingest/pipeline/{kept}"), None).await;
    assert_eq!(own[&kept]["description"], json!("the target's own"));
    assert_index_equal(&es6, &os2, &index).await;

    for cluster in [&es6, &os2] {
        for name in [&template, &unrelated] {
            call(Method::DELETE, format!("{cluster}/_template/{name}"), None).await;
        }
        for name in [&pipeline, &kept] {
            call(
                Method::DELETE,
                format!("{cluster}/_ingest/pipeline/{name}"),
                None,
            )
            .await;
        }
        delete_index(cluster, &index).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn composable_templates_are_copied_where_the_target_has_them_and_refused_by_name_elsewhere() {
    let (es7, os2, es6) = (url("es7"), url("os2"), url("es6"));
    let index = unique_index("mig-itpl");
    let component = format!("{index}-comp");
    let template = format!("{index}-itpl");
    expect_ok(
        Method::PUT,
        format!("{es7}/_component_template/{component}"),
        json!({ "template": { "settings": { "number_of_replicas": 0 } } }),
    )
    .await;
    expect_ok(
        Method::PUT,
        format!("{es7}/_index_template/{template}"),
        json!({
            "index_patterns": [format!("{index}*")],
            "composed_of": [component],
            "priority": 500,
            "template": { "mappings": { "properties": { "n": { "type": "long" } } } },
        }),
    )
    .await;
    create_index(&es7, &index, json!({})).await;
    load(&es7, &index, None, 0..10).await;

    let cp = control_plane("migration_composable").await;
    let mut client = cp.migrations().await;

    // Towards OpenSearch: both are created, the component first.
    let job = create(
        &mut client,
        request("es7", "os2", &index, copy_metadata(true, false)),
    )
    .await;
    let job = wait_for(&mut client, &job.id, "copy to os2", |j| {
        !matches!(state(j), pb::JobState::Pending | pb::JobState::Running)
    })
    .await;
    assert_eq!(state(&job), pb::JobState::Succeeded, "{:?}", job.error);
    for (kind, name) in [
        (pb::ClusterMetadataKind::ComponentTemplate, &component),
        (pb::ClusterMetadataKind::IndexTemplate, &template),
    ] {
        let result = metadata_result(&job, kind, name);
        assert_eq!(
            outcome(result),
            pb::ClusterMetadataOutcome::Copied,
            "{result:?}"
        );
    }
    let (status, copied) = call(
        Method::GET,
        format!("{os2}/_index_template/{template}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{copied}");
    assert_eq!(
        copied["index_templates"][0]["index_template"]["composed_of"],
        json!([component])
    );

    // Towards Elasticsearch 6: nothing can hold them; both are named.
    let job = create(
        &mut client,
        request("es7", "es6", &index, copy_metadata(true, false)),
    )
    .await;
    let job = wait_for(&mut client, &job.id, "copy to es6", |j| {
        !matches!(state(j), pb::JobState::Pending | pb::JobState::Running)
    })
    .await;
    assert_eq!(state(&job), pb::JobState::Succeeded, "{:?}", job.error);
    for (kind, name) in [
        (pb::ClusterMetadataKind::ComponentTemplate, &component),
        (pb::ClusterMetadataKind::IndexTemplate, &template),
    ] {
        let result = metadata_result(&job, kind, name);
        assert_eq!(
            outcome(result),
            pb::ClusterMetadataOutcome::Refused,
            "{result:?}"
        );
        assert!(result.unwrap().detail.contains("composable"), "{result:?}");
    }
    assert_index_equal(&es7, &es6, &index).await;

    call(
        Method::DELETE,
        format!("{os2}/_index_template/{template}"),
        None,
    )
    .await;
    call(
        Method::DELETE,
        format!("{os2}/_component_template/{component}"),
        None,
    )
    .await;
    call(
        Method::DELETE,
        format!("{es7}/_index_template/{template}"),
        None,
    )
    .await;
    call(
        Method::DELETE,
        format!("{es7}/_component_template/{component}"),
        None,
    )
    .await;
    for cluster in [&es7, &os2, &es6] {
        delete_index(cluster, &index).await;
    }
}
