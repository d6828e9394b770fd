//! Waiting until instances answer their health path with 200: for one, or for many at once.

use std::time::{Duration, Instant};

use crate::ext::http;

/// How often a target that is not healthy yet is asked again: an instance's start-up is what a
/// deploy waits for.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// Targets are polled by at most this many threads, each taking its share in turn.
const THREADS: usize = 8;

/// Something to wait for: `GET path` on `port` must answer 200 before `deadline`.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub port: u16,
    pub deadline: Instant,
}

/// Waits for every target; `on_healthy` is called as each turns healthy, with how long it took
/// since `since`. Returns, in the targets' order, how long each took or the last thing that
/// went wrong.
pub fn wait_all(
    targets: &[Target],
    path: &str,
    since: Instant,
    on_healthy: &(dyn Fn(&str, Duration) + Sync),
) -> Vec<Result<Duration, String>> {
    if targets.is_empty() {
        return Vec::new();
    }
    let per_thread = targets.len().div_ceil(THREADS);
    std::thread::scope(|s| {
        let handles: Vec<_> = targets
            .chunks(per_thread)
            .map(|chunk| s.spawn(move || wait_chunk(chunk, path, since, on_healthy)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("health thread"))
            .collect()
    })
}

fn wait_chunk(
    targets: &[Target],
    path: &str,
    since: Instant,
    on_healthy: &(dyn Fn(&str, Duration) + Sync),
) -> Vec<Result<Duration, String>> {
    let mut results: Vec<Option<Result<Duration, String>>> = vec![None; targets.len()];
    loop {
        for (t, result) in targets.iter().zip(results.iter_mut()) {
            if result.is_some() {
                continue;
            }
            let left = t.deadline.saturating_duration_since(Instant::now());
            let timeout = left.clamp(Duration::from_millis(100), Duration::from_secs(2));
            let outcome = match http::get(t.port, path, None, timeout) {
                Ok(a) if a.status == 200 => Ok(since.elapsed()),
                Ok(a) => Err(format!("{path} answered {}", a.status)),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(took) => {
                    on_healthy(&t.name, took);
                    *result = Some(Ok(took));
                }
                Err(why) if Instant::now() >= t.deadline => *result = Some(Err(why)),
                Err(_) => {}
            }
        }
        if results.iter().all(Option::is_some) {
            return results.into_iter().flatten().collect();
        }
        std::thread::sleep(POLL_EVERY);
    }
}
