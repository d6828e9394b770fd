//! `approuter stop SERVICE...`: services brought down through their control FIFOs, and a wait until they are.

use anyhow::{bail, Result};
use std::process::ExitCode;
use std::time::Duration;

use super::select;
use crate::config::{Config, Settings};
use crate::layout::Layout;
use crate::supervise::control;

/// How long `stop` waits: the services' stop grace, and a little more.
fn stop_timeout(grace_secs: u64) -> Duration {
    Duration::from_secs(grace_secs + 5)
}

pub fn run(layout: &Layout, names: &[String]) -> Result<ExitCode> {
    let grace = Config::load(layout)
        .map(|c| c.settings.stop_grace_secs)
        .unwrap_or(Settings::default().stop_grace_secs);
    let timeout = stop_timeout(grace);
    let names = select(layout, names)?;
    if names.is_empty() {
        bail!("no service named; known services are listed by `approuter status`");
    }
    let down = super::control(layout, &names, control::DOWN, timeout, |st| st.is_down())?;
    if !down {
        bail!("not every service went down within {} s", timeout.as_secs());
    }
    Ok(ExitCode::SUCCESS)
}
