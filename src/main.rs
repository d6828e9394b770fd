//! The `approuter` command line: parses arguments, runs one command, prints any error once as a chain.

mod config;
mod fsx;
mod generate;
mod layout;
mod logs;
mod nginx;
mod plan;
mod render;
mod state;
mod svlogd;
mod tai64;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::layout::Layout;

#[derive(Parser)]
#[command(
    name = "approuter",
    version,
    about = "Run production and alternate versions of one web application side by side, from its git repository, behind nginx",
    propagate_version = true
)]
struct Cli {
    /// The directory that holds managed/ [default: $APPROUTER_ROOT, else the current directory]
    #[arg(long, global = true, env = "APPROUTER_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a first configuration under managed/etc (never overwrites)
    Init {
        /// The application's git repository: a URL or a local path
        #[arg(long, value_name = "URL")]
        repo: String,
        /// A branch to run as an alternate (repeatable)
        #[arg(long = "alternate", value_name = "BRANCH")]
        alternates: Vec<String>,
        /// The production branch [default: the remote's default branch]
        #[arg(long, value_name = "BRANCH")]
        prod_branch: Option<String>,
    },
    /// Write service directories, nginx configuration and crontab under managed/var from the configuration
    Generate,
    /// Append stdin to svlogd-style log directories, as runit's svlogd does (every log/run uses it)
    Svlogd(svlogd::Args),
    /// Print the last lines of services' logs; -f follows them
    Logs(logs::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("approuter: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn root_dir(arg: Option<PathBuf>) -> Result<PathBuf> {
    let root = match arg {
        Some(r) if !r.as_os_str().is_empty() => r,
        _ => std::env::current_dir().context("finding the current directory")?,
    };
    let root =
        std::path::absolute(&root).with_context(|| format!("{}: bad root", root.display()))?;
    Ok(std::fs::canonicalize(&root).unwrap_or(root))
}

fn run(cli: Cli) -> Result<ExitCode> {
    let layout = Layout::new(root_dir(cli.root)?);
    match cli.command {
        Cmd::Init {
            repo,
            alternates,
            prod_branch,
        } => init(&layout, &repo, &alternates, prod_branch.as_deref()),
        Cmd::Generate => {
            let (plan, changes) = generate::generate(&layout)?;
            for line in changes.summary(&plan) {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Svlogd(args) => svlogd::main(args),
        Cmd::Logs(args) => logs::main(&layout, args),
    }
}

fn init(
    layout: &Layout,
    repo: &str,
    alternates: &[String],
    prod_branch: Option<&str>,
) -> Result<ExitCode> {
    let files = config::initial_files(repo, alternates, prod_branch);
    // Parse back what would be written, so init refuses exactly what generate would.
    for (name, text) in &files {
        let path = layout.etc_file(name);
        match *name {
            config::REPO_CONF => config::parse_repo(&path, text).map(drop),
            config::ALTERNATES_CONF => config::parse_alternates(&path, text).map(drop),
            config::PROD_BRANCH => config::parse_prod_branch(&path, text).map(drop),
            _ => config::parse_settings(&path, text).map(drop),
        }
        .with_context(|| format!("refusing to write {name}"))?;
    }
    let existing: Vec<String> = files
        .iter()
        .map(|(name, _)| layout.etc_file(name))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        bail!(
            "{} already exists; init never overwrites: edit it, or remove it and run init again",
            existing.join(", ")
        );
    }
    fsx::ensure_dir(&layout.etc())?;
    for (name, text) in &files {
        let path = layout.etc_file(name);
        fsx::write_atomic(&path, text.as_bytes(), 0o644)?;
        println!("wrote {}", path.display());
    }
    println!(
        "next: approuter --root {} generate",
        render::sh_quote(&layout.root().to_string_lossy())
    );
    Ok(ExitCode::SUCCESS)
}
