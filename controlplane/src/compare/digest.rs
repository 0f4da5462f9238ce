//! Hashes of a comparison: canonical `_source` hashes, the digest partition
//! of a document id, and order-independent partition digests.

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Appends the canonical form of `value` to `out`: JSON with object keys
/// sorted, no insignificant whitespace.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// SHA-256 (hex) of the canonical form of a document's `_source`.
pub fn source_hash(source: &Value) -> String {
    let mut text = String::new();
    canonical(source, &mut text);
    hex(&Sha256::digest(text.as_bytes()))
}

/// How `_source`s are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceMatch {
    /// As JSON values: key order and insignificant spelling (`1.50` vs
    /// `1.5`) do not count.
    Json,
    /// Byte for byte as the cluster stores them (compacted): key order and
    /// number spelling count too.
    Exact,
}

/// SHA-256 (hex) of a document's `_source` as returned (`raw`, compacted
/// JSON) under `mode`.
pub fn raw_source_hash(raw: Option<&str>, mode: SourceMatch) -> String {
    let raw = raw.unwrap_or("null");
    match mode {
        SourceMatch::Exact => hex(&Sha256::digest(raw.as_bytes())),
        SourceMatch::Json => source_hash(&serde_json::from_str(raw).unwrap_or(Value::Null)),
    }
}

/// The digest partition of document `id` among `partitions`.
pub fn partition_of(id: &str, partitions: u32) -> u32 {
    let hash = Sha256::digest(id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    (u64::from_be_bytes(first) % u64::from(partitions.max(1))) as u32
}

/// Order-independent digest of a set of documents: the count and the sum
/// (mod 2^128) of each document's `sha256(id, version, source hash)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetDigest {
    /// Documents added.
    pub docs: u64,
    sum: u128,
}

impl SetDigest {
    /// Adds one document; `version` is `None` when versions are ignored.
    pub fn add(&mut self, id: &str, version: Option<i64>, source_hash: &str) {
        let mut hasher = Sha256::new();
        hasher.update(id.as_bytes());
        hasher.update([0]);
        if let Some(version) = version {
            hasher.update(version.to_string().as_bytes());
        }
        hasher.update([0]);
        hasher.update(source_hash.as_bytes());
        let hash = hasher.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&hash[..16]);
        self.sum = self.sum.wrapping_add(u128::from_be_bytes(first));
        self.docs += 1;
    }

    /// The digest as hex.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_change_the_source_hash() {
        let a = json!({"a": 1, "b": {"x": [1, 2], "y": "z"}});
        let b: Value = serde_json::from_str(r#"{"b":{"y":"z","x":[1,2]},"a":1}"#).unwrap();
        assert_eq!(source_hash(&a), source_hash(&b));
        assert_ne!(source_hash(&a), source_hash(&json!({"a": 2})));
    }

    #[test]
    fn exact_mode_sees_key_order_and_number_spelling() {
        let a = r#"{"zeta":1,"alpha":1.50,"exp":1e3}"#;
        let b = r#"{"alpha":1.5,"exp":1000.0,"zeta":1}"#;
        assert_eq!(
            raw_source_hash(Some(a), SourceMatch::Json),
            raw_source_hash(Some(b), SourceMatch::Json)
        );
        assert_ne!(
            raw_source_hash(Some(a), SourceMatch::Exact),
            raw_source_hash(Some(b), SourceMatch::Exact)
        );
        assert_eq!(
            raw_source_hash(Some(a), SourceMatch::Exact),
            raw_source_hash(Some(a), SourceMatch::Exact)
        );
    }

    #[test]
    fn set_digest_ignores_order_but_not_versions() {
        let (mut one, mut two, mut three) = Default::default();
        SetDigest::add(&mut one, "1", Some(1), "h1");
        SetDigest::add(&mut one, "2", Some(1), "h2");
        SetDigest::add(&mut two, "2", Some(1), "h2");
        SetDigest::add(&mut two, "1", Some(1), "h1");
        SetDigest::add(&mut three, "1", Some(2), "h1");
        SetDigest::add(&mut three, "2", Some(1), "h2");
        assert_eq!(one, two);
        assert_ne!(one.hex(), three.hex());
    }
}
