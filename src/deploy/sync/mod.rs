//! `approuter sync`: one state change at a time; it looks at what is (facts), decides what to do (`decide`, pure), then does it (`apply`) and says so (`report`).

mod apply;
pub mod decide;
mod report;

use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};

use super::generate::{self, list_services};
use super::health;
use super::listener::{self, Listening};
use super::load_plan;
use super::processes;
use crate::config::Config;
use crate::ext::git;
use crate::layout::Layout;
use crate::plan::{Plan, Slot};
use crate::state;
use crate::supervise::client;
use decide::{Action, Facts, Note, Seen};
use report::Report;

pub struct Options {
    /// Say what would be done; change nothing.
    pub dry_run: bool,
    /// Also say what did not need doing.
    pub verbose: bool,
    /// Deploy the production branch's head even if it was rolled back or failed before.
    pub redeploy: bool,
}

/// Runs one sync (the caller holds approuter's lock). Ok(false) when something it set out to
/// do failed, or production does not answer.
pub fn run(layout: &Layout, opts: &Options) -> Result<bool> {
    let mut r = Report::new(opts.verbose);
    let (config, plan) = load_plan(layout)?;
    let facts = gather(layout, &config, &plan, opts.redeploy)?;
    let actions = decide::decide(&facts, &plan);
    if opts.dry_run {
        for action in &actions {
            match action {
                Action::Say(Note::Verbose(line)) => r.verbose(line),
                Action::Regenerate { skip } => {
                    // Alternates added or removed have lines of their own.
                    let changes = generate::preview(layout, &config, &plan.without(skip))?;
                    for line in changes.summary(&plan) {
                        if line != "nothing changed" && !line.contains("service") {
                            r.say(&format!("would {}", line.replacen("updated", "update", 1)));
                        }
                    }
                    for name in changes.updated {
                        r.say(&format!("would restart {name}: its run script changes"));
                    }
                }
                other => {
                    if let Some(line) = other.dry_run_line() {
                        r.say(&line);
                    }
                }
            }
        }
        return Ok(!actions
            .iter()
            .any(|a| matches!(a, Action::Say(Note::Failure(_)))));
    }
    let mut ctx = apply::Ctx {
        layout,
        config: &config,
        plan,
        url: &facts.url,
        r: &mut r,
        skip: BTreeSet::new(),
    };
    apply::apply(&mut ctx, actions)?;
    // The testers' page says what runs now, whether or not anything changed.
    if facts.svscan_running || facts.meant_to_run {
        generate::refresh_picker(layout, &ctx.plan.without(&ctx.skip))?;
    }
    Ok(!r.failed)
}

/// Looks at everything `decide` needs: the supervisor, the remote (only when approuter is meant
/// to run here), every checkout, the production instances' health, the service directories and
/// the remembered state.
fn gather(layout: &Layout, config: &Config, plan: &Plan, redeploy: bool) -> Result<Facts> {
    let url = git::resolve_url(layout.root(), &config.repo);
    let svscan_running = client::svscan(&layout.service_dir())?.is_some();
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
    // A port held by anything but the instance's own processes: a squatter, a process that
    // escaped its service, or anything on the port of an instance that is down.
    let foreign: BTreeMap<String, String> = plan
        .instances
        .iter()
        .filter_map(|i| match listener::of(layout, &i.name, i.port) {
            Listening::Foreign(who) => Some((i.name.clone(), who)),
            _ => None,
        })
        .collect();
    let healthy = |slot: Slot| {
        health::check_once(
            &layout.service(slot.name()),
            plan.prod(slot).port,
            &plan.settings.health_path,
        )
        .is_ok()
    };
    let runs = |slot: Slot| {
        processes::running_commit(layout, slot.name()).and_then(|c| git2::Oid::from_str(&c).ok())
    };
    Ok(Facts {
        url,
        svscan_running,
        meant_to_run,
        remote,
        checkouts,
        services: list_services(&layout.service_dir())?,
        old_ports: state::load_ports(layout)?,
        failed: state::load_failed(layout)?,
        held: state::load_held(layout)?,
        prod_healthy: Slot::BOTH.map(healthy),
        prod_runs: Slot::BOTH.map(runs),
        redeploy,
        foreign,
        releases: plan
            .instances
            .iter()
            .filter_map(|i| {
                Some((
                    i.name.clone(),
                    state::load_release(layout, &i.name)?.describe(),
                ))
            })
            .collect(),
    })
}
