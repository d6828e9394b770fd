//! `approuter sync`: brings the running environment in line with the repository and the configuration, one sync at a time.

use anyhow::{Context, Result};
use git2::Oid;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{IsTerminal, Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::generate;
use crate::git::{self, RemoteHeads};
use crate::health;
use crate::hooks::{self, Event};
use crate::layout::Layout;
use crate::plan::{Instance, Plan, Role};
use crate::ports;
use crate::state;
use crate::supervise::control;
use crate::supervise::status::{self, State};
use crate::system;
use crate::tai64;

pub struct Options {
    /// Wait for a running sync to finish instead of leaving at once.
    pub wait: bool,
    /// Say what would be done; change nothing.
    pub dry_run: bool,
    /// Also say what did not need doing.
    pub verbose: bool,
}

/// Where sync says what it does: one line per action; with a timestamp when the output is a
/// log file (the crontab appends to one), not a terminal.
struct Report {
    stamp: bool,
    failed: bool,
}

impl Report {
    fn say(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        if self.stamp {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let (y, mo, d, h, mi, s) = tai64::utc_civil(now);
            let _ = writeln!(out, "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} {line}");
        } else {
            let _ = writeln!(out, "{line}");
        }
    }

    fn fail(&mut self, line: &str) {
        self.failed = true;
        self.say(line);
    }

    fn hook(&self, layout: &Layout, event: Event, args: &[&str]) {
        for line in hooks::run(layout, event, args) {
            self.say(&line);
        }
    }
}

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

/// The sync lock, held for the whole run; it holds the pid of the sync that has it.
fn lock(layout: &Layout, wait: bool) -> Result<Result<File, String>> {
    fs::create_dir_all(layout.run_dir())?;
    let path = layout.run_dir().join("sync.lock");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    let locked = if wait {
        f.lock().map_err(TryLockError::Error)
    } else {
        f.try_lock()
    };
    match locked {
        Ok(()) => {
            f.set_len(0)?;
            f.rewind()?;
            writeln!(f, "{}", std::process::id())?;
            Ok(Ok(f))
        }
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            Ok(Err(pid.trim().to_string()))
        }
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("{}: cannot lock", path.display()))
        }
    }
}

pub fn run(layout: &Layout, opts: &Options) -> Result<bool> {
    let mut r = Report {
        stamp: !std::io::stdout().is_terminal(),
        failed: false,
    };
    let _lock = match lock(layout, opts.wait)? {
        Ok(f) => f,
        Err(pid) => {
            r.say(&format!(
                "another sync is running (pid {pid}); leaving it to finish"
            ));
            return Ok(true);
        }
    };
    let (config, plan) = generate::load_plan(layout)?;
    if system::svscan_pid(layout).is_none() {
        if !state::meant_to_run(layout) {
            if opts.verbose {
                r.say("approuter is not running here (approuter start starts it); nothing to sync");
            }
            return Ok(true);
        }
        if opts.dry_run {
            r.say("would start svscan, which is not running");
        } else {
            r.say("svscan is not running though approuter was started; starting it again");
            let host = crate::render::Host::detect(&config)?;
            system::spawn_svscan(layout, &host.exe, plan.settings.stop_grace_secs)?;
        }
    }

    let url = git::resolve_url(layout.root(), &config.repo);
    let heads = match git::ls_remote(&url) {
        Ok(h) => h,
        Err(e) => {
            r.fail(&format!(
                "{e:#}; nothing changed; the next sync tries again"
            ));
            return Ok(false);
        }
    };
    let prod_branch = match config
        .prod_branch
        .clone()
        .or_else(|| heads.default_branch.clone())
    {
        Some(b) => b,
        None => {
            r.fail(&format!("{url} has no default branch; write the production branch in managed/etc/prod_branch"));
            return Ok(false);
        }
    };

    configuration_changes(layout, &plan, &url, &heads, opts, &mut r)?;
    // Re-read: generate may have added ports for new alternates.
    let (config, plan) = generate::load_plan(layout)?;
    production(
        layout,
        &config,
        &plan,
        &url,
        &prod_branch,
        &heads,
        opts,
        &mut r,
    )?;
    alternates(layout, &plan, &url, &heads, opts, &mut r)?;
    Ok(!r.failed)
}

fn checkout_of(layout: &Layout, inst: &Instance) -> std::path::PathBuf {
    system::checkout_dir(layout, inst)
}

/// Alternates added to or removed from alternates.conf, and generated files brought in line
/// (which also completes a switch that an earlier, interrupted run recorded but did not apply).
fn configuration_changes(
    layout: &Layout,
    plan: &Plan,
    url: &str,
    heads: &RemoteHeads,
    opts: &Options,
    r: &mut Report,
) -> Result<()> {
    let planned: Vec<&str> = plan.service_names();
    let removed: Vec<String> = generate::existing_services(&layout.service_dir())?
        .into_iter()
        .filter(|n| !planned.contains(&n.as_str()))
        .collect();
    let old_ports = state::load_ports(layout)?;
    let mut added: Vec<(&Instance, Oid)> = Vec::new();
    for inst in plan.instances.iter().filter(|i| i.role == Role::Alternate) {
        let dir = checkout_of(layout, inst);
        if dir.exists() {
            continue;
        }
        let branch = inst.branch.as_deref().expect("alternates have a branch");
        if let Err(e) = heads.head(url, branch) {
            r.fail(&format!("alternate {}: {e:#}", inst.name));
            continue;
        }
        if opts.dry_run {
            r.say(&format!(
                "would add alternate {} (branch {branch})",
                inst.name
            ));
            continue;
        }
        match git::clone(url, branch, &dir, &inst.name) {
            Ok(oid) => added.push((inst, oid)),
            Err(e) => r.fail(&format!("alternate {}: {e:#}", inst.name)),
        }
    }
    for name in &removed {
        if opts.dry_run {
            r.say(&format!("would remove alternate {name}"));
        }
    }
    if opts.dry_run {
        return Ok(());
    }
    let (_, changes) = system::regenerate(layout)?;
    if changes.nginx_changed && removed.is_empty() && changes.added.is_empty() {
        r.say("nginx configuration brought in line with the recorded state");
    }
    // New alternates start once svscan has seen their directories (regenerate told it).
    let now = Instant::now();
    let waits: Vec<(&Instance, Instant)> = added.iter().map(|(i, _)| (*i, now)).collect();
    for ((inst, oid), h) in added.iter().zip(wait_all_healthy(plan, &waits)) {
        let branch = inst.branch.as_deref().unwrap_or_default();
        match h {
            Ok(took) => r.say(&format!(
                "alternate {} added at {} (branch {branch}), healthy after {:.1}s",
                inst.name,
                git::short(*oid),
                took.as_secs_f64()
            )),
            Err(why) => r.fail(&format!(
                "alternate {} added at {} (branch {branch}) but not healthy ({why}); log: {}",
                inst.name,
                git::short(*oid),
                layout.log_dir(&inst.name).join("current").display()
            )),
        }
    }
    for name in &removed {
        // The routing is gone and svscan was told; once the process has let go of its port,
        // the checkout goes too. Its logs stay in managed/var/log/<name>/.
        if let Some(&port) = old_ports.get(name) {
            let until = Instant::now() + Duration::from_secs(plan.settings.stop_grace_secs + 10);
            while !ports::is_free(port) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let dir = layout.alternate_checkout(name);
        if dir.exists() {
            fs::remove_dir_all(&dir)
                .with_context(|| format!("{}: cannot remove", dir.display()))?;
        }
        r.say(&format!(
            "alternate {name} removed (its logs stay in {})",
            layout.log_dir(name).display()
        ));
    }
    Ok(())
}

/// Restarts a service so it runs what is now in its checkout, and waits until the new process
/// runs (not the old one, still answering on its port a moment longer).
fn restart(layout: &Layout, name: &str, grace: u64) -> Result<()> {
    let dir = layout.service_dir().join(name);
    let old = status::read(&dir)
        .ok()
        .and_then(Result::ok)
        .map(|s| s.pid)
        .unwrap_or(0);
    control::send(&dir, control::RESTART)
        .with_context(|| format!("{name}: cannot restart (is it supervised?)"))?;
    let until = Instant::now() + Duration::from_secs(grace + 10);
    loop {
        if let Ok(Ok(st)) = status::read(&dir) {
            if st.state == State::Run && st.pid != 0 && st.pid != old {
                return Ok(());
            }
        }
        if Instant::now() >= until {
            anyhow::bail!(
                "{name} did not restart within {} s; see {}",
                grace + 10,
                layout.log_dir(name).join("current").display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Does a checkout already hold `oid` from `url` on `branch`?
fn is_at(dir: &Path, url: &str, branch: &str, oid: Oid) -> Option<Oid> {
    let co = git::inspect(dir).ok()?;
    let at =
        co.head == oid && co.origin.as_deref() == Some(url) && co.branch.as_deref() == Some(branch);
    Some(co.head).filter(|_| !at)
}

#[allow(clippy::too_many_arguments)]
fn production(
    layout: &Layout,
    config: &Config,
    plan: &Plan,
    url: &str,
    branch: &str,
    heads: &RemoteHeads,
    opts: &Options,
    r: &mut Report,
) -> Result<()> {
    let target = match heads.head(url, branch) {
        Ok(t) => t,
        Err(e) => {
            r.fail(&format!(
                "production: {e:#}; production keeps running what it runs"
            ));
            return Ok(());
        }
    };
    let active = plan.active;
    let inactive = active.other();
    let active_dir = layout.prod_checkout(active.name());
    let Some(old) = is_at(&active_dir, url, branch, target) else {
        if opts.verbose {
            r.say(&format!(
                "production: {} serves {}, the head of {branch}; nothing to do",
                active.name(),
                git::short(target)
            ));
        }
        return Ok(());
    };
    let failed = state::load_failed(layout)?;
    if failed.as_deref() == Some(target.to_string().as_str()) {
        r.fail(&format!(
            "production: commit {} of {branch} failed its health check earlier; production stays on {} until a newer commit arrives",
            git::short(target),
            git::short(old)
        ));
        return Ok(());
    }
    if opts.dry_run {
        r.say(&format!(
            "would deploy {branch} {} -> {} to {} and switch production to it",
            git::short(old),
            git::short(target),
            inactive.name()
        ));
        return Ok(());
    }
    let inst = plan.prod(inactive);
    let dir = checkout_of(layout, inst);
    let begin = Instant::now();
    let fetched = git::fetch(&dir, url, branch).and_then(|oid| {
        failpoint(r, "after-fetch");
        git::checkout(&dir, url, branch, oid).map(|()| oid)
    });
    let oid = match fetched {
        Ok(oid) => oid,
        Err(e) => {
            r.fail(&format!(
                "production: {e:#}; nothing that runs was touched; the next sync tries again"
            ));
            return Ok(());
        }
    };
    failpoint(r, "after-reset");
    restart(layout, inst.name.as_str(), plan.settings.stop_grace_secs)?;
    failpoint(r, "health-wait");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(plan.settings.health_timeout_secs);
    match health::wait_healthy(inst.port, &plan.settings.health_path, deadline) {
        Ok(took) => {
            system::switch_to(layout, config, plan.clone(), inactive)?;
            failpoint(r, "after-switch");
            state::save_failed(layout, None)?;
            r.say(&format!(
                "production: {} -> {} on {}, healthy after {:.1}s, switched ({:.1}s in all); {} keeps {} for `approuter switch`",
                git::short(old),
                git::short(oid),
                inactive.name(),
                took.as_secs_f64(),
                begin.elapsed().as_secs_f64(),
                active.name(),
                git::short(old)
            ));
            r.hook(
                layout,
                Event::Deployed,
                &[inactive.name(), &old.to_string(), &oid.to_string()],
            );
        }
        Err(why) => {
            state::save_failed(layout, Some(&oid.to_string()))?;
            r.fail(&format!(
                "production: commit {} of {branch} is not healthy on {} after {}s ({why}); not switched: {} keeps serving {}; log: {}",
                git::short(oid),
                inactive.name(),
                plan.settings.health_timeout_secs,
                active.name(),
                git::short(old),
                layout.log_dir(inactive.name()).join("current").display()
            ));
            r.hook(
                layout,
                Event::DeployFailed,
                &[inactive.name(), &oid.to_string()],
            );
        }
    }
    Ok(())
}

/// Alternates whose branch moved are replaced at once: fetched (in parallel), reset, restarted.
fn alternates(
    layout: &Layout,
    plan: &Plan,
    url: &str,
    heads: &RemoteHeads,
    opts: &Options,
    r: &mut Report,
) -> Result<()> {
    let mut moved: Vec<(&Instance, Oid, Oid)> = Vec::new();
    for inst in plan.instances.iter().filter(|i| i.role == Role::Alternate) {
        let dir = checkout_of(layout, inst);
        if !dir.exists() {
            continue;
        }
        let branch = inst.branch.as_deref().expect("alternates have a branch");
        let target = match heads.head(url, branch) {
            Ok(t) => t,
            Err(e) => {
                r.fail(&format!(
                    "alternate {}: {e:#}; it keeps running what it runs",
                    inst.name
                ));
                continue;
            }
        };
        match is_at(&dir, url, branch, target) {
            None => {
                if opts.verbose {
                    r.say(&format!(
                        "alternate {}: at {}; nothing to do",
                        inst.name,
                        git::short(target)
                    ));
                }
            }
            Some(old) if opts.dry_run => {
                r.say(&format!(
                    "would update alternate {} {} -> {}",
                    inst.name,
                    git::short(old),
                    git::short(target)
                ));
            }
            Some(old) => moved.push((inst, old, target)),
        }
    }
    if moved.is_empty() {
        return Ok(());
    }
    // Fetches go in parallel, a few at a time: each talks to the remote.
    let results: Vec<Result<Oid>> = std::thread::scope(|s| {
        moved
            .chunks(8)
            .flat_map(|chunk| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|(inst, _, _)| {
                        let dir = checkout_of(layout, inst);
                        let branch = inst.branch.clone().expect("alternates have a branch");
                        s.spawn(move || {
                            let oid = git::fetch(&dir, url, &branch)?;
                            git::checkout(&dir, url, &branch, oid)?;
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
    let mut restarted = Vec::new();
    for ((inst, old, _), result) in moved.iter().zip(results) {
        match result.and_then(|oid| {
            restart(layout, &inst.name, plan.settings.stop_grace_secs).map(|()| oid)
        }) {
            Ok(oid) => restarted.push((*inst, *old, oid, Instant::now())),
            Err(e) => r.fail(&format!("alternate {}: {e:#}", inst.name)),
        }
    }
    let waits: Vec<(&Instance, Instant)> =
        restarted.iter().map(|(i, _, _, at)| (*i, *at)).collect();
    let health = wait_all_healthy(plan, &waits);
    for ((inst, old, oid, _), h) in restarted.iter().zip(health) {
        match h {
            Ok(took) => r.say(&format!(
                "alternate {}: {} -> {}, restarted, healthy after {:.1}s",
                inst.name,
                git::short(*old),
                git::short(*oid),
                took.as_secs_f64()
            )),
            Err(why) => r.fail(&format!(
                "alternate {}: {} -> {}, restarted, not healthy ({why}); log: {}",
                inst.name,
                git::short(*old),
                git::short(*oid),
                layout.log_dir(&inst.name).join("current").display()
            )),
        }
        r.hook(
            layout,
            Event::AlternateUpdated,
            &[&inst.name, &old.to_string(), &oid.to_string()],
        );
    }
    Ok(())
}

/// Waits, in parallel, for each instance to answer its health path within the health timeout
/// from its start.
fn wait_all_healthy(
    plan: &Plan,
    started: &[(&Instance, Instant)],
) -> Vec<Result<Duration, String>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = started
            .iter()
            .map(|(inst, at)| {
                let deadline = *at + Duration::from_secs(plan.settings.health_timeout_secs);
                let path = plan.settings.health_path.as_str();
                s.spawn(move || health::wait_healthy(inst.port, path, deadline))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("health thread"))
            .collect()
    })
}
