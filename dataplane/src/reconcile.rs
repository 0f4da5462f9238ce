//! Reconciliation: make the backup hold what the primary holds now, for one
//! document, version-fenced.
//!
//! Every path that finds (or suspects) a document differing between the
//! clusters ends here: a replay version conflict that is not provably
//! older (`tandem_es::docstate`), and the documents named by a write whose
//! outcome on the primary is unknown. One mechanism, so one set of
//! guarantees:
//!
//! 1. Read the document from both clusters. Same content (or both absent)
//!    → nothing to do.
//! 2. Otherwise write the primary's state to the backup with
//!    `external_gte` at the primary's `_version` — or, when the backup
//!    holds a higher version (a tombstone kept by the raised
//!    `index.gc_deletes`, or a document from before a re-creation), at
//!    one above the backup's version. The backup's `_version` then runs
//!    ahead of the primary's until the primary's passes it; content is
//!    equal, and every later record of the document is again fenced
//!    (it conflicts and is reconciled, never applied blindly).
//! 3. A write above the primary's version can have overwritten a newer
//!    record of the document that reached the backup between our read and
//!    our write, so such a write is always followed by another round of
//!    step 1 (reading the primary afresh). A write at the primary's own
//!    version needs no check: any newer primary write has a higher version
//!    and its record still applies.
//!
//! Rounds are bounded ([`MAX_ROUNDS`]); a document that keeps changing is
//! reported as retryable and the caller tries again later.

use std::future::Future;

use tandem_es::ItemOutcome;
use tandem_es::docstate::{DocKey, DocState};
use tandem_es::ops::ReplicationOp;

/// Most read/compare/write rounds for one document per attempt.
pub const MAX_ROUNDS: usize = 6;

/// Which cluster to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The cluster the gateway forwards to (the truth).
    Primary,
    /// The replay target.
    Backup,
}

/// Why a reconciliation did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconcileError {
    /// Worth trying again later (a cluster is unavailable, the document
    /// kept changing).
    #[error("{0}")]
    Retryable(String),
    /// Will not succeed by retrying (the backup refuses the document, the
    /// document has no `_source`): dead-letter it.
    #[error("{status}: {reason}")]
    Failed {
        /// HTTP status (0 when absent).
        status: u16,
        /// Why.
        reason: String,
    },
}

/// How a reconciliation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// Both clusters already held the same document.
    InSync,
    /// The backup was different and now holds the primary's document.
    Repaired {
        /// The version written to the backup.
        version: i64,
        /// How far the backup's `_version` runs ahead of the primary's
        /// (0 when they are equal).
        ahead_by: i64,
    },
}

/// Document reads and replay writes on the two clusters.
pub trait DocIo {
    /// The document's current state on `side`.
    fn read(
        &self,
        side: Side,
        key: &DocKey,
    ) -> impl Future<Output = Result<DocState, ReconcileError>> + Send;

    /// Applies an index or delete op to the backup with `external_gte` at
    /// the op's version.
    fn write(&self, op: &ReplicationOp) -> impl Future<Output = ItemOutcome> + Send;
}

/// Makes the backup hold the primary's current state of `key` (see the
/// module documentation).
pub async fn reconcile<I: DocIo>(io: &I, key: &DocKey) -> Result<Reconciled, ReconcileError> {
    // Lowest version the backup is known to accept, learned from conflicts.
    let mut floor = 1;
    let mut written: Option<(i64, i64)> = None;
    for _ in 0..MAX_ROUNDS {
        let primary = io.read(Side::Primary, key).await?;
        let backup = io.read(Side::Backup, key).await?;
        if primary.same_content(&backup) {
            return Ok(match written {
                None => Reconciled::InSync,
                Some((version, primary_version)) => Reconciled::Repaired {
                    version,
                    ahead_by: version.saturating_sub(primary_version).max(0),
                },
            });
        }
        let primary_version = primary.version().unwrap_or(0);
        let mut version = primary_version.max(floor);
        // Strictly above what the backup holds: a stale record carrying
        // the backup's current version must not overwrite the repair.
        if let Some(held) = backup.version()
            && held >= version
        {
            version = held + 1;
        }
        match io.write(&primary.to_op(key, version)).await {
            ItemOutcome::Applied => {
                if version <= primary_version {
                    return Ok(Reconciled::Repaired {
                        version,
                        ahead_by: 0,
                    });
                }
                // Above the primary's version: check nothing newer was
                // overwritten (next round compares afresh).
                written = Some((version, primary_version));
            }
            ItemOutcome::VersionConflict { current } => {
                floor = floor.max(current.map_or(version, |c| c) + 1);
            }
            ItemOutcome::Retryable { status, reason } => {
                return Err(ReconcileError::Retryable(format!("{status}: {reason}")));
            }
            ItemOutcome::Failed { status, reason } => {
                return Err(ReconcileError::Failed { status, reason });
            }
        }
    }
    Err(ReconcileError::Retryable(format!(
        "document [{}] in [{}] kept changing over {MAX_ROUNDS} rounds",
        key.id, key.index
    )))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bytes::Bytes;
    use parking_lot::Mutex;

    use super::*;

    /// A cluster's documents under external versioning: a live document or
    /// a tombstone (`None`) per id, each with its version.
    #[derive(Default)]
    struct Cluster(HashMap<String, (i64, Option<String>)>);

    /// Runs after every applied backup write.
    type WriteHook = Box<dyn FnMut(&Model) + Send>;

    /// Both clusters, with a hook run after every backup write (a
    /// concurrent client of the primary).
    #[derive(Default)]
    struct Model {
        primary: Mutex<Cluster>,
        backup: Mutex<Cluster>,
        writes: Mutex<Vec<(i64, Option<String>)>>,
        after_write: Mutex<Option<WriteHook>>,
    }

    impl Model {
        fn set(cluster: &Mutex<Cluster>, id: &str, version: i64, doc: Option<&str>) {
            cluster
                .lock()
                .0
                .insert(id.into(), (version, doc.map(String::from)));
        }

        fn state(cluster: &Mutex<Cluster>, id: &str) -> DocState {
            match cluster.lock().0.get(id) {
                Some((version, Some(doc))) => DocState::Present {
                    version: *version,
                    source: Bytes::from(doc.clone()),
                    doc_type: None,
                    routing: None,
                },
                _ => DocState::Absent,
            }
        }
    }

    impl DocIo for Model {
        async fn read(&self, side: Side, key: &DocKey) -> Result<DocState, ReconcileError> {
            Ok(Model::state(
                match side {
                    Side::Primary => &self.primary,
                    Side::Backup => &self.backup,
                },
                &key.id,
            ))
        }

        async fn write(&self, op: &ReplicationOp) -> ItemOutcome {
            let version = op.version().unwrap();
            let doc = match op {
                ReplicationOp::Index { source, .. } => {
                    Some(String::from_utf8(source.to_vec()).unwrap())
                }
                _ => None,
            };
            {
                let mut backup = self.backup.lock();
                let id = op.id().unwrap().to_string();
                if let Some((held, _)) = backup.0.get(&id)
                    && *held > version
                {
                    return ItemOutcome::VersionConflict {
                        current: Some(*held),
                    };
                }
                if doc.as_deref() == Some("refused") {
                    return ItemOutcome::Failed {
                        status: 400,
                        reason: "mapper_parsing_exception".into(),
                    };
                }
                backup.0.insert(id, (version, doc.clone()));
            }
            self.writes.lock().push((version, doc));
            if let Some(hook) = self.after_write.lock().as_mut() {
                hook(self);
            }
            ItemOutcome::Applied
        }
    }

    fn key(id: &str) -> DocKey {
        DocKey {
            index: "i".into(),
            doc_type: None,
            id: id.into(),
            routing: None,
        }
    }

    async fn run(model: &Model) -> Result<Reconciled, ReconcileError> {
        reconcile(model, &key("x")).await
    }

    #[tokio::test]
    async fn equal_documents_are_left_alone() {
        let model = Model::default();
        Model::set(&model.primary, "x", 3, Some(r#"{"a":1}"#));
        Model::set(&model.backup, "x", 3, Some(r#"{ "a": 1 }"#));
        assert_eq!(run(&model).await, Ok(Reconciled::InSync));
        let both_absent = Model::default();
        Model::set(&both_absent.backup, "x", 9, None);
        assert_eq!(run(&both_absent).await, Ok(Reconciled::InSync));
        assert!(model.writes.lock().is_empty() && both_absent.writes.lock().is_empty());
    }

    #[tokio::test]
    async fn a_document_recreated_below_the_backups_tombstone_is_written_above_it() {
        let model = Model::default();
        // Deleted at v4 (the backup keeps the tombstone), re-created on the
        // primary after its own tombstone was pruned: v1 again.
        Model::set(&model.primary, "x", 1, Some(r#"{"new":true}"#));
        Model::set(&model.backup, "x", 4, None);
        assert_eq!(
            run(&model).await,
            Ok(Reconciled::Repaired {
                version: 5,
                ahead_by: 4
            })
        );
        assert!(Model::state(&model.backup, "x").same_content(&Model::state(&model.primary, "x")));
        // A stale record of the old life (the delete at v4) is refused now.
        assert!(matches!(
            model.write(&DocState::Absent.to_op(&key("x"), 4)).await,
            ItemOutcome::VersionConflict { current: Some(5) }
        ));
    }

    #[tokio::test]
    async fn a_stale_backup_gets_the_primarys_version() {
        let model = Model::default();
        Model::set(&model.primary, "x", 7, Some(r#"{"v":7}"#));
        Model::set(&model.backup, "x", 5, Some(r#"{"v":5}"#));
        assert_eq!(
            run(&model).await,
            Ok(Reconciled::Repaired {
                version: 7,
                ahead_by: 0
            })
        );
        assert_eq!(*model.writes.lock(), vec![(7, Some(r#"{"v":7}"#.into()))]);
    }

    #[tokio::test]
    async fn a_document_gone_from_the_primary_is_deleted_above_the_backups_version() {
        let model = Model::default();
        Model::set(&model.backup, "x", 3, Some(r#"{"left":"over"}"#));
        assert_eq!(
            run(&model).await,
            Ok(Reconciled::Repaired {
                version: 4,
                ahead_by: 4
            })
        );
        assert_eq!(Model::state(&model.backup, "x"), DocState::Absent);
    }

    #[tokio::test]
    async fn a_primary_write_racing_an_inflated_repair_is_not_lost() {
        let model = Model::default();
        Model::set(&model.primary, "x", 1, Some(r#"{"n":1}"#));
        Model::set(&model.backup, "x", 4, None);
        // Right after the repair's write (above the primary's version), the
        // primary takes another write whose record the backup would now
        // refuse. The next round must see the primary moved and write its
        // new state.
        let mut fired = false;
        *model.after_write.lock() = Some(Box::new(move |m: &Model| {
            if !fired {
                fired = true;
                Model::set(&m.primary, "x", 2, Some(r#"{"n":2}"#));
            }
        }));
        let outcome = run(&model).await.unwrap();
        assert!(
            matches!(outcome, Reconciled::Repaired { version: 6, .. }),
            "{outcome:?}"
        );
        assert!(Model::state(&model.backup, "x").same_content(&Model::state(&model.primary, "x")));
    }

    #[tokio::test]
    async fn a_conflict_raises_the_floor_above_an_unseen_tombstone() {
        let model = Model::default();
        Model::set(&model.primary, "x", 2, Some(r#"{"n":2}"#));
        // The backup read sees nothing (a tombstone has no visible version).
        Model::set(&model.backup, "x", 8, None);
        assert_eq!(
            run(&model).await,
            Ok(Reconciled::Repaired {
                version: 9,
                ahead_by: 7
            })
        );
        assert_eq!(model.writes.lock().len(), 1);
    }

    #[tokio::test]
    async fn a_document_the_backup_refuses_is_a_failure_not_a_loop() {
        let model = Model::default();
        Model::set(&model.primary, "x", 2, Some("refused"));
        assert!(matches!(
            run(&model).await,
            Err(ReconcileError::Failed { status: 400, .. })
        ));
    }

    #[tokio::test]
    async fn a_document_that_never_settles_is_retryable() {
        let model = Model::default();
        Model::set(&model.primary, "x", 1, Some(r#"{"n":1}"#));
        Model::set(&model.backup, "x", 4, None);
        let mut n = 1;
        *model.after_write.lock() = Some(Box::new(move |m: &Model| {
            n += 1;
            Model::set(&m.primary, "x", n, Some(&format!(r#"{{"n":{n}}}"#)));
        }));
        assert!(matches!(
            run(&model).await,
            Err(ReconcileError::Retryable(_))
        ));
    }
}
