//! Switching production to the other instance: health first, then the recorded choice, nginx's configuration, the reload, and a check that nginx serves from it.

use anyhow::{bail, Result};
use std::time::Duration;

use super::load_plan;
use crate::config::Config;
use crate::ext::hooks::{self, Event};
use crate::ext::{http, nginx};
use crate::layout::Layout;
use crate::plan::{Plan, Slot, NGINX};
use crate::render::Host;
use crate::state;
use crate::util::poll;

/// How long nginx may take, after a reload, to serve production from the new instance.
const SERVED_TIMEOUT: Duration = Duration::from_secs(10);

/// `approuter switch`: production traffic to the other instance, after checking it is healthy.
/// Returns the instance now active and what the `switched` hook said.
pub fn switch(layout: &Layout, force: bool) -> Result<(Slot, Vec<String>)> {
    let (config, plan) = load_plan(layout)?;
    let to = plan.active.other();
    let target = plan.prod(to);
    let path = &plan.settings.health_path;
    match http::get(target.port, path, None, http::REQUEST_TIMEOUT) {
        Ok(a) if a.status == 200 => {}
        result if !force => {
            let why = match result {
                Ok(a) => format!("{path} answered {}", a.status),
                Err(e) => e,
            };
            bail!(
                "{} is not healthy ({why}); its log: {}; not switching (use --force to switch anyway)",
                to.name(),
                layout.log_current(to.name()).display()
            );
        }
        _ => eprintln!(
            "approuter: {} is not healthy; switching anyway (--force)",
            to.name()
        ),
    }
    let hook = switch_to(layout, &config, plan, to)?;
    Ok((to, hook))
}

/// Points production at `to`: the nginx include is rendered and checked, the choice recorded,
/// the file written, nginx reloaded, and the answer watched until nginx serves from `to`.
/// Returns what the `switched` hook said.
pub fn switch_to(
    layout: &Layout,
    config: &Config,
    mut plan: Plan,
    to: Slot,
) -> Result<Vec<String>> {
    let host = Host::detect(config)?;
    let from = plan.active;
    plan.active = to;
    // The choice is recorded first, so a switch cut short is completed by the next generate;
    // a configuration nginx refuses is never written, and the record goes back.
    state::save_active(layout, to)?;
    if let Err(e) = super::generate::apply_nginx(layout, &plan, &host) {
        state::save_active(layout, from)?;
        return Err(e);
    }
    if nginx::reload(&layout.service(NGINX), &layout.log_current(NGINX))? {
        let port = plan.settings.listen_port;
        let mut served = None;
        let done = poll::holds(SERVED_TIMEOUT, poll::EVERY, || {
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
        if !done {
            bail!(
                "nginx was told to reload but still serves production from {:?}; see {}",
                served,
                layout.log_current(NGINX).display()
            );
        }
    }
    Ok(hooks::run(
        layout,
        Event::Switched,
        &[from.name(), to.name()],
    ))
}
