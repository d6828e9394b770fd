//! The health check: `GET <health_path>` on an instance's port, or through nginx with a routing cookie.

use std::time::{Duration, Instant};

/// The cookie nginx routes by (its name is also in skel/nginx.conf).
pub const ROUTING_COOKIE: &str = "approuter_alt";

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

/// One `GET http://127.0.0.1:<port><path>`, optionally carrying the routing cookie for `route`.
pub fn get(
    port: u16,
    path: &str,
    route: Option<&str>,
    timeout: Duration,
) -> Result<Answer, String> {
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut req = agent(timeout).get(&url);
    if let Some(name) = route {
        req = req.header("Cookie", format!("{ROUTING_COOKIE}={name}"));
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

/// Polls the health path (every 50 ms: an instance's start-up is what a deploy waits for) until it answers 200 or `deadline` passes. Returns how long
/// it took, or the last thing that went wrong.
pub fn wait_healthy(port: u16, path: &str, deadline: Instant) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let last = match get(
            port,
            path,
            None,
            left.clamp(Duration::from_millis(100), Duration::from_secs(5)),
        ) {
            Ok(a) if a.status == 200 => return Ok(start.elapsed()),
            Ok(a) => format!("{path} answered {}", a.status),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        std::thread::sleep(
            Duration::from_millis(50).min(deadline.saturating_duration_since(Instant::now())),
        );
    }
}
