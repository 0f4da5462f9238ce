//! A stand-in for a secured cluster: an HTTP/1.1 front that answers 401
//! (like Elasticsearch's security) unless a request carries the expected
//! `authorization`, and forwards the others to a real, unsecured node. The
//! test nodes run without security; this is how tests prove that a client
//! sends the right credentials.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What one request carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Its `authorization` header ("" when absent).
    pub authorization: String,
}

/// The front; stops when dropped.
pub struct SecuredFront {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    seen: Arc<parking_lot::Mutex<Vec<Seen>>>,
    expected: Arc<parking_lot::RwLock<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl SecuredFront {
    /// A front to `upstream` admitting only `authorization`.
    pub async fn start(upstream: &str, authorization: &str) -> SecuredFront {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let expected = Arc::new(parking_lot::RwLock::new(authorization.to_string()));
        let upstream = Arc::new(upstream.to_string());
        let (seen_in_task, expected_in_task) = (seen.clone(), expected.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (upstream, expected, seen) = (
                    upstream.clone(),
                    expected_in_task.clone(),
                    seen_in_task.clone(),
                );
                tokio::spawn(async move {
                    let _ = serve(stream, &upstream, &expected, &seen).await;
                });
            }
        });
        SecuredFront {
            url,
            seen,
            expected,
            task,
        }
    }

    /// From now on admits only `authorization` (a password rotation).
    pub fn set_expected(&self, authorization: &str) {
        *self.expected.write() = authorization.to_string();
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
}

impl Drop for SecuredFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Serves the requests of one connection (keep-alive, `content-length`
/// bodies).
async fn serve(
    mut stream: TcpStream,
    upstream: &str,
    expected: &parking_lot::RwLock<String>,
    seen: &parking_lot::Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    loop {
        let head_end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
        let mut lines = head.lines();
        let mut request_line = lines.next().unwrap_or_default().split_whitespace();
        let method = request_line.next().unwrap_or("GET").to_string();
        let path = request_line.next().unwrap_or("/").to_string();
        let header = |wanted: &str| {
            head.lines().skip(1).find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case(wanted)
                    .then(|| value.trim().to_string())
            })
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 64 * 1024];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
        let body = buffer[head_end..head_end + length].to_vec();
        buffer.drain(..head_end + length);
        let authorization = header("authorization").unwrap_or_default();
        seen.lock().push(Seen {
            method: method.clone(),
            path: path.clone(),
            authorization: authorization.clone(),
        });

        let admitted = authorization == *expected.read();
        let (status, content_type, reply_body) = if !admitted {
            (
                "401 Unauthorized".to_string(),
                "application/json".to_string(),
                br#"{"error":{"root_cause":[{"type":"security_exception","reason":"unable to authenticate user for REST request"}],"type":"security_exception","reason":"unable to authenticate user for REST request"},"status":401}"#.to_vec(),
            )
        } else {
            let mut forwarded = crate::http().request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET),
                format!("{upstream}{path}"),
            );
            if let Some(content_type) = header("content-type") {
                forwarded = forwarded.header("content-type", content_type);
            }
            let response = forwarded
                .body(body)
                .send()
                .await
                .map_err(std::io::Error::other)?;
            let code = response.status();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_string();
            let bytes = response.bytes().await.map_err(std::io::Error::other)?;
            (
                format!(
                    "{} {}",
                    code.as_u16(),
                    code.canonical_reason().unwrap_or("")
                ),
                content_type,
                bytes.to_vec(),
            )
        };
        let mut reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
            reply_body.len()
        );
        if status.starts_with("401") {
            reply.push_str("WWW-Authenticate: Basic realm=\"security\" charset=\"UTF-8\"\r\n");
        }
        reply.push_str("\r\n");
        stream.write_all(reply.as_bytes()).await?;
        stream.write_all(&reply_body).await?;
    }
}
