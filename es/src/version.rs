//! Cluster distribution and version, from the `GET /` banner, and the
//! version-dependent facts both planes need.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which search engine a cluster runs. Serialised in lowercase, as
/// `GET /` spells `version.distribution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Elasticsearch.
    Elasticsearch,
    /// OpenSearch (forked from Elasticsearch 7.10; typeless like 7.x).
    OpenSearch,
}

impl Distribution {
    /// `elasticsearch` or `opensearch` (stored names, metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Distribution::Elasticsearch => "elasticsearch",
            Distribution::OpenSearch => "opensearch",
        }
    }

    /// `Elasticsearch` or `OpenSearch`, for messages.
    pub fn display_name(self) -> &'static str {
        match self {
            Distribution::Elasticsearch => "Elasticsearch",
            Distribution::OpenSearch => "OpenSearch",
        }
    }
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

    /// The version of a cluster the gateway can replicate, from the body of
    /// `GET /` (see [`RootInfo::parse`]); Elasticsearch before 5.0 is
    /// refused.
    pub fn from_root_response(root: &Value) -> Result<Self, VersionError> {
        let parsed = RootInfo::parse(root)?.version;
        if parsed.distribution == Distribution::Elasticsearch && parsed.major < 5 {
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

    /// Whether searches may sort on `_id`: not on Elasticsearch 8+, where
    /// `indices.id_field_data.enabled` is off by default (sort on
    /// `_shard_doc` within a point in time instead).
    pub fn sorts_on_id(&self) -> bool {
        !(self.distribution == Distribution::Elasticsearch && self.major >= 8)
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

/// What the `GET /` banner says about a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootInfo {
    /// Distribution and `major.minor`.
    pub version: ClusterVersion,
    /// Patch version (0 when absent).
    pub patch: u32,
    /// `version.number` as reported, e.g. `7.17.29` or `8.0.0-rc1`.
    pub number: String,
    /// `version.lucene_version` (empty when absent).
    pub lucene_version: String,
    /// `cluster_name` (empty when absent).
    pub cluster_name: String,
    /// `cluster_uuid`; empty when absent or `_na_` (what a node without an
    /// elected master reports).
    pub cluster_uuid: String,
}

impl RootInfo {
    /// Parses the body of `GET /`:
    /// `{"cluster_name":..,"cluster_uuid":..,"version":{"number":"7.17.9","distribution":"opensearch"?,"lucene_version":..},"tagline":..}`.
    ///
    /// OpenSearch is recognised by `version.distribution` (or, failing
    /// that, its tagline), including in the 7.10.2 compatibility mode where
    /// it reports `number: 7.10.2`. Any version is accepted here; callers
    /// decide what they support.
    pub fn parse(root: &Value) -> Result<RootInfo, VersionError> {
        let version = root.get("version");
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
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
        let core = number.split(['-', '+']).next().unwrap_or_default();
        let mut parts = core.split('.');
        let major = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let minor = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let uuid = text(root.get("cluster_uuid"));
        Ok(RootInfo {
            version: ClusterVersion {
                distribution: if is_opensearch {
                    Distribution::OpenSearch
                } else {
                    Distribution::Elasticsearch
                },
                major,
                minor,
            },
            patch,
            number: number.to_owned(),
            lucene_version: text(version.and_then(|v| v.get("lucene_version"))),
            cluster_name: text(root.get("cluster_name")),
            cluster_uuid: if uuid == "_na_" { String::new() } else { uuid },
        })
    }
}

impl fmt::Display for ClusterVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}.{}",
            self.distribution.display_name(),
            self.major,
            self.minor
        )
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
    fn the_banner_gives_names_patch_and_uuid() {
        let root = json!({"cluster_name": "c", "cluster_uuid": "u1",
            "version": {"number": "7.17.29", "lucene_version": "8.11.3"}});
        let info = RootInfo::parse(&root).unwrap();
        assert_eq!(info.version, ClusterVersion::elasticsearch(7, 17));
        assert_eq!((info.patch, info.number.as_str()), (29, "7.17.29"));
        assert_eq!(info.lucene_version, "8.11.3");
        assert_eq!(
            (info.cluster_name.as_str(), info.cluster_uuid.as_str()),
            ("c", "u1")
        );

        let info = RootInfo::parse(&json!({"cluster_uuid": "_na_",
            "version": {"distribution": "opensearch", "number": "2.19.1"}}))
        .unwrap();
        assert_eq!(info.version, ClusterVersion::opensearch(2, 19));
        assert_eq!(info.cluster_uuid, "");
        assert_eq!(
            RootInfo::parse(&json!({"version": {"number": "8.0.0-rc1"}}))
                .unwrap()
                .patch,
            0
        );
        assert_eq!(
            RootInfo::parse(&json!({"version": {"number": "6.8.23-SNAPSHOT"}}))
                .unwrap()
                .patch,
            23
        );
        // Versions the gateway refuses are still described.
        assert_eq!(
            RootInfo::parse(&json!({"version": {"number": "2.4.6"}}))
                .unwrap()
                .version,
            ClusterVersion::elasticsearch(2, 4)
        );
        assert_eq!(
            RootInfo::parse(&json!({"status": "ok"})),
            Err(VersionError::MissingNumber)
        );
    }

    #[test]
    fn distribution_names() {
        assert_eq!(
            serde_json::to_string(&Distribution::OpenSearch).unwrap(),
            r#""opensearch""#
        );
        assert_eq!(
            serde_json::from_str::<Distribution>(r#""elasticsearch""#).unwrap(),
            Distribution::Elasticsearch
        );
        assert_eq!(Distribution::OpenSearch.as_str(), "opensearch");
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
    fn sorting_on_id_ends_with_elasticsearch_8() {
        assert!(ClusterVersion::elasticsearch(7, 17).sorts_on_id());
        assert!(ClusterVersion::opensearch(3, 8).sorts_on_id());
        assert!(!ClusterVersion::elasticsearch(8, 19).sorts_on_id());
        assert!(!ClusterVersion::elasticsearch(9, 5).sorts_on_id());
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
