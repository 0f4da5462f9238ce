//! `tandem.v1.ClusterService`: the registry of the clusters Tandem migrates
//! from and to.
//!
//! - **Register** validates every field, checks the name is free, probes the
//!   cluster ([`crate::probe`]) and stores it with the probe result. A failed
//!   probe refuses the registration (`FAILED_PRECONDITION` with the probe's
//!   reason) unless `allow_unreachable`; `validate_only` stops before
//!   storing.
//! - **Update** changes only the fields that are set. When the connection
//!   settings (endpoints, credentials, TLS) really change, the cluster is
//!   probed again with the new ones; a failed probe refuses the change
//!   unless `allow_unreachable`, and endpoints that lead to a cluster with
//!   another UUID are always refused. The write is optimistic (`ABORTED` if
//!   the cluster changed meanwhile), so no row is locked during the probe.
//! - **Probe** re-probes with the stored settings and stores the result; a
//!   failed probe is a successful RPC whose result carries the error. A
//!   probe reaching a cluster with another UUID than the registered one is
//!   a failure (`CLUSTER_UUID_MISMATCH`).
//! - **Delete** removes the cluster, unless a replication task (in any
//!   state: delete the task first) or an unfinished job uses it
//!   (`FAILED_PRECONDITION` naming them).
//!
//! Secrets are sealed before they are stored, opened only to probe, never
//! returned (see [`convert`]) and never logged.

pub(crate) mod convert;
pub(crate) mod settings;

use std::collections::BTreeMap;

use tandem_proto::codes;
use tandem_proto::v1::cluster_service_server::ClusterService;
use tandem_proto::v1::{
    DeleteClusterRequest, DeleteClusterResponse, GetClusterRequest, GetClusterResponse,
    ListClustersRequest, ListClustersResponse, ProbeClusterRequest, ProbeClusterResponse,
    RegisterClusterRequest, RegisterClusterResponse, UpdateClusterRequest, UpdateClusterResponse,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::store_status;
use crate::api::Api;
use crate::pagination::PageRequest;
use crate::probe::{Distribution, ProbeAuth, ProbeFailure, ProbeReport, ProbeTarget, TlsOptions};
use crate::secrets::SecretString;
use crate::store::clusters::{self as store, AuthKind, ClusterFilter, ClusterRecord};
use crate::validate;

#[tonic::async_trait]
impl ClusterService for Api {
    async fn register_cluster(
        &self,
        request: Request<RegisterClusterRequest>,
    ) -> Result<Response<RegisterClusterResponse>, Status> {
        let request = request.into_inner();
        let id = Uuid::new_v4();
        let (settings, target) = settings::for_register(&request, id, &self.secrets, &self.prober)?;
        self.ensure_name_free(&settings.name, None).await?;

        let probe = self.prober.probe(&target).await;
        if let Some(failure) = &probe.error
            && !request.allow_unreachable
        {
            return Err(probe_refused(failure, "register"));
        }
        if request.validate_only {
            let mut cluster = convert::settings(&settings);
            cluster.last_probe = Some(convert::probe_result(&probe));
            return Ok(Response::new(RegisterClusterResponse {
                cluster: Some(cluster),
            }));
        }

        let context = format!("registering cluster {:?}", settings.name);
        let record = store::insert(&self.pool, id, &settings, &probe)
            .await
            .map_err(|e| store_status(e, &context))?;
        tracing::info!(
            cluster_id = %record.id,
            name = %record.settings.name,
            endpoint = %probe.endpoint,
            version = probe.version.as_ref().map(|v| v.number.as_str()).unwrap_or("unknown"),
            probe_error = probe.error.as_ref().map(|e| e.reason.as_str()).unwrap_or(""),
            "cluster registered"
        );
        Ok(Response::new(RegisterClusterResponse {
            cluster: Some(convert::cluster(&record)),
        }))
    }

    async fn get_cluster(
        &self,
        request: Request<GetClusterRequest>,
    ) -> Result<Response<GetClusterResponse>, Status> {
        let record = self.load(&request.get_ref().cluster_id).await?;
        Ok(Response::new(GetClusterResponse {
            cluster: Some(convert::cluster(&record)),
        }))
    }

    async fn list_clusters(
        &self,
        request: Request<ListClustersRequest>,
    ) -> Result<Response<ListClustersResponse>, Status> {
        let request = request.into_inner();
        validate::max_chars("name_contains", &request.name_contains, 63)?;
        let distribution: tandem_proto::v1::Distribution =
            validate::enum_value("distribution", request.distribution, true)?;
        validate::labels("labels", &request.labels)?;
        let filter = ClusterFilter {
            name_contains: request.name_contains.clone(),
            distribution: match distribution {
                tandem_proto::v1::Distribution::Unspecified => None,
                tandem_proto::v1::Distribution::Elasticsearch => Some(Distribution::Elasticsearch),
                tandem_proto::v1::Distribution::Opensearch => Some(Distribution::OpenSearch),
            },
            labels: request
                .labels
                .clone()
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
        };
        let fingerprint =
            serde_json::json!([filter.name_contains, request.distribution, filter.labels])
                .to_string();
        let page =
            PageRequest::<String>::parse(request.page_size, &request.page_token, &fingerprint)?;
        let mut records = store::list(
            &self.pool,
            &filter,
            page.after.as_deref(),
            page.fetch_limit(),
        )
        .await
        .map_err(|e| store_status(e, "listing clusters"))?;
        let next_page_token = page.finish(&mut records, |r| r.settings.name.clone(), &fingerprint);
        Ok(Response::new(ListClustersResponse {
            clusters: records.iter().map(convert::cluster).collect(),
            next_page_token,
        }))
    }

    async fn update_cluster(
        &self,
        request: Request<UpdateClusterRequest>,
    ) -> Result<Response<UpdateClusterResponse>, Status> {
        let request = request.into_inner();
        let current = self.load(&request.cluster_id).await?;
        let id = current.id;
        let open_credentials = || self.open_credentials(&current);
        let open_tls_key = || self.open_tls_key(&current);
        let settings::Update { next, auth, tls } = settings::for_update(
            &request,
            &current,
            &open_credentials,
            &open_tls_key,
            &self.secrets,
            &self.prober,
        )?;
        if next.name != current.settings.name {
            self.ensure_name_free(&next.name, Some(id)).await?;
        }

        let previous = &current.settings;
        let connection_changed = next.endpoints != previous.endpoints
            || next.credentials != previous.credentials
            || next.tls != previous.tls;
        let probe = if connection_changed {
            let target = ProbeTarget {
                endpoints: next.endpoints.clone(),
                auth: match auth {
                    Some(auth) => auth,
                    None => self.probe_auth(&current)?,
                },
                tls: match tls {
                    Some(tls) => tls,
                    None => self.tls_options(&current)?,
                },
                node_discovery: next.node_discovery_enabled,
            };
            let probe = self.prober.probe(&target).await;
            if let Some(failure) = &probe.error
                && !request.allow_unreachable
            {
                return Err(probe_refused(failure, "update"));
            }
            if let Some(mismatch) = uuid_mismatch(&current, &probe) {
                return Err(Status::failed_precondition(format!(
                    "endpoints: {mismatch}; register that cluster separately instead"
                )));
            }
            Some(probe)
        } else {
            None
        };

        let context = format!("updating cluster {id}");
        let updated = store::update(&self.pool, id, current.updated_at, &next, probe.as_ref())
            .await
            .map_err(|e| store_status(e, &context))?;
        let Some(updated) = updated else {
            return Err(match self.find(id).await? {
                None => not_found(id),
                Some(_) => Status::aborted(format!(
                    "cluster {id} was changed by another request meanwhile; read it again and retry"
                )),
            });
        };
        tracing::info!(
            cluster_id = %id,
            name = %updated.settings.name,
            reprobed = probe.is_some(),
            "cluster updated"
        );
        if updated.settings.credentials != current.settings.credentials
            || updated.settings.limits != current.settings.limits
        {
            // Gateways serving tasks of this cluster get the new
            // credentials and limits with a new desired state.
            match crate::store::tasks::bump_gateways_of_cluster(&self.pool, id).await {
                Ok(bumped) => self.deliver(&bumped).await,
                Err(err) => tracing::warn!(
                    cluster_id = %id,
                    error = %err,
                    "cannot raise the gateways' desired state; they get the new credentials with their next change"
                ),
            }
        }
        Ok(Response::new(UpdateClusterResponse {
            cluster: Some(convert::cluster(&updated)),
        }))
    }

    async fn delete_cluster(
        &self,
        request: Request<DeleteClusterRequest>,
    ) -> Result<Response<DeleteClusterResponse>, Status> {
        let id = validate::id("cluster_id", &request.get_ref().cluster_id)?;
        let context = format!("deleting cluster {id}");
        let (tasks, jobs) = store::users(&self.pool, id)
            .await
            .map_err(|e| store_status(e, &context))?;
        if !tasks.is_empty() || !jobs.is_empty() {
            let mut users = Vec::new();
            if !tasks.is_empty() {
                users.push(format!("replication task(s) {}", tasks.join(", ")));
            }
            if !jobs.is_empty() {
                users.push(format!("unfinished job(s) {}", jobs.join(", ")));
            }
            return Err(Status::failed_precondition(format!(
                "cluster_id: cluster {id} is used by {}; delete the tasks and finish or cancel the jobs first",
                users.join(" and ")
            )));
        }
        if !store::delete(&self.pool, id)
            .await
            .map_err(|e| store_status(e, &context))?
        {
            return Err(not_found(id));
        }
        tracing::info!(cluster_id = %id, "cluster deleted");
        Ok(Response::new(DeleteClusterResponse {}))
    }

    async fn probe_cluster(
        &self,
        request: Request<ProbeClusterRequest>,
    ) -> Result<Response<ProbeClusterResponse>, Status> {
        let record = self.load(&request.get_ref().cluster_id).await?;
        let target = ProbeTarget {
            endpoints: record.settings.endpoints.clone(),
            auth: self.probe_auth(&record)?,
            tls: self.tls_options(&record)?,
            node_discovery: record.settings.node_discovery_enabled,
        };
        let mut probe = self.prober.probe(&target).await;
        if let Some(mismatch) = uuid_mismatch(&record, &probe) {
            probe.error = Some(ProbeFailure {
                reason: codes::CLUSTER_UUID_MISMATCH.into(),
                message: format!(
                    "{mismatch}; the endpoints no longer lead to the registered cluster"
                ),
                metadata: [("endpoint".to_string(), probe.endpoint.clone())].into(),
            });
        }
        let context = format!("recording the probe of cluster {}", record.id);
        if !store::record_probe(&self.pool, record.id, &probe)
            .await
            .map_err(|e| store_status(e, &context))?
        {
            return Err(not_found(record.id));
        }
        tracing::info!(
            cluster_id = %record.id,
            name = %record.settings.name,
            ok = probe.ok(),
            reason = probe.error.as_ref().map(|e| e.reason.as_str()).unwrap_or(""),
            "cluster probed"
        );
        Ok(Response::new(ProbeClusterResponse {
            probe: Some(convert::probe_result(&probe)),
        }))
    }
}

impl Api {
    /// The cluster whose id is the request field `cluster_id`.
    async fn load(&self, cluster_id: &str) -> Result<ClusterRecord, Status> {
        let id = validate::id("cluster_id", cluster_id)?;
        self.find(id).await?.ok_or_else(|| not_found(id))
    }

    async fn find(&self, id: Uuid) -> Result<Option<ClusterRecord>, Status> {
        store::get(&self.pool, id)
            .await
            .map_err(|e| store_status(e, &format!("reading cluster {id}")))
    }

    async fn ensure_name_free(&self, name: &str, except: Option<Uuid>) -> Result<(), Status> {
        let taken = store::name_taken(&self.pool, name, except)
            .await
            .map_err(|e| store_status(e, "checking the cluster name"))?;
        if taken {
            return Err(Status::already_exists(format!(
                "name: a cluster named {name:?} is already registered"
            )));
        }
        Ok(())
    }

    /// The stored credentials of `record`, opened for probing.
    pub(crate) fn probe_auth(&self, record: &ClusterRecord) -> Result<ProbeAuth, Status> {
        let credentials = &record.settings.credentials;
        Ok(match credentials.method {
            AuthKind::None => ProbeAuth::None,
            AuthKind::Basic => ProbeAuth::Basic {
                username: credentials.username.clone(),
                password: self.open_credentials(record)?,
            },
            AuthKind::ApiKey => ProbeAuth::ApiKey(self.open_credentials(record)?),
        })
    }

    /// The stored TLS settings of `record`, client key opened.
    pub(crate) fn tls_options(&self, record: &ClusterRecord) -> Result<TlsOptions, Status> {
        let tls = &record.settings.tls;
        Ok(TlsOptions {
            ca_certificates_pem: tls.ca_certificates_pem.clone(),
            server_name: tls.server_name.clone(),
            insecure_skip_verify: tls.insecure_skip_verify,
            client_certificate_pem: tls.client_certificate_pem.clone(),
            client_private_key_pem: match &tls.client_key_encrypted {
                Some(_) => self.open_tls_key(record)?,
                None => SecretString::default(),
            },
        })
    }

    fn open_credentials(&self, record: &ClusterRecord) -> Result<SecretString, Status> {
        self.open(
            record,
            record.settings.credentials.secret_encrypted.as_deref(),
            &settings::credentials_context(record.id),
            "credentials",
        )
    }

    fn open_tls_key(&self, record: &ClusterRecord) -> Result<SecretString, Status> {
        self.open(
            record,
            record.settings.tls.client_key_encrypted.as_deref(),
            &settings::tls_key_context(record.id),
            "tls.client_private_key_pem",
        )
    }

    fn open(
        &self,
        record: &ClusterRecord,
        sealed: Option<&[u8]>,
        context: &str,
        what: &str,
    ) -> Result<SecretString, Status> {
        let Some(sealed) = sealed else {
            return Ok(SecretString::default());
        };
        self.secrets.open(sealed, context).map_err(|err| {
            tracing::error!(cluster_id = %record.id, secret = what, error = %err, "cannot open a stored secret");
            Status::failed_precondition(format!(
                "{what}: the stored secret of cluster {} cannot be used: {err}; \
                 start the control plane with the secret key it was stored with, \
                 or set {what} again with UpdateCluster",
                record.id
            ))
        })
    }
}

fn not_found(id: Uuid) -> Status {
    Status::not_found(format!("cluster_id: no cluster with id {id}"))
}

/// `FAILED_PRECONDITION` for a probe that refused a registration or update.
fn probe_refused(failure: &ProbeFailure, action: &str) -> Status {
    Status::failed_precondition(format!(
        "probe failed ({}): {}; fix the cluster settings, or set allow_unreachable to {action} it anyway",
        failure.reason, failure.message
    ))
}

/// Why `probe` reached another cluster than the one registered as `record`,
/// if it did.
fn uuid_mismatch(record: &ClusterRecord, probe: &ProbeReport) -> Option<String> {
    let known = record.cluster_uuid.as_deref()?;
    if !probe.ok() || probe.cluster_uuid.is_empty() || probe.cluster_uuid == known {
        return None;
    }
    Some(format!(
        "{} leads to the cluster {:?} with UUID {}, but this cluster was registered with UUID {known}",
        probe.endpoint, probe.cluster_name, probe.cluster_uuid
    ))
}
