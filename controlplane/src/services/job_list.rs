//! Listing jobs of one kind (ListMigrationJobs, ListCompareJobs): the same
//! filters and pagination for every kind.

use std::collections::HashMap;

use tandem_proto::v1 as pb;
use tonic::Status;
use uuid::Uuid;

use super::store_status;
use crate::jobs::JobRecord;
use crate::pagination::PageRequest;
use crate::store::jobs::{self as store, JobFilter};
use crate::validate;

/// The filters and page of a List*Jobs request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobListRequest<'a> {
    /// Only jobs in these states (`JobState` values).
    pub states: &'a [i32],
    /// Only jobs of this task (empty: any).
    pub task_id: &'a str,
    /// Only jobs using this cluster (empty: any).
    pub cluster_id: &'a str,
    /// Only jobs carrying all these labels.
    pub labels: &'a HashMap<String, String>,
    /// Page size (pagination convention).
    pub page_size: i32,
    /// Page token (pagination convention).
    pub page_token: &'a str,
}

/// One page of the jobs of `kind` matching `request`, newest first, and the
/// next page token. `what` names the jobs in errors ("migration jobs").
pub(crate) async fn list_jobs(
    pool: &sqlx::PgPool,
    kind: &str,
    request: JobListRequest<'_>,
    what: &str,
) -> Result<(Vec<JobRecord>, String), Status> {
    let mut filter = JobFilter::default();
    for (i, state) in request.states.iter().enumerate() {
        let state: pb::JobState =
            validate::enum_value(&validate::index("states", i), *state, false)?;
        filter.states.push(state);
    }
    if !request.task_id.is_empty() {
        filter.task_id = Some(validate::id("task_id", request.task_id)?);
    }
    if !request.cluster_id.is_empty() {
        filter.cluster_id = Some(validate::id("cluster_id", request.cluster_id)?);
    }
    validate::labels("labels", request.labels)?;
    filter.labels = request.labels.clone().into_iter().collect();
    let fingerprint = format!(
        "{:?}|{}|{}|{:?}",
        request.states, request.task_id, request.cluster_id, filter.labels
    );
    let page =
        PageRequest::<(i64, Uuid)>::parse(request.page_size, request.page_token, &fingerprint)?;
    let mut records = store::list(pool, kind, &filter, page.after, page.fetch_limit())
        .await
        .map_err(|e| store_status(e, &format!("listing {what}")))?;
    let next_page_token = page.finish(
        &mut records,
        |j| (j.created_at.timestamp_micros(), j.id),
        &fingerprint,
    );
    Ok((records, next_page_token))
}
