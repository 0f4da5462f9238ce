//! Bearer-token authentication of the `tandem.v1` services.
//!
//! Every RPC of a `tandem.v1` service must carry the metadata
//! `authorization: Bearer <token>` with one of the configured tokens (see
//! [`crate::config`]); otherwise it fails with `UNAUTHENTICATED` before the
//! service sees it. gRPC health and reflection are not wrapped, so probes and
//! `grpcurl list` work without a token.
//!
//! Tokens are compared in constant time, and neither the expected nor the
//! presented token ever appears in a message or a log.

use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The interceptor guarding the `tandem.v1` services.
#[derive(Clone)]
pub struct BearerAuth {
    /// Accepted tokens; `None` when authentication is disabled
    /// (`--insecure-no-auth`).
    tokens: Option<Arc<[String]>>,
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tokens {
            Some(tokens) => write!(f, "BearerAuth({} token(s))", tokens.len()),
            None => f.write_str("BearerAuth(disabled)"),
        }
    }
}

impl BearerAuth {
    /// Accepts any of `tokens`.
    pub fn new(tokens: Vec<String>) -> BearerAuth {
        BearerAuth {
            tokens: Some(tokens.into()),
        }
    }

    /// Accepts every request (`--insecure-no-auth`).
    pub fn disabled() -> BearerAuth {
        BearerAuth { tokens: None }
    }

    /// False when every request is accepted.
    pub fn is_enabled(&self) -> bool {
        self.tokens.is_some()
    }

    /// Checks the `authorization` metadata of a request.
    pub fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(tokens) = &self.tokens else {
            return Ok(());
        };
        let Some(value) = request.metadata().get("authorization") else {
            return Err(Status::unauthenticated(
                "missing bearer token: send the metadata `authorization: Bearer <token>` \
                 (tandemctl: --token or TANDEM_TOKEN)",
            ));
        };
        let value = value.to_str().map_err(|_| {
            Status::unauthenticated("the authorization metadata is not printable ASCII")
        })?;
        let presented = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(Status::unauthenticated(
                    "the authorization metadata must use the Bearer scheme: `Bearer <token>`",
                ));
            }
        };
        // Check every token, so the time taken does not tell which matched.
        let matched = tokens.iter().fold(false, |acc, expected| {
            acc | constant_time_eq(expected.as_bytes(), presented.as_bytes())
        });
        if matched {
            Ok(())
        } else {
            Err(Status::unauthenticated("invalid bearer token"))
        }
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(&request)?;
        Ok(request)
    }
}

/// Equality whose running time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(authorization: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        request
    }

    #[test]
    fn only_a_configured_bearer_token_passes() {
        let auth = BearerAuth::new(vec![
            "old-token-0123456789".into(),
            "new-token-0123456789".into(),
        ]);
        auth.check(&request(Some("Bearer old-token-0123456789")))
            .unwrap();
        auth.check(&request(Some("bearer new-token-0123456789")))
            .unwrap();
        for (value, needle) in [
            (None, "missing bearer token"),
            (Some("Bearer nope-nope-nope-nope"), "invalid bearer token"),
            (Some("Basic b2xkLXRva2Vu"), "Bearer scheme"),
            (Some("old-token-0123456789"), "Bearer scheme"),
        ] {
            let err = auth.check(&request(value)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated);
            assert!(err.message().contains(needle), "{value:?}: {err}");
            assert!(!err.message().contains("0123456789"), "token echoed: {err}");
        }
        BearerAuth::disabled().check(&request(None)).unwrap();
    }

    #[test]
    fn comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
