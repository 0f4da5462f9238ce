//! Snapshot-based backfill (`MIGRATION_MODE_SNAPSHOT`): instead of reading
//! and writing documents, the source snapshots the selected indices into a
//! shared `fs` repository and the target restores them.
//!
//! # Planning ([`plan`])
//!
//! Nothing is written before the version rule ([`rule`]) holds for the
//! pair of clusters (who writes the snapshot) and for every selected index
//! (who created it, `index.version.created`): otherwise the job fails with
//! `SNAPSHOT_VERSION_UNSUPPORTED`, naming each refused index and the rule.
//! A restore cannot write into an existing open index, so any selected
//! index already present on the target fails the job
//! (`TARGET_INDEX_EXISTS`, whatever the existing-index policy). Then the
//! requested templates and pipelines are copied as in a document copy, the
//! repository is registered on the source (`fs`, writable) and on the
//! target (`fs`, `readonly`: only one cluster may write a repository), and
//! the plan holds one partition: the whole snapshot, named after the job
//! (`tandem-<job id>`).
//!
//! # Running ([`run`])
//!
//! The partition walks three phases, checkpointed after every poll (about
//! once a second), so a resumed or re-leased partition follows the same
//! snapshot and restore instead of starting others:
//!
//! 1. snapshot: `PUT _snapshot/<repo>/<snapshot>` of the selected indices
//!    (no global state, `wait_for_completion=false`), then
//!    `GET .../_status` for shards and bytes until it ends; anything but
//!    `SUCCESS` (a `PARTIAL` snapshot included) fails the job with
//!    `SNAPSHOT_FAILED`.
//! 2. restore: the target's repository is registered again (a read-only
//!    repository registered before the snapshot existed must see it), then
//!    `POST .../_restore` of the same indices, aliases unless
//!    `skip_aliases`, `settings_overrides` as `index_settings` and
//!    `excluded_settings` as `ignore_index_settings`; `GET
//!    <indices>/_recovery` gives the bytes recovered per primary shard,
//!    until every primary is done and no index is red.
//! 3. done: documents are counted on the target; on request the snapshot
//!    is deleted from the repository.
//!
//! Pause and cancel stop *following* the operation at the next poll: a
//! snapshot or restore the clusters already run goes on to its end (the
//! clusters offer no pause; aborting would mean deleting the snapshot or
//! the half-restored indices, which Tandem leaves to the operator). A
//! resumed job picks the operation up where it is.
//!
//! # Versions and replay
//!
//! A restore copies Lucene segments: each document keeps the `_version`
//! (and `_seq_no`) the source gave it. The replication queue replays with
//! `version_type=external_gte` at the primary's `_version`, so a write
//! recorded before the snapshot is rewritten at the version the snapshot
//! already holds (same content), and one made after it is newer and wins:
//! the target converges exactly as after a document copy, which writes the
//! same versions.

pub mod rule;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tandem_proto::codes;

use super::search::{Answer, SearchClient};
use super::{IndexPlan, MetadataSpec, MigrationPlan, MigrationSpec, cluster_metadata, metadata};
use crate::jobs::{
    JobFailure, JobRecord, Lease, LeaseStatus, NewPartition, PartitionProgress, PartitionRecord,
    Plan, RunOutcome,
};
use rule::{Release, index_refusal, snapshot_refusal};
use tandem_es::uri::encode_path_segment;

/// Repository name when the job names none.
pub const DEFAULT_REPOSITORY: &str = "tandem-backfill";

/// Pause between two polls of a running snapshot or restore.
const POLL: Duration = Duration::from_secs(1);

/// Polls a restore may leave an index red after its recoveries ended
/// before the job fails.
const RED_POLLS: u32 = 60;

/// Snapshot options of a job (`SnapshotOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSpec {
    /// Repository name; empty means [`DEFAULT_REPOSITORY`].
    pub repository: String,
    /// Repository directory as the source sees it.
    pub source_location: String,
    /// Repository directory as the target sees it.
    pub target_location: String,
    /// Delete the snapshot once restored.
    pub delete_snapshot: bool,
}

impl SnapshotSpec {
    /// The repository registered on both clusters.
    pub fn repository(&self) -> &str {
        if self.repository.is_empty() {
            DEFAULT_REPOSITORY
        } else {
            &self.repository
        }
    }
}

/// What planning decided: the job plan's `snapshot`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SnapshotPlan {
    /// Repository registered on both clusters.
    pub repository: String,
    /// Snapshot name.
    pub snapshot: String,
}

/// Phase of the backfill, and of each index in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not reached yet.
    #[default]
    Pending,
    /// The source writes the snapshot.
    Snapshot,
    /// The target restores it.
    Restore,
    /// Restored.
    Done,
}

/// Progress of one index.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexState {
    /// Phase.
    pub phase: Phase,
    /// Bytes to recover on the target.
    pub bytes_total: u64,
    /// Bytes recovered.
    pub bytes_done: u64,
    /// Documents on the target once restored.
    pub docs: u64,
}

/// The partition's checkpoint: where the backfill stands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Phase.
    pub phase: Phase,
    /// The snapshot was asked for (it may exist).
    pub snapshot_requested: bool,
    /// The restore was asked for (the target indices may exist).
    pub restore_requested: bool,
    /// State as the source reports it.
    pub snapshot_state: String,
    /// Shards in the snapshot.
    pub snapshot_shards_total: u32,
    /// Shards stored.
    pub snapshot_shards_done: u32,
    /// Bytes to store.
    pub snapshot_bytes_total: u64,
    /// Bytes stored.
    pub snapshot_bytes_done: u64,
    /// Primary shards restored or being restored.
    pub restore_shards_total: u32,
    /// Primary shards restored.
    pub restore_shards_done: u32,
    /// Bytes to recover.
    pub restore_bytes_total: u64,
    /// Bytes recovered.
    pub restore_bytes_done: u64,
    /// Polls that found an index red after its recoveries ended.
    #[serde(default)]
    pub red_polls: u32,
    /// The snapshot was deleted after the restore.
    pub deleted: bool,
    /// Per index, by name.
    pub indices: BTreeMap<String, IndexState>,
}

/// The checkpoint of a snapshot job's partition, if readable.
pub fn checkpoint_of(partition: &PartitionRecord) -> Option<Checkpoint> {
    partition
        .checkpoint
        .clone()
        .and_then(|c| serde_json::from_value(c).ok())
}

/// The snapshot a job takes.
pub fn snapshot_name(job: &JobRecord) -> String {
    format!("tandem-{}", job.id.simple())
}

fn version_refused(message: String, indices: &[String]) -> JobFailure {
    JobFailure::permanent(codes::SNAPSHOT_VERSION_UNSUPPORTED, message)
        .with("indices", indices.join(","))
        .with("rule", rule::RULE)
}

/// Plans a snapshot job over the `selected` indices (see the module
/// documentation); `not_carried` are report lines of what this mode does not
/// carry (data streams the selection names).
pub async fn plan(
    job: &JobRecord,
    spec: &MigrationSpec,
    options: &SnapshotSpec,
    source: &SearchClient,
    target: &SearchClient,
    selected: Vec<metadata::SourceIndex>,
    not_carried: Vec<cluster_metadata::ItemResult>,
) -> Result<Plan, JobFailure> {
    let names: Vec<String> = selected.iter().map(|i| i.name.clone()).collect();
    let (writer, reader) = (Release::of(&source.version), Release::of(&target.version));
    if let Some(reason) = snapshot_refusal(writer, reader) {
        return Err(version_refused(
            format!(
                "snapshot-based backfill is impossible: {reason}. Rule: {}. \
                 Use MIGRATION_MODE_DOCUMENTS",
                rule::RULE
            ),
            &names,
        ));
    }
    let created = created_versions(source).await?;
    let mut refused = Vec::new();
    let mut refusals = Vec::new();
    for name in &names {
        let Some(release) = created.get(name) else {
            continue;
        };
        if let Some(reason) = index_refusal(*release, reader) {
            refused.push(name.clone());
            refusals.push(format!("{name}: {reason}"));
        }
    }
    if !refused.is_empty() {
        return Err(version_refused(
            format!(
                "the target cannot restore {} of the selected indices ({}). Rule: {}. \
                 Copy them with MIGRATION_MODE_DOCUMENTS",
                refused.len(),
                refusals.join("; "),
                rule::RULE
            ),
            &refused,
        ));
    }
    let mut existing = Vec::new();
    for name in &names {
        if metadata::exists(target, name).await? {
            existing.push(name.clone());
        }
    }
    if !existing.is_empty() {
        return Err(JobFailure::permanent(
            codes::TARGET_INDEX_EXISTS,
            format!(
                "target indices already exist: {}; a restore cannot write into an existing \
                 open index (whatever the existing-index policy): delete them, or use \
                 MIGRATION_MODE_DOCUMENTS with EXISTING_INDEX_POLICY_REUSE",
                existing.join(", ")
            ),
        )
        .with("indices", existing.join(",")));
    }
    let wanted = cluster_metadata::Wanted {
        templates: spec.metadata.copy_templates,
        pipelines: spec.metadata.copy_ingest_pipelines,
        policies: spec.metadata.copy_lifecycle_policies,
    };
    let mut cluster_metadata = cluster_metadata::copy(source, target, wanted, &names).await?;
    cluster_metadata.extend(not_carried);
    let repository = options.repository().to_string();
    register(source, &repository, &options.source_location, false).await?;
    register(target, &repository, &options.target_location, true).await?;
    let warnings = ignored_options(&spec.metadata);
    let mut plan = MigrationPlan {
        source_version: source.version.number.clone(),
        target_version: target.version.number.clone(),
        point_in_time: false,
        indices: Vec::new(),
        cluster_metadata,
        snapshot: Some(SnapshotPlan {
            repository,
            snapshot: snapshot_name(job),
        }),
    };
    let mut docs = 0;
    for name in names {
        let docs_total = metadata::count(source, &name).await?;
        docs += docs_total;
        plan.indices.push(IndexPlan {
            name,
            docs_total,
            slices: 1,
            warnings: warnings.clone(),
        });
    }
    let partitions = if plan.indices.is_empty() {
        Vec::new()
    } else {
        vec![NewPartition {
            unit: snapshot_name(job),
            slice_id: 0,
            slice_count: 1,
            docs_total: docs,
        }]
    };
    Ok(Plan {
        details: serde_json::to_value(&plan).unwrap_or(Value::Null),
        partitions,
    })
}

/// Metadata options a restore cannot honour: settings and mappings come
/// with the snapshot.
fn ignored_options(spec: &MetadataSpec) -> Vec<String> {
    let mut warnings = Vec::new();
    if spec.skip_settings || spec.skip_mappings {
        warnings.push(
            "skip_settings / skip_mappings do not apply to a restore: the index is restored \
             with its settings and mappings"
                .to_string(),
        );
    }
    warnings
}

/// `index.version.created` of every index of `source`.
async fn created_versions(source: &SearchClient) -> Result<BTreeMap<String, Release>, JobFailure> {
    let body = source
        .expect(
            Method::GET,
            "/_settings/index.version.created?flat_settings=true",
            None,
        )
        .await?;
    let mut created = BTreeMap::new();
    for (name, index) in body.as_object().into_iter().flatten() {
        let id = index
            .pointer("/settings/index.version.created")
            .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64()));
        if let Some(id) = id {
            created.insert(name.clone(), Release::from_id(id));
        }
    }
    Ok(created)
}

/// Registers (or updates) the `fs` repository `name` at `location`.
async fn register(
    cluster: &SearchClient,
    name: &str,
    location: &str,
    readonly: bool,
) -> Result<(), JobFailure> {
    let mut settings = json!({ "location": location });
    if readonly {
        settings["readonly"] = json!(true);
    }
    let path = format!("/_snapshot/{}", encode_path_segment(name));
    let answer = cluster
        .call(
            Method::PUT,
            &path,
            Some(&json!({ "type": "fs", "settings": settings })),
        )
        .await?;
    if answer.ok() {
        return Ok(());
    }
    if answer.status.as_u16() == 429 || answer.status.as_u16() == 503 {
        return Err(cluster.refused(&Method::PUT, &path, &answer));
    }
    Err(JobFailure::permanent(
        codes::SNAPSHOT_REPOSITORY_REFUSED,
        format!(
            "cluster {} refused the fs repository {name} at {location}: {} \
             (the location must be listed in path.repo on every node{})",
            cluster.name,
            answer.reason(),
            if readonly {
                ", and be the directory the source writes"
            } else {
                ""
            }
        ),
    )
    .with("cluster", cluster.name.clone()))
}

fn snapshot_failed(plan: &SnapshotPlan, message: String) -> JobFailure {
    JobFailure::permanent(codes::SNAPSHOT_FAILED, message).with("snapshot", plan.snapshot.clone())
}

/// Runs the snapshot partition of a planned job from its checkpoint.
pub async fn run(
    spec: &MigrationSpec,
    options: &SnapshotSpec,
    plan: &MigrationPlan,
    source: &SearchClient,
    target: &SearchClient,
    partition: &PartitionRecord,
    lease: &Lease,
) -> Result<RunOutcome, JobFailure> {
    let Some(snapshot) = plan.snapshot.as_ref() else {
        return Err(JobFailure::permanent(
            codes::SPEC_UNREADABLE,
            "the job's plan names no snapshot",
        ));
    };
    let names: Vec<String> = plan.indices.iter().map(|i| i.name.clone()).collect();
    let mut cp = checkpoint_of(partition).unwrap_or_default();
    for name in &names {
        cp.indices.entry(name.clone()).or_default();
    }
    let repo = encode_path_segment(&snapshot.repository);
    let snap_path = format!(
        "/_snapshot/{repo}/{}",
        encode_path_segment(&snapshot.snapshot)
    );
    loop {
        match cp.phase {
            Phase::Pending | Phase::Snapshot => {
                cp.phase = Phase::Snapshot;
                if follow_snapshot(source, snapshot, &snap_path, &names, &mut cp).await? {
                    cp.phase = Phase::Restore;
                    continue;
                }
            }
            Phase::Restore => {
                if follow_restore(spec, options, target, snapshot, &snap_path, &names, &mut cp)
                    .await?
                {
                    for name in &names {
                        let docs = metadata::count(target, name).await?;
                        let state = cp.indices.entry(name.clone()).or_default();
                        state.docs = docs;
                        state.phase = Phase::Done;
                    }
                    cp.phase = Phase::Done;
                    continue;
                }
            }
            Phase::Done => {
                if options.delete_snapshot && !cp.deleted {
                    let answer = source.call(Method::DELETE, &snap_path, None).await?;
                    if !answer.ok() && answer.status.as_u16() != 404 {
                        return Err(source.refused(&Method::DELETE, &snap_path, &answer));
                    }
                    cp.deleted = true;
                }
                return match lease.checkpoint(&progress(&cp, true)).await? {
                    LeaseStatus::Continue { .. } => Ok(RunOutcome::Completed),
                    LeaseStatus::Stop => Ok(RunOutcome::Stopped),
                };
            }
        }
        if lease.checkpoint(&progress(&cp, false)).await? == LeaseStatus::Stop {
            return Ok(RunOutcome::Stopped);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The partition progress of `cp`: documents of the restored indices,
/// bytes recovered on the target.
fn progress(cp: &Checkpoint, finished: bool) -> PartitionProgress {
    let docs_done = cp.indices.values().map(|i| i.docs).sum();
    PartitionProgress {
        checkpoint: serde_json::to_value(cp).unwrap_or_default(),
        docs_done,
        bytes_done: cp.restore_bytes_done,
        docs_total: finished.then_some(docs_done),
        counters: BTreeMap::new(),
    }
}

/// One poll of the snapshot (creating it when missing); `true` once it
/// succeeded.
async fn follow_snapshot(
    source: &SearchClient,
    snapshot: &SnapshotPlan,
    snap_path: &str,
    names: &[String],
    cp: &mut Checkpoint,
) -> Result<bool, JobFailure> {
    let status_path = format!("{snap_path}/_status");
    let answer = source.call(Method::GET, &status_path, None).await?;
    if answer.status.as_u16() == 404 {
        cp.snapshot_requested = true;
        let body = json!({
            "indices": names.join(","),
            "include_global_state": false,
            "ignore_unavailable": false,
        });
        let path = format!("{snap_path}?wait_for_completion=false");
        let created = source.call(Method::PUT, &path, Some(&body)).await?;
        // A snapshot of that name that appeared meanwhile is ours.
        if !created.ok() && !created.reason().contains("already exists") {
            if created.status.is_server_error() || created.status.as_u16() == 429 {
                return Err(source.refused(&Method::PUT, &path, &created));
            }
            return Err(snapshot_failed(
                snapshot,
                format!(
                    "cluster {} refused the snapshot {}: {}",
                    source.name,
                    snapshot.snapshot,
                    created.reason()
                ),
            ));
        }
        for name in names {
            cp.indices.entry(name.clone()).or_default().phase = Phase::Snapshot;
        }
        return Ok(false);
    }
    if !answer.ok() {
        return Err(source.refused(&Method::GET, &status_path, &answer));
    }
    let status = &answer.body["snapshots"][0];
    read_snapshot_status(status, cp);
    for name in names {
        cp.indices.entry(name.clone()).or_default().phase = Phase::Snapshot;
    }
    match cp.snapshot_state.as_str() {
        "SUCCESS" => {
            // `_status` reports a PARTIAL snapshot as SUCCESS: ask the
            // snapshot itself.
            let info = source.expect(Method::GET, snap_path, None).await?;
            let info = &info["snapshots"][0];
            let state = info["state"].as_str().unwrap_or_default();
            if state == "SUCCESS" {
                return Ok(true);
            }
            cp.snapshot_state = state.to_string();
            Err(snapshot_failed(
                snapshot,
                format!(
                    "the snapshot {} ended {state} on {}: {}",
                    snapshot.snapshot, source.name, info["failures"]
                ),
            ))
        }
        "FAILED" | "ABORTED" | "PARTIAL" => Err(snapshot_failed(
            snapshot,
            format!(
                "the snapshot {} ended {} on {}",
                snapshot.snapshot, cp.snapshot_state, source.name
            ),
        )),
        _ => Ok(false),
    }
}

/// Reads shard and byte counts from one entry of `_snapshot/.../_status`
/// (Elasticsearch 7+ and OpenSearch nest `incremental` / `processed`;
/// older versions use flat names).
fn read_snapshot_status(status: &Value, cp: &mut Checkpoint) {
    let shards = &status["shards_stats"];
    let count = |v: &Value| v.as_u64().unwrap_or(0) as u32;
    cp.snapshot_state = status["state"].as_str().unwrap_or_default().to_string();
    cp.snapshot_shards_total = count(&shards["total"]);
    cp.snapshot_shards_done = count(&shards["done"]);
    let stats = &status["stats"];
    cp.snapshot_bytes_total = stats
        .pointer("/incremental/size_in_bytes")
        .or_else(|| stats.get("total_size_in_bytes"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    cp.snapshot_bytes_done = stats
        .pointer("/processed/size_in_bytes")
        .or_else(|| stats.get("processed_size_in_bytes"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
}

/// One poll of the restore (asking for it when not asked yet); `true` once
/// every primary shard is restored and no index is red.
async fn follow_restore(
    spec: &MigrationSpec,
    options: &SnapshotSpec,
    target: &SearchClient,
    snapshot: &SnapshotPlan,
    snap_path: &str,
    names: &[String],
    cp: &mut Checkpoint,
) -> Result<bool, JobFailure> {
    let mut present = 0;
    for name in names {
        if metadata::exists(target, name).await? {
            present += 1;
        }
    }
    if present == 0 {
        // Not asked yet, or asked and never started (a crash between the
        // checkpoint and the request): ask.
        start_restore(spec, options, target, snapshot, snap_path, names).await?;
        cp.restore_requested = true;
        for name in names {
            cp.indices.entry(name.clone()).or_default().phase = Phase::Restore;
        }
        return Ok(false);
    }
    if !cp.restore_requested {
        return Err(JobFailure::permanent(
            codes::TARGET_INDEX_EXISTS,
            format!(
                "indices selected for the restore were created on the target meanwhile ({present} of {}); \
                 a restore cannot write into an existing open index",
                names.len()
            ),
        ));
    }
    let joined = names
        .iter()
        .map(|n| encode_path_segment(n))
        .collect::<Vec<_>>()
        .join(",");
    let recovery = target
        .expect(Method::GET, &format!("/{joined}/_recovery"), None)
        .await?;
    let mut all_done = true;
    let (mut shards_total, mut shards_done, mut bytes_total, mut bytes_done) = (0, 0, 0, 0);
    for name in names {
        let shards: Vec<&Value> = recovery[name.as_str()]["shards"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| {
                s["primary"].as_bool() == Some(true)
                    && s["type"]
                        .as_str()
                        .is_some_and(|t| t.eq_ignore_ascii_case("snapshot"))
            })
            .collect();
        let state = cp.indices.entry(name.clone()).or_default();
        state.phase = Phase::Restore;
        state.bytes_total = 0;
        state.bytes_done = 0;
        if shards.is_empty() {
            all_done = false;
        }
        for shard in shards {
            let size = &shard["index"]["size"];
            let total = size["total_in_bytes"].as_u64().unwrap_or(0);
            let recovered = size["recovered_in_bytes"].as_u64().unwrap_or(0);
            state.bytes_total += total;
            state.bytes_done += recovered;
            shards_total += 1;
            if shard["stage"].as_str() == Some("DONE") {
                shards_done += 1;
            } else {
                all_done = false;
            }
        }
        bytes_total += state.bytes_total;
        bytes_done += state.bytes_done;
    }
    cp.restore_shards_total = shards_total;
    cp.restore_shards_done = shards_done;
    cp.restore_bytes_total = bytes_total;
    cp.restore_bytes_done = bytes_done;
    if !all_done {
        return Ok(false);
    }
    let health = target
        .call(
            Method::GET,
            &format!("/_cluster/health/{joined}?wait_for_status=yellow&timeout=1s"),
            None,
        )
        .await?;
    if health.body["status"].as_str() == Some("red") {
        cp.red_polls += 1;
        if cp.red_polls >= RED_POLLS {
            return Err(snapshot_failed(
                snapshot,
                format!(
                    "the restore of {} on {} ended with a red index (primary shards unassigned)",
                    snapshot.snapshot, target.name
                ),
            ));
        }
        return Ok(false);
    }
    Ok(true)
}

/// `POST <snapshot>/_restore` of `names` on the target, after registering
/// its read-only repository again.
async fn start_restore(
    spec: &MigrationSpec,
    options: &SnapshotSpec,
    target: &SearchClient,
    snapshot: &SnapshotPlan,
    snap_path: &str,
    names: &[String],
) -> Result<(), JobFailure> {
    register(target, &snapshot.repository, &options.target_location, true).await?;
    let mut body = json!({
        "indices": names.join(","),
        "include_global_state": false,
        "include_aliases": !spec.metadata.skip_aliases,
    });
    if !spec.metadata.settings_overrides.is_empty() {
        body["index_settings"] = json!(spec.metadata.settings_overrides);
    }
    if !spec.metadata.excluded_settings.is_empty() {
        body["ignore_index_settings"] = json!(spec.metadata.excluded_settings);
    }
    let path = format!("{snap_path}/_restore?wait_for_completion=false");
    let answer: Answer = target.call(Method::POST, &path, Some(&body)).await?;
    if answer.ok() {
        return Ok(());
    }
    if answer.status.as_u16() == 429 || answer.status.as_u16() == 503 {
        return Err(target.refused(&Method::POST, &path, &answer));
    }
    Err(snapshot_failed(
        snapshot,
        format!(
            "cluster {} refused to restore the snapshot {}: {}",
            target.name,
            snapshot.snapshot,
            answer.reason()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_status_is_read_in_both_formats() {
        let mut cp = Checkpoint::default();
        read_snapshot_status(
            &json!({
                "state": "STARTED",
                "shards_stats": { "total": 3, "done": 1 },
                "stats": {
                    "incremental": { "file_count": 9, "size_in_bytes": 900 },
                    "processed": { "file_count": 3, "size_in_bytes": 300 },
                    "total": { "file_count": 9, "size_in_bytes": 950 }
                }
            }),
            &mut cp,
        );
        assert_eq!((cp.snapshot_shards_total, cp.snapshot_shards_done), (3, 1));
        assert_eq!(
            (cp.snapshot_bytes_total, cp.snapshot_bytes_done),
            (900, 300)
        );
        read_snapshot_status(
            &json!({
                "state": "SUCCESS",
                "shards_stats": { "total": 2, "done": 2 },
                "stats": { "total_size_in_bytes": 40, "processed_size_in_bytes": 40 }
            }),
            &mut cp,
        );
        assert_eq!(cp.snapshot_state, "SUCCESS");
        assert_eq!((cp.snapshot_bytes_total, cp.snapshot_bytes_done), (40, 40));
    }
}
