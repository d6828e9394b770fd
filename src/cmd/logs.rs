//! `approuter logs`: the last lines of any log under managed/var/log (services, svscan, sync, removed alternates), and `-f` to follow them across rotations.

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;

use crate::layout::Layout;
use crate::svlogd::reader::Log;

#[derive(clap::Args)]
pub struct Args {
    /// Keep printing new lines, across rotations, until interrupted
    #[arg(short = 'f', long)]
    follow: bool,
    /// How many of the last lines to print first
    #[arg(short = 'n', long, value_name = "N", default_value_t = 20)]
    lines: usize,
    /// Every log
    #[arg(long, conflicts_with = "services")]
    all: bool,
    /// Logs, by the names of their directories under managed/var/log: services (a removed
    /// alternate's too), svscan, sync
    #[arg(value_name = "NAME", required_unless_present = "all")]
    services: Vec<String>,
}

/// How often `-f` looks for new lines: quick enough to feel live, cheap enough to leave running.
const FOLLOW_EVERY: u16 = 200;

/// Every log directory under `managed/var/log/`: the services' (a removed alternate's stays),
/// svscan's and sync's, by name.
fn log_names(layout: &Layout) -> Result<Vec<String>> {
    let root = layout.log_root();
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot list", root.display())),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

pub fn run(layout: &Layout, args: Args) -> Result<ExitCode> {
    let known = log_names(layout)?;
    if known.is_empty() {
        bail!(
            "{}: no logs yet; run `approuter start` first",
            layout.log_root().display()
        );
    }
    let mut names: Vec<String> = Vec::new();
    for name in if args.all { &known } else { &args.services } {
        if !known.contains(name) {
            bail!("no log named {name:?}; logs: {}", known.join(", "));
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
