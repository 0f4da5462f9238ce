//! Record framing: how one payload is laid out in a segment file.
//!
//! ```text
//! byte 0   magic           u32 LE  "TQR1" (0x3152_5154): sync marker
//!      4   payload_len     u32 LE  at most MAX_PAYLOAD_LEN
//!      8   offset          u64 LE  monotonic record offset
//!     16   enqueued_at_ms  u64 LE  unix milliseconds
//!     24   payload         payload_len bytes
//!     24+n crc32c          u32 LE  CRC32C of bytes 0 .. 24+n
//! ```
//!
//! The decoder is total: any byte string decodes to [`Decoded::Valid`],
//! [`Decoded::Corrupted`] or [`Decoded::Truncated`], never a panic (it is
//! fuzzed by `dataplane/fuzz`, target `queue_record_decode`).

use std::fmt;

/// Sync marker that starts every frame: the ASCII bytes `TQR1`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"TQR1");
/// Bytes before the payload: magic, length, offset, timestamp.
pub const HEADER_LEN: usize = 24;
/// Bytes after the payload: the CRC32C.
pub const TRAILER_LEN: usize = 4;
/// Framing bytes per record; also the smallest possible frame.
pub const FRAME_OVERHEAD: usize = HEADER_LEN + TRAILER_LEN;
/// Largest payload the format admits (1 GiB). A length field above it is
/// reported as corruption without reading further.
pub const MAX_PAYLOAD_LEN: u32 = 1 << 30;

/// The fixed-size fields at the start of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length in bytes.
    pub payload_len: u32,
    /// Record offset.
    pub offset: u64,
    /// Enqueue time, unix milliseconds.
    pub enqueued_at_ms: u64,
}

impl FrameHeader {
    /// Length of the whole frame this header starts.
    pub fn frame_len(&self) -> usize {
        frame_len(self.payload_len as usize)
    }
}

/// A record decoded from a frame, borrowing its payload from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Record offset.
    pub offset: u64,
    /// Enqueue time, unix milliseconds.
    pub enqueued_at_ms: u64,
    /// The payload bytes.
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    /// Length of the frame this record was decoded from.
    pub fn frame_len(&self) -> usize {
        frame_len(self.payload.len())
    }
}

/// Why a frame is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// The first four bytes are not [`MAGIC`].
    BadMagic {
        /// The value found instead.
        found: u32,
    },
    /// The length field exceeds [`MAX_PAYLOAD_LEN`].
    BadLength {
        /// The length field as read.
        len: u32,
    },
    /// The stored CRC32C does not match the header and payload.
    Checksum {
        /// CRC32C computed over the bytes read.
        calculated: u32,
        /// CRC32C stored in the frame.
        actual: u32,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::BadMagic { found } => {
                write!(f, "bad sync marker {found:#010x} (expected {MAGIC:#010x})")
            }
            Corruption::BadLength { len } => {
                write!(
                    f,
                    "length field {len} exceeds the maximum {MAX_PAYLOAD_LEN}"
                )
            }
            Corruption::Checksum { calculated, actual } => write!(
                f,
                "checksum mismatch: calculated {calculated:#010x}, stored {actual:#010x}"
            ),
        }
    }
}

/// Outcome of decoding a frame header with [`decode_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// Magic and length are plausible (the checksum is not verified yet).
    Valid(FrameHeader),
    /// The header cannot start a frame.
    Corrupted(Corruption),
    /// The input ends before the header does; `needed` bytes are required.
    Truncated {
        /// Bytes required to decide.
        needed: usize,
    },
}

/// Outcome of decoding and verifying a whole frame with [`decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A complete frame with a matching checksum.
    Valid(RecordRef<'a>),
    /// The bytes cannot be a valid frame.
    Corrupted(Corruption),
    /// The input ends before the frame does; `needed` bytes are required.
    Truncated {
        /// Bytes required to decide.
        needed: usize,
    },
}

/// Length of the frame carrying a payload of `payload_len` bytes.
pub fn frame_len(payload_len: usize) -> usize {
    FRAME_OVERHEAD + payload_len
}

/// The payload does not fit the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadTooLarge {
    /// The payload length.
    pub len: usize,
}

/// Appends the frame for one record to `out`.
///
/// Fails only when `payload` is longer than [`MAX_PAYLOAD_LEN`].
pub fn encode(
    offset: u64,
    enqueued_at_ms: u64,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), PayloadTooLarge> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len <= MAX_PAYLOAD_LEN)
        .ok_or(PayloadTooLarge { len: payload.len() })?;
    let start = out.len();
    out.reserve(frame_len(payload.len()));
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&enqueued_at_ms.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Decodes the header at the start of `buf` (which may be longer than one
/// frame). Rejects a bad magic as soon as 4 bytes are available and a bad
/// length as soon as 8 are.
pub fn decode_header(buf: &[u8]) -> Header {
    let Some(magic) = read_u32(buf, 0) else {
        return Header::Truncated { needed: HEADER_LEN };
    };
    if magic != MAGIC {
        return Header::Corrupted(Corruption::BadMagic { found: magic });
    }
    let Some(len) = read_u32(buf, 4) else {
        return Header::Truncated { needed: HEADER_LEN };
    };
    if len > MAX_PAYLOAD_LEN {
        return Header::Corrupted(Corruption::BadLength { len });
    }
    match (read_u64(buf, 8), read_u64(buf, 16)) {
        (Some(offset), Some(enqueued_at_ms)) => Header::Valid(FrameHeader {
            payload_len: len,
            offset,
            enqueued_at_ms,
        }),
        _ => Header::Truncated { needed: HEADER_LEN },
    }
}

/// Decodes and verifies the frame at the start of `buf` (which may be longer
/// than one frame).
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    let header = match decode_header(buf) {
        Header::Valid(header) => header,
        Header::Corrupted(corruption) => return Decoded::Corrupted(corruption),
        Header::Truncated { needed } => return Decoded::Truncated { needed },
    };
    let payload_end = HEADER_LEN + header.payload_len as usize;
    let (Some(covered), Some(actual)) = (buf.get(..payload_end), read_u32(buf, payload_end)) else {
        return Decoded::Truncated {
            needed: header.frame_len(),
        };
    };
    let calculated = crc32c::crc32c(covered);
    if calculated != actual {
        return Decoded::Corrupted(Corruption::Checksum { calculated, actual });
    }
    Decoded::Valid(RecordRef {
        offset: header.offset,
        enqueued_at_ms: header.enqueued_at_ms,
        payload: &covered[HEADER_LEN..],
    })
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn read_u64(buf: &[u8], at: usize) -> Option<u64> {
    let bytes = buf.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(offset: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(offset, 1_700_000_000_000, payload, &mut out).unwrap();
        out
    }

    #[test]
    fn encoded_record_decodes_to_itself() {
        let buf = frame(42, b"hello");
        assert_eq!(buf.len(), frame_len(5));
        let Decoded::Valid(record) = decode(&buf) else {
            panic!("not valid: {:?}", decode(&buf));
        };
        assert_eq!(record.offset, 42);
        assert_eq!(record.enqueued_at_ms, 1_700_000_000_000);
        assert_eq!(record.payload, b"hello");
        assert_eq!(record.frame_len(), buf.len());
    }

    #[test]
    fn trailing_bytes_after_a_frame_are_ignored() {
        let mut buf = frame(1, b"a");
        buf.extend_from_slice(&frame(2, b"b"));
        let Decoded::Valid(record) = decode(&buf) else {
            panic!("not valid")
        };
        assert_eq!((record.offset, record.payload), (1, &b"a"[..]));
    }

    #[test]
    fn every_strict_prefix_is_truncated() {
        let buf = frame(7, b"some payload");
        for cut in 4..buf.len() {
            assert!(
                matches!(decode(&buf[..cut]), Decoded::Truncated { .. }),
                "prefix of {cut} bytes"
            );
        }
        assert_eq!(decode(&[]), Decoded::Truncated { needed: HEADER_LEN });
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let buf = frame(9, b"payload");
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    !matches!(decode(&bad), Decoded::Valid(_)),
                    "flip of bit {bit} in byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn corruption_kinds_are_named() {
        let mut bad_magic = frame(1, b"x");
        bad_magic[0] = b'X';
        assert!(matches!(
            decode(&bad_magic),
            Decoded::Corrupted(Corruption::BadMagic { .. })
        ));

        let mut bad_len = frame(1, b"x");
        bad_len[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode(&bad_len),
            Decoded::Corrupted(Corruption::BadLength { len: u32::MAX })
        );

        let mut bad_crc = frame(1, b"x");
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 0xff;
        assert!(matches!(
            decode(&bad_crc),
            Decoded::Corrupted(Corruption::Checksum { calculated, actual }) if calculated != actual
        ));
    }
}
