//! Segment files: naming, listing, and walking their frames.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{IoContext, QueueError};
use super::record::{self, Decoded, FRAME_OVERHEAD};

const SEGMENT_SUFFIX: &str = ".seg";

/// File name of the segment whose first record has offset `base`.
pub(crate) fn file_name(base: u64) -> String {
    format!("{base:020}{SEGMENT_SUFFIX}")
}

/// The base offset encoded in a segment file name, if `name` is one.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment files in `dir`, by base offset.
pub(crate) fn list(dir: &Path) -> Result<BTreeMap<u64, PathBuf>, QueueError> {
    let mut segments = BTreeMap::new();
    let entries = std::fs::read_dir(dir).context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.context(|| format!("listing {}", dir.display()))?;
        if let Some(base) = entry.file_name().to_str().and_then(parse_file_name) {
            segments.insert(base, entry.path());
        }
    }
    Ok(segments)
}

/// A byte position in the queue: segment (by base offset) and byte within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SegmentPos {
    /// Base offset of the segment.
    pub segment: u64,
    /// Byte position in the segment file.
    pub pos: u64,
}

/// What walking a segment's bytes found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scan {
    /// End of the last valid frame: everything after it is a torn tail.
    pub valid_end: u64,
    /// Offset following the last valid frame's (the base if there is none).
    pub next_offset: u64,
    /// Number of valid frames.
    pub records: u64,
    /// Corrupt regions followed by valid frames: `(position, expected offset)`.
    pub corrupt: Vec<(u64, u64)>,
    /// `(offset, enqueued_at_ms)` of each valid frame at least one second
    /// after the previous one kept, for the time index.
    pub timestamps: Vec<(u64, u64)>,
}

/// Walks the frames of a segment held in `data` whose first record has
/// offset `base`. Where a frame is invalid, looks for the next valid one with
/// [`resync`]; if there is none, the rest is a torn tail.
pub(crate) fn scan(data: &[u8], base: u64) -> Scan {
    let mut scan = Scan {
        valid_end: 0,
        next_offset: base,
        records: 0,
        corrupt: Vec::new(),
        timestamps: Vec::new(),
    };
    let mut pos = 0usize;
    while pos < data.len() {
        match record::decode(&data[pos..]) {
            Decoded::Valid(r) if r.offset == scan.next_offset => {
                if scan
                    .timestamps
                    .last()
                    .is_none_or(|(_, ts)| r.enqueued_at_ms.abs_diff(*ts) >= 1000)
                {
                    scan.timestamps.push((r.offset, r.enqueued_at_ms));
                }
                pos += r.frame_len();
                scan.records += 1;
                scan.next_offset = r.offset + 1;
                scan.valid_end = pos as u64;
            }
            _ => match resync(data, pos, scan.next_offset) {
                Some((found, offset)) => {
                    scan.corrupt.push((pos as u64, scan.next_offset));
                    pos = found;
                    scan.next_offset = offset;
                }
                None => break,
            },
        }
    }
    scan
}

/// Finds the next plausible frame at or after `from`, where a frame with
/// offset `expected` was due but is missing or invalid. Returns its position
/// and offset.
///
/// Plausible means: magic, length and checksum valid, offset at least
/// `expected`, and no more records skipped than the skipped bytes could hold
/// (each frame takes at least [`FRAME_OVERHEAD`] bytes). The frame at `from`
/// itself qualifies when valid with a later offset (a gap).
pub(crate) fn resync(data: &[u8], from: usize, expected: u64) -> Option<(usize, u64)> {
    let tail = data.get(from..)?;
    memchr::memmem::find_iter(tail, &record::MAGIC.to_le_bytes()).find_map(|rel| {
        let Decoded::Valid(r) = record::decode(&tail[rel..]) else {
            return None;
        };
        let max_skipped = (rel / FRAME_OVERHEAD) as u64;
        let plausible = r.offset >= expected && (rel == 0 || r.offset - expected <= max_skipped);
        plausible.then_some((from + rel, r.offset))
    })
}

/// Reads bytes `from..to` of `path`.
pub(crate) fn read_range(path: &Path, from: u64, to: u64) -> Result<Vec<u8>, QueueError> {
    let context = || format!("reading {} bytes {from}..{to}", path.display());
    let mut file = File::open(path).context(context)?;
    file.seek(SeekFrom::Start(from)).context(context)?;
    let mut data = Vec::new();
    file.take(to.saturating_sub(from))
        .read_to_end(&mut data)
        .context(context)?;
    Ok(data)
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .context(|| format!("syncing directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(base: u64, n: u64) -> (Vec<u8>, Vec<usize>) {
        let mut data = Vec::new();
        let mut starts = Vec::new();
        for offset in base..base + n {
            starts.push(data.len());
            record::encode(offset, 0, format!("payload {offset}").as_bytes(), &mut data).unwrap();
        }
        (data, starts)
    }

    #[test]
    fn file_names_round_trip_and_sort_by_offset() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("42.seg"), None);
        assert_eq!(parse_file_name("0000000000000000004x.seg"), None);
        assert_eq!(parse_file_name("00000000000000000042.consumer"), None);
        assert!(file_name(9) < file_name(10));
    }

    #[test]
    fn scan_of_clean_segment_reaches_the_end() {
        let (data, _) = frames(10, 5);
        let scan = scan(&data, 10);
        assert_eq!(scan.valid_end, data.len() as u64);
        assert_eq!((scan.next_offset, scan.records), (15, 5));
        assert!(scan.corrupt.is_empty());
    }

    #[test]
    fn scan_stops_at_torn_tail() {
        let (mut data, starts) = frames(0, 4);
        data.truncate(starts[3] + 7);
        data.extend_from_slice(&[0u8; 100]);
        let scan = scan(&data, 0);
        assert_eq!(scan.valid_end, starts[3] as u64);
        assert_eq!(scan.next_offset, 3);
        assert!(scan.corrupt.is_empty());
    }

    #[test]
    fn scan_reports_mid_corruption_and_continues() {
        let (mut data, starts) = frames(0, 5);
        data[starts[2] + 26] ^= 0x40;
        let scan = scan(&data, 0);
        assert_eq!(scan.corrupt, vec![(starts[2] as u64, 2)]);
        assert_eq!((scan.next_offset, scan.records), (5, 4));
        assert_eq!(scan.valid_end, data.len() as u64);
    }

    #[test]
    fn resync_rejects_frames_with_implausible_offsets() {
        let (data, starts) = frames(0, 3);
        // Expecting offset 0 at the first frame's position: the second frame
        // (offset 1) is one frame further, plausible.
        assert_eq!(resync(&data, 1, 0), Some((starts[1], 1)));
        // Expecting offset 2 from position 1: frame 1 is too old, frame 2 fits.
        assert_eq!(resync(&data, 1, 2), Some((starts[2], 2)));
        // A frame claiming many more skipped records than bytes allow is refused.
        let (far, _) = frames(1000, 1);
        let mut data2 = vec![0u8; 30];
        data2.extend_from_slice(&far);
        assert_eq!(resync(&data2, 0, 5), None);
        assert_eq!(resync(&data2, 0, 999), Some((30, 1000)));
        assert_eq!(resync(&data, data.len() + 5, 0), None);
    }
}
