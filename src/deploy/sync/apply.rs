//! Carrying out what `decide` chose: clones, generated files, restarts, health waits, the switch, state and hooks, each reported as it happens.

use anyhow::{Context, Result};
use git2::Oid;
use std::fs;
use std::time::{Duration, Instant};

use super::decide::{Action, Note};
use super::report::Report;
use crate::config::Config;
use crate::deploy::{environment, generate, health, switch};
use crate::ext::git;
use crate::ext::hooks::Event;
use crate::ext::procfs;
use crate::layout::Layout;
use crate::plan::{Plan, Slot};
use crate::render::Host;
use crate::state;
use crate::supervise::client;
use crate::util::poll;

/// What every step needs.
pub struct Ctx<'a> {
    pub layout: &'a Layout,
    pub config: &'a Config,
    pub plan: &'a Plan,
    pub url: &'a str,
    pub r: &'a mut Report,
}

/// Fetches of alternates go in parallel, this many at a time: each talks to the remote.
const PARALLEL_FETCHES: usize = 8;

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

    fn health_deadline(&self, from: Instant) -> Instant {
        from + Duration::from_secs(self.plan.settings.health_timeout_secs)
    }

    /// Restarts a service so it runs what is now in its checkout.
    fn restart(&self, name: &str) -> Result<()> {
        client::restart_and_wait(name, &self.layout.service(name), self.restart_timeout())
            .map_err(|e| anyhow::anyhow!("{e:#}; see {}", self.layout.log_current(name).display()))
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
            Action::StartSupervisor => {
                ctx.r
                    .say("svscan is not running though approuter was started; starting it again");
                let host = Host::detect(ctx.config)?;
                environment::spawn_svscan(ctx.layout, &host.exe, ctx.grace())?;
            }
            Action::AddAlternate { name, branch } => {
                let dir = ctx.layout.alternate_checkout(&name);
                match git::clone(ctx.url, &branch, &dir, &name) {
                    Ok(oid) => added.push((name, branch, oid)),
                    Err(e) => ctx.r.fail(&format!("alternate {name}: {e:#}")),
                }
            }
            Action::RemoveAlternate { name, port } => removed.push((name, port)),
            Action::Regenerate => configuration(ctx, &added, &removed)?,
            Action::DeployProduction {
                to, branch, from, ..
            } => deploy_production(ctx, to, &branch, from)?,
            Action::UpdateAlternate {
                name,
                branch,
                from,
                target,
            } => updates.push((name, branch, from, target)),
        }
    }
    update_alternates(ctx, &updates);
    Ok(())
}

/// Generated files brought in line (svscan and nginx told), then added alternates waited for and
/// removed ones cleaned up.
fn configuration(
    ctx: &mut Ctx,
    added: &[(String, String, Oid)],
    removed: &[(String, Option<u16>)],
) -> Result<()> {
    let (_, changes) = generate::regenerate(ctx.layout)?;
    if changes.nginx_changed && removed.is_empty() && changes.added.is_empty() {
        ctx.r
            .say("nginx configuration brought in line with the recorded state");
    }
    // New alternates start once svscan has seen their directories (regenerate told it).
    let now = Instant::now();
    let targets: Vec<health::Target> = added
        .iter()
        .filter_map(|(name, _, _)| ctx.plan.instance(name))
        .map(|i| health::Target {
            name: i.name.clone(),
            port: i.port,
            deadline: ctx.health_deadline(now),
        })
        .collect();
    let results = health::wait_all(&targets, &ctx.plan.settings.health_path, now, &|_, _| {});
    for ((name, branch, oid), h) in added.iter().zip(results) {
        match h {
            Ok(took) => ctx.r.say(&format!(
                "alternate {name} added at {} (branch {branch}), healthy after {:.1}s",
                git::short(*oid),
                took.as_secs_f64()
            )),
            Err(why) => ctx.r.fail(&format!(
                "alternate {name} added at {} (branch {branch}) but not healthy ({why}); log: {}",
                git::short(*oid),
                ctx.layout.log_current(name).display()
            )),
        }
    }
    for (name, port) in removed {
        // The routing is gone and svscan was told; once the process has let go of its port,
        // the checkout goes too. Its logs stay in managed/var/log/<name>/.
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

/// The inactive instance fetched, reset and restarted at `target`, waited for until healthy,
/// and switched to; or, when it does not turn healthy, left as it is with the commit remembered.
fn deploy_production(ctx: &mut Ctx, to: Slot, branch: &str, from: Oid) -> Result<()> {
    let active = to.other();
    let inst = ctx.plan.prod(to);
    let dir = ctx.layout.checkout(inst);
    let begin = Instant::now();
    let fetched = git::fetch(&dir, ctx.url, branch).and_then(|oid| {
        failpoint(ctx.r, "after-fetch");
        git::checkout(&dir, ctx.url, branch, oid).map(|()| oid)
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
    let started = Instant::now();
    let target_health = [health::Target {
        name: inst.name.clone(),
        port: inst.port,
        deadline: ctx.health_deadline(started),
    }];
    let result = health::wait_all(
        &target_health,
        &ctx.plan.settings.health_path,
        started,
        &|_, _| {},
    )
    .pop()
    .expect("one target, one result");
    match result {
        Ok(took) => {
            let hook = switch::switch_to(ctx.layout, ctx.config, ctx.plan.clone(), to)?;
            ctx.r.lines(hook);
            failpoint(ctx.r, "after-switch");
            state::save_failed(ctx.layout, None)?;
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
            ctx.r.fail(&format!(
                "production: commit {} of {branch} is not healthy on {} after {}s ({why}); not switched: {} keeps serving {}; log: {}",
                git::short(oid),
                to.name(),
                ctx.plan.settings.health_timeout_secs,
                active.name(),
                git::short(from),
                ctx.layout.log_current(to.name()).display()
            ));
            ctx.r.hook(
                ctx.layout,
                Event::DeployFailed,
                &[to.name(), &oid.to_string()],
            );
        }
    }
    Ok(())
}

/// Alternates whose branch moved are replaced at once: fetched (in parallel), reset, restarted.
fn update_alternates(ctx: &mut Ctx, updates: &[(String, String, Oid, Oid)]) {
    if updates.is_empty() {
        return;
    }
    let layout = ctx.layout;
    let url = ctx.url;
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
    let mut restarted: Vec<(&str, Oid, Oid, Instant)> = Vec::new();
    for ((name, _, from, _), result) in updates.iter().zip(results) {
        let restart = result.and_then(|oid| ctx.restart(name).map(|()| oid));
        match restart {
            Ok(oid) => restarted.push((name, *from, oid, Instant::now())),
            Err(e) => ctx.r.fail(&format!("alternate {name}: {e:#}")),
        }
    }
    let targets: Vec<health::Target> = restarted
        .iter()
        .filter_map(|(name, _, _, at)| {
            ctx.plan.instance(name).map(|i| health::Target {
                name: i.name.clone(),
                port: i.port,
                deadline: ctx.health_deadline(*at),
            })
        })
        .collect();
    let since = Instant::now();
    let results = health::wait_all(&targets, &ctx.plan.settings.health_path, since, &|_, _| {});
    for ((name, from, oid, _), took) in restarted.iter().zip(results) {
        match took {
            Ok(took) => ctx.r.say(&format!(
                "alternate {name}: {} -> {}, restarted, healthy after {:.1}s",
                git::short(*from),
                git::short(*oid),
                took.as_secs_f64()
            )),
            Err(why) => ctx.r.fail(&format!(
                "alternate {name}: {} -> {}, restarted, not healthy ({why}); log: {}",
                git::short(*from),
                git::short(*oid),
                ctx.layout.log_current(name).display()
            )),
        }
        ctx.r.hook(
            ctx.layout,
            Event::AlternateUpdated,
            &[name, &from.to_string(), &oid.to_string()],
        );
    }
}
