//! The control bytes runit's `sv` and daemontools' `svc` write to `supervise/control`, and how approuter writes them itself.

use nix::sys::signal::Signal;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::status::{supervise_dir, CONTROL};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `u`: want up; start now if down.
    Up,
    /// `d`: want down; TERM (then CONT) if running.
    Down,
    /// `o`: run once: start now if down, never restart.
    Once,
    /// `x`: down, then stop supervising. Ignored by log services.
    Exit,
    /// `p`/`c`: STOP/CONT, recorded as paused.
    Pause,
    Cont,
    /// `h a i q 1 2 t k`: send the signal, nothing else (`t` also records got-TERM).
    Signal(Signal),
}

impl Command {
    /// The meaning of one control byte; unknown bytes are ignored, as runsv ignores them.
    pub fn from_byte(b: u8) -> Option<Command> {
        Some(match b {
            b'u' => Command::Up,
            b'd' => Command::Down,
            b'o' => Command::Once,
            b'x' => Command::Exit,
            b'p' => Command::Pause,
            b'c' => Command::Cont,
            b'h' => Command::Signal(Signal::SIGHUP),
            b'a' => Command::Signal(Signal::SIGALRM),
            b'i' => Command::Signal(Signal::SIGINT),
            b'q' => Command::Signal(Signal::SIGQUIT),
            b'1' => Command::Signal(Signal::SIGUSR1),
            b'2' => Command::Signal(Signal::SIGUSR2),
            b't' => Command::Signal(Signal::SIGTERM),
            b'k' => Command::Signal(Signal::SIGKILL),
            _ => return None,
        })
    }
}

pub const UP: &[u8] = b"u";
pub const DOWN: &[u8] = b"d";
pub const HUP: &[u8] = b"h";
/// `sv restart`: TERM, CONT, up.
pub const RESTART: &[u8] = b"tcu";

/// Writes control bytes in one write, as `sv` does. ENXIO means no supervisor reads the FIFO.
pub fn send(service: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(supervise_dir(service).join(CONTROL))?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_runit_byte_is_known_and_others_ignored() {
        for b in b"udoxpchaiq12tk" {
            assert!(Command::from_byte(*b).is_some(), "{}", *b as char);
        }
        for b in b"ze\n " {
            assert!(Command::from_byte(*b).is_none(), "{}", *b as char);
        }
        assert_eq!(
            Command::from_byte(b't'),
            Some(Command::Signal(Signal::SIGTERM))
        );
    }
}
