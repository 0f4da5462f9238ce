//! The one-pass reader of the primary's `_bulk` answer must read exactly
//! what serde_json reads, or hand the answer over to it: for any input,
//! `BulkResponse::parse` and `serde_json::from_slice::<BulkResponse>` agree
//! (both fail, or both give the same items).
//!
//! Random bytes are rarely JSON, so each input byte picks a fragment (a
//! bracket, a key the reader looks for, a number of some spelling, an
//! escaped string, whitespace...), or is copied as is after a 0xff byte.
//!
//! Run with: `cargo +nightly fuzz run bulk_answer -- -max_total_time=60`

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_es::bulk::BulkResponse;

const FRAGMENTS: &[&str] = &[
    "{", "}", "[", "]", ",", ":", "\"items\"", "\"index\"", "\"create\"", "\"delete\"",
    "\"update\"", "\"_index\"", "\"_type\"", "\"_id\"", "\"_version\"", "\"_seq_no\"",
    "\"_primary_term\"", "\"result\"", "\"status\"", "\"error\"", "\"took\"", "\"created\"",
    "\"noop\"", "0", "1", "201", "409", "-1", "-0", "01", "1.5", "1e3", "1E-2",
    "18446744073709551615", "18446744073709551616", "123456789012345678", "null", "true",
    "false", "\"a\\\"b\"", "\"\\u00e9\"", "\"\\ud83d\\ude00\"", "\"\\ud800\"", "\"\\x\"",
    "\"é\"", " ", "\n", "\t", "\"", "\\", "{\"items\":[", "]}", "{\"index\":{",
    "\"_shards\":{\"total\":1,\"successful\":1,\"failed\":0}",
];

fuzz_target!(|data: &[u8]| {
    let mut text = Vec::new();
    let mut bytes = data.iter();
    while let Some(&b) = bytes.next() {
        if b == 0xff {
            if let Some(&raw) = bytes.next() {
                text.push(raw);
            }
        } else {
            text.extend_from_slice(FRAGMENTS[b as usize % FRAGMENTS.len()].as_bytes());
        }
    }
    let fast = BulkResponse::parse(&text).ok();
    let slow = serde_json::from_slice::<BulkResponse<'_>>(&text).ok();
    assert_eq!(fast, slow, "on {}", String::from_utf8_lossy(&text));
});
