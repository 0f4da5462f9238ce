//! The pagination convention of `common.proto`, shared by every List RPC.
//!
//! - `page_size`: 0 means [`DEFAULT_PAGE_SIZE`], values above
//!   [`MAX_PAGE_SIZE`] are capped, negative values are `INVALID_ARGUMENT`.
//! - `page_token`: opaque to clients. It carries the sort key of the last
//!   row returned (keyset pagination, so pages stay stable while rows are
//!   added) and a fingerprint of the request's filters: a token replayed
//!   with different filters is `INVALID_ARGUMENT` instead of silently
//!   returning a wrong page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Status;

use crate::validate::invalid;

/// Page size used when a request leaves `page_size` at 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page size; larger requests are capped to it.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// One page request, decoded and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest<K> {
    /// Rows to return at most.
    pub size: u32,
    /// Sort key of the last row of the previous page; `None` for the first.
    pub after: Option<K>,
}

impl<K: Serialize + DeserializeOwned> PageRequest<K> {
    /// Validates `page_size` and decodes `page_token` of a request whose
    /// other fields are summed up by `filters` (any stable text, e.g. the
    /// filters serialised as JSON).
    pub fn parse(page_size: i32, page_token: &str, filters: &str) -> Result<Self, Status> {
        let size = match page_size {
            n if n < 0 => return Err(invalid("page_size", "must not be negative")),
            0 => DEFAULT_PAGE_SIZE,
            n => (n as u32).min(MAX_PAGE_SIZE),
        };
        let after = if page_token.is_empty() {
            None
        } else {
            Some(decode(page_token, filters)?)
        };
        Ok(PageRequest { size, after })
    }

    /// Rows to fetch: one more than the page, to know whether another page
    /// follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.size) + 1
    }

    /// Cuts `rows` (fetched with [`Self::fetch_limit`]) to the page and
    /// returns the `next_page_token`: empty on the last page.
    pub fn finish<T>(&self, rows: &mut Vec<T>, key_of: impl Fn(&T) -> K, filters: &str) -> String {
        if rows.len() <= self.size as usize {
            return String::new();
        }
        rows.truncate(self.size as usize);
        rows.last()
            .map(|last| encode(&key_of(last), filters))
            .unwrap_or_default()
    }
}

#[derive(Serialize, serde::Deserialize)]
struct Token<K> {
    /// Token format version.
    v: u8,
    /// Fingerprint of the filters the token was issued for.
    f: String,
    /// Sort key of the last row returned.
    k: K,
}

fn encode<K: Serialize>(after: &K, filters: &str) -> String {
    let token = Token {
        v: 1,
        f: fingerprint(filters),
        k: after,
    };
    // Serialising plain keys cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

fn decode<K: DeserializeOwned>(token: &str, filters: &str) -> Result<K, Status> {
    let bad = || {
        invalid(
            "page_token",
            "not a token returned by this RPC (pass the previous response's next_page_token unchanged)",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let token: Token<K> = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if token.v != 1 {
        return Err(bad());
    }
    if token.f != fingerprint(filters) {
        return Err(invalid(
            "page_token",
            "issued for a request with other filters; keep every other field unchanged while paging",
        ));
    }
    Ok(token.k)
}

/// FNV-1a of the filters: not a security boundary, only a consistency check.
fn fingerprint(filters: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in filters.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_defaults_caps_and_rejects_negative() {
        let p = PageRequest::<String>::parse(0, "", "").unwrap();
        assert_eq!(p.size, DEFAULT_PAGE_SIZE);
        assert_eq!(
            PageRequest::<String>::parse(5000, "", "").unwrap().size,
            1000
        );
        let err = PageRequest::<String>::parse(-1, "", "").unwrap_err();
        assert!(err.message().starts_with("page_size: "));
    }

    #[test]
    fn tokens_round_trip_and_are_tied_to_filters() {
        let page = PageRequest::<String>::parse(2, "", "f1").unwrap();
        let mut rows = vec!["a".to_string(), "b".into(), "c".into()];
        let token = page.finish(&mut rows, Clone::clone, "f1");
        assert_eq!(rows, ["a", "b"]);
        let next = PageRequest::<String>::parse(2, &token, "f1").unwrap();
        assert_eq!(next.after.as_deref(), Some("b"));

        let err = PageRequest::<String>::parse(2, &token, "f2").unwrap_err();
        assert!(err.message().starts_with("page_token: "), "{err}");
        let err = PageRequest::<String>::parse(2, "garbage!", "f1").unwrap_err();
        assert!(err.message().starts_with("page_token: "), "{err}");

        let mut last = vec!["a".to_string()];
        assert_eq!(page.finish(&mut last, Clone::clone, "f1"), "");
    }
}
