//! The request classifier: which Elasticsearch/OpenSearch REST endpoint a
//! request targets, and therefore what the gateway must record after the
//! primary answered.
//!
//! The classifier is position-aware (`/idx/_doc/_search` is not
//! `/idx/_search`) and fail-safe: a write to an endpoint it does not know
//! is [`RequestClass::Unsupported`], never silently passed through. The
//! decisions, endpoint by endpoint, are listed in `docs/cross-version.md`.

use http::Method;

use super::uri::{self, query_pairs, query_param};

/// URL-level defaults of a bulk request (`/{index}/{type}/_bulk?routing=..
/// &pipeline=..`); item metadata overrides them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkDefaults {
    /// Default `_index`.
    pub index: Option<String>,
    /// Default `_type` (5.x/6.x typed bulk). `_doc` is reported as `None`.
    pub doc_type: Option<String>,
    /// Default routing.
    pub routing: Option<String>,
    /// Default ingest pipeline (`_none` is reported as `None`).
    pub pipeline: Option<String>,
}

/// What a client request is, for replication purposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestClass {
    /// Reads and read-side calls (search, get, count, scroll, PIT, cat,
    /// cluster health...): forwarded to the primary, nothing recorded.
    Read,
    /// A `_bulk` request; the defaults come from the URL
    /// (`/{index}/_bulk`, `/{index}/{type}/_bulk`, `?routing=`, `?pipeline=`).
    Bulk(BulkDefaults),
    /// A single-document write by id (or auto-id).
    DocWrite(DocWrite),
    /// An index or cluster metadata write that is replayed as-is (after
    /// cross-version rewriting) before the document ops that follow it.
    IndexMeta {
        /// The index expression in the path (`None` for cluster-wide calls
        /// such as `POST /_aliases` or templates). May be a list or pattern.
        index: Option<String>,
        /// Which metadata API; drives response handling and rewriting.
        kind: MetaKind,
        /// The request line to replay.
        request: RecordedRequest,
    },
    /// `_update_by_query` / `_delete_by_query`: replayed as-is, not
    /// version-fenced.
    QueryScoped {
        /// The index expression in the path.
        index: String,
        /// The request line to replay.
        request: RecordedRequest,
    },
    /// A write the gateway cannot replicate safely; the gateway should
    /// refuse it with a clear error instead of forwarding it.
    Unsupported {
        /// Why, in words meant for the client.
        reason: String,
    },
    /// A non-data administrative call (cluster settings, tasks, snapshots,
    /// refresh/flush...): forwarded to the primary, nothing recorded.
    Passthrough,
}

impl RequestClass {
    /// Whether the primary's answer to this request has to be recorded.
    pub fn is_replicated(&self) -> bool {
        matches!(
            self,
            Self::Bulk(_) | Self::DocWrite(_) | Self::IndexMeta { .. } | Self::QueryScoped { .. }
        )
    }

    fn unsupported(reason: impl Into<String>) -> Self {
        Self::Unsupported {
            reason: reason.into(),
        }
    }
}

/// The request line of a metadata or query-scoped write, as it will be
/// stored in the queue: method and `path?query` in origin form (no scheme,
/// host or user-info, so no credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The HTTP method.
    pub method: Method,
    /// `path[?query]` exactly as received (still percent-encoded).
    pub path: String,
}

/// Which index-metadata API an [`RequestClass::IndexMeta`] request calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKind {
    /// `PUT /{index}` (body: settings, mappings, aliases).
    CreateIndex,
    /// `DELETE /{index}`.
    DeleteIndex,
    /// `PUT|POST /{index}/_mapping[/{type}]`, `/{index}/{type}/_mapping`.
    PutMapping,
    /// `PUT /{index}/_settings`.
    PutSettings,
    /// `POST /_aliases`, `PUT|DELETE /{index}/_alias/{name}`.
    Aliases,
    /// `_template` (legacy templates, typed before 7.0).
    LegacyTemplate,
    /// `_index_template` / `_component_template` (7.8+, typeless).
    ComposableTemplate,
    /// `POST /{alias}/_rollover[/{new_index}]`.
    Rollover,
    /// `_open`, `_close`, `_freeze`, `_unfreeze`, `_block`.
    OpenClose,
    /// `_shrink`, `_split`, `_clone`.
    Resize,
    /// `_ingest/pipeline/{id}`.
    Pipeline,
    /// `_scripts/{id}` (stored scripts and search templates).
    StoredScript,
    /// `_data_stream/...`.
    DataStream,
}

/// The operation of a single-document write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocOp {
    /// Index (create or replace).
    Index,
    /// Create only if absent (`_create`, `op_type=create`).
    Create,
    /// Partial update / scripted update / upsert.
    Update,
    /// Delete by id.
    Delete,
}

impl DocOp {
    /// The bulk action name: `index`, `create`, `update` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Index => "index",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

/// A single-document write request, as the URL describes it. The values
/// the primary actually used (final `_id`, concrete `_index`, `_version`)
/// come from its response, see [`super::ops::accepted_single`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocWrite {
    /// What the request does.
    pub op: DocOp,
    /// The index or alias in the path.
    pub index: String,
    /// The mapping type of the typed (5.x/6.x) API; `None` for the typeless
    /// API and for the `_doc` type, which is what typeless means in 6.x.
    pub doc_type: Option<String>,
    /// The id; `None` when the primary generates it (`POST /{index}/_doc`).
    pub id: Option<String>,
    /// `?routing=`, or `?parent=` when no routing is given (5.x/6.x route
    /// a child by its parent id).
    pub routing: Option<String>,
    /// `?pipeline=` (an ingest pipeline rewrites the source, so such writes
    /// are replayed by read-repair). `_none` is reported as `None`.
    pub pipeline: Option<String>,
}

/// Classifies a request from its method, path (no query) and query string.
/// `GET`, `HEAD` and `OPTIONS` are always [`RequestClass::Read`].
///
/// `path` is the URI path as received (percent-encoded); segments are
/// decoded one by one, so `%2F` inside an id stays part of the id.
pub fn classify(method: &Method, path: &str, query: Option<&str>) -> RequestClass {
    // OPTIONS is CORS preflight: no data either.
    if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        return RequestClass::Read;
    }
    let segments = match uri::decoded_segments(path) {
        Ok(segments) => segments,
        Err(err) => return RequestClass::unsupported(format!("cannot decode the path: {err}")),
    };
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let req = Request {
        method,
        path,
        query,
    };
    match segs.as_slice() {
        [] => RequestClass::unsupported("no write endpoint at [/]"),
        [first, rest @ ..] if first.starts_with('_') && *first != "_all" => {
            classify_cluster_level(&req, first, rest)
        }
        [index, rest @ ..] => classify_index_level(&req, index, rest),
    }
}

struct Request<'a> {
    method: &'a Method,
    path: &'a str,
    query: Option<&'a str>,
}

impl Request<'_> {
    fn is(&self, m: &Method) -> bool {
        self.method == m
    }

    fn is_put_or_post(&self) -> bool {
        self.is(&Method::PUT) || self.is(&Method::POST)
    }

    fn recorded(&self) -> RecordedRequest {
        let target = match self.query {
            Some(q) if !q.is_empty() => format!("{}?{q}", self.path),
            _ => self.path.to_owned(),
        };
        RecordedRequest {
            method: self.method.clone(),
            path: uri::origin_form(&target),
        }
    }

    fn meta(&self, index: Option<&str>, kind: MetaKind) -> RequestClass {
        RequestClass::IndexMeta {
            index: index.map(str::to_owned),
            kind,
            request: self.recorded(),
        }
    }

    fn query_scoped(&self, index: &str) -> RequestClass {
        RequestClass::QueryScoped {
            index: index.to_owned(),
            request: self.recorded(),
        }
    }

    fn bulk(&self, index: Option<&str>, doc_type: Option<&str>) -> RequestClass {
        if let Some(index) = index
            && let Err(reason) = check_single_index(index)
        {
            return RequestClass::unsupported(reason);
        }
        let pairs = query_pairs(self.query);
        RequestClass::Bulk(BulkDefaults {
            index: index.map(str::to_owned),
            doc_type: normalize_type(doc_type),
            routing: query_param(&pairs, "routing").map(str::to_owned),
            pipeline: pipeline_param(query_param(&pairs, "pipeline")),
        })
    }

    fn doc_write(
        &self,
        op: DocOp,
        index: &str,
        doc_type: Option<&str>,
        id: Option<&str>,
    ) -> RequestClass {
        if let Err(reason) = check_single_index(index) {
            return RequestClass::unsupported(reason);
        }
        let pairs = query_pairs(self.query);
        let op = match (op, query_param(&pairs, "op_type")) {
            (DocOp::Index, Some("create")) => DocOp::Create,
            (op, _) => op,
        };
        let routing = query_param(&pairs, "routing")
            .or_else(|| query_param(&pairs, "parent"))
            .map(str::to_owned);
        RequestClass::DocWrite(DocWrite {
            op,
            index: index.to_owned(),
            doc_type: normalize_type(doc_type),
            id: id.map(str::to_owned),
            routing,
            pipeline: pipeline_param(query_param(&pairs, "pipeline")),
        })
    }
}

/// `_doc` is the typeless API's name in 7.x and the recommended single type
/// in 6.x; both mean "the index's one type", so it is not kept.
pub(crate) fn normalize_type(doc_type: Option<&str>) -> Option<String> {
    doc_type.filter(|t| *t != "_doc").map(str::to_owned)
}

/// `pipeline=_none` disables the default pipeline: no pipeline ran.
pub(crate) fn pipeline_param(pipeline: Option<&str>) -> Option<String> {
    pipeline
        .filter(|p| !p.is_empty() && *p != "_none")
        .map(str::to_owned)
}

/// Document writes need exactly one index or alias: Elasticsearch rejects
/// lists and patterns there, and the gateway could not replay them anyway.
fn check_single_index(index: &str) -> Result<(), String> {
    if index.contains(['*', ',']) || index.starts_with('_') {
        Err(format!(
            "document writes must name one index or alias, not [{index}]"
        ))
    } else {
        Ok(())
    }
}

/// Read APIs that take an optional index prefix.
fn is_read_api(name: &str) -> bool {
    matches!(
        name,
        "_search"
            | "_msearch"
            | "_count"
            | "_mget"
            | "_validate"
            | "_explain"
            | "_field_caps"
            | "_termvectors"
            | "_mtermvectors"
            | "_analyze"
            | "_search_shards"
            | "_rank_eval"
            | "_pit"
            | "_knn_search"
            | "_terms_enum"
            | "_eql"
            | "_async_search"
            | "_stats"
            | "_segments"
            | "_recovery"
            | "_shard_stores"
            | "_disk_usage"
            | "_field_usage_stats"
            | "_mvt"
            | "_graph"
            | "_source"
            | "_percolate"
            | "_mpercolate"
            | "_suggest"
            | "_rollup_search"
            | "_sql"
            | "_render"
            | "_resolve"
            | "_cat"
            | "_field_stats"
    )
}

/// Index maintenance: changes neither documents nor metadata, and the
/// backup runs its own refresh/merge schedule. Not replicated.
fn is_maintenance_api(name: &str) -> bool {
    matches!(
        name,
        "_refresh"
            | "_flush"
            | "_forcemerge"
            | "_optimize"
            | "_cache"
            | "_upgrade"
            | "_reload_search_analyzers"
            | "_ilm"
    )
}

/// Cluster-level administrative APIs that do not write index data through
/// the gateway; configuration they carry is cluster-local and is not
/// replicated (see docs/cross-version.md).
fn is_cluster_admin_api(name: &str) -> bool {
    matches!(
        name,
        "_cluster"
            | "_nodes"
            | "_tasks"
            | "_snapshot"
            | "_security"
            | "_license"
            | "_xpack"
            | "_ilm"
            | "_slm"
            | "_ssl"
            | "_features"
            | "_migration"
            | "_autoscaling"
            | "_monitoring"
            | "_remote"
            | "_ml"
            | "_transform"
            | "_watcher"
            | "_rollup"
            | "_enrich"
            | "_ccr"
            | "_searchable_snapshots"
            | "_shutdown"
            | "_dangling"
    )
}

/// OpenSearch (`_plugins`) and Open Distro (`_opendistro`) plugin APIs.
fn classify_plugin_api(req: &Request<'_>, rest: &[&str]) -> RequestClass {
    match rest {
        ["_sql" | "_ppl" | "_asynchronous_search", ..] => RequestClass::Read,
        [
            "_security"
            | "_ism"
            | "_alerting"
            | "_anomaly_detection"
            | "_knn"
            | "_ml"
            | "_notifications"
            | "_observability"
            | "_performanceanalyzer"
            | "_rollup"
            | "_transform"
            | "_replication"
            | "_query"
            | "_flow_framework",
            ..,
        ] => RequestClass::Passthrough,
        _ => RequestClass::unsupported(format!(
            "unrecognised plugin write endpoint [{} {}]",
            req.method, req.path
        )),
    }
}

fn classify_cluster_level(req: &Request<'_>, api: &str, rest: &[&str]) -> RequestClass {
    let is_delete = req.is(&Method::DELETE);
    match (api, rest) {
        ("_bulk", []) if req.is_put_or_post() => req.bulk(None, None),

        // Read-side calls that use POST or DELETE.
        ("_search", ["scroll", ..]) => RequestClass::Read,
        ("_search", ["point_in_time", ..]) => RequestClass::Read,
        ("_pit" | "_async_search", _) => RequestClass::Read,
        ("_sql", _) => RequestClass::Read,
        ("_cluster", ["health" | "state" | "stats" | "allocation", ..]) => RequestClass::Read,
        ("_ingest", ["pipeline", "_simulate"] | ["pipeline", _, "_simulate"]) => RequestClass::Read,
        ("_scripts", ["painless", "_execute"]) => RequestClass::Read,
        ("_index_template", ["_simulate" | "_simulate_index", ..]) => RequestClass::Read,
        ("_search" | "_msearch", ["template"]) => RequestClass::Read,
        (api, _) if is_read_api(api) && !is_delete => RequestClass::Read,

        // Cluster-wide metadata.
        ("_aliases" | "_alias", _) => req.meta(None, MetaKind::Aliases),
        ("_mapping" | "_mappings", _) if req.is_put_or_post() => {
            req.meta(None, MetaKind::PutMapping)
        }
        ("_settings", []) if req.is(&Method::PUT) => req.meta(None, MetaKind::PutSettings),
        ("_template", [_]) => req.meta(None, MetaKind::LegacyTemplate),
        ("_index_template" | "_component_template", [_]) => {
            req.meta(None, MetaKind::ComposableTemplate)
        }
        ("_ingest", ["pipeline", _]) => req.meta(None, MetaKind::Pipeline),
        ("_scripts", [_] | [_, _]) => req.meta(None, MetaKind::StoredScript),
        ("_data_stream", ["_migrate" | "_modify" | "_promote", ..]) => {
            req.meta(None, MetaKind::DataStream)
        }
        ("_data_stream", [name]) => req.meta(Some(name), MetaKind::DataStream),

        // Task throttling of running copy jobs: no data.
        ("_reindex" | "_update_by_query" | "_delete_by_query", [_, "_rethrottle"]) => {
            RequestClass::Passthrough
        }
        ("_reindex", _) => RequestClass::unsupported(
            "_reindex writes documents whose ids and versions the gateway cannot observe; \
             run it on both clusters or copy the destination with a migration job",
        ),
        ("_update_by_query" | "_delete_by_query", _) => {
            RequestClass::unsupported(format!("{api} needs an index in the path"))
        }
        ("_snapshot", [_, _, "_restore"]) => RequestClass::unsupported(
            "restoring a snapshot replaces indices on the primary only; \
             restore it on both clusters with replication paused",
        ),
        (api, _) if is_maintenance_api(api) || is_cluster_admin_api(api) => {
            RequestClass::Passthrough
        }
        ("_plugins" | "_opendistro", rest) => classify_plugin_api(req, rest),
        _ => RequestClass::unsupported(format!(
            "unrecognised write endpoint [{} {}]",
            req.method, req.path
        )),
    }
}

fn classify_index_level(req: &Request<'_>, index: &str, rest: &[&str]) -> RequestClass {
    let m = req.method;
    let is_delete = m == Method::DELETE;
    let is_post = m == Method::POST;
    match rest {
        [] if m == Method::PUT => req.meta(Some(index), MetaKind::CreateIndex),
        [] if is_delete => req.meta(Some(index), MetaKind::DeleteIndex),
        [] => RequestClass::unsupported(format!("no [{m}] endpoint at [/{index}]")),

        ["_bulk"] if req.is_put_or_post() => req.bulk(Some(index), None),

        // Typeless (7.x+) document endpoints.
        ["_create", id] if req.is_put_or_post() => {
            req.doc_write(DocOp::Create, index, None, Some(id))
        }
        ["_update", id] if is_post => req.doc_write(DocOp::Update, index, None, Some(id)),

        ["_update_by_query" | "_delete_by_query"] if is_post => req.query_scoped(index),

        // Index metadata.
        ["_mapping" | "_mappings", ..] if req.is_put_or_post() => {
            req.meta(Some(index), MetaKind::PutMapping)
        }
        ["_settings"] if req.is(&Method::PUT) => req.meta(Some(index), MetaKind::PutSettings),
        ["_alias" | "_aliases", ..] => req.meta(Some(index), MetaKind::Aliases),
        ["_open" | "_close" | "_freeze" | "_unfreeze"] if is_post => {
            req.meta(Some(index), MetaKind::OpenClose)
        }
        ["_block", _] if req.is(&Method::PUT) => req.meta(Some(index), MetaKind::OpenClose),
        ["_rollover"] | ["_rollover", _] if is_post => req.meta(Some(index), MetaKind::Rollover),
        ["_shrink" | "_split" | "_clone", _] if req.is_put_or_post() => {
            req.meta(Some(index), MetaKind::Resize)
        }

        [api, ..] if is_maintenance_api(api) => RequestClass::Passthrough,
        ["_doc", ..] => classify_typed(req, index, "_doc", &rest[1..]),
        [api, ..] if is_read_api(api) && !is_delete => RequestClass::Read,
        [api, ..] if api.starts_with('_') => {
            RequestClass::unsupported(format!("unrecognised write endpoint [{m} {}]", req.path))
        }
        [doc_type, tail @ ..] => classify_typed(req, index, doc_type, tail),
    }
}

/// `/{index}/{type}/...`: the typed API of 5.x/6.x (deprecated in 7.x),
/// and `/{index}/_doc/...` (typeless API in 7.x+, type `_doc` in 6.x).
fn classify_typed(req: &Request<'_>, index: &str, doc_type: &str, tail: &[&str]) -> RequestClass {
    let m = req.method;
    let is_post = m == Method::POST;
    let ty = Some(doc_type);
    match tail {
        [] if is_post => req.doc_write(DocOp::Index, index, ty, None),
        ["_bulk"] if req.is_put_or_post() => req.bulk(Some(index), ty),
        ["_mapping" | "_mappings"] if req.is_put_or_post() => {
            req.meta(Some(index), MetaKind::PutMapping)
        }
        ["_update_by_query" | "_delete_by_query"] if is_post => req.query_scoped(index),
        // `POST /idx/tweet/_search` is a typed search everywhere. With the
        // `_doc` type it is a search up to 7.x but indexes a document with
        // id `_search` on 8.x; classified as a write, the response tells
        // which happened (see `accepted_single`).
        [api, ..] if is_read_api(api) && doc_type != "_doc" && is_post => RequestClass::Read,
        [id] if req.is_put_or_post() => req.doc_write(DocOp::Index, index, ty, Some(id)),
        [id] if m == Method::DELETE => req.doc_write(DocOp::Delete, index, ty, Some(id)),
        [id, "_create"] if req.is_put_or_post() => {
            req.doc_write(DocOp::Create, index, ty, Some(id))
        }
        [id, "_update"] if is_post => req.doc_write(DocOp::Update, index, ty, Some(id)),
        [_, "_explain" | "_termvectors" | "_percolate" | "_mlt"] if is_post => RequestClass::Read,
        _ => RequestClass::unsupported(format!("unrecognised write endpoint [{m} {}]", req.path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(op: DocOp, index: &str, ty: Option<&str>, id: Option<&str>) -> RequestClass {
        RequestClass::DocWrite(DocWrite {
            op,
            index: index.into(),
            doc_type: ty.map(Into::into),
            id: id.map(Into::into),
            routing: None,
            pipeline: None,
        })
    }

    fn bulk(index: Option<&str>, ty: Option<&str>) -> RequestClass {
        RequestClass::Bulk(BulkDefaults {
            index: index.map(Into::into),
            doc_type: ty.map(Into::into),
            routing: None,
            pipeline: None,
        })
    }

    fn meta(method: Method, path: &str, index: Option<&str>, kind: MetaKind) -> RequestClass {
        RequestClass::IndexMeta {
            index: index.map(Into::into),
            kind,
            request: RecordedRequest {
                method,
                path: path.into(),
            },
        }
    }

    fn scoped(path: &str, index: &str) -> RequestClass {
        RequestClass::QueryScoped {
            index: index.into(),
            request: RecordedRequest {
                method: Method::POST,
                path: path.into(),
            },
        }
    }

    fn m(s: &str) -> Method {
        Method::from_bytes(s.as_bytes()).unwrap()
    }

    fn check(method: &str, target: &str, expected: RequestClass) {
        let (path, query) = uri::split_path_query(target);
        let got = classify(&m(method), path, query);
        assert_eq!(got, expected, "{method} {target}");
    }

    fn check_kind(method: &str, target: &str, pred: fn(&RequestClass) -> bool, what: &str) {
        let (path, query) = uri::split_path_query(target);
        let got = classify(&m(method), path, query);
        assert!(
            pred(&got),
            "{method} {target}: expected {what}, got {got:?}"
        );
    }

    fn is_unsupported(c: &RequestClass) -> bool {
        matches!(c, RequestClass::Unsupported { .. })
    }

    #[test]
    fn reads() {
        let cases = [
            ("GET", "/"),
            ("HEAD", "/"),
            ("GET", "/idx/_doc/1"),
            ("HEAD", "/idx"),
            ("OPTIONS", "/idx/_doc/1"),
            ("GET", "/idx/_search"),
            ("POST", "/idx/_search"),
            ("POST", "/_search"),
            ("POST", "/a,b*/_search"),
            ("POST", "/_all/_search"),
            ("POST", "/idx/_msearch"),
            ("POST", "/_msearch"),
            ("POST", "/_msearch/template"),
            ("POST", "/idx/_search/template"),
            ("POST", "/idx/_count"),
            ("POST", "/_count"),
            ("POST", "/_mget"),
            ("POST", "/idx/_mget"),
            ("POST", "/idx/_validate/query"),
            ("POST", "/idx/_explain/1"),
            ("POST", "/idx/_field_caps"),
            ("POST", "/_field_caps"),
            ("POST", "/_search/scroll"),
            ("DELETE", "/_search/scroll"),
            ("DELETE", "/_search/scroll/abc"),
            ("POST", "/idx/_pit"),
            ("DELETE", "/_pit"),
            ("POST", "/idx/_search/point_in_time"),
            ("DELETE", "/_search/point_in_time"),
            ("POST", "/_async_search"),
            ("DELETE", "/_async_search/xyz"),
            ("POST", "/_sql"),
            ("POST", "/_sql/close"),
            ("POST", "/_plugins/_sql"),
            ("POST", "/_opendistro/_sql"),
            ("POST", "/_plugins/_ppl"),
            ("GET", "/_cat/indices"),
            ("POST", "/_cluster/health"),
            ("POST", "/_cluster/allocation/explain"),
            ("GET", "/_nodes/stats"),
            ("POST", "/_analyze"),
            ("POST", "/idx/_analyze"),
            ("POST", "/idx/_termvectors/1"),
            ("POST", "/_mtermvectors"),
            ("POST", "/idx/_search_shards"),
            ("POST", "/idx/_rank_eval"),
            ("POST", "/_ingest/pipeline/_simulate"),
            ("POST", "/_ingest/pipeline/p1/_simulate"),
            ("POST", "/_scripts/painless/_execute"),
            ("POST", "/_index_template/_simulate_index/idx"),
            ("POST", "/idx/tweet/_search"),
            ("POST", "/idx/tweet/_count"),
            ("POST", "/idx/tweet/_validate/query"),
            ("POST", "/idx/tweet/1/_explain"),
            ("POST", "/idx/tweet/1/_termvectors"),
            ("POST", "/idx/_disk_usage"),
        ];
        for (method, target) in cases {
            check(method, target, RequestClass::Read);
        }
    }

    #[test]
    fn bulk_routes() {
        check("POST", "/_bulk", bulk(None, None));
        check("PUT", "/_bulk", bulk(None, None));
        check("POST", "/idx/_bulk", bulk(Some("idx"), None));
        check("PUT", "/idx/_bulk?refresh=true", bulk(Some("idx"), None));
        check("POST", "/idx/tweet/_bulk", bulk(Some("idx"), Some("tweet")));
        check("POST", "/idx/_doc/_bulk", bulk(Some("idx"), None));
        check(
            "POST",
            "/idx/_bulk?routing=r1&pipeline=p",
            RequestClass::Bulk(BulkDefaults {
                index: Some("idx".into()),
                doc_type: None,
                routing: Some("r1".into()),
                pipeline: Some("p".into()),
            }),
        );
        check("POST", "/_bulk?pipeline=_none", bulk(None, None));
        check_kind("POST", "/a*/_bulk", is_unsupported, "unsupported");
        check_kind("DELETE", "/_bulk", is_unsupported, "unsupported");
    }

    #[test]
    fn typeless_doc_writes() {
        use DocOp::*;
        let cases = [
            ("PUT", "/idx/_doc/1", doc(Index, "idx", None, Some("1"))),
            ("POST", "/idx/_doc/1", doc(Index, "idx", None, Some("1"))),
            ("POST", "/idx/_doc", doc(Index, "idx", None, None)),
            (
                "PUT",
                "/idx/_doc/1?op_type=create",
                doc(Create, "idx", None, Some("1")),
            ),
            ("PUT", "/idx/_create/1", doc(Create, "idx", None, Some("1"))),
            (
                "POST",
                "/idx/_create/1",
                doc(Create, "idx", None, Some("1")),
            ),
            (
                "POST",
                "/idx/_update/1",
                doc(Update, "idx", None, Some("1")),
            ),
            ("DELETE", "/idx/_doc/1", doc(Delete, "idx", None, Some("1"))),
            // Percent-decoding happens per segment: %2F stays in the id.
            (
                "PUT",
                "/idx/_doc/a%2Fb",
                doc(Index, "idx", None, Some("a/b")),
            ),
            (
                "PUT",
                "/idx/_doc/caf%C3%A9+x",
                doc(Index, "idx", None, Some("café+x")),
            ),
            (
                "PUT",
                "/idx/_doc/%E2%9C%93",
                doc(Index, "idx", None, Some("✓")),
            ),
            // 6.x with the `_doc` type: same thing.
            (
                "PUT",
                "/idx/_doc/1/_create",
                doc(Create, "idx", None, Some("1")),
            ),
            (
                "POST",
                "/idx/_doc/1/_update",
                doc(Update, "idx", None, Some("1")),
            ),
            // An id that looks like an API name is still an id.
            (
                "DELETE",
                "/idx/_doc/_search",
                doc(Delete, "idx", None, Some("_search")),
            ),
            (
                "POST",
                "/idx/_doc/_search",
                doc(Index, "idx", None, Some("_search")),
            ),
            ("PUT", "/idx//_doc/1/", doc(Index, "idx", None, Some("1"))),
        ];
        for (method, target, expected) in cases {
            check(method, target, expected);
        }
    }

    #[test]
    fn typed_doc_writes() {
        use DocOp::*;
        let cases = [
            (
                "PUT",
                "/idx/tweet/1",
                doc(Index, "idx", Some("tweet"), Some("1")),
            ),
            (
                "POST",
                "/idx/tweet/1",
                doc(Index, "idx", Some("tweet"), Some("1")),
            ),
            ("POST", "/idx/tweet", doc(Index, "idx", Some("tweet"), None)),
            (
                "PUT",
                "/idx/tweet/1/_create",
                doc(Create, "idx", Some("tweet"), Some("1")),
            ),
            (
                "POST",
                "/idx/tweet/1/_create",
                doc(Create, "idx", Some("tweet"), Some("1")),
            ),
            (
                "POST",
                "/idx/tweet/1/_update",
                doc(Update, "idx", Some("tweet"), Some("1")),
            ),
            (
                "DELETE",
                "/idx/tweet/1",
                doc(Delete, "idx", Some("tweet"), Some("1")),
            ),
            (
                "PUT",
                "/idx/tweet/_search",
                doc(Index, "idx", Some("tweet"), Some("_search")),
            ),
        ];
        for (method, target, expected) in cases {
            check(method, target, expected);
        }
    }

    #[test]
    fn doc_write_query_parameters() {
        check(
            "PUT",
            "/idx/_doc/1?routing=u%201&pipeline=enrich&refresh=wait_for",
            RequestClass::DocWrite(DocWrite {
                op: DocOp::Index,
                index: "idx".into(),
                doc_type: None,
                id: Some("1".into()),
                routing: Some("u 1".into()),
                pipeline: Some("enrich".into()),
            }),
        );
        check(
            "PUT",
            "/idx/child/2?parent=1",
            RequestClass::DocWrite(DocWrite {
                op: DocOp::Index,
                index: "idx".into(),
                doc_type: Some("child".into()),
                id: Some("2".into()),
                routing: Some("1".into()),
                pipeline: None,
            }),
        );
        check(
            "PUT",
            "/idx/_doc/1?pipeline=_none",
            doc(DocOp::Index, "idx", None, Some("1")),
        );
    }

    #[test]
    fn doc_writes_need_one_index() {
        for (method, target) in [
            ("PUT", "/a,b/_doc/1"),
            ("PUT", "/logs-*/_doc/1"),
            ("POST", "/_all/_doc"),
            ("PUT", "/idx/_doc"),
            ("DELETE", "/idx/_doc"),
            ("PUT", "/idx/_update/1"),
            ("PUT", "/idx/tweet"),
            ("PUT", "/idx/_doc/1/_unknown"),
            ("PUT", "/idx/_doc/%ZZ"),
            ("PUT", "/idx/_doc/%FF"),
        ] {
            check_kind(method, target, is_unsupported, "unsupported");
        }
    }

    #[test]
    fn index_metadata() {
        use MetaKind::*;
        let cases = [
            ("PUT", "/idx", Some("idx"), CreateIndex),
            (
                "PUT",
                "/%3Clogs-%7Bnow%2Fd%7D%3E",
                Some("<logs-{now/d}>"),
                CreateIndex,
            ),
            ("DELETE", "/idx", Some("idx"), DeleteIndex),
            ("DELETE", "/a,b", Some("a,b"), DeleteIndex),
            ("DELETE", "/_all", Some("_all"), DeleteIndex),
            ("PUT", "/idx/_mapping", Some("idx"), PutMapping),
            ("POST", "/idx/_mappings", Some("idx"), PutMapping),
            ("PUT", "/idx/_mapping/tweet", Some("idx"), PutMapping),
            ("PUT", "/idx/tweet/_mapping", Some("idx"), PutMapping),
            ("PUT", "/idx/_doc/_mapping", Some("idx"), PutMapping),
            ("PUT", "/_mapping", None, PutMapping),
            ("PUT", "/idx/_settings", Some("idx"), PutSettings),
            ("PUT", "/_all/_settings", Some("_all"), PutSettings),
            ("PUT", "/_settings", None, PutSettings),
            ("POST", "/_aliases", None, Aliases),
            ("PUT", "/idx/_alias/a1", Some("idx"), Aliases),
            ("POST", "/idx/_aliases/a1", Some("idx"), Aliases),
            ("DELETE", "/idx/_alias/a1", Some("idx"), Aliases),
            ("PUT", "/_template/t1", None, LegacyTemplate),
            ("DELETE", "/_template/t1", None, LegacyTemplate),
            ("PUT", "/_index_template/t1", None, ComposableTemplate),
            ("PUT", "/_component_template/c1", None, ComposableTemplate),
            ("POST", "/idx/_open", Some("idx"), OpenClose),
            ("POST", "/idx/_close", Some("idx"), OpenClose),
            ("PUT", "/idx/_block/write", Some("idx"), OpenClose),
            ("POST", "/alias/_rollover", Some("alias"), Rollover),
            (
                "POST",
                "/alias/_rollover/new-000002",
                Some("alias"),
                Rollover,
            ),
            ("POST", "/idx/_shrink/small", Some("idx"), Resize),
            ("PUT", "/idx/_clone/copy", Some("idx"), Resize),
            ("PUT", "/_ingest/pipeline/p1", None, Pipeline),
            ("DELETE", "/_ingest/pipeline/p1", None, Pipeline),
            ("PUT", "/_scripts/s1", None, StoredScript),
            ("POST", "/_scripts/s1/search", None, StoredScript),
            ("PUT", "/_data_stream/logs", Some("logs"), DataStream),
        ];
        for (method, target, index, kind) in cases {
            check(method, target, meta(m(method), target, index, kind));
        }
    }

    #[test]
    fn query_scoped() {
        check(
            "POST",
            "/idx/_update_by_query",
            scoped("/idx/_update_by_query", "idx"),
        );
        check(
            "POST",
            "/a,b/_delete_by_query?conflicts=proceed",
            scoped("/a,b/_delete_by_query?conflicts=proceed", "a,b"),
        );
        check(
            "POST",
            "/idx/tweet/_delete_by_query",
            scoped("/idx/tweet/_delete_by_query", "idx"),
        );
        check(
            "POST",
            "/_update_by_query/node:1/_rethrottle",
            RequestClass::Passthrough,
        );
        check_kind("POST", "/_delete_by_query", is_unsupported, "unsupported");
    }

    #[test]
    fn passthrough_admin() {
        for (method, target) in [
            ("POST", "/_refresh"),
            ("POST", "/idx/_refresh"),
            ("POST", "/idx/_flush"),
            ("POST", "/idx/_flush/synced"),
            ("POST", "/idx/_forcemerge?max_num_segments=1"),
            ("POST", "/idx/_cache/clear"),
            ("PUT", "/_cluster/settings"),
            ("POST", "/_cluster/reroute"),
            ("POST", "/_tasks/n:1/_cancel"),
            ("POST", "/_nodes/reload_secure_settings"),
            ("PUT", "/_snapshot/repo"),
            ("PUT", "/_snapshot/repo/snap1"),
            ("DELETE", "/_snapshot/repo/snap1"),
            ("PUT", "/_security/user/bob"),
            ("PUT", "/_ilm/policy/p"),
            ("PUT", "/_plugins/_ism/policies/p"),
            ("POST", "/_reindex/n:1/_rethrottle"),
        ] {
            check(method, target, RequestClass::Passthrough);
        }
    }

    #[test]
    fn unsupported_writes() {
        for (method, target) in [
            ("POST", "/_reindex"),
            ("POST", "/_snapshot/repo/snap1/_restore"),
            ("POST", "/"),
            ("POST", "/idx"),
            ("POST", "/_frobnicate"),
            ("POST", "/idx/_frobnicate"),
            ("POST", "/_plugins/_unknown/x"),
            ("POST", "/idx/tweet/1/_frob"),
        ] {
            check_kind(method, target, is_unsupported, "unsupported");
        }
    }

    #[test]
    fn recorded_request_keeps_the_query_and_no_authority() {
        let class = classify(&Method::PUT, "/idx", Some("include_type_name=true"));
        let RequestClass::IndexMeta { request, .. } = class else {
            panic!("expected IndexMeta");
        };
        assert_eq!(request.path, "/idx?include_type_name=true");
        assert_eq!(request.method, Method::PUT);
        assert!(class_is_replicated("PUT", "/idx"));
        assert!(!class_is_replicated("POST", "/idx/_search"));
    }

    fn class_is_replicated(method: &str, path: &str) -> bool {
        classify(&m(method), path, None).is_replicated()
    }
}
