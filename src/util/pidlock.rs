//! Lock files that name their holder: an `flock` held for a process's life, with its pid written inside (svscan's scan lock, sync's lock).

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A lock this process holds; released when dropped (or when the process ends, however).
#[derive(Debug)]
pub struct PidLock {
    _file: File,
}

/// What an attempt to take a lock found.
#[derive(Debug)]
pub enum Acquired {
    Mine(PidLock),
    /// Another process holds it; the pid it wrote, when it wrote one.
    Busy {
        pid: Option<u32>,
    },
}

/// Takes the lock at `path` (created with `mode` if missing) and writes our pid in it. With
/// `wait`, blocks until the holder lets go; otherwise a held lock is `Busy` at once.
pub fn acquire(path: &Path, wait: bool, mode: u32) -> Result<Acquired> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    let locked = if wait {
        f.lock().map_err(TryLockError::Error)
    } else {
        f.try_lock()
    };
    match locked {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Ok(Acquired::Busy {
                pid: read_pid(&mut f),
            })
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("{}: cannot lock", path.display()))
        }
    }
    (|| {
        f.set_len(0)?;
        f.rewind()?;
        writeln!(f, "{}", std::process::id())
    })()
    .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(Acquired::Mine(PidLock { _file: f }))
}

/// The pid of the process holding the lock at `path`, if one does.
pub fn holder(path: &Path) -> Option<u32> {
    let mut f = File::open(path).ok()?;
    match f.try_lock() {
        Err(TryLockError::WouldBlock) => read_pid(&mut f),
        _ => None,
    }
}

fn read_pid(f: &mut File) -> Option<u32> {
    let mut s = String::new();
    f.rewind().ok()?;
    f.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_sees_the_first_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        assert_eq!(holder(&path), None);
        let Acquired::Mine(lock) = acquire(&path, false, 0o600).unwrap() else {
            panic!("free lock not taken");
        };
        // flock locks belong to the open file description: a second open in this process
        // contends like another process would.
        match acquire(&path, false, 0o600).unwrap() {
            Acquired::Busy { pid } => assert_eq!(pid, Some(std::process::id())),
            Acquired::Mine(_) => panic!("taken twice"),
        }
        assert_eq!(holder(&path), Some(std::process::id()));
        drop(lock);
        assert_eq!(holder(&path), None);
    }
}
