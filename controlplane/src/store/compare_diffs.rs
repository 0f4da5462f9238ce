//! The `compare_diffs` table: document differences confirmed by a
//! comparison job's recheck (`migrations/0008_compare.sql`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tandem_proto::v1 as pb;
use uuid::Uuid;

use crate::store::StoreError;

/// A difference to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDiff {
    /// Index.
    pub index: String,
    /// Document id.
    pub doc_id: String,
    /// Kind.
    pub kind: pb::DiffKind,
    /// Source `_version`; `None` when missing there.
    pub source_version: Option<i64>,
    /// Target `_version`; `None` when missing there.
    pub target_version: Option<i64>,
    /// Source `_source` hash; empty when missing there.
    pub source_hash: String,
    /// Target `_source` hash; empty when missing there.
    pub target_hash: String,
    /// Custom routing, empty when none.
    pub routing: String,
    /// Digest partition id (`index#number`).
    pub partition_id: String,
}

/// A recorded difference.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DiffRecord {
    /// Order of recording.
    pub diff_no: i64,
    /// Id.
    pub id: Uuid,
    /// Index.
    pub index_name: String,
    /// Document id.
    pub doc_id: String,
    /// Stored kind name.
    pub kind: String,
    /// Source `_version`.
    pub source_version: Option<i64>,
    /// Target `_version`.
    pub target_version: Option<i64>,
    /// Source hash.
    pub source_hash: String,
    /// Target hash.
    pub target_hash: String,
    /// Routing.
    pub routing: String,
    /// Digest partition id.
    pub partition_id: String,
    /// When recorded.
    pub detected_at: DateTime<Utc>,
    /// When RepairCompareDiffs found it equal on both sides.
    pub repaired_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "diff_no, id, index_name, doc_id, kind, source_version, target_version, \
                       source_hash, target_hash, routing, partition_id, detected_at, repaired_at";

/// Stored name of a difference kind.
pub fn kind_name(kind: pb::DiffKind) -> &'static str {
    match kind {
        pb::DiffKind::Unspecified | pb::DiffKind::MissingInTarget => "missing_in_target",
        pb::DiffKind::ExtraInTarget => "extra_in_target",
        pb::DiffKind::ContentDiffers => "content_differs",
        pb::DiffKind::VersionDiffers => "version_differs",
    }
}

/// The kind of a stored name.
pub fn kind_of(name: &str) -> pb::DiffKind {
    match name {
        "missing_in_target" => pb::DiffKind::MissingInTarget,
        "extra_in_target" => pb::DiffKind::ExtraInTarget,
        "content_differs" => pb::DiffKind::ContentDiffers,
        "version_differs" => pb::DiffKind::VersionDiffers,
        _ => pb::DiffKind::Unspecified,
    }
}

/// Records `diffs` of job `job_id`, keeping at most `max` differences for
/// the job: differences already recorded are updated, new ones are added
/// while room remains. Returns how many could not be recorded.
pub async fn record(
    pool: &PgPool,
    job_id: Uuid,
    max: u64,
    diffs: &[NewDiff],
) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    // One recorder at a time per job, so the cap holds exactly.
    sqlx::query("SELECT id FROM jobs WHERE id = $1 FOR UPDATE")
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
    let (mut stored,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM compare_diffs WHERE job_id = $1")
            .bind(job_id)
            .fetch_one(&mut *tx)
            .await?;
    let mut dropped = 0;
    for diff in diffs {
        let (known,): (bool,) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM compare_diffs \
             WHERE job_id = $1 AND index_name = $2 AND doc_id = $3)",
        )
        .bind(job_id)
        .bind(&diff.index)
        .bind(&diff.doc_id)
        .fetch_one(&mut *tx)
        .await?;
        if !known && stored as u64 >= max {
            dropped += 1;
            continue;
        }
        sqlx::query(
            "INSERT INTO compare_diffs (job_id, index_name, doc_id, kind, source_version, \
               target_version, source_hash, target_hash, routing, partition_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (job_id, index_name, doc_id) DO UPDATE SET kind = EXCLUDED.kind, \
               source_version = EXCLUDED.source_version, \
               target_version = EXCLUDED.target_version, \
               source_hash = EXCLUDED.source_hash, target_hash = EXCLUDED.target_hash, \
               routing = EXCLUDED.routing, partition_id = EXCLUDED.partition_id, \
               detected_at = now()",
        )
        .bind(job_id)
        .bind(&diff.index)
        .bind(&diff.doc_id)
        .bind(kind_name(diff.kind))
        .bind(diff.source_version)
        .bind(diff.target_version)
        .bind(&diff.source_hash)
        .bind(&diff.target_hash)
        .bind(&diff.routing)
        .bind(&diff.partition_id)
        .execute(&mut *tx)
        .await?;
        if !known {
            stored += 1;
        }
    }
    tx.commit().await?;
    Ok(dropped)
}

/// Filters of [`list`] and [`count`].
#[derive(Debug, Clone, Default)]
pub struct DiffFilter {
    /// Only this index.
    pub index: Option<String>,
    /// Only these kinds; empty means any.
    pub kinds: Vec<pb::DiffKind>,
}

impl DiffFilter {
    fn kind_names(&self) -> Vec<&'static str> {
        self.kinds.iter().map(|k| kind_name(*k)).collect()
    }
}

/// Differences of `job_id` by index then document id, after the key
/// `(index, doc_id)`.
pub async fn list(
    pool: &PgPool,
    job_id: Uuid,
    filter: &DiffFilter,
    after: Option<(String, String)>,
    limit: i64,
) -> Result<Vec<DiffRecord>, StoreError> {
    let (after_index, after_doc) = after.unzip();
    let rows = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM compare_diffs \
         WHERE job_id = $1 \
           AND ($2::text IS NULL OR index_name = $2) \
           AND (cardinality($3::text[]) = 0 OR kind = ANY($3)) \
           AND ($4::text IS NULL OR (index_name, doc_id) > ($4, $5)) \
         ORDER BY index_name, doc_id LIMIT $6"
    ))
    .bind(job_id)
    .bind(filter.index.as_deref())
    .bind(filter.kind_names())
    .bind(after_index)
    .bind(after_doc.unwrap_or_default())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// Number of differences of `job_id` matching `filter`.
pub async fn count(pool: &PgPool, job_id: Uuid, filter: &DiffFilter) -> Result<u64, StoreError> {
    let (count,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM compare_diffs \
         WHERE job_id = $1 \
           AND ($2::text IS NULL OR index_name = $2) \
           AND (cardinality($3::text[]) = 0 OR kind = ANY($3))",
    )
    .bind(job_id)
    .bind(filter.index.as_deref())
    .bind(filter.kind_names())
    .fetch_one(pool)
    .await?;
    Ok(count.max(0) as u64)
}

/// Differences of `job_id` first recorded after `diff_no`, in
/// recording order.
pub async fn recorded_after(
    pool: &PgPool,
    job_id: Uuid,
    diff_no: i64,
    limit: i64,
) -> Result<Vec<DiffRecord>, StoreError> {
    let rows = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM compare_diffs WHERE job_id = $1 AND diff_no > $2 \
         ORDER BY diff_no LIMIT $3"
    ))
    .bind(job_id)
    .bind(diff_no)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// The largest `diff_no` of `job_id` (0 when none).
pub async fn last_diff_no(pool: &PgPool, job_id: Uuid) -> Result<i64, StoreError> {
    let (last,): (Option<i64>,) =
        sqlx::query_as("SELECT max(diff_no) FROM compare_diffs WHERE job_id = $1")
            .bind(job_id)
            .fetch_one(pool)
            .await?;
    Ok(last.unwrap_or(0))
}

/// Differences of `job_id` not repaired yet, of `kinds` (any when empty),
/// oldest first.
pub async fn unrepaired(
    pool: &PgPool,
    job_id: Uuid,
    kinds: &[pb::DiffKind],
    limit: i64,
) -> Result<Vec<DiffRecord>, StoreError> {
    let kinds: Vec<&str> = kinds.iter().map(|k| kind_name(*k)).collect();
    let rows = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM compare_diffs \
         WHERE job_id = $1 AND repaired_at IS NULL \
           AND (cardinality($2::text[]) = 0 OR kind = ANY($2)) \
         ORDER BY diff_no LIMIT $3"
    ))
    .bind(job_id)
    .bind(kinds)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// Marks the differences `ids` of `job_id` repaired now.
pub async fn mark_repaired(pool: &PgPool, job_id: Uuid, ids: &[Uuid]) -> Result<(), StoreError> {
    sqlx::query("UPDATE compare_diffs SET repaired_at = now() WHERE job_id = $1 AND id = ANY($2)")
        .bind(job_id)
        .bind(ids)
        .execute(pool)
        .await?;
    Ok(())
}
