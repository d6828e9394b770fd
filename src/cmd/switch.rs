//! `approuter switch` (the instant rollback) and `approuter which-prod`.

use anyhow::Result;
use std::process::ExitCode;

use crate::deploy::switch::{self, HoldChange};
use crate::ext::git;
use crate::layout::Layout;
use crate::state;

pub fn run(layout: &Layout, force: bool) -> Result<ExitCode> {
    let done = switch::switch(layout, force)?;
    for line in &done.hook {
        println!("{line}");
    }
    println!("production is now served by {}", done.to.name());
    match &done.hold {
        HoldChange::Set(commit) => println!(
            "rolled back from {}: sync will not deploy it again on its own (a newer commit deploys as usual; `approuter deploy` deploys it now)",
            git::short_str(commit)
        ),
        HoldChange::Released(commit) => println!(
            "{} is live again: sync deploys new commits as usual",
            git::short_str(commit)
        ),
        HoldChange::None => {}
    }
    Ok(ExitCode::SUCCESS)
}

pub fn which_prod(layout: &Layout) -> Result<ExitCode> {
    println!("{}", state::load_active(layout)?.name());
    Ok(ExitCode::SUCCESS)
}
