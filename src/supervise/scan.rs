//! `approuter svscan DIR`: one process that finds service directories and supervises each with its log, runsvdir and runsv in one event loop.

use anyhow::{bail, Context, Result};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::servicedir;
use super::unit::{Ended, Io, Unit};
use crate::ext::procfs;
use crate::util::pidlock::{self, Acquired, PidLock};

/// The lock svscan holds on the directory it scans; it also holds svscan's pid.
pub const SCAN_LOCK: &str = ".svscan.lock";

/// How often the directory is looked at without being asked (runsvdir's period).
const SCAN_EVERY: Duration = Duration::from_secs(5);
/// How often every entry is listed again even if the directory did not change: to retry
/// services another supervisor held, and to recreate FIFOs someone deleted.
const FULL_SCAN_EVERY: Duration = Duration::from_secs(60);

const TOKEN_SIGNALS: u64 = u64::MAX;

pub struct Options {
    pub dir: PathBuf,
    /// How long a stopping service gets between TERM and KILL.
    pub grace: Duration,
}

/// Which descriptor of a service an epoll event is about.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Main = 0,
    Log = 1,
    Capture = 2,
    /// The pidfd of a run taken over from a previous supervisor.
    MainEnd = 3,
    LogEnd = 4,
}

fn token(slot: usize, part: Part) -> u64 {
    ((slot as u64) << 3) | part as u64
}

fn untoken(t: u64) -> (usize, Part) {
    let part = match t & 7 {
        0 => Part::Main,
        1 => Part::Log,
        2 => Part::Capture,
        3 => Part::MainEnd,
        _ => Part::LogEnd,
    };
    ((t >> 3) as usize, part)
}

/// A service directory under supervision: its main unit, its log, and the pipe svscan holds
/// between them so neither side's restart loses output.
struct Service {
    name: String,
    id: (u64, u64),
    main: Unit,
    log: Option<Unit>,
    /// The log's stderr, read by svscan so `approuter status` can tell what the logger said.
    capture: Option<File>,
    capture_buf: Vec<u8>,
    /// The directory disappeared: forget it.
    removed: bool,
    log_told_to_exit: bool,
}

struct Scanner {
    dir: PathBuf,
    grace: Duration,
    epoll: Epoll,
    slots: Vec<Option<Service>>,
    by_name: HashMap<String, usize>,
    pids: HashMap<i32, (usize, Part)>,
    /// Services that could not be taken (another supervisor holds them), with the reason
    /// already reported, so each rescan does not repeat it.
    refused: HashMap<String, String>,
    last_dir_key: Option<(i64, i64, u64)>,
    next_scan: Instant,
    next_full_scan: Instant,
    shutting_down: bool,
}

/// Runs svscan in the foreground until SIGTERM/SIGINT (or `x` to every service) has brought
/// everything down. Returns the exit code.
pub fn run(opts: Options) -> Result<i32> {
    let dir = fs::canonicalize(&opts.dir)
        .with_context(|| format!("{}: cannot scan", opts.dir.display()))?;
    if !dir.is_dir() {
        bail!("{}: not a directory", dir.display());
    }
    // Signals are blocked before the lock is taken: a client that sees the lock may send TERM
    // at once, and it must be read (from the signalfd), not end svscan by its default action.
    reset_signal_dispositions();
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    mask.thread_block().context("blocking signals")?;
    let _lock = lock_scan_dir(&dir)?;
    raise_fd_limit();
    nix::sys::prctl::set_child_subreaper(true).context("becoming a subreaper")?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("signalfd")?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll")?;
    epoll
        .add(&sigfd, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_SIGNALS))
        .context("epoll")?;

    let now = Instant::now();
    let mut sc = Scanner {
        dir,
        grace: opts.grace,
        epoll,
        slots: Vec::new(),
        by_name: HashMap::new(),
        pids: HashMap::new(),
        refused: HashMap::new(),
        last_dir_key: None,
        next_scan: now,
        next_full_scan: now + FULL_SCAN_EVERY,
        shutting_down: false,
    };
    super::say(format_args!(
        "supervising {} (pid {})",
        sc.dir.display(),
        std::process::id()
    ));
    sc.scan(true);

    let mut events = vec![EpollEvent::empty(); 64];
    loop {
        sc.settle(Instant::now());
        if sc.shutting_down && sc.by_name.is_empty() {
            super::say(format_args!("every service is down; exiting"));
            return Ok(0);
        }
        let timeout = sc
            .next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(SCAN_EVERY);
        // Round up: waking a millisecond early would spin until the deadline.
        let ms = (timeout.as_micros().div_ceil(1000)).min(SCAN_EVERY.as_millis()) as u16;
        let n = match sc.epoll.wait(&mut events, EpollTimeout::from(ms)) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e).context("epoll_wait"),
        };
        let now = Instant::now();
        for ev in &events[..n] {
            if ev.data() == TOKEN_SIGNALS {
                while let Ok(Some(info)) = sigfd.read_signal() {
                    sc.on_signal(info.ssi_signo as i32, now);
                }
            } else {
                sc.on_ready(ev.data(), now);
            }
        }
        if !sc.shutting_down && now >= sc.next_scan {
            let full = now >= sc.next_full_scan;
            sc.scan(full);
        }
    }
}

/// Locks `DIR/.svscan.lock` (flock, like runsv's `supervise/lock`) with our pid in it.
fn lock_scan_dir(dir: &Path) -> Result<PidLock> {
    match pidlock::acquire(&dir.join(SCAN_LOCK), false, 0o600, true)? {
        Acquired::Mine(lock) => Ok(lock),
        Acquired::Busy { pid } => bail!(
            "{} is already supervised by another approuter svscan (pid {}); stop it first (approuter shutdown)",
            dir.display(),
            pid.map_or_else(|| "unknown".to_string(), |p| p.to_string())
        ),
    }
}

/// Services inherit ignored signals across exec: svscan may have been started with some
/// ignored (nohup, a shell's background job), and its services must start with every signal
/// at its default. The signals svscan reads are blocked and taken through signalfd instead.
fn reset_signal_dispositions() {
    use nix::sys::signal::{signal, SigHandler};
    for sig in Signal::iterator() {
        if !matches!(sig, Signal::SIGKILL | Signal::SIGSTOP | Signal::SIGPIPE) {
            // SAFETY: installing SIG_DFL runs no code of ours.
            unsafe {
                let _ = signal(sig, SigHandler::SigDfl);
            }
        }
    }
}

/// A thousand services hold several thousand descriptors; the usual soft limit is 1024.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

fn dir_key(dir: &Path) -> Option<(i64, i64, u64)> {
    let m = fs::metadata(dir).ok()?;
    Some((m.mtime(), m.mtime_nsec(), m.ino()))
}

fn new_pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("cannot create a pipe: {e}"))
}

fn inode(fd: &OwnedFd) -> u64 {
    nix::sys::stat::fstat(fd).map_or(0, |st| st.st_ino)
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

impl Scanner {
    fn service(&mut self, slot: usize) -> Option<&mut Service> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    /// Looks at the directory: new services are taken, vanished ones brought down and forgotten.
    fn scan(&mut self, full: bool) {
        let now = Instant::now();
        self.next_scan = now + SCAN_EVERY;
        let key = dir_key(&self.dir);
        if !full && key == self.last_dir_key {
            return;
        }
        if full {
            self.next_full_scan = now + FULL_SCAN_EVERY;
        }
        self.last_dir_key = key;
        let mut present: HashMap<String, (u64, u64)> = HashMap::new();
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(meta) = servicedir::entry(&self.dir, &name) {
                    present.insert(name, (meta.dev(), meta.ino()));
                }
            }
        }
        let gone: Vec<usize> = self
            .by_name
            .iter()
            .filter(|(name, &slot)| {
                let id = self.slots[slot].as_ref().map(|s| s.id);
                present.get(*name).copied() != id
            })
            .map(|(_, &slot)| slot)
            .collect();
        for slot in gone {
            if let Some(svc) = self.service(slot) {
                if !svc.removed {
                    svc.removed = true;
                    svc.main.note("service directory removed; stopping");
                    svc.main.exit(now);
                }
            }
        }
        let mut names: Vec<_> = present.into_iter().collect();
        names.sort();
        for (name, id) in names {
            if self.by_name.contains_key(&name) {
                continue;
            }
            self.add(&name, id, now);
        }
        if full {
            // Undo what others did to the supervise/ files: a deleted FIFO, a truncated status.
            for (slot, svc) in self.slots.iter_mut().enumerate() {
                let Some(svc) = svc else { continue };
                // A new control FIFO replaces the old descriptor, which closing took out of epoll.
                let watch = |fd: &File, part| {
                    let ev = EpollEvent::new(EpollFlags::EPOLLIN, token(slot, part));
                    if let Err(e) = self.epoll.add(fd, ev) {
                        super::say(format_args!("cannot watch a recreated control FIFO: {e}"));
                    }
                };
                if svc.main.repair() {
                    watch(svc.main.control_fd(), Part::Main);
                }
                if let Some(log) = &mut svc.log {
                    if log.repair() {
                        watch(log.control_fd(), Part::Log);
                    }
                }
            }
        }
    }

    fn add(&mut self, name: &str, id: (u64, u64), now: Instant) {
        match self.open_service(name, id) {
            Ok(mut svc) => {
                self.refused.remove(name);
                let slot = self
                    .slots
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or_else(|| {
                        self.slots.push(None);
                        self.slots.len() - 1
                    });
                let reg = |fd: std::os::fd::BorrowedFd, part| {
                    self.epoll
                        .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token(slot, part)))
                };
                let mut result = reg(svc.main.control_fd().as_fd(), Part::Main);
                if let Some(log) = &svc.log {
                    result = result.and(reg(log.control_fd().as_fd(), Part::Log));
                }
                if let Some(cap) = &svc.capture {
                    result = result.and(reg(cap.as_fd(), Part::Capture));
                }
                // A pidfd epoll will not take (its watch limit reached) is replaced by a look
                // in /proc every second, never left unwatched.
                if let Some(fd) = svc.main.adopted_fd() {
                    if reg(fd.as_fd(), Part::MainEnd).is_err() {
                        svc.main.watch_adopted_by_polling();
                    }
                }
                if let Some(log) = svc.log.as_mut() {
                    if let Some(fd) = log.adopted_fd() {
                        if reg(fd.as_fd(), Part::LogEnd).is_err() {
                            log.watch_adopted_by_polling();
                        }
                    }
                }
                if let Err(e) = result {
                    super::say(format_args!("{name}: cannot watch its control FIFO: {e}"));
                }
                // The log first, as runsv does, so the service's first lines have a reader.
                if let Some(pid) = svc.log.as_mut().and_then(|l| l.start_if_wanted(now)) {
                    self.pids.insert(pid.as_raw(), (slot, Part::Log));
                }
                if let Some(pid) = svc.main.start_if_wanted(now) {
                    self.pids.insert(pid.as_raw(), (slot, Part::Main));
                }
                self.by_name.insert(name.to_string(), slot);
                self.slots[slot] = Some(svc);
            }
            Err(msg) => {
                if self.refused.get(name) != Some(&msg) {
                    super::say(format_args!("{name}: {msg}"));
                    self.refused.insert(name.to_string(), msg);
                }
            }
        }
    }

    /// Opens a service and its log. Runs a killed svscan left are taken over with the pipe
    /// between them, found again through the descriptors of the processes that hold it (the
    /// logger's stdin, else the service's stdout or stderr); a run whose pipe cannot be found
    /// is ended, since no logger could read it any more.
    fn open_service(&self, name: &str, id: (u64, u64)) -> Result<Service, String> {
        let path = self.dir.join(name);
        let mut main = Unit::open(&path, name.to_string(), false, Io::default(), self.grace)?;
        let Some(log_dir) = servicedir::log_of(&path) else {
            return Ok(Service {
                name: name.to_string(),
                id,
                main,
                log: None,
                capture: None,
                capture_buf: Vec::new(),
                removed: false,
                log_told_to_exit: false,
            });
        };
        let mut log = Unit::open(
            &log_dir,
            format!("{name}/log"),
            true,
            Io::default(),
            self.grace,
        )?;
        let now = Instant::now();
        let (log_ino, cap_ino) = log.recorded_pipes();
        let mut holders = Vec::new();
        if let Some(pid) = log.adopted_pid() {
            holders.push((pid, 0));
        }
        if let Some(pid) = main.adopted_pid() {
            holders.extend([(pid, 1), (pid, 2)]);
        }
        let found = holders
            .iter()
            .find_map(|&(pid, fd)| procfs::reopen_pipe(pid, fd, log_ino));
        let (out_r, out_w) = match found {
            Some(ends) => ends,
            None => {
                main.abandon(now, "its output pipe cannot be found again");
                log.abandon(now, "its input pipe cannot be found again");
                new_pipe()?
            }
        };
        let found = log.adopted_pid().and_then(|pid| {
            [2, 1]
                .iter()
                .find_map(|&fd| procfs::reopen_pipe(pid, fd, cap_ino))
        });
        let (cap_r, cap_w) = match found {
            Some(ends) => ends,
            None => {
                if log.adopted_pid().is_some() {
                    log.note("what this logger says on stderr is lost until it restarts: its stderr pipe cannot be found again");
                }
                let (r, w) = new_pipe()?;
                // The logger's stderr carries a warning now and then: one page is plenty, and
                // keeps a thousand services within an unprivileged user's pipe budget.
                let _ = fcntl(&r, FcntlArg::F_SETPIPE_SZ(4096));
                (r, w)
            }
        };
        set_nonblocking(&cap_r).map_err(|e| format!("cannot set up a pipe: {e}"))?;
        log.record_pipes(inode(&out_r), inode(&cap_r));
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(|e| format!("cannot set up a pipe: {e}"))
        };
        // stderr goes down the same pipe (runsv leaves it on its own stderr): what a service
        // says on stderr belongs in its log, and then no service holds svscan's own output
        // open, so svscan's logger ends with svscan.
        main.io = Io {
            stderr: Some(dup(&out_w)?),
            stdout: Some(out_w),
            ..Io::default()
        };
        // Whatever the logger itself prints, on stdout or stderr, is svscan's to read: then no
        // process of a service holds svscan's own output open either.
        log.io = Io {
            stdin: Some(out_r),
            stdout: Some(dup(&cap_w)?),
            stderr: Some(cap_w),
        };
        Ok(Service {
            name: name.to_string(),
            id,
            main,
            log: Some(log),
            capture: Some(File::from(cap_r)),
            capture_buf: Vec::new(),
            removed: false,
            log_told_to_exit: false,
        })
    }

    fn on_signal(&mut self, signo: i32, now: Instant) {
        match Signal::try_from(signo) {
            Ok(Signal::SIGCHLD) => self.reap(now),
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) if !self.shutting_down => {
                super::say(format_args!("stopping every service"));
                self.shutting_down = true;
                for svc in self.slots.iter_mut().flatten() {
                    svc.main.exit(now);
                }
            }
            Ok(Signal::SIGHUP) if !self.shutting_down => self.scan(true),
            _ => {}
        }
    }

    fn reap(&mut self, now: Instant) {
        loop {
            let (pid, ended) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Ended { code, low: 0 }),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (
                    pid,
                    Ended {
                        code: -1,
                        low: sig as i32,
                    },
                ),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            // Anything else is an orphan of some service's group, reparented to us.
            let Some((slot, part)) = self.pids.remove(&pid.as_raw()) else {
                continue;
            };
            let spawned = match self.service(slot) {
                Some(svc) => match part {
                    Part::Main => svc.main.child_exited(pid, ended, now),
                    _ => svc
                        .log
                        .as_mut()
                        .and_then(|l| l.child_exited(pid, ended, now)),
                },
                None => None,
            };
            if let Some(p) = spawned {
                self.pids.insert(p.as_raw(), (slot, part));
            }
        }
    }

    fn on_ready(&mut self, tok: u64, now: Instant) {
        let (slot, part) = untoken(tok);
        let Some(svc) = self.service(slot) else {
            return;
        };
        let spawned = match part {
            Part::Main => svc.main.read_control(now),
            Part::Log => svc
                .log
                .as_mut()
                .map(|l| l.read_control(now))
                .unwrap_or_default(),
            Part::Capture => {
                svc.read_capture();
                Vec::new()
            }
            Part::MainEnd => svc.main.adopted_ended(now).into_iter().collect(),
            Part::LogEnd => svc
                .log
                .as_mut()
                .and_then(|l| l.adopted_ended(now))
                .into_iter()
                .collect(),
        };
        let part = match part {
            Part::MainEnd => Part::Main,
            Part::LogEnd => Part::Log,
            p => p,
        };
        for p in spawned {
            self.pids.insert(p.as_raw(), (slot, part));
        }
    }

    /// Runs every unit's timers and lets go of services that are done.
    fn settle(&mut self, now: Instant) {
        let mut done = Vec::new();
        for slot in 0..self.slots.len() {
            let Some(svc) = self.slots[slot].as_mut() else {
                continue;
            };
            let mut spawned = Vec::new();
            if let Some(p) = svc.main.tick(now) {
                spawned.push((p, Part::Main));
            }
            if let Some(p) = svc.log.as_mut().and_then(|l| l.tick(now)) {
                spawned.push((p, Part::Log));
            }
            if svc.main.is_released() {
                if let Some(log) = svc.log.as_mut() {
                    if !svc.log_told_to_exit {
                        svc.log_told_to_exit = true;
                        // Closing our ends of the pipe lets the logger read to the end and
                        // exit: every write end, the one kept for the service's stderr too.
                        svc.main.io.stdout = None;
                        svc.main.io.stderr = None;
                        log.io.stdin = None;
                        log.exit(now);
                    }
                }
                if svc.log.as_ref().is_none_or(Unit::is_released) {
                    done.push(slot);
                }
            }
            for (p, part) in spawned {
                self.pids.insert(p.as_raw(), (slot, part));
            }
        }
        for slot in done {
            if let Some(svc) = self.slots[slot].take() {
                let _ = self.epoll.delete(svc.main.control_fd());
                if let Some(log) = &svc.log {
                    let _ = self.epoll.delete(log.control_fd());
                }
                if let Some(cap) = &svc.capture {
                    let _ = self.epoll.delete(cap);
                }
                if !svc.removed && !self.shutting_down {
                    super::say(format_args!(
                        "{}: released (x); taking it again, as runsvdir starts a new runsv",
                        svc.name
                    ));
                }
                self.by_name.remove(&svc.name);
                self.pids.retain(|_, (s, _)| *s != slot);
                // Taken again at the next look, not at the next full scan: a service released
                // with `x`, and a directory put back while this one was stopping (an alternate
                // removed and added again).
                self.last_dir_key = None;
                self.next_scan = now;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut next = if self.shutting_down {
            None
        } else {
            Some(self.next_scan)
        };
        for svc in self.slots.iter().flatten() {
            for d in [
                svc.main.next_deadline(),
                svc.log.as_ref().and_then(Unit::next_deadline),
            ]
            .into_iter()
            .flatten()
            {
                next = Some(next.map_or(d, |n: Instant| n.min(d)));
            }
        }
        next
    }
}

impl Service {
    /// Passes what the logger wrote on stderr to svscan's stderr, and keeps the last line.
    fn read_capture(&mut self) {
        let Some(cap) = &mut self.capture else { return };
        let mut buf = [0u8; 4096];
        loop {
            match cap.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.capture_buf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        while let Some(nl) = self.capture_buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.capture_buf.drain(..=nl).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if let Some(log) = &mut self.log {
                log.note(text.trim_end());
            }
        }
        if self.capture_buf.len() > 4096 {
            let text = String::from_utf8_lossy(&self.capture_buf).into_owned();
            self.capture_buf.clear();
            if let Some(log) = &mut self.log {
                log.note(&text);
            }
        }
    }
}
