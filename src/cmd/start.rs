//! `approuter start`: the whole environment (checkouts, files, supervisor, a wait for health), or single services brought up.

use anyhow::{bail, Result};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::{exit_if, select, status};
use crate::deploy::environment::{self, Started};
use crate::deploy::{health, load_plan};
use crate::layout::Layout;
use crate::plan::NGINX;
use crate::supervise::control;

/// How long `start SERVICE` waits for a service to run.
pub const SERVICE_START_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(layout: &Layout, services: &[String]) -> Result<ExitCode> {
    if !services.is_empty() {
        return start_services(layout, services);
    }
    Ok(exit_if(whole(layout)?))
}

/// Starts the whole environment and shows the panel; true when all is healthy.
pub fn whole(layout: &Layout) -> Result<bool> {
    let healthy = match environment::start(layout)? {
        Started::AlreadyRunning(pid) => {
            println!("approuter is already running here (svscan pid {pid}); nothing changed");
            true
        }
        Started::Started { healthy } => healthy,
    };
    status::settle(layout, &[]);
    status::panel(layout, &[], false)?;
    Ok(healthy)
}

/// Brings the named services up, then waits until each instance (and nginx) answers its
/// health path, as the whole `start` does: a request right after gets an answer.
fn start_services(layout: &Layout, names: &[String]) -> Result<ExitCode> {
    let names = select(layout, names)?;
    let up = super::control(layout, &names, control::UP, SERVICE_START_TIMEOUT, |st| {
        st.is_up()
    })?;
    if !up {
        bail!(
            "not every service came up within {} s; see `approuter status` and its log",
            SERVICE_START_TIMEOUT.as_secs()
        );
    }
    // Services are controlled even with a configuration broken since `start`: then there is
    // no port to ask, and running is all that can be said.
    let plan = match load_plan(layout) {
        Ok((_, plan)) => plan,
        Err(e) => {
            eprintln!("approuter: warning: not waiting for health: {e:#}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let deadline = Instant::now() + plan.settings.start_timeout();
    let targets: Vec<health::Target> = names
        .iter()
        .filter_map(|n| {
            let port = match plan.instance(n) {
                Some(i) => i.port,
                None if n == NGINX => plan.settings.listen_port,
                None => return None,
            };
            Some(health::Target {
                name: n.clone(),
                port,
                deadline,
                watch: Some(layout.service(n)),
                pid: None,
            })
        })
        .collect();
    let results = health::wait_all(
        &targets,
        &plan.settings.health_path,
        Instant::now(),
        &|_, _| {},
    );
    let failed: Vec<String> = targets
        .iter()
        .zip(results)
        .filter_map(|(t, r)| {
            r.err().map(|why| {
                format!(
                    "{} is not healthy: {why}; its log: {}",
                    t.name,
                    layout.log_current(&t.name).display()
                )
            })
        })
        .collect();
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

/// How often the foreground start looks whether the supervisor still runs.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// `approuter start --foreground`: the whole start, then it stays, for a service manager
/// (systemd's `Type=notify`, see `approuter systemd-unit`): READY=1 once everything answers,
/// a supervisor that dies is started again (it takes over what still runs), and SIGTERM or
/// SIGINT shut everything down before it exits 0. A `shutdown` run meanwhile ends it too.
/// `lock` is approuter's lock, held for the start only.
pub fn foreground(
    layout: &Layout,
    lock: crate::util::pidlock::PidLock,
    no_wait: bool,
) -> Result<ExitCode> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    // Blocked first: a TERM that comes while everything starts is acted on once it has.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block()?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    let healthy = whole(layout)?;
    drop(lock);
    let notify = |states: &[sd_notify::NotifyState]| {
        // Outside systemd there is no NOTIFY_SOCKET, and nothing to tell.
        let _ = sd_notify::notify(states);
    };
    let svscan = |layout: &Layout| crate::supervise::client::svscan_pid(&layout.service_dir());
    let running = |pid: Option<u32>| match pid {
        Some(p) => format!("running; supervisor pid {p}"),
        None => "running".to_string(),
    };
    if healthy {
        notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&running(svscan(layout))),
        ]);
    } else {
        println!("approuter: not every instance is healthy; serving what is, and staying up");
        notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(
                "running, but not every instance is healthy: see approuter status",
            ),
        ]);
    }
    // After a failed attempt to start the supervisor again, the next one waits this long; what
    // still runs keeps running meanwhile (exiting would have systemd kill it all).
    let retry_every = Duration::from_secs(10);
    let mut next_try = Instant::now();
    loop {
        // The supervisors and loggers this process started, once they end.
        while let Ok(st) = nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
        {
            if st == nix::sys::wait::WaitStatus::StillAlive {
                break;
            }
        }
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&signals),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = nix::poll::PollTimeout::try_from(WATCH_EVERY.as_millis() as u64)
            .unwrap_or(nix::poll::PollTimeout::MAX);
        let _ = nix::poll::poll(&mut fds, ms);
        if let Ok(Some(sig)) = signals.read_signal() {
            println!(
                "approuter: signal {}: shutting everything down",
                sig.ssi_signo
            );
            notify(&[sd_notify::NotifyState::Stopping]);
            // Not waiting for a sync that holds the lock (it may be waiting minutes for a
            // deploy's health): the stop must fit systemd's TimeoutStopSec. That sync fails.
            let _lock = super::exclusive(layout, "shutdown", true).ok();
            environment::shutdown(layout)?;
            println!("approuter stopped");
            return Ok(ExitCode::SUCCESS);
        }
        if svscan(layout).is_some() {
            continue;
        }
        if !crate::state::meant_to_run(layout) {
            // `approuter shutdown` stopped it: so this ends too.
            println!("approuter was shut down; exiting");
            return Ok(ExitCode::SUCCESS);
        }
        if Instant::now() < next_try {
            continue;
        }
        println!(
            "approuter: the supervisor is gone; starting it again (it takes over what still runs)"
        );
        let again = super::exclusive(layout, "start", no_wait).and_then(|_lock| {
            if svscan(layout).is_none() && crate::state::meant_to_run(layout) {
                whole(layout)?;
            }
            Ok(())
        });
        match again {
            Ok(()) => notify(&[sd_notify::NotifyState::Status(&running(svscan(layout)))]),
            Err(e) => {
                let msg = format!(
                    "cannot start the supervisor again: {e:#}; trying again in {} s",
                    retry_every.as_secs()
                );
                eprintln!("approuter: {msg}");
                notify(&[sd_notify::NotifyState::Status(&msg)]);
                next_try = Instant::now() + retry_every;
            }
        }
    }
}
