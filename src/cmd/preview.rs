//! `approuter preview`: how an operator reaches a production instance through nginx (the inactive one, to look at a deploy before it goes live or at the version a rollback would bring back): its routing cookie with the preview key, and the page that sets it; `--new-key` replaces the key.

use anyhow::{bail, Context, Result};
use std::process::ExitCode;

use crate::deploy::{generate, load_plan};
use crate::layout::Layout;
use crate::plan::Slot;
use crate::render::ROUTING_COOKIE;
use crate::state;

pub fn run(
    layout: &Layout,
    instance: Option<&str>,
    new_key: bool,
    no_wait: bool,
) -> Result<ExitCode> {
    let (config, plan) = load_plan(layout)?;
    let slot = match instance {
        None => plan.active.other(),
        Some(name) => match Slot::BOTH.iter().find(|s| s.name() == name) {
            Some(&s) => s,
            None => bail!(
                "`{name}` is not a production instance: name instance1 or instance2 (an alternate needs no key: /set_alt_cookie_{name}.html)"
            ),
        },
    };
    let key = if new_key {
        let _lock = super::exclusive(layout, "preview", no_wait)?;
        let key = state::preview_key(layout, true)?;
        // nginx reloads (when it runs) with the new key: the old one opens nothing after this.
        generate::regenerate_plan(layout, &config, &plan)?;
        println!("made a new preview key; the old one no longer reaches any instance");
        key
    } else {
        state::load_preview_key(layout)?.context(
            "there is no preview key yet: `approuter start` (or `approuter generate`) makes one",
        )?
    };
    let cookie = state::preview_cookie(slot, &key);
    let port = plan.settings.listen_port;
    let role = if slot == plan.active {
        "active"
    } else {
        "inactive"
    };
    println!(
        "{} ({role} production instance), through nginx:",
        slot.name()
    );
    println!("  in a browser: http://HOST:{port}/set_alt_cookie_{cookie}.html");
    println!(
        "  back:         http://HOST:{port}/remove_alt_cookie_{}.html",
        slot.name()
    );
    println!("  from a shell: curl -b {ROUTING_COOKIE}={cookie} http://127.0.0.1:{port}/");
    println!("Keep the key to yourself: it opens production's instances to whoever holds it.");
    Ok(ExitCode::SUCCESS)
}
