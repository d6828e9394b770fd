//! `approuter logs`: the last lines of services' logs, as written, and following them across rotations.

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::generate;
use crate::layout::Layout;
use crate::svlogd;

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

pub fn main(layout: &Layout, args: Args) -> Result<ExitCode> {
    let service_dir = layout.service_dir();
    let known = generate::existing_services(&service_dir)?;
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
        .map(|name| Log {
            prefix: if names.len() > 1 {
                format!("{name:<width$} | ").into_bytes()
            } else {
                Vec::new()
            },
            dir: layout.log_dir(name),
            file: None,
            offset: 0,
            partial: Vec::new(),
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

/// One service's log as `logs` reads it: the `current` it follows and how far it has read.
struct Log {
    prefix: Vec<u8>,
    dir: PathBuf,
    file: Option<File>,
    offset: u64,
    /// A line whose newline has not been written yet.
    partial: Vec<u8>,
}

impl Log {
    /// Prints the last `n` complete lines of the log, reaching back into rotated files when
    /// `current` has fewer, and remembers where `current` ended for following.
    fn print_tail(&mut self, n: usize, out: &mut impl Write) -> io::Result<()> {
        let files = match svlogd::log_files(&self.dir) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(with_path(e, &self.dir)),
        };
        let current = svlogd::current_file(&self.dir);
        // Read through the descriptor -f goes on with, so nothing falls between the two.
        self.file = File::open(&current).ok();
        let current_len = match &self.file {
            Some(f) => f.metadata()?.len(),
            None => 0,
        };
        self.offset = current_len;
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        let mut newlines = 0;
        'files: for path in files.iter().rev() {
            let (file, mut end) = if *path == current {
                match &self.file {
                    Some(f) => (f.try_clone()?, current_len),
                    None => continue,
                }
            } else {
                match File::open(path) {
                    Ok(f) => {
                        let len = f.metadata()?.len();
                        (f, len)
                    }
                    // Deleted by a rotation since it was listed.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(with_path(e, path)),
                }
            };
            while end > 0 {
                let start = end.saturating_sub(64 * 1024);
                let mut block = vec![0; (end - start) as usize];
                file.read_exact_at(&mut block, start)
                    .map_err(|e| with_path(e, path))?;
                newlines += memchr::memchr_iter(b'\n', &block).count();
                blocks.push(block);
                end = start;
                // One newline more than n marks where the first of the n lines starts.
                if newlines > n {
                    break 'files;
                }
            }
        }
        let stream: Vec<u8> = blocks.into_iter().rev().flatten().collect();
        let whole = memchr::memrchr(b'\n', &stream).map_or(0, |i| i + 1);
        let lines: Vec<&[u8]> = stream[..whole].split_inclusive(|&b| b == b'\n').collect();
        for line in &lines[lines.len().saturating_sub(n)..] {
            out.write_all(&self.prefix)?;
            out.write_all(line)?;
        }
        self.partial = stream[whole..].to_vec();
        Ok(())
    }

    /// Prints the lines completed since the last call. When `current` has been replaced by a
    /// rotation, the rest of the old one is read first (svlogd closes it before the rename),
    /// and a `current` that shrank was truncated by someone and is read from its start.
    fn print_new(&mut self, out: &mut impl Write) -> io::Result<()> {
        self.read_on(out)?;
        let current = svlogd::current_file(&self.dir);
        let Ok(now) = std::fs::metadata(&current) else {
            return Ok(());
        };
        let same = match &self.file {
            Some(f) => f
                .metadata()
                .is_ok_and(|m| m.ino() == now.ino() && m.dev() == now.dev()),
            None => false,
        };
        if !same {
            self.read_on(out)?;
            self.file = File::open(&current).ok();
            self.offset = 0;
            self.read_on(out)?;
        } else if now.len() < self.offset {
            self.offset = 0;
            self.partial.clear();
            self.read_on(out)?;
        }
        Ok(())
    }

    fn read_on(&mut self, out: &mut impl Write) -> io::Result<()> {
        let Some(f) = &mut self.file else {
            return Ok(());
        };
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        self.offset += f.read_to_end(&mut buf)? as u64;
        if buf.is_empty() {
            return Ok(());
        }
        self.partial.extend_from_slice(&buf);
        let whole = memchr::memrchr(b'\n', &self.partial).map_or(0, |i| i + 1);
        if self.prefix.is_empty() {
            out.write_all(&self.partial[..whole])?;
        } else {
            for line in self.partial[..whole].split_inclusive(|&b| b == b'\n') {
                out.write_all(&self.prefix)?;
                out.write_all(line)?;
            }
        }
        self.partial.drain(..whole);
        Ok(())
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
