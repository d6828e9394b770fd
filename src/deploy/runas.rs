//! Who instances run as: the `user` and `group` settings resolved on this machine, and checkouts given to that user so the application can write in them.

use anyhow::{bail, Context, Result};
use nix::unistd::{Gid, Group, Uid, User};
use std::path::{Path, PathBuf};

use crate::config::Settings;

/// The account an instance runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub uid: Uid,
    pub gid: Gid,
    pub home: PathBuf,
}

/// The account `settings` name, or `None` when instances run as approuter's own user.
pub fn resolve(settings: &Settings) -> Result<Option<RunAs>> {
    let Some(name) = &settings.user else {
        return Ok(None);
    };
    let user = User::from_name(name)
        .with_context(|| format!("looking up user `{name}`"))?
        .with_context(|| {
            format!("approuter.toml: key `user`: there is no user `{name}` on this machine; create it (useradd --system --create-home {name}) or remove the key")
        })?;
    let gid = match &settings.group {
        None => user.gid,
        Some(g) => {
            Group::from_name(g)
                .with_context(|| format!("looking up group `{g}`"))?
                .with_context(|| {
                    format!("approuter.toml: key `group`: there is no group `{g}` on this machine; create it or remove the key")
                })?
                .gid
        }
    };
    if !Uid::effective().is_root() && Uid::effective() != user.uid {
        bail!(
            "approuter.toml: key `user`: instances can run as `{name}` only when approuter runs as root or as `{name}` (it runs as uid {})",
            Uid::effective()
        );
    }
    Ok(Some(RunAs {
        user: name.clone(),
        uid: user.uid,
        gid,
        home: user.dir,
    }))
}

/// Makes the user instances run as the owner of everything in `dir` (a checkout, after git
/// wrote it as root). Symlinks are changed themselves, never followed.
pub fn give(dir: &Path, to: &RunAs) -> Result<()> {
    for entry in walkdir::WalkDir::new(dir).follow_links(false) {
        let entry = entry.with_context(|| format!("{}: cannot list", dir.display()))?;
        std::os::unix::fs::lchown(entry.path(), Some(to.uid.as_raw()), Some(to.gid.as_raw()))
            .with_context(|| {
                format!("{}: cannot give it to {}", entry.path().display(), to.user)
            })?;
    }
    Ok(())
}
