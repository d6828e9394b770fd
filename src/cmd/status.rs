//! `approuter status`: perpls's panel for each service, `-l` with each instance's branch, commit, port and role, `--json` for the same as data.

use anyhow::Result;
use serde::Serialize;
use std::process::ExitCode;
use std::time::SystemTime;

use super::{exit_if, select};
use crate::deploy::listener::{self, Listening};
use crate::deploy::{checkouts, load_plan};
use crate::ext::git;
use crate::layout::Layout;
use crate::panel::{self, Report};
use crate::plan::{Plan, Role, NGINX};
use crate::state;
use crate::util::tai64;

/// How the panel is shown: perpls's options.
#[derive(Debug, Clone, Copy, Default)]
pub struct View {
    /// `-t`: youngest first (by uptime of the main process), then by name.
    pub by_uptime: bool,
    /// `-r`: the order reversed.
    pub reverse: bool,
    /// `-G` (Some(true)) or `-g` (Some(false)); by default colors only when `PERPLS_COLORS` is
    /// set and stdout is a terminal.
    pub colors: Option<bool>,
}

impl View {
    /// The color table to use, as perpls decides it.
    fn color_table(&self) -> Option<[String; 10]> {
        use std::io::IsTerminal;
        let env = std::env::var("PERPLS_COLORS")
            .ok()
            .filter(|v| !v.is_empty());
        match self.colors {
            Some(false) => None,
            Some(true) => Some(panel::color_table(
                env.as_deref().unwrap_or(panel::DEFAULT_COLORS),
            )),
            None => env
                .filter(|_| std::io::stdout().is_terminal())
                .map(|db| panel::color_table(&db)),
        }
    }
}

pub fn run(
    layout: &Layout,
    names: &[String],
    long: bool,
    json: bool,
    view: &View,
) -> Result<ExitCode> {
    let healthy = if long {
        long_panel(layout, names, json, view)?
    } else {
        panel_with(layout, names, json, view)?
    };
    Ok(exit_if(healthy))
}

/// The reports for `names` (every service directory, by name, when empty), in perpls's order.
/// A name with no service directory is perpls's error line, not a refusal.
fn reports(layout: &Layout, names: &[String], view: &View) -> Result<Vec<Report>> {
    let known = select(layout, &[])?;
    let names = if names.is_empty() {
        known.clone()
    } else {
        names.to_vec()
    };
    let now = SystemTime::now();
    let mut reports: Vec<Report> = names
        .iter()
        .map(|n| {
            if known.contains(n) {
                panel::report(&layout.service_dir(), n, now)
            } else {
                Report {
                    name: n.clone(),
                    supervised: false,
                    main: None,
                    log: None,
                    error: Some("failure stat() on service directory [ENOENT]".into()),
                }
            }
        })
        .collect();
    if view.by_uptime {
        let age = |r: &Report| r.main.as_ref().map_or(0, |p| p.age_secs);
        reports.sort_by(|a, b| age(a).cmp(&age(b)).then_with(|| a.name.cmp(&b.name)));
    }
    if view.reverse {
        reports.reverse();
    }
    Ok(reports)
}

fn width(reports: &[Report]) -> usize {
    reports.iter().map(|r| r.name.len()).max().unwrap_or(0)
}

/// Prints the panel (or JSON) for `names` (all when empty). True when every service is
/// supervised and as it wants to be.
pub fn panel(layout: &Layout, names: &[String], json: bool) -> Result<bool> {
    panel_with(layout, names, json, &View::default())
}

/// Waits (a second at most) until every service (and log) of `names` that runs has run a
/// second: perpls shows a younger process as not up yet (`!..`), and a command that has just
/// started services shows them up.
pub fn settle(layout: &Layout, names: &[String]) {
    use crate::supervise::servicedir;
    use crate::supervise::status as st;
    let names = select(layout, names).unwrap_or_default();
    let young = || {
        let now = SystemTime::now();
        names.iter().any(|n| {
            let dir = layout.service(n);
            std::iter::once(Some(dir.clone()))
                .chain(std::iter::once(servicedir::log_of(&dir)))
                .flatten()
                .any(|d| st::read(&d).is_ok_and(|s| s.is_up() && s.age_secs(now) < 1))
        })
    };
    crate::util::poll::holds(
        std::time::Duration::from_millis(1100),
        std::time::Duration::from_millis(20),
        || !young(),
    );
}

fn panel_with(layout: &Layout, names: &[String], json: bool, view: &View) -> Result<bool> {
    let reports = reports(layout, names, view)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        let width = width(&reports);
        let colors = view.color_table();
        let mut out = String::new();
        for r in &reports {
            out.push_str(&panel::panel_line(r, width, colors.as_ref()));
            out.push('\n');
        }
        print!("{out}");
    }
    Ok(reports.iter().all(Report::healthy))
}

/// What `-l` adds under a service: where an instance's code comes from and what it does.
#[derive(Debug, Default, Serialize)]
struct Detail {
    #[serde(skip_serializing_if = "Option::is_none")]
    branch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    /// Production instances: why sync will not deploy the commit this one runs on its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    held: Option<String>,
    /// Something other than the instance's own processes listens on its port.
    #[serde(skip_serializing_if = "Option::is_none")]
    foreign_listener: Option<String>,
    /// The last run of the release command in its checkout (`ok for 1a2b3c4 at ..., took 3.2s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    release: Option<String>,
}

impl Detail {
    fn of(layout: &Layout, plan: &Plan, held: &Held, name: &str) -> Detail {
        match plan.instance(name) {
            Some(inst) => {
                let (branch, commit) = checkouts::describe(layout, inst);
                let role = match inst.role {
                    Role::Prod(s) if s == plan.active => "active production",
                    Role::Prod(_) => "inactive production",
                    Role::Alternate { .. } => "alternate",
                };
                let held = match inst.role {
                    Role::Prod(_) => held.of(&commit),
                    Role::Alternate { .. } => None,
                };
                let foreign_listener = match listener::of(layout, &inst.name, inst.port) {
                    Listening::Foreign(who) => Some(who),
                    _ => None,
                };
                Detail {
                    branch: Some(branch),
                    commit: Some(commit),
                    port: Some(inst.port),
                    role: Some(role),
                    held,
                    foreign_listener,
                    release: state::load_release(layout, &inst.name).map(|r| r.describe()),
                }
            }
            None if name == NGINX => Detail {
                port: Some(plan.settings.listen_port),
                role: Some("router"),
                ..Detail::default()
            },
            None => Detail::default(),
        }
    }

    /// `branch main  commit 1a2b3c4  port 9051  role active production`.
    fn line(&self) -> String {
        let mut parts = Vec::new();
        if let Some(b) = &self.branch {
            parts.push(format!("branch {b}"));
        }
        if let Some(c) = &self.commit {
            parts.push(format!("commit {}", git::short_str(c)));
        }
        if let Some(p) = self.port {
            parts.push(format!("port {p}"));
        }
        if let Some(r) = self.role {
            parts.push(format!("role {r}"));
        }
        if let Some(h) = &self.held {
            parts.push(h.clone());
        }
        if let Some(r) = &self.release {
            parts.push(format!("release {r}"));
        }
        if let Some(w) = &self.foreign_listener {
            parts.push(format!("FOREIGN LISTENER on its port: {w}"));
        }
        parts.join("  ")
    }
}

/// What sync holds back from production: a commit rolled back from, a commit that failed.
struct Held {
    rolled_back: Option<state::Held>,
    failed: Option<String>,
}

impl Held {
    fn load(layout: &Layout) -> Result<Held> {
        Ok(Held {
            rolled_back: state::load_held(layout)?,
            failed: state::load_failed(layout)?.map(|f| f.commit),
        })
    }

    /// The note for an instance running `commit` (a full id, or `-` when unknown).
    fn of(&self, commit: &str) -> Option<String> {
        let is = |c: &str| commit.len() >= 7 && c.starts_with(commit);
        if let Some(h) = self.rolled_back.as_ref().filter(|h| is(&h.commit)) {
            return Some(format!(
                "rolled back at {}: sync holds production on the other instance (`approuter deploy` redeploys it)",
                tai64::utc_string(h.since)
            ));
        }
        self.failed.as_deref().filter(|c| is(c)).map(|_| {
            "failed its health check: sync does not retry it (`approuter deploy` does)".to_string()
        })
    }
}

#[derive(Serialize)]
struct LongReport {
    #[serde(flatten)]
    report: Report,
    detail: Detail,
}

fn long_panel(layout: &Layout, names: &[String], json: bool, view: &View) -> Result<bool> {
    let (_, plan) = load_plan(layout)?;
    let held = Held::load(layout)?;
    let reports = reports(layout, names, view)?;
    let colors = view.color_table();
    let mut healthy = reports.iter().all(Report::healthy);
    let width = width(&reports);
    let long: Vec<LongReport> = reports
        .into_iter()
        .map(|report| LongReport {
            detail: Detail::of(layout, &plan, &held, &report.name),
            report,
        })
        .collect();
    healthy &= long.iter().all(|r| r.detail.foreign_listener.is_none());
    if json {
        println!("{}", serde_json::to_string_pretty(&long)?);
    } else {
        for r in &long {
            println!("{}", panel::panel_line(&r.report, width, colors.as_ref()));
            let line = r.detail.line();
            if !line.is_empty() {
                println!("{:13}{line}", "");
            }
        }
        if let Some(h) = &held.rolled_back {
            let active = plan.active;
            let (_, on) = checkouts::describe(layout, plan.prod(active));
            println!(
                "production: held at {} on {}; {} rolled back at {} (sync will not deploy it again on its own; `approuter deploy` does)",
                git::short_str(&on),
                active.name(),
                git::short_str(&h.commit),
                tai64::utc_string(h.since)
            );
        }
        if let Some(note) = checkouts::root_note(&plan.settings) {
            println!("{note}");
        }
    }
    Ok(healthy)
}
