//! A single-pass reader for the primary's `_bulk` answer.
//!
//! Every accepted `_bulk` is paired with its answer, so reading the answer
//! is on the write path of every bulk request. The generic serde reader
//! spent most of its time in visitor calls for fields the gateway skips
//! (`_shards`, `error`, `took`). This reader walks the bytes once, builds
//! only what pairing reads ([`BulkResponse`]), and borrows every string
//! without escapes.
//!
//! It is an accelerator, never a second judge: for any input it either
//! returns exactly what `serde_json::from_slice::<BulkResponse>` returns, or
//! gives up (`None`) and the caller uses serde_json, which then also
//! produces the error message for a malformed answer. It gives up on
//! anything outside the plain shape: invalid UTF-8, keys with escapes in a
//! document result, floats and long or negative numbers where a field is
//! read (handed to serde_json one by one), duplicate fields, nesting deeper
//! than [`MAX_DEPTH`], or any syntax error. The property is checked against
//! serde_json on generated and mutated answers in the tests below.

use std::borrow::Cow;

use serde::Deserialize;

use crate::json::{ObjectOr, Scalar, SingleKey};
use crate::ops::DocResult;

/// The parts of the primary's `_bulk` answer the gateway reads, borrowed
/// from the answer's bytes (the client still gets those bytes unchanged).
/// `took`, `errors`, `error` objects and every other field are skipped.
#[derive(Debug, PartialEq, Eq, Deserialize)]
pub struct BulkResponse<'a> {
    /// One entry per request item, in request order: the action key and the
    /// item's result when it is an object. `None` when the answer has no
    /// `items` (an error for the whole request).
    #[serde(borrow)]
    pub items: Option<Vec<SingleKey<'a, ObjectOr<'a, DocResult<'a>>>>>,
}

impl<'a> BulkResponse<'a> {
    /// Reads the primary's answer: in one pass over the bytes for the
    /// usual shape, else (and for every error message) with serde_json.
    /// Both give the same result for any input (see `bulk_answer`).
    pub fn parse(bytes: &'a [u8]) -> Result<BulkResponse<'a>, serde_json::Error> {
        match scan(bytes) {
            Some(response) => Ok(response),
            None => serde_json::from_slice(bytes),
        }
    }
}

/// Deeper answers are left to serde_json (whose own limit is 128).
const MAX_DEPTH: usize = 64;

/// The answer read the way serde_json reads it, or `None` when this
/// reader leaves it to serde_json.
fn scan(bytes: &[u8]) -> Option<BulkResponse<'_>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut scanner = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    let response = scanner.response()?;
    scanner.whitespace();
    (scanner.pos == scanner.bytes.len()).then_some(response)
}

type Item<'a> = SingleKey<'a, ObjectOr<'a, DocResult<'a>>>;

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte that is not whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.whitespace();
        self.bytes.get(self.pos).copied()
    }

    /// Consumes `byte` (after whitespace) or gives up.
    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    /// After a member or element: `true` when another follows (`,`
    /// consumed), `false` at `close` (consumed).
    fn next_or_close(&mut self, close: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.pos += 1;
                Some(true)
            }
            b if b == close => {
                self.pos += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// Consumes `{` or `[` and tells whether the container is empty (its
    /// closing byte consumed too).
    fn open(&mut self, open: u8, close: u8) -> Option<bool> {
        self.expect(open)?;
        if self.peek()? == close {
            self.pos += 1;
            return Some(true);
        }
        Some(false)
    }

    /// The string at the cursor: borrowed when it has no escapes, decoded
    /// by serde_json when it has.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.expect(b'"')?;
        let start = self.pos;
        let escaped = self.string_end()?;
        // `start - 1` and `self.pos` sit on ASCII quotes: char boundaries.
        if escaped {
            let literal = &self.text[start - 1..self.pos];
            serde_json::from_str::<String>(literal).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(&self.text[start..self.pos - 1]))
        }
    }

    /// An object key, skipped: serde_json decodes every key, even of an
    /// ignored object (a lone surrogate in one is an error), so escaped
    /// keys are decoded too.
    fn key(&mut self) -> Option<()> {
        self.string().map(drop)
    }

    /// Skips a string value without building it (escapes are checked by
    /// serde_json, as it does while skipping).
    fn skip_string(&mut self) -> Option<()> {
        self.expect(b'"')?;
        let start = self.pos;
        if self.string_end()? {
            let literal = &self.text[start - 1..self.pos];
            serde_json::from_str::<serde::de::IgnoredAny>(literal).ok()?;
        }
        Some(())
    }

    /// Moves past the closing quote of the string whose body starts at the
    /// cursor; tells whether it holds escapes. Control characters, which
    /// JSON forbids inside strings, make it give up.
    fn string_end(&mut self) -> Option<bool> {
        let mut escaped = false;
        loop {
            match *self.bytes.get(self.pos)? {
                b'"' => {
                    self.pos += 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    // The escaped byte is never the closing quote.
                    self.pos += 2;
                }
                0..=0x1f => return None,
                _ => self.pos += 1,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.whitespace();
        let end = self.pos + word.len();
        (self.bytes.get(self.pos..end)? == word).then(|| self.pos = end)
    }

    /// A number as [`Scalar`] reads it: non-negative integers of up to 18
    /// digits here, every other spelling through serde_json.
    fn number(&mut self) -> Option<Scalar<'a>> {
        self.whitespace();
        let start = self.pos;
        let mut plain = true;
        if self.bytes.get(self.pos) == Some(&b'-') {
            plain = false;
            self.pos += 1;
        }
        let digits = self.pos;
        while let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
        let int_digits = self.pos - digits;
        if int_digits == 0 {
            return None;
        }
        if self.bytes[digits] == b'0' && int_digits > 1 {
            return None; // a leading zero: serde_json's error
        }
        if let Some(b'.' | b'e' | b'E') = self.bytes.get(self.pos) {
            plain = false;
            if self.bytes[self.pos] == b'.' {
                self.pos += 1;
                self.digits()?;
            }
            if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
                self.pos += 1;
                if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                    self.pos += 1;
                }
                self.digits()?;
            }
        }
        if plain && int_digits <= 18 {
            let value = self.bytes[digits..self.pos]
                .iter()
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            return Some(Scalar::UInt(value));
        }
        serde_json::from_str(&self.text[start..self.pos]).ok()
    }

    /// One or more digits.
    fn digits(&mut self) -> Option<()> {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
        (self.pos > start).then_some(())
    }

    /// Skips any value.
    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                if self.open(b'{', b'}')? {
                    return Some(());
                }
                loop {
                    self.key()?;
                    self.expect(b':')?;
                    self.skip(depth + 1)?;
                    if !self.next_or_close(b'}')? {
                        return Some(());
                    }
                }
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                if self.open(b'[', b']')? {
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    if !self.next_or_close(b']')? {
                        return Some(());
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(drop),
        }
    }

    /// A value read as `Option<Scalar>` reads it (`null` is `None`).
    fn optional_scalar(&mut self, depth: usize) -> Option<Option<Scalar<'a>>> {
        match self.peek()? {
            b'"' => Some(Some(Scalar::Str(self.string()?))),
            b'n' => self.literal(b"null").map(|()| None),
            b'-' | b'0'..=b'9' => Some(Some(self.number()?)),
            _ => self.skip(depth).map(|()| Some(Scalar::Other)),
        }
    }

    /// `{"took":..,"errors":..,"items":[...]}`.
    fn response(&mut self) -> Option<BulkResponse<'a>> {
        let mut response = BulkResponse { items: None };
        if self.open(b'{', b'}')? {
            return Some(response);
        }
        let mut seen_items = false;
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            if key == "items" {
                if seen_items {
                    return None; // serde_json: duplicate field
                }
                seen_items = true;
                response.items = match self.peek()? {
                    b'n' => self.literal(b"null").map(|()| None)?,
                    b'[' => Some(self.items()?),
                    _ => return None,
                };
            } else {
                self.skip(1)?;
            }
            if !self.next_or_close(b'}')? {
                return Some(response);
            }
        }
    }

    fn items(&mut self) -> Option<Vec<Item<'a>>> {
        let mut items = Vec::with_capacity(64);
        if self.open(b'[', b']')? {
            return Some(items);
        }
        loop {
            items.push(self.item()?);
            if !self.next_or_close(b']')? {
                return Some(items);
            }
        }
    }

    /// `{"index": {...}}`: an object with one key.
    fn item(&mut self) -> Option<Item<'a>> {
        const DEPTH: usize = 2;
        if self.peek()? != b'{' {
            // Read as serde_json reads any value here: strings decoded,
            // numbers parsed.
            self.optional_scalar(DEPTH)?;
            return Some(SingleKey::NotObject);
        }
        if self.open(b'{', b'}')? {
            return Some(SingleKey::KeyCount);
        }
        let key = self.string()?;
        self.expect(b':')?;
        let value = match self.peek()? {
            b'{' => ObjectOr::Object(self.doc_result(DEPTH + 1)?),
            _ => ObjectOr::Scalar(self.optional_scalar(DEPTH + 1)?.unwrap_or(Scalar::Other)),
        };
        if !self.next_or_close(b'}')? {
            return Some(SingleKey::Entry(key, value));
        }
        loop {
            self.key()?;
            self.expect(b':')?;
            self.skip(DEPTH + 1)?;
            if !self.next_or_close(b'}')? {
                return Some(SingleKey::KeyCount);
            }
        }
    }

    /// An item's result object.
    fn doc_result(&mut self, depth: usize) -> Option<DocResult<'a>> {
        let mut result = DocResult::default();
        if self.open(b'{', b'}')? {
            return Some(result);
        }
        let mut seen = 0u8;
        loop {
            // Field names are matched as spelled; escaped ones go to serde_json.
            let Cow::Borrowed(key) = self.string()? else {
                return None;
            };
            self.expect(b':')?;
            let (bit, field) = match key {
                "_index" => (0, &mut result.index),
                "_type" => (1, &mut result.doc_type),
                "_id" => (2, &mut result.id),
                "_version" => (3, &mut result.version),
                "_seq_no" => (4, &mut result.seq_no),
                "_primary_term" => (5, &mut result.primary_term),
                "result" => (6, &mut result.result),
                "status" => (7, &mut result.status),
                _ => {
                    self.skip(depth + 1)?;
                    if !self.next_or_close(b'}')? {
                        return Some(result);
                    }
                    continue;
                }
            };
            if seen & (1 << bit) != 0 {
                return None; // serde_json: duplicate field
            }
            seen |= 1 << bit;
            *field = self.optional_scalar(depth + 1)?;
            if !self.next_or_close(b'}')? {
                return Some(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde(bytes: &[u8]) -> Option<BulkResponse<'_>> {
        serde_json::from_slice(bytes).ok()
    }

    /// `scan` agrees with serde_json whenever it answers.
    fn check(bytes: &[u8]) -> bool {
        match scan(bytes) {
            Some(fast) => {
                let slow = serde(bytes).unwrap_or_else(|| {
                    panic!(
                        "scan read an answer serde_json refuses: {}",
                        String::from_utf8_lossy(bytes)
                    )
                });
                assert_eq!(fast, slow, "on {}", String::from_utf8_lossy(bytes));
                true
            }
            None => false,
        }
    }

    const ES7: &str = r#"{"took":30,"errors":true,"items":[{"index":{"_index":"a","_type":"_doc","_id":"1","_version":3,"result":"updated","_shards":{"total":2,"successful":1,"failed":0},"_seq_no":7,"_primary_term":1,"status":200}},{"create":{"_index":"a","_type":"_doc","_id":"2","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[2]: version conflict, document already exists (current version [1])","index_uuid":"x","shard":"0","index":"a"}}},{"delete":{"_index":"a","_id":"3","_version":2,"result":"not_found","status":404}},{"update":{"_index":"a","_id":"4","_version":5,"result":"noop","_seq_no":1.5e3,"_primary_term":-1,"status":200}}]}"#;

    #[test]
    fn reads_what_serde_json_reads() {
        assert!(check(ES7.as_bytes()), "the plain shape takes the fast path");
        let pretty =
            serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(ES7).unwrap())
                .unwrap();
        assert!(check(pretty.as_bytes()));
        for plain in [
            r#"{}"#,
            r#"{"items":null}"#,
            r#"{"items":[]}"#,
            r#"{"error":{"root_cause":[]},"status":400}"#,
            r#"{"items":[{}, [1], "x", null, {"index": null}, {"index": 5, "x": {}}]}"#,
            r#"{"items":[{"index":{"_id":null,"_version":18446744073709551615,"status":"201"}}]}"#,
            r#"{"items":[{"ind\"ex":{"_id":"a\"b\\c\u00e9","_index":"\ud83d\ude00"}}]}"#,
            r#"{"items":[{"index":{"_id":"x","_version":-0,"_seq_no":123456789012345678901234}}]}"#,
            r#"{"items":[{"index":{"_id":["a"],"result":{"x":[true,false,null]},"status":2.0}}]}"#,
        ] {
            assert!(check(plain.as_bytes()), "{plain}");
        }
    }

    #[test]
    fn leaves_the_rest_to_serde_json() {
        for refused in [
            "",
            "[]",
            r#"{"items":{}}"#,
            r#"{"items":[],"items":[]}"#,
            r#"{"items":[{"index":{"_id":"1","_id":"2"}}]}"#,
            r#"{"items":[{"index":{"_id":"1"}}]} x"#,
            r#"{"items":[{"index":{"_id":"1",}}]}"#,
            r#"{"items":[{"index":{"_id":01}}]}"#,
            r#"{"items":[{"index":{"_id":"a\x"}}]}"#,
            "{\"items\":[{\"index\":{\"_id\":\"a\tb\"}}]}",
            r#"{"items":[{"index":{"_i\u0064":"1"}}]}"#,
            r#"{"took":1e999,"items":[]}"#,
            // Lone surrogates where serde_json decodes a string (an item's
            // value, an object's keys) or may: found by the bulk_answer fuzz
            // target; the first and third are errors for serde_json.
            r#"{"items":["\ud800"]}"#,
            r#"{"x":{"\ud800":1},"items":[]}"#,
            r#"{"items":[{"index":{},"\udc00":1}]}"#,
            r#"{"items":[1e999]}"#,
        ] {
            assert!(scan(refused.as_bytes()).is_none(), "{refused}");
        }
        assert!(scan(b"{\"items\":[{\"index\":{\"_id\":\"\xff\"}}]}").is_none());
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(70), "]".repeat(70));
        assert!(scan(deep.as_bytes()).is_none());
        assert!(serde(deep.as_bytes()).is_some());
    }

    /// A small deterministic generator (xorshift) of answers, then byte
    /// mutations of them: whatever `scan` reads, serde_json reads the same.
    #[test]
    fn agrees_with_serde_json_on_generated_and_mutated_answers() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pieces = [
            "\"a\"",
            "\"\\\"\"",
            "\"é\"",
            "1",
            "0",
            "-3",
            "2.5",
            "1e3",
            "true",
            "null",
            "[]",
            "{}",
            "[1,{\"a\":[]}]",
            "{\"_id\":\"z\"}",
            "18446744073709551616",
        ];
        let keys = [
            "_index",
            "_type",
            "_id",
            "_version",
            "_seq_no",
            "_primary_term",
            "result",
            "status",
            "_shards",
            "error",
            "get",
        ];
        let actions = ["index", "create", "update", "delete", "x"];
        let (mut fast, mut total) = (0, 0);
        for _ in 0..4000 {
            let mut answer = String::from("{\"took\":3,\"errors\":false,\"items\":[");
            for i in 0..(next() % 5) {
                if i > 0 {
                    answer.push(',');
                }
                answer.push_str(&format!("{{\"{}\":{{", actions[(next() % 5) as usize]));
                for j in 0..(next() % 6) {
                    if j > 0 {
                        answer.push_str(if next() % 9 == 0 { " ,\n " } else { "," });
                    }
                    let key = keys[(next() % keys.len() as u64) as usize];
                    let value = match next() % 3 {
                        0 => format!("\"v{}\"", next() % 100),
                        1 => format!("{}", next() % 1000),
                        _ => pieces[(next() % pieces.len() as u64) as usize].to_string(),
                    };
                    answer.push_str(&format!("\"{key}\":{value}"));
                }
                answer.push_str("}}");
            }
            answer.push_str("]}");
            let mut bytes = answer.into_bytes();
            total += 1;
            if check(&bytes) {
                fast += 1;
            }
            // Mutations: flip, drop or insert a structural byte.
            for _ in 0..4 {
                let mut mutated = bytes.clone();
                let at = (next() % mutated.len() as u64) as usize;
                const BYTES: &[u8] = b"{}[]\",:\\ 0-.e\x01n";
                let byte = BYTES[(next() % BYTES.len() as u64) as usize];
                match next() % 3 {
                    0 => mutated[at] = byte,
                    1 => {
                        mutated.remove(at);
                    }
                    _ => mutated.insert(at, byte),
                }
                check(&mutated);
            }
            bytes.clear();
        }
        // Most generated answers are plain: the fast path must take them.
        assert!(fast * 2 > total, "fast path taken for {fast} of {total}");
    }
}
