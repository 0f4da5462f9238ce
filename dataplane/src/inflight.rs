//! The in-flight journal: which documents a write is about to change, noted
//! before the write is forwarded to the primary.
//!
//! A write the primary applies is recorded in the queue only after the
//! primary answered. A gateway killed in between (or a connection to the
//! primary that breaks after the request was sent) leaves the primary
//! changed and nothing recorded: the backup would silently differ. So
//! before forwarding, the write path notes the documents it names (the
//! gateway assigns ids to auto-id creates so they can be named), and
//! closes the note once the outcome is recorded. A note still open when
//! the gateway starts, or one whose write ended with an unknown outcome,
//! is *reconciled*: the named documents are queued as read-repair ops, so
//! the replayer reads their state from the primary and makes it true on
//! the backup, version-fenced.
//!
//! ## Durability
//!
//! A note is one `write(2)` to the journal file, with no `fsync` of its
//! own: it survives a crash of the gateway process (`kill -9`, OOM, panic)
//! because the kernel keeps the page, and adds no second `fsync` to the
//! write path. It does not survive a power loss or kernel crash of the
//! gateway host *before the write's record was made durable*; such a
//! write was never acknowledged to its client, and the comparison job
//! (or the sampling verifier) is what finds it. Closing a note needs no
//! durability either: a close lost in a crash only makes start-up
//! reconcile documents that were already recorded, which is harmless.
//!
//! ## Format
//!
//! One file, `inflight.journal`, of frames in the queue's record framing
//! (magic, length, id, timestamp, payload, CRC32C; see
//! [`crate::queue::record`]), the frame's offset field carrying the note
//! id. Payloads:
//!
//! ```text
//! 1 | count u32 LE | count × (len u32 LE | op)   open: read-repair ops naming the documents
//! 2                                               close
//! 3 | utf-8 text                                  open, nothing nameable (metadata)
//! 4 | op                                          open: a by-query write, recorded as is at start-up
//! ```
//!
//! Reading stops at the first frame that does not verify (a torn tail);
//! what follows is reported, never guessed at. The file is rewritten with
//! only the open notes when it grows past [`ROTATE_BYTES`] and at start-up.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::queue::record::{self, Decoded};
use tandem_es::docstate::DocKey;
use tandem_es::ops::ReplicationOp;

/// The journal's file name inside the task's data directory.
pub const FILE_NAME: &str = "inflight.journal";
/// Size past which the journal is rewritten with its open notes only.
pub const ROTATE_BYTES: u64 = 4 << 20;

const OPEN: u8 = 1;
const CLOSE: u8 = 2;
const OPAQUE: u8 = 3;
const BY_QUERY: u8 = 4;

/// Identifies one open note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NoteId(u64);

/// What the previous run left open.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Notes re-opened in the new journal, with the documents each names;
    /// close each once its documents are queued for reconciliation.
    pub notes: Vec<(NoteId, Vec<DocKey>)>,
    /// Writes in flight that named no document (index metadata): they
    /// cannot be reconciled.
    pub opaque: Vec<String>,
    /// By-query writes in flight, re-opened in the new journal: record
    /// each (its replay reconciles what it matches), then close it.
    pub by_query: Vec<(NoteId, ReplicationOp)>,
    /// Bytes at the end of the old journal that did not verify.
    pub unreadable_bytes: u64,
}

/// The in-flight journal of one replication task.
#[derive(Debug)]
pub struct InflightJournal {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    file: File,
    len: u64,
    next_id: u64,
    /// Encoded frame of every open note, for rewriting.
    open: HashMap<u64, Vec<u8>>,
}

impl InflightJournal {
    /// Opens the journal in `dir`, returning what the previous run left
    /// open (re-noted in the fresh journal).
    pub fn open(dir: &Path) -> io::Result<(InflightJournal, Recovered)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let old = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut recovered = Recovered::default();
        let mut open: HashMap<u64, Vec<u8>> = HashMap::new();
        let mut order = Vec::new();
        let mut next_id = 0;
        let mut pos = 0;
        while pos < old.len() {
            let Decoded::Valid(frame) = record::decode(&old[pos..]) else {
                recovered.unreadable_bytes = (old.len() - pos) as u64;
                break;
            };
            let len = frame.frame_len();
            next_id = next_id.max(frame.offset + 1);
            match frame.payload.first() {
                Some(&CLOSE) => {
                    open.remove(&frame.offset);
                }
                Some(&OPEN | &OPAQUE | &BY_QUERY) => {
                    open.insert(frame.offset, old[pos..pos + len].to_vec());
                    order.push(frame.offset);
                }
                _ => {}
            }
            pos += len;
        }
        for id in order {
            let Some(bytes) = open.get(&id) else {
                continue;
            };
            let Decoded::Valid(frame) = record::decode(bytes) else {
                continue;
            };
            match decode_payload(frame.payload) {
                Some(Payload::Keys(keys)) => recovered.notes.push((NoteId(id), keys)),
                Some(Payload::Opaque(what)) => recovered.opaque.push(what),
                Some(Payload::ByQuery(op)) => recovered.by_query.push((NoteId(id), op)),
                None => {}
            }
        }
        // Only notes that can be acted on stay open: opaque ones are
        // reported once.
        let named: std::collections::HashSet<u64> = recovered
            .notes
            .iter()
            .map(|(id, _)| id.0)
            .chain(recovered.by_query.iter().map(|(id, _)| id.0))
            .collect();
        open.retain(|id, _| named.contains(id));
        let (file, len) = rewrite(&path, &open)?;
        Ok((
            InflightJournal {
                path,
                state: Mutex::new(State {
                    file,
                    len,
                    next_id,
                    open,
                }),
            },
            recovered,
        ))
    }

    /// Notes that a write is about to change `keys` (or, with no keys,
    /// something described by `what` that cannot be named).
    pub fn note(&self, keys: &[DocKey], what: &str) -> io::Result<NoteId> {
        let payload = if keys.is_empty() {
            let mut payload = vec![OPAQUE];
            payload.extend_from_slice(what.as_bytes());
            payload
        } else {
            encode_keys(keys)
        };
        self.append(payload)
    }

    /// Notes that a by-query write (`op`) is about to be forwarded: if the
    /// gateway dies before its outcome is recorded, start-up records the
    /// op itself, whose replay reconciles what it matches.
    pub fn note_by_query(&self, op: &ReplicationOp) -> io::Result<NoteId> {
        let mut payload = vec![BY_QUERY];
        payload.extend_from_slice(&op.encode());
        self.append(payload)
    }

    fn append(&self, payload: Vec<u8>) -> io::Result<NoteId> {
        let mut state = self.state.lock();
        let id = state.next_id;
        state.next_id += 1;
        let mut frame = Vec::with_capacity(record::frame_len(payload.len()));
        record::encode(id, now_ms(), &payload, &mut frame)
            .map_err(|e| io::Error::other(format!("note of {} bytes is too large", e.len)))?;
        state.file.write_all(&frame)?;
        state.len += frame.len() as u64;
        state.open.insert(id, frame);
        Ok(NoteId(id))
    }

    /// Closes a note: its outcome is recorded (or nothing was applied).
    /// Never fails the caller: a close that cannot be written only makes
    /// the next start-up reconcile those documents again.
    pub fn close(&self, note: NoteId) {
        let mut state = self.state.lock();
        if state.open.remove(&note.0).is_none() {
            return;
        }
        let mut frame = Vec::with_capacity(record::frame_len(1));
        record::encode(note.0, now_ms(), &[CLOSE], &mut frame).expect("one byte fits");
        match state.file.write_all(&frame) {
            Ok(()) => state.len += frame.len() as u64,
            Err(err) => tracing::warn!(error = %err, "cannot close an in-flight note"),
        }
        if state.len > ROTATE_BYTES {
            match rewrite(&self.path, &state.open) {
                Ok((file, len)) => {
                    state.file = file;
                    state.len = len;
                }
                Err(err) => tracing::warn!(error = %err, "cannot rewrite the in-flight journal"),
            }
        }
    }

    /// Notes open now.
    pub fn open_notes(&self) -> usize {
        self.state.lock().open.len()
    }
}

/// Writes `open`'s frames to a fresh file and puts it in place of `path`
/// (rename: a crash leaves either file whole).
fn rewrite(path: &Path, open: &HashMap<u64, Vec<u8>>) -> io::Result<(File, u64)> {
    let tmp = path.with_extension("journal.tmp");
    let mut ids: Vec<&u64> = open.keys().collect();
    ids.sort();
    let mut bytes = Vec::new();
    for id in ids {
        bytes.extend_from_slice(&open[id]);
    }
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, path)?;
    let file = OpenOptions::new().append(true).open(path)?;
    Ok((file, bytes.len() as u64))
}

enum Payload {
    Keys(Vec<DocKey>),
    Opaque(String),
    ByQuery(ReplicationOp),
}

fn encode_keys(keys: &[DocKey]) -> Vec<u8> {
    let mut payload = vec![OPEN];
    payload.extend_from_slice(&(keys.len() as u32).to_le_bytes());
    for key in keys {
        let op = key.read_repair(1).encode();
        payload.extend_from_slice(&(op.len() as u32).to_le_bytes());
        payload.extend_from_slice(&op);
    }
    payload
}

fn decode_payload(payload: &[u8]) -> Option<Payload> {
    let (&kind, rest) = payload.split_first()?;
    match kind {
        OPAQUE => Some(Payload::Opaque(String::from_utf8_lossy(rest).into_owned())),
        BY_QUERY => ReplicationOp::decode(rest).ok().map(Payload::ByQuery),
        OPEN => {
            let count = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let mut rest = &rest[4..];
            let mut keys = Vec::with_capacity(count.min(10_000));
            for _ in 0..count {
                let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
                let op = ReplicationOp::decode(rest.get(4..4 + len)?).ok()?;
                keys.push(DocKey::of(&op)?);
                rest = &rest[4 + len..];
            }
            Some(Payload::Keys(keys))
        }
        _ => None,
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

    fn key(id: &str) -> DocKey {
        DocKey {
            index: "i".into(),
            doc_type: None,
            id: id.into(),
            routing: Some("r".into()),
        }
    }

    #[test]
    fn open_notes_survive_a_restart_and_closed_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, recovered) = InflightJournal::open(dir.path()).unwrap();
        assert!(recovered.notes.is_empty() && recovered.opaque.is_empty());
        let a = journal.note(&[key("1"), key("2")], "").unwrap();
        let b = journal.note(&[key("3")], "").unwrap();
        journal.note(&[], "PUT /i/_mapping").unwrap();
        journal.close(a);
        drop(journal); // the process dies: nothing else is written

        let (journal, recovered) = InflightJournal::open(dir.path()).unwrap();
        assert_eq!(recovered.notes.len(), 1);
        assert_eq!(recovered.notes[0], (b, vec![key("3")]));
        assert_eq!(recovered.opaque, vec!["PUT /i/_mapping".to_string()]);
        assert_eq!(recovered.unreadable_bytes, 0);
        // Still open until closed; opaque notes are reported only once.
        assert_eq!(journal.open_notes(), 1);
        let c = journal.note(&[key("4")], "").unwrap();
        assert_ne!(c, b, "ids are not reused");
        journal.close(recovered.notes[0].0);
        journal.close(c);
        drop(journal);
        let (_, recovered) = InflightJournal::open(dir.path()).unwrap();
        assert!(recovered.notes.is_empty() && recovered.opaque.is_empty());
    }

    #[test]
    fn by_query_notes_come_back_as_ops_until_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = InflightJournal::open(dir.path()).unwrap();
        let op = ReplicationOp::QueryScoped {
            method: http::Method::POST,
            path: "/i/_delete_by_query?conflicts=proceed".into(),
            body: bytes::Bytes::from_static(br#"{"query":{"match_all":{}}}"#),
        };
        let done = journal.note_by_query(&op).unwrap();
        let open = journal.note_by_query(&op).unwrap();
        journal.close(done);
        drop(journal);
        let (journal, recovered) = InflightJournal::open(dir.path()).unwrap();
        assert_eq!(recovered.by_query, vec![(open, op)]);
        assert!(recovered.opaque.is_empty() && recovered.notes.is_empty());
        // Stays open (and comes back again) until recorded and closed.
        assert_eq!(journal.open_notes(), 1);
        journal.close(open);
        drop(journal);
        let (_, recovered) = InflightJournal::open(dir.path()).unwrap();
        assert!(recovered.by_query.is_empty());
    }

    #[test]
    fn a_torn_tail_is_reported_and_what_precedes_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = InflightJournal::open(dir.path()).unwrap();
        journal.note(&[key("1")], "").unwrap();
        journal.note(&[key("2")], "").unwrap();
        drop(journal);
        let path = dir.path().join(FILE_NAME);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let (_, recovered) = InflightJournal::open(dir.path()).unwrap();
        assert_eq!(recovered.notes.len(), 1);
        assert_eq!(recovered.notes[0].1, vec![key("1")]);
        assert!(recovered.unreadable_bytes > 0);
    }

    #[test]
    fn the_journal_is_rewritten_with_open_notes_only() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = InflightJournal::open(dir.path()).unwrap();
        let kept = journal.note(&[key("kept")], "").unwrap();
        let keys: Vec<DocKey> = (0..200).map(|i| key(&format!("doc-{i}"))).collect();
        for _ in 0..1000 {
            let note = journal.note(&keys, "").unwrap();
            journal.close(note);
        }
        let len = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
        assert!(
            len < ROTATE_BYTES + 16 * 1024,
            "journal not rotated: {len} bytes"
        );
        drop(journal);
        let (_, recovered) = InflightJournal::open(dir.path()).unwrap();
        assert_eq!(recovered.notes, vec![(kept, vec![key("kept")])]);
    }
}
