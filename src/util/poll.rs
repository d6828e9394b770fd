//! Waiting for something with a deadline: the one polling loop every wait in approuter goes through.

use std::time::{Duration, Instant};

/// How often a wait for a local change (a status file, a process, a port) looks again: quick to
/// notice, and cheap for the minute at most such a wait lasts.
pub const EVERY: Duration = Duration::from_millis(20);

/// Calls `probe` every `every` until it returns `Some`, or `timeout` has passed (then `None`).
/// The probe always runs at least once, and once more at the deadline.
pub fn until<T>(
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(every.min(deadline - now));
    }
}

/// [`until`] for a condition: true as soon as it holds, false if it never did within `timeout`.
pub fn holds(timeout: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    until(timeout, every, || cond().then_some(())).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_at_once_or_at_the_deadline() {
        let t = Instant::now();
        assert_eq!(
            until(Duration::from_secs(5), Duration::from_millis(1), || Some(3)),
            Some(3)
        );
        assert!(t.elapsed() < Duration::from_secs(1));
        let mut calls = 0;
        let t = Instant::now();
        assert!(!holds(
            Duration::from_millis(50),
            Duration::from_millis(10),
            || {
                calls += 1;
                false
            }
        ));
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(
            calls >= 2,
            "probed at the start and at the deadline: {calls}"
        );
    }
}
