//! Consumer ledgers: one small JSON file per consumer holding its durable
//! acknowledged offset and the regions `repair` told it to skip.
//!
//! Written atomically: temp file, fsync, rename over the old one, fsync the
//! directory. A crash leaves either the old or the new ledger, never a mix.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{IoContext, QueueError};
use super::segment::{SegmentPos, sync_dir};

const LEDGER_SUFFIX: &str = ".consumer";
const TEMP_SUFFIX: &str = ".tmp";
const FORMAT_VERSION: u32 = 1;
/// Repairs kept for history once the consumer is past them.
const REPAIR_HISTORY: usize = 64;

/// The durable state of one consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ledger {
    /// Format version of this file.
    pub version: u32,
    /// Every offset below this one is acknowledged.
    pub next_offset: u64,
    /// Where the frame of `next_offset` starts (or will be written).
    pub position: Option<SegmentPos>,
    /// Corrupt regions skipped by `repair`, oldest first.
    pub skips: Vec<Skip>,
    /// Records lost to repairs, in total.
    #[serde(default)]
    pub records_lost: u64,
}

/// A corrupt region that `repair` declared lost for this consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Skip {
    /// Where the reader found the corruption.
    pub at: SegmentPos,
    /// Offset the reader expected there.
    pub first_lost_offset: u64,
    /// Where reading resumes.
    pub resume: SegmentPos,
    /// Offset of the first record at `resume`.
    pub resume_offset: u64,
    /// Bytes between `at` and `resume` (within `at`'s segment).
    pub bytes_skipped: u64,
    /// When the repair was made, unix milliseconds.
    pub repaired_at_ms: u64,
}

impl Ledger {
    /// A ledger for a consumer starting at `next_offset`, found at `position`.
    pub fn new(next_offset: u64, position: SegmentPos) -> Ledger {
        Ledger {
            version: FORMAT_VERSION,
            next_offset,
            position: Some(position),
            skips: Vec::new(),
            records_lost: 0,
        }
    }

    /// The skip registered for corruption found at `at`.
    pub fn skip_at(&self, at: SegmentPos) -> Option<&Skip> {
        self.skips.iter().rev().find(|s| s.at == at)
    }

    /// Drops the oldest skips the consumer is past, keeping some history.
    pub fn prune_skips(&mut self) {
        let mut excess = self.skips.len().saturating_sub(REPAIR_HISTORY);
        let next = self.next_offset;
        self.skips.retain(|s| {
            let drop = excess > 0 && s.resume_offset <= next;
            excess -= usize::from(drop);
            !drop
        });
    }
}

/// Path of `consumer`'s ledger in `dir`.
pub(crate) fn path(dir: &Path, consumer: &str) -> PathBuf {
    dir.join(format!("{consumer}{LEDGER_SUFFIX}"))
}

/// Loads every ledger in `dir`, by consumer name, and removes temp files
/// left by an interrupted [`store`].
pub(crate) fn load_all(dir: &Path) -> Result<Vec<(String, Ledger)>, QueueError> {
    let mut ledgers = Vec::new();
    let entries = fs::read_dir(dir).context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.context(|| format!("listing {}", dir.display()))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.ends_with(TEMP_SUFFIX) {
            fs::remove_file(&path).context(|| format!("removing {}", path.display()))?;
        } else if let Some(consumer) = name.strip_suffix(LEDGER_SUFFIX) {
            ledgers.push((consumer.to_owned(), load(&path)?));
        }
    }
    Ok(ledgers)
}

fn load(path: &Path) -> Result<Ledger, QueueError> {
    let bytes = fs::read(path).context(|| format!("reading {}", path.display()))?;
    let ledger: Ledger = serde_json::from_slice(&bytes).map_err(|e| QueueError::Ledger {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    if ledger.version != FORMAT_VERSION {
        return Err(QueueError::Ledger {
            path: path.to_owned(),
            detail: format!("unsupported version {}", ledger.version),
        });
    }
    Ok(ledger)
}

/// Durably replaces `consumer`'s ledger in `dir`.
pub(crate) fn store(dir: &Path, consumer: &str, ledger: &Ledger) -> Result<(), QueueError> {
    let path = path(dir, consumer);
    let temp = dir.join(format!("{consumer}{LEDGER_SUFFIX}{TEMP_SUFFIX}"));
    let json = serde_json::to_vec(ledger).map_err(|e| QueueError::Ledger {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    File::create(&temp)
        .and_then(|mut file| {
            file.write_all(&json)?;
            file.sync_all()
        })
        .context(|| format!("writing {}", temp.display()))?;
    fs::rename(&temp, &path).context(|| format!("renaming {} into place", temp.display()))?;
    sync_dir(dir)
}

/// Durably removes `consumer`'s ledger from `dir`.
pub(crate) fn remove(dir: &Path, consumer: &str) -> Result<(), QueueError> {
    let path = path(dir, consumer);
    fs::remove_file(&path).context(|| format!("removing {}", path.display()))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_then_load_round_trips_and_cleans_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::new(
            7,
            SegmentPos {
                segment: 0,
                pos: 99,
            },
        );
        ledger.skips.push(Skip {
            at: SegmentPos {
                segment: 0,
                pos: 50,
            },
            first_lost_offset: 3,
            resume: SegmentPos {
                segment: 0,
                pos: 80,
            },
            resume_offset: 4,
            bytes_skipped: 30,
            repaired_at_ms: 1,
        });
        store(dir.path(), "replayer", &ledger).unwrap();
        fs::write(dir.path().join("other.consumer.tmp"), b"half").unwrap();

        let loaded = load_all(dir.path()).unwrap();
        assert_eq!(loaded, vec![("replayer".to_owned(), ledger.clone())]);
        assert!(!dir.path().join("other.consumer.tmp").exists());
    }

    #[test]
    fn unparsable_ledger_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("replayer.consumer"), b"{not json").unwrap();
        let err = load_all(dir.path()).unwrap_err();
        assert!(
            matches!(&err, QueueError::Ledger { path, .. } if path.ends_with("replayer.consumer"))
        );
    }
}
