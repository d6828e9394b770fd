//! `approuter demo`: a local git repository holding a small application with branches `main` and `beta`, configured and started.

use anyhow::{bail, Context, Result};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::start;
use crate::config::{self, Config};
use crate::ext::git;
use crate::layout::Layout;
use crate::render::{sh_quote, ROUTING_COOKIE};
use crate::util::file as fsx;

const START: &str = include_str!("../../skel/demo-app/start");
const SERVER: &str = include_str!("../../skel/demo-app/server.py");

pub fn run(layout: &Layout) -> Result<ExitCode> {
    prepare(layout)?;
    let ok = start::whole(layout)?;
    if ok {
        let port = Config::load(layout)?.settings.listen_port;
        print!("{}", urls(layout, port));
    }
    Ok(super::exit_if(ok))
}

fn repo_dir(layout: &Layout) -> PathBuf {
    layout.managed().join("demo-app")
}

fn write_app(dir: &Path, branch: &str, version: &str) -> Result<()> {
    let start = dir.join("start");
    (|| {
        fs::write(&start, START)?;
        fs::set_permissions(&start, fs::Permissions::from_mode(0o755))?;
        fs::write(dir.join("server.py"), SERVER)?;
        fs::write(dir.join("BRANCH"), format!("{branch}\n"))?;
        fs::write(dir.join("VERSION"), format!("{version}\n"))
    })()
    .with_context(|| format!("{}: cannot write the demo application", dir.display()))
}

/// Creates the demo application's repository: `main` at version 1, `beta` at version 2-beta.
/// The work tree is left on `main`, ready for an operator's next commit.
fn create_repo(dir: &Path) -> Result<()> {
    fsx::ensure_dir(dir)?;
    git::init(dir, "main", "approuter demo", "demo@approuter.invalid")?;
    write_app(dir, "main", "1")?;
    git::commit_all(dir, "demo app, version 1")?;
    git::branch_here(dir, "beta")?;
    write_app(dir, "beta", "2-beta")?;
    git::commit_all(dir, "beta: version 2-beta")?;
    git::switch_branch(dir, "main")
}

/// Sets up the demo under `layout`, or finds it set up already.
fn prepare(layout: &Layout) -> Result<()> {
    let app = repo_dir(layout);
    let repo_conf = layout.etc_file(config::REPO_CONF);
    let app_url = app.to_string_lossy().into_owned();
    if repo_conf.exists() {
        let cfg = Config::load(layout)?;
        if cfg.repo != app_url {
            bail!(
                "{} already configures another application ({}); run the demo with --root in an empty directory",
                layout.etc().display(),
                cfg.repo
            );
        }
        println!(
            "the demo is already set up in {}",
            layout.managed().display()
        );
        return Ok(());
    }
    if !app.join(".git").exists() {
        create_repo(&app)?;
        println!(
            "created the demo application's git repository in {}",
            app.display()
        );
    }
    fsx::ensure_dir(&layout.etc())?;
    for (name, text) in config::initial_files(&app_url, &["beta".to_string()], Some("main")) {
        let path = layout.etc_file(name);
        // Settings prepared beforehand (other ports, say) are kept.
        if name == config::SETTINGS_TOML && path.exists() {
            continue;
        }
        fsx::write_atomic(&path, text.as_bytes(), 0o644)?;
    }
    println!(
        "wrote the demo's configuration in {}",
        layout.etc().display()
    );
    Ok(())
}

/// The URLs to try once the demo runs.
fn urls(layout: &Layout, port: u16) -> String {
    let base = format!("http://localhost:{port}");
    let root = sh_quote(&layout.root().to_string_lossy());
    format!(
        "\nThe demo runs. Try:\n\
         \x20 production:        {base}/\n\
         \x20 opt in to beta:    {base}/set_alt_cookie_beta.html   (then {base}/ again)\n\
         \x20 back to production: {base}/remove_alt_cookie_beta.html\n\
         \x20 from a shell:      curl -s {base}/ ; curl -s -b {ROUTING_COOKIE}=beta {base}/\n\
         \n\
         Then, as README.md shows: approuter --root {root} status (or switch, sync, logs, shutdown)\n"
    )
}
