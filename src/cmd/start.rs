//! `approuter start`: the whole environment (checkouts, files, supervisor, a wait for health), or single services brought up.

use anyhow::{bail, Result};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::{exit_if, select, status};
use crate::deploy::environment::{self, Started};
use crate::deploy::{health, load_plan};
use crate::layout::Layout;
use crate::plan::NGINX;
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
    status::settle(layout, &[]);
    status::panel(layout, &[], false)?;
    Ok(healthy)
}

/// Brings the named services up, then waits until each instance (and nginx) answers its
/// health path, as the whole `start` does: a request right after gets an answer.
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
    // Services are controlled even with a configuration broken since `start`: then there is
    // no port to ask, and running is all that can be said.
    let plan = match load_plan(layout) {
        Ok((_, plan)) => plan,
        Err(e) => {
            eprintln!("approuter: warning: not waiting for health: {e:#}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let deadline = Instant::now() + plan.settings.start_timeout();
    let targets: Vec<health::Target> = names
        .iter()
        .filter_map(|n| {
            let port = match plan.instance(n) {
                Some(i) => i.port,
                None if n == NGINX => plan.settings.listen_port,
                None => return None,
            };
            Some(health::Target {
                name: n.clone(),
                port,
                deadline,
                watch: Some(layout.service(n)),
                pid: None,
            })
        })
        .collect();
    let results = health::wait_all(
        &targets,
        &plan.settings.health_path,
        Instant::now(),
        &|_, _| {},
    );
    let failed: Vec<String> = targets
        .iter()
        .zip(results)
        .filter_map(|(t, r)| {
            r.err().map(|why| {
                format!(
                    "{} is not healthy: {why}; its log: {}",
                    t.name,
                    layout.log_current(&t.name).display()
                )
            })
        })
        .collect();
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}
