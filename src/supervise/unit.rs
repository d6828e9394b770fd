//! One supervised directory, a service or its log: runsv's state machine, its `supervise/` files and its process group.

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::control::Command;
use super::policy;
use super::servicedir;
use super::status::{self, Extra, State, Status, Want};
use crate::ext::procfs;
use crate::util::tai64::Tai64N;

/// The descriptors a unit's processes get; `None` inherits svscan's own (stdin: /dev/null).
#[derive(Default)]
pub struct Io {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// How a process ended, as runit passes it to `./finish`: (exit code, 0) or (-1, signal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub code: i32,
    pub low: i32,
}

impl Ended {
    /// The end of a process taken over from a supervisor that was killed: it is not our child,
    /// so its exit status went to whoever reaped it. `./finish` gets `-1 0`.
    pub const UNKNOWN: Ended = Ended { code: -1, low: 0 };

    fn describe(self) -> String {
        if self == Ended::UNKNOWN {
            "ended (exit status unknown: taken over from a previous supervisor)".into()
        } else if self.code == -1 {
            format!("signal {}", self.low)
        } else {
            format!("exit {}", self.code)
        }
    }
}

#[derive(Debug)]
enum Phase {
    Down,
    Run {
        pid: Pid,
    },
    /// `./run` is gone but its process group may still hold processes (a forking start script,
    /// or the run of a killed supervisor that cannot be taken over): they are ended before
    /// anything starts.
    Drain {
        pgid: Pid,
        /// `None` for leftovers found at start-up.
        ended: Option<Ended>,
        term_at: Option<Instant>,
        kill_at: Instant,
    },
    Finish {
        pid: Pid,
    },
}

pub struct Unit {
    pub dir: PathBuf,
    /// `beta` or `beta/log`, for messages.
    pub label: String,
    pub is_log: bool,
    _lock: File,
    control: File,
    /// Held open for reading, never read: while it is open, clients know we run.
    ok: Option<File>,
    pub io: Io,
    grace: Duration,
    phase: Phase,
    want: Want,
    paused: bool,
    got_term: bool,
    since: Tai64N,
    started: Instant,
    ran_for: Duration,
    restart_at: Option<Instant>,
    /// After TERM for a stop: when to KILL the group if it is still there.
    stop_kill_at: Option<Instant>,
    /// The running process was told to stop (t, k, d): its end is not a crash.
    signalled: bool,
    /// A log told to exit first gets this long to read its input to the end.
    stop_at: Option<Instant>,
    extra: Extra,
    publish_failed: bool,
    /// The running process was taken over from a supervisor that was killed.
    adopted: Option<Adopted>,
}

/// A run taken over: not our child, so no SIGCHLD; its end is seen through a pidfd, or, on a
/// kernel without pidfds, by looking at /proc every second.
struct Adopted {
    pidfd: Option<OwnedFd>,
}

/// How often a run taken over without a pidfd is looked for in /proc.
const ADOPTED_POLL: Duration = Duration::from_secs(1);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Creates a FIFO unless one is there; anything else by that name is replaced.
fn ensure_fifo(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_fifo() => return Ok(()),
        Ok(_) => fs::remove_file(path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600)).map_err(io::Error::from)
}

/// `supervise/`, mode 0700; like runsv, a symlink is followed and its target created. One of
/// ours that others could enter (made under an old umask) is narrowed.
fn make_supervise_dir(dir: &Path) -> io::Result<PathBuf> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let sup = status::supervise_dir(dir);
    let target = match fs::read_link(&sup) {
        Ok(t) if t.is_absolute() => t,
        Ok(t) => dir.join(t),
        Err(_) => sup.clone(),
    };
    match fs::DirBuilder::new().mode(0o700).create(&target) {
        Ok(()) => Ok(sup),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let m = fs::metadata(&target)?;
            if m.mode() & 0o077 != 0 && m.uid() == nix::unistd::geteuid().as_raw() {
                fs::set_permissions(&target, fs::Permissions::from_mode(0o700))?;
            }
            Ok(sup)
        }
        Err(e) => Err(e),
    }
}

fn open_control(sup: &Path) -> io::Result<File> {
    let path = sup.join(status::CONTROL);
    ensure_fifo(&path)?;
    // Read and write on one descriptor: the FIFO then never reports end-of-file.
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
}

fn open_ok(sup: &Path) -> io::Result<File> {
    let path = sup.join(status::OK);
    ensure_fifo(&path)?;
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
}

impl Unit {
    /// Takes `dir` under supervision: creates and locks `supervise/`, opens the FIFOs (`ok` last,
    /// so a client that can open it finds a status file), and takes over the run a supervisor
    /// that was killed left running.
    pub fn open(
        dir: &Path,
        label: String,
        is_log: bool,
        io: Io,
        grace: Duration,
    ) -> Result<Unit, String> {
        let err = |what: &str, e: io::Error| format!("{}: {what}: {e}", dir.display());
        let sup = make_supervise_dir(dir).map_err(|e| err("cannot create supervise/", e))?;
        let lock = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(sup.join(status::LOCK))
            .map_err(|e| err("cannot open supervise/lock", e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(format!(
                    "{}: already supervised: another supervisor (runsv, supervise or approuter svscan) holds supervise/lock",
                    dir.display()
                ))
            }
            Err(TryLockError::Error(e)) => return Err(err("cannot lock supervise/lock", e)),
        }
        let control = open_control(&sup).map_err(|e| err("cannot open supervise/control", e))?;
        let previous = status::read(dir).ok();
        let extra = status::read_extra(dir);
        let now = Instant::now();
        let want = if servicedir::normally_down(dir) {
            Want::Down
        } else {
            Want::Up
        };
        let mut unit = Unit {
            dir: dir.to_path_buf(),
            label,
            is_log,
            _lock: lock,
            control,
            ok: None,
            io,
            grace,
            phase: Phase::Down,
            want,
            paused: false,
            got_term: false,
            since: Tai64N::now(),
            started: now,
            ran_for: Duration::ZERO,
            restart_at: None,
            stop_kill_at: None,
            stop_at: None,
            signalled: false,
            extra: Extra {
                quick_exits: 0,
                next_start: 0,
                ..extra
            },
            publish_failed: false,
            adopted: None,
        };
        if let Some(prev) = previous {
            if prev.pid != 0 && prev.state == State::Run {
                unit.adopt(prev, now);
            }
        }
        unit.publish();
        unit.ok = Some(open_ok(&sup).map_err(|e| err("cannot open supervise/ok", e))?);
        Ok(unit)
    }

    /// Takes over the run `prev` records if its process is still the one recorded: same pid,
    /// leading its group, started when the status says. Its uptime, want, pause and pending
    /// stop carry on as they were.
    fn adopt(&mut self, prev: Status, now: Instant) {
        // The pidfd first: from then on the pid names this process whatever happens, so the
        // check below cannot be fooled by a pid reused in between.
        let pidfd = procfs::pidfd(prev.pid).ok();
        if !prev.run_is_alive() {
            return;
        }
        // Ended between the two (reaped at once by its new parent): nothing to take over.
        if pidfd.as_ref().is_some_and(has_ended) {
            return;
        }
        let age = Duration::from_secs(unix_now().saturating_sub(prev.since.unix_secs()));
        self.phase = Phase::Run {
            pid: Pid::from_raw(prev.pid as i32),
        };
        self.since = prev.since;
        self.started = now.checked_sub(age).unwrap_or(now);
        self.paused = prev.paused;
        self.got_term = prev.got_term;
        self.want = match prev.want {
            Want::Exit => Want::Down,
            w => w,
        };
        self.adopted = Some(Adopted { pidfd });
        super::say(format_args!(
            "{}: took over pid {} (up {}s), left running by a previous supervisor",
            self.label,
            prev.pid,
            age.as_secs()
        ));
        // A stop the killed supervisor had begun is finished: TERM again, KILL after the grace.
        if prev.got_term && self.want != Want::Up {
            self.stop(now);
        }
    }

    /// The pid of a run taken over from a previous supervisor.
    pub fn adopted_pid(&self) -> Option<u32> {
        self.adopted.as_ref()?;
        self.pid().map(|p| p.as_raw() as u32)
    }

    /// The pidfd to watch for the end of a run taken over.
    pub fn adopted_fd(&self) -> Option<&OwnedFd> {
        self.adopted.as_ref()?.pidfd.as_ref()
    }

    /// A run taken over ended.
    pub fn adopted_ended(&mut self, now: Instant) -> Option<Pid> {
        let pid = self.pid()?;
        self.adopted = None;
        self.child_exited(pid, Ended::UNKNOWN, now)
    }

    /// Gives a run taken over up: its group is ended and a run of our own starts after it
    /// (its output goes where no logger can be given it any more).
    pub fn abandon(&mut self, now: Instant, why: &str) {
        let (Some(_), Phase::Run { pid }) = (self.adopted.take(), &self.phase) else {
            return;
        };
        let pgid = *pid;
        // A stop the adopted run was under goes with it: the drain below ends the group.
        self.stop_kill_at = None;
        self.got_term = false;
        self.signalled = false;
        // A log gets time to read what its service wrote before it is told to stop.
        let term_at = if self.is_log { now + self.grace } else { now };
        self.phase = Phase::Drain {
            pgid,
            ended: None,
            term_at: Some(term_at),
            kill_at: term_at + self.grace,
        };
        self.note(&format!(
            "ending process group {pgid} left by a previous supervisor: {why}"
        ));
        self.publish();
    }

    /// The pidfd could not be watched: look in /proc every second instead.
    pub fn watch_adopted_by_polling(&mut self) {
        if let Some(a) = &mut self.adopted {
            a.pidfd = None;
        }
    }

    /// The pipes recorded in a log's notes (see `Extra::log_pipe`).
    pub fn recorded_pipes(&self) -> (u64, u64) {
        (self.extra.log_pipe, self.extra.capture_pipe)
    }

    pub fn record_pipes(&mut self, log_pipe: u64, capture_pipe: u64) {
        if (self.extra.log_pipe, self.extra.capture_pipe) != (log_pipe, capture_pipe) {
            self.extra.log_pipe = log_pipe;
            self.extra.capture_pipe = capture_pipe;
            self.save_extra();
        }
    }

    pub fn control_fd(&self) -> &File {
        &self.control
    }

    /// Recreates `control` or `ok` if someone removed them, so clients can reach us again, and
    /// writes the status files anew (one may have been truncated or edited). True when the
    /// control FIFO is a new one, which the caller must watch instead of the old.
    pub fn repair(&mut self) -> bool {
        let new_control = self.repair_fifos();
        let sup = status::supervise_dir(&self.dir);
        let intact = status::read(&self.dir).ok() == Some(self.status());
        if !intact && sup.exists() {
            self.note("rewrote a damaged supervise/status");
            self.publish();
        }
        new_control
    }

    fn repair_fifos(&mut self) -> bool {
        let mut new_control = false;
        let sup = status::supervise_dir(&self.dir);
        let is_fifo = |name: &str| {
            fs::symlink_metadata(sup.join(name))
                .map(|m| m.file_type().is_fifo())
                .unwrap_or(false)
        };
        if !is_fifo(status::CONTROL) {
            if let Ok(f) = open_control(&sup) {
                self.control = f;
                new_control = true;
                self.note("recreated supervise/control");
            }
        }
        if !is_fifo(status::OK) {
            if let Ok(f) = open_ok(&sup) {
                self.ok = Some(f);
                self.note("recreated supervise/ok");
            }
        }
        new_control
    }

    pub fn status(&self) -> Status {
        let (pid, state) = match self.phase {
            Phase::Down => (0, State::Down),
            Phase::Run { pid } => (pid.as_raw() as u32, State::Run),
            Phase::Drain { .. } => (0, State::Finish),
            Phase::Finish { pid } => (pid.as_raw() as u32, State::Finish),
        };
        Status {
            since: self.since,
            pid,
            paused: self.paused,
            want: self.want,
            got_term: self.got_term,
            state,
        }
    }

    fn publish(&mut self) {
        let st = self.status();
        match status::write(&self.dir, &st) {
            Ok(()) => self.publish_failed = false,
            // The service directory was taken away (an alternate removed): nobody will read
            // its status any more, and that is no error.
            Err(e) if e.kind() == io::ErrorKind::NotFound && !self.dir.exists() => {}
            Err(e) if !self.publish_failed => {
                self.publish_failed = true;
                super::say(format_args!(
                    "{}: cannot write supervise/status: {e}",
                    self.label
                ));
            }
            Err(_) => {}
        }
    }

    fn save_extra(&mut self) {
        let _ = status::write_extra(&self.dir, &self.extra);
    }

    /// Says something about this unit on svscan's stderr and keeps it for `approuter status`.
    pub fn note(&mut self, msg: &str) {
        super::say(format_args!("{}: {msg}", self.label));
        self.extra.message = msg.to_string();
        self.extra.message_time = unix_now();
        self.save_extra();
    }

    /// Down, wanting down or exit, nothing pending: the directory can be let go.
    pub fn is_released(&self) -> bool {
        matches!(self.phase, Phase::Down) && self.want == Want::Exit
    }

    pub fn pid(&self) -> Option<Pid> {
        match self.phase {
            Phase::Run { pid } | Phase::Finish { pid } => Some(pid),
            _ => None,
        }
    }

    /// Acts on one control byte.
    pub fn command(&mut self, cmd: Command, now: Instant) -> Option<Pid> {
        let mut spawned = None;
        match cmd {
            Command::Up => {
                if self.want != Want::Exit {
                    self.want = Want::Up;
                }
                if matches!(self.phase, Phase::Down) {
                    spawned = self.start(now);
                }
            }
            Command::Once => {
                if self.want != Want::Exit {
                    self.want = Want::Down;
                }
                if matches!(self.phase, Phase::Down) {
                    spawned = self.start(now);
                }
            }
            Command::Down => {
                if self.want != Want::Exit {
                    self.want = Want::Down;
                }
                self.stop(now);
            }
            Command::Exit if self.is_log => {}
            Command::Exit => {
                self.want = Want::Exit;
                self.stop(now);
            }
            Command::Pause => {
                if self.signal_group(Signal::SIGSTOP) {
                    self.paused = true;
                }
            }
            Command::Cont => {
                self.signal_group(Signal::SIGCONT);
                self.paused = false;
            }
            Command::Signal(Signal::SIGTERM) => {
                if self.signal_group(Signal::SIGTERM) {
                    self.signal_group(Signal::SIGCONT);
                    self.got_term = true;
                    self.signalled = true;
                }
            }
            Command::Signal(Signal::SIGKILL) => {
                self.signalled |= self.signal_group(Signal::SIGKILL);
            }
            Command::Signal(sig) => {
                // HUP, ALRM, INT, QUIT, USR1, USR2 go to the main process only: nginx's master,
                // not its workers, is the one that must reload.
                if let Some(pid) = self.pid() {
                    let _ = kill(pid, sig);
                }
            }
        }
        self.publish();
        spawned
    }

    /// Wants down: TERM and CONT to the group, KILL after the grace period.
    fn stop(&mut self, now: Instant) {
        self.restart_at = None;
        if self.extra.next_start != 0 {
            self.extra.next_start = 0;
            self.save_extra();
        }
        if let Phase::Run { .. } = self.phase {
            if self.signal_group(Signal::SIGTERM) {
                self.signal_group(Signal::SIGCONT);
                self.got_term = true;
                self.signalled = true;
                self.stop_kill_at = Some(now + self.grace);
            }
        }
    }

    /// Sends `sig` to the running process's group; false when nothing runs.
    fn signal_group(&self, sig: Signal) -> bool {
        match self.phase {
            Phase::Run { pid } | Phase::Finish { pid } => {
                let _ = killpg(pid, sig);
                true
            }
            _ => false,
        }
    }

    /// Starts `./run` if the unit is down and wants up; used once after opening.
    pub fn start_if_wanted(&mut self, now: Instant) -> Option<Pid> {
        if matches!(self.phase, Phase::Down) && self.want == Want::Up && self.restart_at.is_none() {
            let pid = self.start(now);
            self.publish();
            return pid;
        }
        None
    }

    fn spawn(&self, program: &str, args: &[String]) -> io::Result<Pid> {
        let mut cmd = Process::new(self.dir.join(program));
        cmd.arg0(format!("./{program}"))
            .args(args)
            .current_dir(&self.dir);
        let dup = |fd: &Option<OwnedFd>| -> io::Result<Option<Stdio>> {
            fd.as_ref()
                .map(|f| f.try_clone().map(Stdio::from))
                .transpose()
        };
        cmd.stdin(dup(&self.io.stdin)?.unwrap_or_else(Stdio::null));
        if let Some(out) = dup(&self.io.stdout)? {
            cmd.stdout(out);
        }
        if let Some(err) = dup(&self.io.stderr)? {
            cmd.stderr(err);
        }
        // SAFETY: setsid and sigprocmask are async-signal-safe; the closure allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                // Its own session and process group: the whole service can be signalled at
                // once, and a terminal's signals to svscan do not reach it.
                nix::unistd::setsid().map_err(io::Error::from)?;
                // svscan blocks the signals it reads through signalfd; a service starts with
                // none blocked (svscan already reset every disposition to its default).
                nix::sys::signal::SigSet::empty()
                    .thread_set_mask()
                    .map_err(io::Error::from)?;
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        Ok(Pid::from_raw(child.id() as i32))
    }

    fn start(&mut self, now: Instant) -> Option<Pid> {
        self.restart_at = None;
        self.stop_kill_at = None;
        self.paused = false;
        self.got_term = false;
        self.signalled = false;
        self.started = now;
        self.since = Tai64N::now();
        match self.spawn(servicedir::RUN, &[]) {
            Ok(pid) => {
                self.phase = Phase::Run { pid };
                if self.extra.next_start != 0 {
                    self.extra.next_start = 0;
                    self.save_extra();
                }
                Some(pid)
            }
            Err(e) => {
                let msg = format!("unable to start ./run: {e}");
                self.tell_log(&msg);
                self.note(&msg);
                self.extra.last_exit = format!("not started: {e}");
                self.ran_for = Duration::ZERO;
                // runsv's child exits 111 when it cannot exec ./run; finish sees the same.
                self.after_run(Ended { code: 111, low: 0 }, now)
            }
        }
    }

    /// Puts a line into the service's own log, where its operator will look; never blocks.
    fn tell_log(&self, msg: &str) {
        let Some(out) = &self.io.stdout else { return };
        // A second open file description of the pipe, non-blocking, so a full pipe (log down)
        // drops the line instead of stalling every service.
        use std::os::fd::AsRawFd;
        let path = format!("/proc/self/fd/{}", out.as_raw_fd());
        if let Ok(mut f) = OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path)
        {
            let _ = f.write_all(format!("approuter svscan: {msg}\n").as_bytes());
        }
    }

    /// A child of ours ended. Returns a pid if something was started in reaction.
    pub fn child_exited(&mut self, pid: Pid, ended: Ended, now: Instant) -> Option<Pid> {
        let spawned = match self.phase {
            Phase::Run { pid: p } if p == pid => {
                self.ran_for = now.saturating_duration_since(self.started);
                self.got_term = false;
                self.paused = false;
                self.stop_kill_at = None;
                self.extra.last_exit = ended.describe();
                if group_is_empty(pid) {
                    self.after_run(ended, now)
                } else {
                    let _ = killpg(pid, Signal::SIGTERM);
                    let _ = killpg(pid, Signal::SIGCONT);
                    self.phase = Phase::Drain {
                        pgid: pid,
                        ended: Some(ended),
                        term_at: None,
                        kill_at: now + self.grace,
                    };
                    None
                }
            }
            Phase::Finish { pid: p } if p == pid => self.become_down(now),
            _ => return None,
        };
        self.publish();
        spawned
    }

    /// After `./run` and its group are gone: `./finish` if there is one, else down.
    fn after_run(&mut self, ended: Ended, now: Instant) -> Option<Pid> {
        if File::open(self.dir.join(servicedir::FINISH)).is_ok() {
            let args = [ended.code.to_string(), ended.low.to_string()];
            match self.spawn(servicedir::FINISH, &args) {
                Ok(pid) => {
                    self.phase = Phase::Finish { pid };
                    return Some(pid);
                }
                Err(e) => self.note(&format!("unable to start ./finish: {e}")),
            }
        }
        self.become_down(now)
    }

    fn become_down(&mut self, now: Instant) -> Option<Pid> {
        self.phase = Phase::Down;
        self.since = Tai64N::now();
        self.got_term = false;
        self.paused = false;
        if self.want != Want::Up {
            self.save_extra();
            return None;
        }
        // An operator's `sv restart` of a young service is not a crash.
        let (delay, quick) = if self.signalled {
            (Duration::ZERO, self.extra.quick_exits)
        } else {
            policy::after_exit(self.ran_for, self.extra.quick_exits)
        };
        self.extra.quick_exits = quick;
        if delay.is_zero() {
            self.save_extra();
            return self.start(now);
        }
        self.restart_at = Some(now + delay);
        self.extra.next_start = unix_now() + delay.as_secs();
        let msg = format!(
            "{} after {:.1}s ({} quick exits in a row); next start in {}s",
            self.extra.last_exit,
            self.ran_for.as_secs_f64(),
            quick,
            delay.as_secs()
        );
        self.note(&msg);
        None
    }

    /// Timers: a held-back restart, a stop that needs KILL, a group being ended.
    pub fn tick(&mut self, now: Instant) -> Option<Pid> {
        let mut spawned = None;
        if let Some(Adopted { pidfd: None }) = self.adopted {
            let alive = self
                .pid()
                .and_then(|p| procfs::stat(p.as_raw() as u32))
                .is_some_and(|st| !st.is_zombie());
            if !alive {
                spawned = self.adopted_ended(now);
                self.publish();
            }
        }
        if let Some(at) = self.restart_at {
            if now >= at && matches!(self.phase, Phase::Down) && self.want == Want::Up {
                spawned = self.start(now);
                self.publish();
            }
        }
        if self.stop_at.is_some_and(|at| now >= at) {
            self.stop_at = None;
            self.stop(now);
            self.publish();
        }
        match (self.stop_kill_at, &self.phase) {
            (Some(at), Phase::Run { pid }) if now >= at => {
                let _ = killpg(*pid, Signal::SIGKILL);
                self.stop_kill_at = None;
            }
            (Some(_), Phase::Run { .. }) | (None, _) => {}
            // The run it was for is gone: a deadline left behind would wake svscan at once,
            // over and over.
            (Some(_), _) => self.stop_kill_at = None,
        }
        if let Phase::Drain {
            pgid,
            ended,
            term_at,
            kill_at,
        } = &mut self.phase
        {
            let (pgid, ended) = (*pgid, *ended);
            if group_is_empty(pgid) {
                spawned = match ended {
                    Some(e) => self.after_run(e, now),
                    None => {
                        self.phase = Phase::Down;
                        self.since = Tai64N::now();
                        self.start_if_wanted(now)
                    }
                };
                self.publish();
            } else {
                if term_at.is_some_and(|t| now >= t) {
                    *term_at = None;
                    let _ = killpg(pgid, Signal::SIGTERM);
                    let _ = killpg(pgid, Signal::SIGCONT);
                }
                if now >= *kill_at {
                    let _ = killpg(pgid, Signal::SIGKILL);
                }
            }
        }
        spawned
    }

    /// The next moment `tick` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let drain = match &self.phase {
            // Group members that are not our children send no SIGCHLD: look again soon.
            Phase::Drain {
                term_at, kill_at, ..
            } => Some(
                [
                    Some(Instant::now() + Duration::from_millis(50)),
                    *term_at,
                    Some(*kill_at),
                ]
                .into_iter()
                .flatten()
                .min()
                .expect("at least one"),
            ),
            _ => None,
        };
        let look = match self.adopted {
            Some(Adopted { pidfd: None }) => Some(Instant::now() + ADOPTED_POLL),
            _ => None,
        };
        let kill = match self.phase {
            Phase::Run { .. } => self.stop_kill_at,
            _ => None,
        };
        [self.restart_at, kill, self.stop_at, drain, look]
            .into_iter()
            .flatten()
            .min()
    }

    /// Reads and acts on every byte waiting in `supervise/control`.
    pub fn read_control(&mut self, now: Instant) -> Vec<Pid> {
        let mut spawned = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match (&self.control).read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    for &b in &buf[..n] {
                        if let Some(cmd) = Command::from_byte(b) {
                            spawned.extend(self.command(cmd, now));
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        spawned
    }

    /// Stop supervising: down, then release. A log is first left to reach the end of its input
    /// (its service is gone and the pipe closed), and stopped only if that takes longer than
    /// the grace period.
    pub fn exit(&mut self, now: Instant) {
        self.want = Want::Exit;
        if self.is_log {
            self.restart_at = None;
            self.stop_at = Some(now + self.grace);
        } else {
            self.stop(now);
        }
        self.publish();
    }
}

/// Has the process a pidfd names ended (its pidfd readable)?
fn has_ended(pidfd: &OwnedFd) -> bool {
    use std::os::fd::AsFd;
    let mut fds = [nix::poll::PollFd::new(
        pidfd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok_and(|n| n > 0)
}

/// True when no live process is left in the group: none at all (ESRCH), or only zombies that
/// are not ours to reap. A group we may not signal counts as alive.
fn group_is_empty(pgid: Pid) -> bool {
    match killpg(pgid, None) {
        Err(Errno::ESRCH) => true,
        Ok(()) => !procfs::group_has_live_members(pgid.as_raw()),
        Err(_) => false,
    }
}
