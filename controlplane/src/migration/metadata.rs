//! Index metadata for a migration: which source indices are selected, and
//! how each target index is created (settings minus non-portable ones,
//! mappings rewritten between typed and typeless versions, aliases).

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Map, Value, json};
use tandem_proto::codes;

use super::search::SearchClient;
use super::{IndexSelection, MetadataSpec, TypeRewrite};
use crate::jobs::JobFailure;
use tandem_es::uri::encode_path_segment;

/// Settings never copied: identity, creation facts, node pins, resize
/// leftovers and blocks (a read-only source must not make a read-only
/// target). A trailing `*` matches any suffix.
const NON_PORTABLE_SETTINGS: &[&str] = &[
    "index.uuid",
    "index.creation_date",
    "index.creation_date_string",
    "index.provided_name",
    "index.version.*",
    "index.routing.allocation.initial_recovery.*",
    "index.routing.allocation.require.*",
    "index.routing.allocation.include.*",
    "index.routing.allocation.exclude.*",
    "index.resize.*",
    "index.shrink.*",
    "index.blocks.*",
    "index.frozen",
    "index.search.throttled",
    "index.verified_before_close",
    "index.lifecycle.*",
    "index.plugins.index_state_management.*",
    "index.opendistro.index_state_management.*",
    "archived.*",
];

/// Prefixes of the clusters' own indices, never selected.
const SYSTEM_PREFIXES: &[&str] = &[
    ".security",
    ".tasks",
    ".kibana",
    ".opendistro",
    ".opensearch",
    ".plugins",
    ".geoip",
    ".apm",
    ".fleet",
    ".ml-",
    ".watches",
    ".triggered_watches",
    ".monitoring",
    ".async-search",
    ".transform",
    ".snapshot",
    ".ql-",
    ".enrich",
];

/// Whether `pattern` (with `*` wildcards) matches `name`.
pub fn wildcard(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// A selected source index.
#[derive(Debug, Clone)]
pub struct SourceIndex {
    /// Name.
    pub name: String,
    /// Primary shards.
    pub primaries: u32,
}

/// The source indices `selection` designates, sorted by name. Aliases in
/// `include` resolve to their indices.
pub async fn select(
    source: &SearchClient,
    selection: &IndexSelection,
) -> Result<Vec<SourceIndex>, JobFailure> {
    let listed = source
        .expect(Method::GET, "/_cat/indices?format=json&h=index,pri", None)
        .await?;
    let aliases = source
        .expect(Method::GET, "/_cat/aliases?format=json&h=alias,index", None)
        .await?;
    let include: Vec<&str> = if selection.include.is_empty() {
        vec!["*"]
    } else {
        selection.include.iter().map(String::as_str).collect()
    };
    let mut by_alias: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for row in aliases.as_array().into_iter().flatten() {
        if let (Some(alias), Some(index)) = (row["alias"].as_str(), row["index"].as_str()) {
            by_alias.entry(alias).or_default().push(index);
        }
    }
    let mut selected = BTreeMap::new();
    for row in listed.as_array().into_iter().flatten() {
        let Some(name) = row["index"].as_str() else {
            continue;
        };
        let primaries = row["pri"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .or_else(|| row["pri"].as_u64().map(|p| p as u32))
            .unwrap_or(1);
        if SYSTEM_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        if name.starts_with('.') && !selection.include_hidden {
            continue;
        }
        let direct = include.iter().any(|p| wildcard(p, name));
        let through_alias = by_alias.iter().any(|(alias, indices)| {
            indices.contains(&name) && include.iter().any(|p| wildcard(p, alias))
        });
        if !(direct || through_alias) {
            continue;
        }
        if selection.exclude.iter().any(|p| wildcard(p, name)) {
            continue;
        }
        selected.insert(
            name.to_string(),
            SourceIndex {
                name: name.to_string(),
                primaries,
            },
        );
    }
    Ok(selected.into_values().collect())
}

/// Documents in `index` (top-level documents, not nested ones).
pub async fn count(source: &SearchClient, index: &str) -> Result<u64, JobFailure> {
    let body = source
        .expect(
            Method::GET,
            &format!("/{}/_count", encode_path_segment(index)),
            None,
        )
        .await?;
    Ok(body["count"].as_u64().unwrap_or(0))
}

/// Whether `index` exists on `cluster`.
pub async fn exists(cluster: &SearchClient, index: &str) -> Result<bool, JobFailure> {
    let answer = cluster
        .call(
            Method::HEAD,
            &format!("/{}", encode_path_segment(index)),
            None,
        )
        .await?;
    match answer.status.as_u16() {
        200 => Ok(true),
        404 => Ok(false),
        _ => Err(cluster.refused(&Method::HEAD, &format!("/{index}"), &answer)),
    }
}

/// What creating one target index found.
#[derive(Debug, Clone, Default)]
pub struct MetadataOutcome {
    /// Non-fatal findings.
    pub warnings: Vec<String>,
    /// Whether the index existed and was reused.
    pub reused: bool,
}

/// Creates `index` on the target from the source's metadata, or reuses it
/// (adding the aliases) when it exists and `spec.reuse_existing`.
pub async fn copy_index(
    source: &SearchClient,
    target: &SearchClient,
    index: &str,
    spec: &MetadataSpec,
    rewrite: &TypeRewrite,
) -> Result<MetadataOutcome, JobFailure> {
    let path = format!("/{}", encode_path_segment(index));
    let described = source
        .expect(Method::GET, &format!("{path}?flat_settings=true"), None)
        .await?;
    let described = described
        .get(index)
        .cloned()
        .or_else(|| {
            described
                .as_object()
                .and_then(|o| o.values().next().cloned())
        })
        .unwrap_or_default();
    let mut outcome = MetadataOutcome::default();
    let aliases = described["aliases"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if exists(target, index).await? {
        outcome.reused = true;
        if !spec.skip_aliases && !aliases.is_empty() {
            let actions: Vec<Value> = aliases
                .iter()
                .map(|(alias, props)| {
                    let mut add = props.as_object().cloned().unwrap_or_default();
                    add.insert("index".into(), json!(index));
                    add.insert("alias".into(), json!(alias));
                    json!({ "add": add })
                })
                .collect();
            target
                .expect(
                    Method::POST,
                    "/_aliases",
                    Some(&json!({ "actions": actions })),
                )
                .await
                .map_err(|f| f.with("index", index))?;
        }
        return Ok(outcome);
    }

    let mut body = Map::new();
    let mut settings = Map::new();
    if !spec.skip_settings {
        let flat = described
            .pointer("/settings")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (key, value) in flat {
            if portable(&key, &spec.excluded_settings) {
                settings.insert(key, value);
            }
        }
    }
    for (key, value) in &spec.settings_overrides {
        let key = if key.starts_with("index.") {
            key.clone()
        } else {
            format!("index.{key}")
        };
        settings.insert(key, json!(value));
    }
    if !spec.skip_mappings {
        let mut mappings = described["mappings"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        rewrite_mappings(&mut mappings, target, rewrite, &mut outcome.warnings)
            .map_err(|f| f.with("index", index))?;
        if !mappings.is_empty() {
            body.insert("mappings".into(), Value::Object(mappings));
        }
    }
    if !spec.skip_aliases && !aliases.is_empty() {
        body.insert("aliases".into(), Value::Object(aliases));
    }
    // Settings unknown to the target are dropped one by one, with a
    // warning: the list differs between every pair of versions.
    for _ in 0..20 {
        let mut attempt = body.clone();
        attempt.insert("settings".into(), Value::Object(settings.clone()));
        let answer = target
            .call(Method::PUT, &path, Some(&Value::Object(attempt)))
            .await?;
        if answer.ok() {
            return Ok(outcome);
        }
        let reason = answer.reason();
        if let Some(setting) = unknown_setting(&reason)
            && settings.remove(&setting).is_some()
        {
            outcome.warnings.push(format!(
                "setting {setting} dropped: unknown to the target ({})",
                target.version.number
            ));
            continue;
        }
        let reason_code = if reason.contains("mapp") {
            codes::MAPPING_REJECTED
        } else {
            codes::INDEX_CREATION_FAILED
        };
        let mut failure = target.refused(&Method::PUT, &path, &answer);
        failure.reason = reason_code.to_string();
        return Err(failure.with("index", index));
    }
    Err(
        JobFailure::permanent(codes::INDEX_CREATION_FAILED, "too many settings refused")
            .with("index", index),
    )
}

/// Whether the flat setting `key` may be copied.
fn portable(key: &str, excluded: &[String]) -> bool {
    let matches = |pattern: &str| {
        wildcard(pattern, key)
            || (!pattern.starts_with("index.") && wildcard(&format!("index.{pattern}"), key))
    };
    !NON_PORTABLE_SETTINGS.iter().any(|p| matches(p)) && !excluded.iter().any(|p| matches(p))
}

/// `index.foo` from "unknown setting [index.foo] please check ...".
fn unknown_setting(reason: &str) -> Option<String> {
    let rest = &reason[reason.find("unknown setting [")? + "unknown setting [".len()..];
    Some(rest[..rest.find(']')?].to_string())
}

/// Rewrites a mapping for the target (the rule itself is
/// [`tandem_es::mapping_for_target`]): under `Auto`, typed mappings
/// (Elasticsearch 6 and older) lose their type on typeless targets and
/// typeless ones gain the task's type on typed targets; `Strip` only
/// removes types; `None` copies the mapping as it is. A `_default_`
/// mapping is never copied (7+ refuses it, 6.x deprecates it).
fn rewrite_mappings(
    mappings: &mut Map<String, Value>,
    target: &SearchClient,
    rewrite: &TypeRewrite,
    warnings: &mut Vec<String>,
) -> Result<(), JobFailure> {
    mappings.remove("_default_");
    let typeless = match rewrite.mode {
        super::TypeRewriteMode::None => return Ok(()),
        super::TypeRewriteMode::Strip => true,
        super::TypeRewriteMode::Auto => !target.typed(),
    };
    let wrap_type = rewrite.target_type(&target.version.es());
    match tandem_es::mapping_for_target(mappings, typeless, Some(wrap_type)) {
        Ok(tandem_es::MappingChange::Unchanged) => {}
        Ok(tandem_es::MappingChange::TypeRemoved(ty)) => {
            warnings.push(format!("mapping type {ty:?} removed"))
        }
        Ok(tandem_es::MappingChange::WrappedIn(ty)) => {
            warnings.push(format!("mapping wrapped in type {ty:?}"))
        }
        Ok(tandem_es::MappingChange::Renamed { from, to }) => warnings.push(format!(
            "mapping type {from:?} renamed {to:?} (the target refuses names starting with `_`)"
        )),
        Err(tandem_es::MultipleMappingTypes { types }) => {
            return Err(JobFailure::permanent(
                codes::MULTIPLE_MAPPING_TYPES,
                format!(
                    "the index has several mapping types ({}); a typeless target holds one",
                    types.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_index_patterns() {
        assert!(wildcard("*", "logs"));
        assert!(wildcard("logs-*", "logs-2024"));
        assert!(!wildcard("logs-*", "metrics"));
        assert!(wildcard("a*c*e", "abcde"));
        assert!(!wildcard("a*c*e", "abcdf"));
        assert!(wildcard("exact", "exact"));
    }

    #[test]
    fn non_portable_settings_are_dropped() {
        assert!(!portable("index.uuid", &[]));
        assert!(!portable("index.version.created", &[]));
        assert!(!portable("index.routing.allocation.require._name", &[]));
        assert!(portable("index.number_of_shards", &[]));
        assert!(!portable(
            "index.refresh_interval",
            &["refresh_interval".into()]
        ));
        assert!(!portable("index.analysis.x", &["index.analysis.*".into()]));
    }

    #[test]
    fn unknown_setting_names_are_found_in_reasons() {
        assert_eq!(
            unknown_setting("unknown setting [index.foo.bar] please check that any required plugins are installed").as_deref(),
            Some("index.foo.bar")
        );
        assert_eq!(unknown_setting("something else"), None);
    }
}
