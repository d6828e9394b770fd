//! The running environment as a whole: start, shutdown, switch, which-prod, check and the long status.

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::config::Config;
use crate::generate::{self, Changes};
use crate::git;
use crate::health;
use crate::layout::Layout;
use crate::panel;
use crate::plan::{Instance, Plan, Role, NGINX};
use crate::ports;
use crate::render::Host;
use crate::state::{self, Slot};
use crate::supervise::scan::running_pid;
use crate::supervise::status;

/// The svscan that runs this root's services, if one does.
pub fn svscan_pid(layout: &Layout) -> Option<u32> {
    running_pid(&layout.service_dir())
}

fn logger_pid_path(layout: &Layout) -> PathBuf {
    layout.run_dir().join("svscan-log.pid")
}

/// Where an instance's code is checked out.
pub fn checkout_dir(layout: &Layout, inst: &Instance) -> PathBuf {
    match inst.role {
        Role::Prod(_) => layout.prod_checkout(&inst.name),
        Role::Alternate => layout.alternate_checkout(&inst.name),
    }
}

fn log_file(layout: &Layout, name: &str) -> PathBuf {
    layout.log_dir(name).join("current")
}

/// The last `n` lines of a service's log, for error reports.
fn log_tail(layout: &Layout, name: &str, n: usize) -> Vec<String> {
    let text = fs::read_to_string(log_file(layout, name)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Makes sure every instance has its checkout: clones the missing ones, and refuses (without
/// touching them) existing ones on another branch or from another repository. Returns the
/// production branch, which may come from the remote's default.
pub fn ensure_checkouts(layout: &Layout, config: &Config, plan: &Plan) -> Result<String> {
    let url = git::resolve_url(layout.root(), &config.repo);
    let missing: Vec<&Instance> = plan
        .instances
        .iter()
        .filter(|i| !checkout_dir(layout, i).exists())
        .collect();
    let existing_prod_branch = [Slot::Instance1, Slot::Instance2]
        .iter()
        .map(|s| layout.prod_checkout(s.name()))
        .filter(|d| d.exists())
        .find_map(|d| git::inspect(&d).ok().and_then(|c| c.branch));
    // Only ask the remote when something must be cloned or the production branch is unknown:
    // a restart with every checkout in place needs no network.
    let heads = if !missing.is_empty()
        || (config.prod_branch.is_none() && existing_prod_branch.is_none())
    {
        Some(git::ls_remote(&url)?)
    } else {
        None
    };
    let prod_branch = match (&config.prod_branch, existing_prod_branch, &heads) {
        (Some(b), _, _) => b.clone(),
        (None, Some(b), _) => b,
        (None, None, Some(h)) => h.default_branch.clone().with_context(|| {
            format!("{url} has no default branch; write the production branch in managed/etc/prod_branch")
        })?,
        (None, None, None) => unreachable!("the remote was asked"),
    };
    let branch_of = |i: &Instance| i.branch.clone().unwrap_or_else(|| prod_branch.clone());
    for inst in &plan.instances {
        let dest = checkout_dir(layout, inst);
        if !dest.exists() {
            continue;
        }
        match (git::mismatch(&dest, &url, &branch_of(inst))?, inst.role) {
            (None, _) => {}
            // After a change of repository or production branch, the inactive production
            // instance keeps the old code until the next deploy: that is its rollback role.
            (Some(m), Role::Prod(_)) => eprintln!(
                "approuter: warning: {m}; it runs as it is, and the next sync deploys the configured branch"
            ),
            (Some(m), Role::Alternate) => bail!("{m}; move the checkout away to have it cloned again"),
        }
    }
    if let Some(heads) = &heads {
        for inst in &missing {
            heads.head(&url, &branch_of(inst))?;
        }
        for inst in &missing {
            git::clone(
                &url,
                &branch_of(inst),
                &checkout_dir(layout, inst),
                &inst.name,
            )?;
        }
    }
    Ok(prod_branch)
}

/// Every port the plan needs must be free, or held by one of our own services (left running by
/// a supervisor that was killed: the next svscan ends them before it starts anew).
fn check_ports(layout: &Layout, plan: &Plan) -> Result<()> {
    let ours: Vec<u32> = generate::existing_services(&layout.service_dir())?
        .iter()
        .flat_map(|n| {
            let d = layout.service_dir().join(n);
            [d.clone(), d.join("log")]
        })
        .filter_map(|d| status::read(&d).ok().and_then(Result::ok))
        .filter(|s| s.pid != 0)
        .map(|s| s.pid)
        .collect();
    let mut wanted: Vec<(u16, String)> =
        vec![(plan.settings.listen_port, "listen_port (nginx)".into())];
    wanted.extend(
        plan.instances
            .iter()
            .map(|i| (i.port, format!("instance {}", i.name))),
    );
    for (port, what) in wanted {
        if ports::is_free(port) {
            continue;
        }
        let holders = ports::holders(port);
        if !holders.is_empty()
            && holders
                .iter()
                .all(|h| ports::session_of(h.pid).is_some_and(|s| ours.contains(&s)))
        {
            continue;
        }
        let who = match holders.first() {
            Some(h) => format!("{} (pid {})", h.name, h.pid),
            None => "another process".into(),
        };
        bail!("port {port}, needed for {what}, is in use by {who}; stop it or choose another port in managed/etc/approuter.toml");
    }
    Ok(())
}

/// Generates, then tells whoever runs what changed: svscan rescans at once, nginx reloads.
pub fn regenerate(layout: &Layout) -> Result<(Plan, Changes)> {
    let (plan, changes) = generate::generate(layout)?;
    if let Some(pid) = svscan_pid(layout) {
        if !changes.added.is_empty() || !changes.removed.is_empty() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGHUP);
        }
        if changes.nginx_changed {
            crate::nginx::reload(&layout.service_dir().join(NGINX))?;
        }
    }
    Ok((plan, changes))
}

/// Starts svscan on the service directory, detached in its own session, its output going to
/// `managed/var/log/svscan/` through the built-in logger.
pub fn spawn_svscan(layout: &Layout, exe: &Path, grace: u64) -> Result<u32> {
    let log_dir = layout.log_dir("svscan");
    fs::create_dir_all(&log_dir)
        .with_context(|| format!("{}: cannot create", log_dir.display()))?;
    end_logger(layout);
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("creating a pipe")?;
    let detach = |cmd: &mut Command| {
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()
                    .map(drop)
                    .map_err(std::io::Error::from)
            });
        }
    };
    let mut logger = Command::new(exe);
    logger
        .arg("svlogd")
        .arg("-tt")
        .arg(&log_dir)
        .current_dir(layout.root())
        .stdin(Stdio::from(r))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    detach(&mut logger);
    let logger = logger.spawn().context("starting svscan's logger")?;
    fs::create_dir_all(layout.run_dir())?;
    fs::write(logger_pid_path(layout), format!("{}\n", logger.id()))?;
    let mut svscan = Command::new(exe);
    svscan
        .arg("svscan")
        .arg("--grace")
        .arg(grace.to_string())
        .arg(layout.service_dir())
        .current_dir(layout.root())
        .stdin(Stdio::null())
        .stdout(Stdio::from(w.try_clone()?))
        .stderr(Stdio::from(w));
    detach(&mut svscan);
    let mut child = svscan.spawn().context("starting approuter svscan")?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if svscan_pid(layout) == Some(pid) {
            return Ok(pid);
        }
        if let Some(st) = child.try_wait()? {
            bail!(
                "approuter svscan exited at once ({st}); see {}",
                log_file(layout, "svscan").display()
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "approuter svscan did not take {} within 10 s",
                layout.service_dir().display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// svscan's logger ends by itself once nothing writes to its pipe any more (svscan gone, and
/// with it every process that held the pipe). Give it a moment, then end it: after a shutdown
/// nothing may stay, and the logger of a killed svscan would keep a new one from locking the
/// log directory.
fn end_logger(layout: &Layout) {
    let Some(pid) = fs::read_to_string(logger_pid_path(layout))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return;
    };
    let alive = || kill(Pid::from_raw(pid), None).is_ok() && is_logger(pid, layout);
    let gone_within_5s = || {
        let until = Instant::now() + Duration::from_secs(5);
        while alive() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        !alive()
    };
    if !gone_within_5s() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        gone_within_5s();
    }
}

/// Is `pid` still svscan's logger for this root (and not a process that reused the pid)?
fn is_logger(pid: i32, layout: &Layout) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            String::from_utf8_lossy(&c)
                .replace('\0', " ")
                .contains(&format!(
                    "svlogd -tt {}",
                    layout.log_dir("svscan").display()
                ))
        })
        .unwrap_or(false)
}

/// `approuter start`: checkouts, generated files, the supervisor, and a wait until every
/// service runs and every instance answers its health path. Ok(true) when all is well.
pub fn start(layout: &Layout) -> Result<bool> {
    let (config, plan) = generate::load_plan(layout)?;
    if let Some(pid) = svscan_pid(layout) {
        println!("approuter is already running here (svscan pid {pid}); nothing changed");
        panel::status_cmd(layout, &[], false)?;
        return Ok(true);
    }
    check_ports(layout, &plan)?;
    ensure_checkouts(layout, &config, &plan)?;
    let (plan, changes) = generate::generate(layout)?;
    for line in changes.summary(&plan) {
        if line != "nothing changed" {
            println!("{line}");
        }
    }
    let host = Host::detect(&config)?;
    let pid = spawn_svscan(layout, &host.exe, plan.settings.stop_grace_secs)?;
    state::set_meant_to_run(layout, true)?;
    println!(
        "started approuter svscan (pid {pid}); waiting for every instance to answer {}",
        plan.settings.health_path
    );
    let ok = wait_until_healthy(
        layout,
        &plan,
        Duration::from_secs(plan.settings.health_timeout_secs),
    );
    panel::status_cmd(layout, &[], false)?;
    Ok(ok)
}

/// Waits until every service runs and every instance answers the health path with 200 (and
/// nginx answers it for production), then reports what did not.
pub fn wait_until_healthy(layout: &Layout, plan: &Plan, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let begin = Instant::now();
    let path = &plan.settings.health_path;
    let mut pending: BTreeMap<String, String> = plan
        .instances
        .iter()
        .map(|i| (i.name.clone(), "not checked yet".to_string()))
        .collect();
    pending.insert(NGINX.into(), "not checked yet".into());
    while !pending.is_empty() {
        for (name, why) in pending.iter_mut() {
            let port = match plan.instance(name) {
                Some(i) => i.port,
                None => plan.settings.listen_port,
            };
            *why = match health::get(port, path, None, Duration::from_secs(2)) {
                Ok(a) if a.status == 200 => String::new(),
                Ok(a) => format!("{path} answered {}", a.status),
                Err(e) => e,
            };
            if why.is_empty() {
                println!(
                    "  {name}: healthy after {:.1}s",
                    begin.elapsed().as_secs_f64()
                );
            }
        }
        pending.retain(|_, why| !why.is_empty());
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for (name, why) in &pending {
        eprintln!(
            "approuter: {name} is not healthy after {}s: {why}; its log: {}",
            timeout.as_secs(),
            log_file(layout, name).display()
        );
        for line in log_tail(layout, name, 5) {
            eprintln!("    {line}");
        }
    }
    pending.is_empty()
}

/// `approuter shutdown`: every service down, nginx included, then svscan and its logger gone.
pub fn shutdown(layout: &Layout) -> Result<()> {
    let Some(pid) = svscan_pid(layout) else {
        state::set_meant_to_run(layout, false)?;
        println!("approuter is not running here; nothing to stop");
        return Ok(());
    };
    let grace = Config::load(layout)
        .map(|c| c.settings.stop_grace_secs)
        .unwrap_or(10);
    state::set_meant_to_run(layout, false)?;
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).context("signalling svscan")?;
    println!("stopping every service (svscan pid {pid})");
    let deadline = Instant::now() + Duration::from_secs(grace * 2 + 30);
    while svscan_pid(layout).is_some() {
        if Instant::now() >= deadline {
            bail!(
                "svscan (pid {pid}) is still running; see {}",
                log_file(layout, "svscan").display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    end_logger(layout);
    let _ = fs::remove_file(logger_pid_path(layout));
    println!("approuter stopped");
    Ok(())
}

/// `approuter switch`: production traffic to the other instance, after checking it is healthy.
pub fn switch(layout: &Layout, force: bool) -> Result<Slot> {
    let (config, plan) = generate::load_plan(layout)?;
    let from = plan.active;
    let to = from.other();
    let target = plan.prod(to);
    let path = &plan.settings.health_path;
    match health::get(target.port, path, None, Duration::from_secs(5)) {
        Ok(a) if a.status == 200 => {}
        result if !force => {
            let why = match result {
                Ok(a) => format!("{path} answered {}", a.status),
                Err(e) => e,
            };
            bail!(
                "{} is not healthy ({why}); its log: {}; not switching (use --force to switch anyway)",
                to.name(),
                log_file(layout, to.name()).display()
            );
        }
        _ => eprintln!(
            "approuter: {} is not healthy; switching anyway (--force)",
            to.name()
        ),
    }
    switch_to(layout, &config, plan, to)?;
    Ok(to)
}

/// Points production at `to`: the nginx include is rendered and checked, the choice recorded,
/// the file written, nginx reloaded, and the answer watched until nginx serves from `to`.
pub fn switch_to(layout: &Layout, config: &Config, mut plan: Plan, to: Slot) -> Result<()> {
    let host = Host::detect(config)?;
    let from = plan.active;
    plan.active = to;
    // The choice is recorded first, so a switch cut short is completed by the next generate;
    // a configuration nginx refuses is never written, and the record goes back.
    state::save_active(layout, to)?;
    if let Err(e) = generate::apply_nginx(layout, &plan, &host) {
        state::save_active(layout, from)?;
        return Err(e);
    }
    if crate::nginx::reload(&layout.service_dir().join(NGINX))? {
        let port = plan.settings.listen_port;
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let served = health::get(
                port,
                &plan.settings.health_path,
                None,
                Duration::from_secs(2),
            )
            .ok()
            .and_then(|a| a.served_by);
            if served.as_deref() == Some(to.name()) {
                break;
            }
            if Instant::now() >= until {
                bail!(
                    "nginx was told to reload but still serves production from {:?}; see {}",
                    served,
                    log_file(layout, NGINX).display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for line in crate::hooks::run(
        layout,
        crate::hooks::Event::Switched,
        &[from.name(), to.name()],
    ) {
        println!("{line}");
    }
    Ok(())
}

/// A one-line description of an instance's checkout: branch and short commit.
pub fn describe_checkout(layout: &Layout, inst: &Instance) -> (String, String) {
    match git::inspect(&checkout_dir(layout, inst)) {
        Ok(c) => (
            c.branch.unwrap_or_else(|| "(detached)".into()),
            git::short(c.head),
        ),
        Err(_) => ("-".into(), "-".into()),
    }
}

/// `approuter status -l`: the panel, and under each instance its branch, commit, port and role.
pub fn status_long(layout: &Layout, names: &[String], json: bool) -> Result<bool> {
    let (_, plan) = generate::load_plan(layout)?;
    let names = panel::select(layout, names)?;
    let now = SystemTime::now();
    let reports: Vec<panel::Report> = names
        .iter()
        .map(|n| panel::report(&layout.service_dir(), n, now))
        .collect();
    let detail = |name: &str| -> serde_json::Value {
        match plan.instance(name) {
            Some(inst) => {
                let (branch, commit) = describe_checkout(layout, inst);
                let role = match inst.role {
                    Role::Prod(s) if s == plan.active => "active production",
                    Role::Prod(_) => "inactive production",
                    Role::Alternate => "alternate",
                };
                serde_json::json!({"branch": branch, "commit": commit, "port": inst.port, "role": role})
            }
            None if name == NGINX => {
                serde_json::json!({"port": plan.settings.listen_port, "role": "router"})
            }
            None => serde_json::json!({}),
        }
    };
    if json {
        let v: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).expect("report serializes");
                v["detail"] = detail(&r.name);
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let width = reports.iter().map(|r| r.name.len()).max().unwrap_or(0);
        for r in &reports {
            println!("{}", panel::panel_line(r, width));
            let d = detail(&r.name);
            let mut parts = Vec::new();
            for key in ["branch", "commit", "port", "role"] {
                match &d[key] {
                    serde_json::Value::String(s) => parts.push(format!("{key} {s}")),
                    serde_json::Value::Number(n) => parts.push(format!("{key} {n}")),
                    _ => {}
                }
            }
            if !parts.is_empty() {
                println!("{:13}{}", "", parts.join("  "));
            }
        }
    }
    Ok(reports.iter().all(panel::Report::healthy))
}

/// `approuter check`: the health path of every instance, directly and through nginx.
pub fn check(layout: &Layout) -> Result<bool> {
    let (_, plan) = generate::load_plan(layout)?;
    let path = &plan.settings.health_path;
    let listen = plan.settings.listen_port;
    let t = Duration::from_secs(5);
    let cell = |r: &Result<health::Answer, String>| match r {
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
        let direct = port.map(|p| health::get(p, path, None, t));
        let via = health::get(listen, path, route, t);
        let mut notes = Vec::new();
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
        all_ok &= direct_ok && via_ok;
        println!(
            "{name:width$}  {:>5}  {:<14}  {:<14}  {}",
            port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            direct.as_ref().map(cell).unwrap_or_else(|| "-".into()),
            cell(&via),
            notes.join("; ")
        );
    };
    for inst in &plan.instances {
        row(&inst.name, Some(inst.port), Some(&inst.name), &inst.name);
    }
    row("production", None, None, plan.active.name());
    Ok(all_ok)
}
