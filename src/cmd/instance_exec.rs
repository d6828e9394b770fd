//! `approuter instance-exec`: what an instance's generated `run` execs: its defined environment (which instance, role, port, and the commit it runs), then the application's own `./start PORT`.

use anyhow::Result;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use crate::ext::git;

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
    /// The program and its arguments (`./start PORT`), run in the current directory
    #[arg(last = true, required = true)]
    command: Vec<OsString>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let commit = std::env::current_dir()
        .ok()
        .and_then(|d| git::inspect(&d).ok())
        .map(|c| c.head.to_string())
        .unwrap_or_default();
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    let err = Command::new(program)
        .args(rest)
        .env("APPROUTER_INSTANCE", &args.name)
        .env("APPROUTER_ROLE", &args.role)
        .env(COMMIT_VAR, &commit)
        .env("PORT", args.port.to_string())
        .exec();
    // Only reached when the exec failed: say why in the instance's log, with the shell's codes.
    eprintln!(
        "approuter: cannot start {}: {err}",
        program.to_string_lossy()
    );
    let code = match err.kind() {
        std::io::ErrorKind::NotFound => 127,
        _ => 126,
    };
    Ok(ExitCode::from(code))
}
