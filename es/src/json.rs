//! Small JSON helpers that work on raw bytes, so document sources are never
//! re-serialised (which would reorder keys or round large numbers), and
//! lenient pieces for reading cluster answers into borrowed typed structs
//! without building a `serde_json::Value` tree ([`Scalar`], [`IfObject`],
//! [`SingleKey`]).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

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
    // Most documents arrive compact, many with spaces inside their strings
    // only: those are borrowed, not copied.
    let Some(first) = first_unquoted_whitespace(bytes) else {
        return Cow::Borrowed(bytes);
    };
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..first]);
    // `first` is outside any string.
    let mut in_string = false;
    let mut escaped = false;
    for &b in &bytes[first..] {
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

/// The position of the first whitespace byte outside a string, if any.
/// Strings are skipped with `memchr` (to their closing quote, past
/// escapes): they hold most of a document's bytes.
fn first_unquoted_whitespace(bytes: &[u8]) -> Option<usize> {
    if !bytes
        .iter()
        .any(|b| matches!(b, b'\n' | b'\r' | b' ' | b'\t'))
    {
        return None;
    }
    let mut at = 0;
    while let Some(&b) = bytes.get(at) {
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => return Some(at),
            b'"' => {
                at += 1;
                // To the closing quote; an unterminated string ends the
                // document (no whitespace outside strings after it).
                loop {
                    let rest = bytes.get(at..)?;
                    let found = at + memchr::memchr2(b'"', b'\\', rest)?;
                    if bytes[found] == b'\\' {
                        at = found + 2;
                    } else {
                        at = found + 1;
                        break;
                    }
                }
            }
            _ => at += 1,
        }
    }
    None
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

/// One JSON value of a cluster's answer read as a string or an integer,
/// without building a tree. Reading a field as a `Scalar` never fails on
/// the value's type, so a wrongly typed field is reported by the caller
/// with the field's name, like a lookup in a `serde_json::Value` would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scalar<'a> {
    /// A string, borrowed from the input unless it contains escapes.
    Str(Cow<'a, str>),
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer.
    Int(i64),
    /// `null`, a boolean, a float, an array or an object.
    Other,
}

impl Scalar<'_> {
    /// The string, if the value is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as `u64`, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Scalar::UInt(n) => Some(*n),
            _ => None,
        }
    }

    /// The value as `i64`, if it is an integer in range.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Scalar::UInt(n) => i64::try_from(*n).ok(),
            Scalar::Int(n) => Some(*n),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::UInt(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(v).map_or(Scalar::Int(v), Scalar::UInt))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq)?;
        Ok(Scalar::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map)?;
        Ok(Scalar::Other)
    }
}

/// A JSON value read as `T` when it is an object, else as a [`Scalar`]
/// (arrays and objects of the wrong kind are skipped, not an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectOr<'a, T> {
    /// The value was an object.
    Object(T),
    /// Any other value.
    Scalar(Scalar<'a>),
}

impl<T> ObjectOr<'_, T> {
    /// The object, if the value was one.
    pub fn object(self) -> Option<T> {
        match self {
            ObjectOr::Object(t) => Some(t),
            ObjectOr::Scalar(_) => None,
        }
    }
}

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for ObjectOr<'a, T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ObjectOrVisitor(PhantomData))
    }
}

struct ObjectOrVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOrVisitor<T> {
    type Value = ObjectOr<'de, T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(ObjectOr::Object)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        ScalarVisitor.visit_seq(seq).map(ObjectOr::Scalar)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        ScalarVisitor.visit_borrowed_str(v).map(ObjectOr::Scalar)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        ScalarVisitor.visit_str(v).map(ObjectOr::Scalar)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        ScalarVisitor.visit_string(v).map(ObjectOr::Scalar)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        ScalarVisitor.visit_u64(v).map(ObjectOr::Scalar)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        ScalarVisitor.visit_i64(v).map(ObjectOr::Scalar)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        ScalarVisitor.visit_f64(v).map(ObjectOr::Scalar)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        ScalarVisitor.visit_bool(v).map(ObjectOr::Scalar)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        ScalarVisitor.visit_unit().map(ObjectOr::Scalar)
    }
}

/// A JSON value expected to be an object with exactly one key, like an
/// item of a `_bulk` answer (`{"index": {...}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SingleKey<'a, T> {
    /// The object's only key and its value.
    Entry(Cow<'a, str>, T),
    /// An object with no key or with several keys.
    KeyCount,
    /// Not an object.
    NotObject,
}

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for SingleKey<'a, T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(
            match ObjectOr::<'a, OneKey<'a, T>>::deserialize(deserializer)? {
                ObjectOr::Object(OneKey(entry)) => entry,
                ObjectOr::Scalar(_) => SingleKey::NotObject,
            },
        )
    }
}

/// The object behind a [`SingleKey`].
struct OneKey<'a, T>(SingleKey<'a, T>);

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for OneKey<'a, T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_map(SingleKeyVisitor(PhantomData))
            .map(OneKey)
    }
}

struct SingleKeyVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for SingleKeyVisitor<T> {
    type Value = SingleKey<'de, T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some(key) = map.next_key::<Scalar<'de>>()? else {
            return Ok(SingleKey::KeyCount);
        };
        let value = map.next_value::<T>()?;
        if map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value::<IgnoredAny>()?;
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(SingleKey::KeyCount);
        }
        match key {
            Scalar::Str(key) => Ok(SingleKey::Entry(key, value)),
            _ => Ok(SingleKey::KeyCount),
        }
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
        // Whitespace inside strings only (prose documents): nothing to copy.
        let prose = b"{\"title\":\"a b\\\" c\",\"body\":\"line\\n two\\t\"}";
        assert!(matches!(compact(prose), Cow::Borrowed(_)));
        // Whitespace after a string with an escaped quote is outside it.
        let out = compact(b"{\"a\":\"x\\\" y\" ,\"b\":1}");
        assert_eq!(&*out, &b"{\"a\":\"x\\\" y\",\"b\":1}"[..]);
    }

    /// The plain byte-by-byte rule `compact` implements.
    fn compact_reference(bytes: &[u8]) -> Vec<u8> {
        let (mut out, mut in_string, mut escaped) = (Vec::new(), false, false);
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
            } else if b == b'"' {
                in_string = true;
                out.push(b);
            } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                out.push(b);
            }
        }
        out
    }

    #[test]
    fn compact_agrees_with_the_byte_by_byte_rule() {
        // Many short inputs over the bytes that matter, unterminated
        // strings and trailing escapes included.
        let alphabet = b"\"\\ \t\n\ra{}:,";
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..50_000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let len = (seed >> 59) as usize;
            let input: Vec<u8> = (0..len)
                .map(|i| alphabet[((seed >> (i * 4 % 56)) & 0xf) as usize % alphabet.len()])
                .collect();
            assert_eq!(
                &*compact(&input),
                compact_reference(&input).as_slice(),
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
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

    #[derive(Debug, serde::Deserialize)]
    struct Item<'a> {
        #[serde(borrow)]
        s: Option<Scalar<'a>>,
        #[serde(borrow)]
        o: Option<ObjectOr<'a, Inner<'a>>>,
    }

    #[derive(Debug, serde::Deserialize)]
    struct Inner<'a> {
        #[serde(borrow)]
        t: Option<Scalar<'a>>,
    }

    fn items(json: &str) -> Vec<SingleKey<'_, Item<'_>>> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn lenient_pieces_read_any_value_without_failing() {
        let parsed = items(
            r#"[{"a":{"s":"x","o":{"t":7,"u":[1]}}},{"b":{"s":"\u00e9","o":[1,{"t":2}]}},
                {"c":{"s":-3,"o":"no"}},{"d":{"s":1.5,"x":{"y":[]}}},{"e":{"s":{"k":1}}},
                {"f":{},"g":{}},{},3,[{"a":{}}],"s",null]"#,
        );
        let SingleKey::Entry(key, item) = &parsed[0] else {
            panic!("{parsed:?}")
        };
        assert!(matches!(key, Cow::Borrowed("a")));
        assert!(matches!(item.s, Some(Scalar::Str(Cow::Borrowed("x")))));
        let Some(ObjectOr::Object(inner)) = &item.o else {
            panic!("{item:?}")
        };
        assert_eq!(inner.t.as_ref().and_then(Scalar::as_u64), Some(7));
        let SingleKey::Entry(_, item) = &parsed[1] else {
            panic!()
        };
        assert_eq!(item.s.as_ref().and_then(Scalar::as_str), Some("é"));
        assert!(matches!(item.o, Some(ObjectOr::Scalar(Scalar::Other))));
        let SingleKey::Entry(_, item) = &parsed[2] else {
            panic!()
        };
        assert_eq!(item.s.as_ref().and_then(Scalar::as_i64), Some(-3));
        assert_eq!(item.s.as_ref().and_then(Scalar::as_u64), None);
        let SingleKey::Entry(_, item) = &parsed[3] else {
            panic!()
        };
        assert_eq!(item.s, Some(Scalar::Other));
        assert!(item.o.is_none());
        let SingleKey::Entry(_, item) = &parsed[2] else {
            panic!()
        };
        assert!(matches!(&item.o, Some(ObjectOr::Scalar(Scalar::Str(s))) if s == "no"));
        let SingleKey::Entry(_, item) = &parsed[4] else {
            panic!()
        };
        assert_eq!(item.s, Some(Scalar::Other));
        assert!(matches!(parsed[5], SingleKey::KeyCount));
        assert!(matches!(parsed[6], SingleKey::KeyCount));
        for not_object in &parsed[7..] {
            assert!(matches!(not_object, SingleKey::NotObject));
        }
    }

    #[test]
    fn lenient_pieces_read_from_a_value_too() {
        let value = serde_json::json!({"a": {"s": "x", "o": {"t": "y"}}});
        let SingleKey::Entry(key, item) = SingleKey::<Item>::deserialize(&value).unwrap() else {
            panic!()
        };
        assert_eq!(key, "a");
        assert_eq!(item.s.as_ref().and_then(Scalar::as_str), Some("x"));
        let inner = item.o.and_then(ObjectOr::object).unwrap();
        assert_eq!(inner.t.as_ref().and_then(Scalar::as_str), Some("y"));
    }
}
