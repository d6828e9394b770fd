//! How approuter invokes nginx: finding the binary, the command line it runs under, `nginx -t` on a candidate configuration, and reloads.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::ext::procfs;
use crate::render::OutFile;
use crate::supervise::{client, control};
use crate::util::file::{self as fsx, is_executable};
use crate::util::poll;

/// How long a reload may take before it is reported as stuck.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long nginx may go on using what it last saw of the files it tests per request
/// (`open_file_cache_valid` in skel/nginx.conf): a switch or a drain reaches every worker
/// within this time.
pub const FILE_TESTS_CACHED: Duration = Duration::from_secs(1);
/// How long nginx closes every connection after its answer before a reload: every worker has
/// seen the drain, and then every client that is sending requests has had an answer that told
/// it so.
pub const DRAIN: Duration = Duration::from_secs(2);

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

/// The whole command line nginx runs under: `base` (binary and version-dependent options), then
/// the prefix its relative paths start from and its configuration file.
pub fn invocation(base: &[String], prefix_dir: &Path, conf: &Path) -> Vec<String> {
    let mut cmd = base.to_vec();
    cmd.extend([
        "-p".into(),
        format!("{}/", prefix_dir.display()),
        "-c".into(),
        conf.display().to_string(),
    ]);
    cmd
}

/// Runs `nginx -t` on candidate configuration files in a scratch prefix, so nothing nginx reads
/// is touched before the check passes. Messages name the files as they will be in `real_dir`.
pub fn check(base_cmd: &[String], files: &[OutFile], real_dir: &Path) -> Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix("approuter-nginx-check.")
        .tempdir()
        .context("creating a scratch directory for nginx -t")?;
    let mut conf = None;
    for f in files {
        let name = f.path.file_name().context("nginx file without a name")?;
        let path = scratch.path().join(name);
        fsx::write_atomic(&path, &f.bytes, f.mode)?;
        if name == "nginx.conf" {
            conf = Some(path);
        }
    }
    let conf = conf.context("no nginx.conf among the files to check")?;
    let cmd = invocation(base_cmd, scratch.path(), &conf);
    let (bin, opts) = cmd.split_first().context("empty nginx command")?;
    let out = Command::new(bin)
        .args(opts)
        .args(["-t", "-q"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {bin} -t"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr).replace(
        &format!("{}/", scratch.path().display()),
        &format!("{}/", real_dir.display()),
    );
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

fn accepting(title: &str) -> bool {
    title.contains("worker process") && !title.contains("shutting down")
}

/// Tells the supervised nginx (service directory `service`) to reload, through its control FIFO,
/// and waits until every worker that ran the old configuration has stopped accepting
/// connections: from then on every new connection is served by the new configuration. False
/// when nginx does not run. Its configuration has already passed `nginx -t`.
///
/// A reload ends the old workers' kept-alive connections, and a client that sends a request on
/// one at that moment sees it closed unanswered. So first the file `draining` makes nginx end
/// each connection after its answer, for [`DRAIN`]: clients that are sending requests move to
/// new connections, which the new workers serve.
pub fn reload(service: &Path, log: &Path, draining: &Path) -> Result<bool> {
    use crate::supervise::status::{probe, Probe};
    if probe(service) != Probe::Supervised {
        return Ok(false);
    }
    let master = match client::read(service) {
        Ok(st) if st.is_up() => st.pid,
        _ => return Ok(false),
    };
    let old: Vec<u32> = procfs::children(master)
        .into_iter()
        .filter(|(_, t)| accepting(t))
        .map(|(p, _)| p)
        .collect();
    fsx::write_atomic(draining, b"", 0o644)?;
    std::thread::sleep(DRAIN);
    let sent = control::send(service, control::HUP).context("telling nginx to reload");
    let took = sent.is_ok()
        && poll::holds(RELOAD_TIMEOUT, Duration::from_millis(5), || {
            let now = procfs::children(master);
            let old_accepting = now.iter().any(|(p, t)| old.contains(p) && accepting(t));
            let new_accepting = now.iter().any(|(p, t)| !old.contains(p) && accepting(t));
            !old_accepting && new_accepting
        });
    fsx::remove_if_present(draining)?;
    sent?;
    if !took {
        bail!(
            "nginx (pid {master}) did not take its new configuration within {} s; see {}",
            RELOAD_TIMEOUT.as_secs(),
            log.display()
        );
    }
    Ok(true)
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
        assert_eq!(
            invocation(
                &new,
                Path::new("/r/nginx"),
                Path::new("/r/nginx/nginx.conf")
            ),
            [
                "/usr/sbin/nginx",
                "-e",
                "stderr",
                "-p",
                "/r/nginx/",
                "-c",
                "/r/nginx/nginx.conf"
            ]
        );
    }
}
