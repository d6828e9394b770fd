//! `approuter sync`: one sync at a time; it looks at what is (facts), decides what to do (`decide`, pure), then does it (`apply`) and says so (`report`).

mod apply;
pub mod decide;
mod report;

use anyhow::Result;
use std::collections::BTreeMap;

use super::generate::list_services;
use super::load_plan;
use crate::config::Config;
use crate::ext::git;
use crate::layout::Layout;
use crate::plan::Plan;
use crate::state;
use crate::supervise::client;
use crate::util::file as fsx;
use crate::util::pidlock::{self, Acquired};
use decide::{Facts, Seen};
use report::Report;

pub struct Options {
    /// Wait for a running sync to finish instead of leaving at once.
    pub wait: bool,
    /// Say what would be done; change nothing.
    pub dry_run: bool,
    /// Also say what did not need doing.
    pub verbose: bool,
}

/// Runs one sync. Ok(false) when something it set out to do failed.
pub fn run(layout: &Layout, opts: &Options) -> Result<bool> {
    let mut r = Report::new(opts.verbose);
    fsx::ensure_dir(&layout.run_dir())?;
    let _lock = match pidlock::acquire(&layout.sync_lock(), opts.wait, 0o644)? {
        Acquired::Mine(lock) => lock,
        Acquired::Busy { pid } => {
            r.say(&format!(
                "another sync is running (pid {}); leaving it to finish",
                pid.map_or_else(|| "unknown".to_string(), |p| p.to_string())
            ));
            return Ok(true);
        }
    };
    let (config, plan) = load_plan(layout)?;
    let facts = gather(layout, &config, &plan)?;
    let actions = decide::decide(&facts, &plan);
    if opts.dry_run {
        for action in &actions {
            match action {
                decide::Action::Say(decide::Note::Verbose(line)) => r.verbose(line),
                other => {
                    if let Some(line) = other.dry_run_line() {
                        r.say(&line);
                    }
                }
            }
        }
        return Ok(!actions
            .iter()
            .any(|a| matches!(a, decide::Action::Say(decide::Note::Failure(_)))));
    }
    apply::apply(
        &mut apply::Ctx {
            layout,
            config: &config,
            plan: &plan,
            url: &facts.url,
            r: &mut r,
        },
        actions,
    )?;
    Ok(!r.failed)
}

/// Looks at everything `decide` needs: the supervisor, the remote (only when approuter is meant
/// to run here), every checkout, the service directories and the remembered state.
fn gather(layout: &Layout, config: &Config, plan: &Plan) -> Result<Facts> {
    let url = git::resolve_url(layout.root(), &config.repo);
    let svscan_running = client::svscan_pid(&layout.service_dir()).is_some();
    let meant_to_run = state::meant_to_run(layout);
    let remote = (svscan_running || meant_to_run)
        .then(|| git::ls_remote(&url).map_err(|e| format!("{e:#}")));
    let checkouts = plan
        .instances
        .iter()
        .map(|inst| {
            let dir = layout.checkout(inst);
            let seen = if !dir.exists() {
                Seen::Missing
            } else {
                match git::inspect(&dir) {
                    Ok(co) => Seen::At(co),
                    Err(e) => Seen::Unreadable(format!("{e:#}")),
                }
            };
            (inst.name.clone(), seen)
        })
        .collect::<BTreeMap<_, _>>();
    Ok(Facts {
        url,
        svscan_running,
        meant_to_run,
        remote,
        checkouts,
        services: list_services(&layout.service_dir())?,
        old_ports: state::load_ports(layout)?,
        failed_commit: state::load_failed(layout)?,
    })
}
