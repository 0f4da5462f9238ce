//! Answers the gateway writes to clients itself: Elasticsearch-shaped JSON
//! errors, 429s with `Retry-After`, and the primary's answer relayed
//! without its hop-by-hop headers. Used by the proxy (reads, refusals) and
//! the write path alike, so every answer the gateway makes has one shape.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;

use crate::limits::LimitExceeded;

/// Headers that describe one hop and are not forwarded.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "content-length",
];

/// JSON error body in the shape Elasticsearch and OpenSearch use.
pub fn error_body(status: u16, kind: &str, reason: &str) -> Bytes {
    let body = serde_json::json!({
        "error": {
            "root_cause": [{ "type": kind, "reason": reason }],
            "type": kind,
            "reason": reason,
        },
        "status": status,
    });
    Bytes::from(body.to_string())
}

/// Header of a JSON answer of `body_len` bytes.
pub fn json_header(status: u16, body_len: usize) -> Result<ResponseHeader> {
    let mut header = ResponseHeader::build(status, Some(4))?;
    header.insert_header("content-type", "application/json; charset=UTF-8")?;
    header.insert_header("content-length", body_len.to_string())?;
    Ok(header)
}

/// The primary's answer header for the client: hop-by-hop headers dropped,
/// `content-length` set for the (whole) body.
pub fn client_header(upstream: &ResponseHeader, body_len: usize) -> Result<ResponseHeader> {
    let mut header = ResponseHeader::build(upstream.status, Some(upstream.headers.len()))?;
    for (name, value) in upstream.headers.iter() {
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        header.append_header(name.clone(), value.clone())?;
    }
    header.insert_header("content-length", body_len.to_string())?;
    Ok(header)
}

/// Sends a complete answer.
pub async fn send(session: &mut Session, header: ResponseHeader, body: Bytes) -> Result<()> {
    let empty = body.is_empty();
    session
        .write_response_header(Box::new(header), empty)
        .await?;
    if !empty {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Writes a complete JSON response to the client.
pub async fn write_json(session: &mut Session, status: u16, body: Bytes) -> Result<()> {
    let header = json_header(status, body.len())?;
    send(session, header, body).await
}

/// Writes a 429 with `Retry-After` (whole seconds, at least 1) for a
/// request refused by a limit.
pub async fn write_limited(session: &mut Session, limited: &LimitExceeded) -> Result<()> {
    let body = error_body(429, "tandem_rate_limited", &limited.to_string());
    let mut header = json_header(429, body.len())?;
    header.insert_header(
        "retry-after",
        limited
            .retry_after
            .as_secs_f64()
            .ceil()
            .max(1.0)
            .to_string(),
    )?;
    send(session, header, body).await
}
