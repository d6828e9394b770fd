//! `approuter init`: a first configuration under `managed/etc/`, checked as `generate` would check it, never overwriting.

use anyhow::{bail, Context, Result};
use std::process::ExitCode;

use crate::config;
use crate::layout::Layout;
use crate::render::sh_quote;
use crate::util::file as fsx;

pub fn run(
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
        "next: approuter --root {} start",
        sh_quote(&layout.root().to_string_lossy())
    );
    Ok(ExitCode::SUCCESS)
}
