//! Switching production to the other instance: one rename of the symlink nginx follows, no reload; a rollback records the commit it rolled back from.

use anyhow::{bail, Result};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::health::{self, Unhealthy};
use super::listener;
use super::load_plan;
use super::processes;
use crate::ext::hooks::{self, Event};
use crate::ext::{http, nginx};
use crate::layout::Layout;
use crate::plan::{Plan, Slot};
use crate::state::{self, Held};
use crate::util::{failpoint, poll};

/// How long nginx may take to serve production from the new instance.
const SERVED_TIMEOUT: Duration = Duration::from_secs(10);

/// What `approuter switch` did: the instance now active, the hold it set or released, and
/// what the `switched` hook said.
pub struct Switched {
    pub to: Slot,
    pub hold: HoldChange,
    pub hook: Vec<String>,
}

/// How a switch changed the rollback hold.
#[derive(Debug, PartialEq, Eq)]
pub enum HoldChange {
    None,
    /// Switched away from this commit: sync will not deploy it again on its own.
    Set(String),
    /// Switched to the commit that was held: sync deploys as usual again.
    Released(String),
}

/// `approuter switch`: production traffic to the other instance, after checking it is healthy.
pub fn switch(layout: &Layout, force: bool) -> Result<Switched> {
    let (_, plan) = load_plan(layout)?;
    let to = plan.active.other();
    let target = plan.prod(to);
    let path = &plan.settings.health_path;
    let healthy = match health::check_once(&layout.service(to.name()), target.port, path) {
        Ok(()) => true,
        // Never, not even with --force: production would go to whoever holds the port.
        Err(Unhealthy::Foreign(who)) => bail!(
            "not switching to {}: {}",
            to.name(),
            listener::foreign_message(to.name(), target.port, &who)
        ),
        Err(why) if !force => bail!(
            "{} is not healthy ({why}); its log: {}; not switching (use --force to switch anyway)",
            to.name(),
            layout.log_current(to.name()).display()
        ),
        Err(_) => {
            eprintln!(
                "approuter: {} is not healthy; switching anyway (--force)",
                to.name()
            );
            false
        }
    };
    let (from_commit, to_commit) = (
        processes::running_commit(layout, plan.active.name()),
        processes::running_commit(layout, to.name()),
    );
    let held_before = state::load_held(layout)?;
    let hold = match (&held_before, from_commit, to_commit) {
        (Some(h), _, Some(t)) if h.commit == t => HoldChange::Released(h.commit.clone()),
        (_, Some(f), t) if Some(&f) != t.as_ref() => HoldChange::Set(f),
        _ => HoldChange::None,
    };
    // A rollback is recorded before production moves: a switch cut short (killed, or nginx slow
    // to follow) must never leave a rollback that the next sync would undo.
    if let HoldChange::Set(commit) = &hold {
        state::save_held(
            layout,
            Some(&Held {
                commit: commit.clone(),
                since: unix_now(),
            }),
        )?;
    }
    let hook = match switch_to(layout, &plan, to, healthy) {
        Ok(hook) => hook,
        Err(e) => {
            state::save_held(layout, held_before.as_ref())?;
            return Err(e);
        }
    };
    if let HoldChange::Released(_) = &hold {
        state::save_held(layout, None)?;
    }
    Ok(Switched { to, hold, hook })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Points production at `to`: the `active` symlink is renamed into place, and every nginx worker
/// follows it within a second (no reload). Waits that second out and, when `to` is healthy,
/// until nginx is seen serving from it. Returns what the `switched` hook said.
pub fn switch_to(layout: &Layout, plan: &Plan, to: Slot, verify: bool) -> Result<Vec<String>> {
    let from = plan.active;
    state::save_active(layout, to)?;
    failpoint::stop_at("after-link");
    // Every nginx worker takes the new link within this time (it caches the file tests).
    std::thread::sleep(nginx::FILE_TESTS_CACHED + Duration::from_millis(100));
    if verify {
        let port = plan.settings.listen_port;
        let mut served = None;
        let seen = poll::holds(SERVED_TIMEOUT, poll::EVERY, || {
            served = http::get(
                port,
                &plan.settings.health_path,
                None,
                Duration::from_secs(2),
            )
            .ok()
            .and_then(|a| a.served_by);
            served.as_deref() == Some(to.name())
        });
        if !seen {
            bail!(
                "production was switched to {} but nginx still serves it from {:?}; see {}",
                to.name(),
                served,
                layout.log_current(crate::plan::NGINX).display()
            );
        }
    }
    Ok(hooks::run(
        layout,
        &plan.settings,
        Event::Switched,
        &[from.name(), to.name()],
    ))
}
