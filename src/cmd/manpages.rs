//! `approuter manpages DIR`: the man pages, generated from the command line's own definition (clap_mangen), for packages.

use anyhow::{Context, Result};
use std::path::Path;
use std::process::ExitCode;

use crate::util::file as fsx;

/// Writes `approuter.1` and `approuter-<subcommand>.1` for every visible subcommand.
pub fn write(cmd: &clap::Command, dir: &Path) -> Result<ExitCode> {
    fsx::ensure_dir(dir)?;
    let mut written = Vec::new();
    page(cmd, "approuter", dir, &mut written)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("approuter-{}", sub.get_name());
        // A subcommand's page is titled with the full command, as git's are. clap keeps names
        // as &'static str; this process ends right after, so the few leaked bytes are moot.
        let leaked: &'static str = Box::leak(name.clone().into_boxed_str());
        let mut sub = sub.clone().name(leaked);
        if let Some(v) = cmd.get_version() {
            sub = sub.version(v.to_string().leak() as &'static str);
        }
        page(&sub, &name, dir, &mut written)?;
    }
    for name in written {
        println!("{}", dir.join(name).display());
    }
    Ok(ExitCode::SUCCESS)
}

fn page(cmd: &clap::Command, name: &str, dir: &Path, written: &mut Vec<String>) -> Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut out)
        .with_context(|| format!("rendering the man page of {name}"))?;
    let file = format!("{name}.1");
    fsx::write_atomic(&dir.join(&file), &out, 0o644)?;
    written.push(file);
    Ok(())
}
