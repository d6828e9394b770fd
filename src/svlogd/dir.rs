//! One log directory while the logger runs: its lock, `current`, rotation, and the bounded queue that keeps stdin flowing while the disk is full or the directory is gone.

use std::fmt;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::config::Config;
use super::files::{self, Step};
use super::{info, warn};
use crate::util::tai64::Tai64N;

/// Unwritten log a directory holds while it cannot be written; beyond this the oldest lines go.
pub const HOLD_MAX: usize = 4 << 20;
/// Queued bytes that make a healthy directory write before the rest of a read is split into
/// lines (a read of many short lines with a long `p` prefix expands a lot).
const WRITE_EARLY: usize = 1 << 20;
const RETRY: Duration = Duration::from_secs(1);

/// Something that could not be done to the directory, for the one warning that says so.
pub struct Failure {
    what: String,
    err: io::Error,
}

impl Failure {
    fn new(what: impl fmt::Display, path: &Path, err: impl Into<io::Error>) -> Failure {
        Failure {
            what: format!("{}: cannot {what}", path.display()),
            err: err.into(),
        }
    }
}

impl Failure {
    /// Another logger holds the directory's lock.
    fn is_contention(&self) -> bool {
        self.err.kind() == io::ErrorKind::WouldBlock
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.err)
    }
}

/// Bytes waiting to be written, oldest first: the logger goes on reading its input while they
/// cannot be written, so they are bounded by dropping the oldest lines.
struct Queue {
    buf: Vec<u8>,
    start: usize,
    /// What was already written to `current` ends with a newline.
    written_whole: bool,
    lost_bytes: u64,
    lost_lines: u64,
}

impl Queue {
    fn new() -> Queue {
        Queue {
            buf: Vec::new(),
            start: 0,
            written_whole: true,
            lost_bytes: 0,
            lost_lines: 0,
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    fn push(&mut self, parts: &[&[u8]]) {
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        if self.buf.len() - self.start > HOLD_MAX {
            self.drop_oldest();
        }
    }

    fn consumed(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.written_whole = self.buf[self.start + n - 1] == b'\n';
        self.start += n;
        if self.is_empty() {
            self.buf.clear();
            self.start = 0;
        }
    }

    fn drop_oldest(&mut self) {
        let pending = &self.buf[self.start..];
        let excess = pending.len() - HOLD_MAX;
        // Whole lines where possible, so that what is written next starts a line.
        let mut n = match memchr::memchr(b'\n', &pending[excess - 1..]) {
            Some(i) => excess + i,
            None => excess,
        };
        let mut lines = memchr::memchr_iter(b'\n', &pending[..n]).count() as u64;
        if !self.written_whole && pending[n - 1] == b'\n' {
            // current ends inside a line whose rest is dropped: keep its newline to end it.
            n -= 1;
            lines -= 1;
        }
        self.lost_bytes += n as u64;
        self.lost_lines += lines;
        self.start += n;
        // Moving the kept bytes down costs a copy per HOLD_MAX/4 dropped, and caps the buffer
        // at 1.25 HOLD_MAX.
        if self.start > HOLD_MAX / 4 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

pub struct LogDir {
    path: PathBuf,
    config: Config,
    /// `-l`: the rotation rule needs it.
    len: u64,
    verbose: bool,
    lock: Option<Flock<File>>,
    current: Option<File>,
    size: u64,
    queue: Queue,
    /// `t`: when a non-empty `current` is rotated next.
    rotate_at: Option<Instant>,
    /// SIGALRM asked for a rotation that has not happened yet.
    rotate_asked: bool,
    /// Writing failed; the next attempt is due at this time.
    retry_at: Option<Instant>,
    /// Started with `--wait-lock` while another logger held the directory: waiting for it.
    waiting_for_lock: bool,
}

impl LogDir {
    /// Starts logging to `path` as svlogd does: the directory must exist and no other logger
    /// may hold its lock (with `wait_lock`, one that does is waited for, quietly). Any other
    /// trouble is retried while logging.
    pub fn open(
        path: PathBuf,
        len: usize,
        verbose: bool,
        wait_lock: bool,
    ) -> Result<LogDir, String> {
        match fs::metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("{}: is not a directory", path.display())),
            Err(e) => {
                return Err(format!(
                    "{}: cannot open the log directory: {e}; create it first",
                    path.display()
                ))
            }
        }
        let mut d = LogDir {
            path,
            config: Config::default(),
            len: len as u64,
            verbose,
            lock: None,
            current: None,
            size: 0,
            queue: Queue::new(),
            rotate_at: None,
            rotate_asked: false,
            retry_at: None,
            waiting_for_lock: false,
        };
        let now = Instant::now();
        match d.lock() {
            Ok(()) => {}
            Err(f) if wait_lock && f.is_contention() => {
                d.waiting_for_lock = true;
                d.retry_at = Some(now + RETRY);
                return Ok(d);
            }
            Err(f) => return Err(f.to_string()),
        }
        d.read_config(now);
        if let Err(f) = d.open_current(true) {
            d.failed(f, now);
        }
        Ok(d)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues the start of a line: its timestamp, the `p` prefix and `start` (the whole line
    /// if `complete`, which also ends it). Patterns see the first `len` bytes. Returns whether
    /// this directory takes the line, so that the rest of a long line follows it or not.
    pub fn start_line(&mut self, stamp: &[u8], start: &[u8], len: usize, complete: bool) -> bool {
        let (log, to_stderr) = if self.config.rules.is_empty() {
            (true, false)
        } else {
            self.config.select(&start[..start.len().min(len)])
        };
        if to_stderr {
            let head = &start[..start.len().min(len)];
            let more: &[u8] = if head.len() == len { b"..." } else { b"" };
            let line = [stamp, &self.config.prefix, head, more, b"\n"].concat();
            let _ = io::stderr().write_all(&line);
        }
        if log {
            let end: &[u8] = if complete { b"\n" } else { b"" };
            self.queue.push(&[stamp, &self.config.prefix, start, end]);
            self.write_early();
        }
        log
    }

    /// Queues more of a line already started, and its end if `complete`.
    pub fn continue_line(&mut self, more: &[u8], complete: bool) {
        let end: &[u8] = if complete { b"\n" } else { b"" };
        self.queue.push(&[more, end]);
        self.write_early();
    }

    fn write_early(&mut self) {
        if self.queue.pending().len() > WRITE_EARLY && self.retry_at.is_none() {
            self.tick(Instant::now());
        }
    }

    /// SIGALRM: rotate a non-empty `current` at the next tick.
    pub fn ask_rotation(&mut self) {
        self.rotate_asked = true;
    }

    /// When the directory next needs a tick without new input: the retry while failing (a
    /// rotation that fell due meanwhile waits for it, rather than waking the loop for nothing),
    /// else the next `t` rotation.
    pub fn deadline(&self) -> Option<Instant> {
        self.retry_at.or(self.rotate_at)
    }

    pub fn unwritten(&self) -> usize {
        self.queue.pending().len()
    }

    /// Writes what is queued and rotates where svlogd would, unless a failure is waiting for
    /// its retry time; never blocks longer than the file system calls themselves.
    pub fn tick(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|t| now < t) {
            return;
        }
        match self.work(now) {
            Ok(()) => self.recovered(),
            Err(f) => self.failed(f, now),
        }
    }

    fn work(&mut self, now: Instant) -> Result<(), Failure> {
        let rotate_due = self.rotate_asked || self.rotate_at.is_some_and(|t| t <= now);
        if self.queue.is_empty() && !rotate_due && self.retry_at.is_none() {
            return Ok(());
        }
        self.attach()?;
        while !self.queue.is_empty() {
            match files::next_step(self.size, self.config.size, self.len, self.queue.pending()) {
                Step::Rotate => self.rotate(now)?,
                Step::Write { bytes, rotate } => {
                    let n = self.write(bytes)?;
                    self.queue.consumed(n);
                    self.size += n as u64;
                    if rotate && n == bytes {
                        self.rotate(now)?;
                    }
                }
            }
        }
        if rotate_due {
            self.rotate(now)?;
            self.rotate_asked = false;
        }
        Ok(())
    }

    fn write(&mut self, n: usize) -> Result<usize, Failure> {
        loop {
            let Some(f) = self.current.as_mut() else {
                return Err(Failure::new("write current", &self.path, Errno::EBADF));
            };
            match f.write(&self.queue.pending()[..n]) {
                Ok(0) => {
                    let err = io::Error::from(io::ErrorKind::WriteZero);
                    return Err(Failure::new("write current", &self.path, err));
                }
                Ok(k) => return Ok(k),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(Errno::ENOSPC as i32) && self.free_space() => {}
                Err(e) => return Err(Failure::new("write current", &self.path, e)),
            }
        }
    }

    /// On a full disk, deletes the oldest rotated file when `N` allows it, as svlogd does.
    fn free_space(&self) -> bool {
        let Ok(names) = files::names_in(&self.path) else {
            return false;
        };
        let c = &self.config;
        let Some(name) = files::to_delete_for_space(&names, c.keep, c.keep_min) else {
            return false;
        };
        let deleted = fs::remove_file(self.path.join(&name)).is_ok();
        if deleted {
            warn(format_args!(
                "{}: disk full: deleted the old log file {name}",
                self.path.display()
            ));
        }
        deleted
    }

    /// Makes sure the lock is held and `current` is open. A directory removed while logging is
    /// created again: the service's output must go somewhere, and svlogd would stall instead.
    fn attach(&mut self) -> Result<(), Failure> {
        if let Some(f) = &self.current {
            if f.metadata().is_ok_and(|m| m.nlink() == 0) {
                warn(format_args!(
                    "{}: current was deleted (with its directory?); starting a new one",
                    self.path.display()
                ));
                self.current = None;
                self.lock = None;
            }
        }
        if self.current.is_some() {
            return Ok(());
        }
        if !self.path.is_dir() {
            fs::create_dir_all(&self.path)
                .map_err(|e| Failure::new("create the log directory", &self.path, e))?;
            warn(format_args!(
                "{}: the log directory was missing; created it again",
                self.path.display()
            ));
        }
        self.lock()?;
        self.open_current(false)
    }

    fn lock(&mut self) -> Result<(), Failure> {
        if self.lock.is_some() {
            return Ok(());
        }
        let p = self.path.join(files::LOCK);
        let f = files::open_regular(
            OpenOptions::new()
                .append(true)
                .create(true)
                .mode(files::MODE_LOCK),
            &p,
        )
        .map_err(|e| Failure::new("open", &p, e))?;
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => {
                self.lock = Some(l);
                Ok(())
            }
            Err((_, Errno::EWOULDBLOCK)) => Err(Failure::new(
                "lock",
                &p,
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "another logger is writing to this directory",
                ),
            )),
            Err((_, e)) => Err(Failure::new("lock", &p, e)),
        }
    }

    /// Opens `current` for appending. At start-up a non-empty `current` still in the writing
    /// mode was left by a logger that did not exit cleanly: it is set aside as `@<now>.u`.
    fn open_current(&mut self, at_start: bool) -> Result<(), Failure> {
        if self.current.is_some() {
            return Ok(());
        }
        let cur = self.path.join(files::CURRENT);
        match fs::symlink_metadata(&cur) {
            Ok(m) if !m.is_file() => {
                let what = if m.is_symlink() {
                    "is a symbolic link; approuter svlogd never follows one"
                } else {
                    "is not a regular file; move it away"
                };
                return Err(Failure::new("use", &cur, io::Error::other(what)));
            }
            Ok(m) if at_start && m.len() > 0 && m.mode() & 0o100 == 0 => {
                let name = self.free_name(true);
                fs::rename(&cur, self.path.join(&name))
                    .map_err(|e| Failure::new(format_args!("rename it to {name}"), &cur, e))?;
                // Like svlogd, old files are only trimmed at the next rotation.
                info(
                    self.verbose,
                    format_args!("unclean: {} {name}", cur.display()),
                );
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Failure::new("stat", &cur, e)),
        }
        let f = files::open_regular(
            OpenOptions::new().append(true).create(true).mode(0o600),
            &cur,
        )
        .map_err(|e| Failure::new("open", &cur, e))?;
        f.set_permissions(Permissions::from_mode(files::MODE_WRITING))
            .map_err(|e| Failure::new("chmod", &cur, e))?;
        self.size = f
            .metadata()
            .map_err(|e| Failure::new("stat", &cur, e))?
            .len();
        let how = if self.size > 0 { "append" } else { "new" };
        info(self.verbose, format_args!("{how}: {}", cur.display()));
        self.current = Some(f);
        Ok(())
    }

    /// A rotated-file name that does not exist yet (two rotations in one microsecond would
    /// otherwise collide).
    fn free_name(&self, unclean: bool) -> String {
        loop {
            let name = files::rotated_name(Tai64N::now(), unclean);
            if fs::symlink_metadata(self.path.join(&name)).is_err() {
                return name;
            }
        }
    }

    fn rotate(&mut self, now: Instant) -> Result<(), Failure> {
        if let Some(age) = self.config.age {
            if !matches!(self.rotate_at, Some(t) if t > now) {
                self.rotate_at = Some(now + age);
            }
        }
        if self.size == 0 {
            return Ok(());
        }
        let cur = self.path.join(files::CURRENT);
        let Some(f) = self.current.take() else {
            return Ok(());
        };
        let closed = f
            .sync_all()
            .and_then(|()| f.set_permissions(Permissions::from_mode(files::MODE_CLOSED)));
        if let Err(e) = closed {
            self.current = Some(f);
            return Err(Failure::new("fsync and chmod", &cur, e));
        }
        drop(f);
        let name = self.free_name(false);
        // On failure current stays closed; the retry appends to it and rotates again.
        fs::rename(&cur, self.path.join(&name))
            .map_err(|e| Failure::new(format_args!("rename it to {name}"), &cur, e))?;
        info(
            self.verbose,
            format_args!("rename: {} {name} {}", cur.display(), self.size),
        );
        self.size = 0;
        self.remove_old();
        self.open_current(false)
    }

    fn remove_old(&self) {
        let names = match files::names_in(&self.path) {
            Ok(n) => n,
            Err(e) => {
                warn(format_args!("{}: cannot list: {e}", self.path.display()));
                return;
            }
        };
        for name in files::to_delete(&names, self.config.keep) {
            let p = self.path.join(&name);
            info(self.verbose, format_args!("delete: {}", p.display()));
            if let Err(e) = fs::remove_file(&p) {
                warn(format_args!("{}: cannot delete: {e}", p.display()));
            }
        }
    }

    fn read_config(&mut self, now: Instant) {
        let p = self.path.join(files::CONFIG);
        let read = files::open_read(&p).and_then(|mut f| {
            let mut t = Vec::new();
            io::Read::read_to_end(&mut f, &mut t).map(|_| t)
        });
        let text = match read {
            Ok(t) => {
                info(self.verbose, format_args!("read: {}", p.display()));
                t
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                warn(format_args!(
                    "{}: cannot read: {e}; using defaults",
                    p.display()
                ));
                Vec::new()
            }
        };
        let (config, warnings) = Config::parse(&text);
        for w in warnings {
            warn(format_args!("{}: {w}", p.display()));
        }
        self.rotate_at = config.age.map(|a| now + a);
        self.config = config;
    }

    /// SIGHUP: write what is queued, close, reread `config` and reopen, as svlogd does. It
    /// also retries a failing directory at once, for an operator who just fixed it.
    pub fn reload(&mut self, now: Instant) {
        if self.retry_at.is_some() {
            self.retry_at = Some(now);
        }
        self.tick(now);
        self.close();
        self.read_config(now);
        if let Err(f) = self.attach() {
            self.failed(f, now);
        }
    }

    /// Closes `current` cleanly: synced, and in the mode that tells the next logger so.
    pub fn close(&mut self) {
        if let Some(f) = self.current.take() {
            info(self.verbose, format_args!("close: {}", self.path.display()));
            let closed = f
                .sync_all()
                .and_then(|()| f.set_permissions(Permissions::from_mode(files::MODE_CLOSED)));
            if let Err(e) = closed {
                let cur = self.path.join(files::CURRENT);
                warn(format_args!(
                    "{}: cannot fsync and chmod: {e}",
                    cur.display()
                ));
            }
        }
        self.lock = None;
    }

    fn failed(&mut self, f: Failure, now: Instant) {
        if self.waiting_for_lock && f.is_contention() {
            self.retry_at = Some(now + RETRY);
            return;
        }
        if self.retry_at.is_none() {
            warn(format_args!(
                "{f}; keeping up to {} MiB of the newest log in memory, retrying every second",
                HOLD_MAX >> 20
            ));
        }
        self.retry_at = Some(now + RETRY);
    }

    fn recovered(&mut self) {
        if self.retry_at.take().is_none() {
            return;
        }
        let q = &mut self.queue;
        // The other logger let go, and nothing had to be dropped meanwhile: nothing to say.
        if std::mem::take(&mut self.waiting_for_lock) && q.lost_bytes == 0 {
            return;
        }
        let lost = if q.lost_bytes == 0 {
            "nothing was lost".to_string()
        } else {
            format!(
                "lost the oldest {} bytes ({} lines) meanwhile",
                q.lost_bytes, q.lost_lines
            )
        };
        warn(format_args!(
            "{}: writing again; {lost}",
            self.path.display()
        ));
        q.lost_bytes = 0;
        q.lost_lines = 0;
        q.buf.shrink_to(WRITE_EARLY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_drops_oldest_whole_lines() {
        let mut q = Queue::new();
        let line = [&[b'a'; 99][..], b"\n"].concat();
        for _ in 0..HOLD_MAX / 100 {
            q.push(&[&line]);
        }
        assert_eq!(q.lost_bytes, 0);
        q.push(&[b"new line\n"]);
        assert_eq!((q.lost_bytes, q.lost_lines), (100, 1));
        assert!(q.pending().len() <= HOLD_MAX);
        assert_eq!(q.pending()[..100], line[..]);
        assert!(q.pending().ends_with(b"aa\nnew line\n"));

        // After a partial write the dropped rest of that line keeps its newline.
        let mut q = Queue::new();
        q.push(&[&line]);
        q.consumed(10);
        assert!(!q.written_whole);
        for _ in 0..HOLD_MAX / 100 {
            q.push(&[&line]);
        }
        assert_eq!((q.lost_bytes, q.lost_lines), (89, 0));
        assert_eq!(q.pending()[0], b'\n');
        assert_eq!(q.pending().len(), 90 + HOLD_MAX / 100 * 100 - 89);
    }
}
