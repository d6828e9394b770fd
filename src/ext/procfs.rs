//! What /proc says of processes and sockets: the one parser of `/proc/PID/stat`, the one walk over `/proc`, and who listens on a TCP port.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};

/// The fields of `/proc/PID/stat` approuter reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `Z`...
    pub state: char,
    pub ppid: u32,
    pub pgrp: i32,
    pub session: u32,
    /// Clock ticks since boot when the process started.
    pub start_ticks: u64,
    /// User and system CPU time, in clock ticks.
    pub cpu_ticks: u64,
}

impl Stat {
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Parses `/proc/PID/stat`. The command name may hold spaces and parentheses, so the fields
/// resume after the last ')'.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); field N is f[N - 3].
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: num(1)? as u32,
        pgrp: f.get(2)?.parse().ok()?,
        session: num(3)? as u32,
        start_ticks: num(19)?,
        cpu_ticks: num(11)? + num(12)?,
    })
}

pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process's pid, as /proc lists them now.
pub fn pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// A process's arguments, as it was started (none for a kernel thread or a zombie).
pub fn argv(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// One variable of a process's environment as it was started (readable by its own user and
/// root).
pub fn environ_var(pid: u32, name: &str) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/environ")).ok()?;
    raw.split(|&b| b == 0).find_map(|kv| {
        let kv = String::from_utf8_lossy(kv);
        kv.strip_prefix(name)?.strip_prefix('=').map(str::to_string)
    })
}

/// A process's command line, arguments joined by spaces ("" for a kernel thread or a zombie).
pub fn cmdline(pid: u32) -> Option<String> {
    argv(pid).map(|a| a.join(" "))
}

/// A process's real user id.
pub fn uid(pid: u32) -> Option<u32> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A process in words, for messages: `pid 4242 (user nobody: python3 squat.py)`.
pub fn describe(pid: u32) -> String {
    let user = uid(pid)
        .map(|u| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(u))
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| format!("uid {u}"))
        })
        .unwrap_or_else(|| "unknown user".into());
    let cmd = cmdline(pid)
        .filter(|c| !c.is_empty())
        .or_else(|| comm(pid))
        .unwrap_or_default();
    format!("pid {pid} (user {user}: {cmd})")
}

/// The subcommand of an approuter command line (`/usr/bin/approuter --root /srv sync -v` gives
/// `sync`); `None` when it is not approuter's.
pub fn approuter_subcommand(argv: &[String]) -> Option<String> {
    let mut words = argv.iter();
    let exe = words.next()?;
    let name = exe.rsplit('/').next()?;
    // The lean binaries are their subcommand: `approuter-svscan DIR` is `approuter svscan DIR`.
    if let Some(sub) = name.strip_prefix("approuter-") {
        return Some(sub.to_string());
    }
    if !name.starts_with("approuter") {
        return None;
    }
    let mut skip_value = false;
    for w in words {
        if skip_value {
            skip_value = false;
        } else if w == "--root" {
            skip_value = true;
        } else if !w.starts_with('-') {
            return Some(w.clone());
        }
    }
    None
}

/// A process's short name (`comm`).
pub fn comm(pid: u32) -> Option<String> {
    Some(
        fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()?
            .trim()
            .to_string(),
    )
}

fn clock_ticks_per_sec() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|h| *h > 0)
}

fn boot_time() -> Option<u64> {
    fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

/// When `pid` started, in Unix seconds.
pub fn start_time(pid: u32) -> Option<u64> {
    Some(boot_time()? + stat(pid)?.start_ticks / clock_ticks_per_sec()?)
}

/// True when `pid` is alive, leads its own process group and started within a couple of seconds
/// of `since_unix` (a status file's start time): then it is the run we recorded, not a stranger
/// that reused the pid.
pub fn is_recorded_leader(pid: u32, since_unix: u64) -> bool {
    let Some(st) = stat(pid) else {
        return false;
    };
    st.pgrp == pid as i32 && start_time(pid).is_some_and(|t| t.abs_diff(since_unix) <= 2)
}

/// A pidfd for `pid` (Linux 5.3): it becomes readable when the process ends, whoever its
/// parent is, and it keeps naming that process even if the pid is later reused.
pub fn pidfd(pid: u32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid as nix::libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Both ends of the pipe that descriptor `fd` of process `pid` is, opened anew through
/// `/proc/PID/fd/FD`, but only if it is the pipe with inode `ino`: a process may have put
/// anything on its descriptors, and nothing but that pipe is opened. Blocking, close-on-exec.
pub fn reopen_pipe(
    pid: u32,
    fd: i32,
    ino: u64,
) -> Option<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
    let path = format!("/proc/{pid}/fd/{fd}");
    let is_it = |m: &fs::Metadata| ino != 0 && m.file_type().is_fifo() && m.ino() == ino;
    // Looked at before it is opened: opening some files (a terminal, a device) does things.
    if !is_it(&fs::metadata(&path).ok()?) {
        return None;
    }
    let open = |path: &str, write: bool| {
        fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
            .open(path)
            .ok()
    };
    let read = open(&path, false)?;
    // Checked again on what was opened (the process may have swapped its descriptor since),
    // before anything is opened for writing.
    if !is_it(&read.metadata().ok()?) {
        return None;
    }
    // The write end through our own descriptor: the process cannot swap it meanwhile.
    let write = open(&format!("/proc/self/fd/{}", read.as_raw_fd()), true)?;
    let blocking = |f: fs::File| -> Option<OwnedFd> {
        let fd = OwnedFd::from(f);
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL).ok()?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags)).ok()?;
        Some(fd)
    };
    Some((blocking(read)?, blocking(write)?))
}

/// True when some process of group `pgid` is still alive (not a zombie). A group left by a
/// supervisor that was killed is reaped by init, maybe late: its zombies must not keep the
/// service from starting again.
pub fn group_has_live_members(pgid: i32) -> bool {
    pids()
        .into_iter()
        .any(|p| stat(p).is_some_and(|s| s.pgrp == pgid && !s.is_zombie()))
}

/// The children of `ppid`, with their command lines (process titles, for nginx's workers).
pub fn children(ppid: u32) -> Vec<(u32, String)> {
    pids()
        .into_iter()
        .filter(|&p| stat(p).is_some_and(|s| s.ppid == ppid))
        .filter_map(|p| Some((p, cmdline(p)?)))
        .collect()
}

/// A process listening on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub pid: u32,
    pub name: String,
}

/// Free when we can bind it on every address (nginx listens on all of them).
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

/// Every listening TCP socket: (port, inode), from /proc/net/tcp and tcp6.
fn listening_sockets() -> Vec<(u16, u64)> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is "ADDR:PORT" in hex; state 0A is LISTEN; field 9 is the inode.
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let port = f[1]
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            if let (Some(port), Ok(inode)) = (port, f[9].parse()) {
                out.push((port, inode));
            }
        }
    }
    out
}

/// The TCP ports some process listens on now.
pub fn listening_ports() -> std::collections::BTreeSet<u16> {
    listening_sockets().into_iter().map(|(p, _)| p).collect()
}

fn listening_inodes(port: u16) -> Vec<u64> {
    listening_sockets()
        .into_iter()
        .filter(|(p, _)| *p == port)
        .map(|(_, i)| i)
        .collect()
}

/// Who holds the listening sockets on a port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listeners {
    /// The processes found holding one.
    pub seen: Vec<Listener>,
    /// Sockets whose holder /proc does not show: when approuter is not root, another user's
    /// process descriptors cannot be read. Such a holder is a stranger, never "nobody".
    pub unseen: usize,
}

impl Listeners {
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty() && self.unseen == 0
    }
}

/// The processes holding a listening socket on `port`, and how many sockets they leave
/// unexplained.
pub fn listeners(port: u16) -> Listeners {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return Listeners::default();
    }
    let targets: Vec<(u64, String)> = inodes
        .iter()
        .map(|&i| (i, format!("socket:[{i}]")))
        .collect();
    let mut found = std::collections::BTreeSet::new();
    let seen = pids()
        .into_iter()
        .filter(|pid| {
            let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
                return false;
            };
            let mut holds = false;
            for fd in fds.flatten() {
                let Ok(t) = fs::read_link(fd.path()) else {
                    continue;
                };
                if let Some((inode, _)) = targets.iter().find(|(_, x)| t.as_os_str() == x.as_str())
                {
                    found.insert(*inode);
                    holds = true;
                }
            }
            holds
        })
        .map(|pid| Listener {
            pid,
            name: comm(pid).unwrap_or_default(),
        })
        .collect();
    Listeners {
        seen,
        unseen: inodes.iter().filter(|i| !found.contains(*i)).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_hostile_name() {
        let text = "42 (a) b (c) S 1 42 42 0 -1 4194560 1 0 0 0 7 3 0 0 20 0 1 0 12345 0 0";
        let s = parse_stat(text).unwrap();
        assert_eq!(
            (
                s.state,
                s.ppid,
                s.pgrp,
                s.session,
                s.cpu_ticks,
                s.start_ticks
            ),
            ('S', 1, 42, 42, 10, 12345)
        );
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn own_process() {
        let me = std::process::id();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let t = start_time(me).expect("own start time");
        assert!(t <= now + 1 && now - t < 600, "started {t}, now {now}");
        assert!(start_time(u32::MAX).is_none());
        let own = nix::unistd::getpgrp().as_raw();
        assert!(group_has_live_members(own));
        assert!(!group_has_live_members(i32::MAX));
        assert!(pids().contains(&me));
        if let Ok(path) = std::env::var("PATH") {
            assert_eq!(environ_var(me, "PATH"), Some(path));
        }
    }

    #[test]
    fn approuter_subcommands() {
        let table: [(&[&str], Option<&str>); 7] = [
            (&["/usr/bin/approuter", "sync"], Some("sync")),
            (
                &["/usr/bin/approuter-svscan", "--grace", "10", "/srv/s"],
                Some("svscan"),
            ),
            (
                &["/usr/bin/approuter-svlogd", "-tt", "/srv/l"],
                Some("svlogd"),
            ),
            (
                &["/x/release/approuter", "--root", "/srv/a b", "sync", "-v"],
                Some("sync"),
            ),
            (
                &["approuter", "--root", "/srv", "switch", "--force"],
                Some("switch"),
            ),
            (
                &["/usr/bin/flock", "/srv/run/approuter.lock", "sleep", "100"],
                None,
            ),
            (&["/usr/bin/approuter"], None),
        ];
        for (argv, want) in table {
            let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
            assert_eq!(approuter_subcommand(&argv).as_deref(), want, "{argv:?}");
        }
    }

    #[test]
    fn finds_the_listener_on_a_port() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let h = listeners(port);
        assert!(h.seen.iter().any(|h| h.pid == std::process::id()), "{h:?}");
        assert_eq!(h.unseen, 0);
        assert!(!port_is_free(port));
        assert!(listening_ports().contains(&port));
        drop(l);
        assert!(listeners(port).is_empty());
    }
}
