//! The `approuter` command line: parses arguments, runs one command, prints any error once as a chain.

mod config;
mod demo;
mod fsx;
mod generate;
mod git;
mod health;
mod hooks;
mod layout;
mod logs;
mod nginx;
mod panel;
mod plan;
mod ports;
mod render;
mod state;
mod supervise;
mod svlogd;
mod sync;
mod system;
mod tai64;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Without arguments: clone, generate, start everything and wait until healthy. With names: bring those services up
    Start {
        /// Services to start (see `approuter status` for their names) [default: the whole environment]
        services: Vec<String>,
    },
    /// Bring services down through their control FIFO and wait until they are down
    Stop {
        /// Services to stop
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Stop every service, nginx included, and the supervisor
    Shutdown,
    /// Show each service in perpls's panel: [+ +++ +++]  name  uptime: main/log  pids: main/log
    Status {
        /// Services to show [default: all]
        services: Vec<String>,
        /// Also show each instance's branch, commit, port and role
        #[arg(short, long)]
        long: bool,
        /// Print the same facts as a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Send production traffic to the other production instance (instant rollback)
    #[command(alias = "switch_nginx_config", alias = "switch-nginx-config")]
    Switch {
        /// Switch even if the other instance does not answer its health path with 200
        #[arg(long)]
        force: bool,
    },
    /// Print the active production instance: instance1 or instance2
    #[command(name = "which-prod", alias = "which_prod")]
    WhichProd,
    /// Check every instance's health path, directly and through nginx
    Check,
    /// Bring the running environment in line with the repository and the configuration (cron runs it every minute)
    Sync {
        /// Wait for a sync that is running to finish, instead of leaving at once
        #[arg(long)]
        wait: bool,
        /// Say what a sync would do, and do nothing
        #[arg(long)]
        dry_run: bool,
        /// Also say what needed no change
        #[arg(short, long)]
        verbose: bool,
    },
    /// Print the last lines of services' logs; -f follows them
    Logs(logs::Args),
    /// Write service directories, nginx configuration and crontab under managed/var from the configuration
    Generate,
    /// Create a demo application repository (branches main and beta), configure it and start it
    Demo,
    /// Supervise every service directory in DIR, in the foreground (runit/daemontools compatible)
    Svscan {
        /// The directory of service directories
        dir: PathBuf,
        /// Seconds a stopping service gets between TERM and KILL
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        grace: u64,
    },
    /// Append stdin to svlogd-style log directories, as runit's svlogd does (every log/run uses it)
    Svlogd(svlogd::Args),
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
        Cmd::Svscan { dir, grace } => {
            let code = supervise::scan::run(supervise::scan::Options {
                dir,
                grace: Duration::from_secs(grace),
            })?;
            Ok(ExitCode::from(code as u8))
        }
        Cmd::Status {
            services,
            long,
            json,
        } => Ok(exit_if(if long {
            system::status_long(&layout, &services, json)?
        } else {
            panel::status_cmd(&layout, &services, json)?
        })),
        Cmd::Start { services } if services.is_empty() => Ok(exit_if(system::start(&layout)?)),
        Cmd::Start { services } => {
            let ok = panel::control_and_wait(
                &layout,
                &services,
                supervise::control::UP,
                panel::is_up,
                Duration::from_secs(10),
            )?;
            if !ok {
                bail!("not every service came up within 10 s; see `approuter status` and its log");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Shutdown => {
            system::shutdown(&layout)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Switch { force } => {
            let to = system::switch(&layout, force)?;
            println!("production is now served by {}", to.name());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::WhichProd => {
            println!("{}", state::load_active(&layout)?.name());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check => Ok(exit_if(system::check(&layout)?)),
        Cmd::Demo => {
            demo::prepare(&layout)?;
            let ok = system::start(&layout)?;
            let port = config::Config::load(&layout)?.settings.listen_port;
            if ok {
                print!("{}", demo::urls(&layout, port));
            }
            Ok(exit_if(ok))
        }
        Cmd::Stop { services } => {
            let grace = config::Config::load(&layout)
                .map(|c| c.settings.stop_grace_secs)
                .unwrap_or(10);
            let wait = Duration::from_secs(grace + 5);
            let ok = panel::control_and_wait(
                &layout,
                &services,
                supervise::control::DOWN,
                panel::is_down,
                wait,
            )?;
            if !ok {
                bail!("not every service went down within {} s", wait.as_secs());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Sync {
            wait,
            dry_run,
            verbose,
        } => Ok(exit_if(sync::run(
            &layout,
            &sync::Options {
                wait,
                dry_run,
                verbose,
            },
        )?)),
        Cmd::Svlogd(args) => svlogd::main(args),
        Cmd::Logs(args) => logs::main(&layout, args),
    }
}

fn exit_if(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
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
