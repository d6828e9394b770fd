//! Fault injection for the fault suite: with `APPROUTER_FAILPOINT=<step>` in its environment, a command stops at that step and waits to be killed, or pauses there until the test lets it go, so a test can act at an exact point. Does nothing unless set.

use std::io::Write;
use std::time::Duration;

/// Stops here for good when `APPROUTER_FAILPOINT` names `step`, after saying so on stdout.
pub fn stop_at(step: &str) {
    if std::env::var("APPROUTER_FAILPOINT").as_deref() == Ok(step) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "failpoint {step}: waiting to be killed");
        let _ = out.flush();
        drop(out);
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// Waits here when `APPROUTER_FAILPOINT` names `step`, until the file named by
/// `APPROUTER_FAILPOINT_GO` exists: the test does what it must at this point, then lets the
/// command go on.
pub fn pause_at(step: &str) {
    if std::env::var("APPROUTER_FAILPOINT").as_deref() != Ok(step) {
        return;
    }
    let Some(go) = std::env::var_os("APPROUTER_FAILPOINT_GO") else {
        return;
    };
    while !std::path::Path::new(&go).exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
}
