//! The write path: forward a write to the primary, record what it
//! accepted, then answer the client.
//!
//! Writes are taken over in Pingora's async `request_filter` rather than
//! streamed through the proxy phases, because the response may only be
//! released after the accepted ops are durable in the queue, and Pingora's
//! response-body hooks are synchronous. The sequence per write:
//!
//! 1. read the whole body (capped by `max_body_bytes` → 413), and for
//!    `_bulk` parse it (malformed NDJSON → 400, nothing forwarded);
//! 2. wait for (or refuse without) queue capacity (→ 507), so a write the
//!    primary applies can always be recorded;
//! 3. forward to the primary with the client's own headers and
//!    credentials, over HTTP/1.1, never retried (→ 502 when unreachable,
//!    nothing recorded);
//! 4. pair the answer with the request and keep only what the primary
//!    accepted (per-item 2xx for `_bulk`, with the primary's `_version`);
//! 5. append those ops to the queue and wait for the group-commit fsync;
//! 6. send the primary's answer to the client unchanged.
//!
//! Client credentials are never part of an op: ops carry index, id,
//! version and document only, and metadata ops keep the request line in
//! origin form.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use pingora::http::RequestHeader;
use pingora::prelude::*;
use serde_json::Value;

use crate::metrics::Metrics;
use crate::replication::{ReconcileCause, Replication};
use crate::respond::{HOP_BY_HOP, client_header, error_body, send, write_json, write_limited};
use crate::roles::Roles;
use crate::upstream::{ExchangeError, Upstream};
use tandem_es::bulk::{BulkItem, BulkResponse, accepted_ops, assign_missing_ids, parse_bulk_bytes};
use tandem_es::classify::RequestClass;
use tandem_es::docstate::DocKey;
use tandem_es::ops::{ReplicationOp, accepted_single, query_scoped_op};

/// Everything the write path needs.
#[derive(Debug)]
pub struct WritePath {
    /// Current primary/backup roles and the write gate.
    pub roles: Arc<Roles>,
    /// Queue and replayer of the replication task.
    pub replication: Arc<Replication>,
    /// Gateway metrics.
    pub metrics: Arc<Metrics>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Longest a write waits behind a cutover's write hold before 503.
    pub max_hold_wait: std::time::Duration,
}

/// How a write ended, for metrics and logs.
#[derive(Debug)]
pub struct WriteOutcome {
    /// Status sent to the client.
    pub status: u16,
    /// Ops recorded for replay.
    pub recorded: usize,
}

impl WritePath {
    /// Handles one replicated write end to end and answers the client.
    pub async fn handle(
        &self,
        session: &mut Session,
        class: &RequestClass,
    ) -> Result<WriteOutcome> {
        let started = Instant::now();
        // Held for the whole write, so a cutover never swaps roles between
        // forwarding a write and recording it.
        let outcome = match self.roles.write_permit(self.max_hold_wait).await {
            Some(_permit) => {
                let primary = self.roles.current().primary.clone();
                self.handle_inner(session, class, &primary).await
            }
            None => {
                let reason = format!(
                    "writes are held for a cutover longer than {:?}; retry",
                    self.max_hold_wait
                );
                reply_error(session, 503, "tandem_writes_held", &reason).await
            }
        };
        let status = match &outcome {
            Ok(o) => o.status,
            Err(_) => 0,
        };
        self.metrics
            .observe_request(class_name(class), "primary", status, started.elapsed());
        outcome
    }

    async fn handle_inner(
        &self,
        session: &mut Session,
        class: &RequestClass,
        primary: &Upstream,
    ) -> Result<WriteOutcome> {
        let encoding = match BodyEncoding::of(session.req_header()) {
            Ok(encoding) => encoding,
            Err(encoding) => {
                let reason = format!(
                    "request bodies with content-encoding {encoding:?} are not supported for writes through the gateway; send them uncompressed, gzip or deflate"
                );
                return reply_error(session, 415, "tandem_unsupported_encoding", &reason).await;
            }
        };

        let too_large = || {
            format!(
                "request body exceeds the gateway's max_body_bytes ({} bytes){}; split the request",
                self.max_body_bytes,
                if encoding == BodyEncoding::Identity {
                    ""
                } else {
                    " once decompressed"
                }
            )
        };
        let body = match read_body(session, self.max_body_bytes).await? {
            Some(body) => body,
            None => {
                return reply_error(session, 413, "tandem_request_too_large", &too_large()).await;
            }
        };
        // A compressed body is decompressed here (bounded: no decompression
        // bomb gets past max_body_bytes), parsed and recorded, and forwarded
        // decompressed without its content-encoding.
        let body = match encoding.decode(body, self.max_body_bytes) {
            Ok(body) => body,
            Err(DecodeError::TooLarge) => {
                return reply_error(session, 413, "tandem_request_too_large", &too_large()).await;
            }
            Err(DecodeError::Corrupt(err)) => {
                let reason = format!("the request body is not valid {}: {err}", encoding.name());
                return reply_error(session, 400, "tandem_bad_encoding", &reason).await;
            }
        };

        let mut items: Option<Vec<BulkItem>> = match class {
            RequestClass::Bulk(defaults) => match parse_bulk_bytes(&body, defaults) {
                Ok(items) => Some(items),
                Err(err) => {
                    return reply_error(
                        session,
                        400,
                        "illegal_argument_exception",
                        &err.to_string(),
                    )
                    .await;
                }
            },
            _ => None,
        };

        // Make sure whatever the primary accepts can be recorded.
        if let Err(err) = self.replication.ensure_capacity(body.len() as u64).await {
            let reason = format!(
                "the gateway's replication queue is over its limit ({err}); the write was not sent to the primary, retry later"
            );
            return reply_error(session, 507, "tandem_queue_full", &reason).await;
        }

        // Name every document the write may change (assigning ids to
        // auto-id creates) and note them before forwarding, so a crash or
        // an unknown outcome can be reconciled (see `crate::inflight`).
        let mut header = forwarded_header(session.req_header())?;
        let mut body = body;
        let keys = match (class, items.as_mut()) {
            (RequestClass::Bulk(_), Some(items)) => {
                if let Some(rewritten) = assign_missing_ids(&body, items, new_doc_id) {
                    body = rewritten;
                }
                items
                    .iter()
                    .filter_map(|item| {
                        Some(DocKey {
                            index: item.index.clone(),
                            doc_type: item.doc_type.clone(),
                            id: item.id.clone()?,
                            routing: item.routing.clone(),
                        })
                    })
                    .collect()
            }
            (RequestClass::DocWrite(write), _) => {
                let id = match &write.id {
                    Some(id) => id.clone(),
                    None => {
                        let id = new_doc_id();
                        assign_doc_id(&mut header, &id)?;
                        id
                    }
                };
                vec![DocKey {
                    index: write.index.clone(),
                    doc_type: write.doc_type.clone(),
                    id,
                    routing: write.routing.clone(),
                }]
            }
            _ => Vec::new(),
        };
        // A by-query write is noted as the op itself: after a crash it is
        // recorded as is (its replay reconciles what it matches). Otherwise
        // the request line only matters when the write names no document.
        let by_query = query_scoped_op(class, &body);
        let noted = match &by_query {
            Some(op) => self.replication.inflight.note_by_query(op),
            None if keys.is_empty() => self
                .replication
                .inflight
                .note(&[], &format!("{} {}", header.method, header.uri)),
            None => self.replication.inflight.note(&keys, ""),
        };
        let note = match noted {
            Ok(note) => note,
            Err(err) => {
                let reason = format!(
                    "the gateway cannot note the write in its in-flight journal ({err}); the write was not sent to the primary, retry later"
                );
                return reply_error(session, 507, "tandem_journal_unavailable", &reason).await;
            }
        };
        // A write whose outcome is not recorded: reconcile what it names.
        let unsettled = |keys: Vec<DocKey>| {
            if keys.is_empty() {
                self.replication.note_unreconcilable();
                self.replication.inflight.close(note);
            } else {
                self.replication
                    .reconcile_later(keys, note, ReconcileCause::UnknownOutcome);
            }
        };
        let response = match primary.exchange(header, body.clone(), false).await {
            Ok(response) => response,
            Err(ExchangeError::Limited(limited)) => {
                self.replication.inflight.close(note);
                self.metrics
                    .observe_limiter_rejection("primary", limited.kind.as_str());
                let reason = limited.to_string();
                log_refusal(session.req_header(), 429, "tandem_rate_limited", &reason);
                write_limited(session, &limited).await?;
                return Ok(WriteOutcome {
                    status: 429,
                    recorded: 0,
                });
            }
            Err(err) if err.nothing_sent() => {
                self.replication.inflight.close(note);
                let reason = format!("primary cluster unreachable, nothing was written: {err}");
                return reply_error(session, 502, "tandem_primary_unavailable", &reason).await;
            }
            Err(err) => {
                self.metrics.unknown_outcome_writes.inc();
                let named = !keys.is_empty();
                // A by-query write is recorded all the same (its replay
                // reconciles what it matches, whatever the primary did so
                // far) and still counted as unreconcilable: the run may go
                // on on the primary after the connection broke.
                let recorded = match &by_query {
                    Some(op) => self
                        .replication
                        .record(std::slice::from_ref(op))
                        .await
                        .is_ok(),
                    None => false,
                };
                unsettled(keys);
                let reason = format!(
                    "connection to the primary failed after the request was sent; the write may or may not have been applied ({}): {err}",
                    if named {
                        "the gateway reconciles the documents it names from the primary"
                    } else if recorded {
                        "the gateway reconciles what it matches from the primary now, but the run may go on there: run a comparison job"
                    } else {
                        "it names no document: run a comparison job"
                    }
                );
                return reply_error(session, 502, "tandem_primary_error", &reason).await;
            }
        };
        let status = response.header.status.as_u16();

        let ops = match self.accepted(class, items.as_deref(), &body, status, &response.body) {
            // A by-query run that may have stopped part way is recorded
            // too (see `query_scoped_op`).
            Ok(ops) if ops.is_empty() && (status == 409 || status >= 500) => {
                let op = by_query.clone();
                if op.is_some() && status >= 500 {
                    // A 5xx (a proxy's timeout, say) may leave the run
                    // going on on the primary after the reconciliation.
                    self.replication.note_unreconcilable();
                }
                Ok(op.into_iter().collect())
            }
            other => other,
        };
        let mut recorded = 0;
        let mut warning = None;
        match ops {
            Ok(ops) if !ops.is_empty() => {
                if let Err(err) = self.replication.record(&ops).await {
                    self.metrics.unrecorded_writes.inc();
                    unsettled(keys);
                    tracing::error!(error = %err, ops = ops.len(), "write applied on the primary but not recorded; its documents will be reconciled");
                    let reason = format!(
                        "the write was applied on the primary but could not be recorded for the backup ({err}); the gateway reconciles the documents it names once its queue accepts them"
                    );
                    return reply_error(session, 500, "tandem_record_failed", &reason).await;
                }
                self.replication.inflight.close(note);
                recorded = ops.len();
            }
            // A 5xx may come after part of the request was applied.
            Ok(_) if status >= 500 => unsettled(keys),
            Ok(_) => self.replication.inflight.close(note),
            Err(reason) => {
                self.metrics.unrecorded_writes.inc();
                tracing::error!(%reason, status, "cannot pair the primary's answer with the request; its documents will be reconciled");
                unsettled(keys);
                warning = Some(format!(
                    "299 tandem \"not recorded for the backup: {reason}\""
                ));
            }
        }

        let mut header = client_header(&response.header, response.body.len())?;
        if let Some(warning) = warning {
            header.insert_header("warning", warning)?;
        }
        send(session, header, response.body).await?;
        Ok(WriteOutcome { status, recorded })
    }

    fn accepted(
        &self,
        class: &RequestClass,
        items: Option<&[BulkItem]>,
        body: &[u8],
        status: u16,
        response: &[u8],
    ) -> std::result::Result<Vec<ReplicationOp>, String> {
        if !(200..300).contains(&status) {
            // Nothing was applied (a 4xx/5xx for the whole request).
            return Ok(Vec::new());
        }
        match items {
            Some(items) => {
                // Typed and borrowed: only what pairing needs is read.
                let answer = BulkResponse::parse(response).map_err(|e| {
                    format!("primary answered {status} with a body that is not a _bulk answer: {e}")
                })?;
                accepted_ops(items, &answer).map_err(|e| e.to_string())
            }
            None => {
                let json: Value = serde_json::from_slice(response).map_err(|e| {
                    format!("primary answered {status} with a body that is not JSON: {e}")
                })?;
                accepted_single(class, body, status, &json)
                    .map(|op| op.into_iter().collect())
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// Short class name for metrics labels.
pub fn class_name(class: &RequestClass) -> &'static str {
    match class {
        RequestClass::Read => "read",
        RequestClass::Bulk(_) => "bulk",
        RequestClass::DocWrite(_) => "doc_write",
        RequestClass::IndexMeta { .. } => "index_meta",
        RequestClass::QueryScoped { .. } => "query_scoped",
        RequestClass::Unsupported { .. } => "unsupported",
        RequestClass::Passthrough => "passthrough",
    }
}

/// Reads the whole request body; `None` when it exceeds `cap`.
async fn read_body(session: &mut Session, cap: usize) -> Result<Option<Bytes>> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|len| len > cap) {
        return Ok(None);
    }
    // Clients sending large bodies (curl above 1 MB) wait for an interim
    // 100 before sending; without it they stall for their timeout.
    let expects_continue = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue {
        session.write_continue_response().await?;
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(cap));
    while let Some(chunk) = session.read_request_body().await? {
        if buf.len() + chunk.len() > cap {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}

/// A fresh document id for an auto-id create: 6 bytes of milliseconds
/// (ids of one period sort together, as the primary's own auto-ids do,
/// which keeps its id lookups cheap) and 10 random bytes, URL-safe base64.
pub fn new_doc_id() -> String {
    use base64::Engine as _;
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6..].copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..10]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Turns an auto-id `POST /{index}/_doc` (or `/{index}/{type}`) into
/// `POST /{index}/_doc/{id}?op_type=create`: the same semantics (a new
/// document, refused if the id exists), with the id known in advance.
fn assign_doc_id(header: &mut RequestHeader, id: &str) -> Result<()> {
    let path = header.uri.path().trim_end_matches('/');
    let mut uri = format!("{path}/{}", tandem_es::uri::encode_path_segment(id));
    match header.uri.query() {
        Some(query) if !query.is_empty() => {
            uri.push('?');
            uri.push_str(query);
            uri.push_str("&op_type=create");
        }
        _ => uri.push_str("?op_type=create"),
    }
    let uri: http::Uri = uri
        .parse()
        .map_err(|e| Error::because(ErrorType::InternalError, "assigning a document id", e))?;
    header.set_uri(uri);
    Ok(())
}

fn forwarded_header(req: &RequestHeader) -> Result<RequestHeader> {
    let mut header = req.clone();
    for name in HOP_BY_HOP {
        header.remove_header(*name);
    }
    // The body is forwarded as read and decoded (see `BodyEncoding`).
    header.remove_header("content-encoding");
    Ok(header)
}

/// The `content-encoding` of a write body the gateway can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyEncoding {
    /// Not compressed.
    Identity,
    /// `gzip` (or `x-gzip`).
    Gzip,
    /// `deflate` (zlib stream).
    Deflate,
}

/// Why a compressed body could not be decoded.
#[derive(Debug)]
enum DecodeError {
    /// Larger than the cap once decompressed.
    TooLarge,
    /// Not a valid stream of its encoding.
    Corrupt(std::io::Error),
}

impl BodyEncoding {
    /// The encoding of `req`'s body; `Err` names an unsupported one.
    fn of(req: &RequestHeader) -> std::result::Result<BodyEncoding, String> {
        let Some(value) = req.headers.get(http::header::CONTENT_ENCODING) else {
            return Ok(BodyEncoding::Identity);
        };
        let text = value
            .to_str()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match text.as_str() {
            "" | "identity" => Ok(BodyEncoding::Identity),
            "gzip" | "x-gzip" => Ok(BodyEncoding::Gzip),
            "deflate" => Ok(BodyEncoding::Deflate),
            _ => Err(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            BodyEncoding::Identity => "identity",
            BodyEncoding::Gzip => "gzip",
            BodyEncoding::Deflate => "deflate",
        }
    }

    /// `body` decompressed, at most `cap` bytes.
    fn decode(self, body: Bytes, cap: usize) -> std::result::Result<Bytes, DecodeError> {
        use std::io::Read;
        let reader: Box<dyn Read + '_> = match self {
            BodyEncoding::Identity => return Ok(body),
            BodyEncoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
            BodyEncoding::Deflate => Box::new(flate2::read::ZlibDecoder::new(&body[..])),
        };
        let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(cap));
        reader
            .take(cap as u64 + 1)
            .read_to_end(&mut out)
            .map_err(DecodeError::Corrupt)?;
        if out.len() > cap {
            return Err(DecodeError::TooLarge);
        }
        Ok(Bytes::from(out))
    }
}

/// Answers a write the gateway refuses or cannot complete itself, and
/// logs it (the proxy's own request log never sees these).
async fn reply_error(
    session: &mut Session,
    status: u16,
    kind: &str,
    reason: &str,
) -> Result<WriteOutcome> {
    log_refusal(session.req_header(), status, kind, reason);
    write_json(session, status, error_body(status, kind, reason)).await?;
    Ok(WriteOutcome {
        status,
        recorded: 0,
    })
}

/// Logs a write answered by the gateway itself: a warning for 5xx
/// (including 507) and 429, which an operator must see; info for other
/// 4xx, which are the client's mistakes. Method and path only: no query,
/// body or headers, so no credentials.
fn log_refusal(req: &RequestHeader, status: u16, kind: &str, reason: &str) {
    if status >= 500 || status == 429 {
        tracing::warn!(
            status,
            error_type = kind,
            reason,
            method = %req.method,
            path = req.uri.path(),
            "write answered by the gateway with an error"
        );
    } else {
        tracing::info!(
            status,
            error_type = kind,
            reason,
            method = %req.method,
            path = req.uri.path(),
            "write refused by the gateway"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        out.write_all(data).unwrap();
        Bytes::from(out.finish().unwrap())
    }

    fn request(encoding: Option<&str>) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/_bulk", None).unwrap();
        if let Some(encoding) = encoding {
            req.insert_header("content-encoding", encoding).unwrap();
        }
        req
    }

    #[test]
    fn encodings_are_recognised_and_unknown_ones_named() {
        assert_eq!(BodyEncoding::of(&request(None)), Ok(BodyEncoding::Identity));
        assert_eq!(
            BodyEncoding::of(&request(Some("GZIP"))),
            Ok(BodyEncoding::Gzip)
        );
        assert_eq!(
            BodyEncoding::of(&request(Some("x-gzip"))),
            Ok(BodyEncoding::Gzip)
        );
        assert_eq!(
            BodyEncoding::of(&request(Some("deflate"))),
            Ok(BodyEncoding::Deflate)
        );
        assert_eq!(
            BodyEncoding::of(&request(Some("br"))),
            Err("br".to_string())
        );
    }

    #[test]
    fn decoding_is_bounded_and_rejects_corrupt_streams() {
        let data = b"{\"a\":1}\n".repeat(100);
        let decoded = BodyEncoding::Gzip.decode(gzip(&data), data.len()).unwrap();
        assert_eq!(&decoded[..], &data[..]);
        assert!(matches!(
            BodyEncoding::Gzip.decode(gzip(&data), data.len() - 1),
            Err(DecodeError::TooLarge)
        ));
        assert!(matches!(
            BodyEncoding::Gzip.decode(Bytes::from_static(b"not gzip"), 1000),
            Err(DecodeError::Corrupt(_))
        ));
        let plain = Bytes::from_static(b"as is");
        assert_eq!(
            BodyEncoding::Identity.decode(plain.clone(), 1).unwrap(),
            plain
        );
    }

    /// A log sink the tests can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(status: u16, kind: &str) -> String {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .finish();
        let mut req = RequestHeader::build("POST", b"/logs/_bulk?routing=u1", None).unwrap();
        req.insert_header("authorization", "Basic c2VjcmV0")
            .unwrap();
        tracing::subscriber::with_default(subscriber, || {
            log_refusal(&req, status, kind, "the reason")
        });
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn self_answered_errors_are_logged_without_query_or_credentials() {
        for (status, kind) in [
            (507, "tandem_queue_full"),
            (502, "tandem_primary_unavailable"),
            (429, "tandem_rate_limited"),
        ] {
            let line = logged(status, kind);
            assert!(line.contains("WARN"), "{line}");
            assert!(line.contains(&format!("status={status}")), "{line}");
            assert!(line.contains(&format!("error_type=\"{kind}\"")), "{line}");
            assert!(line.contains("reason=\"the reason\""), "{line}");
            assert!(line.contains("method=POST path=\"/logs/_bulk\""), "{line}");
            assert!(
                !line.contains("routing") && !line.contains("c2VjcmV0"),
                "{line}"
            );
        }
        let line = logged(413, "tandem_request_too_large");
        assert!(
            line.contains("INFO") && line.contains("status=413"),
            "{line}"
        );
    }

    #[test]
    fn the_forwarded_request_loses_its_content_encoding() {
        let forwarded = forwarded_header(&request(Some("gzip"))).unwrap();
        assert!(forwarded.headers.get("content-encoding").is_none());
    }
}
