//! Stored clusters and probe reports as `tandem.v1` messages.
//!
//! This is the only way clusters leave the control plane, and it never
//! copies a secret: `password`, `api_key` and `client_private_key_pem` stay
//! empty; `secret_set` and `client_private_key_set` say whether one is
//! stored.

use std::time::Duration;

use tandem_proto::v1 as pb;

use crate::probe::{Distribution, Health, ProbeReport};
use crate::services::{duration, timestamp};
use crate::store::clusters::{AuthKind, ClusterRecord, ClusterSettings, OverLimit};

/// A stored cluster as returned by the API.
pub(crate) fn cluster(record: &ClusterRecord) -> pb::Cluster {
    pb::Cluster {
        id: record.id.to_string(),
        last_probe: record.last_probe.as_ref().map(probe_result),
        created_at: Some(timestamp(record.created_at)),
        updated_at: Some(timestamp(record.updated_at)),
        ..settings(&record.settings)
    }
}

/// The user-settable part of a cluster (no id, probe or times), as returned
/// by the API; used as is for `validate_only` registrations.
pub(super) fn settings(settings: &ClusterSettings) -> pb::Cluster {
    let credentials = &settings.credentials;
    let tls = &settings.tls;
    let limits = &settings.limits;
    pb::Cluster {
        id: String::new(),
        name: settings.name.clone(),
        description: settings.description.clone(),
        labels: settings
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        endpoints: settings.endpoints.clone(),
        credentials: Some(pb::Credentials {
            method: match credentials.method {
                AuthKind::None => pb::AuthMethod::None,
                AuthKind::Basic => pb::AuthMethod::Basic,
                AuthKind::ApiKey => pb::AuthMethod::ApiKey,
            } as i32,
            username: credentials.username.clone(),
            password: String::new(),
            api_key: String::new(),
            secret_set: credentials.secret_encrypted.is_some(),
            secret_updated_at: credentials.secret_updated_at.map(timestamp),
        }),
        tls: Some(pb::TlsSettings {
            ca_certificates_pem: tls.ca_certificates_pem.clone(),
            server_name: tls.server_name.clone(),
            insecure_skip_verify: tls.insecure_skip_verify,
            client_certificate_pem: tls.client_certificate_pem.clone(),
            client_private_key_pem: String::new(),
            client_private_key_set: tls.client_key_encrypted.is_some(),
        }),
        node_discovery: Some(pb::NodeDiscovery {
            enabled: settings.node_discovery_enabled,
            refresh_interval: millis(settings.node_discovery_refresh_ms),
        }),
        limits: Some(pb::Limits {
            max_qps_per_node: u32::try_from(limits.max_qps_per_node).unwrap_or(u32::MAX),
            max_bytes_per_sec_per_node: u64::try_from(limits.max_bytes_per_sec_per_node)
                .unwrap_or(0),
            max_connections_per_node: u32::try_from(limits.max_connections_per_node)
                .unwrap_or(u32::MAX),
            over_limit: match limits.over_limit {
                OverLimit::Wait => pb::OverLimitPolicy::Wait,
                OverLimit::Reject => pb::OverLimitPolicy::Reject,
            } as i32,
            max_wait: millis(limits.max_wait_ms),
        }),
        last_probe: None,
        created_at: None,
        updated_at: None,
    }
}

/// A probe report as a `ProbeResult`.
pub(super) fn probe_result(report: &ProbeReport) -> pb::ProbeResult {
    pb::ProbeResult {
        reachable: report.reachable,
        credentials_valid: report.credentials_valid,
        version: report.version.as_ref().map(|v| pb::ClusterVersion {
            distribution: distribution(v.distribution) as i32,
            number: v.number.clone(),
            major: v.major,
            minor: v.minor,
            patch: v.patch,
            lucene_version: v.lucene_version.clone(),
        }),
        cluster_name: report.cluster_name.clone(),
        cluster_uuid: report.cluster_uuid.clone(),
        health: match report.health {
            None => pb::ClusterHealth::Unspecified,
            Some(Health::Green) => pb::ClusterHealth::Green,
            Some(Health::Yellow) => pb::ClusterHealth::Yellow,
            Some(Health::Red) => pb::ClusterHealth::Red,
        } as i32,
        number_of_nodes: report.number_of_nodes,
        number_of_data_nodes: report.number_of_data_nodes,
        nodes: report
            .nodes
            .iter()
            .map(|n| pb::NodeInfo {
                node_id: n.node_id.clone(),
                name: n.name.clone(),
                http_address: n.http_address.clone(),
                version: n.version.clone(),
                roles: n.roles.clone(),
            })
            .collect(),
        warnings: report.warnings.clone(),
        endpoint: report.endpoint.clone(),
        // Only an answered request has a round trip.
        latency: report
            .reachable
            .then(|| duration(Duration::from_micros(report.latency_micros))),
        probed_at: Some(timestamp(report.probed_at)),
        error: report.error.as_ref().map(|e| pb::ErrorInfo {
            reason: e.reason.clone(),
            message: e.message.clone(),
            occurred_at: Some(timestamp(report.probed_at)),
            metadata: e
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }),
    }
}

/// The proto distribution of a probed one.
pub(super) fn distribution(d: Distribution) -> pb::Distribution {
    match d {
        Distribution::Elasticsearch => pb::Distribution::Elasticsearch,
        Distribution::OpenSearch => pb::Distribution::Opensearch,
    }
}

/// A stored millisecond span as a Duration; zero stays unset (the default).
fn millis(ms: i64) -> Option<prost_types::Duration> {
    u64::try_from(ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map(|ms| duration(Duration::from_millis(ms)))
}
