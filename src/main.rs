//! The `approuter` command line: the arguments (clap), dispatch to one command in `cmd/`, and any error printed once as a chain.

mod cmd;
mod config;
mod deploy;
mod envfile;
mod ext;
mod layout;
mod panel;
mod plan;
mod render;
mod state;
mod supervise;
mod svlogd;
mod util;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
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

    /// When another approuter command that changes state is running, refuse at once (naming it)
    /// instead of waiting for it
    #[arg(long, global = true)]
    no_wait: bool,

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
    /// Without arguments: clone, generate, start everything and wait until healthy. With names: bring those services up and wait until they answer
    Start {
        /// Services to start (see `approuter status` for their names) [default: the whole environment]
        services: Vec<String>,
        /// Start the whole environment and stay in the foreground (for systemd, see `approuter systemd-unit`): the supervisor is started again if it dies; SIGTERM shuts everything down
        #[arg(long, conflicts_with = "services")]
        foreground: bool,
    },
    /// Bring services down through their control FIFO and wait until they are down
    Stop {
        /// Services to stop
        #[arg(required = true)]
        services: Vec<String>,
        /// Stop the active production instance too (production then runs on the other one)
        #[arg(long)]
        force: bool,
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
        /// Youngest first (by uptime), as perpls -t
        #[arg(short = 't')]
        by_uptime: bool,
        /// Reverse the order, as perpls -r
        #[arg(short = 'r')]
        reverse: bool,
        /// Color the names (PERPLS_COLORS, else perpls's table), even when not on a terminal
        #[arg(short = 'G', conflicts_with = "no_colors")]
        colors: bool,
        /// No colors, even with PERPLS_COLORS set on a terminal
        #[arg(short = 'g')]
        no_colors: bool,
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
    /// Say how to reach a production instance through nginx (the inactive one by default): the page and cookie that hold the preview key
    Preview {
        /// instance1 or instance2 [default: the inactive one]
        instance: Option<String>,
        /// Make a new preview key: the old one stops working at once
        #[arg(long)]
        new_key: bool,
    },
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
        /// Deploy the production branch's head even if it was rolled back or failed before
        #[arg(long)]
        redeploy: bool,
    },
    /// Deploy the production branch's head now, even a commit rolled back from or one that failed before (a sync with --redeploy)
    Deploy {
        /// Say what it would do, and do nothing
        #[arg(long)]
        dry_run: bool,
        /// Also say what needed no change
        #[arg(short, long)]
        verbose: bool,
    },
    /// Print the last lines of services' logs; -f follows them
    Logs(cmd::logs::Args),
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
    /// Append stdin to svlogd-style log directories, as runit's svlogd does (every log/run uses it; `approuter svlogd --help` for its options)
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Svlogd {
        /// runit svlogd's options and the log directories, parsed by the logger itself (src/svlogd/args.rs)
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<std::ffi::OsString>,
    },
    /// Print (or with --write install) a systemd unit that starts this approuter at boot, healthy, and stops it cleanly
    SystemdUnit(cmd::systemd::Args),
    /// Print shell completions for approuter: `approuter completions bash > /etc/bash_completion.d/approuter`
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Write approuter's man pages (approuter.1 and one per subcommand) into DIR
    #[command(hide = true)]
    Manpages {
        /// Where to write them (created if missing)
        dir: PathBuf,
    },
    /// Start an instance's program with its defined environment (every instance's run uses it)
    #[command(hide = true)]
    InstanceExec(cmd::instance_exec::Args),
}

fn main() -> ExitCode {
    // Every file approuter creates gets the mode it asks for, whatever umask it was started
    // with (a umask of 000 would make managed/ writable by every user); tighter modes are
    // asked for where it matters.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    // Nothing the caller left open reaches what approuter starts (svscan, services, hooks).
    util::file::close_inherited_on_exec();
    let cli = Cli::parse();
    // Checkouts belong to the user instances run as, while approuter (often root) runs git on
    // them: libgit2 would refuse them as "not owned by the current user". approuter opens only
    // its own checkouts (and checks each, ext/git.rs). Not for the supervisor and the loggers:
    // setting it initializes libgit2 and OpenSSL, megabytes a logger never uses.
    if !matches!(cli.command, Cmd::Svscan { .. } | Cmd::Svlogd { .. }) {
        // SAFETY: set once, before any other thread exists or any repository is opened.
        let _ = unsafe { git2::opts::set_verify_owner_validation(false) };
    }
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
    // Commands that only print die quietly of SIGPIPE when their reader goes (`status | head`),
    // as other Unix tools do. The others keep ignoring it: a deploy must never stop half-way
    // because whoever read its output went away.
    if matches!(
        cli.command,
        Cmd::Status { .. } | Cmd::Check | Cmd::WhichProd | Cmd::Logs(_) | Cmd::Completions { .. }
    ) {
        // SAFETY: no other thread exists yet; restoring the default action is async-signal-safe.
        let _ = unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            )
        };
    }
    if !matches!(
        cli.command,
        Cmd::Init { .. }
            | Cmd::Demo
            | Cmd::Svscan { .. }
            | Cmd::Svlogd { .. }
            | Cmd::InstanceExec(_)
            | Cmd::Completions { .. }
            | Cmd::Manpages { .. }
    ) && !matches!(&cli.command, Cmd::SystemdUnit(a) if !cmd::systemd::needs_root(a))
    {
        cmd::require_here(&layout)?;
    }
    // Commands that change state hold approuter's lock while they run.
    let exclusive = |what: &str| cmd::exclusive(&layout, what, cli.no_wait);
    match cli.command {
        Cmd::Init {
            repo,
            alternates,
            prod_branch,
        } => cmd::init::run(&layout, &repo, &alternates, prod_branch.as_deref()),
        Cmd::Generate => {
            let _lock = exclusive("generate")?;
            let (plan, changes) = deploy::generate::generate(&layout)?;
            for line in changes.summary(&plan) {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Start {
            foreground: true, ..
        } => cmd::start::foreground(&layout, exclusive("start")?, cli.no_wait),
        Cmd::Start { services, .. } => {
            let _lock = exclusive(if services.is_empty() {
                "start"
            } else {
                "start SERVICE"
            })?;
            cmd::start::run(&layout, &services)
        }
        Cmd::Stop { services, force } => {
            let _lock = exclusive("stop")?;
            cmd::stop::run(&layout, &services, force)
        }
        Cmd::Shutdown => {
            let _lock = exclusive("shutdown")?;
            cmd::shutdown::run(&layout)
        }
        Cmd::Status {
            services,
            long,
            json,
            by_uptime,
            reverse,
            colors,
            no_colors,
        } => cmd::status::run(
            &layout,
            &services,
            long,
            json,
            &cmd::status::View {
                by_uptime,
                reverse,
                colors: match (colors, no_colors) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
            },
        ),
        Cmd::Switch { force } => {
            let _lock = exclusive("switch")?;
            cmd::switch::run(&layout, force)
        }
        Cmd::WhichProd => cmd::switch::which_prod(&layout),
        Cmd::Check => cmd::check::run(&layout),
        Cmd::Preview { instance, new_key } => {
            cmd::preview::run(&layout, instance.as_deref(), new_key, cli.no_wait)
        }
        Cmd::Sync {
            wait,
            dry_run,
            verbose,
            redeploy,
        } => cmd::sync::run(
            &layout,
            &deploy::sync::Options {
                dry_run,
                verbose,
                redeploy,
            },
            if cli.no_wait {
                Some(false)
            } else {
                wait.then_some(true)
            },
        ),
        Cmd::Deploy { dry_run, verbose } => cmd::sync::run(
            &layout,
            &deploy::sync::Options {
                dry_run,
                verbose,
                redeploy: true,
            },
            Some(!cli.no_wait),
        ),
        Cmd::Logs(args) => cmd::logs::run(&layout, args),
        Cmd::Demo => {
            let _lock = exclusive("demo")?;
            cmd::demo::run(&layout)
        }
        Cmd::Svscan { dir, grace } => {
            let code = supervise::scan::run(supervise::scan::Options {
                dir,
                grace: Duration::from_secs(grace),
            })?;
            Ok(ExitCode::from(code as u8))
        }
        Cmd::Svlogd { args } => Ok(svlogd::cli("approuter svlogd", args)),
        Cmd::InstanceExec(args) => cmd::instance_exec::run(&layout, args),
        Cmd::SystemdUnit(args) => {
            let _lock = if args.writes() {
                Some(exclusive("systemd-unit")?)
            } else {
                None
            };
            cmd::systemd::run(&layout, &args)
        }
        Cmd::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "approuter",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Manpages { dir } => cmd::manpages::write(&Cli::command(), &dir),
    }
}
