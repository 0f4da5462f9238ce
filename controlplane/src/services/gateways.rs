//! `tandem.v1.GatewayService`: the fleet view, the drain workflow, and the
//! agent stream every gateway keeps open.
//!
//! - **AgentStream** is run by `fleet::session`: hello, welcome and
//!   desired state, heartbeats and statistics, events, commands.
//! - **ListGateways / GetGateway** read the fleet as the agents last reported
//!   it; **WatchGateway** polls it (`gateways::watch`).
//! - **DrainGateway** (connected gateways only) and **UndrainGateway** store
//!   the request, which raises the gateway's desired-state version, and push
//!   the new desired state to the gateway when its stream is on this
//!   replica (otherwise the replica holding it delivers it within one
//!   heartbeat). DRAINED is what the gateway reports once it applied the
//!   request and met its conditions.
//! - **DeleteGateway** forgets a disconnected gateway (`FAILED_PRECONDITION`
//!   while connected). Task assignments do not exist yet; once they do,
//!   gateways assigned to a task that is not STOPPED must be refused too.

mod convert;
mod watch;

use std::collections::BTreeMap;
use std::time::Duration;

use tandem_proto::v1 as pb;
use tandem_proto::v1::gateway_service_server::GatewayService;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use super::store_status;
use crate::api::Api;
use crate::fleet::{self, DEFAULT_DRAIN_QUIET_PERIOD};
use crate::pagination::PageRequest;
use crate::store::gateways::{
    self as store, Connection, DeleteOutcome, DrainOutcome, DrainPhase, GatewayFilter,
    GatewayRecord,
};
use crate::validate;

/// Longest accepted drain quiet period.
const MAX_QUIET_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// Longest accepted task id in filters.
pub(crate) const MAX_TASK_ID_CHARS: usize = 128;

#[tonic::async_trait]
impl GatewayService for Api {
    async fn list_gateways(
        &self,
        request: Request<pb::ListGatewaysRequest>,
    ) -> Result<Response<pb::ListGatewaysResponse>, Status> {
        let request = request.into_inner();
        let connection: pb::GatewayConnectionState =
            validate::enum_value("connection_state", request.connection_state, true)?;
        let drain: pb::DrainState = validate::enum_value("drain_state", request.drain_state, true)?;
        validate::max_chars("task_id", &request.task_id, MAX_TASK_ID_CHARS)?;
        validate::labels("labels", &request.labels)?;
        let filter = GatewayFilter {
            connection: match connection {
                pb::GatewayConnectionState::Unspecified => None,
                pb::GatewayConnectionState::Connected => Some(Connection::Connected),
                pb::GatewayConnectionState::Disconnected => Some(Connection::Disconnected),
            },
            drain: match drain {
                pb::DrainState::Unspecified => None,
                pb::DrainState::Serving => Some(DrainPhase::Serving),
                pb::DrainState::Draining => Some(DrainPhase::Draining),
                pb::DrainState::Drained => Some(DrainPhase::Drained),
            },
            task_id: (!request.task_id.is_empty()).then(|| request.task_id.clone()),
            labels: request
                .labels
                .clone()
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
        };
        let fingerprint = serde_json::json!([
            request.connection_state,
            request.drain_state,
            request.task_id,
            filter.labels
        ])
        .to_string();
        let page = PageRequest::<(String, String)>::parse(
            request.page_size,
            &request.page_token,
            &fingerprint,
        )?;
        let after = page
            .after
            .as_ref()
            .map(|(name, id)| (name.as_str(), id.as_str()));
        let mut records = store::list(&self.pool, &filter, after, page.fetch_limit())
            .await
            .map_err(|e| store_status(e, "listing gateways"))?;
        let next_page_token = page.finish(
            &mut records,
            |r| (r.name.clone(), r.id.clone()),
            &fingerprint,
        );
        Ok(Response::new(pb::ListGatewaysResponse {
            gateways: records.iter().map(convert::gateway).collect(),
            next_page_token,
        }))
    }

    async fn get_gateway(
        &self,
        request: Request<pb::GetGatewayRequest>,
    ) -> Result<Response<pb::GetGatewayResponse>, Status> {
        let record = self.gateway(&request.get_ref().gateway_id).await?;
        Ok(Response::new(pb::GetGatewayResponse {
            gateway: Some(convert::gateway(&record)),
        }))
    }

    async fn watch_gateway(
        &self,
        request: Request<pb::WatchGatewayRequest>,
    ) -> Result<Response<BoxStream<pb::WatchGatewayResponse>>, Status> {
        let gateway_id = request.into_inner().gateway_id;
        let gateway_id = if gateway_id.is_empty() {
            None
        } else {
            Some(self.gateway(&gateway_id).await?.id)
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(watch::run(
            self.pool.clone(),
            self.fleet.clone(),
            gateway_id,
            tx,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn drain_gateway(
        &self,
        request: Request<pb::DrainGatewayRequest>,
    ) -> Result<Response<pb::DrainGatewayResponse>, Status> {
        let request = request.into_inner();
        validate::gateway_id("gateway_id", &request.gateway_id)?;
        let quiet_period = match validate::duration(
            "quiet_period",
            request.quiet_period.as_ref(),
            MAX_QUIET_PERIOD,
        )? {
            Duration::ZERO => DEFAULT_DRAIN_QUIET_PERIOD,
            other => other,
        };
        let id = &request.gateway_id;
        let outcome = store::request_drain(
            &self.pool,
            id,
            quiet_period,
            request.allow_unreplayed_paused,
        )
        .await
        .map_err(|e| store_status(e, &format!("draining gateway {id}")))?;
        let record = match outcome {
            DrainOutcome::Requested(record) => *record,
            DrainOutcome::NotFound => return Err(not_found(id)),
            DrainOutcome::NotConnected => {
                return Err(Status::failed_precondition(format!(
                    "gateway_id: gateway {id} is not connected; a drain must reach the gateway, \
                     so retry once it is connected (or, if it is gone for good, DeleteGateway)"
                )));
            }
        };
        tracing::info!(
            gateway_id = %id,
            quiet_period_ms = quiet_period.as_millis() as u64,
            allow_unreplayed_paused = request.allow_unreplayed_paused,
            desired_version = record.desired_version,
            "gateway drain requested"
        );
        self.deliver_desired_state(&record).await;
        Ok(Response::new(pb::DrainGatewayResponse {
            gateway: Some(convert::gateway(&record)),
        }))
    }

    async fn undrain_gateway(
        &self,
        request: Request<pb::UndrainGatewayRequest>,
    ) -> Result<Response<pb::UndrainGatewayResponse>, Status> {
        let id = &request.get_ref().gateway_id;
        validate::gateway_id("gateway_id", id)?;
        let record = store::cancel_drain(&self.pool, id)
            .await
            .map_err(|e| store_status(e, &format!("undraining gateway {id}")))?
            .ok_or_else(|| not_found(id))?;
        tracing::info!(gateway_id = %id, desired_version = record.desired_version, "gateway drain cancelled");
        self.deliver_desired_state(&record).await;
        Ok(Response::new(pb::UndrainGatewayResponse {
            gateway: Some(convert::gateway(&record)),
        }))
    }

    async fn delete_gateway(
        &self,
        request: Request<pb::DeleteGatewayRequest>,
    ) -> Result<Response<pb::DeleteGatewayResponse>, Status> {
        let id = &request.get_ref().gateway_id;
        validate::gateway_id("gateway_id", id)?;
        let outcome = store::delete(&self.pool, id)
            .await
            .map_err(|e| store_status(e, &format!("deleting gateway {id}")))?;
        match outcome {
            DeleteOutcome::Deleted => {
                tracing::info!(gateway_id = %id, "gateway deleted");
                Ok(Response::new(pb::DeleteGatewayResponse {}))
            }
            DeleteOutcome::NotFound => Err(not_found(id)),
            DeleteOutcome::Connected => Err(Status::failed_precondition(format!(
                "gateway_id: gateway {id} is connected; stop it first (drain it with DrainGateway, \
                 then stop the process), then delete it"
            ))),
        }
    }

    async fn agent_stream(
        &self,
        request: Request<Streaming<pb::AgentStreamRequest>>,
    ) -> Result<Response<BoxStream<pb::AgentStreamResponse>>, Status> {
        let stream =
            fleet::session::open(self.fleet.clone(), self.pool.clone(), request.into_inner())
                .await?;
        Ok(Response::new(stream))
    }
}

impl Api {
    /// The gateway whose id is the request field `gateway_id`.
    pub(crate) async fn gateway(&self, gateway_id: &str) -> Result<GatewayRecord, Status> {
        validate::gateway_id("gateway_id", gateway_id)?;
        store::get(&self.pool, gateway_id)
            .await
            .map_err(|e| store_status(e, &format!("reading gateway {gateway_id}")))?
            .ok_or_else(|| not_found(gateway_id))
    }

    /// Pushes the stored desired state of `record` to its agent when the
    /// stream is on this replica. Elsewhere (or disconnected), the state is
    /// delivered from the database (see [`crate::fleet`]).
    async fn deliver_desired_state(&self, record: &GatewayRecord) {
        let state = match fleet::load_desired_state(&self.pool, &self.secrets, record).await {
            Ok(state) => state,
            Err(err) => {
                tracing::warn!(gateway_id = %record.id, error = %err, "cannot read the desired state; the gateway gets it after its next report");
                return;
            }
        };
        if let Err(err) = self.fleet.push_desired_state(&record.id, state).await {
            tracing::debug!(gateway_id = %record.id, reason = %err, "desired state not pushed from this replica");
        }
    }
}

/// `NOT_FOUND` for an unknown gateway id.
pub(crate) fn not_found(id: &str) -> Status {
    Status::not_found(format!("gateway_id: no gateway with id {id}"))
}
