//! Cluster distribution and version, from the `GET /` banner, and the
//! version-dependent facts the replayer needs.

use std::fmt;

use serde_json::Value;

/// Which search engine a cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Distribution {
    /// Elasticsearch.
    Elasticsearch,
    /// OpenSearch (forked from Elasticsearch 7.10; typeless like 7.x).
    OpenSearch,
}

/// A cluster's distribution and `major.minor` version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClusterVersion {
    /// Elasticsearch or OpenSearch.
    pub distribution: Distribution,
    /// Major version (OpenSearch numbering for OpenSearch).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

/// Why a `GET /` response could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// No `version.number` string.
    #[error("the root response has no [version.number]")]
    MissingNumber,
    /// `version.number` is not `MAJOR.MINOR[.PATCH][-suffix]`.
    #[error("cannot parse version number [{0}]")]
    BadNumber(String),
    /// Elasticsearch before 5.0 is not supported.
    #[error("{0} is not supported (Elasticsearch 5.0 or later, or OpenSearch, is required)")]
    Unsupported(ClusterVersion),
}

impl ClusterVersion {
    /// An Elasticsearch version.
    pub const fn elasticsearch(major: u32, minor: u32) -> Self {
        Self {
            distribution: Distribution::Elasticsearch,
            major,
            minor,
        }
    }

    /// An OpenSearch version.
    pub const fn opensearch(major: u32, minor: u32) -> Self {
        Self {
            distribution: Distribution::OpenSearch,
            major,
            minor,
        }
    }

    /// Parses the body of `GET /`:
    /// `{"version":{"number":"7.17.9","distribution":"opensearch"?}, "tagline":..}`.
    ///
    /// OpenSearch is recognised by `version.distribution` (or, failing
    /// that, its tagline), including in the 7.10.2 compatibility mode where
    /// it reports `number: 7.10.2`.
    pub fn from_root_response(root: &Value) -> Result<Self, VersionError> {
        let version = root.get("version");
        let number = version
            .and_then(|v| v.get("number"))
            .and_then(Value::as_str)
            .ok_or(VersionError::MissingNumber)?;
        let is_opensearch = version
            .and_then(|v| v.get("distribution"))
            .and_then(Value::as_str)
            .is_some_and(|d| d.eq_ignore_ascii_case("opensearch"))
            || root
                .get("tagline")
                .and_then(Value::as_str)
                .is_some_and(|t| t.contains("OpenSearch"));
        let bad = || VersionError::BadNumber(number.to_owned());
        let mut parts = number.split(['.', '-']);
        let major = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let minor = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let parsed = Self {
            distribution: if is_opensearch {
                Distribution::OpenSearch
            } else {
                Distribution::Elasticsearch
            },
            major,
            minor,
        };
        if parsed.distribution == Distribution::Elasticsearch && major < 5 {
            return Err(VersionError::Unsupported(parsed));
        }
        Ok(parsed)
    }

    /// Whether the cluster has mapping types (Elasticsearch 5.x and 6.x):
    /// bulk lines carry `_type`, mappings are nested under a type name.
    pub fn has_mapping_types(&self) -> bool {
        self.distribution == Distribution::Elasticsearch && self.major < 7
    }

    /// Whether bulk metadata uses the underscored spelling (`_routing`,
    /// `_version`, `_version_type`): Elasticsearch 5.x.
    pub fn uses_underscored_bulk_params(&self) -> bool {
        self.distribution == Distribution::Elasticsearch && self.major < 6
    }

    /// The type to use for a document whose type is unknown: `_doc` on
    /// 6.x (the recommended single type, and what the typeless API maps to
    /// on 7.x), `doc` on 5.x (names starting with `_` are reserved there),
    /// `None` on typeless clusters.
    pub fn default_doc_type(&self) -> Option<&'static str> {
        if !self.has_mapping_types() {
            None
        } else if self.uses_underscored_bulk_params() {
            Some("doc")
        } else {
            Some("_doc")
        }
    }

    /// Whether point in time plus `search_after` is available for reading
    /// a whole index: Elasticsearch 7.10+, OpenSearch 2.4+.
    pub fn supports_pit(&self) -> bool {
        match self.distribution {
            Distribution::Elasticsearch => (self.major, self.minor) >= (7, 10),
            Distribution::OpenSearch => (self.major, self.minor) >= (2, 4),
        }
    }
}

impl fmt::Display for ClusterVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.distribution {
            Distribution::Elasticsearch => "Elasticsearch",
            Distribution::OpenSearch => "OpenSearch",
        };
        write!(f, "{name} {}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_elasticsearch_banners() {
        let root = json!({"name": "n1", "cluster_name": "c", "version": {"number": "7.17.9",
            "build_flavor": "default", "lucene_version": "8.11.1"}, "tagline": "You Know, for Search"});
        assert_eq!(
            ClusterVersion::from_root_response(&root).unwrap(),
            ClusterVersion::elasticsearch(7, 17)
        );
        let root = json!({"version": {"number": "8.0.0-SNAPSHOT"}});
        assert_eq!(
            ClusterVersion::from_root_response(&root).unwrap(),
            ClusterVersion::elasticsearch(8, 0)
        );
        let root = json!({"version": {"number": "5.6.16"}});
        let v = ClusterVersion::from_root_response(&root).unwrap();
        assert_eq!(v, ClusterVersion::elasticsearch(5, 6));
        assert_eq!(v.to_string(), "Elasticsearch 5.6");
    }

    #[test]
    fn recognises_opensearch_even_in_compatibility_mode() {
        let root = json!({"version": {"distribution": "opensearch", "number": "2.11.0"},
            "tagline": "The OpenSearch Project: https://opensearch.org/"});
        assert_eq!(
            ClusterVersion::from_root_response(&root).unwrap(),
            ClusterVersion::opensearch(2, 11)
        );
        let compat = json!({"version": {"number": "7.10.2"},
            "tagline": "The OpenSearch Project: https://opensearch.org/"});
        let v = ClusterVersion::from_root_response(&compat).unwrap();
        assert_eq!(v.distribution, Distribution::OpenSearch);
        assert!(!v.has_mapping_types());
    }

    #[test]
    fn rejects_bad_and_old_banners() {
        assert_eq!(
            ClusterVersion::from_root_response(&json!({})),
            Err(VersionError::MissingNumber)
        );
        assert_eq!(
            ClusterVersion::from_root_response(&json!({"version": {"number": "seven"}})),
            Err(VersionError::BadNumber("seven".into()))
        );
        assert_eq!(
            ClusterVersion::from_root_response(&json!({"version": {"number": "7"}})),
            Err(VersionError::BadNumber("7".into()))
        );
        assert!(matches!(
            ClusterVersion::from_root_response(&json!({"version": {"number": "2.4.6"}})),
            Err(VersionError::Unsupported(_))
        ));
    }

    #[test]
    fn version_facts() {
        let es5 = ClusterVersion::elasticsearch(5, 6);
        let es6 = ClusterVersion::elasticsearch(6, 8);
        let es7 = ClusterVersion::elasticsearch(7, 17);
        let os1 = ClusterVersion::opensearch(1, 3);
        assert!(es5.has_mapping_types() && es6.has_mapping_types());
        assert!(!es7.has_mapping_types() && !os1.has_mapping_types());
        assert!(es5.uses_underscored_bulk_params() && !es6.uses_underscored_bulk_params());
        assert_eq!(es5.default_doc_type(), Some("doc"));
        assert_eq!(es6.default_doc_type(), Some("_doc"));
        assert_eq!(es7.default_doc_type(), None);
        assert_eq!(os1.default_doc_type(), None);
    }

    #[test]
    fn point_in_time_starts_at_7_10_and_opensearch_2_4() {
        assert!(!ClusterVersion::elasticsearch(7, 9).supports_pit());
        assert!(ClusterVersion::elasticsearch(7, 10).supports_pit());
        assert!(ClusterVersion::elasticsearch(8, 0).supports_pit());
        assert!(!ClusterVersion::elasticsearch(6, 8).supports_pit());
        assert!(!ClusterVersion::opensearch(2, 3).supports_pit());
        assert!(ClusterVersion::opensearch(2, 4).supports_pit());
        assert!(ClusterVersion::opensearch(3, 0).supports_pit());
        assert!(!ClusterVersion::opensearch(1, 3).supports_pit());
    }
}
