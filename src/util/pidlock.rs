//! Lock files that name their holder: an `flock` held for a process's life, its pid written inside, and the holder found from the kernel's own table (/proc/locks) when the file does not say.

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
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
    /// Another process holds it: its pid, as the kernel knows it (or as the file says).
    Busy {
        pid: Option<u32>,
    },
}

/// Takes the lock at `path` (created with `mode` if missing), writing our pid in it when
/// `record_pid` (for people who `cat` it: approuter itself asks the kernel). With `wait`, blocks
/// until the holder lets go; otherwise a held lock is `Busy` at once.
pub fn acquire(path: &Path, wait: bool, mode: u32, record_pid: bool) -> Result<Acquired> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        // Never through a symlink someone planted (in a directory an old umask left open).
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    // Only a file of approuter's user with this one name: someone else's could be held by them
    // for ever, and a file with other links would be truncated everywhere it is linked.
    match f.metadata() {
        Ok(m) if m.is_file() && m.nlink() == 1 && m.uid() == nix::unistd::geteuid().as_raw() => {}
        _ => anyhow::bail!(
            "{}: not a regular file of approuter's user with a single link; remove it",
            path.display()
        ),
    }
    // A lock file made before with a wider mode is narrowed: nobody else may hold it.
    if let Ok(m) = f.metadata() {
        use std::os::unix::fs::PermissionsExt;
        if m.permissions().mode() & 0o777 != mode && m.uid() == nix::unistd::geteuid().as_raw() {
            let _ = f.set_permissions(std::fs::Permissions::from_mode(mode));
        }
    }
    let locked = if wait {
        f.lock().map_err(TryLockError::Error)
    } else {
        f.try_lock()
    };
    match locked {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Ok(Acquired::Busy {
                pid: holder_of(&mut f),
            })
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("{}: cannot lock", path.display()))
        }
    }
    if !record_pid {
        return Ok(Acquired::Mine(PidLock { _file: f }));
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
    // The kernel is asked first: probing with a lock of our own would, for that instant, make a
    // process that starts and takes the lock fail as if someone held it (start --foreground
    // looks at svscan's lock every second).
    if let Ok(m) = f.metadata() {
        if let Some(found) = kernel_holder(m.dev(), m.ino()) {
            return found;
        }
    }
    match f.try_lock() {
        Err(TryLockError::WouldBlock) => holder_of(&mut f),
        _ => None,
    }
}

/// Who holds the flock on this file: the kernel's answer first (a process that locked the file
/// without writing its pid, or wrote a false one, is still found), then what the file says.
fn holder_of(f: &mut File) -> Option<u32> {
    f.metadata()
        .ok()
        .and_then(|m| kernel_holder(m.dev(), m.ino()).flatten())
        .or_else(|| {
            let mut s = String::new();
            f.rewind().ok()?;
            f.read_to_string(&mut s).ok()?;
            s.trim().parse().ok()
        })
}

/// The pid /proc/locks gives for an FLOCK held (not waited for) on device `dev`, inode `ino`:
/// `Some(None)` when none is held, `None` when /proc/locks cannot be read.
fn kernel_holder(dev: u64, ino: u64) -> Option<Option<u32>> {
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    let want = format!(
        "{:02x}:{:02x}:{ino}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    Some(text.lines().find_map(|l| {
        // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:131090 0 EOF"; waiters have "->" after the number.
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str()))
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_sees_the_first_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        assert_eq!(holder(&path), None);
        let Acquired::Mine(lock) = acquire(&path, false, 0o600, true).unwrap() else {
            panic!("free lock not taken");
        };
        // flock locks belong to the open file description: a second open in this process
        // contends like another process would.
        match acquire(&path, false, 0o600, true).unwrap() {
            Acquired::Busy { pid } => assert_eq!(pid, Some(std::process::id())),
            Acquired::Mine(_) => panic!("taken twice"),
        }
        assert_eq!(holder(&path), Some(std::process::id()));
        drop(lock);
        assert_eq!(holder(&path), None);
    }

    #[test]
    fn only_a_single_linked_file_of_ours_is_a_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        std::fs::write(&path, "").unwrap();
        let other = dir.path().join("elsewhere");
        std::fs::hard_link(&path, &other).unwrap();
        let err = acquire(&path, false, 0o600, true).unwrap_err().to_string();
        assert!(err.contains("single link"), "{err}");
        std::fs::remove_file(&other).unwrap();
        std::os::unix::fs::symlink(&path, &other).unwrap();
        assert!(
            acquire(&other, false, 0o600, true).is_err(),
            "followed a symlink"
        );
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(54321)), None).unwrap();
            let err = acquire(&path, false, 0o600, true).unwrap_err().to_string();
            assert!(err.contains("approuter's user"), "{err}");
        }
    }

    #[test]
    fn the_kernel_names_a_holder_that_wrote_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        std::fs::write(&path, "999999\n").unwrap();
        let f = File::open(&path).unwrap();
        f.lock().unwrap();
        assert_eq!(holder(&path), Some(std::process::id()));
    }
}
