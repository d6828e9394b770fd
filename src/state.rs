//! What approuter remembers between runs under `managed/var/state/`: alternate ports, the active production instance, a failed commit, whether it is meant to run. Every state file goes through here.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::layout::Layout;
use crate::plan::Slot;
use crate::util::file::{self as fsx, read_optional};

pub const PORTS: &str = "ports";
pub const ACTIVE: &str = "active";
/// A production commit that failed its health check, so later syncs do not redeploy it.
pub const FAILED: &str = "failed-commit";
/// Present while the environment is meant to run (`start` to `shutdown`): a sync that finds it
/// but no supervisor starts the supervisor again.
pub const RUNNING: &str = "running";

fn ports_path(layout: &Layout) -> PathBuf {
    layout.state_file(PORTS)
}

fn active_path(layout: &Layout) -> PathBuf {
    layout.state_file(ACTIVE)
}

/// Writes a state file whole, creating the state directory when needed.
fn save(layout: &Layout, name: &str, text: &str) -> Result<()> {
    fsx::ensure_dir(&layout.state_dir())?;
    let path = layout.state_file(name);
    if fsx::is_current(&path, text.as_bytes(), 0o644) {
        return Ok(());
    }
    fsx::write_atomic(&path, text.as_bytes(), 0o644)
}

/// The alternate port allocation: `name port` per line.
pub fn load_ports(layout: &Layout) -> Result<BTreeMap<String, u16>> {
    let path = ports_path(layout);
    let Some(text) = read_optional(&path)? else {
        return Ok(BTreeMap::new());
    };
    parse_ports(&path, &text)
}

pub fn parse_ports(path: &Path, text: &str) -> Result<BTreeMap<String, u16>> {
    let mut ports = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line
            .split_once(' ')
            .and_then(|(name, port)| Some((name, port.trim().parse::<u16>().ok()?)));
        match parsed {
            Some((name, port)) if port != 0 => {
                ports.insert(name.to_string(), port);
            }
            _ => bail!(
                "{}:{}: expected `<alternate> <port>`; fix or delete the line (approuter then allocates again)",
                path.display(),
                i + 1
            ),
        }
    }
    Ok(ports)
}

pub fn save_ports(layout: &Layout, ports: &BTreeMap<String, u16>) -> Result<()> {
    save(layout, PORTS, &render_ports(ports))
}

fn render_ports(ports: &BTreeMap<String, u16>) -> String {
    let mut out =
        String::from("# Alternate ports, kept stable by approuter. Generated; do not edit.\n");
    for (name, port) in ports {
        out.push_str(&format!("{name} {port}\n"));
    }
    out
}

/// The active production instance; instance1 until a switch says otherwise.
pub fn load_active(layout: &Layout) -> Result<Slot> {
    let path = active_path(layout);
    match read_optional(&path)? {
        None => Ok(Slot::Instance1),
        Some(text) => Slot::parse(text.trim()).with_context(|| {
            format!(
                "{}: expected `instance1` or `instance2`, found {:?}; write the active instance's name",
                path.display(),
                text.trim()
            )
        }),
    }
}

pub fn save_active(layout: &Layout, slot: Slot) -> Result<()> {
    save(layout, ACTIVE, &format!("{}\n", slot.name()))
}

pub fn load_failed(layout: &Layout) -> Result<Option<String>> {
    let path = layout.state_file(FAILED);
    Ok(read_optional(&path)?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty()))
}

pub fn save_failed(layout: &Layout, commit: Option<&str>) -> Result<()> {
    match commit {
        Some(c) => save(layout, FAILED, &format!("{c}\n")),
        None => fsx::remove_if_present(&layout.state_file(FAILED)),
    }
}

pub fn meant_to_run(layout: &Layout) -> bool {
    layout.state_file(RUNNING).exists()
}

pub fn set_meant_to_run(layout: &Layout, on: bool) -> Result<()> {
    if on {
        save(layout, RUNNING, "")
    } else {
        fsx::remove_if_present(&layout.state_file(RUNNING))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_round_trip() {
        let mut ports = BTreeMap::new();
        ports.insert("beta".to_string(), 10051);
        ports.insert("feature-x".to_string(), 10052);
        let text = render_ports(&ports);
        assert_eq!(parse_ports(Path::new("ports"), &text).unwrap(), ports);
        let err = parse_ports(Path::new("ports"), "beta x\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("ports:1:"), "{err}");
    }
}
