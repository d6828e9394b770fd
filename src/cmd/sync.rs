//! `approuter sync` (what cron runs every minute) and `approuter deploy` (a sync that deploys the production branch's head even if it was rolled back or failed).

use anyhow::Result;
use std::process::ExitCode;

use super::exit_if;
use crate::deploy::lock::{self, Busy};
use crate::deploy::sync::{self, Options};
use crate::layout::Layout;

/// `wait`: `Some(true)` waits for whatever holds the lock, `Some(false)` refuses at once,
/// `None` (cron's sync) leaves quietly when another sync runs and refuses anything else.
pub fn run(layout: &Layout, opts: &Options, wait: Option<bool>) -> Result<ExitCode> {
    let command = if opts.redeploy { "deploy" } else { "sync" };
    let busy = match wait {
        Some(true) => Busy::Wait,
        Some(false) => Busy::Refuse,
        None => Busy::LeaveToSync,
    };
    super::check_configuration(layout, command)?;
    let Some(_lock) = lock::take(layout, command, busy)? else {
        return Ok(ExitCode::SUCCESS);
    };
    Ok(exit_if(sync::run(layout, opts)?))
}
