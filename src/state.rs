//! What approuter remembers between runs: the ports in use, the active production instance (the symlink nginx itself reads), a failed commit, a rolled-back commit, whether it is meant to run. Every state file goes through here.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::layout::Layout;
use crate::plan::Slot;
use crate::util::file::{self as fsx, read_optional};

pub const PORTS: &str = "ports";
/// Where the active instance was recorded before it became nginx's own symlink; read once to
/// carry an older installation's choice over.
const LEGACY_ACTIVE: &str = "active";
/// A production commit that failed its health check, so later syncs do not redeploy it.
pub const FAILED: &str = "failed-commit";
/// A production commit `approuter switch` rolled back from, so sync does not deploy it again.
pub const HELD: &str = "rolled-back";
/// Present while the environment is meant to run (`start` to `shutdown`): a sync that finds it
/// but no supervisor starts the supervisor again.
pub const RUNNING: &str = "running";
/// The secret that opens the production instances to a browser through nginx (the inactive one
/// may run an older, unpatched version): part of their routing cookie's value.
pub const PREVIEW_KEY: &str = "preview-key";

fn ports_path(layout: &Layout) -> PathBuf {
    layout.state_file(PORTS)
}

/// Writes a state file whole, creating the state directory when needed.
fn save(layout: &Layout, name: &str, text: &str) -> Result<()> {
    fsx::ensure_private_dir(&layout.state_dir())?;
    let path = layout.state_file(name);
    if fsx::is_current(&path, text.as_bytes(), 0o600) {
        return Ok(());
    }
    fsx::write_atomic(&path, text.as_bytes(), 0o600)
}

/// The ports instances were last generated with: `name port` per line (alternates, and the
/// production instances, whose ports move one at a time when `prod_ports` changes).
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

/// Drops what was remembered of the production instances' ports: they start on `prod_ports`.
pub fn forget_prod_ports(layout: &Layout) -> Result<()> {
    let mut ports = load_ports(layout)?;
    let before = ports.len();
    ports.retain(|name, _| Slot::parse(name).is_none());
    if ports.len() != before {
        save_ports(layout, &ports)?;
    }
    Ok(())
}

fn render_ports(ports: &BTreeMap<String, u16>) -> String {
    let mut out =
        String::from("# Instance ports, kept stable by approuter. Generated; do not edit.\n");
    for (name, port) in ports {
        out.push_str(&format!("{name} {port}\n"));
    }
    out
}

/// The active production instance: where `managed/var/nginx/active` points (`slots/instance2`),
/// instance1 when it points nowhere yet. nginx reads the same link on every request, so what
/// approuter records and what nginx does cannot differ.
pub fn load_active(layout: &Layout) -> Result<Slot> {
    let link = layout.nginx_active();
    match std::fs::read_link(&link) {
        Ok(target) => target
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(Slot::parse)
            .with_context(|| {
                format!(
                    "{}: points to {}, not to slots/instance1 or slots/instance2; point it to one of them (ln -sfn slots/instance1 {0})",
                    link.display(),
                    target.display()
                )
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let legacy = layout.state_file(LEGACY_ACTIVE);
            match read_optional(&legacy)? {
                None => Ok(Slot::Instance1),
                Some(text) => Slot::parse(text.trim()).with_context(|| {
                    format!(
                        "{}: expected `instance1` or `instance2`, found {:?}; write the active instance's name",
                        legacy.display(),
                        text.trim()
                    )
                }),
            }
        }
        Err(e) => Err(e).with_context(|| format!("{}: cannot read", link.display())),
    }
}

/// Makes `slot` the active production instance: one rename of the `active` symlink, which nginx
/// follows from its next request on.
pub fn save_active(layout: &Layout, slot: Slot) -> Result<()> {
    for s in Slot::BOTH {
        // slots/instanceN/instanceN: the file nginx tests through the link. Checked every time:
        // whoever could remove it would choose production's instance.
        let dir = layout.nginx_slot(s.name());
        if let Some(slots) = dir.parent() {
            fsx::ensure_dir(slots)?;
        }
        // A real directory of approuter's user: a symlink to the other slot (planted in an old
        // world-writable tree) would make the marker of one the marker of the other.
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            !m.is_dir() || m.uid() != nix::unistd::geteuid().as_raw()
        }) {
            std::fs::remove_file(&dir)
                .or_else(|_| std::fs::remove_dir_all(&dir))
                .with_context(|| format!("{}: cannot replace it", dir.display()))?;
        }
        fsx::ensure_dir(&dir)?;
        let marker = dir.join(s.name());
        if !fsx::is_current(&marker, b"", 0o644) {
            fsx::write_atomic(&marker, b"", 0o644)?;
        }
        // The other instance's name in this slot would send production there.
        fsx::remove_if_present(&dir.join(s.other().name()))?;
    }
    let link = layout.nginx_active();
    let target = Path::new("slots").join(slot.name());
    if std::fs::read_link(&link).ok().as_deref() == Some(target.as_path()) {
        return Ok(());
    }
    let tmp = fsx::new_path(&link);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp)
        .and_then(|()| std::fs::rename(&tmp, &link))
        .with_context(|| {
            format!(
                "{}: cannot point it to {}",
                link.display(),
                target.display()
            )
        })?;
    fsx::remove_if_present(&layout.state_file(LEGACY_ACTIVE))
}

/// A production commit rolled back from by `approuter switch`, and when (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub commit: String,
    pub since: u64,
}

pub fn load_held(layout: &Layout) -> Result<Option<Held>> {
    let path = layout.state_file(HELD);
    let Some(text) = read_optional(&path)? else {
        return Ok(None);
    };
    let mut words = text.split_whitespace();
    match (words.next(), words.next().and_then(|t| t.parse().ok())) {
        (Some(commit), Some(since)) => Ok(Some(Held {
            commit: commit.to_string(),
            since,
        })),
        _ => bail!(
            "{}: expected `<commit> <unix time>`; delete it to release the hold",
            path.display()
        ),
    }
}

pub fn save_held(layout: &Layout, held: Option<&Held>) -> Result<()> {
    match held {
        Some(h) => save(layout, HELD, &format!("{} {}\n", h.commit, h.since)),
        None => fsx::remove_if_present(&layout.state_file(HELD)),
    }
}

/// A production commit that failed its health check, and the commit its instance was put back
/// on (so that a sync cut short before it did so can finish the job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub commit: String,
    pub restore: Option<git2::Oid>,
}

pub fn load_failed(layout: &Layout) -> Result<Option<Failed>> {
    let path = layout.state_file(FAILED);
    let Some(text) = read_optional(&path)? else {
        return Ok(None);
    };
    let mut words = text.split_whitespace();
    let Some(commit) = words.next() else {
        return Ok(None);
    };
    Ok(Some(Failed {
        commit: commit.to_string(),
        restore: words.next().and_then(|w| git2::Oid::from_str(w).ok()),
    }))
}

pub fn save_failed(layout: &Layout, failed: Option<&Failed>) -> Result<()> {
    match failed {
        Some(f) => save(
            layout,
            FAILED,
            &match f.restore {
                Some(r) => format!("{} {r}\n", f.commit),
                None => format!("{}\n", f.commit),
            },
        ),
        None => fsx::remove_if_present(&layout.state_file(FAILED)),
    }
}

/// The last run of the release command in an instance's checkout: written by the instance's
/// `instance-exec` (as root, before it becomes the instance's user), read by `status -l` and
/// `sync -v`, and consulted so that the release runs once per commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub commit: String,
    /// The command line that ran: another one runs again, for the same commit.
    pub command: String,
    /// Unix time it started.
    pub started: u64,
    pub secs: f64,
    /// `ok`, `exit 3`, `signal 9`, `timed out after 600s`.
    pub result: String,
}

impl Release {
    pub fn ok(&self) -> bool {
        self.result == "ok"
    }

    /// `ok for 1a2b3c4 at 2026-11-22 16:04:05 UTC, took 3.2s`.
    pub fn describe(&self) -> String {
        format!(
            "{} for {} at {}, took {:.1}s",
            self.result,
            &self.commit[..self.commit.len().min(7)],
            crate::util::tai64::utc_string(self.started),
            self.secs
        )
    }
}

fn release_file(name: &str) -> String {
    format!("release-{name}")
}

pub fn load_release(layout: &Layout, name: &str) -> Option<Release> {
    let text = read_optional(&layout.state_file(&release_file(name))).ok()??;
    let mut r = Release {
        commit: String::new(),
        command: String::new(),
        started: 0,
        secs: 0.0,
        result: String::new(),
    };
    for line in text.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "commit" => r.commit = value.to_string(),
            "command" => r.command = value.to_string(),
            "started" => r.started = value.parse().unwrap_or(0),
            "secs" => r.secs = value.parse().unwrap_or(0.0),
            "result" => r.result = value.to_string(),
            _ => {}
        }
    }
    (!r.commit.is_empty()).then_some(r)
}

pub fn save_release(layout: &Layout, name: &str, r: &Release) -> Result<()> {
    save(
        layout,
        &release_file(name),
        &format!(
            "commit {}\ncommand {}\nstarted {}\nsecs {:.3}\nresult {}\n",
            r.commit,
            r.command.replace(['\n', '\r'], " "),
            r.started,
            r.secs,
            r.result
        ),
    )
}

/// Where `approuter systemd-unit --write` put this root's unit.
pub const SYSTEMD_UNIT: &str = "systemd-unit";

/// The systemd unit written for this root, if it is still there.
pub fn systemd_unit(layout: &Layout) -> Option<PathBuf> {
    let text = read_optional(&layout.state_file(SYSTEMD_UNIT)).ok()??;
    let path = PathBuf::from(text.trim());
    path.is_file().then_some(path)
}

pub fn save_systemd_unit(layout: &Layout, unit: &Path) -> Result<()> {
    save(layout, SYSTEMD_UNIT, &format!("{}\n", unit.display()))
}

/// The preview key, if one was made.
pub fn load_preview_key(layout: &Layout) -> Result<Option<String>> {
    let text = read_optional(&layout.state_file(PREVIEW_KEY))?;
    Ok(text
        .map(|t| t.trim().to_string())
        .filter(|k| k.len() == 32 && k.bytes().all(|b| b.is_ascii_hexdigit())))
}

/// The preview key, made (128 random bits, in hex) the first time it is asked for, or anew
/// with `renew`.
pub fn preview_key(layout: &Layout, renew: bool) -> Result<String> {
    if !renew {
        if let Some(key) = load_preview_key(layout)? {
            return Ok(key);
        }
    }
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").context("opening /dev/urandom")?,
        &mut bytes,
    )
    .context("reading /dev/urandom")?;
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    save(layout, PREVIEW_KEY, &format!("{key}\n"))?;
    Ok(key)
}

/// The routing cookie's value that sends a request to production instance `slot`.
pub fn preview_cookie(slot: Slot, key: &str) -> String {
    format!("{}.{key}", slot.name())
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
