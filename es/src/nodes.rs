//! The nodes of a cluster, from `GET /_nodes/http`: what node discovery
//! connects to and what a cluster's registration shows.

use serde_json::Value;

/// One node that publishes an HTTP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpNode {
    /// Node id (the key under `nodes`).
    pub node_id: String,
    /// Node name (empty when absent).
    pub name: String,
    /// The node's version (empty when absent).
    pub version: String,
    /// Node roles, as reported.
    pub roles: Vec<String>,
    /// `host:port` (or `[v6]:port`) from `http.publish_address`, without
    /// the `hostname/` prefix some nodes put before the address.
    pub address: String,
}

impl HttpNode {
    /// Host and port to connect to (brackets of an IPv6 host removed);
    /// `None` when the address has no valid port.
    pub fn host_port(&self) -> Option<(String, u16)> {
        let (host, port) = self.address.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some((host.to_owned(), port.parse().ok()?))
    }
}

/// Every node of a `_nodes/http` answer with an HTTP publish address,
/// ordered by name then id. A node publishing `es-2.local/10.0.0.6:9201`
/// is reached at `10.0.0.6:9201`: the address is what is reachable.
pub fn parse_http_nodes(body: &Value) -> Vec<HttpNode> {
    let Some(nodes) = body.get("nodes").and_then(Value::as_object) else {
        return Vec::new();
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut list: Vec<HttpNode> = nodes
        .iter()
        .filter_map(|(id, node)| {
            let published = node.pointer("/http/publish_address")?.as_str()?;
            let address = published.rsplit('/').next().unwrap_or(published);
            Some(HttpNode {
                node_id: id.clone(),
                name: text(&node["name"]),
                version: text(&node["version"]),
                roles: node["roles"]
                    .as_array()
                    .map(|roles| {
                        roles
                            .iter()
                            .filter_map(|r| r.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                address: address.to_owned(),
            })
        })
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.node_id.cmp(&b.node_id)));
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn publish_addresses_of_every_shape() {
        let body = json!({"nodes": {
            "b": {"name": "n2", "version": "7.17.1", "roles": ["data"],
                  "http": {"publish_address": "es-2.local/10.0.0.6:9201"}},
            "a": {"name": "n1", "version": "7.17.1", "roles": ["master", "data"],
                  "http": {"publish_address": "10.0.0.5:9200"}},
            "c": {"name": "n3", "http": {"publish_address": "[::1]:9202"}},
            "d": {"name": "no http section"}
        }});
        let nodes = parse_http_nodes(&body);
        let addresses: Vec<_> = nodes.iter().map(|n| n.address.as_str()).collect();
        assert_eq!(addresses, ["10.0.0.5:9200", "10.0.0.6:9201", "[::1]:9202"]);
        assert_eq!(nodes[0].roles, ["master", "data"]);
        assert_eq!(
            (nodes[0].node_id.as_str(), nodes[0].name.as_str()),
            ("a", "n1")
        );
        let hosts: Vec<_> = nodes.iter().filter_map(HttpNode::host_port).collect();
        assert_eq!(
            hosts,
            [
                ("10.0.0.5".to_owned(), 9200),
                ("10.0.0.6".to_owned(), 9201),
                ("::1".to_owned(), 9202)
            ]
        );
        assert!(parse_http_nodes(&json!({})).is_empty());
    }

    #[test]
    fn an_address_without_a_port_is_not_dialled() {
        let node = HttpNode {
            node_id: "a".into(),
            name: String::new(),
            version: String::new(),
            roles: Vec::new(),
            address: "10.0.0.5".into(),
        };
        assert_eq!(node.host_port(), None);
    }
}
