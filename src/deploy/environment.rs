//! The running environment as a whole: `start` (checkouts, generated files, the supervisor and its logger, a wait for health) and `shutdown`.

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{checkouts, generate, health, load_plan};
use crate::config::Config;
use crate::ext::procfs;
use crate::layout::{self, Layout};
use crate::plan::{Plan, NGINX};
use crate::render::Host;
use crate::state;
use crate::supervise::{client, servicedir, status};
use crate::util::{file as fsx, poll};

/// How long a new svscan may take to lock its directory.
const SVSCAN_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long svscan's logger gets to read to the end of its input once svscan is gone.
const LOGGER_EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many lines of a failing instance's log an error report shows.
pub const LOG_TAIL_LINES: usize = 5;

/// How long a shutdown may take: every service gets `grace` between TERM and KILL, and loggers
/// as long again to drain what their services wrote.
pub fn shutdown_timeout(grace_secs: u64) -> Duration {
    Duration::from_secs(grace_secs * 2 + 30)
}

/// The last `n` lines of a service's log, for error reports.
pub fn log_tail(layout: &Layout, name: &str, n: usize) -> Vec<String> {
    let text = fs::read_to_string(layout.log_current(name)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Is some service's recorded run still alive (left by a supervisor that was killed, for the
/// next one to take over)?
fn left_running(layout: &Layout) -> bool {
    generate::list_services(&layout.service_dir())
        .unwrap_or_default()
        .iter()
        .any(|n| servicedir::left_running(&layout.service(n)))
}

/// Every port the plan needs must be free, or held by one of our own services (left running by
/// a supervisor that was killed: the next svscan takes them over).
fn check_ports(layout: &Layout, plan: &Plan) -> Result<()> {
    let ours: Vec<u32> = generate::list_services(&layout.service_dir())?
        .iter()
        .flat_map(|n| {
            let d = layout.service(n);
            [Some(d.clone()), servicedir::log_of(&d)]
        })
        .flatten()
        .filter_map(|d| status::read(&d).ok())
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
        if procfs::port_is_free(port) {
            continue;
        }
        let holders = procfs::listeners(port);
        if !holders.is_empty()
            && holders.unseen == 0
            && holders
                .seen
                .iter()
                .all(|h| procfs::stat(h.pid).is_some_and(|s| ours.contains(&s.session)))
        {
            continue;
        }
        let who = match holders.seen.first() {
            Some(h) => format!("{} (pid {})", h.name, h.pid),
            None if holders.unseen > 0 => crate::deploy::listener::unseen_holder(),
            None => "another process".into(),
        };
        bail!("port {port}, needed for {what}, is in use by {who}; stop it or choose another port in managed/etc/approuter.toml");
    }
    Ok(())
}

/// svscan's logger's arguments: `-tt <dir>`.
fn logger_args(layout: &Layout) -> Vec<String> {
    vec![
        "-tt".into(),
        layout.log_dir(layout::SVSCAN).display().to_string(),
    ]
}

/// Is `pid` svscan's logger for this root (and not a process that reused the pid)? Its command
/// line ends `svlogd -tt <dir>`, run as `approuter-svlogd` or as `approuter svlogd`.
fn is_logger(pid: u32, layout: &Layout) -> bool {
    procfs::cmdline(pid)
        .is_some_and(|c| c.ends_with(&format!("svlogd {}", logger_args(layout).join(" "))))
}

fn detach(cmd: &mut Command) {
    // SAFETY: setsid and sigprocmask are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            // `start --foreground` blocks the signals it waits for; the supervisor and its
            // logger start with none blocked.
            nix::sys::signal::SigSet::empty()
                .thread_set_mask()
                .map_err(std::io::Error::from)
        });
    }
}

/// Starts svscan on the service directory, detached in its own session, its output going to
/// `managed/var/log/svscan/` through the built-in logger.
pub fn spawn_svscan(layout: &Layout, exe: &Path, grace: u64) -> Result<u32> {
    let log_dir = layout.log_dir(layout::SVSCAN);
    crate::util::file::ensure_dir(&log_dir)?;
    end_logger(layout);
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("creating a pipe")?;
    let logger_cmd = crate::render::host::logger_command(exe);
    let mut logger = Command::new(&logger_cmd[0]);
    logger
        .args(&logger_cmd[1..])
        .args(logger_args(layout))
        .current_dir(layout.root())
        .stdin(Stdio::from(r))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    detach(&mut logger);
    let logger = logger.spawn().context("starting svscan's logger")?;
    // The pid with its start time (in clock ticks since boot): a later shutdown signals it only
    // when both still match, never a process that reused the pid.
    let started = procfs::stat(logger.id()).map_or(0, |s| s.start_ticks);
    fsx::ensure_private_dir(&layout.run_dir())?;
    fsx::write_atomic(
        &layout.svscan_logger_pid(),
        format!("{} {started}\n", logger.id()).as_bytes(),
        0o600,
    )?;
    let svscan_cmd = crate::render::host::supervisor_command(exe);
    let mut svscan = Command::new(&svscan_cmd[0]);
    svscan
        .args(&svscan_cmd[1..])
        .arg("--grace")
        .arg(grace.to_string())
        .arg(layout.service_dir())
        .current_dir(layout.root())
        .stdin(Stdio::null())
        .stdout(Stdio::from(w.try_clone().context("duplicating a pipe")?))
        .stderr(Stdio::from(w));
    detach(&mut svscan);
    let mut child = svscan.spawn().context("starting approuter svscan")?;
    let pid = child.id();
    let mut exited = None;
    let took = poll::holds(SVSCAN_START_TIMEOUT, poll::EVERY, || {
        exited = child.try_wait().ok().flatten();
        exited.is_some() || client::svscan_pid(&layout.service_dir()) == Some(pid)
    });
    match exited {
        Some(st) => bail!(
            "approuter svscan exited at once ({st}); see {}",
            layout.log_current(layout::SVSCAN).display()
        ),
        None if !took => bail!(
            "approuter svscan did not take {} within {} s",
            layout.service_dir().display(),
            SVSCAN_START_TIMEOUT.as_secs()
        ),
        None => Ok(pid),
    }
}

/// svscan's logger ends by itself once nothing writes to its pipe any more (svscan gone, and
/// with it every process that held the pipe). Give it a moment, then end it: after a shutdown
/// nothing may stay, and the logger of a killed svscan would keep a new one from locking the
/// log directory.
fn end_logger(layout: &Layout) {
    let Some((pid, started)) = fs::read_to_string(layout.svscan_logger_pid())
        .ok()
        .and_then(|s| {
            let (pid, ticks) = s.trim().split_once(' ')?;
            Some((pid.parse::<u32>().ok()?, ticks.parse::<u64>().ok()?))
        })
    else {
        return;
    };
    let alive = || {
        procfs::stat(pid).is_some_and(|s| s.start_ticks == started && !s.is_zombie())
            && is_logger(pid, layout)
    };
    if !poll::holds(LOGGER_EXIT_TIMEOUT, poll::EVERY, || !alive()) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        poll::holds(LOGGER_EXIT_TIMEOUT, poll::EVERY, || !alive());
    }
}

/// What `start` found: already running, or started and then healthy or not.
pub enum Started {
    AlreadyRunning(u32),
    Started { healthy: bool },
}

/// `approuter start`: checkouts, generated files, the supervisor, and a wait until every
/// service runs and every instance answers its health path.
pub fn start(layout: &Layout) -> Result<Started> {
    load_plan(layout)?;
    if let Some(pid) = client::svscan(&layout.service_dir())? {
        return Ok(Started::AlreadyRunning(pid));
    }
    // No supervisor: production starts on the configured ports, wherever it ran before, unless
    // a supervisor that was killed left it running; the new one takes it over where it is.
    if !left_running(layout) {
        state::forget_prod_ports(layout)?;
    }
    let (config, plan) = load_plan(layout)?;
    check_ports(layout, &plan)?;
    checkouts::ensure(layout, &config, &plan)?;
    let (plan, changes) = generate::generate(layout)?;
    for line in changes.summary(&plan) {
        if line != "nothing changed" {
            println!("{line}");
        }
    }
    if let Some(note) = checkouts::root_note(&plan.settings) {
        println!("{note}");
    }
    let host = Host::detect(&config)?;
    let pid = spawn_svscan(layout, &host.exe, plan.settings.stop_grace_secs)?;
    state::set_meant_to_run(layout, true)?;
    println!(
        "started approuter svscan (pid {pid}); waiting for every instance to answer {}",
        plan.settings.health_path
    );
    let failures = wait_until_healthy(layout, &plan, &|name, took| {
        println!("  {name}: healthy after {:.1}s", took.as_secs_f64())
    });
    // Written before anything ran, the testers' page said so: now it can say what runs.
    generate::refresh_picker(layout, &plan)?;
    for f in &failures {
        eprintln!(
            "approuter: {} is {}; its log: {}",
            f.name,
            f.why,
            f.log.display()
        );
        for line in &f.tail {
            eprintln!("    {line}");
        }
    }
    Ok(Started::Started {
        healthy: failures.is_empty(),
    })
}

/// Why an instance (or nginx) is not healthy after a start, with the last lines of its log.
pub struct NotHealthy {
    pub name: String,
    pub why: String,
    pub log: PathBuf,
    pub tail: Vec<String>,
}

/// Waits until every service runs a process of the supervisor's own (not one a previous
/// supervisor left, which it may still be ending) and every instance answers the health path
/// with 200, and nginx answers it for production. `on_healthy` hears of each as it turns
/// healthy. Returns what did not.
pub fn wait_until_healthy(
    layout: &Layout,
    plan: &Plan,
    on_healthy: &(dyn Fn(&str, Duration) + Sync),
) -> Vec<NotHealthy> {
    let begin = Instant::now();
    let timeout = plan.settings.start_timeout();
    let deadline = begin + timeout;
    let names: Vec<&str> = plan.service_names();
    poll::holds(timeout, poll::EVERY, || {
        names
            .iter()
            .all(|n| status::read(&layout.service(n)).is_ok_and(|st| st.is_up()))
    });
    let mut targets: Vec<health::Target> = plan
        .instances
        .iter()
        .map(|i| health::Target {
            name: i.name.clone(),
            port: i.port,
            deadline,
            watch: Some(layout.service(&i.name)),
            pid: None,
        })
        .collect();
    targets.push(health::Target {
        name: NGINX.into(),
        port: plan.settings.listen_port,
        deadline,
        watch: Some(layout.service(NGINX)),
        pid: None,
    });
    let results = health::wait_all(&targets, &plan.settings.health_path, begin, on_healthy);
    targets
        .iter()
        .zip(results)
        .filter_map(|(t, r)| {
            let why = r.err()?;
            let after = match why {
                health::Unhealthy::Timeout(_) => format!(" after {}s", timeout.as_secs()),
                health::Unhealthy::Exited(_) | health::Unhealthy::Foreign(_) => String::new(),
            };
            Some(NotHealthy {
                name: t.name.clone(),
                why: format!("not healthy{after}: {why}"),
                log: layout.log_current(&t.name),
                tail: log_tail(layout, &t.name, LOG_TAIL_LINES),
            })
        })
        .collect()
}

/// `approuter shutdown`: every service down, nginx included, then svscan and its logger gone.
/// False when nothing ran.
pub fn shutdown(layout: &Layout) -> Result<bool> {
    state::set_meant_to_run(layout, false)?;
    let grace = Config::load(layout)
        .map(|c| c.settings.stop_grace_secs)
        .unwrap_or(crate::config::Settings::default().stop_grace_secs);
    let pid = match client::terminate(&layout.service_dir())? {
        Some(pid) => pid,
        // The supervisor was killed and its services run on: a new one takes them over, so
        // that they stop as any shutdown stops them (TERM, KILL after the grace period).
        None if left_running(layout) => {
            println!(
                "svscan is gone but services it started still run; taking them over to stop them"
            );
            let exe = crate::render::host::this_exe()?;
            spawn_svscan(layout, &exe, grace)?;
            client::terminate(&layout.service_dir())?
                .context("the supervisor started to stop the services is gone already")?
        }
        None => return Ok(false),
    };
    println!("stopping every service (svscan pid {pid})");
    let timeout = shutdown_timeout(grace);
    if !poll::holds(timeout, poll::EVERY, || {
        client::svscan_pid(&layout.service_dir()).is_none()
    }) {
        bail!(
            "svscan (pid {pid}) is still running after {} s; see {}",
            timeout.as_secs(),
            layout.log_current(layout::SVSCAN).display()
        );
    }
    end_logger(layout);
    let _ = fs::remove_file(layout.svscan_logger_pid());
    Ok(true)
}
