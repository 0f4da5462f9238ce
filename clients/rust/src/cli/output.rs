//! Rendering results as aligned tables (for people) or JSON (for scripts).
//!
//! JSON uses the proto field names; enums are their names without the
//! type prefix (`"ELASTICSEARCH"`, `"GREEN"`), times RFC 3339, spans in
//! seconds. Secrets are never in a response, so never in the output.

use clap::ValueEnum;
use serde_json::{Value, json};
use tandem_client::prost_types;
use tandem_client::v1::{Cluster, Gateway, GetQueueStatsResponse, ProbeResult, QueueStats};

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

/// One gateway, with its drain and queue status.
pub fn gateway(gateway: &Gateway, output: Output) {
    match output {
        Output::Json => print_json(&gateway_json(gateway)),
        Output::Table => {
            let drain = gateway.drain.unwrap_or_default();
            let mut rows = vec![
                ("id", gateway.id.clone()),
                ("name", gateway.name.clone()),
                ("labels", pairs(gateway.labels.iter())),
                (
                    "connection",
                    enum_name(gateway.connection_state().as_str_name()),
                ),
                ("connected at", time(gateway.connected_at.as_ref())),
                ("last seen", time(gateway.last_seen_at.as_ref())),
                ("ready", gateway.ready.to_string()),
                ("drain", enum_name(drain.state().as_str_name())),
                (
                    "desired state",
                    format!(
                        "version {} (applied {}{})",
                        gateway.desired_version,
                        gateway.applied_version,
                        if gateway.applied_version >= gateway.desired_version {
                            ", in sync"
                        } else {
                            ", not yet applied"
                        }
                    ),
                ),
                ("tasks", list_or_dash(&gateway.task_ids)),
                ("advertised address", or_dash(&gateway.advertised_address)),
                ("admin address", or_dash(&gateway.admin_address)),
                ("hostname", or_dash(&gateway.hostname)),
                (
                    "version",
                    format!(
                        "{} ({})",
                        or_dash(&gateway.version),
                        or_dash(&gateway.build)
                    ),
                ),
                ("capabilities", list_or_dash(&gateway.capabilities)),
                ("in-flight requests", gateway.in_flight_requests.to_string()),
                (
                    "disk",
                    format!(
                        "{} free of {}",
                        bytes(gateway.disk_free_bytes),
                        bytes(gateway.disk_total_bytes)
                    ),
                ),
                ("started", time(gateway.started_at.as_ref())),
                ("first seen", time(gateway.first_seen_at.as_ref())),
            ];
            if drain.state() != tandem_client::v1::DrainState::Serving {
                rows.push(("drain started", time(drain.started_at.as_ref())));
                rows.push(("drained at", time(drain.drained_at.as_ref())));
                rows.push(("quiet period", span(drain.quiet_period.as_ref())));
                rows.push(("idle for", span(drain.idle_for.as_ref())));
                rows.push((
                    "drain lag",
                    format!(
                        "{} records ({} of paused tasks)",
                        drain.lag_records, drain.lag_records_paused
                    ),
                ));
            }
            match &gateway.queue_stats {
                Some(stats) => rows.extend(queue_rows(stats)),
                None => rows.push(("queues", "no statistics reported".into())),
            }
            print_rows(&rows);
            if !gateway.listeners.is_empty() {
                println!();
                let listeners: Vec<Vec<String>> = gateway
                    .listeners
                    .iter()
                    .map(|l| vec![l.name.clone(), l.address.clone(), l.tls.to_string()])
                    .collect();
                print_table(&["LISTENER", "ADDRESS", "TLS"], &listeners);
            }
        }
    }
}

/// A list of gateways.
pub fn gateways(gateways: &[Gateway], output: Output) {
    match output {
        Output::Json => print_json(&Value::Array(gateways.iter().map(gateway_json).collect())),
        Output::Table => {
            let header = [
                "NAME",
                "ID",
                "CONNECTION",
                "DRAIN",
                "READY",
                "SYNC",
                "LAG",
                "LAST SEEN",
                "VERSION",
                "ADDRESS",
            ];
            let rows: Vec<Vec<String>> = gateways
                .iter()
                .map(|g| {
                    let drain = g.drain.unwrap_or_default();
                    vec![
                        g.name.clone(),
                        g.id.clone(),
                        enum_name(g.connection_state().as_str_name()),
                        enum_name(drain.state().as_str_name()),
                        g.ready.to_string(),
                        format!("{}/{}", g.applied_version, g.desired_version),
                        g.queue_stats
                            .as_ref()
                            .map(|q| q.lag_records.to_string())
                            .unwrap_or_else(|| "-".into()),
                        time(g.last_seen_at.as_ref()),
                        or_dash(&g.version),
                        or_dash(&g.advertised_address),
                    ]
                })
                .collect();
            print_table(&header, &rows);
        }
    }
}

/// A deleted gateway.
pub fn deleted_gateway(id: &str, output: Output) {
    match output {
        Output::Json => print_json(&json!({ "deleted": id })),
        Output::Table => println!("deleted gateway {id}"),
    }
}

/// One line of drain progress.
pub fn drain_progress(gateway: &Gateway) -> String {
    let drain = gateway.drain.unwrap_or_default();
    format!(
        "{}: {}, {} in flight, idle for {}, {} records to replay ({} of paused tasks)",
        gateway.name,
        enum_name(drain.state().as_str_name()),
        drain.in_flight_requests,
        span(drain.idle_for.as_ref()),
        drain.lag_records,
        drain.lag_records_paused
    )
}

/// Queue statistics: fleet, per task with the per-gateway breakdown, per
/// gateway.
pub fn queue_stats(response: &GetQueueStatsResponse, output: Output) {
    match output {
        Output::Json => print_json(&json!({
            "fleet": response.fleet.as_ref().map(queue_stats_json),
            "tasks": response.tasks.iter().map(|t| json!({
                "task_id": t.task_id,
                "total": t.total.as_ref().map(queue_stats_json),
                "gateways": t.gateways.iter().map(|g| json!({
                    "gateway_id": g.gateway_id,
                    "stats": g.stats.as_ref().map(queue_stats_json),
                    "stale": g.stale,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "gateways": response.gateways.iter().map(|g| json!({
                "gateway_id": g.gateway_id,
                "total": g.total.as_ref().map(queue_stats_json),
                "stale": g.stale,
            })).collect::<Vec<_>>(),
            "generated_at": time_json(response.generated_at.as_ref()),
        })),
        Output::Table => {
            let fleet = response.fleet.clone().unwrap_or_default();
            print_rows(&queue_rows(&fleet));
            let header = [
                "TASK",
                "GATEWAY",
                "CONSUMER",
                "LAG",
                "LAG AGE",
                "DEPTH",
                "DEAD LETTERS",
                "REPLAY/S",
                "STALE",
            ];
            let mut rows = Vec::new();
            for task in &response.tasks {
                let total = task.total.clone().unwrap_or_default();
                rows.push(queue_line(&task.task_id, "(all)", &total, false));
                for g in &task.gateways {
                    let stats = g.stats.clone().unwrap_or_default();
                    rows.push(queue_line("", &g.gateway_id, &stats, g.stale));
                }
            }
            for g in &response.gateways {
                let total = g.total.clone().unwrap_or_default();
                rows.push(queue_line("(all)", &g.gateway_id, &total, g.stale));
            }
            if !rows.is_empty() {
                println!();
                print_table(&header, &rows);
            }
        }
    }
}

fn queue_line(task: &str, gateway: &str, stats: &QueueStats, stale: bool) -> Vec<String> {
    vec![
        task.to_string(),
        gateway.to_string(),
        enum_name(stats.consumer_state().as_str_name()),
        stats.lag_records.to_string(),
        span(stats.lag.as_ref()),
        format!("{} ({})", stats.depth_records, bytes(stats.depth_bytes)),
        stats.dead_letters.to_string(),
        format!("{:.1}", stats.replay_records_per_second),
        if stale { "stale".into() } else { String::new() },
    ]
}

fn queue_rows(stats: &QueueStats) -> Vec<(&'static str, String)> {
    vec![
        ("consumer", enum_name(stats.consumer_state().as_str_name())),
        (
            "lag",
            format!(
                "{} records, {} ({})",
                stats.lag_records,
                bytes(stats.lag_bytes),
                span(stats.lag.as_ref())
            ),
        ),
        (
            "depth",
            format!(
                "{} records, {} (oldest {})",
                stats.depth_records,
                bytes(stats.depth_bytes),
                span(stats.oldest_record_age.as_ref())
            ),
        ),
        (
            "rates",
            format!(
                "append {:.1}/s, replay {:.1}/s ({}/s)",
                stats.append_records_per_second,
                stats.replay_records_per_second,
                bytes(stats.replay_bytes_per_second.max(0.0) as u64)
            ),
        ),
        (
            "dead letters",
            format!(
                "{} pending ({} total)",
                stats.dead_letters, stats.dead_letters_total
            ),
        ),
        ("refused writes", stats.writes_refused_total.to_string()),
        ("collected", time(stats.collected_at.as_ref())),
    ]
}

fn gateway_json(gateway: &Gateway) -> Value {
    let drain = gateway.drain.unwrap_or_default();
    json!({
        "id": gateway.id,
        "name": gateway.name,
        "labels": gateway.labels,
        "advertised_address": gateway.advertised_address,
        "admin_address": gateway.admin_address,
        "hostname": gateway.hostname,
        "version": gateway.version,
        "build": gateway.build,
        "capabilities": gateway.capabilities,
        "listeners": gateway.listeners.iter().map(|l| json!({
            "name": l.name,
            "address": l.address,
            "tls": l.tls,
        })).collect::<Vec<_>>(),
        "connection_state": enum_name(gateway.connection_state().as_str_name()),
        "drain": {
            "state": enum_name(drain.state().as_str_name()),
            "started_at": time_json(drain.started_at.as_ref()),
            "drained_at": time_json(drain.drained_at.as_ref()),
            "quiet_period_seconds": drain.quiet_period.as_ref().map(seconds),
            "idle_for_seconds": drain.idle_for.as_ref().map(seconds),
            "in_flight_requests": drain.in_flight_requests,
            "lag_records": drain.lag_records,
            "lag_records_paused": drain.lag_records_paused,
        },
        "ready": gateway.ready,
        "desired_version": gateway.desired_version,
        "applied_version": gateway.applied_version,
        "task_ids": gateway.task_ids,
        "in_flight_requests": gateway.in_flight_requests,
        "queue_stats": gateway.queue_stats.as_ref().map(queue_stats_json),
        "disk_free_bytes": gateway.disk_free_bytes,
        "disk_total_bytes": gateway.disk_total_bytes,
        "started_at": time_json(gateway.started_at.as_ref()),
        "first_seen_at": time_json(gateway.first_seen_at.as_ref()),
        "connected_at": time_json(gateway.connected_at.as_ref()),
        "last_seen_at": time_json(gateway.last_seen_at.as_ref()),
    })
}

fn queue_stats_json(stats: &QueueStats) -> Value {
    json!({
        "depth_records": stats.depth_records,
        "depth_bytes": stats.depth_bytes,
        "oldest_record_age_seconds": stats.oldest_record_age.as_ref().map(seconds),
        "lag_records": stats.lag_records,
        "lag_bytes": stats.lag_bytes,
        "lag_seconds": stats.lag.as_ref().map(seconds),
        "append_records_per_second": stats.append_records_per_second,
        "replay_records_per_second": stats.replay_records_per_second,
        "replay_bytes_per_second": stats.replay_bytes_per_second,
        "dead_letters": stats.dead_letters,
        "dead_letters_total": stats.dead_letters_total,
        "writes_refused_total": stats.writes_refused_total,
        "replay_retries_total": stats.replay_retries_total,
        "first_offset": stats.first_offset,
        "head_offset": stats.head_offset,
        "committed_offset": stats.committed_offset,
        "segments": stats.segments,
        "consumer_state": enum_name(stats.consumer_state().as_str_name()),
        "corruption": stats.corruption.as_ref().map(|c| json!({
            "offset": c.offset,
            "segment": c.segment,
            "segment_position": c.segment_position,
            "next_valid_offset": c.next_valid_offset,
            "detail": c.detail,
            "detected_at": time_json(c.detected_at.as_ref()),
        })),
        "collected_at": time_json(stats.collected_at.as_ref()),
    })
}

pub(crate) fn pairs<'a>(labels: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    let mut pairs: Vec<String> = labels.map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    if pairs.is_empty() {
        "-".into()
    } else {
        pairs.join(", ")
    }
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

/// A span for people: `-` when unset, else seconds with one decimal.
pub(crate) fn span(d: Option<&prost_types::Duration>) -> String {
    d.map(|d| format!("{:.1}s", seconds(d)))
        .unwrap_or_else(|| "-".into())
}

/// A size for people, in binary units.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The token of the next page, when only one page was asked for. On
/// stderr, so that stdout stays one JSON document or one table.
pub fn next_page(token: &str) {
    if !token.is_empty() {
        eprintln!("more results: --page-token {token}");
    }
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

pub(crate) fn print_rows(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in rows {
        println!("{key:<width$}  {value}");
    }
}

pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
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

pub(crate) fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

fn labels(cluster: &Cluster) -> String {
    pairs(cluster.labels.iter())
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.to_string()
    }
}

/// `DISTRIBUTION_ELASTICSEARCH` -> `ELASTICSEARCH`; `*_UNSPECIFIED` -> `-`.
pub(crate) fn enum_name(name: &str) -> String {
    if name.ends_with("_UNSPECIFIED") {
        return "-".into();
    }
    let prefixes = [
        "DISTRIBUTION_",
        "CLUSTER_HEALTH_",
        "AUTH_METHOD_",
        "OVER_LIMIT_POLICY_",
        "GATEWAY_CONNECTION_STATE_",
        "DRAIN_STATE_",
        "CONSUMER_STATE_",
        "TASK_STATE_",
        "REPLICATION_DIRECTION_",
        "TASK_MODE_",
        "TASK_HEALTH_",
        "ROLE_SWAP_PHASE_",
        "ROLE_SWAP_KIND_",
    ];
    prefixes
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name)
        .to_string()
}

pub(crate) fn time(at: Option<&prost_types::Timestamp>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_enum_names_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(enum_name("GATEWAY_CONNECTION_STATE_CONNECTED"), "CONNECTED");
        assert_eq!(enum_name("CONSUMER_STATE_BACKING_OFF"), "BACKING_OFF");
        assert_eq!(enum_name("DRAIN_STATE_UNSPECIFIED"), "-");
    }
}
