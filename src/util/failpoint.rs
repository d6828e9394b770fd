//! Fault injection for the fault suite: with `APPROUTER_FAILPOINT=<step>` in its environment, a command stops at that step and waits to be killed, so a test can end it at an exact point. Does nothing unless set.

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
