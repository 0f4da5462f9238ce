//! `tandemctl cluster ...`: the ClusterService from the command line.
//!
//! Clusters are named by id or by name wherever one is expected. `update`
//! changes only what its flags mention: it reads the cluster first and
//! re-sends the unchanged parts of the credentials, TLS, node-discovery and
//! limits settings it touches (an empty password keeps the stored one).
//!
//! Secrets are best passed through the environment
//! (`TANDEM_CLUSTER_PASSWORD`, `TANDEM_CLUSTER_API_KEY`) or `--secret-stdin`
//! rather than as flags, which other local users can see in the process
//! list.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use tandem_client::v1::cluster_service_client::ClusterServiceClient;
use tandem_client::v1::{
    AuthMethod, Cluster, ClusterRef, Credentials, DeleteClusterRequest, Distribution,
    GetClusterRequest, LabelSet, Limits, ListClustersRequest, NodeDiscovery, OverLimitPolicy,
    ProbeClusterRequest, RegisterClusterRequest, StringList, TlsSettings, UpdateClusterRequest,
};
use tandem_client::{AuthenticatedChannel, prost_types};

use super::output::{self, Output};

type Client = ClusterServiceClient<AuthenticatedChannel>;

/// Cluster registry commands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Register a cluster (it is probed first).
    Register(Box<RegisterArgs>),
    /// Show one cluster with its last probe.
    Get {
        /// Cluster id or name.
        cluster: String,
    },
    /// List clusters, ordered by name.
    List(ListArgs),
    /// Change a cluster's settings (only the flags given change).
    Update(Box<UpdateArgs>),
    /// Remove a cluster.
    Delete {
        /// Cluster id or name.
        cluster: String,
    },
    /// Probe a cluster now and store the result. Exits 1 if the probe fails.
    Probe {
        /// Cluster id or name.
        cluster: String,
    },
}

/// `cluster register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Unique name: lowercase letters, digits and '-'.
    name: String,
    /// HTTP endpoint of the cluster, e.g. https://es-1.internal:9200
    /// (repeat for several).
    #[arg(long = "url", required = true)]
    endpoints: Vec<String>,
    /// Free-text description.
    #[arg(long, default_value = "")]
    description: String,
    /// Label as key=value (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(flatten)]
    tuning: TuningArgs,
    /// Register even if the probe fails.
    #[arg(long)]
    allow_unreachable: bool,
    /// Only probe and validate; store nothing.
    #[arg(long)]
    validate_only: bool,
}

/// `cluster list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only names containing this.
    #[arg(long)]
    name_contains: Option<String>,
    /// Only this distribution (as last probed).
    #[arg(long, value_enum)]
    distribution: Option<DistributionArg>,
    /// Only clusters with this label, key=value (repeatable; all must match).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Page size (0: server default). Without --page-token every page is
    /// fetched.
    #[arg(long, default_value_t = 0)]
    page_size: i32,
    /// Fetch only the page of this token (printed by a previous list).
    #[arg(long)]
    page_token: Option<String>,
}

/// `cluster update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Cluster id or name.
    cluster: String,
    /// New name.
    #[arg(long)]
    name: Option<String>,
    /// New description.
    #[arg(long)]
    description: Option<String>,
    /// Replace all labels with these, key=value (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Remove every label.
    #[arg(long, conflicts_with = "labels")]
    clear_labels: bool,
    /// Replace the cluster's endpoints with these URLs (repeatable).
    #[arg(long = "url")]
    endpoints: Vec<String>,
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(flatten)]
    tuning: TuningArgs,
    /// Accept the change even if the new probe fails.
    #[arg(long)]
    allow_unreachable: bool,
}

/// Credentials and TLS.
#[derive(Debug, Args)]
struct ConnectionArgs {
    /// Authentication: none, basic or api-key. Default: basic with
    /// --username, api-key with --api-key, none otherwise.
    #[arg(long, value_enum)]
    auth: Option<AuthArg>,
    /// User name for basic authentication.
    #[arg(long)]
    username: Option<String>,
    /// Password for basic authentication.
    #[arg(long, env = "TANDEM_CLUSTER_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Encoded API key (base64 of id:key).
    #[arg(long, env = "TANDEM_CLUSTER_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Read the password (or, with --auth api-key, the API key) from the
    /// first line of standard input.
    #[arg(long)]
    secret_stdin: bool,
    /// PEM file of extra trusted CA certificates.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Host name for SNI and certificate verification.
    #[arg(long)]
    server_name: Option<String>,
    /// Skip certificate verification (test clusters only).
    #[arg(long)]
    insecure_skip_verify: Option<bool>,
    /// PEM file of the client certificate chain (mutual TLS).
    #[arg(long)]
    client_cert_file: Option<PathBuf>,
    /// PEM file of the client's PKCS#8 private key (mutual TLS).
    #[arg(long)]
    client_key_file: Option<PathBuf>,
}

/// Node discovery and per-node limits.
#[derive(Debug, Args)]
struct TuningArgs {
    /// Discover nodes through _nodes/http (true/false).
    #[arg(long)]
    node_discovery: Option<bool>,
    /// Node list refresh interval in seconds (0: default).
    #[arg(long)]
    refresh_interval_secs: Option<u64>,
    /// Requests per second per node (0: unlimited).
    #[arg(long)]
    max_qps_per_node: Option<u32>,
    /// Request bytes per second per node (0: unlimited).
    #[arg(long)]
    max_bytes_per_sec_per_node: Option<u64>,
    /// Concurrent connections per node (0: unlimited).
    #[arg(long)]
    max_connections_per_node: Option<u32>,
    /// What to do over a limit.
    #[arg(long, value_enum)]
    over_limit: Option<OverLimitArg>,
    /// Longest wait for capacity under `wait`, in milliseconds (0: default).
    #[arg(long)]
    max_wait_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AuthArg {
    None,
    Basic,
    ApiKey,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DistributionArg {
    Elasticsearch,
    Opensearch,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OverLimitArg {
    Wait,
    Reject,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not key=value"))
}

/// Runs a cluster command.
pub async fn run(
    mut client: Client,
    command: ClusterCommand,
    output: Output,
) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Register(args) => {
            let request = register_request(*args)?;
            let cluster = client
                .register_cluster(request)
                .await
                .map_err(|s| rpc_error("RegisterCluster", s))?
                .into_inner()
                .cluster
                .context("RegisterCluster returned no cluster")?;
            output::cluster(&cluster, output);
        }
        ClusterCommand::Get { cluster } => {
            let cluster = find(&mut client, &cluster).await?;
            output::cluster(&cluster, output);
        }
        ClusterCommand::List(args) => {
            let clusters = list(&mut client, args).await?;
            output::clusters(&clusters, output);
        }
        ClusterCommand::Update(args) => {
            let current = find(&mut client, &args.cluster).await?;
            let request = update_request(*args, &current)?;
            let cluster = client
                .update_cluster(request)
                .await
                .map_err(|s| rpc_error("UpdateCluster", s))?
                .into_inner()
                .cluster
                .context("UpdateCluster returned no cluster")?;
            output::cluster(&cluster, output);
        }
        ClusterCommand::Delete { cluster } => {
            let id = resolve(&mut client, &cluster).await?;
            client
                .delete_cluster(DeleteClusterRequest {
                    cluster_id: id.clone(),
                })
                .await
                .map_err(|s| rpc_error("DeleteCluster", s))?;
            output::deleted(&id, output);
        }
        ClusterCommand::Probe { cluster } => {
            let id = resolve(&mut client, &cluster).await?;
            let probe = client
                .probe_cluster(ProbeClusterRequest { cluster_id: id })
                .await
                .map_err(|s| rpc_error("ProbeCluster", s))?
                .into_inner()
                .probe
                .context("ProbeCluster returned no result")?;
            output::probe(&probe, output);
            if probe.error.is_some() {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

/// A failed RPC as an error: its name, code and the server's message.
pub fn rpc_error(rpc: &str, status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{rpc} failed: {:?}: {}", status.code(), status.message())
}

/// A reference to the cluster `text` names: by id when it is one, else by
/// name.
pub(crate) fn cluster_ref(text: &str) -> ClusterRef {
    if looks_like_id(text) {
        ClusterRef {
            cluster_id: text.to_string(),
            ..Default::default()
        }
    } else {
        ClusterRef {
            cluster_name: text.to_string(),
            ..Default::default()
        }
    }
}

/// How a reference reads: its name, else its id.
pub(crate) fn cluster_ref_label(reference: &ClusterRef) -> String {
    if reference.cluster_name.is_empty() {
        reference.cluster_id.clone()
    } else {
        reference.cluster_name.clone()
    }
}

fn looks_like_id(text: &str) -> bool {
    text.len() == 36 && text.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// The id of the cluster named `cluster` (an id, or a name).
async fn resolve(client: &mut Client, cluster: &str) -> anyhow::Result<String> {
    if looks_like_id(cluster) {
        return Ok(cluster.to_string());
    }
    Ok(find(client, cluster).await?.id)
}

/// The cluster named `cluster` (an id, or a name).
async fn find(client: &mut Client, cluster: &str) -> anyhow::Result<Cluster> {
    if looks_like_id(cluster) {
        return client
            .get_cluster(GetClusterRequest {
                cluster_id: cluster.to_string(),
            })
            .await
            .map_err(|s| rpc_error("GetCluster", s))?
            .into_inner()
            .cluster
            .context("GetCluster returned no cluster");
    }
    let mut request = ListClustersRequest {
        name_contains: cluster.to_string(),
        page_size: 1000,
        ..Default::default()
    };
    loop {
        let page = client
            .list_clusters(request.clone())
            .await
            .map_err(|s| rpc_error("ListClusters", s))?
            .into_inner();
        if let Some(found) = page.clusters.into_iter().find(|c| c.name == cluster) {
            return Ok(found);
        }
        if page.next_page_token.is_empty() {
            bail!("no cluster named {cluster:?}");
        }
        request.page_token = page.next_page_token;
    }
}

async fn list(client: &mut Client, args: ListArgs) -> anyhow::Result<Vec<Cluster>> {
    let mut request = ListClustersRequest {
        page_size: args.page_size,
        page_token: args.page_token.clone().unwrap_or_default(),
        name_contains: args.name_contains.unwrap_or_default(),
        distribution: match args.distribution {
            None => Distribution::Unspecified,
            Some(DistributionArg::Elasticsearch) => Distribution::Elasticsearch,
            Some(DistributionArg::Opensearch) => Distribution::Opensearch,
        } as i32,
        labels: args.labels.into_iter().collect(),
    };
    let mut clusters = Vec::new();
    loop {
        let page = client
            .list_clusters(request.clone())
            .await
            .map_err(|s| rpc_error("ListClusters", s))?
            .into_inner();
        clusters.extend(page.clusters);
        if page.next_page_token.is_empty() {
            break;
        }
        if args.page_token.is_some() {
            // One page asked for: say how to get the next one.
            output::next_page(&page.next_page_token);
            break;
        }
        request.page_token = page.next_page_token;
    }
    Ok(clusters)
}

fn register_request(args: RegisterArgs) -> anyhow::Result<RegisterClusterRequest> {
    let connection = &args.connection;
    let credentials = credentials(connection, None)?;
    let tls = tls(connection, None)?;
    Ok(RegisterClusterRequest {
        name: args.name,
        description: args.description,
        labels: args.labels.into_iter().collect(),
        endpoints: args.endpoints,
        credentials,
        tls,
        node_discovery: node_discovery(&args.tuning, None),
        limits: limits(&args.tuning, None),
        allow_unreachable: args.allow_unreachable,
        validate_only: args.validate_only,
    })
}

fn update_request(args: UpdateArgs, current: &Cluster) -> anyhow::Result<UpdateClusterRequest> {
    let labels = if args.clear_labels || !args.labels.is_empty() {
        Some(LabelSet {
            labels: args.labels.into_iter().collect::<HashMap<_, _>>(),
        })
    } else {
        None
    };
    Ok(UpdateClusterRequest {
        cluster_id: current.id.clone(),
        name: args.name,
        description: args.description,
        labels,
        endpoints: (!args.endpoints.is_empty()).then_some(StringList {
            values: args.endpoints,
        }),
        credentials: credentials(&args.connection, current.credentials.as_ref())?,
        tls: tls(&args.connection, current.tls.as_ref())?,
        node_discovery: node_discovery(&args.tuning, current.node_discovery.as_ref()),
        limits: limits(&args.tuning, current.limits.as_ref()),
        allow_unreachable: args.allow_unreachable,
    })
}

/// Credentials from the flags, or `None` when no credential flag is given.
/// On update, `current` supplies the unchanged method and user name; an
/// empty secret keeps the stored one.
fn credentials(
    args: &ConnectionArgs,
    current: Option<&Credentials>,
) -> anyhow::Result<Option<Credentials>> {
    let touched = args.auth.is_some()
        || args.username.is_some()
        || args.password.is_some()
        || args.api_key.is_some()
        || args.secret_stdin;
    if !touched {
        return Ok(None);
    }
    let method = match args.auth {
        Some(AuthArg::None) => AuthMethod::None,
        Some(AuthArg::Basic) => AuthMethod::Basic,
        Some(AuthArg::ApiKey) => AuthMethod::ApiKey,
        None if args.api_key.is_some() => AuthMethod::ApiKey,
        None if args.username.is_some() || args.password.is_some() => AuthMethod::Basic,
        None => current.map(|c| c.method()).unwrap_or(AuthMethod::None),
    };
    let stdin_secret = if args.secret_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("--secret-stdin: reading standard input")?;
        Some(line.trim_end_matches(['\r', '\n']).to_string())
    } else {
        None
    };
    let mut credentials = Credentials {
        method: method as i32,
        ..Default::default()
    };
    match method {
        AuthMethod::Basic => {
            credentials.username = args
                .username
                .clone()
                .or_else(|| current.map(|c| c.username.clone()))
                .unwrap_or_default();
            credentials.password = stdin_secret
                .or_else(|| args.password.clone())
                .unwrap_or_default();
        }
        AuthMethod::ApiKey => {
            credentials.api_key = stdin_secret
                .or_else(|| args.api_key.clone())
                .unwrap_or_default();
        }
        AuthMethod::None | AuthMethod::Unspecified => {}
    }
    Ok(Some(credentials))
}

fn read_pem(flag: &str, path: &Option<PathBuf>) -> anyhow::Result<Option<String>> {
    path.as_ref()
        .map(|p| {
            std::fs::read_to_string(p)
                .with_context(|| format!("{flag} {}: cannot read", p.display()))
        })
        .transpose()
}

/// TLS settings from the flags, or `None` when no TLS flag is given. On
/// update, `current` supplies the unchanged fields; an empty key keeps the
/// stored one.
fn tls(
    args: &ConnectionArgs,
    current: Option<&TlsSettings>,
) -> anyhow::Result<Option<TlsSettings>> {
    let ca = read_pem("--ca-file", &args.ca_file)?;
    let cert = read_pem("--client-cert-file", &args.client_cert_file)?;
    let key = read_pem("--client-key-file", &args.client_key_file)?;
    let touched = ca.is_some()
        || cert.is_some()
        || key.is_some()
        || args.server_name.is_some()
        || args.insecure_skip_verify.is_some();
    if !touched {
        return Ok(None);
    }
    let base = current.cloned().unwrap_or_default();
    Ok(Some(TlsSettings {
        ca_certificates_pem: ca.unwrap_or(base.ca_certificates_pem),
        server_name: args.server_name.clone().unwrap_or(base.server_name),
        insecure_skip_verify: args
            .insecure_skip_verify
            .unwrap_or(base.insecure_skip_verify),
        client_certificate_pem: cert.unwrap_or(base.client_certificate_pem),
        client_private_key_pem: key.unwrap_or_default(),
        client_private_key_set: false,
    }))
}

fn seconds(secs: u64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: secs.try_into().unwrap_or(i64::MAX),
        nanos: 0,
    }
}

fn node_discovery(args: &TuningArgs, current: Option<&NodeDiscovery>) -> Option<NodeDiscovery> {
    if args.node_discovery.is_none() && args.refresh_interval_secs.is_none() {
        return None;
    }
    let base = current.copied().unwrap_or_default();
    Some(NodeDiscovery {
        enabled: args.node_discovery.unwrap_or(base.enabled),
        refresh_interval: args
            .refresh_interval_secs
            .map(seconds)
            .or(base.refresh_interval),
    })
}

fn limits(args: &TuningArgs, current: Option<&Limits>) -> Option<Limits> {
    let touched = args.max_qps_per_node.is_some()
        || args.max_bytes_per_sec_per_node.is_some()
        || args.max_connections_per_node.is_some()
        || args.over_limit.is_some()
        || args.max_wait_ms.is_some();
    if !touched {
        return None;
    }
    let base = current.copied().unwrap_or_default();
    Some(Limits {
        max_qps_per_node: args.max_qps_per_node.unwrap_or(base.max_qps_per_node),
        max_bytes_per_sec_per_node: args
            .max_bytes_per_sec_per_node
            .unwrap_or(base.max_bytes_per_sec_per_node),
        max_connections_per_node: args
            .max_connections_per_node
            .unwrap_or(base.max_connections_per_node),
        over_limit: match args.over_limit {
            Some(OverLimitArg::Wait) => OverLimitPolicy::Wait as i32,
            Some(OverLimitArg::Reject) => OverLimitPolicy::Reject as i32,
            None => base.over_limit,
        },
        max_wait: args
            .max_wait_ms
            .map(|ms| prost_types::Duration {
                seconds: (ms / 1000).try_into().unwrap_or(i64::MAX),
                nanos: ((ms % 1000) * 1_000_000) as i32,
            })
            .or(base.max_wait),
    })
}
