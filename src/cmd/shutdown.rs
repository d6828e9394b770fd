//! `approuter shutdown`: every service down, nginx included, then the supervisor and its logger.

use anyhow::Result;
use std::process::ExitCode;

use crate::deploy::environment;
use crate::layout::Layout;

pub fn run(layout: &Layout) -> Result<ExitCode> {
    if environment::shutdown(layout)? {
        println!("approuter stopped");
    } else {
        println!("approuter is not running here; nothing to stop");
    }
    Ok(ExitCode::SUCCESS)
}
