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
    /// Seconds in its present state, up or down (perpls's uptime, which `-t` sorts by).
    pub age_secs: u64,
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

/// A note older than the running process (a past crash loop, the exits before it) goes once
/// that process has run this long.
const RAN_WELL: Duration = Duration::from_secs(10);

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
        && !(running
            && st.age_secs(now) >= RAN_WELL.as_secs()
            && extra.message_time < unix(now).saturating_sub(st.age_secs(now)))
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
        age_secs: st.age_secs(now),
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

/// One process's part of perpls's line: its three panel characters, and the uptime and pid
/// shown (`-` when not). perpls.c's `svstat_unpack`, with runit's status in place of perpd's:
/// perp's "wants down" is runit's want down unless the process runs once (`o` sets runit's
/// want to down without stopping it), and perp's "reset" is runit's `finish`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    pub panel: [char; 3],
    pub uptime: Option<u64>,
    pub pid: Option<u32>,
}

pub fn shown(p: Option<&Proc>) -> Shown {
    let Some(p) = p else {
        return Shown {
            panel: ['-'; 3],
            uptime: None,
            pid: None,
        };
    };
    let pid = p.pid.unwrap_or(0);
    let running = pid != 0;
    let wants_down = p.want == "down" && !p.once;
    let c = if running { '+' } else { '.' };
    let mut panel = [c; 3];
    if running == wants_down {
        panel[0] = '!';
    }
    if running {
        let resetting = p.state == State::Finish;
        if p.once {
            panel[1] = 'o';
        }
        if p.paused {
            panel[2] = 'p';
        }
        if resetting {
            panel[2] = 'r';
        }
        // Up for less than a second is not up yet: a crash loop looks down, not flickering.
        if p.age_secs < 1 && !resetting {
            panel = ['!', '.', '.'];
        }
    }
    let shows = matches!(panel[1], '+' | 'o');
    Shown {
        panel,
        uptime: shows.then_some(p.age_secs),
        pid: shows.then_some(pid),
    }
}

/// perpls's color capabilities, in its order: `df` default, `na` not active, `an` active
/// normal, `ar` resetting, `ap` paused, `ad` down, `wu` wants up, `wd` wants down, `er` error,
/// `ex` exception.
pub const CAPS: [&str; 10] = ["df", "na", "an", "ar", "ap", "ad", "wu", "wd", "er", "ex"];

/// perpls's built-in table, used with `-G` when `PERPLS_COLORS` is unset or empty.
pub const DEFAULT_COLORS: &str =
    "df=00:na=00:an=01:ar=01;33:ap=01;33:ad=01;34:wu=01;33:wd=01;33:er=01;31:ex=01;31";

/// The attribute for each capability from a `PERPLS_COLORS` value, as perpls's `captab_init`
/// reads it: a key missing (or with an attribute of 15 bytes or more) gets `df`'s, and `df`
/// missing is `0`.
pub fn color_table(db: &str) -> [String; 10] {
    // perpls.c's captab_lookup: a key runs to the next `=` (across any `:`), its attribute to
    // the next `:`; so `x:an=32` has the key `x:an`, which is no capability.
    let lookup = |key: &str| -> Option<&str> {
        let mut rest = db;
        while let Some(eq) = rest.find('=') {
            let (k, after) = (&rest[..eq], &rest[eq + 1..]);
            let end = after.find(':').unwrap_or(after.len());
            if k == key {
                return Some(&after[..end]).filter(|a| a.len() < 15);
            }
            rest = after.get(end + 1..).unwrap_or("");
        }
        None
    };
    let df = lookup("df").unwrap_or("0").to_string();
    CAPS.map(|k| lookup(k).map(str::to_string).unwrap_or_else(|| df.clone()))
}

/// Which capability colors a line (perpls.c's `svstat_setcap`): an index into [`CAPS`].
fn capability(r: &Report) -> usize {
    let idx = |k: &str| CAPS.iter().position(|c| *c == k).unwrap_or(0);
    if r.error.is_some() {
        return idx("er");
    }
    if !r.supervised {
        return idx("na");
    }
    let main = shown(r.main.as_ref()).panel;
    let log = shown(r.log.as_ref()).panel;
    for t in [main, log] {
        if t[0] == '!' {
            return idx(if t[1] == '.' { "wu" } else { "wd" });
        }
    }
    if main[1] == '.' {
        return idx("ad");
    }
    match main[2] {
        'p' => idx("ap"),
        'r' => idx("ar"),
        _ => idx("an"),
    }
}

fn num(n: Option<u64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

/// perpls's line: `[+ +++ +++]  beta       uptime: 159s/323s  pids: 35930/34714`, the name
/// padded to `width` and colored with `colors` (a table from [`color_table`]) when given.
/// approuter's own note, if any, follows it after two spaces.
pub fn panel_line(r: &Report, width: usize, colors: Option<&[String; 10]>) -> String {
    let name = format!("{:<width$}", r.name);
    let name = match colors {
        Some(table) => format!("\x1b[00m\x1b[{}m{name}\x1b[00m", table[capability(r)]),
        None => name,
    };
    if let Some(e) = &r.error {
        return format!("[E --- ---]  {name}  error: {e}");
    }
    if !r.supervised {
        return format!("[- --- ---]  {name}  (service not activated)");
    }
    let m = shown(r.main.as_ref());
    let l = shown(r.log.as_ref());
    let t = |s: &Shown| s.panel.iter().collect::<String>();
    let mut line = format!(
        "[+ {} {}]  {name}  uptime: {}s/{}s  pids: {}/{}",
        t(&m),
        t(&l),
        num(m.uptime),
        num(l.uptime),
        num(m.pid.map(u64::from)),
        num(l.pid.map(u64::from)),
    );
    if let Some(note) = r.main.as_ref().and_then(|p| p.note.as_ref()) {
        line.push_str(&format!("  {note}"));
    } else if let Some(note) = r.log.as_ref().and_then(|p| p.note.as_ref()) {
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
        panel_line(&r, 9, None)
    }

    /// Every state perpls tells apart, with the line it prints (perpls.c, svstat_unpack).
    #[test]
    fn panel_table() {
        let up = |pid, age| st(pid, false, Want::Up, false, State::Run, age);
        let log = || Some(up(8, 9));
        let table = [
            (
                line(Some(up(35930, 159)), Some(up(34714, 323)), true),
                "[+ +++ +++]  beta       uptime: 159s/323s  pids: 35930/34714",
            ),
            (
                line(Some(up(7, 1)), None, true),
                "[+ +++ ---]  beta       uptime: 1s/-s  pids: 7/-",
            ),
            // Down as wanted.
            (
                line(
                    Some(st(0, false, Want::Down, false, State::Down, 5)),
                    log(),
                    true,
                ),
                "[+ ... +++]  beta       uptime: -s/9s  pids: -/8",
            ),
            // Wants up but down (a crash loop between starts).
            (
                line(
                    Some(st(0, false, Want::Up, false, State::Down, 0)),
                    log(),
                    true,
                ),
                "[+ !.. +++]  beta       uptime: -s/9s  pids: -/8",
            ),
            // Up for less than a second: not up yet.
            (
                line(Some(up(5, 0)), log(), true),
                "[+ !.. +++]  beta       uptime: -s/9s  pids: -/8",
            ),
            // Once: runit's want is down, perp's is not.
            (
                line(
                    Some(st(5, false, Want::Down, false, State::Run, 3)),
                    log(),
                    true,
                ),
                "[+ +o+ +++]  beta       uptime: 3s/9s  pids: 5/8",
            ),
            // Told down, still running: wants down but up.
            (
                line(
                    Some(st(5, false, Want::Down, true, State::Run, 3)),
                    log(),
                    true,
                ),
                "[+ !++ +++]  beta       uptime: 3s/9s  pids: 5/8",
            ),
            (
                line(
                    Some(st(5, true, Want::Up, false, State::Run, 3)),
                    log(),
                    true,
                ),
                "[+ ++p +++]  beta       uptime: 3s/9s  pids: 5/8",
            ),
            // Its finish script runs: perp's reset, shown even in its first second.
            (
                line(
                    Some(st(6, false, Want::Up, false, State::Finish, 0)),
                    log(),
                    true,
                ),
                "[+ ++r +++]  beta       uptime: 0s/9s  pids: 6/8",
            ),
            (
                line(None, None, false),
                "[- --- ---]  beta       (service not activated)",
            ),
        ];
        for (got, want) in table {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn colors_as_perpls_reads_them() {
        let t = color_table(DEFAULT_COLORS);
        assert_eq!(t[2], "01"); // an
        assert_eq!(t[5], "01;34"); // ad
        let t = color_table("an=32:df=7:wu=0123456789abcdef");
        assert_eq!(t[2], "32");
        assert_eq!(t[6], "7", "too long an attribute gets df's");
        assert_eq!(t[5], "7");
        assert_eq!(color_table("")[2], "0");
        assert_eq!(
            color_table("x:an=32")[2],
            "0",
            "perpls reads the key `x:an`"
        );
        let r = Report {
            name: "b".into(),
            supervised: false,
            main: None,
            log: None,
            error: None,
        };
        assert_eq!(
            panel_line(&r, 3, Some(&color_table(DEFAULT_COLORS))),
            "[- --- ---]  \x1b[00m\x1b[00mb  \x1b[00m  (service not activated)"
        );
    }
}
