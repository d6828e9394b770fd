//! `approuter sync`: what cron runs every minute.

use anyhow::Result;
use std::process::ExitCode;

use super::exit_if;
use crate::deploy::sync::{self, Options};
use crate::layout::Layout;

pub fn run(layout: &Layout, opts: &Options) -> Result<ExitCode> {
    Ok(exit_if(sync::run(layout, opts)?))
}
