//! The dead-letter store: replication ops the backup refused for good.
//!
//! An op lands here only when retrying cannot help (e.g. a mapping conflict
//! on the backup, a document the backup's version cannot hold). Nothing
//! leaves the queue without being applied or stored here, and nothing
//! leaves this store without an operator deciding: **retry** re-applies
//! the op (after fixing the cause), **skip** discards it and says so in the
//! log.
//!
//! The store is small by nature and kept as one JSON file, rewritten
//! atomically (temporary file, `fsync`, rename, directory `fsync`) on every
//! change, before the queue acknowledges the op that produced the entry.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use tandem_es::ops::ReplicationOp;

/// One op the backup refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Identifier within this store, increasing.
    pub id: u64,
    /// Queue offset of the record the op came from.
    pub queue_offset: u64,
    /// Op kind (`index`, `delete`, ...).
    pub kind: String,
    /// Target index, when the op has one.
    pub index: Option<String>,
    /// Document id, when the op has one.
    pub doc_id: Option<String>,
    /// The primary's version, when the op has one.
    pub version: Option<i64>,
    /// HTTP status of the refusal (0 when there was no response).
    pub status: u16,
    /// What the backup said.
    pub reason: String,
    /// When it was dead-lettered, unix milliseconds.
    pub failed_at_ms: u64,
    /// Retries attempted by operators so far.
    pub retries: u32,
    /// The op, in queue encoding (base64), so a retry re-applies exactly it.
    op: String,
}

impl DeadLetter {
    /// Decodes the stored op.
    pub fn op(&self) -> Result<ReplicationOp, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.op)
            .map_err(|e| format!("dead letter {}: bad base64: {e}", self.id))?;
        ReplicationOp::decode(&bytes).map_err(|e| format!("dead letter {}: {e}", self.id))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoreFile {
    next_id: u64,
    entries: Vec<DeadLetter>,
}

/// Durable dead-letter store in one directory.
#[derive(Debug)]
pub struct DeadLetterStore {
    path: PathBuf,
    state: Mutex<StoreFile>,
}

/// Dead-letter store failures.
#[derive(Debug, thiserror::Error)]
#[error("dead-letter store {path}: {message}")]
pub struct DeadLetterError {
    path: String,
    message: String,
}

impl DeadLetterStore {
    /// Opens (or creates) the store `dead_letters.json` in `dir`.
    pub fn open(dir: &Path) -> Result<DeadLetterStore, DeadLetterError> {
        let path = dir.join("dead_letters.json");
        let err = |message: String| DeadLetterError {
            path: path.display().to_string(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(format!("create directory: {e}")))?;
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| err(format!("unreadable ({e}); fix or move the file aside")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoreFile::default(),
            Err(e) => return Err(err(format!("read: {e}"))),
        };
        Ok(DeadLetterStore {
            path,
            state: Mutex::new(state),
        })
    }

    /// Stores `op` as refused with `status` / `reason`; durable on return.
    pub fn add(
        &self,
        queue_offset: u64,
        op: &ReplicationOp,
        status: u16,
        reason: &str,
    ) -> Result<u64, DeadLetterError> {
        let mut state = self.state.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.entries.push(DeadLetter {
            id,
            queue_offset,
            kind: op.kind_name().to_string(),
            index: op.index().map(|i| i.into_owned()),
            doc_id: op.id().map(str::to_string),
            version: op.version(),
            status,
            reason: reason.to_string(),
            failed_at_ms: now_ms(),
            retries: 0,
            op: base64::engine::general_purpose::STANDARD.encode(op.encode()),
        });
        self.persist(&state)?;
        Ok(id)
    }

    /// Every entry, oldest first.
    pub fn list(&self) -> Vec<DeadLetter> {
        self.state.lock().entries.clone()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.state.lock().entries.len()
    }

    /// True when the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries with the given ids (all when `ids` is `None`).
    pub fn select(&self, ids: Option<&[u64]>) -> Vec<DeadLetter> {
        self.state
            .lock()
            .entries
            .iter()
            .filter(|e| ids.is_none_or(|ids| ids.contains(&e.id)))
            .cloned()
            .collect()
    }

    /// Removes the entries with `ids`; returns how many were removed.
    pub fn remove(&self, ids: &[u64]) -> Result<usize, DeadLetterError> {
        let mut state = self.state.lock();
        let before = state.entries.len();
        state.entries.retain(|e| !ids.contains(&e.id));
        let removed = before - state.entries.len();
        if removed > 0 {
            self.persist(&state)?;
        }
        Ok(removed)
    }

    /// Records a failed retry of entry `id` with the new reason.
    pub fn record_retry_failure(
        &self,
        id: u64,
        status: u16,
        reason: &str,
    ) -> Result<(), DeadLetterError> {
        let mut state = self.state.lock();
        if let Some(entry) = state.entries.iter_mut().find(|e| e.id == id) {
            entry.retries += 1;
            entry.status = status;
            entry.reason = reason.to_string();
        }
        self.persist(&state)
    }

    fn persist(&self, state: &StoreFile) -> Result<(), DeadLetterError> {
        let err = |message: String| DeadLetterError {
            path: self.path.display().to_string(),
            message,
        };
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| err(format!("encode: {e}")))?;
        let mut file = std::fs::File::create(&tmp).map_err(|e| err(format!("create: {e}")))?;
        file.write_all(&bytes)
            .and_then(|_| file.sync_all())
            .map_err(|e| err(format!("write: {e}")))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| err(format!("rename: {e}")))?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| err(format!("sync directory: {e}")))?;
        }
        Ok(())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delete_op(id: &str) -> ReplicationOp {
        ReplicationOp::Delete {
            index: "orders".into(),
            doc_type: None,
            id: id.into(),
            routing: None,
            version: 7,
        }
    }

    #[test]
    fn entries_survive_reopen_and_keep_their_op() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeadLetterStore::open(dir.path()).unwrap();
        let a = store
            .add(10, &delete_op("a"), 400, "mapper_parsing_exception: boom")
            .unwrap();
        let b = store.add(11, &delete_op("b"), 400, "boom").unwrap();
        assert_eq!((a, b), (0, 1));
        drop(store);

        let store = DeadLetterStore::open(dir.path()).unwrap();
        let entries = store.list();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].doc_id.as_deref(), Some("a"));
        assert_eq!(entries[0].op().unwrap(), delete_op("a"));
        // Ids keep increasing after a reopen.
        assert_eq!(store.add(12, &delete_op("c"), 400, "x").unwrap(), 2);
    }

    #[test]
    fn remove_only_named_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeadLetterStore::open(dir.path()).unwrap();
        for (offset, id) in ["a", "b", "c"].iter().enumerate() {
            store.add(offset as u64, &delete_op(id), 400, "x").unwrap();
        }
        assert_eq!(store.remove(&[0, 2, 99]).unwrap(), 2);
        let left: Vec<_> = store.list().into_iter().map(|e| e.id).collect();
        assert_eq!(left, vec![1]);
    }

    #[test]
    fn corrupt_store_file_is_reported_not_discarded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dead_letters.json"), b"{not json").unwrap();
        let err = DeadLetterStore::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("unreadable"), "{err}");
        // The file is left for the operator.
        assert!(dir.path().join("dead_letters.json").exists());
    }
}
