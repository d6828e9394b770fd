//! The `supervise/` directory on disk: the 20-byte runit status layout, the `stat`/`pid` text files, the `ok` probe and approuter's own `extra` notes. The one home of these formats.

use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::util::file as fsx;
use crate::util::tai64::Tai64N;

pub const SUPERVISE: &str = "supervise";
pub const STATUS: &str = "status";
pub const STAT: &str = "stat";
pub const PID: &str = "pid";
pub const LOCK: &str = "lock";
pub const CONTROL: &str = "control";
pub const OK: &str = "ok";
/// approuter's additions (crash loop, last message); runit's clients never read it.
pub const EXTRA: &str = "extra";

/// runit writes exactly 20 bytes; `sv` refuses anything shorter, `svstat` reads the first 18.
pub const STATUS_LEN: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Down = 0,
    Run = 1,
    Finish = 2,
}

impl State {
    /// The word runit writes in `supervise/stat` and `sv status` prints.
    pub fn name(self) -> &'static str {
        match self {
            State::Down => "down",
            State::Run => "run",
            State::Finish => "finish",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Up,
    Down,
    /// Down, then stop supervising; written as `d` like runit does.
    Exit,
}

/// What `supervise/status` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Refreshed on every start and every stop, never when finish starts: `sv` counts ages from it
    /// and decides `restart`/`term` are done by comparing it with its own start time.
    pub since: Tai64N,
    pub pid: u32,
    pub paused: bool,
    pub want: Want,
    pub got_term: bool,
    pub state: State,
}

impl Status {
    /// Does the run this status records still run: the same process, leading its group and
    /// started when the status says (so not a stranger that reused the pid)?
    pub fn run_is_alive(&self) -> bool {
        self.pid != 0 && crate::ext::procfs::is_recorded_leader(self.pid, self.since.unix_secs())
    }

    pub fn encode(&self) -> [u8; STATUS_LEN] {
        let mut b = [0u8; STATUS_LEN];
        b[..12].copy_from_slice(&self.since.to_bytes());
        b[12..16].copy_from_slice(&self.pid.to_le_bytes());
        b[16] = self.paused as u8;
        b[17] = match self.want {
            Want::Up => b'u',
            Want::Down | Want::Exit => b'd',
        };
        b[18] = self.got_term as u8;
        b[19] = self.state as u8;
        b
    }

    /// Reads runit's 20 bytes (extra bytes ignored, like `sv`). An unknown state byte or want byte
    /// is refused: it means the file was not written by a runit-compatible supervisor.
    pub fn decode(b: &[u8]) -> Result<Status, String> {
        if b.len() < STATUS_LEN {
            return Err(format!(
                "bad format: {} bytes, runit writes {STATUS_LEN}",
                b.len()
            ));
        }
        let since = Tai64N::from_bytes(b[..12].try_into().expect("12 bytes"));
        let pid = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
        let want = match b[17] {
            b'u' => Want::Up,
            b'd' | 0 => Want::Down,
            other => return Err(format!("bad format: want byte {other:#04x}")),
        };
        let state = match b[19] {
            0 => State::Down,
            1 => State::Run,
            2 => State::Finish,
            other => return Err(format!("bad format: state byte {other}")),
        };
        Ok(Status {
            since,
            pid,
            paused: b[16] != 0,
            want,
            got_term: b[18] != 0,
            state,
        })
    }

    /// The one line runit keeps in `supervise/stat`: never "normally", never "want up".
    pub fn stat_text(&self) -> String {
        let mut s = String::from(self.state.name());
        if self.paused {
            s.push_str(", paused");
        }
        if self.got_term {
            s.push_str(", got TERM");
        }
        if self.state != State::Down {
            match self.want {
                Want::Down => s.push_str(", want down"),
                Want::Exit => s.push_str(", want exit"),
                Want::Up => {}
            }
        }
        s.push('\n');
        s
    }

    pub fn pid_text(&self) -> String {
        if self.pid == 0 {
            String::new()
        } else {
            format!("{}\n", self.pid)
        }
    }

    /// Is `./run` running? The one test of "up" every client uses.
    pub fn is_up(&self) -> bool {
        self.state == State::Run && self.pid != 0
    }

    /// Down with nothing left running (not finishing, not draining a group).
    pub fn is_down(&self) -> bool {
        self.state == State::Down && self.pid == 0
    }

    /// Seconds since `since`, as `sv` counts them: a future timestamp shows as 0.
    pub fn age_secs(&self, now: SystemTime) -> u64 {
        now.duration_since(self.since.to_system())
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

pub fn supervise_dir(service: &Path) -> PathBuf {
    service.join(SUPERVISE)
}

/// Writes `pid`, `stat` and `status` in runit's order, each through `.new` and rename so a
/// reader never sees a torn file.
pub fn write(service: &Path, status: &Status) -> io::Result<()> {
    let dir = supervise_dir(service);
    fsx::write_atomic_io(&dir.join(PID), status.pid_text().as_bytes(), 0o644)?;
    fsx::write_atomic_io(&dir.join(STAT), status.stat_text().as_bytes(), 0o644)?;
    fsx::write_atomic_io(&dir.join(STATUS), &status.encode(), 0o644)
}

/// Reads `supervise/status`; a file runit would not have written is `InvalidData`.
pub fn read(service: &Path) -> io::Result<Status> {
    let bytes = fs::read(supervise_dir(service).join(STATUS))?;
    Status::decode(&bytes).map_err(|e| io::Error::new(ErrorKind::InvalidData, e))
}

/// Whether a supervisor holds `service`, asked the way `sv` and `svok` ask: opening the `ok`
/// FIFO for writing succeeds only while some process has it open for reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Supervised,
    /// The FIFO exists but nobody reads it: the supervisor is gone.
    NotRunning,
    /// No `supervise/ok`: never supervised here.
    Missing,
    Error(String),
}

pub fn probe(service: &Path) -> Probe {
    let path = supervise_dir(service).join(OK);
    match OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(_) => Probe::Supervised,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => Probe::NotRunning,
        Err(e) if e.kind() == ErrorKind::NotFound => Probe::Missing,
        Err(e) => Probe::Error(format!("{}: {e}", path.display())),
    }
}

/// approuter's notes beside runit's files: how a crash loop stands and the last thing the
/// supervisor or the logger had to say. `key value` lines, readable with `cat`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extra {
    /// Exits in a row that came less than a second after the start.
    pub quick_exits: u32,
    /// Unix time of the next start when a restart is being held back, else 0.
    pub next_start: u64,
    /// How the last run ended: `exit 3`, `signal 9`, `not started: ...`.
    pub last_exit: String,
    /// The last warning or error about this service, and its Unix time.
    pub message: String,
    pub message_time: u64,
    /// In a log's file: the inodes of the pipe from its service and of the pipe svscan reads
    /// the logger's own output from, so that a new svscan can find them again (and only them)
    /// through the processes that still hold them.
    pub log_pipe: u64,
    pub capture_pipe: u64,
}

impl Extra {
    pub fn encode(&self) -> String {
        let one_line = |s: &str| s.replace(['\n', '\r'], " ");
        format!(
            "quick_exits {}\nnext_start {}\nlast_exit {}\nmessage_time {}\nmessage {}\n{}",
            self.quick_exits,
            self.next_start,
            one_line(&self.last_exit),
            self.message_time,
            one_line(&self.message),
            if self.log_pipe == 0 {
                String::new()
            } else {
                format!(
                    "log_pipe {}\ncapture_pipe {}\n",
                    self.log_pipe, self.capture_pipe
                )
            }
        )
    }

    pub fn decode(text: &str) -> Extra {
        let mut e = Extra::default();
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "quick_exits" => e.quick_exits = value.parse().unwrap_or(0),
                "next_start" => e.next_start = value.parse().unwrap_or(0),
                "last_exit" => e.last_exit = value.to_string(),
                "message_time" => e.message_time = value.parse().unwrap_or(0),
                "message" => e.message = value.to_string(),
                "log_pipe" => e.log_pipe = value.parse().unwrap_or(0),
                "capture_pipe" => e.capture_pipe = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        e
    }
}

pub fn write_extra(service: &Path, extra: &Extra) -> io::Result<()> {
    fsx::write_atomic_io(
        &supervise_dir(service).join(EXTRA),
        extra.encode().as_bytes(),
        0o644,
    )
}

pub fn read_extra(service: &Path) -> Extra {
    fs::read_to_string(supervise_dir(service).join(EXTRA))
        .map(|t| Extra::decode(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(pid: u32, paused: bool, want: Want, term: bool, state: State) -> Status {
        Status {
            since: Tai64N {
                secs: 0x4000_0000_6b02_5efc,
                nanos: 692_311_500,
            },
            pid,
            paused,
            want,
            got_term: term,
            state,
        }
    }

    #[test]
    fn layout_matches_runit() {
        // The reference's live example, byte for byte.
        let s = st(19311, false, Want::Up, false, State::Run);
        let hex: Vec<String> = s.encode().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex.join(" "),
            "40 00 00 00 6b 02 5e fc 29 43 d5 cc 6f 4b 00 00 00 75 00 01"
        );
        assert_eq!(Status::decode(&s.encode()).unwrap(), s);
        assert!(Status::decode(&s.encode()[..18]).is_err());
        let mut bad = s.encode();
        bad[19] = 7;
        assert!(Status::decode(&bad).is_err());
    }

    #[test]
    fn stat_lines_match_runit() {
        let table = [
            (st(0, false, Want::Up, false, State::Down), "down\n"),
            (st(0, false, Want::Down, false, State::Down), "down\n"),
            (st(5, false, Want::Up, false, State::Run), "run\n"),
            (st(5, true, Want::Up, false, State::Run), "run, paused\n"),
            (
                st(5, true, Want::Up, true, State::Run),
                "run, paused, got TERM\n",
            ),
            (
                st(5, false, Want::Down, true, State::Run),
                "run, got TERM, want down\n",
            ),
            (
                st(5, false, Want::Exit, false, State::Run),
                "run, want exit\n",
            ),
            (
                st(7, false, Want::Down, false, State::Finish),
                "finish, want down\n",
            ),
        ];
        for (status, want) in table {
            assert_eq!(status.stat_text(), want, "{status:?}");
        }
        assert_eq!(st(0, false, Want::Up, false, State::Down).pid_text(), "");
        assert_eq!(
            st(42, false, Want::Up, false, State::Run).pid_text(),
            "42\n"
        );
    }

    #[test]
    fn extra_round_trip() {
        let e = Extra {
            quick_exits: 3,
            next_start: 1_795_317_500,
            last_exit: "exit 1".into(),
            message: "log: disk full\nsecond".into(),
            message_time: 1_795_317_490,
            log_pipe: 8_812_345,
            capture_pipe: 8_812_346,
        };
        let back = Extra::decode(&e.encode());
        assert_eq!((back.log_pipe, back.capture_pipe), (8_812_345, 8_812_346));
        assert_eq!(back.message, "log: disk full second");
        assert_eq!(back.quick_exits, 3);
        assert_eq!(back.next_start, 1_795_317_500);
        assert_eq!(Extra::decode("garbage"), Extra::default());
    }
}
