//! Implementations of the `tandem.v1` services, one module per service,
//! plus the conversions every service shares.
//!
//! Handlers validate their request with [`crate::validate`], work through
//! [`crate::store`], and map failures to one gRPC status at this edge.

pub mod clusters;
pub mod compare;
pub mod gateways;
pub(crate) mod job_list;
pub mod migration;
pub mod queues;
pub mod replication;

use chrono::{DateTime, Utc};
use tonic::Status;

use crate::store::StoreError;

/// The gRPC status for a store failure during `context` (e.g. "registering
/// cluster es-old"). Database details are logged, not returned.
pub(crate) fn store_status(err: StoreError, context: &str) -> Status {
    match err {
        StoreError::NameTaken(name) => Status::already_exists(format!(
            "name: {name:?} is already taken; choose another name"
        )),
        StoreError::Database(
            ref db @ (sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed),
        ) => {
            tracing::error!(error = %db, "{context}: database unavailable");
            Status::unavailable(format!(
                "{context}: the database is unavailable; retry later"
            ))
        }
        other => {
            tracing::error!(error = %other, "{context}: store failure");
            Status::internal(format!(
                "{context}: internal store error (see the control-plane log)"
            ))
        }
    }
}

/// A `google.protobuf.Timestamp` for `at`.
pub(crate) fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos().min(999_999_999) as i32,
    }
}

/// A `google.protobuf.Duration` for `span`.
pub(crate) fn duration(span: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: span.as_secs().try_into().unwrap_or(i64::MAX),
        nanos: span.subsec_nanos() as i32,
    }
}
