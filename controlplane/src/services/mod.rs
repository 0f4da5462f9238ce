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

pub(crate) use tandem_proto::time::{duration, timestamp};
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
