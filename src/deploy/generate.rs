//! `generate`: configuration to plan to files under `managed/var`, checked whole with `nginx -t` before anything is written, and whoever runs them told of what changed.

use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::load_plan;
use crate::config::Config;
use crate::ext::nginx;
use crate::layout::Layout;
use crate::plan::{Plan, NGINX};
use crate::render::{self, Host, OutFile, Owner};
use crate::state;
use crate::supervise::{client, servicedir};
use crate::util::file as fsx;

/// What a generate run changed, for the summary and for whoever must react (svscan, nginx).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changes {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub nginx_changed: bool,
    pub crontab_changed: bool,
}

impl Changes {
    pub fn summary(&self, plan: &Plan) -> Vec<String> {
        let mut lines = Vec::new();
        for name in &self.added {
            match plan.instance(name) {
                Some(i) => lines.push(format!("added service {name} (port {})", i.port)),
                None => lines.push(format!("added service {name}")),
            }
        }
        lines.extend(self.updated.iter().map(|n| format!("updated service {n}")));
        lines.extend(self.removed.iter().map(|n| format!("removed service {n}")));
        if self.nginx_changed {
            lines.push("updated nginx configuration".into());
        }
        if self.crontab_changed {
            lines.push("updated crontab".into());
        }
        if lines.is_empty() {
            lines.push("nothing changed".into());
        }
        lines
    }
}

/// Renders and checks everything, then writes what differs from disk.
pub fn generate(layout: &Layout) -> Result<(Plan, Changes)> {
    let (config, plan) = load_plan(layout)?;
    let changes = generate_plan(layout, &config, &plan)?;
    Ok((plan, changes))
}

/// The files for a given plan (sync's, which may leave alternates out or move a port).
pub fn generate_plan(layout: &Layout, config: &Config, plan: &Plan) -> Result<Changes> {
    // The user instances run as must exist before run scripts name it.
    super::runas::resolve(&plan.settings)?;
    let host = Host::detect(config)?;
    let files = render::render(plan, layout, &host)?;
    check_nginx(layout, &host, &files)?;
    apply(layout, plan, &files)
}

/// Generates the files for `plan`, then tells whoever runs what changed: svscan rescans at once,
/// nginx reloads (drained).
pub fn regenerate_plan(layout: &Layout, config: &Config, plan: &Plan) -> Result<Changes> {
    let changes = generate_plan(layout, config, plan)?;
    if client::svscan_pid(&layout.service_dir()).is_some() {
        if !changes.added.is_empty() || !changes.removed.is_empty() {
            client::rescan(&layout.service_dir());
        }
        if changes.nginx_changed {
            reload_nginx(layout)?;
        }
    }
    Ok(changes)
}

/// Reloads the supervised nginx, its clients drained first (see [`nginx::reload`]).
pub fn reload_nginx(layout: &Layout) -> Result<bool> {
    nginx::reload(
        &layout.service(NGINX),
        &layout.log_current(NGINX),
        &layout.nginx_draining(),
    )
}

fn check_nginx(layout: &Layout, host: &Host, files: &[OutFile]) -> Result<()> {
    let nginx_files: Vec<OutFile> = files
        .iter()
        .filter(|f| f.owner == Owner::Nginx)
        .cloned()
        .collect();
    nginx::check(&host.nginx_cmd, &nginx_files, &layout.nginx_dir())
}

fn write_if_changed(f: &OutFile) -> Result<bool> {
    if fsx::is_current(&f.path, &f.bytes, f.mode) {
        return Ok(false);
    }
    if let Some(parent) = f.path.parent() {
        fsx::ensure_dir(parent)?;
    }
    fsx::write_atomic(&f.path, &f.bytes, f.mode)?;
    Ok(true)
}

fn apply(layout: &Layout, plan: &Plan, files: &[OutFile]) -> Result<Changes> {
    let service_dir = layout.service_dir();
    let mut changes = Changes::default();
    for dir in [
        layout.var(),
        service_dir.clone(),
        layout.log_root(),
        layout.nginx_dir(),
        layout.run_dir(),
        layout.state_dir(),
    ] {
        fsx::ensure_dir(&dir)?;
    }
    for name in plan.service_names() {
        fsx::ensure_dir(&layout.log_dir(name))?;
    }
    state::save_ports(layout, &plan.ports)?;

    let mut by_service: BTreeMap<&str, Vec<&OutFile>> = BTreeMap::new();
    for f in files {
        match &f.owner {
            Owner::Service(svc) => by_service.entry(svc).or_default().push(f),
            Owner::Nginx => changes.nginx_changed |= write_if_changed(f)?,
            Owner::Crontab => changes.crontab_changed |= write_if_changed(f)?,
        }
    }

    for (&svc, svc_files) in &by_service {
        let dir = layout.service(svc);
        if dir.is_dir() {
            let mut changed = false;
            for f in svc_files {
                changed |= write_if_changed(f)?;
            }
            if changed {
                changes.updated.push(svc.to_string());
            }
        } else {
            // Built under a dot name the scanner ignores, then renamed in whole, so svscan
            // never sees a service without its run or its log.
            let staging = service_dir.join(format!(".{svc}.new"));
            if staging.exists() {
                fs::remove_dir_all(&staging)
                    .with_context(|| format!("{}: cannot remove leftover", staging.display()))?;
            }
            for f in svc_files {
                let inside: PathBuf = f.path.strip_prefix(&dir).unwrap_or(&f.path).into();
                write_if_changed(&OutFile {
                    path: staging.join(inside),
                    ..(*f).clone()
                })?;
            }
            fs::rename(&staging, &dir)
                .with_context(|| format!("{}: cannot move into place", dir.display()))?;
            changes.added.push(svc.to_string());
        }
    }

    let wanted: BTreeSet<&str> = by_service.keys().copied().collect();
    for name in list_services(&service_dir)? {
        if !wanted.contains(name.as_str()) {
            remove_service(&service_dir, &name)?;
            changes.removed.push(name);
        }
    }
    Ok(changes)
}

/// Takes a service directory away in one step (svscan sees it gone, never half-removed).
fn remove_service(service_dir: &Path, name: &str) -> Result<()> {
    let dir = service_dir.join(name);
    let doomed = service_dir.join(format!(".{name}.removed"));
    let _ = fs::remove_dir_all(&doomed);
    fs::rename(&dir, &doomed).with_context(|| format!("{}: cannot remove", dir.display()))?;
    fs::remove_dir_all(&doomed).with_context(|| format!("{}: cannot remove", doomed.display()))
}

/// The service directories present now.
pub fn list_services(service_dir: &Path) -> Result<Vec<String>> {
    servicedir::list(service_dir).with_context(|| format!("{}: cannot list", service_dir.display()))
}
