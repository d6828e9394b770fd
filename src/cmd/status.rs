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

pub fn run(layout: &Layout, names: &[String], long: bool, json: bool) -> Result<ExitCode> {
    let healthy = if long {
        long_panel(layout, names, json)?
    } else {
        panel(layout, names, json)?
    };
    Ok(exit_if(healthy))
}

fn reports(layout: &Layout, names: &[String]) -> Result<Vec<Report>> {
    let names = select(layout, names)?;
    let now = SystemTime::now();
    Ok(names
        .iter()
        .map(|n| panel::report(&layout.service_dir(), n, now))
        .collect())
}

fn width(reports: &[Report]) -> usize {
    reports.iter().map(|r| r.name.len()).max().unwrap_or(0)
}

/// Prints the panel (or JSON) for `names` (all when empty). True when every service is
/// supervised and as it wants to be.
pub fn panel(layout: &Layout, names: &[String], json: bool) -> Result<bool> {
    let reports = reports(layout, names)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        let width = width(&reports);
        let mut out = String::new();
        for r in &reports {
            out.push_str(&panel::panel_line(r, width));
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
            parts.push(format!("commit {c}"));
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

    /// The note for an instance running `short_commit`.
    fn of(&self, short_commit: &str) -> Option<String> {
        let is = |c: &str| !short_commit.is_empty() && c.starts_with(short_commit);
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

fn long_panel(layout: &Layout, names: &[String], json: bool) -> Result<bool> {
    let (_, plan) = load_plan(layout)?;
    let held = Held::load(layout)?;
    let reports = reports(layout, names)?;
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
            println!("{}", panel::panel_line(&r.report, width));
            let line = r.detail.line();
            if !line.is_empty() {
                println!("{:13}{line}", "");
            }
        }
        if let Some(h) = &held.rolled_back {
            let active = plan.active;
            let (_, on) = checkouts::describe(layout, plan.prod(active));
            println!(
                "production: held at {on} on {}; {} rolled back at {} (sync will not deploy it again on its own; `approuter deploy` does)",
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
