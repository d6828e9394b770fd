//! `approuter instance-exec`: what an instance's generated `run` execs: a defined environment (whoever started the supervisor), the instance's user, then the application's own `./start PORT`.

use anyhow::{Context, Result};
use std::ffi::{CString, OsString};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use crate::deploy::processes;
use crate::envfile;
use crate::ext::git;
use crate::layout::Layout;

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
    let mut cmd = Command::new(program);
    cmd.args(rest).env_clear();
    cmd.env("PATH", &args.path).env("LANG", &args.lang);
    if let Some(u) = &user {
        cmd.env("HOME", &u.dir)
            .env("USER", &u.name)
            .env("LOGNAME", &u.name);
    }
    cmd.envs(vars);
    cmd.env("PORT", args.port.to_string())
        .env(processes::ROOT_VAR, layout.root())
        .env(processes::INSTANCE_VAR, &args.name)
        .env("APPROUTER_ROLE", &args.role)
        .env(COMMIT_VAR, &commit);
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
            // Supplementary groups first, while still allowed to set them; then the group, then
            // the user, after which none of it can be undone.
            let cname = CString::new(name.as_str()).context("user name")?;
            nix::unistd::initgroups(&cname, gid).context("setting the user's groups")?;
            nix::unistd::setgid(gid).context("setting the group")?;
            nix::unistd::setuid(u.uid).with_context(|| format!("becoming user `{name}`"))?;
        } else if nix::unistd::Uid::effective() != u.uid || nix::unistd::Gid::effective() != gid {
            anyhow::bail!(
                "instances can run as `{name}` (group {gid}) only when approuter runs as root or as that user and group"
            );
        }
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    Ok(cmd)
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
