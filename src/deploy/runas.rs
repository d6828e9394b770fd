//! Who instances run as: the `user` and `group` settings resolved on this machine, and checkouts given to that user so the application can write in them.

use anyhow::{bail, Context, Result};
use nix::dir::Dir;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fchmodat, fstat, fstatat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{fchown, fchownat, Gid, Group, Uid, User};
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::config::Settings;

/// The account an instance runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub uid: Uid,
    pub gid: Gid,
    pub home: PathBuf,
}

/// The account `settings` name, or `None` when instances run as approuter's own user.
pub fn resolve(settings: &Settings) -> Result<Option<RunAs>> {
    let Some(name) = &settings.user else {
        return Ok(None);
    };
    let user = User::from_name(name)
        .with_context(|| format!("looking up user `{name}`"))?
        .with_context(|| {
            format!("approuter.toml: key `user`: there is no user `{name}` on this machine; create it (useradd --system --create-home {name}) or remove the key")
        })?;
    let gid = match &settings.group {
        None => user.gid,
        Some(g) => {
            Group::from_name(g)
                .with_context(|| format!("looking up group `{g}`"))?
                .with_context(|| {
                    format!("approuter.toml: key `group`: there is no group `{g}` on this machine; create it or remove the key")
                })?
                .gid
        }
    };
    if !Uid::effective().is_root() && Uid::effective() != user.uid {
        bail!(
            "approuter.toml: key `user`: instances can run as `{name}` only when approuter runs as root or as `{name}` (it runs as uid {})",
            Uid::effective()
        );
    }
    Ok(Some(RunAs {
        user: name.clone(),
        uid: user.uid,
        gid,
        home: user.dir,
    }))
}

/// The repository inside a checkout. It stays approuter's: a run user who could write it could
/// point libgit2, working as root, anywhere (`core.worktree`), or rewrite what a deploy fetched.
const GIT_DIR: &str = ".git";

/// Makes the user instances run as the owner of every file of the checkout at `dir` (after git
/// wrote it as root), its repository excepted, so the application can write in it.
///
/// The walk opens each directory relative to its parent with O_NOFOLLOW and gives a directory
/// away only after its contents: while it runs, every directory it still has to look into is
/// root's, so the user cannot rename or plant a symlink to lead it elsewhere. A file with
/// several links stays root's (whatever it is linked from outside the tree must not change).
pub fn give(dir: &Path, to: &RunAs) -> Result<()> {
    let top = open_dir(None, dir)?;
    give_in(&top, dir, to, true)?;
    fchown(&top, Some(to.uid), Some(to.gid)).with_context(|| cannot(dir, "give it to", &to.user))
}

/// One entry of a directory being walked: its name, path, status (not following a symlink)
/// and file type.
struct Entry {
    name: OsString,
    at: PathBuf,
    st: nix::sys::stat::FileStat,
    kind: SFlag,
}

/// The entries of the open directory `fd` (at `path`), the repository left out at the top:
/// neither walk ever touches it.
fn entries(fd: &OwnedFd, path: &Path, top: bool) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for name in names(fd, path)? {
        if top && name == GIT_DIR {
            continue;
        }
        let at = path.join(&name);
        let st = fstatat(fd, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .with_context(|| format!("{}: cannot read", at.display()))?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        out.push(Entry { name, at, st, kind });
    }
    Ok(out)
}

fn give_in(fd: &OwnedFd, path: &Path, to: &RunAs, top: bool) -> Result<()> {
    for Entry { name, at, st, kind } in entries(fd, path, top)? {
        if kind == SFlag::S_IFDIR {
            let child = open_dir(Some(fd), &at)?;
            give_in(&child, &at, to, false)?;
            fchown(&child, Some(to.uid), Some(to.gid))
        } else if kind == SFlag::S_IFREG && st.st_nlink > 1 {
            continue;
        } else {
            fchownat(
                fd,
                name.as_os_str(),
                Some(to.uid),
                Some(to.gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
        }
        .with_context(|| cannot(&at, "give it to", &to.user))?;
    }
    Ok(())
}

/// Takes the checkout at `dir` back from the user instances run as, before git writes in it as
/// root: everything becomes root's, without write permission for others and without set-id
/// bits. Then the user (or a process it left behind) can no longer move a directory or plant a
/// symlink where git is about to write. Each directory is taken before its contents are looked
/// at, for the same reason.
///
/// The repository is left as it is: it was never given away, and if the user replaced it, git
/// must find the replacement still theirs and refuse it.
pub fn take_back(dir: &Path) -> Result<()> {
    let top = open_dir(None, dir)?;
    lock_dir(&top, dir)?;
    take_back_in(&top, dir, true)
}

fn take_back_in(fd: &OwnedFd, path: &Path, top: bool) -> Result<()> {
    for Entry { name, at, st, kind } in entries(fd, path, top)? {
        if kind == SFlag::S_IFDIR {
            let child = open_dir(Some(fd), &at)?;
            lock_dir(&child, &at)?;
            take_back_in(&child, &at, false)?;
            continue;
        }
        // A file with several links is also somewhere else (the user's own hard link, a package
        // store's): it is not changed here. Where git would write over it, it is removed first
        // (git::checkout), so git never writes through it.
        if kind == SFlag::S_IFREG && st.st_nlink > 1 {
            continue;
        }
        let root = Some(Uid::from_raw(0));
        fchownat(
            fd,
            name.as_os_str(),
            root,
            Some(Gid::from_raw(0)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .with_context(|| cannot(&at, "take it back from", "its user"))?;
        let mode = st.st_mode & 0o7777;
        if kind == SFlag::S_IFREG && mode & 0o6002 != 0 {
            // The parent is root's now: nobody can swap this name for a link meanwhile.
            fchmodat(
                fd,
                name.as_os_str(),
                Mode::from_bits_truncate(mode & !0o6002),
                FchmodatFlags::FollowSymlink,
            )
            .with_context(|| cannot(&at, "take it back from", "its user"))?;
        }
    }
    Ok(())
}

/// A directory made root's and closed to others' writes, through its open descriptor.
fn lock_dir(fd: &OwnedFd, path: &Path) -> Result<()> {
    fchown(fd, Some(Uid::from_raw(0)), Some(Gid::from_raw(0)))
        .and_then(|()| fstat(fd))
        .and_then(|st| fchmod(fd, Mode::from_bits_truncate(st.st_mode & 0o7777 & !0o002)))
        .with_context(|| cannot(path, "take it back from", "its user"))
}

/// Opens the directory `path` (relative to `parent` when given, by its last component) without
/// following a symlink.
fn open_dir(parent: Option<&OwnedFd>, path: &Path) -> Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match parent {
        Some(p) => openat(
            p,
            path.file_name().unwrap_or_default(),
            flags,
            Mode::empty(),
        ),
        None => nix::fcntl::open(path, flags, Mode::empty()),
    }
    .with_context(|| format!("{}: cannot open as a directory", path.display()))
}

/// The names in the open directory `fd`, `.` and `..` left out.
fn names(fd: &OwnedFd, path: &Path) -> Result<Vec<OsString>> {
    let dup = fd
        .try_clone()
        .with_context(|| format!("{}: cannot list", path.display()))?;
    let mut dir = Dir::from_fd(dup).with_context(|| format!("{}: cannot list", path.display()))?;
    let mut out = Vec::new();
    for e in dir.iter() {
        let e = e.with_context(|| format!("{}: cannot list", path.display()))?;
        let name = OsStr::from_bytes(e.file_name().to_bytes());
        if name != "." && name != ".." {
            out.push(name.to_os_string());
        }
    }
    Ok(out)
}

fn cannot(path: &Path, what: &str, who: &str) -> String {
    format!("{}: cannot {what} {who}", path.display())
}
