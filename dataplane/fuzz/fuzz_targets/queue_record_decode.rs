//! Feeds arbitrary bytes to the queue's record decoder: it must never panic,
//! its header and full-frame verdicts must agree, and a frame it accepts must
//! re-encode to exactly the bytes it was decoded from. Random bytes rarely
//! carry a valid CRC32C, so every plausible header is also re-encoded with
//! the following bytes as payload and must then decode as valid.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_gateway::queue::record::{self, Decoded, HEADER_LEN, Header};

fuzz_target!(|data: &[u8]| {
    let header = record::decode_header(data);
    match record::decode(data) {
        Decoded::Valid(r) => {
            let Header::Valid(h) = header else {
                panic!("frame valid but header {header:?}");
            };
            assert_eq!((h.offset, h.enqueued_at_ms), (r.offset, r.enqueued_at_ms));
            assert_eq!(h.frame_len(), r.frame_len());
            let mut encoded = Vec::new();
            record::encode(r.offset, r.enqueued_at_ms, r.payload, &mut encoded).unwrap();
            assert_eq!(&encoded[..], &data[..r.frame_len()]);
        }
        Decoded::Truncated { needed } => assert!(needed > data.len()),
        Decoded::Corrupted(corruption) => {
            assert!(!matches!(header, Header::Truncated { .. }), "{corruption}");
        }
    }

    if let Header::Valid(h) = header {
        let payload = &data[HEADER_LEN..data.len().min(HEADER_LEN + h.payload_len as usize)];
        let mut frame = Vec::new();
        record::encode(h.offset, h.enqueued_at_ms, payload, &mut frame).unwrap();
        frame.extend_from_slice(&data[HEADER_LEN + payload.len()..]);
        let Decoded::Valid(r) = record::decode(&frame) else {
            panic!(
                "re-encoded frame does not decode: {:?}",
                record::decode(&frame)
            );
        };
        assert_eq!(
            (r.offset, r.enqueued_at_ms, r.payload),
            (h.offset, h.enqueued_at_ms, payload)
        );
    }
});
