//! What the `supervise/` files say of a service, and the line perpls's panel shows for it (`[+ +++ +++]  beta  uptime: ...`).

use serde::Serialize;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::supervise::servicedir;
use crate::supervise::status::{self, Probe, State, Status, Want};

impl Serialize for State {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// What one process (main or log) of a service is doing, as far as status files tell.
#[derive(Debug, Clone, Serialize)]
pub struct Proc {
    pub state: State,
    pub pid: Option<u32>,
    pub uptime_secs: Option<u64>,
    pub want: &'static str,
    pub paused: bool,
    pub once: bool,
    pub got_term: bool,
    pub normally_up: bool,
    /// In the state it wants to be in.
    pub as_wanted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub name: String,
    pub supervised: bool,
    pub main: Option<Proc>,
    pub log: Option<Proc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    pub fn healthy(&self) -> bool {
        self.supervised
            && self.error.is_none()
            && self.main.as_ref().is_some_and(|p| p.as_wanted)
            && self.log.as_ref().is_none_or(|p| p.as_wanted)
    }
}

/// How recent a note must be to be shown beside the panel.
const NOTE_FRESH: Duration = Duration::from_secs(600);

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A process's view from its status, `down` file and approuter's notes.
pub fn proc_view(st: &Status, normally_up: bool, extra: &status::Extra, now: SystemTime) -> Proc {
    let running = st.is_up();
    let want_up = st.want == Want::Up;
    // After `o` a running service shows "want down" without having been told to stop.
    let once = running && !want_up && !st.got_term;
    let as_wanted = if running { want_up || once } else { !want_up };
    let note = if extra.next_start > unix(now) && !running {
        Some(format!(
            "crash loop: {}, {} quick exits in a row, next start in {}s",
            extra.last_exit,
            extra.quick_exits,
            extra.next_start - unix(now)
        ))
    } else if !extra.message.is_empty()
        && unix(now).saturating_sub(extra.message_time) < NOTE_FRESH.as_secs()
    {
        Some(format!(
            "{} ({}s ago)",
            extra.message,
            unix(now).saturating_sub(extra.message_time)
        ))
    } else {
        None
    };
    Proc {
        state: st.state,
        pid: (st.pid != 0).then_some(st.pid),
        uptime_secs: running.then(|| st.age_secs(now)),
        want: if want_up { "up" } else { "down" },
        paused: st.paused,
        once,
        got_term: st.got_term,
        normally_up,
        as_wanted,
        note,
    }
}

fn read_proc(dir: &Path, now: SystemTime) -> Result<Proc, String> {
    let st = status::read(dir).map_err(|e| format!("{}/supervise/status: {e}", dir.display()))?;
    Ok(proc_view(
        &st,
        !servicedir::normally_down(dir),
        &status::read_extra(dir),
        now,
    ))
}

pub fn report(service_dir: &Path, name: &str, now: SystemTime) -> Report {
    let dir = service_dir.join(name);
    let mut r = Report {
        name: name.to_string(),
        supervised: false,
        main: None,
        log: None,
        error: None,
    };
    match status::probe(&dir) {
        Probe::Supervised => r.supervised = true,
        Probe::NotRunning | Probe::Missing => return r,
        Probe::Error(e) => {
            r.error = Some(e);
            return r;
        }
    }
    match read_proc(&dir, now) {
        Ok(p) => r.main = Some(p),
        Err(e) => r.error = Some(e),
    }
    if let Some(log_dir) = servicedir::log_of(&dir) {
        match read_proc(&log_dir, now) {
            Ok(p) => r.log = Some(p),
            Err(e) => r.error = r.error.or(Some(e)),
        }
    }
    r
}

fn triplet(p: Option<&Proc>) -> String {
    match p {
        None => "---".into(),
        Some(p) => {
            let running = p.state == State::Run && p.pid.is_some();
            let first = match (p.as_wanted, running) {
                (false, _) => '!',
                (true, true) => '+',
                (true, false) => '.',
            };
            let second = if p.once { 'o' } else { '+' };
            let third = if p.paused { 'p' } else { '+' };
            format!("{first}{second}{third}")
        }
    }
}

fn num(n: Option<u64>, unit: &str) -> String {
    n.map(|n| format!("{n}{unit}"))
        .unwrap_or_else(|| "-".into())
}

/// perpls's line: `[+ +++ +++]  beta       uptime: 159s/323s  pids: 35930/34714`.
pub fn panel_line(r: &Report, width: usize) -> String {
    let first = if r.error.is_some() {
        'E'
    } else if r.supervised {
        '+'
    } else {
        '-'
    };
    let (main, log) = if r.supervised {
        (triplet(r.main.as_ref()), triplet(r.log.as_ref()))
    } else {
        ("---".to_string(), "---".to_string())
    };
    let m = r.main.as_ref();
    let l = r.log.as_ref();
    let mut line = format!(
        "[{first} {main} {log}]  {:<width$}  uptime: {}/{}  pids: {}/{}",
        r.name,
        num(m.and_then(|p| p.uptime_secs), "s"),
        num(l.and_then(|p| p.uptime_secs), "s"),
        num(m.and_then(|p| p.pid.map(u64::from)), ""),
        num(l.and_then(|p| p.pid.map(u64::from)), ""),
    );
    if let Some(e) = &r.error {
        line.push_str(&format!("  error: {e}"));
    } else if !r.supervised {
        line.push_str("  not supervised");
    } else if let Some(note) = m.and_then(|p| p.note.as_ref()) {
        line.push_str(&format!("  {note}"));
    } else if let Some(note) = l.and_then(|p| p.note.as_ref()) {
        line.push_str(&format!("  log: {note}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::tai64::Tai64N;

    fn st(pid: u32, paused: bool, want: Want, term: bool, state: State, age: u64) -> Status {
        Status {
            since: Tai64N::from_system(*NOW - Duration::from_secs(age)),
            pid,
            paused,
            want,
            got_term: term,
            state,
        }
    }

    // One clock for the whole table, read a little after the statuses were made, as a real
    // status command reads them.
    static NOW: std::sync::LazyLock<SystemTime> = std::sync::LazyLock::new(SystemTime::now);

    fn line(main: Option<Status>, log: Option<Status>, supervised: bool) -> String {
        let now = *NOW + Duration::from_millis(10);
        let extra = status::Extra::default();
        let r = Report {
            name: "beta".into(),
            supervised,
            main: main.map(|s| proc_view(&s, true, &extra, now)),
            log: log.map(|s| proc_view(&s, true, &extra, now)),
            error: None,
        };
        panel_line(&r, 9)
    }

    #[test]
    fn panel_table() {
        let up = |pid, age| st(pid, false, Want::Up, false, State::Run, age);
        let table = [
            (
                line(Some(up(35930, 159)), Some(up(34714, 323)), true),
                "[+ +++ +++]  beta       uptime: 159s/323s  pids: 35930/34714",
            ),
            (
                line(Some(up(7, 1)), None, true),
                "[+ +++ ---]  beta       uptime: 1s/-  pids: 7/-",
            ),
            (
                line(
                    Some(st(0, false, Want::Down, false, State::Down, 5)),
                    Some(up(8, 9)),
                    true,
                ),
                "[+ .++ +++]  beta       uptime: -/9s  pids: -/8",
            ),
            (
                line(
                    Some(st(0, false, Want::Up, false, State::Down, 0)),
                    Some(up(8, 9)),
                    true,
                ),
                "[+ !++ +++]  beta       uptime: -/9s  pids: -/8",
            ),
            (
                line(
                    Some(st(5, false, Want::Down, false, State::Run, 3)),
                    Some(up(8, 9)),
                    true,
                ),
                "[+ +o+ +++]  beta       uptime: 3s/9s  pids: 5/8",
            ),
            (
                line(
                    Some(st(5, false, Want::Down, true, State::Run, 3)),
                    Some(up(8, 9)),
                    true,
                ),
                "[+ !++ +++]  beta       uptime: 3s/9s  pids: 5/8",
            ),
            (
                line(
                    Some(st(5, true, Want::Up, false, State::Run, 3)),
                    Some(up(8, 9)),
                    true,
                ),
                "[+ ++p +++]  beta       uptime: 3s/9s  pids: 5/8",
            ),
            (
                line(None, None, false),
                "[- --- ---]  beta       uptime: -/-  pids: -/-  not supervised",
            ),
        ];
        for (got, want) in table {
            assert_eq!(got, want);
        }
    }
}
