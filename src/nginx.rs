//! How approuter invokes nginx: finding the binary, the command line it runs under, and `nginx -t` on a candidate configuration.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::fsx;
use crate::render::OutFile;

/// Where nginx lives when it is not on PATH: cron's and sudo's PATH often lack the sbin directories.
const SBIN_DIRS: &[&str] = &[
    "/usr/sbin",
    "/usr/local/sbin",
    "/usr/local/nginx/sbin",
    "/sbin",
];

/// The nginx binary: the configured one, else the first on PATH or in the sbin directories.
pub fn locate(configured: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = configured {
        if is_executable(p) {
            return Ok(p.to_path_buf());
        }
        bail!(
            "nginx = {:?} in approuter.toml is not an executable file; fix the path or remove the key",
            p
        );
    }
    let path_dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_dirs)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join("nginx"))
        .find(|p| p.is_absolute() && is_executable(p))
        .context("nginx not found on PATH or in /usr/sbin; install it (apt-get install nginx-light) or set `nginx` in managed/etc/approuter.toml")
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// nginx's version, from `nginx -v` ("nginx version: nginx/1.22.1" on stderr).
pub fn version(bin: &Path) -> Result<(u32, u32, u32)> {
    let out = Command::new(bin)
        .arg("-v")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} -v", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stderr);
    parse_version(&text).with_context(|| {
        format!(
            "{} -v printed {:?}; is it nginx?",
            bin.display(),
            text.trim()
        )
    })
}

fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let v = text.split("nginx/").nth(1)?.split_whitespace().next()?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// The command line up to `-p`: `-e stderr` keeps nginx from opening its compiled-in error log
/// before it has read the configuration (nginx 1.19.5 and later understand it).
pub fn base_command(bin: &Path, version: (u32, u32, u32)) -> Vec<String> {
    let mut cmd = vec![bin.to_string_lossy().into_owned()];
    if version >= (1, 19, 5) {
        cmd.extend(["-e".into(), "stderr".into()]);
    }
    cmd
}

/// When nginx starts as root its workers must drop to an unprivileged user: `www-data` where it
/// exists (Debian, Ubuntu), else `nobody`, each with its own primary group.
pub fn worker_user() -> Option<String> {
    use nix::unistd::{Group, Uid, User};
    if !Uid::effective().is_root() {
        return None;
    }
    ["www-data", "nobody"].iter().find_map(|name| {
        let user = User::from_name(name).ok()??;
        let group = Group::from_gid(user.gid).ok()??;
        Some(format!("{} {}", user.name, group.name))
    })
}

/// Runs `nginx -t` on candidate configuration files (`nginx/nginx.conf`, `nginx/active.conf`)
/// in a scratch prefix, so nothing nginx reads is touched before the check passes.
pub fn check(base_cmd: &[String], files: &[OutFile]) -> Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix("approuter-nginx-check.")
        .tempdir()
        .context("creating a scratch directory for nginx -t")?;
    for f in files {
        let name = f.rel.file_name().context("nginx file without a name")?;
        fsx::write_atomic(&scratch.path().join(name), &f.bytes, f.mode)?;
    }
    let prefix = format!("{}/", scratch.path().display());
    let conf = scratch.path().join("nginx.conf");
    let (bin, opts) = base_cmd.split_first().context("empty nginx command")?;
    let out = Command::new(bin)
        .args(opts)
        .args(["-t", "-q", "-p", &prefix, "-c"])
        .arg(&conf)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {bin} -t"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr).replace(&prefix, "managed/var/nginx/");
    let first = text
        .lines()
        .find(|l| l.contains("[emerg]") || l.contains("[crit]"))
        .or_else(|| text.lines().next())
        .unwrap_or("no output");
    // Drop nginx's timestamp and pid; keep the message.
    let msg = first.split_once("] ").map(|(_, m)| m).unwrap_or(first);
    let msg = msg
        .split_once(": ")
        .filter(|(pid, _)| pid.contains('#'))
        .map(|(_, m)| m)
        .unwrap_or(msg);
    bail!("nginx -t refused the generated configuration: {msg}")
}

/// The worker processes of an nginx master, with their titles ("nginx: worker process", or
/// "... is shutting down" once they have stopped accepting).
fn workers(master: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(p.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(master) {
            let title = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            out.push((
                pid,
                String::from_utf8_lossy(&title)
                    .replace('\0', " ")
                    .trim()
                    .to_string(),
            ));
        }
    }
    out
}

fn accepting(title: &str) -> bool {
    title.contains("worker process") && !title.contains("shutting down")
}

/// Tells the supervised nginx (service directory `dir`) to reload, through its control FIFO, and
/// waits until every worker that ran the old configuration has stopped accepting connections:
/// from then on every new connection is served by the new configuration. False when nginx does
/// not run. Its configuration has already passed `nginx -t`.
pub fn reload(dir: &Path) -> Result<bool> {
    use crate::supervise::{control, status};
    if status::probe(dir) != status::Probe::Supervised {
        return Ok(false);
    }
    let master = match status::read(dir) {
        Ok(Ok(st)) if st.state == status::State::Run && st.pid != 0 => st.pid,
        _ => return Ok(false),
    };
    let old: Vec<u32> = workers(master)
        .into_iter()
        .filter(|(_, t)| accepting(t))
        .map(|(p, _)| p)
        .collect();
    control::send(dir, control::HUP).context("telling nginx to reload")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = workers(master);
        let old_accepting = now.iter().any(|(p, t)| old.contains(p) && accepting(t));
        let new_accepting = now.iter().any(|(p, t)| !old.contains(p) && accepting(t));
        if !old_accepting && new_accepting {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "nginx (pid {master}) did not take its new configuration within 10 s; see {}",
                dir.parent()
                    .and_then(Path::parent)
                    .map(|var| var.join("log/nginx/current").display().to_string())
                    .unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("nginx version: nginx/1.22.1\n"),
            Some((1, 22, 1))
        );
        assert_eq!(
            parse_version("nginx version: nginx/1.18.0 (Ubuntu)\n"),
            Some((1, 18, 0))
        );
        assert_eq!(parse_version("nginx version: openresty/1.21.4.1"), None);
        let old = base_command(Path::new("/usr/sbin/nginx"), (1, 18, 0));
        assert_eq!(old, ["/usr/sbin/nginx"]);
        let new = base_command(Path::new("/usr/sbin/nginx"), (1, 22, 1));
        assert_eq!(new, ["/usr/sbin/nginx", "-e", "stderr"]);
    }
}
