//! The instances' git checkouts: which branch production follows, cloning what is missing, and refusing checkouts that belong elsewhere.

use anyhow::{bail, Context, Result};

use crate::config::{Config, Settings};
use crate::deploy::runas;
use crate::ext::git::{self, RemoteHeads};
use crate::layout::Layout;
use crate::plan::{Instance, Plan, Role, Slot};

/// The production branch: the configured one, else the remote's default branch (when the remote
/// was asked), else the branch the production checkouts are on. The one rule for start and sync.
pub fn production_branch(
    configured: Option<&str>,
    remote_default: Option<&str>,
    checked_out: Option<&str>,
) -> Option<String> {
    configured
        .or(remote_default)
        .or(checked_out)
        .map(str::to_string)
}

/// The branch an instance runs, given the production branch.
pub fn branch_of<'a>(inst: &'a Instance, prod_branch: &'a str) -> &'a str {
    match &inst.role {
        Role::Prod(_) => prod_branch,
        Role::Alternate { branch } => branch,
    }
}

/// The branch the existing production checkouts are on, if any can be read.
fn checked_out_prod_branch(layout: &Layout) -> Option<String> {
    Slot::BOTH
        .iter()
        .map(|s| layout.prod_checkout(s.name()))
        .filter(|d| d.exists())
        .find_map(|d| git::inspect(&d).ok().and_then(|c| c.branch))
}

/// Makes sure every instance has its checkout: clones the missing ones, and refuses (without
/// touching them) existing ones on another branch or from another repository. Returns the
/// production branch.
pub fn ensure(layout: &Layout, config: &Config, plan: &Plan) -> Result<String> {
    let url = git::resolve_url(layout.root(), &config.repo);
    let missing: Vec<&Instance> = plan
        .instances
        .iter()
        .filter(|i| !layout.checkout(i).exists())
        .collect();
    let checked_out = checked_out_prod_branch(layout);
    // Only ask the remote when something must be cloned or the production branch is unknown:
    // a restart with every checkout in place needs no network.
    let heads: Option<RemoteHeads> =
        if !missing.is_empty() || (plan.prod_branch.is_none() && checked_out.is_none()) {
            Some(git::ls_remote(&url)?)
        } else {
            None
        };
    let prod_branch = production_branch(
        plan.prod_branch.as_deref(),
        heads.as_ref().and_then(|h| h.default_branch.as_deref()),
        checked_out.as_deref(),
    )
    .with_context(|| {
        format!(
            "{url} has no default branch; write the production branch in managed/etc/prod_branch"
        )
    })?;
    for inst in &plan.instances {
        let dest = layout.checkout(inst);
        if !dest.exists() {
            continue;
        }
        // A sync cut short between taking a checkout back and handing it over left it root's.
        finish_hand_over(&config.settings, &dest)?;
        let differs = git::inspect(&dest)?.differs(&dest, &url, branch_of(inst, &prod_branch));
        match (differs, &inst.role) {
            (None, _) => {}
            // After a change of repository or production branch, the inactive production
            // instance keeps the old code until the next deploy: that is its rollback role.
            (Some(m), Role::Prod(_)) => eprintln!(
                "approuter: warning: {m}; it runs as it is, and the next sync deploys the configured branch"
            ),
            (Some(m), Role::Alternate { .. }) => {
                bail!("{m}; move the checkout away to have it cloned again")
            }
        }
    }
    if let Some(heads) = &heads {
        for inst in &missing {
            heads.head(&url, branch_of(inst, &prod_branch))?;
        }
        for inst in &missing {
            let dir = layout.checkout(inst);
            git::clone(&url, branch_of(inst, &prod_branch), &dir, &inst.name)?;
            hand_over(&config.settings, &dir)?;
        }
    }
    Ok(prod_branch)
}

/// Gives a checkout git has just written (as approuter's user) to the user instances run as,
/// so the application can write in it. Nothing to do when they run as approuter's user.
pub fn hand_over(settings: &Settings, dir: &std::path::Path) -> Result<()> {
    match runas::resolve(settings)? {
        Some(to) => runas::give(dir, &to),
        None => Ok(()),
    }
}

/// Hands the checkout at `dir` over again when a sync was cut short before it had: its top
/// directory is taken back first and given last, so a top directory of the run user means
/// everything is (and a sync need not walk every checkout each minute).
fn finish_hand_over(settings: &Settings, dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Some(to) = runas::resolve(settings)? else {
        return Ok(());
    };
    let owner = std::fs::symlink_metadata(dir)
        .with_context(|| format!("{}: cannot read", dir.display()))?
        .uid();
    if owner == to.uid.as_raw() {
        return Ok(());
    }
    runas::give(dir, &to)
}

/// Runs `git_work` (a fetch, a reset) on the existing checkout `dir`: taken back from the user
/// instances run as first, so that nothing of theirs can lead git (which runs as root) outside
/// the tree, and handed over again afterwards, whether the work succeeded or not (the
/// instance's code still runs from it).
pub fn rewrite<T>(
    settings: &Settings,
    dir: &std::path::Path,
    git_work: impl FnOnce() -> Result<T>,
) -> Result<T> {
    if nix::unistd::Uid::effective().is_root() {
        runas::take_back(dir)?;
    }
    let done = git_work();
    hand_over(settings, dir)?;
    done
}

/// The note `start` and `status -l` add when instances run as root.
pub fn root_note(settings: &Settings) -> Option<&'static str> {
    (settings.user.is_none() && nix::unistd::Uid::effective().is_root()).then_some(
        "note: the instances run as root: set `user` in managed/etc/approuter.toml to run them as an ordinary user",
    )
}

/// An instance's checkout in two words: its branch and full commit id (`-` when unreadable).
pub fn describe(layout: &Layout, inst: &Instance) -> (String, String) {
    match git::inspect(&layout.checkout(inst)) {
        Ok(c) => (
            c.branch.unwrap_or_else(|| "(detached)".into()),
            c.head.to_string(),
        ),
        Err(_) => ("-".into(), "-".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_branch_rule() {
        let table = [
            // (configured, remote default, checked out) -> branch
            ((Some("rel"), Some("main"), Some("old")), Some("rel")),
            ((None, Some("main"), Some("old")), Some("main")),
            ((None, None, Some("old")), Some("old")),
            ((None, None, None), None),
        ];
        for ((c, r, o), want) in table {
            assert_eq!(
                production_branch(c, r, o).as_deref(),
                want,
                "{c:?} {r:?} {o:?}"
            );
        }
    }
}
