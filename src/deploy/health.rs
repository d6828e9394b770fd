//! Waiting until instances answer their health path with 200, for one or many at once, and giving up at once when an instance's process exits meanwhile.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::listener::{self, Listening};
use crate::ext::http;
use crate::supervise::status;

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
    /// The service directory to watch: once its process has been seen running, its exit (or a
    /// new pid: it was restarted) ends the wait at once, as a failure; and an answer counts
    /// only when the listener on the port is one of the service's own processes.
    pub watch: Option<PathBuf>,
    /// The watched service's process when the wait begins, when known (a restart just started
    /// it): its end, even before the first look, is what the wait watches for.
    pub pid: Option<u32>,
}

/// Why a target did not turn healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unhealthy {
    /// It did not answer 200 by the deadline: the last thing that went wrong.
    Timeout(String),
    /// Its process ended while it was waited for: how (`exit 1 after 0.2s`).
    Exited(String),
    /// Something else listens on its port and answered: who.
    Foreign(String),
}

impl std::fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Unhealthy::Timeout(why) => write!(f, "{why}"),
            Unhealthy::Exited(how) => write!(f, "its process ended ({how})"),
            Unhealthy::Foreign(who) => write!(
                f,
                "the answer came from {who}, which is not one of its own processes"
            ),
        }
    }
}

/// Waits for every target; `on_healthy` is called as each turns healthy, with how long it took
/// since `since`. Returns, in the targets' order, how long each took or why it did not.
pub fn wait_all(
    targets: &[Target],
    path: &str,
    since: Instant,
    on_healthy: &(dyn Fn(&str, Duration) + Sync),
) -> Vec<Result<Duration, Unhealthy>> {
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

/// Waits for one target.
pub fn wait_one(target: Target, path: &str) -> Result<Duration, Unhealthy> {
    wait_all(&[target], path, Instant::now(), &|_, _| {})
        .pop()
        .expect("one target, one result")
}

/// One look at an instance: its health path on its port, and that the listener is its own.
pub fn check_once(service: &std::path::Path, port: u16, path: &str) -> Result<(), Unhealthy> {
    if let Listening::Foreign(who) = listener::of_dir(service, port) {
        return Err(Unhealthy::Foreign(who));
    }
    match http::get(port, path, None, http::REQUEST_TIMEOUT) {
        Ok(a) if a.status == 200 => Ok(()),
        Ok(a) => Err(Unhealthy::Timeout(format!("{path} answered {}", a.status))),
        Err(e) => Err(Unhealthy::Timeout(e)),
    }
}

/// How a watched service's run ended, once the pid seen running no longer runs.
fn ended(dir: &std::path::Path, seen: &mut Option<u32>) -> Option<String> {
    let st = status::read(dir).ok()?;
    match *seen {
        None => {
            if st.is_up() {
                *seen = Some(st.pid);
            }
            None
        }
        Some(pid) if st.is_up() && st.pid == pid => None,
        Some(_) => {
            let extra = status::read_extra(dir);
            Some(if extra.last_exit.is_empty() {
                "it was restarted".to_string()
            } else {
                extra.last_exit
            })
        }
    }
}

fn wait_chunk(
    targets: &[Target],
    path: &str,
    since: Instant,
    on_healthy: &(dyn Fn(&str, Duration) + Sync),
) -> Vec<Result<Duration, Unhealthy>> {
    let mut results: Vec<Option<Result<Duration, Unhealthy>>> = vec![None; targets.len()];
    let mut seen: Vec<Option<u32>> = targets.iter().map(|t| t.pid).collect();
    loop {
        for ((t, result), seen) in targets.iter().zip(results.iter_mut()).zip(seen.iter_mut()) {
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
            let foreign = match (&outcome, &t.watch) {
                (Ok(_), Some(dir)) => match listener::of_dir(dir, t.port) {
                    Listening::Foreign(who) => Some(who),
                    _ => None,
                },
                _ => None,
            };
            match outcome {
                Ok(_) if foreign.is_some() => {
                    *result = Some(Err(Unhealthy::Foreign(foreign.unwrap_or_default())));
                }
                Ok(took) => {
                    on_healthy(&t.name, took);
                    *result = Some(Ok(took));
                }
                Err(why) => {
                    if let Some(how) = t.watch.as_ref().and_then(|d| ended(d, seen)) {
                        *result = Some(Err(Unhealthy::Exited(how)));
                    } else if Instant::now() >= t.deadline {
                        *result = Some(Err(Unhealthy::Timeout(why)));
                    }
                }
            }
        }
        if results.iter().all(Option::is_some) {
            return results.into_iter().flatten().collect();
        }
        std::thread::sleep(POLL_EVERY);
    }
}
