//! Carrying out what `decide` chose: clones, generated files, port moves, restarts, health waits, switches, state and hooks, each reported as it happens.

use anyhow::{anyhow, Context, Result};
use git2::Oid;
use std::collections::BTreeSet;
use std::fs;
use std::time::{Duration, Instant};

use super::decide::{Action, Note};
use super::report::Report;
use crate::config::Config;
use crate::deploy::environment::{self, log_tail, LOG_TAIL_LINES};
use crate::deploy::health::{self, Target, Unhealthy};
use crate::deploy::listener::{self, Listening};
use crate::deploy::{checkouts, generate, processes, switch};
use crate::ext::git::{self, Checkout};
use crate::ext::hooks::Event;
use crate::ext::{http, procfs};
use crate::layout::Layout;
use crate::plan::{Plan, Role, Slot, NGINX};
use crate::render::Host;
use crate::state::{self, Failed};
use crate::supervise::client;
use crate::util::{failpoint, poll};

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

impl Ctx<'_> {
    fn grace(&self) -> u64 {
        self.plan.settings.stop_grace_secs
    }

    /// How long a service may take to restart: its stop grace, and then some.
    fn restart_timeout(&self) -> Duration {
        Duration::from_secs(self.grace() + 10)
    }

    fn target(&self, name: &str, port: u16, pid: Option<u32>) -> Target {
        Target {
            name: name.to_string(),
            port,
            deadline: Instant::now() + self.plan.settings.start_timeout(),
            watch: Some(self.layout.service(name)),
            pid,
        }
    }

    /// Restarts a service so it runs what is now in its checkout (or on its new port); returns
    /// its new process.
    fn restart(&self, name: &str) -> Result<u32> {
        client::restart_and_wait(name, &self.layout.service(name), self.restart_timeout())
            .map_err(|e| anyhow!("{e:#}; see {}", self.layout.log_current(name).display()))
    }

    /// Restarts an instance and waits until it answers its health path, or its process ends.
    fn restart_healthy(&self, name: &str, port: u16) -> Result<Result<Duration, Unhealthy>> {
        let pid = self.restart(name)?;
        Ok(health::wait_one(
            self.target(name, port, Some(pid)),
            &self.plan.settings.health_path,
        ))
    }

    /// Does `slot` answer its health path now, from its own processes?
    fn answers(&self, slot: Slot) -> bool {
        health::check_once(
            &self.layout.service(slot.name()),
            self.plan.prod(slot).port,
            &self.plan.settings.health_path,
        )
        .is_ok()
    }

    /// Production to `to`, as `approuter switch` does it, and what the hook said.
    fn switch(&mut self, to: Slot) -> Result<()> {
        let hook = switch::switch_to(self.layout, &self.plan, to, true)?;
        self.plan.active = to;
        self.r.lines(hook);
        Ok(())
    }

    /// A commit went live on `to`: nothing is held back any more, and the hook hears of it.
    fn went_live(&mut self, to: Slot, from: Oid, target: Oid) -> Result<()> {
        state::save_failed(self.layout, None)?;
        state::save_held(self.layout, None)?;
        self.r.hook(
            self.layout,
            &self.plan.settings,
            Event::Deployed,
            &[to.name(), &from.to_string(), &target.to_string()],
        );
        Ok(())
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

    /// A production action decided for the inactive instance finds it active (a port move that
    /// did not finish left production there): it is not touched.
    fn is_active(&mut self, slot: Slot) -> bool {
        if slot == self.plan.active {
            self.r.fail(&format!(
                "production: {} serves production now (a port move did not finish), so it is not touched this time",
                slot.name()
            ));
        }
        slot == self.plan.active
    }
}

/// Does every action, in order. Alternates that moved are collected and replaced together, their
/// fetches in parallel, before the last check.
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
                failpoint::pause_at("alternate-cloned");
                // Its port was free when it was given, but the clone took a while: a process
                // listening there now must not get the alternate's route. Without its
                // checkout, the next sync adds it again, on a port nobody holds.
                let taken = ctx.plan.instance(&name).and_then(|i| {
                    match listener::of(ctx.layout, &name, i.port) {
                        Listening::Foreign(who) => {
                            Some(listener::foreign_message(&name, i.port, &who))
                        }
                        _ => None,
                    }
                });
                match (cloned, taken) {
                    (Ok(oid), None) => added.push((name, branch, oid)),
                    (Ok(_), Some(why)) => {
                        let _ = fs::remove_dir_all(&dir);
                        ctx.r.fail(&format!(
                            "alternate {name}: {why}; it is not added (the next sync gives it another port)"
                        ));
                        ctx.skip.insert(name);
                    }
                    (Err(e), _) => {
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
            Action::MoveProductionPort { slot, from, to, .. } => move_port(ctx, slot, from, to)?,
            Action::DeployProduction {
                to,
                branch,
                from,
                target,
                restore,
            } => deploy_production(ctx, to, &branch, from, target, restore)?,
            Action::SwitchProduction { to, from, target } => {
                switch_production(ctx, to, from, target)?
            }
            Action::RecoverInactive { slot, to } => recover_inactive(ctx, slot, to)?,
            Action::UpdateAlternate {
                name,
                branch,
                from,
                target,
            } => updates.push((name, branch, from, target)),
            Action::CheckProduction => {
                update_alternates(ctx, &std::mem::take(&mut updates))?;
                check_production(ctx);
            }
        }
    }
    update_alternates(ctx, &updates)
}

/// The supervisor is gone though approuter was started: a new one, and a wait until what it
/// (re)started answers, so that nothing after this runs against instances that are starting.
/// `released in 3.2s, ` when the release command ran for `oid` on this start of `name`.
fn released(ctx: &Ctx, name: &str, oid: Oid) -> String {
    match state::load_release(ctx.layout, name) {
        Some(r) if r.ok() && r.commit == oid.to_string() => format!("released in {:.1}s, ", r.secs),
        _ => String::new(),
    }
}

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

/// Generated files brought in line (svscan and nginx told); instances whose run script changed
/// (a setting such as `user` or `path`) restarted so that it applies; added alternates waited
/// for, removed ones cleaned up.
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
            .say("nginx configuration brought in line with the configuration");
    }
    for name in &changes.updated {
        restart_updated(ctx, name)?;
    }
    // New alternates start once svscan has seen their directories (regenerate told it).
    let targets: Vec<Target> = added
        .iter()
        .filter_map(|(name, _, _)| ctx.plan.instance(name))
        .map(|i| ctx.target(&i.name, i.port, None))
        .collect();
    let now = Instant::now();
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
        // nginx no longer routes to it and svscan was told to stop it. What of it is still
        // running after the stop grace (a process that left its service's session) is ended;
        // once its port is free, the checkout goes too. Its logs stay in managed/var/log/<name>/.
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

/// A service whose run script changed runs the old one until it is restarted: an alternate at
/// once, a production instance without production ever going down.
fn restart_updated(ctx: &mut Ctx, name: &str) -> Result<()> {
    let Some(inst) = ctx.plan.instance(name).cloned() else {
        // nginx's own run script: nginx reloads when its configuration changes, and its command
        // line changes only with nginx itself; the next start of the supervisor applies it.
        if name != NGINX {
            ctx.r.say(&format!("{name}: run script updated"));
        }
        return Ok(());
    };
    match inst.role {
        Role::Alternate { .. } => match ctx.restart_healthy(name, inst.port)? {
            Ok(took) => ctx.r.say(&format!(
                "alternate {name}: restarted for its new settings, healthy after {:.1}s",
                took.as_secs_f64()
            )),
            Err(why) => ctx.fail_with_log(
                &format!("alternate {name}: restarted for its new settings, not healthy ({why})"),
                name,
            ),
        },
        Role::Prod(slot) => {
            restart_in_place(ctx, slot, "its new settings")?;
        }
    }
    Ok(())
}

/// Restarts a production instance with production answering throughout: the active one first
/// hands production to the other (which must be healthy) and takes it back once it answers.
/// False when it did not come back healthy.
fn restart_in_place(ctx: &mut Ctx, slot: Slot, why: &str) -> Result<bool> {
    let away = slot == ctx.plan.active;
    if away {
        if !ctx.answers(slot.other()) {
            ctx.r.fail(&format!(
                "production: {} was not restarted for {why}: {}, which would serve production meanwhile, does not answer",
                slot.name(),
                slot.other().name()
            ));
            return Ok(false);
        }
        ctx.switch(slot.other())?;
    }
    let port = ctx.plan.prod(slot).port;
    failpoint::stop_at("move-before-restart");
    match ctx.restart_healthy(slot.name(), port)? {
        Ok(took) => {
            ctx.r.say(&format!(
                "production: {} restarted for {why}, healthy after {:.1}s",
                slot.name(),
                took.as_secs_f64()
            ));
            if away {
                ctx.switch(slot)?;
            }
            Ok(true)
        }
        Err(e) => {
            ctx.fail_with_log(
                &format!(
                    "production: {} restarted for {why} but is not healthy ({e}); its log: {}",
                    slot.name(),
                    ctx.layout.log_current(slot.name()).display()
                ),
                slot.name(),
            );
            Ok(false)
        }
    }
}

/// Moves a production instance to its new port (only a port that is free, or its own).
fn move_port(ctx: &mut Ctx, slot: Slot, from: u16, to: u16) -> Result<()> {
    if let Listening::Foreign(who) = listener::of(ctx.layout, slot.name(), to) {
        ctx.r.fail(&format!(
            "production: {} stays on port {from}: {}",
            slot.name(),
            listener::foreign_message(slot.name(), to, &who)
        ));
        return Ok(());
    }
    ctx.plan = ctx.plan.with_prod_port(slot, to);
    ctx.regenerate()?;
    if restart_in_place(ctx, slot, &format!("its new port {to}"))? {
        ctx.r.say(&format!(
            "production: {} moved from port {from} to {to}",
            slot.name()
        ));
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
    target: Oid,
    restore: Option<Checkout>,
) -> Result<()> {
    if ctx.is_active(to) {
        return Ok(());
    }
    let active = to.other();
    let inst = ctx.plan.prod(to).clone();
    let dir = ctx.layout.checkout(&inst);
    let begin = Instant::now();
    let fetched = checkouts::rewrite(&ctx.plan.settings, &dir, || {
        let oid = git::fetch(&dir, ctx.url, branch)?;
        failpoint::stop_at("after-fetch");
        git::checkout(&dir, ctx.url, branch, oid)?;
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
    failpoint::stop_at("after-reset");
    let pid = ctx.restart(&inst.name)?;
    failpoint::stop_at("health-wait");
    let result = health::wait_one(
        ctx.target(&inst.name, inst.port, Some(pid)),
        &ctx.plan.settings.health_path,
    );
    match result {
        Ok(took) => {
            ctx.switch(to)?;
            failpoint::stop_at("after-switch");
            ctx.r.say(&format!(
                "production: {} -> {} on {}, {}healthy after {:.1}s, switched ({:.1}s in all); {} keeps {} for `approuter switch`",
                git::short(from),
                git::short(oid),
                to.name(),
                released(ctx, &inst.name, oid),
                took.as_secs_f64(),
                begin.elapsed().as_secs_f64(),
                active.name(),
                git::short(from)
            ));
            ctx.went_live(to, from, oid)?;
        }
        Err(why) => {
            // The commit is recorded with what the instance goes back to: a sync cut short
            // before it has done so leaves the next one enough to finish it.
            state::save_failed(
                ctx.layout,
                Some(&Failed {
                    commit: oid.to_string(),
                    restore: restore.as_ref().map(|r| r.head),
                }),
            )?;
            let timeout = match why {
                Unhealthy::Timeout(_) => {
                    format!(" after {}s", ctx.plan.settings.start_timeout().as_secs())
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
                &ctx.plan.settings,
                Event::DeployFailed,
                &[to.name(), &oid.to_string()],
            );
            let _ = target;
            failpoint::stop_at("before-restore");
            if let Some(before) = restore {
                put_back(ctx, to, branch, &before)?;
            }
        }
    }
    Ok(())
}

/// The inactive instance goes back to the commit it ran (after a failed deploy), restarted and
/// healthy: the rollback target is kept.
fn put_back(ctx: &mut Ctx, slot: Slot, branch: &str, before: &Checkout) -> Result<()> {
    let inst = ctx.plan.prod(slot).clone();
    let dir = ctx.layout.checkout(&inst);
    let url = before.origin.as_deref().unwrap_or(ctx.url);
    let back_branch = before.branch.as_deref().unwrap_or(branch);
    if let Err(e) = checkouts::rewrite(&ctx.plan.settings, &dir, || {
        git::checkout(&dir, url, back_branch, before.head)
    }) {
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

/// The inactive instance does not answer: put back on `to` when a failed deploy left it on the
/// failed commit, else restarted as it is.
fn recover_inactive(ctx: &mut Ctx, slot: Slot, to: Option<Oid>) -> Result<()> {
    if ctx.is_active(slot) {
        return Ok(());
    }
    let inst = ctx.plan.prod(slot).clone();
    if let Some(to) = to {
        let co = git::inspect(&ctx.layout.checkout(&inst))?;
        let before = Checkout { head: to, ..co };
        let branch = before.branch.clone().unwrap_or_default();
        return put_back(ctx, slot, &branch, &before);
    }
    match ctx.restart_healthy(&inst.name, inst.port)? {
        Ok(took) => ctx.r.say(&format!(
            "production: {} (the rollback target) did not answer; restarted, healthy after {:.1}s",
            inst.name,
            took.as_secs_f64()
        )),
        Err(why) => ctx.fail_with_log(
            &format!(
                "production: {} (the rollback target) does not answer, and a restart did not help ({why}); its log: {}",
                inst.name,
                ctx.layout.log_current(&inst.name).display()
            ),
            &inst.name,
        ),
    }
    Ok(())
}

/// The inactive instance already runs the head and is healthy: production switches to it.
fn switch_production(ctx: &mut Ctx, to: Slot, from: Oid, target: Oid) -> Result<()> {
    if ctx.is_active(to) {
        return Ok(());
    }
    if !ctx.answers(to) {
        ctx.r.fail(&format!(
            "production: {} runs {} but stopped answering; not switched (the next sync deploys it)",
            to.name(),
            git::short(target)
        ));
        return Ok(());
    }
    ctx.switch(to)?;
    ctx.r.say(&format!(
        "production: {} -> {}: {} already ran it and is healthy; switched, nothing restarted; {} keeps {} for `approuter switch`",
        git::short(from),
        git::short(target),
        to.name(),
        to.other().name(),
        git::short(from)
    ));
    ctx.went_live(to, from, target)
}

/// Alternates whose branch moved are replaced at once: fetched (in parallel), reset, restarted.
fn update_alternates(ctx: &mut Ctx, updates: &[(String, String, Oid, Oid)]) -> Result<()> {
    if updates.is_empty() {
        return Ok(());
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
                            checkouts::rewrite(settings, &dir, || {
                                let oid = git::fetch(&dir, url, branch)?;
                                git::checkout(&dir, url, branch, oid)?;
                                Ok(oid)
                            })
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
    let mut targets: Vec<Target> = Vec::new();
    let mut restarted: Vec<(&str, Oid, Oid)> = Vec::new();
    for ((name, _, from, _), result) in updates.iter().zip(results) {
        match result.and_then(|oid| ctx.restart(name).map(|pid| (oid, pid))) {
            Ok((oid, pid)) => {
                if let Some(i) = ctx.plan.instance(name) {
                    targets.push(ctx.target(name, i.port, Some(pid)));
                    restarted.push((name, *from, oid));
                }
            }
            Err(e) => ctx.r.fail(&format!("alternate {name}: {e:#}")),
        }
    }
    let since = Instant::now();
    let results = health::wait_all(&targets, &ctx.plan.settings.health_path, since, &|_, _| {});
    for ((name, from, oid), took) in restarted.iter().zip(results) {
        match took {
            Ok(took) => ctx.r.say(&format!(
                "alternate {name}: {} -> {}, restarted, {}healthy after {:.1}s",
                git::short(*from),
                git::short(*oid),
                released(ctx, name, *oid),
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
            &ctx.plan.settings,
            Event::AlternateUpdated,
            &[name, &from.to_string(), &oid.to_string()],
        );
    }
    Ok(())
}

/// Production must answer through nginx, from the active instance, and the other instance (the
/// rollback target) must answer too: a sync never ends in success while either does not.
fn check_production(ctx: &mut Ctx) {
    let s = &ctx.plan.settings;
    let want = ctx.plan.active.name();
    let answer = http::get(s.listen_port, &s.health_path, None, http::REQUEST_TIMEOUT);
    let problem = match &answer {
        Ok(a) if a.status == 200 && a.served_by.as_deref() == Some(want) => None,
        Ok(a) if a.status == 200 => Some(format!(
            "it was served by {} instead of {want}",
            a.served_by.as_deref().unwrap_or("(nobody)")
        )),
        Ok(a) => Some(format!("{} answered {}", s.health_path, a.status)),
        Err(e) => Some(e.clone()),
    };
    if let Some(problem) = problem {
        let line = format!(
            "production does not answer through nginx on port {}: {problem}; see `approuter check` and {}",
            s.listen_port,
            ctx.layout.log_current(NGINX).display()
        );
        ctx.r.fail(&line);
    }
    let other = ctx.plan.active.other();
    if !ctx.answers(other) {
        ctx.r.fail(&format!(
            "production: {} (the rollback target) does not answer its health path: `approuter switch` would have nothing to go back to; see `approuter check` and {}",
            other.name(),
            ctx.layout.log_current(other.name()).display()
        ));
    }
}
