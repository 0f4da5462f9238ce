//! `tandemctl gateway ...`: the fleet of gateways (GatewayService).
//!
//! Gateways are named by id or by name wherever one is expected (a name
//! shared by several gateways is refused: use the id).

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use tandem_client::v1::gateway_service_client::GatewayServiceClient;
use tandem_client::v1::watch_gateway_response::Update;
use tandem_client::v1::{
    DeleteGatewayRequest, DrainGatewayRequest, DrainState, Gateway, GatewayConnectionState,
    GetGatewayRequest, ListGatewaysRequest, UndrainGatewayRequest, WatchGatewayRequest,
};
use tandem_client::{AuthenticatedChannel, prost_types};

use super::cluster::rpc_error;
use super::output::{self, Output};

type Client = GatewayServiceClient<AuthenticatedChannel>;

/// Gateway fleet commands.
#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// List gateways, ordered by name.
    List(ListArgs),
    /// Show one gateway with its drain and queue status.
    Get {
        /// Gateway id or name.
        gateway: String,
    },
    /// Drain a gateway: it reports not-ready, finishes in-flight requests and
    /// replays its queues; DRAINED means it can be stopped safely.
    Drain(DrainArgs),
    /// Cancel a drain: the gateway reports ready again.
    Undrain {
        /// Gateway id or name.
        gateway: String,
    },
    /// Forget a disconnected gateway.
    Delete {
        /// Gateway id or name.
        gateway: String,
    },
}

/// `gateway list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only gateways in this connection state.
    #[arg(long, value_enum)]
    connection: Option<ConnectionArg>,
    /// Only gateways in this drain state.
    #[arg(long, value_enum)]
    drain: Option<DrainArg>,
    /// Only gateways serving this task.
    #[arg(long)]
    task: Option<String>,
    /// Only gateways with this label, key=value (repeatable; all must match).
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

/// `gateway drain`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// Gateway id or name.
    gateway: String,
    /// Time without client requests before the gateway can be DRAINED, in
    /// seconds (0: server default, 30 s).
    #[arg(long, default_value_t = 0)]
    quiet_period_secs: u64,
    /// Allow DRAINED although records of created or paused tasks are not
    /// replayed (they stay on the gateway's disk).
    #[arg(long)]
    allow_unreplayed_paused: bool,
    /// Follow the drain until the gateway is DRAINED.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds (0: never).
    #[arg(long, default_value_t = 0, requires = "wait")]
    timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ConnectionArg {
    Connected,
    Disconnected,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DrainArg {
    Serving,
    Draining,
    Drained,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not key=value"))
}

/// Runs a gateway command.
pub async fn run(
    mut client: Client,
    command: GatewayCommand,
    output: Output,
) -> anyhow::Result<()> {
    match command {
        GatewayCommand::List(args) => {
            let gateways = list(&mut client, args).await?;
            output::gateways(&gateways, output);
        }
        GatewayCommand::Get { gateway } => {
            let gateway = find(&mut client, &gateway).await?;
            output::gateway(&gateway, output);
        }
        GatewayCommand::Drain(args) => {
            let id = find(&mut client, &args.gateway).await?.id;
            let gateway = client
                .drain_gateway(DrainGatewayRequest {
                    gateway_id: id.clone(),
                    quiet_period: (args.quiet_period_secs > 0).then(|| prost_types::Duration {
                        seconds: args.quiet_period_secs.try_into().unwrap_or(i64::MAX),
                        nanos: 0,
                    }),
                    allow_unreplayed_paused: args.allow_unreplayed_paused,
                })
                .await
                .map_err(|s| rpc_error("DrainGateway", s))?
                .into_inner()
                .gateway
                .context("DrainGateway returned no gateway")?;
            let gateway = if args.wait {
                wait_drained(&mut client, gateway, args.timeout_secs).await?
            } else {
                gateway
            };
            output::gateway(&gateway, output);
        }
        GatewayCommand::Undrain { gateway } => {
            let id = find(&mut client, &gateway).await?.id;
            let gateway = client
                .undrain_gateway(UndrainGatewayRequest { gateway_id: id })
                .await
                .map_err(|s| rpc_error("UndrainGateway", s))?
                .into_inner()
                .gateway
                .context("UndrainGateway returned no gateway")?;
            output::gateway(&gateway, output);
        }
        GatewayCommand::Delete { gateway } => {
            let id = find(&mut client, &gateway).await?.id;
            client
                .delete_gateway(DeleteGatewayRequest {
                    gateway_id: id.clone(),
                })
                .await
                .map_err(|s| rpc_error("DeleteGateway", s))?;
            output::deleted_gateway(&id, output);
        }
    }
    Ok(())
}

/// The gateway `gateway` names: an id, or a name carried by exactly one
/// gateway.
async fn find(client: &mut Client, gateway: &str) -> anyhow::Result<Gateway> {
    match client
        .get_gateway(GetGatewayRequest {
            gateway_id: gateway.to_string(),
        })
        .await
    {
        Ok(response) => {
            return response
                .into_inner()
                .gateway
                .context("GetGateway returned no gateway");
        }
        // Not an id (or not a known one): try it as a name.
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::NotFound | tonic::Code::InvalidArgument
            ) => {}
        Err(status) => return Err(rpc_error("GetGateway", status)),
    }
    let all = list_all(client, ListGatewaysRequest::default(), false).await?;
    let mut named: Vec<Gateway> = all.into_iter().filter(|g| g.name == gateway).collect();
    match named.len() {
        0 => bail!("no gateway with id or name {gateway:?}"),
        1 => Ok(named.remove(0)),
        n => {
            let ids: Vec<&str> = named.iter().map(|g| g.id.as_str()).collect();
            bail!(
                "{n} gateways are named {gateway:?} ({}); use an id",
                ids.join(", ")
            )
        }
    }
}

async fn list(client: &mut Client, args: ListArgs) -> anyhow::Result<Vec<Gateway>> {
    let request = ListGatewaysRequest {
        page_size: args.page_size,
        page_token: args.page_token.clone().unwrap_or_default(),
        connection_state: match args.connection {
            None => GatewayConnectionState::Unspecified,
            Some(ConnectionArg::Connected) => GatewayConnectionState::Connected,
            Some(ConnectionArg::Disconnected) => GatewayConnectionState::Disconnected,
        } as i32,
        drain_state: match args.drain {
            None => DrainState::Unspecified,
            Some(DrainArg::Serving) => DrainState::Serving,
            Some(DrainArg::Draining) => DrainState::Draining,
            Some(DrainArg::Drained) => DrainState::Drained,
        } as i32,
        task_id: args.task.unwrap_or_default(),
        labels: args.labels.into_iter().collect(),
    };
    list_all(client, request, args.page_token.is_some()).await
}

/// Every page from `request` on (only the first when `one_page`, with the
/// next token printed).
async fn list_all(
    client: &mut Client,
    mut request: ListGatewaysRequest,
    one_page: bool,
) -> anyhow::Result<Vec<Gateway>> {
    let mut gateways = Vec::new();
    loop {
        let page = client
            .list_gateways(request.clone())
            .await
            .map_err(|s| rpc_error("ListGateways", s))?
            .into_inner();
        gateways.extend(page.gateways);
        if page.next_page_token.is_empty() {
            break;
        }
        if one_page {
            output::next_page(&page.next_page_token);
            break;
        }
        request.page_token = page.next_page_token;
    }
    Ok(gateways)
}

/// Follows a drain with WatchGateway, printing progress on stderr, until
/// the gateway is DRAINED (or `timeout_secs` pass).
async fn wait_drained(
    client: &mut Client,
    gateway: Gateway,
    timeout_secs: u64,
) -> anyhow::Result<Gateway> {
    let id = gateway.id.clone();
    let mut updates = client
        .watch_gateway(WatchGatewayRequest {
            gateway_id: id.clone(),
        })
        .await
        .map_err(|s| rpc_error("WatchGateway", s))?
        .into_inner();
    eprintln!("{}", output::drain_progress(&gateway));
    let follow = async {
        loop {
            let Some(update) = updates
                .message()
                .await
                .map_err(|s| rpc_error("WatchGateway", s))?
            else {
                bail!("the watch of gateway {id} ended before it was drained");
            };
            let Some(Update::Gateway(snapshot)) = update.update else {
                continue;
            };
            eprintln!("{}", output::drain_progress(&snapshot));
            match snapshot.drain.unwrap_or_default().state() {
                DrainState::Drained => return Ok(snapshot),
                DrainState::Serving => bail!("the drain of gateway {id} was cancelled"),
                _ => {}
            }
        }
    };
    if timeout_secs == 0 {
        return follow.await;
    }
    tokio::time::timeout(Duration::from_secs(timeout_secs), follow)
        .await
        .unwrap_or_else(|_| bail!("gateway {id} was not drained within {timeout_secs}s"))
}
