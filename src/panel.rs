//! `approuter status` in perpls's panel format (and as JSON), and `start`/`stop` of single services through their control FIFOs.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::generate::existing_services;
use crate::layout::Layout;
use crate::supervise::control;
use crate::supervise::status::{self, Probe, State, Status, Want};

/// What one process (main or log) of a service is doing, as far as status files tell.
#[derive(Debug, Clone, Serialize)]
pub struct Proc {
    pub state: &'static str,
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
    let running = st.state == State::Run && st.pid != 0;
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
        state: match st.state {
            State::Down => "down",
            State::Run => "run",
            State::Finish => "finish",
        },
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
    let st = match status::read(dir) {
        Ok(Ok(st)) => st,
        Ok(Err(e)) => return Err(format!("{}/supervise/status: {e}", dir.display())),
        Err(e) => return Err(format!("{}/supervise/status: {e}", dir.display())),
    };
    Ok(proc_view(
        &st,
        !dir.join("down").exists(),
        &status::read_extra(dir),
        now,
    ))
}

pub fn report(service_dir: &Path, name: &str, now: SystemTime) -> Report {
    let dir = service_dir.join(name);
    let log_dir = dir.join("log");
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
    if log_dir.is_dir() {
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
            let running = p.state == "run" && p.pid.is_some();
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

/// Names asked for, checked against the service directories; none means all.
pub fn select(layout: &Layout, names: &[String]) -> Result<Vec<String>> {
    let known = existing_services(&layout.service_dir())?;
    if names.is_empty() {
        return Ok(known);
    }
    for n in names {
        if !known.contains(n) {
            if known.is_empty() {
                bail!("unknown service `{n}`: there are no services yet; run `approuter generate` or `approuter start`");
            }
            bail!(
                "unknown service `{n}`; known services: {}",
                known.join(", ")
            );
        }
    }
    Ok(names.to_vec())
}

pub fn status_cmd(layout: &Layout, names: &[String], json: bool) -> Result<bool> {
    let names = select(layout, names)?;
    let now = SystemTime::now();
    let reports: Vec<Report> = names
        .iter()
        .map(|n| report(&layout.service_dir(), n, now))
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        let width = reports.iter().map(|r| r.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for r in &reports {
            out.push_str(&panel_line(r, width));
            out.push('\n');
        }
        print!("{out}");
    }
    Ok(reports.iter().all(Report::healthy))
}

/// Sends `bytes` to each service and waits until `done` holds for its status or `timeout` passes.
pub fn control_and_wait(
    layout: &Layout,
    names: &[String],
    bytes: &[u8],
    done: fn(&Status) -> bool,
    timeout: Duration,
) -> Result<bool> {
    let names = select(layout, names)?;
    if names.is_empty() {
        bail!("no service named; known services are listed by `approuter status`");
    }
    for n in &names {
        let dir = layout.service_dir().join(n);
        control::send(&dir, bytes).map_err(|e| control_error(n, &dir, e))?;
    }
    let deadline = Instant::now() + timeout;
    let mut all_done = false;
    while !all_done {
        all_done = names.iter().all(|n| {
            status::read(&layout.service_dir().join(n))
                .ok()
                .and_then(Result::ok)
                .is_some_and(|st| done(&st))
        });
        if all_done || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    status_cmd(layout, &names, false).context("reading status")?;
    Ok(all_done)
}

/// Why a control byte could not be written, said so the operator knows what to do.
fn control_error(name: &str, dir: &Path, e: std::io::Error) -> anyhow::Error {
    use std::io::ErrorKind;
    let supervised = status::probe(dir) == Probe::Supervised;
    match e.kind() {
        ErrorKind::NotFound if supervised => anyhow::anyhow!(
            "{name}: supervise/control is missing; svscan recreates it within a minute, or at once on SIGHUP (kill -HUP its pid)"
        ),
        ErrorKind::PermissionDenied => anyhow::anyhow!(
            "{name}: permission denied on {}/supervise/control; only the user approuter runs as may control services",
            dir.display()
        ),
        _ if e.raw_os_error() == Some(nix::libc::ENXIO) || e.kind() == ErrorKind::NotFound => {
            anyhow::anyhow!("{name}: not supervised (is approuter running? `approuter start` starts it)")
        }
        _ => anyhow::Error::new(e).context(format!("{name}: cannot write to supervise/control")),
    }
}

pub fn is_up(st: &Status) -> bool {
    st.pid != 0 && st.state == State::Run
}

pub fn is_down(st: &Status) -> bool {
    st.pid == 0 && st.state == State::Down
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tai64::Tai64N;

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
