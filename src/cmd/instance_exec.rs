//! `approuter instance-exec`: what an instance's generated `run` execs: a defined environment (whoever started the supervisor), the instance's user, then the application's own `./start PORT`.

use anyhow::{Context, Result};
use std::ffi::{CString, OsString};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use crate::deploy::processes;
use crate::envfile;
use crate::ext::git;
use crate::layout::Layout;
use crate::state;
use crate::util::poll;

/// The variable that tells which commit a running instance was started from; approuter reads
/// it back from /proc to know what an instance runs (its checkout may have moved on since).
pub const COMMIT_VAR: &str = "APPROUTER_COMMIT";

#[derive(clap::Args)]
pub struct Args {
    /// The instance's name
    #[arg(long)]
    name: String,
    /// `production` or `alternate`
    #[arg(long)]
    role: String,
    /// The port it is to listen on
    #[arg(long)]
    port: u16,
    /// The user to run as (approuter's own when not given)
    #[arg(long)]
    user: Option<String>,
    /// The group to run as (the user's primary group when not given)
    #[arg(long)]
    group: Option<String>,
    /// The instance's PATH
    #[arg(long)]
    path: String,
    /// The instance's LANG
    #[arg(long)]
    lang: String,
    /// Run once per commit before the instance starts (`sh -c`), as its user with its environment
    #[arg(long)]
    release_command: Option<String>,
    /// Seconds the release command may run
    #[arg(long, default_value_t = 600)]
    release_timeout: u64,
    /// The program and its arguments (`./start PORT`), run in the current directory
    #[arg(last = true, required = true)]
    command: Vec<OsString>,
}

/// Why the instance cannot be started: said on its log (its stdout and stderr), exit 111 as
/// runsv's child does when it cannot exec.
fn refuse(e: anyhow::Error) -> ExitCode {
    eprintln!("approuter: cannot start the instance: {e:#}");
    ExitCode::from(111)
}

pub fn run(layout: &Layout, args: Args) -> Result<ExitCode> {
    match prepare(layout, &args) {
        Ok(cmd) => Ok(exec(cmd, &args.command[0])),
        Err(e) => Ok(refuse(e)),
    }
}

/// The command to exec, with its whole environment and its user, before anything is dropped.
fn prepare(layout: &Layout, args: &Args) -> Result<Command> {
    let commit = std::env::current_dir()
        .ok()
        .and_then(|d| git::inspect(&d).ok())
        .map(|c| c.head.to_string())
        .unwrap_or_default();
    let mut vars: Vec<(String, String)> = Vec::new();
    for file in envfile::files_for(layout, &args.name, args.role == "production") {
        vars.extend(envfile::read(&file)?.unwrap_or_default());
    }
    let user = match &args.user {
        Some(name) => Some(
            nix::unistd::User::from_name(name)
                .with_context(|| format!("looking up user `{name}`"))?
                .with_context(|| format!("there is no user `{name}`"))?,
        ),
        None => nix::unistd::User::from_uid(nix::unistd::Uid::effective())
            .ok()
            .flatten(),
    };
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    // The instance's whole environment, the same for its release command and its `./start`.
    let env = |cmd: &mut Command| {
        cmd.env_clear();
        cmd.env("PATH", &args.path).env("LANG", &args.lang);
        if let Some(u) = &user {
            cmd.env("HOME", &u.dir)
                .env("USER", &u.name)
                .env("LOGNAME", &u.name);
        }
        cmd.envs(vars.iter().cloned());
        cmd.env("PORT", args.port.to_string())
            .env(processes::ROOT_VAR, layout.root())
            .env(processes::INSTANCE_VAR, &args.name)
            .env("APPROUTER_ROLE", &args.role)
            .env(COMMIT_VAR, &commit);
    };
    let mut cmd = Command::new(program);
    cmd.args(rest);
    env(&mut cmd);
    // Who the instance runs as: (user name, group) when approuter must become it.
    let mut become_user = None;
    if let (Some(name), Some(u)) = (&args.user, &user) {
        let gid = match &args.group {
            Some(g) => {
                nix::unistd::Group::from_name(g)
                    .with_context(|| format!("looking up group `{g}`"))?
                    .with_context(|| format!("there is no group `{g}`"))?
                    .gid
            }
            None => u.gid,
        };
        // approuter run by the user named in `user` is already that user (and may not set
        // groups); only root changes who it is.
        if nix::unistd::Uid::effective().is_root() {
            become_user = Some((
                CString::new(name.as_str()).context("user name")?,
                u.uid,
                gid,
            ));
        } else if nix::unistd::Uid::effective() != u.uid || nix::unistd::Gid::effective() != gid {
            anyhow::bail!(
                "instances can run as `{name}` (group {gid}) only when approuter runs as root or as that user and group"
            );
        }
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    if let Some(release) = &args.release_command {
        let mut sh = Command::new("/bin/sh");
        sh.arg("-c").arg(release).stdin(std::process::Stdio::null());
        env(&mut sh);
        if let Some((cname, uid, gid)) = &become_user {
            let groups =
                nix::unistd::getgrouplist(cname, *gid).context("reading the user's groups")?;
            let (uid, gid) = (*uid, *gid);
            // SAFETY: setgroups, setgid and setuid are system calls; nothing is allocated.
            unsafe {
                sh.pre_exec(move || {
                    nix::unistd::setgroups(&groups)?;
                    nix::unistd::setgid(gid)?;
                    nix::unistd::setuid(uid)?;
                    Ok(())
                });
            }
        }
        release_once(
            layout,
            &args.name,
            &commit,
            release,
            sh,
            Duration::from_secs(args.release_timeout),
        )?;
    }
    if let Some((cname, uid, gid)) = &become_user {
        // Supplementary groups first, while still allowed to set them; then the group, then
        // the user, after which none of it can be undone.
        nix::unistd::initgroups(cname, *gid).context("setting the user's groups")?;
        nix::unistd::setgid(*gid).context("setting the group")?;
        nix::unistd::setuid(*uid)
            .with_context(|| format!("becoming user `{}`", cname.to_string_lossy()))?;
    }
    Ok(cmd)
}

/// Runs the release command unless it already ran well for `commit` in this instance's
/// checkout, its output going to the instance's log; records how it went. An error when it
/// fails: the instance does not start. Past `timeout` it is killed with the whole start.
fn release_once(
    layout: &Layout,
    name: &str,
    commit: &str,
    command: &str,
    mut sh: Command,
    timeout: Duration,
) -> Result<()> {
    if state::load_release(layout, name)
        .is_some_and(|r| r.ok() && r.commit == commit && r.command == command)
    {
        return Ok(());
    }
    // Instances on the same commit (both production ones at a first start) release one after
    // the other, never at once: two migrations racing on one database can fail or worse. One
    // lock per first byte of the commit: a bounded set of files, and different commits rarely
    // wait for each other.
    crate::util::file::ensure_private_dir(&layout.state_dir())?;
    let lock_path = layout.state_file(&format!("release.{}.lock", &commit[..commit.len().min(2)]));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&lock_path)
        .with_context(|| format!("{}: cannot open", lock_path.display()))?;
    // Held until this function returns and `lock` is closed.
    lock.lock()
        .with_context(|| format!("{}: cannot lock", lock_path.display()))?;
    // Another instance may have released this commit meanwhile: this checkout still needs its
    // own run (its dependencies, its assets).
    let short = &commit[..commit.len().min(7)];
    eprintln!("approuter: running the release command for {short}");
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let began = Instant::now();
    let record = |result: String| {
        let r = state::Release {
            commit: commit.to_string(),
            command: command.to_string(),
            started: started_unix,
            secs: began.elapsed().as_secs_f64(),
            result,
        };
        if let Err(e) = state::save_release(layout, name, &r) {
            eprintln!("approuter: cannot record the release: {e:#}");
        }
        r
    };
    let mut child = sh
        .spawn()
        .context("starting the release command (/bin/sh)")?;
    let mut status = None;
    poll::holds(timeout, poll::EVERY, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let Some(status) = status else {
        let r = record(format!("timed out after {}s", timeout.as_secs()));
        eprintln!(
            "approuter: release {}; ending it and this start",
            r.describe()
        );
        // The release and whatever it started share this process's group (so a stop of the
        // service reaches them too): the whole group goes, this process with it.
        let _ = nix::sys::signal::killpg(nix::unistd::getpgrp(), nix::sys::signal::Signal::SIGKILL);
        anyhow::bail!("the release command timed out");
    };
    let result = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(0), _) => "ok".to_string(),
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        (None, None) => "ended".to_string(),
    };
    let r = record(result);
    eprintln!("approuter: release {}", r.describe());
    if !r.ok() {
        anyhow::bail!("the release command failed ({}); not starting", r.result);
    }
    Ok(())
}

fn exec(mut cmd: Command, program: &OsString) -> ExitCode {
    let err = cmd.exec();
    // Only reached when the exec failed: say why in the instance's log, with the shell's codes.
    eprintln!(
        "approuter: cannot start {}: {err}",
        PathBuf::from(program).display()
    );
    let code = match err.kind() {
        std::io::ErrorKind::NotFound => 127,
        _ => 126,
    };
    ExitCode::from(code)
}
