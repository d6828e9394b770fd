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
    /// Services no longer in the plan whose directories are still there, for the caller to take
    /// away once nginx no longer routes to them (see [`regenerate_plan`]).
    pub to_remove: Vec<String>,
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

/// Renders and checks everything, then writes what differs from disk; when the supervisor
/// runs, it and nginx are told (see [`regenerate_plan`]): a configuration written but not
/// loaded would otherwise stay unloaded, since the next sync finds nothing to write.
pub fn generate(layout: &Layout) -> Result<(Plan, Changes)> {
    let (config, plan) = load_plan(layout)?;
    let changes = regenerate_plan(layout, &config, &plan)?;
    refresh_picker(layout, &plan)?;
    Ok((plan, changes))
}

/// The files for a given plan (sync's, which may leave alternates out or move a port).
pub fn generate_plan(layout: &Layout, config: &Config, plan: &Plan) -> Result<Changes> {
    let mut changes = write_plan(layout, config, plan)?;
    for name in std::mem::take(&mut changes.to_remove) {
        // Still running, left by a supervisor that was killed: the directory stays for the next
        // one to take the run over, and the next sync removes it as usual (it stops the run).
        // Removed now, its processes would run on unsupervised, holding their port.
        if servicedir::left_running(&layout.service(&name)) {
            continue;
        }
        remove_service(&layout.service_dir(), &name)?;
        changes.removed.push(name);
    }
    Ok(changes)
}

/// Writes everything but the removal of services that went away.
fn write_plan(layout: &Layout, config: &Config, plan: &Plan) -> Result<Changes> {
    // The user instances run as must exist before run scripts name it.
    super::runas::resolve(&plan.settings)?;
    let mut host = Host::detect(config)?;
    host.systemd_unit = state::systemd_unit(layout).is_some();
    let key = state::preview_key(layout, false)?;
    let files = render::render(plan, layout, &host, &key)?;
    check_nginx(layout, plan, &host, &files)?;
    // nginx chooses production by the `active` link: it must exist before an nginx.conf that
    // reads it (an installation from before the link recorded its choice in state/active).
    state::save_active(layout, plan.active)?;
    apply(layout, plan, &files)
}

/// What generating the files for `plan` would change, without writing anything (for
/// `sync --dry-run`).
pub fn preview(layout: &Layout, config: &Config, plan: &Plan) -> Result<Changes> {
    super::runas::resolve(&plan.settings)?;
    let mut host = Host::detect(config)?;
    host.systemd_unit = state::systemd_unit(layout).is_some();
    // Without a key yet, any stands in: nginx.conf changes either way when one is made.
    let key = state::load_preview_key(layout)?.unwrap_or_else(|| "0".repeat(32));
    let files = render::render(plan, layout, &host, &key)?;
    check_nginx(layout, plan, &host, &files)?;
    let mut changes = Changes::default();
    let mut services: BTreeMap<&str, bool> = BTreeMap::new();
    for f in &files {
        let differs = !fsx::is_current(&f.path, &f.bytes, f.mode);
        match &f.owner {
            Owner::Service(svc) => *services.entry(svc).or_default() |= differs,
            Owner::Nginx => changes.nginx_changed |= differs,
            Owner::Crontab => changes.crontab_changed |= differs,
        }
    }
    for (svc, differs) in &services {
        if !layout.service(svc).is_dir() {
            changes.added.push(svc.to_string());
        } else if *differs {
            changes.updated.push(svc.to_string());
        }
    }
    for name in list_services(&layout.service_dir())? {
        if !services.contains_key(name.as_str()) {
            changes.removed.push(name);
        }
    }
    Ok(changes)
}

/// Generates the files for `plan`, then tells whoever runs what changed, in the order that
/// keeps every route working: svscan starts new services, nginx reloads (drained) to route to
/// them and no longer to the ones going away, and only then are those taken away (svscan stops
/// them).
pub fn regenerate_plan(layout: &Layout, config: &Config, plan: &Plan) -> Result<Changes> {
    if client::svscan(&layout.service_dir())?.is_none() {
        return generate_plan(layout, config, plan);
    }
    let mut changes = write_plan(layout, config, plan)?;
    if !changes.added.is_empty() {
        client::rescan(&layout.service_dir());
    }
    if changes.nginx_changed {
        reload_nginx(layout)?;
    }
    if !changes.to_remove.is_empty() {
        for name in std::mem::take(&mut changes.to_remove) {
            remove_service(&layout.service_dir(), &name)?;
            changes.removed.push(name);
        }
        client::rescan(&layout.service_dir());
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

/// Writes the testers' page anew (when there is one), as things run now: after generate,
/// after a start once everything runs, at the end of every sync. nginx reads it per request,
/// so nobody is told.
pub fn refresh_picker(layout: &Layout, plan: &Plan) -> Result<()> {
    if plan.settings.picker_path.is_none() {
        return Ok(());
    }
    let path = layout.picker_page();
    let bytes = render::picker_page(&picker_rows(layout, plan))?;
    if !fsx::is_current(&path, &bytes, 0o644) {
        fsx::write_atomic(&path, &bytes, 0o644)?;
    }
    Ok(())
}

/// How long the testers' page waits for an alternate's health path.
const PICKER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// What the testers' page shows of each alternate now.
fn picker_rows(layout: &Layout, plan: &Plan) -> Vec<render::PickerRow> {
    plan.alternates()
        .map(|(inst, _)| {
            let (branch, commit) = super::checkouts::describe(layout, inst);
            let service = layout.service(&inst.name);
            let up = crate::supervise::status::read(&service)
                .ok()
                .filter(|st| st.is_up());
            // One short GET of a running alternate's health path: this page informs testers,
            // and a sync with many alternates must not wait long on it (no /proc walk for a
            // foreign listener either: deploy decisions do that, not this page).
            let healthy = up.is_some()
                && crate::ext::http::get(
                    inst.port,
                    &plan.settings.health_path,
                    None,
                    PICKER_TIMEOUT,
                )
                .is_ok_and(|a| a.status == 200);
            render::PickerRow {
                name: inst.name.clone(),
                branch,
                commit: crate::ext::git::short_str(&commit),
                deployed: up.map_or_else(
                    || "not running".into(),
                    |st| crate::util::tai64::utc_string(st.since.unix_secs()),
                ),
                healthy,
            }
        })
        .collect()
}

fn check_nginx(layout: &Layout, plan: &Plan, host: &Host, files: &[OutFile]) -> Result<()> {
    let nginx_files: Vec<OutFile> = files
        .iter()
        .filter(|f| f.owner == Owner::Nginx)
        .cloned()
        .collect();
    nginx::check(&host.nginx_cmd, &nginx_files, &layout.nginx_dir())
        .map_err(|e| in_snippet(layout, plan, e))
}

/// An `nginx -t` error in an operator's snippet names the snippet and its line, not the file
/// the snippets are gathered in, and says that nothing was loaded.
fn in_snippet(layout: &Layout, plan: &Plan, e: anyhow::Error) -> anyhow::Error {
    let msg = format!("{e:#}");
    for (level, snippets) in [
        ("http", &plan.snippets.http),
        ("server", &plan.snippets.server),
    ] {
        let gathered = format!("{}:", layout.nginx_snippets(level).display());
        let Some(at) = msg.find(&gathered) else {
            continue;
        };
        let rest = &msg[at + gathered.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Some((path, line)) = digits
            .parse()
            .ok()
            .and_then(|n| render::snippet_line(snippets, n))
        else {
            continue;
        };
        return anyhow::anyhow!(
            "{}{}:{line}{}; fix or remove that snippet and run `approuter generate` (nothing was loaded: nginx runs the configuration it had)",
            &msg[..at],
            path.display(),
            &rest[digits.len()..]
        );
    }
    e
}

fn write_if_changed(f: &OutFile) -> Result<bool> {
    if let Some(parent) = f.path.parent() {
        fsx::ensure_dir(parent)?;
    }
    if fsx::is_current(&f.path, &f.bytes, f.mode) {
        return Ok(false);
    }
    fsx::write_atomic(&f.path, &f.bytes, f.mode)?;
    Ok(true)
}

fn apply(layout: &Layout, plan: &Plan, files: &[OutFile]) -> Result<Changes> {
    let service_dir = layout.service_dir();
    let mut changes = Changes::default();
    for dir in [
        layout.managed(),
        layout.var(),
        service_dir.clone(),
        layout.log_root(),
        layout.nginx_dir(),
    ] {
        fsx::ensure_dir(&dir)?;
    }
    // Locks and state: nobody else may open them (an flock taken by another user on a file it
    // could read would stop every command).
    fsx::ensure_private_dir(&layout.run_dir())?;
    fsx::ensure_private_dir(&layout.state_dir())?;
    for name in plan.service_names() {
        fsx::ensure_dir(&layout.log_dir(name))?;
    }
    // cron's logger for sync needs its directory (a logger never makes one at start).
    fsx::ensure_dir(&layout.sync_log())?;
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
        // svscan runs what is in a service directory as approuter's user: one someone else owns
        // (planted in a tree an old umask left open) could have its run script swapped.
        if let Ok(m) = fs::metadata(&dir) {
            use std::os::unix::fs::MetadataExt;
            if m.uid() != nix::unistd::geteuid().as_raw() {
                anyhow::bail!(
                    "{}: belongs to uid {}, who could change what runs in it; remove it and run this again",
                    dir.display(),
                    m.uid()
                );
            }
        }
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
            changes.to_remove.push(name);
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
