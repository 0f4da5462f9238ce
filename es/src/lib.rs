//! # `tandem-es`: Elasticsearch / OpenSearch protocol knowledge
//!
//! Pure functions, no I/O, shared by the gateway and the control plane:
//! what a cluster is (`GET /`, `_nodes/http`), what an Elasticsearch/OpenSearch request is,
//! what the primary accepted, how it is stored in the queue, and how it is
//! replayed to a backup that may run another major version.
//!
//! ## Flow
//!
//! ```text
//!  client request ──► classify() ──► RequestClass
//!                                      │ Read / Passthrough: forward, record nothing
//!                                      │ Unsupported: refuse with `reason`
//!                                      ▼
//!              forward to the PRIMARY, read its full answer
//!                                      │
//!      Bulk ──► parse_bulk_bytes() ──► accepted_ops(items, response)
//!      DocWrite / IndexMeta / QueryScoped ──► accepted_single(class, body, status, response)
//!                                      │  only 2xx items/responses; ids, concrete
//!                                      │  indices and versions from the response
//!                                      ▼
//!                      Vec<ReplicationOp> ──► encode() ──► durable queue
//!                                                               │
//!                 replayer: decode() ◄──────────────────────────┘
//!      Index/Delete ──► build_replay_bulk(ops, target) ──► backup `_bulk`
//!                       └► parse_bulk_response_for_replay() ──► ItemOutcome per op
//!      ReadRepair ──► read_repair_get_path() ──► GET on the PRIMARY
//!                     └► read_repair_op() ──► Index or Delete ──► bulk as above
//!      IndexMeta / QueryScoped ──► replay_request(op, target) ──► backup
//!                                  └► request_outcome()
//! ```
//!
//! Invariants the functions here protect:
//! - Nothing is recorded for an answer that cannot be paired exactly with
//!   the request: [`accepted_ops`] and [`accepted_single`] return an error
//!   instead of a partial result.
//! - Only what the primary accepted is recorded; the version replayed is
//!   the one the primary assigned, applied with `external_gte`.
//! - Document sources are carried byte for byte (compacted to one line,
//!   never re-serialised), so key order and number spelling survive.
//! - No credentials: recorded paths are origin-form; headers never enter.
//!
//! Which endpoints are replicated, passed through or refused, and what the
//! cross-version rewrite changes, is documented in `docs/cross-version.md`.

#![warn(missing_docs)]

pub mod bulk;
mod bulk_answer;
pub mod by_query;
pub mod classify;
pub mod data_stream;
pub mod docstate;
pub mod json;
pub mod nodes;
pub mod ops;
pub mod replay;
pub mod rewrite;
pub mod uri;
pub mod version;

pub use bulk::{
    BulkDefaults, BulkError, BulkItem, BulkResponse, accepted_ops, parse_bulk, parse_bulk_bytes,
};
pub use classify::{DocOp, DocWrite, MetaKind, RecordedRequest, RequestClass, classify};
pub use nodes::{HttpNode, parse_http_nodes};
pub use ops::{
    AcceptError, DocResult, OP_FORMAT_VERSION, OpDecodeError, ReplicationOp, accepted_single,
};
pub use replay::{
    ItemOutcome, REPLAY_BULK_PATH, ReadRepairError, ReplayError, ReplayTarget, build_replay_bulk,
    parse_bulk_response_for_replay, read_repair_get_path, read_repair_op, request_outcome,
};
pub use rewrite::{
    MappingChange, MultipleMappingTypes, ReplayRequest, RewriteError, mapping_for_target,
    replay_request,
};
pub use version::{ClusterVersion, Distribution, RootInfo, VersionError};
