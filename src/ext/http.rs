//! approuter's HTTP client: `GET <health_path>` on an instance's port, or through nginx with a routing cookie, and waiting for a 200.

use std::time::{Duration, Instant};

use crate::render::ROUTING_COOKIE;

/// How long one health request may take when nothing tighter applies.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What one request found.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub latency: Duration,
    /// nginx's `X-Served-By`, when there is one.
    pub served_by: Option<String>,
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// One `GET http://127.0.0.1:<port><path>`, optionally carrying the routing cookie with the
/// value `route`.
pub fn get(
    port: u16,
    path: &str,
    route: Option<&str>,
    timeout: Duration,
) -> Result<Answer, String> {
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut req = agent(timeout).get(&url);
    if let Some(value) = route {
        req = req.header("Cookie", format!("{ROUTING_COOKIE}={value}"));
    }
    let start = Instant::now();
    match req.call() {
        Ok(resp) => Ok(Answer {
            status: resp.status().as_u16(),
            latency: start.elapsed(),
            served_by: resp
                .headers()
                .get("x-served-by")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        }),
        Err(e) => Err(match e {
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                format!("nothing listens on port {port}")
            }
            ureq::Error::Timeout(_) => format!("no answer within {:.1}s", timeout.as_secs_f64()),
            other => other.to_string(),
        }),
    }
}
