//! Repairing what a comparison found: the documents of a finished job's
//! differences are reconciled by a gateway of the replication task that
//! replicates the job's source to its target (the gateway queues each as a
//! read-repair op; its replayer reads the document from the primary and
//! makes it true on the backup, version-fenced — the same path as replay,
//! see `dataplane/src/reconcile.rs`), then compared again here until each
//! is equal or the recheck time runs out.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::digest::SourceMatch;
use super::read::{DocSummary, lookup};
use crate::jobs::JobFailure;
use crate::migration::search::SearchClient;
use crate::store::compare_diffs::DiffRecord;

/// Pause between two rechecks.
const RECHECK_EVERY: Duration = Duration::from_millis(500);

/// Whether the target now holds what the source holds: both absent, or the
/// same `_source` with the target's version at or above the source's
/// (unless versions are ignored).
pub fn converged(
    source: Option<&DocSummary>,
    target: Option<&DocSummary>,
    ignore_versions: bool,
) -> bool {
    match (source, target) {
        (None, None) => true,
        (Some(s), Some(t)) => s.hash == t.hash && (ignore_versions || t.version >= s.version),
        _ => false,
    }
}

/// Reads the documents of `diffs` on both clusters again, every
/// [`RECHECK_EVERY`] until all have converged or `timeout` ran out; returns
/// the ids of the differences that converged.
pub async fn recheck(
    source: &SearchClient,
    target: &SearchClient,
    diffs: &[DiffRecord],
    mode: SourceMatch,
    ignore_versions: bool,
    timeout: Duration,
) -> Result<Vec<Uuid>, JobFailure> {
    let deadline = Instant::now() + timeout;
    let mut open: Vec<&DiffRecord> = diffs.iter().collect();
    let mut converged_ids = Vec::new();
    loop {
        let mut by_index: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for diff in &open {
            by_index
                .entry(diff.index_name.as_str())
                .or_default()
                .push(diff.doc_id.clone());
        }
        let mut seen: HashMap<(String, String), [Option<DocSummary>; 2]> = HashMap::new();
        for (index, ids) in &by_index {
            for (side, client) in [(0, source), (1, target)] {
                let exists = crate::migration::metadata::exists(client, index).await?;
                for doc in lookup(client, index, exists, ids, mode).await? {
                    let key = (index.to_string(), doc.id.clone());
                    seen.entry(key).or_default()[side] = Some(doc);
                }
            }
        }
        open.retain(|diff| {
            let [s, t] = seen
                .get(&(diff.index_name.clone(), diff.doc_id.clone()))
                .cloned()
                .unwrap_or_default();
            let done = converged(s.as_ref(), t.as_ref(), ignore_versions);
            if done {
                converged_ids.push(diff.id);
            }
            !done
        });
        if open.is_empty() || Instant::now() >= deadline {
            return Ok(converged_ids);
        }
        tokio::time::sleep(RECHECK_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(version: i64, hash: &str) -> DocSummary {
        DocSummary {
            id: "1".into(),
            version,
            hash: hash.into(),
            routing: String::new(),
        }
    }

    #[test]
    fn a_target_at_or_ahead_of_the_source_with_the_same_content_has_converged() {
        assert!(converged(None, None, false));
        assert!(converged(Some(&doc(3, "h")), Some(&doc(3, "h")), false));
        assert!(converged(Some(&doc(1, "h")), Some(&doc(5, "h")), false));
        assert!(!converged(Some(&doc(5, "h")), Some(&doc(1, "h")), false));
        assert!(converged(Some(&doc(5, "h")), Some(&doc(1, "h")), true));
        assert!(!converged(Some(&doc(3, "h")), Some(&doc(3, "x")), false));
        assert!(!converged(Some(&doc(3, "h")), None, false));
        assert!(!converged(None, Some(&doc(3, "h")), false));
    }
}
