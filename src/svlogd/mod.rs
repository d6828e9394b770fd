//! svlogd log directories, written and read: `approuter svlogd` appends its input line by line to `current` (on disk exactly as runit's svlogd), and `reader` reads them back.

pub mod args;
mod config;
mod dir;
mod files;
pub mod reader;
mod stamp;

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::util::tai64::Tai64N;
use dir::LogDir;
use stamp::Stamper;

pub use files::rotated_names;

/// The file a logger is appending to in a log directory.
pub fn current_file(dir: &Path) -> PathBuf {
    dir.join(files::CURRENT)
}

pub use args::Args;

/// The logger's whole command line, for both binaries: `prog` names it in messages. A bad
/// command line gets one line, exit 111 as runit's svlogd.
pub fn cli(prog: &str, argv: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    match args::parse(argv) {
        Ok(args::Parsed::Print(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{prog}: error: {e} ({prog} --help lists the options)");
            ExitCode::from(111)
        }
        Ok(args::Parsed::Run(args)) => match main(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("{prog}: error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Large reads keep the per-line cost low; a pipe rarely holds more than 64 KiB anyway.
const READ_SIZE: usize = 128 * 1024;
/// After end of input or SIGTERM, how long to keep retrying a directory that cannot be
/// written before giving up on what it still holds.
const EXIT_GRACE: Duration = Duration::from_secs(5);

pub fn main(args: Args) -> Result<ExitCode> {
    let replace = replacement(args.replace, args.replace_also.as_deref())?;
    // Blocked before any directory is opened, so that no signal is lost or fatal meanwhile.
    // SIGXFSZ too: over a file size limit, write() then fails with EFBIG, which is retried.
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGHUP,
        Signal::SIGALRM,
        Signal::SIGTERM,
        Signal::SIGXFSZ,
    ] {
        mask.add(s);
    }
    mask.thread_block().context("cannot block signals")?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("cannot create a signalfd")?;

    let len = if args.len == 0 { 1000 } else { args.len };
    let mut dirs = Vec::new();
    let mut errors = Vec::new();
    for path in args.dirs {
        match LogDir::open(path, len, args.verbose > 0, args.wait_lock) {
            Ok(d) => dirs.push(d),
            Err(e) => errors.push(e),
        }
    }
    if dirs.is_empty() {
        let last = errors.pop().unwrap_or_default();
        for e in errors {
            warn(e);
        }
        let _ = writeln!(io::stderr(), "approuter svlogd: fatal: {last}");
        return Ok(ExitCode::from(111));
    }
    for e in errors {
        warn(format_args!("{e}; logging to the other directories"));
    }
    let mut logger = Logger {
        dirs,
        stamper: Stamper::new(args.timestamps),
        len,
        replace,
        open_line: None,
    };
    Ok(logger.run(&signals))
}

/// `-r`/`-R` as a table of the bytes to replace, and their replacement.
fn replacement(with: Option<char>, also: Option<&str>) -> Result<Option<(u8, Box<[bool; 256]>)>> {
    let with = match (with, also) {
        (None, None) => return Ok(None),
        (Some(c), _) if !c.is_ascii() => {
            bail!("-r {c}: the replacement must be one ASCII character")
        }
        (Some(c), _) => c as u8,
        (None, Some(_)) => b'_',
    };
    let mut table = Box::new([false; 256]);
    for (b, slot) in table.iter_mut().enumerate() {
        *slot = !(32..=126).contains(&b);
    }
    for b in also.unwrap_or_default().bytes() {
        table[b as usize] = true;
    }
    table[b'\n' as usize] = false;
    Ok(Some((with, table)))
}

pub(crate) fn warn(msg: impl fmt::Display) {
    let _ = writeln!(io::stderr(), "approuter svlogd: warning: {msg}");
}

pub(crate) fn info(verbose: bool, msg: impl fmt::Display) {
    if verbose {
        let _ = writeln!(io::stderr(), "approuter svlogd: info: {msg}");
    }
}

/// Standard input, read so that a logger killed with SIGKILL loses no line. From a pipe (the
/// supervisor's, which outlives the logger) the bytes are first copied out with tee(2) and taken
/// off the pipe only once they have been handled: a new logger reads again whatever the killed
/// one had not finished, so a kill costs at worst some bytes written twice, never a line lost.
/// The bytes of an unfinished line stay on the pipe until its newline comes, unless they stop
/// coming or grow past [`HOLD_MAX`]. Anything but a pipe is read plainly.
struct Input {
    /// The other end of tee: a private pipe the copied bytes are read back from.
    peek: Option<(OwnedFd, OwnedFd)>,
    /// Bytes at the head of the input pipe already handled (an unfinished line).
    held: usize,
    /// Where handled bytes are taken off the pipe to: /dev/null through splice(2), so they are
    /// not copied again and no buffer of ours is dirtied for them (a thousand idle loggers).
    sink: Option<std::fs::File>,
    /// Only if splice to /dev/null is refused: a buffer to read them into instead.
    scratch: Vec<u8>,
}

/// The most of an unfinished line left on the pipe: past it, the line is taken off.
const HOLD_MAX: usize = 16 * 1024;

impl Input {
    fn new(input: BorrowedFd) -> Input {
        let is_pipe = nix::sys::stat::fstat(input)
            .map(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFIFO)
            .unwrap_or(false);
        let peek = is_pipe
            .then(|| {
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                    .ok()
            })
            .flatten();
        let sink = peek.as_ref().and_then(|_| {
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .ok()
        });
        Input {
            peek,
            held: 0,
            sink,
            scratch: Vec::new(),
        }
    }

    /// Reads what is new into `buf`: Ok(Some(range)) of `buf` to handle, Ok(None) at end of
    /// input; EAGAIN when nothing new has come.
    fn read(
        &mut self,
        input: BorrowedFd,
        buf: &mut [u8],
    ) -> nix::Result<Option<std::ops::Range<usize>>> {
        let Some((r, w)) = &self.peek else {
            return nix::unistd::read(input, buf).map(|n| (n > 0).then_some(0..n));
        };
        let n = nix::fcntl::tee(
            input,
            w,
            buf.len(),
            nix::fcntl::SpliceFFlags::SPLICE_F_NONBLOCK,
        )?;
        let mut got = 0;
        while got < n {
            match nix::unistd::read(r, &mut buf[got..n]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        if got == 0 {
            return Ok(None);
        }
        if got <= self.held {
            // Only the unfinished line is there: take it off, or poll would never sleep.
            self.consume(input, self.held);
            self.held = 0;
            return Err(Errno::EAGAIN);
        }
        Ok(Some(self.held..got))
    }

    /// Takes off the pipe what `handled` (the new bytes just handled) let go of: everything up
    /// to its last newline, keeping an unfinished line on the pipe.
    fn commit(&mut self, input: BorrowedFd, handled: &[u8]) {
        if self.peek.is_none() {
            return;
        }
        match memchr::memrchr(b'\n', handled) {
            Some(i) => {
                let done = self.held + i + 1;
                self.consume(input, done);
                self.held = handled.len() - i - 1;
            }
            None => self.held += handled.len(),
        }
        if self.held > HOLD_MAX {
            self.release(input);
        }
    }

    /// Takes the unfinished line off the pipe (when the logger stops, or it grew too long).
    fn release(&mut self, input: BorrowedFd) {
        let held = std::mem::take(&mut self.held);
        self.consume(input, held);
    }

    /// Takes `n` bytes off the input pipe.
    fn consume(&mut self, input: BorrowedFd, mut n: usize) {
        if let Some(sink) = &self.sink {
            while n > 0 {
                match nix::fcntl::splice(
                    input,
                    None,
                    sink,
                    None,
                    n,
                    nix::fcntl::SpliceFFlags::empty(),
                ) {
                    Ok(0) => return,
                    Ok(k) => n -= k,
                    Err(Errno::EINTR) => {}
                    Err(_) => {
                        self.sink = None;
                        break;
                    }
                }
            }
        }
        if n > 0 && self.scratch.is_empty() {
            self.scratch = vec![0u8; 64 * 1024];
        }
        while n > 0 {
            let want = n.min(self.scratch.len());
            match nix::unistd::read(input, &mut self.scratch[..want]) {
                Ok(0) => break,
                Ok(k) => n -= k,
                Err(Errno::EINTR) => {}
                Err(e) => {
                    warn(format_args!("cannot read standard input: {e}"));
                    break;
                }
            }
        }
    }
}

struct Logger {
    dirs: Vec<LogDir>,
    stamper: Stamper,
    len: usize,
    replace: Option<(u8, Box<[bool; 256]>)>,
    /// A line whose newline has not been read yet.
    open_line: Option<OpenLine>,
}

struct OpenLine {
    /// Taken when the line's first byte was read, like every line's.
    stamp: Vec<u8>,
    /// Its first bytes, held until `len` of them (enough to match patterns) have arrived.
    head: Vec<u8>,
    /// Once the head is out: which directories took the line and get the rest as it comes.
    taken: Option<Vec<bool>>,
}

impl Logger {
    fn run(&mut self, signals: &SignalFd) -> ExitCode {
        let stdin = io::stdin();
        let input = stdin.as_fd();
        let mut source = Input::new(input);
        let mut buf = vec![0u8; READ_SIZE];
        let mut reading = true;
        // Set when input ended or SIGTERM came: the moment draining began.
        let mut stopped: Option<Instant> = None;
        let mut give_up = false;
        loop {
            let mut wake = self.dirs.iter().filter_map(LogDir::deadline).min();
            if let Some(s) = stopped {
                wake = Some(wake.map_or(s + EXIT_GRACE, |w| w.min(s + EXIT_GRACE)));
            }
            let timeout = match wake {
                None => PollTimeout::NONE,
                Some(t) => {
                    let ms = t.saturating_duration_since(Instant::now()).as_millis() + 1;
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
                }
            };
            let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            if reading {
                fds.push(PollFd::new(input, PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    warn(format_args!("poll failed: {e}; stopping"));
                    reading = false;
                }
            }
            let input_ready = fds
                .get(1)
                .and_then(PollFd::revents)
                .is_some_and(|r| !r.is_empty());
            drop(fds);

            // Signals before input: a signal sent before more input was written is acted on
            // before that input is read.
            let now = Instant::now();
            while let Ok(Some(sig)) = signals.read_signal() {
                match Signal::try_from(sig.ssi_signo as i32) {
                    Ok(Signal::SIGHUP) => self.dirs.iter_mut().for_each(|d| d.reload(now)),
                    Ok(Signal::SIGALRM) => {
                        // Now, so that lines read after the signal start the new current.
                        for d in &mut self.dirs {
                            d.ask_rotation();
                            d.tick(now);
                        }
                    }
                    Ok(Signal::SIGTERM) => {
                        // A second TERM while draining: stop retrying.
                        give_up = stopped.is_some();
                        reading = false;
                    }
                    _ => {}
                }
            }
            let mut handled = None;
            if reading && input_ready {
                match source.read(input, &mut buf) {
                    Ok(None) => reading = false,
                    Ok(Some(range)) => {
                        self.feed(&mut buf[range.clone()], Tai64N::now());
                        handled = Some(range);
                    }
                    Err(Errno::EINTR | Errno::EAGAIN) => {}
                    Err(e) => {
                        warn(format_args!("cannot read standard input: {e}; stopping"));
                        reading = false;
                    }
                }
            }

            let now = Instant::now();
            if !reading && stopped.is_none() {
                // What is held of an unfinished line is written below: take it off the pipe.
                source.release(input);
                // Unlike svlogd, which drops it, an unfinished last line is written, ended.
                self.continue_line(&[], true);
                stopped = Some(now);
            }
            for d in &mut self.dirs {
                d.tick(now);
            }
            // Only now, with what was read written (or queued), is it taken off the pipe.
            if let Some(range) = handled {
                source.commit(input, &buf[range]);
            }
            if let Some(s) = stopped {
                let drained = self.dirs.iter().all(|d| d.unwritten() == 0);
                if drained || give_up || now >= s + EXIT_GRACE {
                    return self.close();
                }
            }
        }
    }

    /// Closes every directory; 0 when everything read was written, 111 (svlogd's failure
    /// code) when some of it could not be.
    fn close(&mut self) -> ExitCode {
        let mut code = ExitCode::SUCCESS;
        for d in &mut self.dirs {
            if d.unwritten() > 0 {
                warn(format_args!(
                    "{}: giving up: {} bytes of log could not be written",
                    d.path().display(),
                    d.unwritten()
                ));
                code = ExitCode::from(111);
            }
            d.close();
        }
        code
    }

    /// Splits what was read into lines and queues them, with their timestamp, for every
    /// directory that selects them.
    fn feed(&mut self, chunk: &mut [u8], now: Tai64N) {
        if let Some((with, table)) = &self.replace {
            for b in chunk.iter_mut() {
                if table[*b as usize] {
                    *b = *with;
                }
            }
        }
        let mut rest: &[u8] = chunk;
        if self.open_line.is_some() {
            match memchr::memchr(b'\n', rest) {
                Some(i) => {
                    self.continue_line(&rest[..i], true);
                    rest = &rest[i + 1..];
                }
                None => return self.continue_line(rest, false),
            }
        }
        let stamp = self.stamper.stamp(now);
        while let Some(i) = memchr::memchr(b'\n', rest) {
            for d in &mut self.dirs {
                d.start_line(stamp, &rest[..i], self.len, true);
            }
            rest = &rest[i + 1..];
        }
        if !rest.is_empty() {
            self.open_line = Some(OpenLine {
                stamp: stamp.to_vec(),
                head: Vec::new(),
                taken: None,
            });
            self.continue_line(rest, false);
        }
    }

    /// Adds `more` to the open line, and ends it if `complete`. Its head goes out once the
    /// first `len` bytes are known (or the line ends); later bytes follow straight away, so a
    /// line without newlines never occupies more than `len` bytes here.
    fn continue_line(&mut self, more: &[u8], complete: bool) {
        let Some(line) = &mut self.open_line else {
            return;
        };
        let mut more = more;
        if line.taken.is_none() {
            let take = more.len().min(self.len.saturating_sub(line.head.len()));
            line.head.extend_from_slice(&more[..take]);
            more = &more[take..];
            if !complete && line.head.len() < self.len {
                return;
            }
            let taken = self
                .dirs
                .iter_mut()
                .map(|d| d.start_line(&line.stamp, &line.head, self.len, false))
                .collect();
            line.taken = Some(taken);
        }
        let taken = line.taken.as_deref().unwrap_or_default();
        for (d, _) in self.dirs.iter_mut().zip(taken).filter(|(_, t)| **t) {
            d.continue_line(more, complete);
        }
        if complete {
            self.open_line = None;
        }
    }
}
