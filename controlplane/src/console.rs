//! The web console (`--ui-listen`): the browser application of `console/`
//! (its `dist/` embedded in the binary at build time) and, on the same
//! origin, every `tandem.v1` service over gRPC-web (`tonic-web`), behind
//! the same bearer-token check as the gRPC listener. The console has no API
//! of its own.
//!
//! Requests that are not gRPC-web are served from the embedded files: a
//! path that names a file gets it, any other path gets `index.html` (the
//! console routes in the URL's fragment). Every answer forbids framing,
//! sniffing and any fetch outside the origin (Content-Security-Policy).

use axum::body::Body;
use http::{HeaderValue, Request, Response, StatusCode, header};
use rust_embed::Embed;

/// The built console (`console/build.sh` writes it; CI checks it matches
/// the sources).
#[derive(Embed)]
#[folder = "../console/dist/"]
struct Assets;

/// The policy every console answer carries: scripts, styles and calls only
/// from the origin, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'none'";

/// `routes` (the `tandem.v1` services), with the console's files for every
/// other path.
pub fn routes(routes: tonic::service::Routes) -> tonic::service::Routes {
    routes.into_axum_router().fallback(asset).into()
}

/// The embedded file a request names, else `index.html`; a gRPC request
/// for a method no service has is answered UNIMPLEMENTED.
async fn asset(request: Request<Body>) -> Response<Body> {
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        return tonic::Status::unimplemented(format!("no such method: {}", request.uri().path()))
            .into_http();
    }
    let path = request.uri().path().trim_start_matches('/');
    let (name, file) = match Assets::get(path) {
        Some(file) if !path.is_empty() => (path, file),
        _ => match Assets::get("index.html") {
            Some(file) => ("index.html", file),
            None => {
                return Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .body(Body::from("the console is not built into this binary"))
                    .unwrap_or_default();
            }
        },
    };
    let content_type = file.metadata.mimetype();
    let mut response = Response::new(Body::from(file.data.into_owned()));
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    // The page is small and changes with the binary: always revalidated.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    tracing::trace!(file = name, "console file served");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_page_is_embedded() {
        let index = Assets::get("index.html").expect("console/dist/index.html is embedded");
        assert_eq!(index.metadata.mimetype(), "text/html");
        assert!(std::str::from_utf8(&index.data).unwrap().contains("<html"));
    }

    #[tokio::test]
    async fn unknown_paths_get_the_page_and_unknown_methods_unimplemented() {
        let page = asset(Request::get("/tasks/123").body(Body::empty()).unwrap()).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html");
        assert!(
            page.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("connect-src 'self'")
        );
        let grpc = asset(
            Request::post("/tandem.v1.NoService/Nothing")
                .header(header::CONTENT_TYPE, "application/grpc-web+proto")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(grpc.headers()["grpc-status"], "12");
    }
}
