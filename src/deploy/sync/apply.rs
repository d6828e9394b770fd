//! Carrying out what `decide` chose: clones, generated files, port moves, restarts, health waits, switches, state and hooks, each reported as it happens.

use anyhow::{anyhow, Context, Result};
use git2::Oid;
use std::collections::BTreeSet;
use std::fs;
use std::time::{Duration, Instant};

use super::decide::{Action, Note};
use super::report::Report;
use crate::config::Config;
use crate::deploy::environment::{self, log_tail};
use crate::deploy::health::{self, Target, Unhealthy};
use crate::deploy::{checkouts, generate, processes, switch};
use crate::ext::git::{self, Checkout};
use crate::ext::hooks::Event;
use crate::ext::{http, procfs};
use crate::layout::Layout;
use crate::plan::{Plan, Slot};
use crate::render::Host;
use crate::state;
use crate::supervise::client;
use crate::util::poll;

/// What every step needs. `plan` follows the changes a sync makes (active instance, ports).
pub struct Ctx<'a> {
    pub layout: &'a Layout,
    pub config: &'a Config,
    pub plan: Plan,
    pub url: &'a str,
    pub r: &'a mut Report,
    /// Alternates that could not be added: left out of every generate this sync.
    pub skip: BTreeSet<String>,
}

/// Fetches of alternates go in parallel, this many at a time: each talks to the remote.
const PARALLEL_FETCHES: usize = 8;
/// How many lines of a failing instance's log a report shows.
const LOG_TAIL_LINES: usize = 5;

/// Fault injection for the fault suite: with `APPROUTER_FAILPOINT=<step>` in its environment,
/// sync stops at that step of a production update (after-fetch, after-reset, health-wait,
/// after-switch) and waits to be killed, so a test can end it at an exact point.
fn failpoint(r: &Report, step: &str) {
    if std::env::var("APPROUTER_FAILPOINT").as_deref() == Ok(step) {
        r.say(&format!("failpoint {step}: waiting to be killed"));
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

impl Ctx<'_> {
    fn grace(&self) -> u64 {
        self.plan.settings.stop_grace_secs
    }

    /// How long a service may take to restart: its stop grace, and then some.
    fn restart_timeout(&self) -> Duration {
        Duration::from_secs(self.grace() + 10)
    }

    fn health_timeout(&self) -> Duration {
        Duration::from_secs(self.plan.settings.health_timeout_secs)
    }

    fn target(&self, name: &str, port: u16, from: Instant) -> Target {
        Target {
            name: name.to_string(),
            port,
            deadline: from + self.health_timeout(),
            watch: Some(self.layout.service(name)),
        }
    }

    /// Restarts a service so it runs what is now in its checkout (or on its new port).
    fn restart(&self, name: &str) -> Result<()> {
        client::restart_and_wait(name, &self.layout.service(name), self.restart_timeout())
            .map_err(|e| anyhow!("{e:#}; see {}", self.layout.log_current(name).display()))
    }

    /// Restarts an instance and waits until it answers its health path, or its process ends.
    fn restart_healthy(&self, name: &str, port: u16) -> Result<Result<Duration, Unhealthy>> {
        self.restart(name)?;
        Ok(health::wait_one(
            self.target(name, port, Instant::now()),
            &self.plan.settings.health_path,
        ))
    }

    /// Says why an instance is not healthy, with the last lines of its log.
    fn fail_with_log(&mut self, line: &str, name: &str) {
        self.r.fail(line);
        for l in log_tail(self.layout, name, LOG_TAIL_LINES) {
            self.r.say(&format!("    {l}"));
        }
    }

    /// Generates the files for the plan as it stands (skipping alternates that could not be
    /// added) and tells svscan and nginx.
    fn regenerate(&self) -> Result<generate::Changes> {
        let plan = self.plan.without(&self.skip);
        generate::regenerate_plan(self.layout, self.config, &plan)
    }
}

/// Does every action, in order. Alternates that moved are collected and replaced together at the
/// end, their fetches in parallel.
pub fn apply(ctx: &mut Ctx, actions: Vec<Action>) -> Result<()> {
    let mut added: Vec<(String, String, Oid)> = Vec::new();
    let mut removed: Vec<(String, Option<u16>)> = Vec::new();
    let mut updates: Vec<(String, String, Oid, Oid)> = Vec::new();
    for action in actions {
        match action {
            Action::Say(Note::Verbose(line)) => ctx.r.verbose(&line),
            Action::Say(Note::Failure(line)) => ctx.r.fail(&line),
            Action::StartSupervisor => start_supervisor(ctx)?,
            Action::AddAlternate { name, branch } => {
                let dir = ctx.layout.alternate_checkout(&name);
                let cloned = git::clone(ctx.url, &branch, &dir, &name)
                    .and_then(|oid| checkouts::hand_over(&ctx.plan.settings, &dir).map(|()| oid));
                match cloned {
                    Ok(oid) => added.push((name, branch, oid)),
                    Err(e) => {
                        ctx.r
                            .fail(&format!("alternate {name}: {e:#}; it is not added"));
                        ctx.skip.insert(name);
                    }
                }
            }
            Action::RemoveAlternate { name, port } => removed.push((name, port)),
            Action::Regenerate { skip } => {
                ctx.skip.extend(skip);
                configuration(ctx, &added, &removed)?;
            }
            Action::MoveProductionPort {
                slot,
                from,
                to,
                switch_away,
            } => move_port(ctx, slot, from, to, switch_away)?,
            Action::DeployProduction {
                to,
                branch,
                from,
                restore,
                ..
            } => deploy_production(ctx, to, &branch, from, restore)?,
            Action::SwitchProduction { to, from, target } => {
                switch_production(ctx, to, from, target)?
            }
            Action::UpdateAlternate {
                name,
                branch,
                from,
                target,
            } => updates.push((name, branch, from, target)),
            Action::CheckProduction => {
                update_alternates(ctx, &updates);
                updates.clear();
                check_production(ctx);
            }
        }
    }
    update_alternates(ctx, &updates);
    Ok(())
}

/// The supervisor is gone though approuter was started: a new one, and a wait until what it
/// (re)started answers, so that nothing after this runs against instances that are starting.
fn start_supervisor(ctx: &mut Ctx) -> Result<()> {
    ctx.r
        .say("svscan is not running though approuter was started; starting it again");
    let host = Host::detect(ctx.config)?;
    environment::spawn_svscan(ctx.layout, &host.exe, ctx.grace())?;
    let plan = ctx.plan.without(&ctx.skip);
    let failures = environment::wait_until_healthy(ctx.layout, &plan, &|_, _| {});
    if failures.is_empty() {
        ctx.r.say("svscan started again; every instance answers");
    }
    for f in failures {
        ctx.r.fail(&format!(
            "{} is {}; its log: {}",
            f.name,
            f.why,
            f.log.display()
        ));
        for line in f.tail {
            ctx.r.say(&format!("    {line}"));
        }
    }
    Ok(())
}

/// Generated files brought in line (svscan and nginx told), then added alternates waited for and
/// removed ones cleaned up.
fn configuration(
    ctx: &mut Ctx,
    added: &[(String, String, Oid)],
    removed: &[(String, Option<u16>)],
) -> Result<()> {
    // A reload prepared by a sync that was killed left nginx closing every connection: undo it.
    let _ = fs::remove_file(ctx.layout.nginx_draining());
    let changes = ctx.regenerate()?;
    if changes.nginx_changed && removed.is_empty() && changes.added.is_empty() {
        ctx.r
            .say("nginx configuration brought in line with the recorded state");
    }
    // New alternates start once svscan has seen their directories (regenerate told it).
    let now = Instant::now();
    let targets: Vec<Target> = added
        .iter()
        .filter_map(|(name, _, _)| ctx.plan.instance(name))
        .map(|i| ctx.target(&i.name, i.port, now))
        .collect();
    let results = health::wait_all(&targets, &ctx.plan.settings.health_path, now, &|_, _| {});
    for ((name, branch, oid), h) in added.iter().zip(results) {
        match h {
            Ok(took) => ctx.r.say(&format!(
                "alternate {name} added at {} (branch {branch}), healthy after {:.1}s",
                git::short(*oid),
                took.as_secs_f64()
            )),
            Err(why) => ctx.fail_with_log(
                &format!(
                    "alternate {name} added at {} (branch {branch}) but not healthy ({why}); its log: {}",
                    git::short(*oid),
                    ctx.layout.log_current(name).display()
                ),
                name,
            ),
        }
    }
    for (name, port) in removed {
        // The routing is gone and svscan was told to stop it. What of it is still running after
        // the stop grace (a process that left its service's session) is ended; once its port is
        // free, the checkout goes too. Its logs stay in managed/var/log/<name>/.
        let escaped = processes::end(ctx.layout.root(), name, Duration::from_secs(ctx.grace()));
        if escaped > 0 {
            ctx.r.say(&format!(
                "alternate {name}: ended {escaped} process(es) of it that had left its service"
            ));
        }
        if let Some(port) = *port {
            poll::holds(ctx.restart_timeout(), Duration::from_millis(50), || {
                procfs::port_is_free(port)
            });
        }
        let dir = ctx.layout.alternate_checkout(name);
        if dir.exists() {
            fs::remove_dir_all(&dir)
                .with_context(|| format!("{}: cannot remove", dir.display()))?;
        }
        ctx.r.say(&format!(
            "alternate {name} removed (its logs stay in {})",
            ctx.layout.log_dir(name).display()
        ));
    }
    Ok(())
}

/// Is `slot` healthy on the port the plan gives it now?
fn answers(ctx: &Ctx, slot: Slot) -> bool {
    http::get(
        ctx.plan.prod(slot).port,
        &ctx.plan.settings.health_path,
        None,
        http::REQUEST_TIMEOUT,
    )
    .is_ok_and(|a| a.status == 200)
}

/// Moves a production instance to its new port: the active one hands production to the other
/// first (which must be healthy) and takes it back once it answers on the new port.
fn move_port(ctx: &mut Ctx, slot: Slot, from: u16, to: u16, switch_away: bool) -> Result<()> {
    let other = slot.other();
    if switch_away {
        if !answers(ctx, other) {
            ctx.r.fail(&format!(
                "production: cannot move {} to port {to}: {}, which would serve production meanwhile, is not healthy; it stays on port {from}",
                slot.name(),
                other.name()
            ));
            return Ok(());
        }
        let hook = switch::switch_to(ctx.layout, &ctx.plan, other, true)?;
        ctx.plan.active = other;
        ctx.r.lines(hook);
    }
    ctx.plan = ctx.plan.with_prod_port(slot, to);
    ctx.regenerate()?;
    let name = slot.name();
    match ctx.restart_healthy(name, to)? {
        Ok(took) => ctx.r.say(&format!(
            "production: {name} moved from port {from} to {to}, healthy after {:.1}s",
            took.as_secs_f64()
        )),
        Err(why) => {
            ctx.fail_with_log(
                &format!(
                    "production: {name} moved from port {from} to {to} but is not healthy there ({why}); its log: {}",
                    ctx.layout.log_current(name).display()
                ),
                name,
            );
            return Ok(());
        }
    }
    if switch_away {
        let hook = switch::switch_to(ctx.layout, &ctx.plan, slot, true)?;
        ctx.plan.active = slot;
        ctx.r.lines(hook);
    }
    Ok(())
}

/// The inactive instance fetched, reset and restarted at the branch's head, waited for until
/// healthy, and switched to. When it does not turn healthy, or its process ends meanwhile, it
/// goes back to what it ran (`restore`), so `approuter switch` still has a version to go back to.
fn deploy_production(
    ctx: &mut Ctx,
    to: Slot,
    branch: &str,
    from: Oid,
    restore: Option<Checkout>,
) -> Result<()> {
    let active = to.other();
    let inst = ctx.plan.prod(to).clone();
    let dir = ctx.layout.checkout(&inst);
    let begin = Instant::now();
    let fetched = git::fetch(&dir, ctx.url, branch).and_then(|oid| {
        failpoint(ctx.r, "after-fetch");
        git::checkout(&dir, ctx.url, branch, oid)?;
        checkouts::hand_over(&ctx.plan.settings, &dir)?;
        Ok(oid)
    });
    let oid = match fetched {
        Ok(oid) => oid,
        Err(e) => {
            ctx.r.fail(&format!(
                "production: {e:#}; nothing that runs was touched; the next sync tries again"
            ));
            return Ok(());
        }
    };
    failpoint(ctx.r, "after-reset");
    ctx.restart(&inst.name)?;
    failpoint(ctx.r, "health-wait");
    let result = health::wait_one(
        ctx.target(&inst.name, inst.port, Instant::now()),
        &ctx.plan.settings.health_path,
    );
    match result {
        Ok(took) => {
            let hook = switch::switch_to(ctx.layout, &ctx.plan, to, true)?;
            ctx.plan.active = to;
            ctx.r.lines(hook);
            failpoint(ctx.r, "after-switch");
            state::save_failed(ctx.layout, None)?;
            state::save_held(ctx.layout, None)?;
            ctx.r.say(&format!(
                "production: {} -> {} on {}, healthy after {:.1}s, switched ({:.1}s in all); {} keeps {} for `approuter switch`",
                git::short(from),
                git::short(oid),
                to.name(),
                took.as_secs_f64(),
                begin.elapsed().as_secs_f64(),
                active.name(),
                git::short(from)
            ));
            ctx.r.hook(
                ctx.layout,
                Event::Deployed,
                &[to.name(), &from.to_string(), &oid.to_string()],
            );
        }
        Err(why) => {
            state::save_failed(ctx.layout, Some(&oid.to_string()))?;
            let timeout = match why {
                Unhealthy::Timeout(_) => {
                    format!(" after {}s", ctx.plan.settings.health_timeout_secs)
                }
                Unhealthy::Exited(_) | Unhealthy::Foreign(_) => String::new(),
            };
            ctx.fail_with_log(
                &format!(
                    "production: commit {} of {branch} is not healthy on {}{timeout} ({why}); not switched: {} keeps serving {}; its log: {}",
                    git::short(oid),
                    to.name(),
                    active.name(),
                    git::short(from),
                    ctx.layout.log_current(to.name()).display()
                ),
                to.name(),
            );
            ctx.r.hook(
                ctx.layout,
                Event::DeployFailed,
                &[to.name(), &oid.to_string()],
            );
            if let Some(before) = restore {
                restore_rollback_target(ctx, to, branch, &before)?;
            }
        }
    }
    Ok(())
}

/// After a failed deploy, the inactive instance goes back to the commit it ran, restarted and
/// healthy: the rollback target is kept.
fn restore_rollback_target(
    ctx: &mut Ctx,
    slot: Slot,
    branch: &str,
    before: &Checkout,
) -> Result<()> {
    let inst = ctx.plan.prod(slot).clone();
    let dir = ctx.layout.checkout(&inst);
    let url = before.origin.as_deref().unwrap_or(ctx.url);
    let back_branch = before.branch.as_deref().unwrap_or(branch);
    if let Err(e) = git::checkout(&dir, url, back_branch, before.head)
        .and_then(|()| checkouts::hand_over(&ctx.plan.settings, &dir))
    {
        ctx.r.fail(&format!(
            "production: {} cannot go back to {}: {e:#}",
            inst.name,
            git::short(before.head)
        ));
        return Ok(());
    }
    match ctx.restart_healthy(&inst.name, inst.port)? {
        Ok(took) => ctx.r.say(&format!(
            "production: {} is back on {} and healthy after {:.1}s: `approuter switch` still rolls back to it",
            inst.name,
            git::short(before.head),
            took.as_secs_f64()
        )),
        Err(why) => ctx.fail_with_log(
            &format!(
                "production: {} is back on {} but not healthy ({why})",
                inst.name,
                git::short(before.head)
            ),
            &inst.name,
        ),
    }
    Ok(())
}

/// The inactive instance already runs the head and is healthy: production switches to it.
fn switch_production(ctx: &mut Ctx, to: Slot, from: Oid, target: Oid) -> Result<()> {
    let hook = switch::switch_to(ctx.layout, &ctx.plan, to, true)?;
    ctx.plan.active = to;
    ctx.r.lines(hook);
    state::save_failed(ctx.layout, None)?;
    state::save_held(ctx.layout, None)?;
    ctx.r.say(&format!(
        "production: {} -> {}: {} already ran it and is healthy; switched, nothing restarted; {} keeps {} for `approuter switch`",
        git::short(from),
        git::short(target),
        to.name(),
        to.other().name(),
        git::short(from)
    ));
    ctx.r.hook(
        ctx.layout,
        Event::Deployed,
        &[to.name(), &from.to_string(), &target.to_string()],
    );
    Ok(())
}

/// Alternates whose branch moved are replaced at once: fetched (in parallel), reset, restarted.
fn update_alternates(ctx: &mut Ctx, updates: &[(String, String, Oid, Oid)]) {
    if updates.is_empty() {
        return;
    }
    let layout = ctx.layout;
    let url = ctx.url;
    let settings = &ctx.plan.settings;
    let results: Vec<Result<Oid>> = std::thread::scope(|s| {
        updates
            .chunks(PARALLEL_FETCHES)
            .flat_map(|chunk| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|(name, branch, _, _)| {
                        let dir = layout.alternate_checkout(name);
                        s.spawn(move || {
                            let oid = git::fetch(&dir, url, branch)?;
                            git::checkout(&dir, url, branch, oid)?;
                            checkouts::hand_over(settings, &dir)?;
                            Ok(oid)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("fetch thread"))
                    .collect::<Vec<_>>()
            })
            .collect()
    });
    let mut restarted: Vec<(&str, Oid, Oid)> = Vec::new();
    for ((name, _, from, _), result) in updates.iter().zip(results) {
        match result.and_then(|oid| ctx.restart(name).map(|()| oid)) {
            Ok(oid) => restarted.push((name, *from, oid)),
            Err(e) => ctx.r.fail(&format!("alternate {name}: {e:#}")),
        }
    }
    let since = Instant::now();
    let targets: Vec<Target> = restarted
        .iter()
        .filter_map(|(name, _, _)| ctx.plan.instance(name))
        .map(|i| ctx.target(&i.name, i.port, since))
        .collect();
    let results = health::wait_all(&targets, &ctx.plan.settings.health_path, since, &|_, _| {});
    for ((name, from, oid), took) in restarted.iter().zip(results) {
        match took {
            Ok(took) => ctx.r.say(&format!(
                "alternate {name}: {} -> {}, restarted, healthy after {:.1}s",
                git::short(*from),
                git::short(*oid),
                took.as_secs_f64()
            )),
            Err(why) => ctx.fail_with_log(
                &format!(
                    "alternate {name}: {} -> {}, restarted, not healthy ({why}); its log: {}",
                    git::short(*from),
                    git::short(*oid),
                    ctx.layout.log_current(name).display()
                ),
                name,
            ),
        }
        ctx.r.hook(
            ctx.layout,
            Event::AlternateUpdated,
            &[name, &from.to_string(), &oid.to_string()],
        );
    }
}

/// Production must answer through nginx, from the active instance: a sync never ends in success
/// while it does not.
fn check_production(ctx: &mut Ctx) {
    let s = &ctx.plan.settings;
    let want = ctx.plan.active.name();
    let answer = http::get(s.listen_port, &s.health_path, None, http::REQUEST_TIMEOUT);
    let problem = match &answer {
        Ok(a) if a.status == 200 && a.served_by.as_deref() == Some(want) => return,
        Ok(a) if a.status == 200 => format!(
            "it was served by {} instead of {want}",
            a.served_by.as_deref().unwrap_or("(nobody)")
        ),
        Ok(a) => format!("{} answered {}", s.health_path, a.status),
        Err(e) => e.clone(),
    };
    ctx.r.fail(&format!(
        "production does not answer through nginx on port {}: {problem}; see `approuter check` and {}",
        s.listen_port,
        ctx.layout.log_current(crate::plan::NGINX).display()
    ));
}
