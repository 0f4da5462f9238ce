//! Opening a queue directory: lock it, scan the last segment, cut a torn
//! tail, load the consumer ledgers and rebuild the bookkeeping.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use super::error::{IoContext, QueueError};
use super::ledger;
use super::record::{self, HEADER_LEN, Header};
use super::segment::{self, sync_dir};
use super::shared::{Consumer, State, TimeIndex};

const LOCK_FILE: &str = "LOCK";

/// Takes the directory's advisory lock (`flock` on `LOCK`), held for as
/// long as the returned file is open. The kernel drops it when the process
/// dies, so a `kill -9` never leaves the queue locked.
pub(crate) fn lock_dir(dir: &Path) -> Result<File, QueueError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .context(|| format!("opening {}", path.display()))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(QueueError::Locked {
            dir: dir.to_owned(),
        }),
        Err(e) => Err(io::Error::from(e)).context(|| format!("locking {}", path.display())),
    }
}

/// The recovered queue: bookkeeping and the active segment opened for
/// appending.
pub(crate) struct Recovered {
    pub state: State,
    pub active_file: File,
    pub active_len: u64,
}

/// Recovers the queue in `dir` (already locked).
///
/// Only the last segment can hold unacknowledged bytes (rollover syncs the
/// previous one first), so only it is scanned: a torn tail (no valid frame
/// after the first invalid one) is truncated; a corrupt region followed by
/// valid frames is left for consumers to report, and new records go to a new
/// segment so nothing acknowledged is cut.
pub(crate) fn recover(dir: &Path) -> Result<Recovered, QueueError> {
    let paths = segment::list(dir)?;
    let ledgers = ledger::load_all(dir)?;

    let mut segments = BTreeMap::new();
    let mut times = TimeIndex::default();
    for (&base, path) in &paths {
        let len = fs::metadata(path)
            .context(|| format!("reading metadata of {}", path.display()))?
            .len();
        segments.insert(base, len);
        let header = segment::read_range(path, 0, HEADER_LEN as u64)?;
        if let Header::Valid(h) = record::decode_header(&header) {
            times.note(h.offset, h.enqueued_at_ms);
        }
    }

    let mut next_offset = 0;
    let mut seal_last = false;
    if let Some((&base, path)) = paths.last_key_value() {
        let data = fs::read(path).context(|| format!("reading {}", path.display()))?;
        let scan = segment::scan(&data, base);
        let torn = data.len() as u64 - scan.valid_end;
        if torn > 0 {
            tracing::warn!(
                segment = %path.display(),
                bytes_dropped = torn,
                valid_end = scan.valid_end,
                next_offset = scan.next_offset,
                "truncating the torn tail of the last segment (a write that was never acknowledged)"
            );
            OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| {
                    f.set_len(scan.valid_end)?;
                    f.sync_all()
                })
                .context(|| format!("truncating {} to {}", path.display(), scan.valid_end))?;
            segments.insert(base, scan.valid_end);
        }
        for &(position, offset_expected) in &scan.corrupt {
            tracing::error!(
                segment = %path.display(),
                position,
                offset_expected,
                "corrupt record in the middle of the last segment: kept for consumers to report, new records go to a new segment"
            );
        }
        seal_last = !scan.corrupt.is_empty();
        next_offset = scan.next_offset;
        for (offset, enqueued_at_ms) in scan.timestamps {
            times.note(offset, enqueued_at_ms);
        }
    }

    let committed_max = ledgers
        .iter()
        .map(|(_, l)| l.next_offset)
        .max()
        .unwrap_or(0);
    if committed_max > next_offset {
        tracing::warn!(
            dir = %dir.display(),
            segments_end = next_offset,
            committed_max,
            "a consumer acknowledged offsets beyond the last segment (segment files removed?); new offsets start after it"
        );
        next_offset = committed_max;
        seal_last = true;
    }

    let active = match paths.last_key_value() {
        Some((&base, _)) if !seal_last || base == next_offset => base,
        _ => {
            let path = dir.join(segment::file_name(next_offset));
            File::create_new(&path).context(|| format!("creating segment {}", path.display()))?;
            sync_dir(dir)?;
            segments.insert(next_offset, 0);
            next_offset
        }
    };
    let active_path = dir.join(segment::file_name(active));
    let active_file = OpenOptions::new()
        .append(true)
        .open(&active_path)
        .context(|| format!("opening {}", active_path.display()))?;
    let active_len = segments.get(&active).copied().unwrap_or(0);

    let mut consumers = BTreeMap::new();
    for (name, ledger) in ledgers {
        // Date the consumer's next record exactly, for its lag in seconds.
        if let Some(at) = ledger.position.filter(|_| ledger.next_offset < next_offset) {
            let len = segments.get(&at.segment).copied().unwrap_or(0);
            if at.pos + HEADER_LEN as u64 <= len {
                let path = dir.join(segment::file_name(at.segment));
                let header = segment::read_range(&path, at.pos, at.pos + HEADER_LEN as u64)?;
                if let Header::Valid(h) = record::decode_header(&header) {
                    times.note(h.offset, h.enqueued_at_ms);
                }
            }
        }
        let consumer = Consumer {
            ledger,
            epoch: 0,
            reader_open: false,
            halted: None,
        };
        consumers.insert(name, consumer);
    }

    let disk_bytes = segments.values().sum();
    tracing::info!(
        dir = %dir.display(),
        segments = segments.len(),
        disk_bytes,
        next_offset,
        consumers = consumers.len(),
        "opened queue"
    );
    let state = State {
        segments,
        active,
        next_offset,
        disk_bytes,
        pending_bytes: 0,
        times,
        consumers,
        writer_failed: None,
    };
    Ok(Recovered {
        state,
        active_file,
        active_len,
    })
}
