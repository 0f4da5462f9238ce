//! A tower layer around the gRPC server that counts every request by
//! service, method and final status code, and times unary requests.
//!
//! A request is recorded once, when its response ends: for a unary RPC when
//! the response (with its trailers) has been sent, for a streaming RPC when
//! the stream closes — so an agent stream shows up in
//! `tandem_controlplane_grpc_requests_total` only when it ends (with the code
//! it ended with), and open streams are the `agent_streams` gauge. The code
//! comes from `grpc-status` in the response headers (errors answered at once,
//! e.g. by the authentication check) or in the trailers; a response given up
//! before its end (the client went away) counts as `CANCELLED`.
//!
//! Only methods the server declares (the descriptor sets of `tandem.v1`, gRPC
//! health and reflection) get their own labels; any other path counts as
//! service and method `unknown`, so a scanner cannot create time series.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use prost::Message;
use tonic::Code;

use super::{Metrics, RpcLabels};

/// Label value of a path the server does not declare.
const UNKNOWN: &str = "unknown";

/// A method the server declares.
#[derive(Debug, Clone)]
struct MethodInfo {
    service: String,
    method: String,
    /// Unary on both sides: its latency is observed.
    unary: bool,
}

/// Wraps a gRPC server so that its requests are recorded in [`Metrics`].
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    metrics: Metrics,
    methods: Arc<HashMap<String, MethodInfo>>,
}

impl GrpcMetricsLayer {
    /// Records into `metrics` the methods declared by the encoded
    /// `FileDescriptorSet`s in `descriptor_sets`.
    pub fn new(metrics: Metrics, descriptor_sets: &[&[u8]]) -> anyhow::Result<GrpcMetricsLayer> {
        let mut methods = HashMap::new();
        for encoded in descriptor_sets {
            let set = prost_types::FileDescriptorSet::decode(*encoded)
                .map_err(|e| anyhow::anyhow!("decoding a gRPC descriptor set: {e}"))?;
            for file in &set.file {
                for service in &file.service {
                    let service_name = match file.package() {
                        "" => service.name().to_string(),
                        package => format!("{package}.{}", service.name()),
                    };
                    for method in &service.method {
                        methods.insert(
                            format!("/{service_name}/{}", method.name()),
                            MethodInfo {
                                service: service_name.clone(),
                                method: method.name().to_string(),
                                unary: !method.client_streaming() && !method.server_streaming(),
                            },
                        );
                    }
                }
            }
        }
        Ok(GrpcMetricsLayer {
            metrics,
            methods: Arc::new(methods),
        })
    }
}

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service built by [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    layer: GrpcMetricsLayer,
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for GrpcMetricsService<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let mut call = self.layer.start(request.uri().path());
        let response = self.inner.call(request);
        Box::pin(async move {
            match response.await {
                Ok(response) => {
                    if let Some(status) = response.headers().get("grpc-status") {
                        call.set_code(status);
                    }
                    Ok(response.map(|inner| MeteredBody { inner, call }))
                }
                Err(err) => {
                    call.code = Some(Code::Unknown);
                    drop(call);
                    Err(err)
                }
            }
        })
    }
}

impl GrpcMetricsLayer {
    fn start(&self, path: &str) -> CallRecord {
        let (service, method, unary) = match self.methods.get(path) {
            Some(info) => (info.service.clone(), info.method.clone(), info.unary),
            None => (UNKNOWN.to_string(), UNKNOWN.to_string(), false),
        };
        CallRecord {
            metrics: self.metrics.clone(),
            service,
            method,
            unary,
            started: Instant::now(),
            code: None,
            ended: false,
        }
    }
}

/// One request in flight; recorded when dropped (with the response body, or
/// earlier if the response never came).
struct CallRecord {
    metrics: Metrics,
    service: String,
    method: String,
    unary: bool,
    started: Instant,
    /// The `grpc-status` seen so far.
    code: Option<Code>,
    /// The response body reached its end.
    ended: bool,
}

impl CallRecord {
    /// Takes the code of a `grpc-status` header or trailer.
    fn set_code(&mut self, status: &http::HeaderValue) {
        self.code = Some(Code::from_bytes(status.as_bytes()));
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        let code = match (self.code, self.ended) {
            (Some(code), _) => code,
            // A complete gRPC response always carries a status.
            (None, true) => Code::Unknown,
            (None, false) => Code::Cancelled,
        };
        let duration: Option<Duration> = self.unary.then(|| self.started.elapsed());
        self.metrics.rpc_finished(
            RpcLabels {
                service: std::mem::take(&mut self.service),
                method: std::mem::take(&mut self.method),
                code: code_name(code).to_string(),
            },
            duration,
        );
    }
}

/// A response body that records its request when it ends.
pub struct MeteredBody<B> {
    inner: B,
    call: CallRecord,
}

impl<B> Body for MeteredBody<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(status) = frame.trailers_ref().and_then(|t| t.get("grpc-status")) {
                    this.call.set_code(status);
                }
            }
            // The stream broke before a status could be sent.
            Poll::Ready(Some(Err(_))) => this.call.code = Some(Code::Unknown),
            Poll::Ready(None) => this.call.ended = true,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The canonical name of a gRPC status code, as in the gRPC specification.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_methods_get_their_labels_and_others_do_not() {
        let layer = GrpcMetricsLayer::new(
            Metrics::new(),
            &[
                tandem_proto::FILE_DESCRIPTOR_SET,
                tonic_health::pb::FILE_DESCRIPTOR_SET,
            ],
        )
        .unwrap();
        let call = layer.start("/tandem.v1.ClusterService/ListClusters");
        assert_eq!(
            (call.service.as_str(), call.method.as_str(), call.unary),
            ("tandem.v1.ClusterService", "ListClusters", true)
        );
        let stream = layer.start("/tandem.v1.GatewayService/AgentStream");
        assert!(!stream.unary);
        let health = layer.start("/grpc.health.v1.Health/Check");
        assert_eq!(health.service, "grpc.health.v1.Health");
        let scan = layer.start("/wp-admin/login.php");
        assert_eq!(
            (scan.service.as_str(), scan.method.as_str()),
            (UNKNOWN, UNKNOWN)
        );
    }
}
