//! `approuter demo`: a local git repository holding a small application with branches `main` and `beta`, configured and started.

use anyhow::{bail, Context, Result};
use git2::{IndexAddOption, Repository, RepositoryInitOptions, Signature};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::{self, Config};
use crate::fsx;
use crate::layout::Layout;

const START: &str = include_str!("../skel/demo-app/start");
const SERVER: &str = include_str!("../skel/demo-app/server.py");

pub fn repo_dir(layout: &Layout) -> PathBuf {
    layout.managed().join("demo-app")
}

fn write_app(dir: &Path, branch: &str, version: &str) -> Result<()> {
    fs::write(dir.join("start"), START)?;
    fs::set_permissions(dir.join("start"), fs::Permissions::from_mode(0o755))?;
    fs::write(dir.join("server.py"), SERVER)?;
    fs::write(dir.join("BRANCH"), format!("{branch}\n"))?;
    fs::write(dir.join("VERSION"), format!("{version}\n"))?;
    Ok(())
}

fn commit_all(repo: &Repository, message: &str) -> Result<()> {
    let mut index = repo.index()?;
    index.add_all(["*"], IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = Signature::now("approuter demo", "demo@approuter.invalid")?;
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)?;
    Ok(())
}

/// Creates the demo application's repository: `main` at version 1, `beta` at version 2-beta.
/// The work tree is left on `main`, ready for an operator's next commit.
pub fn create_repo(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let mut opts = RepositoryInitOptions::new();
    opts.initial_head("main");
    let repo = Repository::init_opts(dir, &opts)
        .with_context(|| format!("{}: git init", dir.display()))?;
    // So the README's `git commit` works on a machine where git has no identity yet.
    let mut cfg = repo.config()?;
    cfg.set_str("user.name", "approuter demo")?;
    cfg.set_str("user.email", "demo@approuter.invalid")?;
    write_app(dir, "main", "1")?;
    commit_all(&repo, "demo app, version 1")?;
    let head = repo.head()?.peel_to_commit()?;
    repo.branch("beta", &head, false)?;
    repo.set_head("refs/heads/beta")?;
    write_app(dir, "beta", "2-beta")?;
    commit_all(&repo, "beta: version 2-beta")?;
    repo.set_head("refs/heads/main")?;
    repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))?;
    Ok(())
}

/// Sets up the demo under `layout` (or finds it set up already) and returns what to tell the user.
pub fn prepare(layout: &Layout) -> Result<()> {
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
pub fn urls(layout: &Layout, port: u16) -> String {
    let base = format!("http://localhost:{port}");
    let root = crate::render::sh_quote(&layout.root().to_string_lossy());
    format!(
        "\nThe demo runs. Try:\n\
         \x20 production:        {base}/\n\
         \x20 opt in to beta:    {base}/set_alt_cookie_beta.html   (then {base}/ again)\n\
         \x20 back to production: {base}/remove_alt_cookie_beta.html\n\
         \x20 from a shell:      curl -s {base}/ ; curl -s -b approuter_alt=beta {base}/\n\
         \n\
         Then, as README.md shows: approuter --root {root} status (or switch, sync, logs, shutdown)\n"
    )
}
