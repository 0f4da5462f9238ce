//! Cluster-level metadata a migration job copies before the indices:
//! component templates, composable and legacy index templates matching a
//! selected index, and ingest pipelines.
//!
//! Each piece is reported ([`ItemResult`]): copied as the source holds it,
//! rewritten for the target's version (by the same rules the replayer
//! applies to a recorded `PUT /_template/...`: `tandem_es::replay_request`),
//! kept because the target already has one of that name (never
//! overwritten), or refused with the reason: the target cannot express it
//! (composable templates towards Elasticsearch before 7.8) or answered an
//! error (an unknown processor, a setting it does not know). Nothing asked
//! for is dropped without a line in the report.

use bytes::Bytes;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tandem_es::uri::encode_path_segment;
use tandem_es::{ClusterVersion, Distribution, ReplayTarget, ReplicationOp, replay_request};

use super::metadata::wildcard;
use super::search::SearchClient;
use crate::jobs::JobFailure;

/// Kind of a piece of cluster metadata (`ClusterMetadataKind`), in the
/// order they are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An ILM or ISM policy (before the templates whose settings name it).
    LifecyclePolicy,
    /// `_component_template`.
    ComponentTemplate,
    /// `_index_template`.
    IndexTemplate,
    /// `_template`.
    LegacyTemplate,
    /// `_ingest/pipeline`.
    IngestPipeline,
    /// `_data_stream` (after its template).
    DataStream,
}

impl Kind {
    /// The API path of `name`.
    fn path(self, name: &str) -> String {
        let base = match self {
            Kind::ComponentTemplate => "_component_template",
            Kind::IndexTemplate => "_index_template",
            Kind::LegacyTemplate => "_template",
            Kind::IngestPipeline => "_ingest/pipeline",
            Kind::DataStream => "_data_stream",
            Kind::LifecyclePolicy => "_ilm/policy",
        };
        format!("/{base}/{}", encode_path_segment(name))
    }
}

/// What happened to one piece (`ClusterMetadataOutcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Created as the source holds it.
    Copied,
    /// Created, rewritten for the target's version.
    Rewritten,
    /// The target already had one of that name.
    KeptExisting,
    /// Not carried over.
    Refused,
}

/// One piece and its outcome, as stored in the job's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemResult {
    /// Kind.
    pub kind: Kind,
    /// Name on both clusters.
    pub name: String,
    /// Outcome.
    pub outcome: Outcome,
    /// What was rewritten, or why it was refused.
    pub detail: String,
}

/// What to copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted {
    /// Templates matching a selected index (and their components).
    pub templates: bool,
    /// Every ingest pipeline.
    pub pipelines: bool,
    /// Every ILM / ISM policy.
    pub policies: bool,
}

/// Whether `version` has composable and component templates
/// (Elasticsearch 7.8+, every OpenSearch).
fn has_composable_templates(version: &ClusterVersion) -> bool {
    match version.distribution {
        Distribution::Elasticsearch => (version.major, version.minor) >= (7, 8),
        Distribution::OpenSearch => true,
    }
}

/// Copies what `wanted` asks for from `source` to `target`; `indices` are
/// the selected source indices (templates are copied when one of their
/// patterns matches one of them). Returns the report, ordered by kind then
/// name. Fails only when the source cannot be read.
pub async fn copy(
    source: &SearchClient,
    target: &SearchClient,
    wanted: Wanted,
    indices: &[String],
) -> Result<Vec<ItemResult>, JobFailure> {
    let mut todo: Vec<(Kind, String, Value)> = Vec::new();
    let source_distribution = source.version.es().distribution;
    if wanted.policies {
        for (name, body) in policies(source).await? {
            todo.push((Kind::LifecyclePolicy, name, body));
        }
    }
    if wanted.templates {
        let source_version = source.version.es();
        if has_composable_templates(&source_version) {
            let mut components = Vec::new();
            for (name, body) in listed(source, "/_index_template", "index_templates").await? {
                if matches_any(&body["index_patterns"], indices) {
                    for component in body["composed_of"].as_array().into_iter().flatten() {
                        if let Some(c) = component.as_str()
                            && !components.iter().any(|n: &String| n == c)
                        {
                            components.push(c.to_owned());
                        }
                    }
                    todo.push((Kind::IndexTemplate, name, body));
                }
            }
            if !components.is_empty() {
                let all = listed(source, "/_component_template", "component_templates").await?;
                for name in components {
                    let body = all
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, b)| b.clone())
                        .unwrap_or(Value::Null);
                    todo.push((Kind::ComponentTemplate, name, body));
                }
            }
        }
        for (name, body) in keyed(source, "/_template").await? {
            let patterns = match (&body["index_patterns"], &body["template"]) {
                (Value::Null, single) => single.clone(),
                (patterns, _) => patterns.clone(),
            };
            if matches_any(&patterns, indices) {
                todo.push((Kind::LegacyTemplate, name, body));
            }
        }
    }
    if wanted.pipelines {
        for (name, body) in keyed(source, "/_ingest/pipeline").await? {
            todo.push((Kind::IngestPipeline, name, body));
        }
    }
    todo.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut report = Vec::with_capacity(todo.len());
    for (kind, name, body) in todo {
        report.push(match kind {
            Kind::LifecyclePolicy => copy_policy(target, source_distribution, &name, body).await?,
            _ => copy_one(target, kind, &name, body).await?,
        });
    }
    Ok(report)
}

/// Creates one piece on the target unless it exists there.
async fn copy_one(
    target: &SearchClient,
    kind: Kind,
    name: &str,
    body: Value,
) -> Result<ItemResult, JobFailure> {
    let result = |outcome, detail: String| ItemResult {
        kind,
        name: name.to_owned(),
        outcome,
        detail,
    };
    let target_version = target.version.es();
    if body.is_null() {
        return Ok(result(
            Outcome::Refused,
            "the source lists it in a template but has no such component template".into(),
        ));
    }
    if matches!(kind, Kind::IndexTemplate | Kind::ComponentTemplate)
        && !has_composable_templates(&target_version)
    {
        return Ok(result(
            Outcome::Refused,
            format!(
                "{target_version} has no composable or component templates (Elasticsearch 7.8+ or OpenSearch needed); create an equivalent legacy template by hand"
            ),
        ));
    }
    let path = kind.path(name);
    let exists = target.call(Method::GET, &path, None).await?;
    match exists.status.as_u16() {
        404 => {}
        _ if exists.ok() => {
            return Ok(result(
                Outcome::KeptExisting,
                "the target already has one of that name; it was not overwritten".into(),
            ));
        }
        _ => return Err(target.refused(&Method::GET, &path, &exists)),
    }
    let original = serde_json::to_vec(&body).unwrap_or_default();
    let (request_path, request_body, rewritten) = if kind == Kind::LegacyTemplate {
        // The replayer's rewrite of a recorded `PUT /_template/...`:
        // mapping types and `template` / `index_patterns` per major.
        let op = ReplicationOp::IndexMeta {
            method: Method::PUT,
            path: path.clone(),
            body: Bytes::from(original.clone()),
        };
        match replay_request(&op, &ReplayTarget::new(target_version)) {
            Ok(request) => {
                let changed = request.body.as_ref() != original.as_slice();
                (request.path, request.body.to_vec(), changed)
            }
            Err(err) => {
                return Ok(result(
                    Outcome::Refused,
                    format!("cannot be expressed on {target_version}: {err}"),
                ));
            }
        }
    } else {
        (path.clone(), original, false)
    };
    let answer = target
        .call_raw_json(Method::PUT, &request_path, request_body)
        .await?;
    if !answer.ok() {
        return Ok(result(
            Outcome::Refused,
            format!(
                "the target answered {}: {}",
                answer.status.as_u16(),
                answer.reason()
            ),
        ));
    }
    Ok(if rewritten {
        result(
            Outcome::Rewritten,
            format!("rewritten for {target_version} (mapping types, index patterns)"),
        )
    } else {
        result(Outcome::Copied, String::new())
    })
}

/// Where `distribution` keeps lifecycle policies: ILM (x-pack) on
/// Elasticsearch, ISM (the index-management plugin) on OpenSearch.
fn policy_base(distribution: Distribution) -> &'static str {
    match distribution {
        Distribution::Elasticsearch => "/_ilm/policy",
        Distribution::OpenSearch => "/_plugins/_ism/policies",
    }
}

/// The name of the policy API of `distribution`, for reports.
fn policy_api(distribution: Distribution) -> &'static str {
    match distribution {
        Distribution::Elasticsearch => "ILM",
        Distribution::OpenSearch => "ISM",
    }
}

/// Whether an answer means "no such API here" (no x-pack, no ISM plugin):
/// no handler for the path, or the path read as an index name.
fn no_such_api(status: u16) -> bool {
    matches!(status, 400 | 404 | 405)
}

/// The source's lifecycle policies, each as the body that creates it;
/// none when the source has no policy API.
async fn policies(source: &SearchClient) -> Result<Vec<(String, Value)>, JobFailure> {
    let distribution = source.version.es().distribution;
    let path = match distribution {
        Distribution::Elasticsearch => policy_base(distribution).to_owned(),
        Distribution::OpenSearch => format!("{}?size=10000", policy_base(distribution)),
    };
    let answer = source.call(Method::GET, &path, None).await?;
    if no_such_api(answer.status.as_u16()) {
        return Ok(Vec::new());
    }
    if !answer.ok() {
        return Err(source.refused(&Method::GET, &path, &answer));
    }
    Ok(parse_policies(distribution, &answer.body))
}

/// The policies of a listing: `{"<name>": {"policy": {..}, "version": ..}}`
/// for ILM, `{"policies": [{"_id": .., "policy": {..}}]}` for ISM (whose
/// read-only fields are removed: the target assigns them).
fn parse_policies(distribution: Distribution, body: &Value) -> Vec<(String, Value)> {
    let mut found: Vec<(String, Value)> = match distribution {
        Distribution::Elasticsearch => body
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, entry)| (name.clone(), json!({ "policy": entry["policy"] })))
            .collect(),
        Distribution::OpenSearch => body["policies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let name = entry["_id"].as_str()?.to_owned();
                let mut policy = entry["policy"].as_object()?.clone();
                for read_only in ["policy_id", "last_updated_time", "schema_version"] {
                    policy.remove(read_only);
                }
                Some((name, json!({ "policy": policy })))
            })
            .collect(),
    };
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Creates one lifecycle policy on the target unless it has one of that
/// name; refused towards the other distribution or a target without the
/// API.
async fn copy_policy(
    target: &SearchClient,
    source_distribution: Distribution,
    name: &str,
    body: Value,
) -> Result<ItemResult, JobFailure> {
    let result = |outcome, detail: String| ItemResult {
        kind: Kind::LifecyclePolicy,
        name: name.to_owned(),
        outcome,
        detail,
    };
    let distribution = target.version.es().distribution;
    if distribution != source_distribution {
        return Ok(result(
            Outcome::Refused,
            format!(
                "an {} policy cannot be expressed as {}: the models differ (ILM phases and actions, ISM states and transitions); recreate it on the target by hand",
                policy_api(source_distribution),
                policy_api(distribution)
            ),
        ));
    }
    let path = format!(
        "{}/{}",
        policy_base(distribution),
        encode_path_segment(name)
    );
    let existing = target.call(Method::GET, &path, None).await?;
    match existing.status.as_u16() {
        _ if existing.ok() => {
            return Ok(result(
                Outcome::KeptExisting,
                "the target already has one of that name; it was not overwritten".into(),
            ));
        }
        404 if existing.body["error"]["type"] != "index_not_found_exception" => {}
        status if no_such_api(status) => {
            return Ok(result(
                Outcome::Refused,
                format!(
                    "the target ({}) has no {} API (answered {status}: {})",
                    target.version.number,
                    policy_api(distribution),
                    existing.reason()
                ),
            ));
        }
        _ => return Err(target.refused(&Method::GET, &path, &existing)),
    }
    let created = target.call(Method::PUT, &path, Some(&body)).await?;
    Ok(if created.ok() {
        result(Outcome::Copied, String::new())
    } else {
        result(
            Outcome::Refused,
            format!(
                "the target answered {}: {}",
                created.status.as_u16(),
                created.reason()
            ),
        )
    })
}

/// Whether one of `patterns` (a string or an array of them) matches one of
/// `indices`.
fn matches_any(patterns: &Value, indices: &[String]) -> bool {
    let patterns: Vec<&str> = match patterns {
        Value::String(p) => vec![p.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    patterns
        .iter()
        .any(|p| indices.iter().any(|index| wildcard(p, index)))
}

/// `GET path` answering `{"<field>": [{"name": .., "<item>": {..}}]}`
/// (composable and component templates); none when the API is absent.
async fn listed(
    source: &SearchClient,
    path: &str,
    field: &str,
) -> Result<Vec<(String, Value)>, JobFailure> {
    let answer = source.call(Method::GET, path, None).await?;
    if answer.status.as_u16() == 404 {
        return Ok(Vec::new());
    }
    if !answer.ok() {
        return Err(source.refused(&Method::GET, path, &answer));
    }
    let item = field.trim_end_matches('s');
    Ok(answer.body[field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let name = entry["name"].as_str()?.to_owned();
            Some((name, entry[item].clone()))
        })
        .collect())
}

/// `GET path` answering `{"<name>": {..}, ...}` (pipelines, legacy
/// templates); none when there are none (404).
async fn keyed(source: &SearchClient, path: &str) -> Result<Vec<(String, Value)>, JobFailure> {
    let answer = source.call(Method::GET, path, None).await?;
    if answer.status.as_u16() == 404 {
        return Ok(Vec::new());
    }
    if !answer.ok() {
        return Err(source.refused(&Method::GET, path, &answer));
    }
    Ok(match answer.body {
        Value::Object(map) => map.into_iter().collect(),
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_are_chosen_by_their_patterns() {
        let indices = vec!["logs-2024".to_owned(), "users".to_owned()];
        assert!(matches_any(&json!(["metrics-*", "logs-*"]), &indices));
        assert!(matches_any(&json!("users"), &indices));
        assert!(!matches_any(&json!(["metrics-*"]), &indices));
        assert!(!matches_any(&Value::Null, &indices));
    }

    #[test]
    fn policies_are_read_from_ilm_and_ism_listings() {
        let ilm = json!({"hot-warm": {"version": 3, "modified_date": "2026-01-01",
            "policy": {"phases": {"hot": {"actions": {"rollover": {"max_size": "5gb"}}}}}}});
        assert_eq!(
            parse_policies(Distribution::Elasticsearch, &ilm),
            [(
                "hot-warm".to_owned(),
                json!({"policy": {"phases": {"hot": {"actions": {"rollover": {"max_size": "5gb"}}}}}})
            )]
        );
        let ism = json!({"total_policies": 1, "policies": [{"_id": "delete-old", "_seq_no": 1,
            "policy": {"policy_id": "delete-old", "last_updated_time": 1, "schema_version": 17,
                "description": "d", "default_state": "hot", "states": []}}]});
        assert_eq!(
            parse_policies(Distribution::OpenSearch, &ism),
            [(
                "delete-old".to_owned(),
                json!({"policy": {"description": "d", "default_state": "hot", "states": []}})
            )]
        );
    }

    #[test]
    fn composable_templates_exist_from_elasticsearch_7_8_and_on_opensearch() {
        assert!(!has_composable_templates(&ClusterVersion::elasticsearch(
            6, 8
        )));
        assert!(!has_composable_templates(&ClusterVersion::elasticsearch(
            7, 7
        )));
        assert!(has_composable_templates(&ClusterVersion::elasticsearch(
            7, 8
        )));
        assert!(has_composable_templates(&ClusterVersion::elasticsearch(
            8, 17
        )));
        assert!(has_composable_templates(&ClusterVersion::opensearch(1, 3)));
    }

    #[test]
    fn components_are_created_before_the_templates_using_them() {
        let mut kinds = vec![
            Kind::IngestPipeline,
            Kind::LegacyTemplate,
            Kind::IndexTemplate,
            Kind::ComponentTemplate,
        ];
        kinds.sort();
        assert_eq!(
            kinds,
            [
                Kind::ComponentTemplate,
                Kind::IndexTemplate,
                Kind::LegacyTemplate,
                Kind::IngestPipeline
            ]
        );
    }
}
