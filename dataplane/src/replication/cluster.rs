//! What replication needs from a cluster: one complete exchange, made with
//! the gateway's own credentials. The gateway reaches its clusters through
//! [`Upstream`]; the replay unit tests through an in-memory cluster.

use std::future::Future;

use bytes::Bytes;
use pingora::http::RequestHeader;

use crate::upstream::{ExchangeError, Response, Upstream};

/// A cluster replication reads from or writes to.
pub trait Cluster: std::fmt::Debug + Send + Sync + 'static {
    /// Sends one request with a complete body and reads the complete
    /// answer, with the gateway's own credentials.
    fn exchange(
        &self,
        header: RequestHeader,
        body: Bytes,
    ) -> impl Future<Output = Result<Response, ExchangeError>> + Send;

    /// The cluster's address, for status pages and reports.
    fn url(&self) -> &str;

    /// `"primary"` or `"backup"` as configured, for messages.
    fn role(&self) -> &'static str;
}

impl Cluster for Upstream {
    fn exchange(
        &self,
        header: RequestHeader,
        body: Bytes,
    ) -> impl Future<Output = Result<Response, ExchangeError>> + Send {
        Upstream::exchange(self, header, body, true)
    }

    fn url(&self) -> &str {
        &self.config().url
    }

    fn role(&self) -> &'static str {
        self.role
    }
}
