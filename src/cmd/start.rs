//! `approuter start`: the whole environment (checkouts, files, supervisor, a wait for health), or single services brought up.

use anyhow::{bail, Result};
use std::process::ExitCode;
use std::time::Duration;

use super::{exit_if, select, status};
use crate::deploy::environment::{self, Started};
use crate::layout::Layout;
use crate::supervise::control;

/// How long `start SERVICE` waits for a service to run.
pub const SERVICE_START_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(layout: &Layout, services: &[String]) -> Result<ExitCode> {
    if !services.is_empty() {
        return start_services(layout, services);
    }
    Ok(exit_if(whole(layout)?))
}

/// Starts the whole environment and shows the panel; true when all is healthy.
pub fn whole(layout: &Layout) -> Result<bool> {
    let healthy = match environment::start(layout)? {
        Started::AlreadyRunning(pid) => {
            println!("approuter is already running here (svscan pid {pid}); nothing changed");
            true
        }
        Started::Started { healthy } => healthy,
    };
    status::panel(layout, &[], false)?;
    Ok(healthy)
}

fn start_services(layout: &Layout, names: &[String]) -> Result<ExitCode> {
    let names = select(layout, names)?;
    let up = super::control(layout, &names, control::UP, SERVICE_START_TIMEOUT, |st| {
        st.is_up()
    })?;
    if !up {
        bail!(
            "not every service came up within {} s; see `approuter status` and its log",
            SERVICE_START_TIMEOUT.as_secs()
        );
    }
    Ok(ExitCode::SUCCESS)
}
