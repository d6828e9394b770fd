//! What /proc says of a process: enough to tell a leftover service from an unrelated process that reused its pid.

use std::fs;

/// /proc/PID/stat's fields after the command name: state (field 3) first. The name may contain
/// spaces and parentheses, so fields resume after the last ')'.
fn stat_fields(pid: impl std::fmt::Display) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// When `pid` started, in Unix seconds, from /proc/PID/stat's start time and /proc/stat's boot time.
pub fn start_time(pid: u32) -> Option<u64> {
    // Field 22 (starttime) is the 20th after the name.
    let ticks: u64 = stat_fields(pid)?.get(19)?.parse().ok()?;
    let boot: u64 = fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0)?;
    Some(boot + ticks / hz)
}

/// True when `pid` is alive, leads its own process group and started within a couple of seconds
/// of `since` (the status file's start time): then it is the run we recorded, not a stranger.
pub fn is_recorded_leader(pid: u32, since_unix: u64) -> bool {
    let Ok(p) = i32::try_from(pid) else {
        return false;
    };
    let pgid = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(p)));
    if pgid.map(|g| g.as_raw() != p).unwrap_or(true) {
        return false;
    }
    start_time(pid).is_some_and(|t| t.abs_diff(since_unix) <= 2)
}

/// True when some process of group `pgid` is still alive (not a zombie). A group left by a
/// supervisor that was killed is reaped by init, maybe late: its zombies must not keep the
/// service from starting again.
pub fn group_has_live_members(pgid: i32) -> bool {
    let Ok(procs) = fs::read_dir("/proc") else {
        return true;
    };
    procs.flatten().any(|p| {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            return false;
        };
        // state (field 3), ppid, pgrp (field 5)
        stat_fields(pid).is_some_and(|f| {
            f.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
                && !matches!(f[0].as_str(), "Z" | "X")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_recent() {
        let me = std::process::id();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let t = start_time(me).expect("own start time");
        assert!(t <= now + 1 && now - t < 600, "started {t}, now {now}");
        assert!(start_time(u32::MAX).is_none());
    }

    #[test]
    fn live_group_members() {
        let own = nix::unistd::getpgrp().as_raw();
        assert!(group_has_live_members(own));
        assert!(!group_has_live_members(i32::MAX));
    }
}
