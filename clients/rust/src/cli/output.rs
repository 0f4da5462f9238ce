//! Rendering results as aligned tables (for people) or JSON (for scripts).
//!
//! JSON uses the proto field names; enums are their names without the
//! type prefix (`"ELASTICSEARCH"`, `"GREEN"`), times RFC 3339, spans in
//! seconds. Secrets are never in a response, so never in the output.

use clap::ValueEnum;
use serde_json::{Value, json};
use tandem_client::prost_types;
use tandem_client::v1::{Cluster, ProbeResult};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
}

/// One cluster, with its last probe.
pub fn cluster(cluster: &Cluster, output: Output) {
    match output {
        Output::Json => print_json(&cluster_json(cluster)),
        Output::Table => {
            let credentials = cluster.credentials.clone().unwrap_or_default();
            let mut rows = vec![
                ("id", or_dash(&cluster.id)),
                ("name", cluster.name.clone()),
                ("description", or_dash(&cluster.description)),
                ("endpoints", cluster.endpoints.join(", ")),
                ("labels", labels(cluster)),
                (
                    "credentials",
                    match credentials.method() {
                        tandem_client::v1::AuthMethod::Basic => format!(
                            "basic, user {:?}, password {}",
                            credentials.username,
                            if credentials.secret_set {
                                "set"
                            } else {
                                "not set"
                            }
                        ),
                        tandem_client::v1::AuthMethod::ApiKey => format!(
                            "api key {}",
                            if credentials.secret_set {
                                "set"
                            } else {
                                "not set"
                            }
                        ),
                        _ => "none".into(),
                    },
                ),
                ("created", time(cluster.created_at.as_ref())),
                ("updated", time(cluster.updated_at.as_ref())),
            ];
            let Some(probe) = &cluster.last_probe else {
                rows.push(("last probe", "never".into()));
                print_rows(&rows);
                return;
            };
            rows.extend(probe_rows(probe));
            print_rows(&rows);
            print_nodes(probe);
        }
    }
}

/// A list of clusters.
pub fn clusters(clusters: &[Cluster], output: Output) {
    match output {
        Output::Json => print_json(&Value::Array(clusters.iter().map(cluster_json).collect())),
        Output::Table => {
            let header = [
                "NAME",
                "ID",
                "DISTRIBUTION",
                "VERSION",
                "HEALTH",
                "NODES",
                "PROBE",
                "ENDPOINTS",
            ];
            let rows: Vec<Vec<String>> = clusters
                .iter()
                .map(|c| {
                    let probe = c.last_probe.clone().unwrap_or_default();
                    let version = probe.version.clone().unwrap_or_default();
                    vec![
                        c.name.clone(),
                        c.id.clone(),
                        enum_name(version.distribution().as_str_name()),
                        or_dash(&version.number),
                        enum_name(probe.health().as_str_name()),
                        probe.number_of_nodes.to_string(),
                        probe_state(&probe, c.last_probe.is_some()),
                        c.endpoints.join(","),
                    ]
                })
                .collect();
            print_table(&header, &rows);
        }
    }
}

/// The result of a probe.
pub fn probe(probe: &ProbeResult, output: Output) {
    match output {
        Output::Json => print_json(&probe_json(probe)),
        Output::Table => {
            print_rows(&probe_rows(probe));
            print_nodes(probe);
        }
    }
}

/// A deleted cluster.
pub fn deleted(id: &str, output: Output) {
    match output {
        Output::Json => print_json(&json!({ "deleted": id })),
        Output::Table => println!("deleted cluster {id}"),
    }
}

/// The token of the next page, when only one page was asked for. On
/// stderr, so that stdout stays one JSON document or one table.
pub fn next_page(token: &str) {
    eprintln!("more results: --page-token {token}");
}

fn probe_state(probe: &ProbeResult, probed: bool) -> String {
    match (&probe.error, probed) {
        (_, false) => "never".into(),
        (Some(error), _) => error.reason.clone(),
        (None, true) if probe.warnings.is_empty() => "ok".into(),
        (None, true) => format!("ok ({} warnings)", probe.warnings.len()),
    }
}

fn probe_rows(probe: &ProbeResult) -> Vec<(&'static str, String)> {
    let version = probe.version.clone().unwrap_or_default();
    let mut rows = vec![
        ("probed", time(probe.probed_at.as_ref())),
        ("probe", probe_state(probe, true)),
        ("endpoint", or_dash(&probe.endpoint)),
        ("reachable", probe.reachable.to_string()),
        ("credentials valid", probe.credentials_valid.to_string()),
        (
            "version",
            if version.number.is_empty() {
                "-".into()
            } else {
                format!(
                    "{} {} (lucene {})",
                    enum_name(version.distribution().as_str_name()),
                    version.number,
                    or_dash(&version.lucene_version)
                )
            },
        ),
        ("cluster name", or_dash(&probe.cluster_name)),
        ("cluster uuid", or_dash(&probe.cluster_uuid)),
        ("health", enum_name(probe.health().as_str_name())),
        (
            "nodes",
            format!(
                "{} ({} data)",
                probe.number_of_nodes, probe.number_of_data_nodes
            ),
        ),
        (
            "latency",
            probe
                .latency
                .as_ref()
                .map(|d| format!("{:.1} ms", seconds(d) * 1000.0))
                .unwrap_or_else(|| "-".into()),
        ),
    ];
    if let Some(error) = &probe.error {
        rows.push(("error", format!("{}: {}", error.reason, error.message)));
    }
    for warning in &probe.warnings {
        rows.push(("warning", warning.clone()));
    }
    rows
}

fn print_nodes(probe: &ProbeResult) {
    if probe.nodes.is_empty() {
        return;
    }
    println!();
    let rows: Vec<Vec<String>> = probe
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.node_id.clone(),
                n.http_address.clone(),
                n.version.clone(),
                n.roles.join(","),
            ]
        })
        .collect();
    print_table(&["NODE", "ID", "HTTP ADDRESS", "VERSION", "ROLES"], &rows);
}

fn print_rows(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in rows {
        println!("{key:<width$}  {value}");
    }
}

fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

fn labels(cluster: &Cluster) -> String {
    let mut pairs: Vec<String> = cluster
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        "-".into()
    } else {
        pairs.join(", ")
    }
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.to_string()
    }
}

/// `DISTRIBUTION_ELASTICSEARCH` -> `ELASTICSEARCH`; `*_UNSPECIFIED` -> `-`.
fn enum_name(name: &str) -> String {
    if name.ends_with("_UNSPECIFIED") {
        return "-".into();
    }
    let prefixes = [
        "DISTRIBUTION_",
        "CLUSTER_HEALTH_",
        "AUTH_METHOD_",
        "OVER_LIMIT_POLICY_",
    ];
    prefixes
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name)
        .to_string()
}

fn time(at: Option<&prost_types::Timestamp>) -> String {
    at.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| "-".into())
}

fn seconds(d: &prost_types::Duration) -> f64 {
    d.seconds as f64 + f64::from(d.nanos) / 1e9
}

fn time_json(at: Option<&prost_types::Timestamp>) -> Value {
    match time(at).as_str() {
        "-" => Value::Null,
        text => Value::String(text.to_string()),
    }
}

fn cluster_json(cluster: &Cluster) -> Value {
    let credentials = cluster.credentials.clone().unwrap_or_default();
    let tls = cluster.tls.clone().unwrap_or_default();
    let discovery = cluster.node_discovery.unwrap_or_default();
    let limits = cluster.limits.unwrap_or_default();
    json!({
        "id": cluster.id,
        "name": cluster.name,
        "description": cluster.description,
        "labels": cluster.labels,
        "endpoints": cluster.endpoints,
        "credentials": {
            "method": enum_name(credentials.method().as_str_name()),
            "username": credentials.username,
            "secret_set": credentials.secret_set,
            "secret_updated_at": time_json(credentials.secret_updated_at.as_ref()),
        },
        "tls": {
            "ca_certificates_pem": tls.ca_certificates_pem,
            "server_name": tls.server_name,
            "insecure_skip_verify": tls.insecure_skip_verify,
            "client_certificate_pem": tls.client_certificate_pem,
            "client_private_key_set": tls.client_private_key_set,
        },
        "node_discovery": {
            "enabled": discovery.enabled,
            "refresh_interval_seconds": discovery.refresh_interval.as_ref().map(seconds),
        },
        "limits": {
            "max_qps_per_node": limits.max_qps_per_node,
            "max_bytes_per_sec_per_node": limits.max_bytes_per_sec_per_node,
            "max_connections_per_node": limits.max_connections_per_node,
            "over_limit": enum_name(limits.over_limit().as_str_name()),
            "max_wait_seconds": limits.max_wait.as_ref().map(seconds),
        },
        "last_probe": cluster.last_probe.as_ref().map(probe_json),
        "created_at": time_json(cluster.created_at.as_ref()),
        "updated_at": time_json(cluster.updated_at.as_ref()),
    })
}

fn probe_json(probe: &ProbeResult) -> Value {
    json!({
        "reachable": probe.reachable,
        "credentials_valid": probe.credentials_valid,
        "version": probe.version.as_ref().map(|v| json!({
            "distribution": enum_name(v.distribution().as_str_name()),
            "number": v.number,
            "major": v.major,
            "minor": v.minor,
            "patch": v.patch,
            "lucene_version": v.lucene_version,
        })),
        "cluster_name": probe.cluster_name,
        "cluster_uuid": probe.cluster_uuid,
        "health": enum_name(probe.health().as_str_name()),
        "number_of_nodes": probe.number_of_nodes,
        "number_of_data_nodes": probe.number_of_data_nodes,
        "nodes": probe.nodes.iter().map(|n| json!({
            "node_id": n.node_id,
            "name": n.name,
            "http_address": n.http_address,
            "version": n.version,
            "roles": n.roles,
        })).collect::<Vec<_>>(),
        "warnings": probe.warnings,
        "endpoint": probe.endpoint,
        "latency_seconds": probe.latency.as_ref().map(seconds),
        "probed_at": time_json(probe.probed_at.as_ref()),
        "error": probe.error.as_ref().map(|e| json!({
            "reason": e.reason,
            "message": e.message,
            "metadata": e.metadata,
        })),
    })
}
