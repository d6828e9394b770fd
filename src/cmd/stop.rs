//! `approuter stop SERVICE...`: services brought down through their control FIFOs, and a wait until they are.

use anyhow::{bail, Result};
use std::process::ExitCode;
use std::time::Duration;

use super::select;
use crate::config::{Config, Settings};
use crate::layout::Layout;
use crate::state;
use crate::supervise::control;

/// How long `stop` waits: the services' stop grace, and a little more.
fn stop_timeout(grace_secs: u64) -> Duration {
    Duration::from_secs(grace_secs + 5)
}

pub fn run(layout: &Layout, names: &[String], force: bool) -> Result<ExitCode> {
    let grace = Config::load(layout)
        .map(|c| c.settings.stop_grace_secs)
        .unwrap_or(Settings::default().stop_grace_secs);
    let timeout = stop_timeout(grace);
    let names = select(layout, names)?;
    if names.is_empty() {
        bail!("no service named; known services are listed by `approuter status`");
    }
    // Stopping the active instance would leave production to the other one, which may run
    // another version: an operator who wants that says so.
    let production = |n: &String| crate::plan::Slot::BOTH.iter().any(|s| s.name() == n);
    if !force && names.iter().any(production) {
        // Which one serves must be known; not knowing is no reason to stop either.
        let active = state::load_active(layout).map_err(|e| {
            anyhow::anyhow!("{e:#}; cannot tell which production instance serves (`approuter stop --force` stops it anyway)")
        })?;
        if names.iter().any(|n| n == active.name()) {
            bail!(
                "{} serves production; stopping it hands production to {} without a health check: run `approuter switch` first, or `approuter stop --force {0}`",
                active.name(),
                active.other().name()
            );
        }
    }
    let down = super::control(layout, &names, control::DOWN, timeout, |st| st.is_down())?;
    if !down {
        bail!("not every service went down within {} s", timeout.as_secs());
    }
    Ok(ExitCode::SUCCESS)
}
