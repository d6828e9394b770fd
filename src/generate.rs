//! `approuter generate`: configuration to plan to files under `managed/var`, checked whole before anything is written.

use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::config::Config;
use crate::fsx;
use crate::layout::Layout;
use crate::nginx;
use crate::plan::Plan;
use crate::render::{self, Host, OutFile};
use crate::state;

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

impl Host {
    /// Finds this binary and nginx on this machine.
    pub fn detect(config: &Config) -> Result<Host> {
        let exe = std::env::current_exe()
            .and_then(fs::canonicalize)
            .context("finding the approuter binary's own path")?;
        let bin = nginx::locate(config.settings.nginx.as_deref())?;
        let version = nginx::version(&bin)?;
        Ok(Host {
            exe,
            nginx_cmd: nginx::base_command(&bin, version),
            worker_user: nginx::worker_user(),
        })
    }
}

/// Loads the configuration and remembered state and makes the plan.
pub fn load_plan(layout: &Layout) -> Result<(Config, Plan)> {
    let config = Config::load(layout)?;
    let ports = state::load_ports(layout)?;
    let active = state::load_active(layout)?;
    let plan = Plan::new(&config, &ports, active)?;
    Ok((config, plan))
}

/// Renders and checks everything, then writes what differs from disk.
pub fn generate(layout: &Layout) -> Result<(Plan, Changes)> {
    let (config, plan) = load_plan(layout)?;
    let host = Host::detect(&config)?;
    let files = render::render(&plan, layout, &host)?;
    let nginx_files: Vec<OutFile> = files
        .iter()
        .filter(|f| f.rel.starts_with("nginx"))
        .cloned()
        .collect();
    nginx::check(&host.nginx_cmd, &nginx_files)?;
    let changes = apply(layout, &plan, &files)?;
    Ok((plan, changes))
}

/// Renders the nginx configuration for `plan`, checks it with `nginx -t`, and writes the files
/// that differ. Returns whether anything was written.
pub fn apply_nginx(layout: &Layout, plan: &Plan, host: &Host) -> Result<bool> {
    let files = render::render_nginx(plan, host)?;
    nginx::check(&host.nginx_cmd, &files)?;
    let mut changed = false;
    for f in &files {
        let path = layout.var().join(&f.rel);
        if !fsx::is_current(&path, &f.bytes, f.mode) {
            fsx::write_atomic(&path, &f.bytes, f.mode)?;
            changed = true;
        }
    }
    Ok(changed)
}

/// The service a file belongs to, when it lies under `service/<name>/`.
fn service_of(rel: &Path) -> Option<String> {
    let mut parts = rel.components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(s)), Some(Component::Normal(name))) if s == "service" => {
            Some(name.to_string_lossy().into_owned())
        }
        _ => None,
    }
}

fn apply(layout: &Layout, plan: &Plan, files: &[OutFile]) -> Result<Changes> {
    let var = layout.var();
    let service_dir = layout.service_dir();
    let mut changes = Changes::default();

    for dir in [
        var.clone(),
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

    let mut by_service: BTreeMap<String, Vec<&OutFile>> = BTreeMap::new();
    for f in files {
        match service_of(&f.rel) {
            Some(svc) => by_service.entry(svc).or_default().push(f),
            None => {
                let path = var.join(&f.rel);
                if !fsx::is_current(&path, &f.bytes, f.mode) {
                    fsx::write_atomic(&path, &f.bytes, f.mode)?;
                    if f.rel.starts_with("nginx") {
                        changes.nginx_changed = true;
                    } else if f.rel == Path::new("crontab") {
                        changes.crontab_changed = true;
                    }
                }
            }
        }
    }

    for (svc, svc_files) in &by_service {
        let dir = service_dir.join(svc);
        if dir.is_dir() {
            let mut changed = false;
            for f in svc_files {
                let path = var.join(&f.rel);
                if !fsx::is_current(&path, &f.bytes, f.mode) {
                    fsx::ensure_dir(path.parent().expect("file under service/"))?;
                    fsx::write_atomic(&path, &f.bytes, f.mode)?;
                    changed = true;
                }
            }
            if changed {
                changes.updated.push(svc.clone());
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
                let rel_in_svc: PathBuf = f.rel.components().skip(2).collect();
                let path = staging.join(rel_in_svc);
                fsx::ensure_dir(path.parent().expect("file under staging"))?;
                fsx::write_atomic(&path, &f.bytes, f.mode)?;
            }
            fs::rename(&staging, &dir)
                .with_context(|| format!("{}: cannot move into place", dir.display()))?;
            changes.added.push(svc.clone());
        }
    }

    let wanted: BTreeSet<&str> = by_service.keys().map(String::as_str).collect();
    for name in existing_services(&service_dir)? {
        if !wanted.contains(name.as_str()) {
            let dir = service_dir.join(&name);
            let doomed = service_dir.join(format!(".{name}.removed"));
            let _ = fs::remove_dir_all(&doomed);
            fs::rename(&dir, &doomed)
                .with_context(|| format!("{}: cannot remove", dir.display()))?;
            fs::remove_dir_all(&doomed)
                .with_context(|| format!("{}: cannot remove", doomed.display()))?;
            changes.removed.push(name);
        }
    }
    Ok(changes)
}

/// The service directories svscan would supervise: not hidden, a directory.
pub fn existing_services(service_dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(service_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot list", service_dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: cannot list", service_dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.path().is_dir() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}
