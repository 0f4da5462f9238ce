//! Which snapshots a target can restore: the version rule of
//! snapshot-based backfill, checked before anything is written.
//!
//! Two versions matter. The snapshot is *written* by the source's version:
//! a target never reads a snapshot written by a newer version of its own
//! distribution, an Elasticsearch target never reads one written by
//! OpenSearch, and OpenSearch reads those of Elasticsearch up to 7.10.2
//! only (its fork point). Each index was *created* by some version (the
//! setting `index.version.created`): a target reads indices created by its
//! own major and the previous one, where Elasticsearch 6.x counts as
//! OpenSearch's "major 0" and Elasticsearch 7.0-7.10.2 as its "major 1"
//! (the same Lucene generations), and nothing created after 7.10.2.
//!
//! Every pair of the project's test nodes (Elasticsearch 6.8.23, 7.10.2,
//! 7.17.29, 8.19.21; OpenSearch 1.3.20, 2.19.6, 3.8.0) was snapshotted and
//! restored for real; the outcomes are in docs/cross-version.md and match
//! this rule.

use std::fmt;

use crate::probe::{Distribution, VersionInfo};

/// The rule, as quoted in refusals.
pub const RULE: &str = "a snapshot is restored by a target of the same distribution and the same \
     or a newer version than the source, or by OpenSearch from Elasticsearch up to 7.10.2; and \
     each index must have been created by a version the target reads: Elasticsearch N reads \
     indices created by Elasticsearch N and N-1; OpenSearch 1 reads Elasticsearch 6.x and \
     7.0-7.10.2 and OpenSearch 1; OpenSearch 2 reads Elasticsearch 7.0-7.10.2 and OpenSearch 1-2; \
     OpenSearch 3 reads OpenSearch 2-3; OpenSearch never restores into Elasticsearch";

/// Bit OpenSearch sets in its version ids, telling them from the
/// Elasticsearch ("legacy") ids it still reads.
const OPENSEARCH_ID_MASK: u64 = 0x0800_0000;

/// A version of one distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// Elasticsearch or OpenSearch.
    pub distribution: Distribution,
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl Release {
    /// The release of a cluster, as probed.
    pub fn of(version: &VersionInfo) -> Release {
        Release {
            distribution: version.distribution,
            major: version.major,
            minor: version.minor,
            patch: version.patch,
        }
    }

    /// The release encoded in a version id such as `index.version.created`
    /// (`major * 1_000_000 + minor * 10_000 + patch * 100 + build`;
    /// OpenSearch sets [`OPENSEARCH_ID_MASK`]). Elasticsearch 8.11+ index
    /// versions are no longer semantic beyond the major, which is all the
    /// rule needs for them.
    pub fn from_id(id: u64) -> Release {
        let (distribution, id) = if id & OPENSEARCH_ID_MASK != 0 {
            (Distribution::OpenSearch, id ^ OPENSEARCH_ID_MASK)
        } else {
            (Distribution::Elasticsearch, id)
        };
        Release {
            distribution,
            major: (id / 1_000_000) as u32,
            minor: ((id / 10_000) % 100) as u32,
            patch: ((id / 100) % 100) as u32,
        }
    }

    fn is_elasticsearch(self) -> bool {
        self.distribution == Distribution::Elasticsearch
    }

    /// Up to Elasticsearch 7.10.2, the last version OpenSearch forked from.
    fn before_the_fork(self) -> bool {
        self.is_elasticsearch() && (self.major, self.minor, self.patch) <= (7, 10, 2)
    }

    /// The OpenSearch major this index generation reads like: Elasticsearch
    /// 6.x is "0", Elasticsearch 7.0-7.10.2 is "1"; `None` after the fork.
    fn opensearch_generation(self) -> Option<u32> {
        match self.distribution {
            Distribution::OpenSearch => Some(self.major),
            Distribution::Elasticsearch if self.before_the_fork() => self.major.checked_sub(6),
            Distribution::Elasticsearch => None,
        }
    }

    fn version_tuple(self) -> (u32, u32, u32) {
        (self.major, self.minor, self.patch)
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.distribution.display_name();
        write!(f, "{name} {}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Why `target` cannot read a snapshot written by `source`, if it cannot.
pub fn snapshot_refusal(source: Release, target: Release) -> Option<String> {
    let readable = match (source.distribution, target.distribution) {
        (a, b) if a == b => source.version_tuple() <= target.version_tuple(),
        (Distribution::Elasticsearch, Distribution::OpenSearch) => source.before_the_fork(),
        _ => false,
    };
    (!readable).then(|| format!("{target} cannot read a snapshot written by {source}"))
}

/// Why `target` cannot restore an index created by `created`, if it cannot.
pub fn index_refusal(created: Release, target: Release) -> Option<String> {
    let readable = match target.distribution {
        Distribution::Elasticsearch => {
            created.is_elasticsearch()
                && created.major <= target.major
                && created.major + 1 >= target.major
        }
        Distribution::OpenSearch => created
            .opensearch_generation()
            .is_some_and(|g| g <= target.major && g + 1 >= target.major),
    };
    (!readable).then(|| format!("{target} does not read indices created by {created}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn es(major: u32, minor: u32, patch: u32) -> Release {
        Release {
            distribution: Distribution::Elasticsearch,
            major,
            minor,
            patch,
        }
    }

    fn os(major: u32, minor: u32, patch: u32) -> Release {
        Release {
            distribution: Distribution::OpenSearch,
            major,
            minor,
            patch,
        }
    }

    #[test]
    fn version_ids_of_both_distributions_decode() {
        // As the test nodes report `index.version.created`.
        assert_eq!(Release::from_id(6_082_399), es(6, 8, 23));
        assert_eq!(Release::from_id(7_100_299), es(7, 10, 2));
        assert_eq!(Release::from_id(135_249_827), os(1, 3, 20));
        assert_eq!(Release::from_id(136_408_427), os(2, 19, 6));
        assert_eq!(Release::from_id(137_297_827), os(3, 8, 0));
        assert_eq!(Release::from_id(8_537_000).major, 8);
    }

    /// Every ordered pair of the test nodes, with what a real restore did
    /// (docs/cross-version.md, "Snapshot-based backfill").
    #[test]
    fn the_rule_matches_what_real_nodes_did() {
        let nodes = [
            es(6, 8, 23),
            es(7, 10, 2),
            es(7, 17, 29),
            es(8, 19, 21),
            os(1, 3, 20),
            os(2, 19, 6),
            os(3, 8, 0),
        ];
        let restored = [
            (es(6, 8, 23), es(7, 10, 2)),
            (es(6, 8, 23), es(7, 17, 29)),
            (es(6, 8, 23), os(1, 3, 20)),
            (es(7, 10, 2), es(7, 17, 29)),
            (es(7, 10, 2), es(8, 19, 21)),
            (es(7, 10, 2), os(1, 3, 20)),
            (es(7, 10, 2), os(2, 19, 6)),
            (es(7, 17, 29), es(8, 19, 21)),
            (os(1, 3, 20), os(2, 19, 6)),
            (os(2, 19, 6), os(3, 8, 0)),
        ];
        for source in nodes {
            for target in nodes {
                if source == target {
                    continue;
                }
                // Indices created by the source's own version.
                let refused =
                    snapshot_refusal(source, target).or_else(|| index_refusal(source, target));
                assert_eq!(
                    refused.is_none(),
                    restored.contains(&(source, target)),
                    "{source} -> {target}: {refused:?}"
                );
            }
        }
    }

    #[test]
    fn an_old_index_in_a_newer_cluster_is_judged_by_its_creation() {
        // A 6.x index kept by a 7.17 cluster restores on 7.x, not on 8.x.
        assert!(snapshot_refusal(es(7, 17, 29), es(7, 17, 29)).is_none());
        assert!(index_refusal(es(6, 8, 23), es(7, 17, 29)).is_none());
        assert!(index_refusal(es(6, 8, 23), es(8, 19, 21)).is_some());
    }
}
