//! `approuter switch` (the instant rollback) and `approuter which-prod`.

use anyhow::Result;
use std::process::ExitCode;

use crate::deploy::switch;
use crate::layout::Layout;
use crate::state;

pub fn run(layout: &Layout, force: bool) -> Result<ExitCode> {
    let (to, hook) = switch::switch(layout, force)?;
    for line in hook {
        println!("{line}");
    }
    println!("production is now served by {}", to.name());
    Ok(ExitCode::SUCCESS)
}

pub fn which_prod(layout: &Layout) -> Result<ExitCode> {
    println!("{}", state::load_active(layout)?.name());
    Ok(ExitCode::SUCCESS)
}
