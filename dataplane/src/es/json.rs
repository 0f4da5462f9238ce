//! Small JSON helpers that work on raw bytes, so document sources are never
//! re-serialised (which would reorder keys or round large numbers).

use std::borrow::Cow;

/// Whether `bytes` is exactly one JSON value (surrounding whitespace
/// allowed).
pub fn is_single_json_value(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// Removes the whitespace outside strings, so a pretty-printed document
/// fits on one NDJSON line. Everything else (key order, number spelling,
/// escapes) is kept byte for byte. Never fails: bytes that are not JSON
/// come out with their unquoted whitespace removed, and callers check
/// validity separately.
pub fn compact(bytes: &[u8]) -> Cow<'_, [u8]> {
    if !bytes
        .iter()
        .any(|b| matches!(b, b'\n' | b'\r' | b' ' | b'\t'))
    {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b'"' => {
                    in_string = true;
                    out.push(b);
                }
                _ => out.push(b),
            }
        }
    }
    Cow::Owned(out)
}

/// Writes `s` as a JSON string literal.
pub fn push_str(buf: &mut Vec<u8>, s: &str) {
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, s);
}

/// A scalar JSON value as text, the way Elasticsearch's `parser.text()`
/// reads it: strings as-is, numbers and booleans in their JSON spelling.
/// `None` for null, arrays and objects.
pub fn scalar_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A JSON integer, also accepted as a numeric string (`"5"`), like
/// Elasticsearch's `parser.longValue()`.
pub fn scalar_i64(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_strings_and_numbers_intact() {
        let pretty = b"{\n  \"a b\" : \"x \\\" \\n y\",\r\n  \"n\": 12345678901234567890123 ,\t\"f\": 1.50\n}\n";
        let out = compact(pretty);
        assert_eq!(
            &*out,
            &b"{\"a b\":\"x \\\" \\n y\",\"n\":12345678901234567890123,\"f\":1.50}"[..]
        );
        assert!(is_single_json_value(&out));
    }

    #[test]
    fn compact_borrows_when_nothing_to_do() {
        assert!(matches!(compact(b"{\"a\":1}"), Cow::Borrowed(_)));
    }

    #[test]
    fn compact_handles_escaped_backslash_before_quote() {
        let out = compact(b"{\"a\": \"c:\\\\\" , \"b\" : 1}");
        assert_eq!(&*out, &b"{\"a\":\"c:\\\\\",\"b\":1}"[..]);
    }

    #[test]
    fn single_value_detection() {
        assert!(is_single_json_value(b" {\"a\":1} \r\n"));
        assert!(!is_single_json_value(b"{\"a\":1} {\"b\":2}"));
        assert!(!is_single_json_value(b"a: 1\n"));
        assert!(!is_single_json_value(b""));
    }
}
