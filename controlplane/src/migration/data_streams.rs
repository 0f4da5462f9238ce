//! Data streams a migration job copies: the streams the index selection
//! names are re-created on the target, and their backing indices become
//! copy units whose documents are created through the target's stream.
//!
//! Neither OpenSearch nor Elasticsearch lets a client create a document in
//! a chosen backing index (a `create` goes through the stream, into its
//! write index), and OpenSearch has no API adding an index to a stream. So
//! the target's stream gets the same name and template, and is rolled over
//! to the source's generation: the backing indices rollovers create later
//! (through the gateway, replayed) have the same names on both sides. The
//! copied documents themselves land in the target's write index. Writes
//! replayed into a stream follow the same rule (see
//! `tandem_es::data_stream`).

use reqwest::Method;
use serde_json::Value;
use tandem_es::uri::encode_path_segment;
use tandem_es::{ClusterVersion, Distribution};

use super::IndexSelection;
use super::cluster_metadata::{ItemResult, Kind, Outcome};
use super::metadata::wildcard;
use super::search::SearchClient;
use crate::jobs::JobFailure;

/// A data stream of the source the selection names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStream {
    /// Name.
    pub name: String,
    /// Its current generation.
    pub generation: u64,
    /// Its backing indices, oldest first.
    pub backing_indices: Vec<String>,
}

/// Whether `version` has data streams: OpenSearch, and Elasticsearch 7.9+
/// (with x-pack, which the target's answer tells).
fn may_have_data_streams(version: &ClusterVersion) -> bool {
    match version.distribution {
        Distribution::Elasticsearch => (version.major, version.minor) >= (7, 9),
        Distribution::OpenSearch => true,
    }
}

/// The source's data streams whose name `selection` includes (and does not
/// exclude), by name. None when the source has no data streams.
pub async fn select(
    source: &SearchClient,
    selection: &IndexSelection,
) -> Result<Vec<SourceStream>, JobFailure> {
    if !may_have_data_streams(&source.version.es()) {
        return Ok(Vec::new());
    }
    let answer = source.call(Method::GET, "/_data_stream", None).await?;
    if !answer.ok() {
        // Elasticsearch without x-pack has no such endpoint: no streams.
        return Ok(Vec::new());
    }
    Ok(parse_streams(&answer.body)
        .into_iter()
        .filter(|stream| selects(selection, &stream.name))
        .collect())
}

/// Whether `selection` names `name` (an empty include list names all).
fn selects(selection: &IndexSelection, name: &str) -> bool {
    let included =
        selection.include.is_empty() || selection.include.iter().any(|p| wildcard(p, name));
    included && !selection.exclude.iter().any(|p| wildcard(p, name))
}

/// The streams of a `GET /_data_stream` answer.
fn parse_streams(body: &Value) -> Vec<SourceStream> {
    let mut streams: Vec<SourceStream> = body["data_streams"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let name = entry["name"].as_str()?.to_owned();
            let backing_indices: Vec<String> = entry["indices"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["index_name"].as_str().map(str::to_owned))
                .collect();
            let generation = entry["generation"]
                .as_u64()
                .unwrap_or(backing_indices.len() as u64);
            Some(SourceStream {
                name,
                generation,
                backing_indices,
            })
        })
        .collect();
    streams.sort_by(|a, b| a.name.cmp(&b.name));
    streams
}

impl SourceStream {
    /// Its line in the job's report.
    fn report(&self, outcome: Outcome, detail: String) -> ItemResult {
        ItemResult {
            kind: Kind::DataStream,
            name: self.name.clone(),
            outcome,
            detail,
        }
    }
}

/// The report line of a stream the selection names while the job was not
/// asked to copy data streams.
pub fn not_asked(stream: &SourceStream) -> ItemResult {
    stream.report(
        Outcome::Refused,
        format!(
            "the selection names this data stream ({} backing indices); set copy_data_streams to copy it",
            stream.backing_indices.len()
        ),
    )
}

/// The report line of a stream the selection names in a snapshot-mode job,
/// which restores indices only.
pub fn not_in_snapshot(stream: &SourceStream) -> ItemResult {
    stream.report(
        Outcome::Refused,
        format!(
            "snapshot mode restores indices only: this data stream ({} backing indices) was not carried; copy it with MIGRATION_MODE_DOCUMENTS and copy_data_streams",
            stream.backing_indices.len()
        ),
    )
}

/// Creates `stream` on the target and rolls it over to the source's
/// generation, or keeps the target's stream of that name. Its documents
/// can be copied unless the outcome is `Refused`.
pub async fn recreate(
    target: &SearchClient,
    stream: &SourceStream,
) -> Result<ItemResult, JobFailure> {
    let result = |outcome, detail: String| stream.report(outcome, detail);
    let target_version = target.version.es();
    if !may_have_data_streams(&target_version) {
        return Ok(result(
            Outcome::Refused,
            format!(
                "{target_version} has no data streams (Elasticsearch 7.9+ or OpenSearch needed); its {} backing indices were not copied",
                stream.backing_indices.len()
            ),
        ));
    }
    let path = format!("/_data_stream/{}", encode_path_segment(&stream.name));
    let existing = target.call(Method::GET, &path, None).await?;
    if existing.ok() {
        return Ok(result(
            Outcome::KeptExisting,
            "the target already has this data stream: documents are created through it".into(),
        ));
    }
    let created = target.call(Method::PUT, &path, None).await?;
    if !created.ok() {
        return Ok(result(
            Outcome::Refused,
            format!(
                "the target answered {} creating it: {} (the stream's composable template must exist on the target: set copy_templates); its {} backing indices were not copied",
                created.status.as_u16(),
                created.reason(),
                stream.backing_indices.len()
            ),
        ));
    }
    let rollover = format!("/{}/_rollover", encode_path_segment(&stream.name));
    for _ in 1..stream.generation {
        let rolled = target.call(Method::POST, &rollover, None).await?;
        if !rolled.ok() {
            return Err(target.refused(&Method::POST, &rollover, &rolled));
        }
    }
    Ok(result(
        Outcome::Copied,
        format!(
            "re-created at generation {} (the source has {} backing indices); documents are created through the stream into the target's write index",
            stream.generation,
            stream.backing_indices.len()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn streams_are_read_from_the_listing() {
        let body = json!({"data_streams": [
            {"name": "logs-b", "generation": 3, "template": "logs",
             "indices": [{"index_name": ".ds-logs-b-000002"}, {"index_name": ".ds-logs-b-000003"}]},
            {"name": "logs-a", "indices": [{"index_name": ".ds-logs-a-000001"}]},
        ]});
        let streams = parse_streams(&body);
        assert_eq!(
            streams,
            [
                SourceStream {
                    name: "logs-a".into(),
                    generation: 1,
                    backing_indices: vec![".ds-logs-a-000001".into()],
                },
                SourceStream {
                    name: "logs-b".into(),
                    generation: 3,
                    backing_indices: vec![".ds-logs-b-000002".into(), ".ds-logs-b-000003".into()],
                },
            ]
        );
        assert!(parse_streams(&json!({})).is_empty());
    }

    #[test]
    fn the_selection_names_streams_like_indices() {
        let selection = IndexSelection {
            include: vec!["logs-*".into()],
            exclude: vec!["logs-debug".into()],
            ..IndexSelection::default()
        };
        assert!(selects(&selection, "logs-app"));
        assert!(!selects(&selection, "logs-debug"));
        assert!(!selects(&selection, "metrics"));
        assert!(selects(&IndexSelection::default(), "metrics"));
    }

    #[test]
    fn data_streams_exist_from_elasticsearch_7_9_and_on_opensearch() {
        assert!(!may_have_data_streams(&ClusterVersion::elasticsearch(7, 8)));
        assert!(may_have_data_streams(&ClusterVersion::elasticsearch(7, 9)));
        assert!(may_have_data_streams(&ClusterVersion::opensearch(1, 3)));
    }
}
