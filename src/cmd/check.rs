//! `approuter check`: every instance's health path, directly and through nginx with its routing cookie (the preview key's for production instances), as a table.

use anyhow::Result;
use std::process::ExitCode;

use super::exit_if;
use crate::deploy::listener::{self, Listening};
use crate::deploy::load_plan;
use crate::ext::http::{self, Answer, REQUEST_TIMEOUT};
use crate::layout::Layout;
use crate::plan::Role;
use crate::state;

pub fn run(layout: &Layout) -> Result<ExitCode> {
    let (_, plan) = load_plan(layout)?;
    let path = &plan.settings.health_path;
    let listen = plan.settings.listen_port;
    let cell = |r: &Result<Answer, String>| match r {
        Ok(a) => format!("{} {:>7.1} ms", a.status, a.latency.as_secs_f64() * 1000.0),
        Err(_) => "down".to_string(),
    };
    let width = plan
        .instances
        .iter()
        .map(|i| i.name.len())
        .max()
        .unwrap_or(0)
        .max("production".len());
    println!(
        "{:width$}  {:>5}  {:<14}  {:<14}  note",
        "instance", "port", "direct", "through nginx"
    );
    let mut all_ok = true;
    let mut row = |name: &str, port: Option<u16>, route: Option<&str>, expect: &str| {
        let direct = port.map(|p| http::get(p, path, None, REQUEST_TIMEOUT));
        let via = http::get(listen, path, route, REQUEST_TIMEOUT);
        let mut notes = Vec::new();
        let foreign = port.and_then(|p| match listener::of(layout, name, p) {
            Listening::Foreign(who) => Some(listener::foreign_message(name, p, &who)),
            _ => None,
        });
        let direct_ok = match &direct {
            None => true,
            Some(Ok(a)) => a.status == 200,
            Some(Err(e)) => {
                notes.push(e.clone());
                false
            }
        };
        let via_ok = match &via {
            Ok(a) if a.served_by.as_deref() != Some(expect) => {
                notes.push(format!(
                    "nginx sent it to {}",
                    a.served_by.as_deref().unwrap_or("(nobody)")
                ));
                false
            }
            Ok(a) => a.status == 200,
            Err(e) => {
                notes.push(format!("nginx: {e}"));
                false
            }
        };
        if let Some(f) = &foreign {
            notes.push(f.clone());
        }
        all_ok &= direct_ok && via_ok && foreign.is_none();
        println!(
            "{name:width$}  {:>5}  {:<14}  {:<14}  {}",
            port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            direct.as_ref().map(cell).unwrap_or_else(|| "-".into()),
            cell(&via),
            notes.join("; ")
        );
    };
    // A production instance is reached through nginx with the preview key, as an operator's
    // browser would (`approuter preview`).
    let key = state::load_preview_key(layout)?.unwrap_or_default();
    for inst in &plan.instances {
        let cookie = match inst.role {
            Role::Prod(slot) => state::preview_cookie(slot, &key),
            Role::Alternate { .. } => inst.name.clone(),
        };
        row(&inst.name, Some(inst.port), Some(&cookie), &inst.name);
    }
    row("production", None, None, plan.active.name());
    Ok(exit_if(all_ok))
}
