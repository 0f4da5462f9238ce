//! Search answers read with every hit's `_source` kept as the bytes the
//! cluster returned (compacted to one line), never re-serialised: key order,
//! number spelling (`1.50`, `1e3`) and duplicate-free layout survive a copy,
//! and a strict comparison can hash exactly what is stored.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// One page of a search, scroll or point-in-time answer.
#[derive(Debug, Default)]
pub struct SearchPage {
    /// The hits, in the answer's order.
    pub hits: Vec<SourceHit>,
    /// `_scroll_id`, for scrolls.
    pub scroll_id: Option<String>,
    /// `pit_id`, for point-in-time searches.
    pub pit_id: Option<String>,
}

/// One hit of a [`SearchPage`].
#[derive(Debug, Clone, PartialEq)]
pub struct SourceHit {
    /// `_id`.
    pub id: String,
    /// `_type` (5.x/6.x).
    pub doc_type: Option<String>,
    /// `_routing`.
    pub routing: Option<String>,
    /// `_version`, when asked for.
    pub version: Option<i64>,
    /// `_source` as returned, compacted to one line; `None` when absent.
    pub source: Option<String>,
    /// `sort` values (for `search_after`).
    pub sort: Option<Value>,
}

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    hits: Option<Hits<'a>>,
    #[serde(rename = "_scroll_id")]
    scroll_id: Option<String>,
    pit_id: Option<String>,
}

#[derive(Deserialize)]
struct Hits<'a> {
    #[serde(borrow, default)]
    hits: Vec<Hit<'a>>,
}

#[derive(Deserialize)]
struct Hit<'a> {
    #[serde(rename = "_id")]
    id: String,
    #[serde(rename = "_type")]
    doc_type: Option<String>,
    #[serde(rename = "_routing")]
    routing: Option<String>,
    #[serde(rename = "_version")]
    version: Option<i64>,
    #[serde(rename = "_source", borrow)]
    source: Option<&'a RawValue>,
    sort: Option<Value>,
}

/// Reads a search answer (`Err` when it is not one).
pub fn parse_search_page(body: &[u8]) -> Result<SearchPage, serde_json::Error> {
    let answer: Answer<'_> = serde_json::from_slice(body)?;
    Ok(SearchPage {
        hits: answer
            .hits
            .map(|h| h.hits)
            .unwrap_or_default()
            .into_iter()
            .map(|hit| SourceHit {
                id: hit.id,
                doc_type: hit.doc_type,
                routing: hit.routing,
                version: hit.version,
                source: hit.source.map(|raw| compact_json(raw.get())),
                sort: hit.sort,
            })
            .collect(),
        scroll_id: answer.scroll_id,
        pit_id: answer.pit_id,
    })
}

/// `json` without the whitespace between tokens (strings untouched), so a
/// pretty-printed `_source` fits one NDJSON line with its bytes otherwise
/// unchanged.
pub fn compact_json(json: &str) -> String {
    if !json
        .bytes()
        .any(|b| matches!(b, b'\n' | b'\r' | b'\t' | b' '))
    {
        return json.to_string();
    }
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if !matches!(c, ' ' | '\n' | '\r' | '\t') {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_keep_their_bytes() {
        let body = br#"{"_scroll_id":"s1","hits":{"hits":[
            {"_id":"1","_version":3,"_source":{"zeta":1,"alpha":1.50,"exp":1e3,"nested":{"b":2,"a":1}},"sort":["1"]},
            {"_id":"2","_type":"doc","_routing":"r","_source":{ "s" : "a \" b  c\n" }},
            {"_id":"3"}]}}"#;
        let page = parse_search_page(body).unwrap();
        assert_eq!(page.scroll_id.as_deref(), Some("s1"));
        assert_eq!(
            page.hits[0].source.as_deref(),
            Some(r#"{"zeta":1,"alpha":1.50,"exp":1e3,"nested":{"b":2,"a":1}}"#)
        );
        assert_eq!(page.hits[0].version, Some(3));
        assert_eq!(page.hits[0].sort, Some(serde_json::json!(["1"])));
        assert_eq!(
            page.hits[1].source.as_deref(),
            Some(r#"{"s":"a \" b  c\n"}"#)
        );
        assert_eq!(page.hits[1].routing.as_deref(), Some("r"));
        assert_eq!(page.hits[2].source, None);
        assert!(parse_search_page(b"<html>").is_err());
    }

    #[test]
    fn compaction_touches_only_whitespace_between_tokens() {
        assert_eq!(
            compact_json("{\n  \"a\" : [ 1 , 2.50 ],\n  \"b\\\\\": \" x \"\n}"),
            "{\"a\":[1,2.50],\"b\\\\\":\" x \"}"
        );
        assert_eq!(compact_json("{\"a\":1}"), "{\"a\":1}");
    }
}
