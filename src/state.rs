//! What approuter remembers between runs under `managed/var/state/`: alternate ports and the active production instance.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::fsx;
use crate::layout::Layout;

pub const PORTS: &str = "ports";
pub const ACTIVE: &str = "active";
/// A production commit that failed its health check, so later syncs do not redeploy it.
pub const FAILED: &str = "failed-commit";
/// Present while the environment is meant to run (`start` to `shutdown`): a sync that finds it
/// but no supervisor starts the supervisor again.
pub const RUNNING: &str = "running";

/// One of the two production instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Instance1,
    Instance2,
}

impl Slot {
    pub fn name(self) -> &'static str {
        match self {
            Slot::Instance1 => "instance1",
            Slot::Instance2 => "instance2",
        }
    }
    pub fn other(self) -> Slot {
        match self {
            Slot::Instance1 => Slot::Instance2,
            Slot::Instance2 => Slot::Instance1,
        }
    }
    pub fn index(self) -> usize {
        match self {
            Slot::Instance1 => 0,
            Slot::Instance2 => 1,
        }
    }
    pub fn parse(s: &str) -> Option<Slot> {
        match s {
            "instance1" => Some(Slot::Instance1),
            "instance2" => Some(Slot::Instance2),
            _ => None,
        }
    }
}

pub fn ports_path(layout: &Layout) -> PathBuf {
    layout.state_dir().join(PORTS)
}

pub fn active_path(layout: &Layout) -> PathBuf {
    layout.state_dir().join(ACTIVE)
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
    }
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

pub fn render_ports(ports: &BTreeMap<String, u16>) -> String {
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
    fsx::ensure_dir(&layout.state_dir())?;
    fsx::write_atomic(
        &active_path(layout),
        format!("{}\n", slot.name()).as_bytes(),
        0o644,
    )
}

pub fn load_failed(layout: &Layout) -> Result<Option<String>> {
    let path = layout.state_dir().join(FAILED);
    Ok(read_optional(&path)?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty()))
}

pub fn save_failed(layout: &Layout, commit: Option<&str>) -> Result<()> {
    let path = layout.state_dir().join(FAILED);
    match commit {
        Some(c) => {
            fsx::ensure_dir(&layout.state_dir())?;
            fsx::write_atomic(&path, format!("{c}\n").as_bytes(), 0o644)
        }
        None => fsx::remove_if_present(&path),
    }
}

pub fn meant_to_run(layout: &Layout) -> bool {
    layout.state_dir().join(RUNNING).exists()
}

pub fn set_meant_to_run(layout: &Layout, on: bool) -> Result<()> {
    let path = layout.state_dir().join(RUNNING);
    if on {
        fsx::ensure_dir(&layout.state_dir())?;
        fsx::write_atomic(&path, b"", 0o644)
    } else {
        fsx::remove_if_present(&path)
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
