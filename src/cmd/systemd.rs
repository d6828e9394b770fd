//! `approuter systemd-unit`: the systemd unit that starts a root at boot and stops it cleanly, printed or installed.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{Config, Settings};
use crate::deploy::environment;
use crate::layout::Layout;
use crate::render;
use crate::state;
use crate::util::file as fsx;

/// Where units written by hand live.
pub const UNIT_DIR: &str = "/etc/systemd/system";

#[derive(clap::Args)]
pub struct Args {
    /// Install it as DIR/NAME.service (and drop the crontab's @reboot line), instead of printing it
    #[arg(long)]
    write: bool,
    /// The unit's name
    #[arg(long, default_value = "approuter", value_name = "NAME")]
    name: String,
    /// Where --write puts it
    #[arg(long, default_value = UNIT_DIR, value_name = "DIR")]
    dir: PathBuf,
    /// The approuter binary the unit runs [default: this one]
    #[arg(long, value_name = "PATH")]
    exe: Option<PathBuf>,
    /// Print the template unit approuter@.service instead (its instance is the root, escaped with systemd-escape -p), as the Debian package installs it
    #[arg(long, conflicts_with_all = ["write"])]
    template: bool,
}

impl Args {
    /// Installing changes state (the unit, the crontab): it takes approuter's lock.
    pub fn writes(&self) -> bool {
        self.write
    }
}

/// Whether the command needs an approuter in the root (the template does not).
pub fn needs_root(args: &Args) -> bool {
    !args.template
}

pub fn run(layout: &Layout, args: &Args) -> Result<ExitCode> {
    let exe = match &args.exe {
        Some(e) if e.is_absolute() => e.clone(),
        Some(e) => bail!("--exe {}: name the binary by absolute path", e.display()),
        None => render::host::this_exe()?,
    };
    if args.template {
        let d = Settings::default();
        // The package that installs the template installs the man pages too.
        print!("{}", unit(&exe, None, true, &d)?);
        return Ok(ExitCode::SUCCESS);
    }
    let settings = Config::load(layout)?.settings;
    let man = std::process::Command::new("man")
        .args(["-w", "approuter"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let text = unit(&exe, Some(layout.root()), man, &settings)?;
    if !args.write {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let valid = !args.name.is_empty()
        && args
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if !valid {
        bail!(
            "--name {:?}: a unit name is letters, digits and - _ . : only",
            args.name
        );
    }
    let path = args.dir.join(format!("{}.service", args.name));
    fsx::write_atomic(&path, text.as_bytes(), 0o644)
        .with_context(|| format!("{}: cannot write the unit (run as root)", path.display()))?;
    state::save_systemd_unit(layout, &path)?;
    // The crontab loses its @reboot line: boot is the unit's job now.
    crate::deploy::generate::generate(layout)?;
    println!("wrote {}", path.display());
    println!(
        "next: systemctl daemon-reload && systemctl enable --now {}  (if approuter already runs, `approuter shutdown` first, so that systemd starts and tracks it)",
        args.name
    );
    Ok(ExitCode::SUCCESS)
}

fn unit(exe: &Path, root: Option<&Path>, man: bool, s: &Settings) -> Result<String> {
    render::systemd_unit(
        exe,
        root,
        man,
        s.start_timeout(),
        environment::shutdown_timeout(s.stop_grace_secs),
    )
}
