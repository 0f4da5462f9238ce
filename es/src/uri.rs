//! Path and query-string handling shared by the classifier and the
//! cross-version rewriter: percent-decoding the way Elasticsearch's REST
//! layer does it, and building paths back from decoded segments.

use std::borrow::Cow;

/// Why a path or query component could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding in [{0}]")]
    BadEscape(String),
    /// The decoded bytes are not UTF-8.
    #[error("percent-decoded [{0}] is not valid UTF-8")]
    NotUtf8(String),
}

/// Percent-decodes one path segment. `+` stays a literal plus, as in
/// Elasticsearch's `RestUtils.decodeComponent` for path parts.
pub fn decode_path_segment(raw: &str) -> Result<String, UriError> {
    decode(raw, false).map(Cow::into_owned)
}

/// Percent-decodes one query-string key or value; `+` means a space.
pub fn decode_query_component(raw: &str) -> Result<String, UriError> {
    decode(raw, true).map(Cow::into_owned)
}

fn decode(raw: &str, plus_is_space: bool) -> Result<Cow<'_, str>, UriError> {
    if !raw
        .bytes()
        .any(|b| b == b'%' || (plus_is_space && b == b'+'))
    {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(UriError::BadEscape(raw.to_owned())),
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| UriError::NotUtf8(raw.to_owned()))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Splits a path into its non-empty segments, still percent-encoded.
/// Elasticsearch ignores empty segments (`/idx//_doc/1/` is `/idx/_doc/1`).
pub fn raw_segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// Splits a path into decoded segments.
pub fn decoded_segments(path: &str) -> Result<Vec<String>, UriError> {
    raw_segments(path).map(decode_path_segment).collect()
}

/// Parses a query string into decoded `(key, value)` pairs in order. A key
/// without `=` gets an empty value (`?refresh` is `refresh=""`). Pairs that
/// fail to decode are kept raw: the query string only feeds hints (routing,
/// pipeline, op_type), never routing of the request itself.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode_query_component(k).unwrap_or_else(|_| k.to_owned());
            let v = decode_query_component(v).unwrap_or_else(|_| v.to_owned());
            (k, v)
        })
        .collect()
}

/// The last value of query parameter `key` (Elasticsearch keeps the last
/// occurrence), if present.
pub fn query_param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Percent-encodes a decoded segment so it can be placed back into a path:
/// everything but RFC 3986 unreserved characters is escaped.
pub fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Splits `path?query` into its two parts.
pub fn split_path_query(path_and_query: &str) -> (&str, Option<&str>) {
    match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    }
}

/// Reduces a request target to `path[?query]`, dropping any scheme,
/// authority and user-info of an absolute-form target
/// (`http://user:pass@host:9200/idx` → `/idx`), and any fragment. This is
/// what gets stored in the queue, so credentials in a URL never reach it.
pub fn origin_form(target: &str) -> String {
    let without_fragment = target.split('#').next().unwrap_or_default();
    let rest = match without_fragment.find("://") {
        Some(scheme_end)
            if without_fragment[..scheme_end]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) =>
        {
            let after = &without_fragment[scheme_end + 3..];
            match after.find(['/', '?']) {
                Some(i) => &after[i..],
                None => "",
            }
        }
        _ => without_fragment,
    };
    if rest.starts_with('/') {
        rest.to_owned()
    } else {
        format!("/{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_decode_percent_but_keep_plus() {
        assert_eq!(decode_path_segment("a%2Fb+c").unwrap(), "a/b+c");
        assert_eq!(decode_path_segment("caf%C3%A9").unwrap(), "café");
        assert_eq!(decode_path_segment("plain").unwrap(), "plain");
    }

    #[test]
    fn query_components_decode_plus_as_space() {
        assert_eq!(decode_query_component("a+b%2B").unwrap(), "a b+");
    }

    #[test]
    fn bad_escapes_and_bad_utf8_are_errors() {
        assert!(matches!(
            decode_path_segment("%zz"),
            Err(UriError::BadEscape(_))
        ));
        assert!(matches!(
            decode_path_segment("%4"),
            Err(UriError::BadEscape(_))
        ));
        assert!(matches!(
            decode_path_segment("%"),
            Err(UriError::BadEscape(_))
        ));
        assert!(matches!(
            decode_path_segment("%FF"),
            Err(UriError::NotUtf8(_))
        ));
    }

    #[test]
    fn empty_segments_are_ignored() {
        assert_eq!(
            decoded_segments("//idx//_doc/1/").unwrap(),
            vec!["idx", "_doc", "1"]
        );
    }

    #[test]
    fn query_pairs_keep_order_and_last_wins() {
        let pairs = query_pairs(Some("routing=a&refresh&routing=b%20c&&x=1=2"));
        assert_eq!(query_param(&pairs, "routing"), Some("b c"));
        assert_eq!(query_param(&pairs, "refresh"), Some(""));
        assert_eq!(query_param(&pairs, "x"), Some("1=2"));
        assert_eq!(query_param(&pairs, "missing"), None);
    }

    #[test]
    fn encode_round_trips_through_decode() {
        for s in ["a/b", "café", "x y+z", "100%", "é?#&="] {
            assert_eq!(decode_path_segment(&encode_path_segment(s)).unwrap(), s);
        }
    }

    #[test]
    fn origin_form_drops_authority_and_credentials() {
        assert_eq!(
            origin_form("http://user:secret@es:9200/idx/_doc/1?routing=a"),
            "/idx/_doc/1?routing=a"
        );
        assert_eq!(origin_form("https://es:9200"), "/");
        assert_eq!(origin_form("https://es:9200?x=1"), "/?x=1");
        assert_eq!(origin_form("/idx/_mapping?x=1#frag"), "/idx/_mapping?x=1");
        assert_eq!(origin_form("idx"), "/idx");
    }
}
