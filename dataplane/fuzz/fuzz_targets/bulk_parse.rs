//! Feeds arbitrary bytes to the `_bulk` parser: it must never panic, the
//! items it returns must describe the body consistently, and replaying them
//! (as a backup-bound bulk for 5.x, 6.x and 7.x) must produce a body the
//! parser reads back to the same documents.
//!
//! Run with: `cargo +nightly fuzz run bulk_parse -- -max_total_time=60`

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_es::bulk::parse_bulk;
use tandem_es::json::{compact, is_single_json_value};
use tandem_es::{ClusterVersion, DocOp, ReplayTarget, ReplicationOp, build_replay_bulk};

fuzz_target!(|data: &[u8]| {
    let Ok(items) = parse_bulk(data, Some("default"), None) else {
        return;
    };
    assert!(data.is_empty() || data.last() == Some(&b'\n'));
    let mut previous_end = 0;
    let mut previous_line = 0;
    for item in &items {
        assert!(item.range.start >= previous_end, "items overlap");
        assert!(item.range.start < item.range.end && item.range.end <= data.len());
        assert!(item.line > previous_line);
        assert_eq!(item.source.is_none(), item.action == DocOp::Delete);
        if let Some(source) = &item.source {
            assert!(!source.contains(&b'\n'));
            assert!(source.len() < item.range.end - item.range.start);
        }
        if matches!(item.action, DocOp::Delete | DocOp::Update) {
            assert!(item.id.is_some());
        }
        previous_end = item.range.end;
        previous_line = item.line;
    }

    // Replay what a primary accepting everything would have recorded.
    let ops: Vec<ReplicationOp> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let id = item.id.clone().unwrap_or_else(|| format!("auto-{i}"));
            let version = i64::try_from(i).unwrap_or(i64::MAX);
            match (&item.source, item.action) {
                (None, _) => Some(ReplicationOp::Delete {
                    index: item.index.clone(),
                    doc_type: None,
                    id,
                    routing: item.routing.clone(),
                    version,
                }),
                (Some(source), DocOp::Index | DocOp::Create) if is_single_json_value(source) => {
                    Some(ReplicationOp::Index {
                        index: item.index.clone(),
                        doc_type: item.doc_type.clone(),
                        id,
                        routing: item.routing.clone(),
                        version,
                        seq_no: None,
                        primary_term: None,
                        source: source.clone(),
                    })
                }
                _ => None,
            }
        })
        .collect();
    for version in [
        ClusterVersion::elasticsearch(5, 6),
        ClusterVersion::elasticsearch(6, 8),
        ClusterVersion::elasticsearch(7, 17),
    ] {
        let body = build_replay_bulk(&ops, &ReplayTarget::new(version))
            .expect("single-line JSON sources always replay");
        let back = parse_bulk(&body, None, None).expect("a replay body parses");
        assert_eq!(back.len(), ops.len());
        for (op, parsed) in ops.iter().zip(&back) {
            assert_eq!(Some(parsed.index.as_str()), op.index().as_deref());
            assert_eq!(parsed.id.as_deref(), op.id());
            assert_eq!(parsed.version, op.version());
            assert_eq!(parsed.version_type.as_deref(), Some("external_gte"));
            assert_eq!(version.has_mapping_types(), parsed.doc_type.is_some());
            if let ReplicationOp::Index {
                source, routing, ..
            } = op
            {
                assert_eq!(parsed.routing, *routing);
                assert_eq!(parsed.source.as_deref(), Some(&*compact(source)));
            }
        }
    }
});
