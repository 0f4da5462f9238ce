//! Data streams as the gateway and the copy meet them.
//!
//! A write to a data stream lands in its current backing index, and the
//! primary's answer names that index (`.ds-logs-app-000002`): that is what
//! the gateway records. The backup refuses most writes addressed to a
//! backing index (OpenSearch and Elasticsearch accept a `create` only
//! through the stream's name, and an `index` into a backing index only
//! with `if_seq_no`/`if_primary_term`), and refuses a rollover of a data
//! stream that names the new index. So:
//!
//! * a recorded document written into a backing index is replayed as a
//!   `create` through its stream (no version: data streams accept only
//!   internal versioning for creates); a `create` the backup answers 409
//!   (the document is already there) counts as applied. Data-stream
//!   documents are append-only, so an update (version above 1) is not
//!   replayable this way and is refused by name instead (a dead letter);
//! * a delete of a document in a backing index is replayed on that backing
//!   index with `external_gte` like any other delete (the backup accepts
//!   it);
//!   That works for the writes the gateway records while both streams are
//!   at one generation. A document the migration copy created sits in the
//!   target's write index whichever backing index holds it on the source,
//!   so a delete is first located through the stream (after a refresh of
//!   the stream: [`locate_request`], [`located_index`]) and sent to the backing index that holds it;
//! * a rollover of a data stream is recorded with the backing index it
//!   created, like any rollover, but replayed as "bring the backup's stream
//!   to that generation" ([`stream_rollover`]): the backup's stream rolls
//!   over (without naming the new index) until it reaches the generation,
//!   or not at all when it is there already (the migration job's copy
//!   brings the target's stream to the source's generation, which may
//!   include rollovers recorded while the task was paused). Backing
//!   indices created later then have the same names on both sides.

/// The data stream `index` is a backing index of, when its name has the
/// shape of one: `.ds-<stream>-<generation>` (OpenSearch, Elasticsearch
/// before 7.11) or `.ds-<stream>-<yyyy.MM.dd>-<generation>` (Elasticsearch
/// 7.11+), the generation being six digits or more. Names starting with
/// `.ds-` are reserved for backing indices on both.
pub fn stream_of_backing_index(index: &str) -> Option<&str> {
    let rest = index.strip_prefix(".ds-")?;
    let (head, generation) = rest.rsplit_once('-')?;
    if generation.len() < 6 || !generation.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let stream = match head.rsplit_once('-') {
        Some((stream, date)) if is_backing_date(date) => stream,
        _ => head,
    };
    (!stream.is_empty()).then_some(stream)
}

/// The stream and generation a recorded rollover brought the primary's
/// stream to: `POST /{stream}/_rollover/{backing index of stream}`.
pub fn stream_rollover(op: &crate::ReplicationOp) -> Option<(String, u64)> {
    let crate::ReplicationOp::IndexMeta { method, path, .. } = op else {
        return None;
    };
    if method != http::Method::POST {
        return None;
    }
    let (path, _) = crate::uri::split_path_query(path);
    let segments = crate::uri::decoded_segments(path).ok()?;
    match segments.as_slice() {
        [stream, rollover, new_index] if rollover == "_rollover" => {
            (stream_of_backing_index(new_index) == Some(stream.as_str()))
                .then(|| Some((stream.clone(), backing_index_generation(new_index)?)))
                .flatten()
        }
        _ => None,
    }
}

/// The generation in an answer to `GET /_data_stream/{stream}`.
pub fn generation_of(body: &[u8]) -> Option<u64> {
    let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    answer["data_streams"][0]["generation"].as_u64()
}

/// The search (path, body) that finds which backing index of `stream`
/// holds document `id`.
pub fn locate_request(stream: &str, id: &str) -> (String, Vec<u8>) {
    let path = format!("/{}/_search", crate::uri::encode_path_segment(stream));
    let body = serde_json::json!({
        "query": { "ids": { "values": [id] } },
        "_source": false,
        "size": 1,
    });
    (path, body.to_string().into_bytes())
}

/// The backing index an answer to [`locate_request`] names; `None` when no
/// backing index holds the document. `Err` when the answer is not a search
/// result.
pub fn located_index(body: &[u8]) -> Result<Option<String>, String> {
    let answer: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("search answer is not JSON: {e}"))?;
    let hits = answer["hits"]["hits"]
        .as_array()
        .ok_or_else(|| "search answer has no hits".to_owned())?;
    Ok(hits
        .first()
        .and_then(|hit| hit["_index"].as_str())
        .map(str::to_owned))
}

/// Whether `s` is `yyyy.MM.dd`.
fn is_backing_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'.'
        && b[7] == b'.'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// The generation of a backing index (`.ds-logs-000012` → 12).
pub fn backing_index_generation(index: &str) -> Option<u64> {
    stream_of_backing_index(index)?;
    index.rsplit_once('-')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backing_indices_name_their_stream() {
        assert_eq!(
            stream_of_backing_index(".ds-logs-app-000001"),
            Some("logs-app")
        );
        assert_eq!(
            stream_of_backing_index(".ds-logs-app-2026.12.08-000003"),
            Some("logs-app")
        );
        assert_eq!(stream_of_backing_index(".ds-x-1234567"), Some("x"));
        assert_eq!(backing_index_generation(".ds-logs-app-000012"), Some(12));
        assert_eq!(backing_index_generation(".ds-m-2026.01.31-000002"), Some(2));
    }

    #[test]
    fn a_document_is_located_through_its_stream() {
        let (path, body) = locate_request("logs app", "a\"1");
        assert_eq!(path, "/logs%20app/_search");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["query"]["ids"]["values"][0], "a\"1");
        assert_eq!(
            located_index(br#"{"hits":{"hits":[{"_index":".ds-l-000002","_id":"a"}]}}"#),
            Ok(Some(".ds-l-000002".to_owned()))
        );
        assert_eq!(located_index(br#"{"hits":{"hits":[]}}"#), Ok(None));
        assert!(located_index(br#"{"error":{}}"#).is_err());
        assert!(located_index(b"<html>").is_err());
    }

    #[test]
    fn a_recorded_rollover_of_a_stream_names_its_generation() {
        let op = |method: http::Method, path: &str| crate::ReplicationOp::IndexMeta {
            method,
            path: path.into(),
            body: bytes::Bytes::new(),
        };
        assert_eq!(
            stream_rollover(&op(
                http::Method::POST,
                "/logs-app/_rollover/.ds-logs-app-000003?wait_for_active_shards=1"
            )),
            Some(("logs-app".to_owned(), 3))
        );
        for (method, path) in [
            (http::Method::POST, "/logs-write/_rollover/logs-000002"),
            (http::Method::POST, "/other/_rollover/.ds-logs-app-000003"),
            (http::Method::POST, "/logs-app/_rollover"),
            (http::Method::PUT, "/logs-app/_rollover/.ds-logs-app-000003"),
        ] {
            assert_eq!(stream_rollover(&op(method, path)), None, "{path}");
        }
        assert_eq!(
            generation_of(br#"{"data_streams":[{"name":"l","generation":7}]}"#),
            Some(7)
        );
        assert_eq!(generation_of(br#"{"data_streams":[]}"#), None);
    }

    #[test]
    fn other_names_are_not_backing_indices() {
        for name in [
            "logs-app-000001",
            ".ds-",
            ".ds--000001",
            ".ds-logs",
            ".ds-logs-00001",
            ".ds-logs-00000a",
            ".kibana_1",
        ] {
            assert_eq!(stream_of_backing_index(name), None, "{name}");
        }
        assert_eq!(backing_index_generation("logs-000001"), None);
    }
}
