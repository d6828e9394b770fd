//! Files on disk: writes that readers never see half-done (`X.new` then rename, as s6 and runit do), private directories, optional reads, the executable test, and descriptors kept from what approuter starts.

use anyhow::{Context, Result};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The temporary name a file is written under before it is renamed into place.
pub fn new_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` with `mode` so that a reader sees the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    write_atomic_io(path, bytes, mode).with_context(|| format!("{}: cannot write", path.display()))
}

pub fn write_atomic_io(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = new_path(path);
    // A leftover `.new` goes first, and the new one must be created, never opened: in a
    // directory someone else could write (a tree made under an old umask), a `.new` symlink
    // planted there would otherwise have root write through it.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        // The umask may have narrowed the mode given at creation.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// True when `path` already holds exactly these bytes with this mode, as a regular file of
/// approuter's user, so rewriting it would only disturb its mtime. A symlink or someone else's
/// file with the right bytes is rewritten: its owner could change it afterwards.
pub fn is_current(path: &Path, bytes: &[u8], mode: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    meta.is_file()
        && meta.uid() == nix::unistd::geteuid().as_raw()
        && meta.len() == bytes.len() as u64
        && meta.permissions().mode() & 0o7777 == mode
        && fs::read(path).map(|old| old == bytes).unwrap_or(false)
}

/// Removes a file; one that is not there is fine.
pub fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("{}: cannot remove", path.display()))
        }
        _ => Ok(()),
    }
}

/// A directory, created when missing; one of approuter's user that others could write (made
/// under an old umask) is narrowed, so nobody else can replace what approuter keeps in it.
pub fn ensure_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    fs::create_dir_all(path)
        .with_context(|| format!("{}: cannot create directory", path.display()))?;
    let meta = fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if meta.mode() & 0o022 != 0 && meta.uid() == nix::unistd::geteuid().as_raw() {
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7755))
            .with_context(|| format!("{}: cannot close it to others' writes", path.display()))?;
    }
    Ok(())
}

/// A directory only its owner may enter (run/, state/): created when missing, and narrowed to
/// 0700 when it exists with a wider mode.
pub fn ensure_private_dir(path: &Path) -> Result<()> {
    ensure_dir(path)?;
    let meta =
        fs::symlink_metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if !meta.is_dir() {
        anyhow::bail!("{}: not a directory; move it away", path.display());
    }
    if meta.permissions().mode() & 0o777 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("{}: cannot make it private (0700)", path.display()))?;
    }
    Ok(())
}

/// The file's text, or `None` when it does not exist; any other failure, or bytes that are not
/// UTF-8, is an error naming the file.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Ok(Some(text)),
            Err(_) => anyhow::bail!("{}: not valid UTF-8 text", path.display()),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
    }
}

/// A regular file someone may execute.
pub fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Adds the path to an io error's message, for errors that travel without context.
pub fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Marks every descriptor above stderr close-on-exec. Whatever the caller of approuter left open
/// (`flock deploy.lock approuter start` leaves its lock's) would otherwise reach svscan, and
/// through it every service, for their whole lives.
pub fn close_inherited_on_exec() {
    use nix::libc;
    // SAFETY: close_range only changes descriptor flags; Linux 5.11 and later.
    let done = unsafe { libc::close_range(3, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
    if done == 0 {
        return;
    }
    // An older kernel: each open descriptor, as /proc lists them.
    let Ok(dir) = fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: setting FD_CLOEXEC on a descriptor number changes nothing else; one that was
        // the listing's own (now closed) just fails.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_and_currency() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one", 0o755).unwrap();
        assert!(is_current(&p, b"one", 0o755));
        assert!(!is_current(&p, b"one", 0o644));
        assert!(!is_current(&p, b"two", 0o755));
        assert!(!new_path(&p).exists());
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }
}
