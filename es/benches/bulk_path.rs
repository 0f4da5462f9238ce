//! CPU cost of the gateway's `_bulk` path without a cluster: parse the
//! request, pair it with the primary's answer, encode the ops for the queue;
//! and the replayer's side: decode them, build the backup's `_bulk` body.
//!
//! ```text
//! cargo bench -p tandem-es --bench bulk_path              # everything, ~2 min
//! cargo bench -p tandem-es --bench bulk_path -- whole     # one group
//! cargo bench -p tandem-es --bench bulk_path -- --quick   # a rough pass
//! ```
//!
//! Documents are the ones `bench/bulk.lua` sends (~200 B, explicit ids,
//! index in the URL), so `whole/index_100` is the pure-CPU part of what
//! `bench/run.sh` measures per 100-doc `_bulk` through the gateway. The
//! primary's answers are spelled as Elasticsearch 7.17 writes them (`_type`
//! `_doc`, `_shards`, `_seq_no`, `_primary_term`, status per item); failed
//! items carry ES's `error` objects. Each function is called the way
//! `dataplane/src/write_path.rs` and the replayer call it.
//! Throughput is in documents (bulk items).

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tandem_es::ClusterVersion;
use tandem_es::bulk::{BulkDefaults, BulkItem, BulkResponse, accepted_ops, parse_bulk_bytes};
use tandem_es::ops::ReplicationOp;
use tandem_es::replay::{ReplayTarget, build_replay_bulk};

const INDEX: &str = "bench";
const DOC_BYTES: usize = 200;

/// Which actions a request holds.
#[derive(Clone, Copy)]
enum Shape {
    /// `index` with an explicit `_id`, like `bench/bulk.lua`.
    Index,
    /// The same with prose in `msg` (spaces inside strings, as most real
    /// documents have), for `compact` in `build_replay_bulk`.
    Text,
    /// Per 10 items: 4 `index` with ids, 2 auto-id `index`, 1 auto-id
    /// `create`, 2 `update` (partial doc), 1 `delete`.
    Mix,
}

/// How the primary answered the items.
#[derive(Clone, Copy)]
enum Answer {
    /// Every item 2xx (`"errors":false`).
    AllOk,
    /// Every 10th item a 409 version conflict, every 25th a 400 mapping
    /// error (14 of 100 refused, `"errors":true`).
    SomeRefused,
}

/// One `_bulk` request and the primary's answer to it.
struct Fixture {
    name: &'static str,
    docs: usize,
    body: Bytes,
    answer: Vec<u8>,
}

impl Fixture {
    fn new(name: &'static str, docs: usize, shape: Shape, answer: Answer) -> Self {
        let (body, answer) = build(docs, shape, answer);
        Self {
            name,
            docs,
            body: Bytes::from(body),
            answer,
        }
    }

    fn items(&self) -> Vec<BulkItem> {
        parse_bulk_bytes(&self.body, &defaults()).expect("bench body parses")
    }

    /// The ops the primary's answer accepts; checks that every 2xx item
    /// (and only those) became one, so the fixture is what it claims.
    fn ops(&self) -> Vec<ReplicationOp> {
        let answer: BulkResponse<'_> = serde_json::from_slice(&self.answer).expect("answer");
        assert_eq!(BulkResponse::parse(&self.answer).expect("answer"), answer);
        let ops = accepted_ops(&self.items(), &answer).expect("pairs");
        let accepted = self
            .answer
            .windows(11)
            .filter(|w| w.starts_with(b"\"status\":20"))
            .count();
        assert_eq!(ops.len(), accepted, "{}: ops for every 2xx item", self.name);
        ops
    }
}

/// What `RequestClass::Bulk` holds for `POST /bench/_bulk`.
fn defaults() -> BulkDefaults {
    BulkDefaults {
        index: Some(INDEX.into()),
        ..BulkDefaults::default()
    }
}

/// A document of about `DOC_BYTES`, shaped like `bench/bulk.lua`'s.
fn document(i: usize, text: bool) -> String {
    let skeleton =
        r#"{"user":"user-00","n":1000000,"ts":1700000000000,"tags":["bench","tandem"],"msg":""}"#;
    let fill = if text { "lorem ipsum " } else { "x" };
    let mut pad = fill.repeat(DOC_BYTES / fill.len());
    pad.truncate(DOC_BYTES.saturating_sub(skeleton.len()));
    format!(
        r#"{{"user":"user-{:02}","n":{},"ts":1700000000000,"tags":["bench","tandem"],"msg":"{pad}"}}"#,
        i % 97,
        1_000_000 + i
    )
}

/// The request body and the primary's answer (Elasticsearch 7.17).
fn build(docs: usize, shape: Shape, answer: Answer) -> (String, Vec<u8>) {
    let mut body = String::new();
    let mut items = Vec::with_capacity(docs);
    let mut refused = 0;
    for i in 0..docs {
        let explicit_id = format!("t-1-1-{i}");
        let auto_id = format!("{:0>20}", format!("aUt0{i}"));
        // (action, id in the request, id in the answer, body line)
        let (action, request_id, id, source) = match (shape, i % 10) {
            (Shape::Index | Shape::Text, _) | (Shape::Mix, 0..=3) => (
                "index",
                Some(&explicit_id),
                &explicit_id,
                Some(document(i, matches!(shape, Shape::Text))),
            ),
            (Shape::Mix, 4 | 5) => ("index", None, &auto_id, Some(document(i, false))),
            (Shape::Mix, 6) => ("create", None, &auto_id, Some(document(i, false))),
            (Shape::Mix, 7 | 8) => (
                "update",
                Some(&explicit_id),
                &explicit_id,
                Some(format!(r#"{{"doc":{{"n":{i}}}}}"#)),
            ),
            (Shape::Mix, _) => ("delete", Some(&explicit_id), &explicit_id, None),
        };
        match request_id {
            Some(id) => body.push_str(&format!(r#"{{"{action}":{{"_id":"{id}"}}}}"#)),
            None => body.push_str(&format!(r#"{{"{action}":{{}}}}"#)),
        }
        body.push('\n');
        if let Some(source) = source {
            body.push_str(&source);
            body.push('\n');
        }

        let seq_no = i;
        let item = match answer {
            Answer::SomeRefused if i % 10 == 9 => {
                refused += 1;
                format!(
                    r#"{{"{action}":{{"_index":"{INDEX}","_type":"_doc","_id":"{id}","status":409,"error":{{"type":"version_conflict_engine_exception","reason":"[{id}]: version conflict, required seqNo [3], primary term [1]. current document has seqNo [7] and primary term [1]","index_uuid":"Q3cWvGZbRmSvp2m5kUxHxw","shard":"0","index":"{INDEX}"}}}}}}"#
                )
            }
            Answer::SomeRefused if i % 25 == 12 => {
                refused += 1;
                format!(
                    r#"{{"{action}":{{"_index":"{INDEX}","_type":"_doc","_id":"{id}","status":400,"error":{{"type":"mapper_parsing_exception","reason":"failed to parse field [n] of type [long] in document with id '{id}'. Preview of field's value: 'abc'","caused_by":{{"type":"illegal_argument_exception","reason":"For input string: \"abc\""}}}}}}}}"#
                )
            }
            _ => {
                let (result, status, version) = match action {
                    "update" => ("updated", 200, 2),
                    "delete" => ("deleted", 200, 3),
                    _ => ("created", 201, 1),
                };
                format!(
                    r#"{{"{action}":{{"_index":"{INDEX}","_type":"_doc","_id":"{id}","_version":{version},"result":"{result}","_shards":{{"total":2,"successful":1,"failed":0}},"_seq_no":{seq_no},"_primary_term":1,"status":{status}}}}}"#
                )
            }
        };
        items.push(item);
    }
    let answer = format!(
        r#"{{"took":{},"errors":{},"items":[{}]}}"#,
        docs / 10 + 3,
        refused > 0,
        items.join(",")
    );
    (body, answer.into_bytes())
}

fn fixtures() -> Vec<Fixture> {
    vec![
        Fixture::new("index_100", 100, Shape::Index, Answer::AllOk),
        Fixture::new("index_1000", 1000, Shape::Index, Answer::AllOk),
        Fixture::new("mix_100", 100, Shape::Mix, Answer::AllOk),
    ]
}

/// `parse_bulk_bytes`, as the write path calls it on the request body.
fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    let defaults = defaults();
    for f in fixtures() {
        group.throughput(Throughput::Elements(f.docs as u64));
        group.bench_function(f.name, |b| {
            b.iter(|| parse_bulk_bytes(black_box(&f.body), &defaults).unwrap())
        });
    }
    group.finish();
}

/// What `WritePath::accepted` does with the primary's answer: the typed,
/// borrowed parse of the answer, then `accepted_ops`. `answer_only/*` times
/// the answer parse alone, `accepted_ops_only/*` the pairing alone on an
/// already parsed answer.
fn pair(c: &mut Criterion) {
    let mut group = c.benchmark_group("pair");
    let mut cases = fixtures();
    cases.insert(
        1,
        Fixture::new("index_100_refused", 100, Shape::Index, Answer::SomeRefused),
    );
    for f in &cases {
        f.ops(); // checks the fixture
        let items = f.items();
        group.throughput(Throughput::Elements(f.docs as u64));
        group.bench_function(f.name, |b| {
            b.iter(|| {
                let answer = BulkResponse::parse(black_box(&f.answer)).unwrap();
                accepted_ops(&items, &answer).unwrap()
            })
        });
    }
    let f = &cases[0];
    let items = f.items();
    let answer: BulkResponse<'_> = serde_json::from_slice(&f.answer).unwrap();
    group.throughput(Throughput::Elements(f.docs as u64));
    group.bench_function(format!("answer_only/{}", f.name), |b| {
        b.iter(|| BulkResponse::parse(black_box(&f.answer)).unwrap())
    });
    group.bench_function(format!("answer_only_serde_json/{}", f.name), |b| {
        b.iter(|| serde_json::from_slice::<BulkResponse<'_>>(black_box(&f.answer)).unwrap())
    });
    group.bench_function(format!("accepted_ops_only/{}", f.name), |b| {
        b.iter(|| accepted_ops(black_box(&items), &answer).unwrap())
    });
    group.finish();
}

/// `ReplicationOp::encode` of every op, as `Replication::record` does
/// before appending; `decode` as the replayer reads them back.
fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for f in fixtures() {
        let ops = f.ops();
        group.throughput(Throughput::Elements(ops.len() as u64));
        group.bench_function(f.name, |b| {
            b.iter(|| {
                black_box(&ops)
                    .iter()
                    .map(|op| Bytes::from(op.encode()))
                    .collect::<Vec<_>>()
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decode");
    for f in fixtures() {
        let records: Vec<Vec<u8>> = f.ops().iter().map(ReplicationOp::encode).collect();
        group.throughput(Throughput::Elements(records.len() as u64));
        group.bench_function(f.name, |b| {
            b.iter(|| {
                black_box(&records)
                    .iter()
                    .map(|r| ReplicationOp::decode(r).unwrap())
                    .collect::<Vec<_>>()
            })
        });
    }
    group.finish();
}

/// Everything the gateway computes per `_bulk` besides I/O, the queue
/// append and the in-flight journal: parse, pair, encode.
fn whole(c: &mut Criterion) {
    let mut group = c.benchmark_group("whole");
    let defaults = defaults();
    for f in fixtures() {
        group.throughput(Throughput::Elements(f.docs as u64));
        group.bench_function(f.name, |b| {
            b.iter(|| {
                let items = parse_bulk_bytes(black_box(&f.body), &defaults).unwrap();
                let answer = BulkResponse::parse(black_box(&f.answer)).unwrap();
                let ops = accepted_ops(&items, &answer).unwrap();
                ops.iter()
                    .map(|op| Bytes::from(op.encode()))
                    .collect::<Vec<_>>()
            })
        });
    }
    group.finish();
}

/// `build_replay_bulk` for the recorded index/delete ops (read-repair ops
/// of the mix are replayed another way and left out), for a typeless
/// backup (OpenSearch 2) and a typed one (Elasticsearch 6).
fn replay_body(c: &mut Criterion) {
    let mut group = c.benchmark_group("replay_body");
    let os2 = ReplayTarget::new(ClusterVersion::opensearch(2, 19));
    let es6 = ReplayTarget::new(ClusterVersion::elasticsearch(6, 8));
    for f in fixtures() {
        let ops: Vec<ReplicationOp> = f
            .ops()
            .into_iter()
            .filter(|op| {
                matches!(
                    op,
                    ReplicationOp::Index { .. } | ReplicationOp::Delete { .. }
                )
            })
            .collect();
        group.throughput(Throughput::Elements(ops.len() as u64));
        group.bench_function(format!("os2/{}", f.name), |b| {
            b.iter(|| build_replay_bulk(black_box(&ops), &os2).unwrap())
        });
        if f.name == "index_100" {
            group.bench_function(format!("es6/{}", f.name), |b| {
                b.iter(|| build_replay_bulk(black_box(&ops), &es6).unwrap())
            });
        }
    }
    let text = Fixture::new("text_100", 100, Shape::Text, Answer::AllOk).ops();
    group.throughput(Throughput::Elements(text.len() as u64));
    group.bench_function("os2/text_100", |b| {
        b.iter(|| build_replay_bulk(black_box(&text), &os2).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = parse, pair, encode, whole, replay_body
}
criterion_main!(benches);
