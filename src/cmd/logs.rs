//! `approuter logs`: the last lines of services' logs, and `-f` to follow them across rotations.

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;

use crate::layout::Layout;
use crate::supervise::servicedir;
use crate::svlogd::reader::Log;

#[derive(clap::Args)]
pub struct Args {
    /// Keep printing new lines, across rotations, until interrupted
    #[arg(short = 'f', long)]
    follow: bool,
    /// How many of the last lines to print first
    #[arg(short = 'n', long, value_name = "N", default_value_t = 20)]
    lines: usize,
    /// Every service
    #[arg(long, conflicts_with = "services")]
    all: bool,
    /// Services, as named in managed/var/service
    #[arg(value_name = "SERVICE", required_unless_present = "all")]
    services: Vec<String>,
}

/// How often `-f` looks for new lines: quick enough to feel live, cheap enough to leave running.
const FOLLOW_EVERY: u16 = 200;

pub fn run(layout: &Layout, args: Args) -> Result<ExitCode> {
    let service_dir = layout.service_dir();
    let known = servicedir::list(&service_dir)
        .with_context(|| format!("{}: cannot list", service_dir.display()))?;
    if known.is_empty() {
        bail!(
            "{}: no services yet; run `approuter generate` first",
            service_dir.display()
        );
    }
    let mut names: Vec<String> = Vec::new();
    for name in if args.all { &known } else { &args.services } {
        if !known.contains(name) {
            bail!(
                "unknown service {name:?}; known services: {}",
                known.join(", ")
            );
        }
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    // A blocked SIGINT/SIGTERM is read from a signalfd, so that -f ends quietly and exits 0.
    let signals = if args.follow {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGTERM);
        mask.thread_block().context("cannot block signals")?;
        Some(
            SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)
                .context("cannot create a signalfd")?,
        )
    } else {
        None
    };
    let width = names.iter().map(String::len).max().unwrap_or(0);
    let mut logs: Vec<Log> = names
        .iter()
        .map(|name| {
            let prefix = if names.len() > 1 {
                format!("{name:<width$} | ").into_bytes()
            } else {
                Vec::new()
            };
            Log::new(prefix, layout.log_dir(name))
        })
        .collect();
    let mut out = io::BufWriter::new(io::stdout().lock());
    let printed = (|| -> io::Result<()> {
        for log in &mut logs {
            log.print_tail(args.lines, &mut out)?;
        }
        out.flush()?;
        let Some(signals) = &signals else {
            return Ok(());
        };
        loop {
            for log in &mut logs {
                log.print_new(&mut out)?;
            }
            out.flush()?;
            let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(FOLLOW_EVERY)).is_ok_and(|n| n > 0) {
                return Ok(());
            }
        }
    })();
    match printed {
        // A reader such as `head` that has seen enough is not an error.
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("cannot print the logs"),
        _ => Ok(ExitCode::SUCCESS),
    }
}
