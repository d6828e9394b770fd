//! Every git operation approuter performs, through git2: asking the remote, cloning, fetching, hard resets, reading what a checkout holds, and making the demo's repository.

use anyhow::{anyhow, bail, Context, Result};
use git2::{
    build::{CheckoutBuilder, RepoBuilder},
    Cred, CredentialType, Direction, FetchOptions, IndexAddOption, Oid, Remote, RemoteCallbacks,
    Repository, RepositoryInitOptions, ResetType, Signature,
};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The URL git is given: a relative local path in repo.conf is relative to the root.
pub fn resolve_url(root: &Path, url: &str) -> String {
    let looks_remote = url.contains("://") || is_scp_like(url);
    if looks_remote || Path::new(url).is_absolute() {
        url.to_string()
    } else {
        root.join(url).to_string_lossy().into_owned()
    }
}

/// `user@host:path` (ssh), as opposed to a local path that merely contains a colon.
fn is_scp_like(url: &str) -> bool {
    match url.split_once(':') {
        Some((host, _)) => !host.contains('/') && !host.is_empty() && host.len() > 1,
        None => false,
    }
}

/// Credentials the way an operator's git gets them: for ssh the agent, then the usual key files
/// in ~/.ssh (cron has no agent); for https git's credential helpers. libgit2 asks again after
/// each refusal, so each source is offered once.
fn callbacks<'a>(config: Option<git2::Config>) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut ssh_keys: Vec<PathBuf> = home
        .iter()
        .flat_map(|h| ["id_ed25519", "id_ecdsa", "id_rsa"].map(|k| h.join(".ssh").join(k)))
        .filter(|p| p.exists())
        .collect();
    ssh_keys.reverse();
    let (mut agent_tried, mut helper_tried, mut default_tried) = (false, false, false);
    cb.credentials(move |url, username, allowed| {
        let user = username.unwrap_or("git");
        if allowed.contains(CredentialType::SSH_KEY) {
            if !agent_tried {
                agent_tried = true;
                if std::env::var_os("SSH_AUTH_SOCK").is_some() {
                    return Cred::ssh_key_from_agent(user);
                }
            }
            if let Some(key) = ssh_keys.pop() {
                return Cred::ssh_key(user, None, &key, None);
            }
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) && !helper_tried {
            helper_tried = true;
            if let Some(cfg) = &config {
                return Cred::credential_helper(cfg, url, username);
            }
        }
        if allowed.contains(CredentialType::DEFAULT) && !default_tried {
            default_tried = true;
            return Cred::default();
        }
        Err(git2::Error::from_str(
            "no usable credentials (ssh agent, ~/.ssh/id_ed25519, id_ecdsa, id_rsa, git credential helper)",
        ))
    });
    cb
}

fn user_config() -> Option<git2::Config> {
    git2::Config::open_default().ok()
}

/// What the remote has: its default branch and the head of every branch.
#[derive(Debug, Clone, Default)]
pub struct RemoteHeads {
    pub default_branch: Option<String>,
    pub branches: BTreeMap<String, Oid>,
}

impl RemoteHeads {
    /// The commit a branch points at, or a clear error naming it and the remote.
    pub fn head(&self, url: &str, branch: &str) -> Result<Oid> {
        self.branches.get(branch).copied().ok_or_else(|| {
            anyhow!("branch `{branch}` does not exist in {url}; create it or fix the configuration")
        })
    }
}

/// `git ls-remote`: one connection that tells every branch head and the default branch.
pub fn ls_remote(url: &str) -> Result<RemoteHeads> {
    let mut remote =
        Remote::create_detached(url).with_context(|| format!("bad repository URL {url}"))?;
    let conn = remote
        .connect_auth(Direction::Fetch, Some(callbacks(user_config())), None)
        .map_err(|e| anyhow!("cannot reach {url}: {}", e.message()))?;
    let mut heads = RemoteHeads::default();
    for h in conn
        .list()
        .map_err(|e| anyhow!("cannot list {url}: {}", e.message()))?
    {
        if let Some(b) = h.name().strip_prefix("refs/heads/") {
            heads.branches.insert(b.to_string(), h.oid());
        }
    }
    if let Ok(buf) = conn.default_branch() {
        if let Some(b) = buf
            .as_str()
            .ok()
            .and_then(|s| s.strip_prefix("refs/heads/"))
        {
            heads.default_branch = Some(b.to_string());
        }
    }
    Ok(heads)
}

fn progress_callbacks<'a>(label: &'a str) -> RemoteCallbacks<'a> {
    let mut cb = callbacks(user_config());
    let tty = std::io::stderr().is_terminal();
    let mut last = 0;
    cb.transfer_progress(move |p| {
        if tty && p.total_objects() > 0 {
            let pct = p.received_objects() * 100 / p.total_objects();
            if pct != last || p.received_objects() == p.total_objects() {
                last = pct;
                eprint!(
                    "\r  {label}: {pct:3}% ({}/{} objects, {} KiB)",
                    p.received_objects(),
                    p.total_objects(),
                    p.received_bytes() / 1024
                );
                let _ = std::io::stderr().flush();
            }
        }
        true
    });
    cb
}

/// Clones `branch` of `url` into `dest`, through a hidden sibling directory renamed into place,
/// so an interrupted clone never looks like a checkout.
pub fn clone(url: &str, branch: &str, dest: &Path, label: &str) -> Result<Oid> {
    let parent = dest
        .parent()
        .context("checkout without a parent directory")?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("{}: cannot create", parent.display()))?;
    let name = dest
        .file_name()
        .context("checkout without a name")?
        .to_string_lossy();
    let tmp: PathBuf = parent.join(format!(".{name}.cloning"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("{}: cannot remove", tmp.display()))?;
    }
    eprintln!("cloning {label} from {url} (branch {branch})");
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(progress_callbacks(label));
    let repo = RepoBuilder::new()
        .branch(branch)
        .fetch_options(fo)
        .clone(url, &tmp)
        .map_err(|e| {
            let _ = std::fs::remove_dir_all(&tmp);
            anyhow!(
                "cloning {url} (branch {branch}) for {label}: {}",
                e.message()
            )
        });
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let oid = repo?
        .head()
        .ok()
        .and_then(|h| h.target())
        .with_context(|| format!("{}: the clone has no HEAD commit", tmp.display()))?;
    std::fs::rename(&tmp, dest)
        .with_context(|| format!("{}: cannot move the clone into place", dest.display()))?;
    Ok(oid)
}

/// What a checkout holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub branch: Option<String>,
    pub head: Oid,
    pub origin: Option<String>,
}

fn open(dest: &Path) -> Result<Repository> {
    Repository::open(dest).with_context(|| format!("{}: not a git checkout", dest.display()))
}

/// Opens the repository of the checkout `dest`, and only the one approuter cloned there: its
/// `.git` a real directory of approuter's user that nobody else can write, working on `dest`
/// itself. The instances' user owns the checkout's top directory, so it can rename `.git` away
/// and put its own in its place (a directory, a `gitdir:` file, a symlink); with
/// `core.worktree` that one would lead git, which runs as root, to write anywhere.
fn open_checkout(dest: &Path) -> Result<Repository> {
    use std::os::unix::fs::MetadataExt;
    let git_dir = dest.join(".git");
    let meta = std::fs::symlink_metadata(&git_dir)
        .with_context(|| format!("{}: not a git checkout", dest.display()))?;
    let euid = nix::unistd::Uid::effective().as_raw();
    let kind = if meta.is_symlink() {
        Some("a symlink")
    } else if !meta.is_dir() {
        Some("a file")
    } else if meta.uid() != euid {
        Some("a directory of another user")
    } else if meta.mode() & 0o022 != 0 {
        Some("a directory others can write")
    } else {
        None
    };
    let replaced = |what: &str| {
        anyhow!(
            "{}: {what}, not the repository approuter cloned; something replaced it: move the checkout away to have it cloned again",
            git_dir.display()
        )
    };
    if let Some(kind) = kind {
        return Err(replaced(&format!("is {kind}")));
    }
    let repo = Repository::open_ext(
        dest,
        git2::RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .with_context(|| format!("{}: not a git checkout", dest.display()))?;
    let same = |a: &Path, b: &Path| a.canonicalize().ok() == b.canonicalize().ok();
    if !same(repo.path(), &git_dir) || !repo.workdir().is_some_and(|w| same(w, dest)) {
        return Err(replaced("works on another tree (core.worktree)"));
    }
    // The repository opened is the directory looked at above, not one swapped in meanwhile.
    let opened = std::fs::metadata(repo.path()).ok();
    if opened.is_none_or(|o| (o.dev(), o.ino()) != (meta.dev(), meta.ino())) {
        return Err(replaced("changed while it was opened"));
    }
    Ok(repo)
}

pub fn inspect(dest: &Path) -> Result<Checkout> {
    let repo = open_checkout(dest)?;
    let head = repo
        .head()
        .with_context(|| format!("{}: no HEAD", dest.display()))?;
    let branch = head
        .is_branch()
        .then(|| head.shorthand().ok().map(str::to_string))
        .flatten();
    let oid = head
        .target()
        .with_context(|| format!("{}: HEAD has no commit", dest.display()))?;
    let origin = repo
        .find_remote("origin")
        .ok()
        .and_then(|r| r.url().ok().map(str::to_string));
    Ok(Checkout {
        branch,
        head: oid,
        origin,
    })
}

/// Fetches `branch` from origin and returns its head; nothing in the work tree changes.
pub fn fetch(dest: &Path, url: &str, branch: &str) -> Result<Oid> {
    let repo = open_checkout(dest)?;
    let mut remote = repo
        .remote_anonymous(url)
        .with_context(|| format!("{}: bad repository URL {url}", dest.display()))?;
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(callbacks(user_config()));
    let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
    remote
        .fetch(&[refspec.as_str()], Some(&mut fo), None)
        .map_err(|e| {
            if e.code() == git2::ErrorCode::NotFound
                || e.message().contains("couldn't find remote ref")
            {
                anyhow!("branch `{branch}` does not exist in {url}")
            } else {
                anyhow!("fetching {branch} from {url}: {}", e.message())
            }
        })?;
    let r = repo
        .find_reference(&format!("refs/remotes/origin/{branch}"))
        .with_context(|| format!("{}: fetched {branch} but found no ref", dest.display()))?;
    r.target().context("fetched branch has no commit")
}

/// Puts a checkout on `branch` at `oid` from `url`: origin set to `url`, the local branch moved
/// (or made) there and checked out, `git reset --hard`, and every file the commit does not track
/// removed, except the ones the repository ignores. `oid` must have been fetched.
pub fn checkout(dest: &Path, url: &str, branch: &str, oid: Oid) -> Result<()> {
    let repo = open_checkout(dest)?;
    if repo
        .find_remote("origin")
        .ok()
        .and_then(|r| r.url().ok().map(str::to_string))
        .as_deref()
        != Some(url)
    {
        match repo.find_remote("origin") {
            Ok(_) => repo.remote_set_url("origin", url),
            Err(_) => repo.remote("origin", url).map(drop),
        }
        .with_context(|| format!("{}: cannot set origin to {url}", dest.display()))?;
    }
    let commit = repo
        .find_commit(oid)
        .with_context(|| format!("{}: commit {} is not fetched", dest.display(), short(oid)))?;
    let refname = format!("refs/heads/{branch}");
    let on_branch = repo
        .head()
        .ok()
        .and_then(|h| h.name().ok().map(str::to_string))
        == Some(refname.clone());
    let tree = commit
        .tree()
        .with_context(|| format!("{}: commit {} has no tree", dest.display(), short(oid)))?;
    remove_misleading_links(&repo, dest, oid, &tree)?;
    let mut co = CheckoutBuilder::new();
    co.force();
    if on_branch {
        repo.reset(commit.as_object(), ResetType::Hard, Some(&mut co))
    } else {
        repo.checkout_tree(commit.as_object(), Some(&mut co))
            .and_then(|()| repo.branch(branch, &commit, true).map(drop))
            .and_then(|()| repo.set_head(&refname))
    }
    .with_context(|| {
        format!(
            "{}: checking out {branch} at {}",
            dest.display(),
            short(oid)
        )
    })?;
    remove_untracked(&repo, dest)
}

/// Removes whatever would lead git's writes out of the checkout: a symlink (or a file) where
/// the tree it writes, or the one it replaces, has a directory, and a symlink where it has a
/// file. libgit2 writes through both (git does not), and approuter's git runs as root.
fn remove_misleading_links(
    repo: &Repository,
    dest: &Path,
    commit: Oid,
    tree: &git2::Tree,
) -> Result<()> {
    const LINK: u32 = 0o120000;
    let mut paths: Vec<(Vec<u8>, bool)> = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() != Some(git2::ObjectType::Tree) {
            let mut p = dir.as_bytes().to_vec();
            p.extend_from_slice(entry.name_bytes());
            paths.push((p, entry.filemode() as u32 == LINK));
        }
        git2::TreeWalkResult::Ok
    })
    .with_context(|| format!("{}: cannot read the commit's tree", dest.display()))?;
    let index = repo
        .index()
        .with_context(|| format!("{}: cannot read the index", dest.display()))?;
    paths.extend(index.iter().map(|e| (e.path, e.mode == LINK)));
    for (bytes, _) in &paths {
        if inside_checkout(bytes).is_none() {
            bail!(
                "{}: commit {} has a path git refuses to check out, `{}`; remove it from the branch (git fsck names such paths)",
                dest.display(),
                short(commit),
                String::from_utf8_lossy(bytes)
            );
        }
    }
    let remove = |rel: &Path| {
        std::fs::remove_file(dest.join(rel))
            .with_context(|| format!("{}: cannot remove it", dest.join(rel).display()))
    };
    let mut dirs_seen = std::collections::HashSet::new();
    for (bytes, is_link) in &paths {
        let rel = Path::new(std::ffi::OsStr::from_bytes(bytes));
        let mut leading: Vec<&Path> = rel
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .collect();
        leading.reverse();
        for dir in leading {
            if !dirs_seen.insert(dir.to_path_buf()) {
                continue;
            }
            if std::fs::symlink_metadata(dest.join(dir)).is_ok_and(|m| !m.is_dir()) {
                remove(dir)?;
            }
        }
        // Where the tree has a file: a symlink, a file with other links (the same file outside
        // the checkout) or something that is not a file at all (a FIFO, whose open would block
        // the deploy) goes; libgit2 opens what it finds there and writes through it.
        let misleading = |m: std::fs::Metadata| {
            use std::os::unix::fs::MetadataExt;
            if *is_link {
                return false;
            }
            m.is_symlink() || (m.is_file() && m.nlink() > 1) || !(m.is_file() || m.is_dir())
        };
        if std::fs::symlink_metadata(dest.join(rel)).is_ok_and(misleading) {
            remove(rel)?;
        }
    }
    Ok(())
}

/// Removes every `.gitignore` under `dest/rel` that the index does not have, every repository
/// below the top and everything that is neither a file, a directory nor a symlink, without
/// following a symlink; the checkout's own repository is not looked into.
fn remove_foreign_ignores(index: &git2::Index, dest: &Path, rel: &Path) -> Result<()> {
    let dir = dest.join(rel);
    let entries =
        std::fs::read_dir(&dir).with_context(|| format!("{}: cannot list", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: cannot list", dir.display()))?;
        let name = entry.file_name();
        let path = rel.join(&name);
        let kind = entry
            .file_type()
            .with_context(|| format!("{}: cannot read", dest.join(&path).display()))?;
        let top = rel.as_os_str().is_empty();
        let is_git = name.as_encoded_bytes().eq_ignore_ascii_case(b".git");
        if (is_git && !(top && name == ".git"))
            || !(kind.is_dir() || kind.is_file() || kind.is_symlink())
        {
            // What git's own listing never shows, so nothing else would remove: a repository
            // (or a `.GIT`) below the top, and FIFOs, sockets and devices.
            let at = dest.join(&path);
            if kind.is_dir() {
                std::fs::remove_dir_all(&at)
            } else {
                std::fs::remove_file(&at)
            }
            .with_context(|| format!("{}: cannot remove it", at.display()))?;
        } else if kind.is_dir() && !(top && name == ".git") {
            remove_foreign_ignores(index, dest, &path)?;
        } else if name == ".gitignore" && index.get_path(&path, 0).is_none() {
            std::fs::remove_file(dest.join(&path)).with_context(|| {
                format!(
                    "{}: cannot remove this .gitignore the commit does not have",
                    dest.join(&path).display()
                )
            })?;
        }
    }
    Ok(())
}

/// A path of a tree or the index as a relative path that stays inside the checkout, or `None`:
/// nothing absolute, empty, `.`, `..` or `.git` (in any case). libgit2 refuses these when it
/// checks out, but approuter removes what is in the way before that, and a commit is whatever
/// was pushed: a tree can name `..` (`git mktree` makes one).
fn inside_checkout(bytes: &[u8]) -> Option<&Path> {
    let fine =
        |c: &[u8]| !c.is_empty() && c != b"." && c != b".." && !c.eq_ignore_ascii_case(b".git");
    (!bytes.contains(&0) && bytes.split(|&b| b == b'/').all(fine))
        .then(|| Path::new(std::ffi::OsStr::from_bytes(bytes)))
}

/// `git clean -f -d` (ignored files stay): libgit2's hard reset does not remove untracked files,
/// whatever its checkout options say, and a file planted in a checkout must not survive a deploy.
///
/// Only the commit's own ignore rules count: a `.gitignore` the commit does not have (one that
/// ignores itself and everything beside it, `*`) is removed first, or it would hide what was
/// planted next to it.
fn remove_untracked(repo: &Repository, dest: &Path) -> Result<()> {
    let index = repo
        .index()
        .with_context(|| format!("{}: cannot read the index", dest.display()))?;
    remove_foreign_ignores(&index, dest, Path::new(""))?;
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo
        .statuses(Some(&mut opts))
        .with_context(|| format!("{}: cannot list untracked files", dest.display()))?;
    let mut dirs = std::collections::BTreeSet::new();
    for entry in statuses.iter().filter(|e| e.status().is_wt_new()) {
        // Bytes: a name that is not UTF-8 is removed like any other.
        let rel = Path::new(std::ffi::OsStr::from_bytes(entry.path_bytes()));
        let path = dest.join(rel);
        // A symlink (to a directory or not) is removed itself, never followed; a directory
        // listed whole is another repository someone made in the tree.
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
        .with_context(|| format!("{}: cannot remove this untracked file", path.display()))?;
        dirs.extend(
            rel.ancestors()
                .skip(1)
                .filter(|a| !a.as_os_str().is_empty())
                .map(Path::to_path_buf),
        );
    }
    // Deepest first; a directory that still holds an ignored file stays.
    for dir in dirs.iter().rev() {
        let _ = std::fs::remove_dir(dest.join(dir));
    }
    Ok(())
}

pub fn short(oid: Oid) -> String {
    short_str(&oid.to_string())
}

/// The first 7 characters of a commit id, as git shows it.
pub fn short_str(commit: &str) -> String {
    commit.chars().take(7).collect()
}

impl Checkout {
    /// How this checkout (at `dest`) differs from being on `branch` of `url`; `None` when it
    /// does not.
    pub fn differs(&self, dest: &Path, url: &str, branch: &str) -> Option<String> {
        if self.origin.as_deref() != Some(url) {
            return Some(format!(
                "{}: its origin is {} but repo.conf says {url}",
                dest.display(),
                self.origin.as_deref().unwrap_or("(none)")
            ));
        }
        if self.branch.as_deref() != Some(branch) {
            return Some(format!(
                "{}: it is on {} but should be on branch `{branch}`",
                dest.display(),
                self.branch
                    .as_deref()
                    .map(|b| format!("branch `{b}`"))
                    .unwrap_or_else(|| "a detached HEAD".into())
            ));
        }
        None
    }

    /// On `branch` of `url`, at `oid`.
    pub fn is_at(&self, url: &str, branch: &str, oid: Oid) -> bool {
        self.head == oid
            && self.origin.as_deref() == Some(url)
            && self.branch.as_deref() == Some(branch)
    }
}

/// A new repository in `dir` whose first commit will be on `branch`, with an identity of its own
/// so that commits work on a machine where git has none yet.
pub fn init(dir: &Path, branch: &str, name: &str, email: &str) -> Result<()> {
    let mut opts = RepositoryInitOptions::new();
    opts.initial_head(branch);
    let repo = Repository::init_opts(dir, &opts)
        .with_context(|| format!("{}: git init", dir.display()))?;
    let mut cfg = repo
        .config()
        .with_context(|| format!("{}: no git config", dir.display()))?;
    cfg.set_str("user.name", name)
        .and_then(|()| cfg.set_str("user.email", email))
        .with_context(|| format!("{}: cannot set the git identity", dir.display()))
}

/// Commits every file of the work tree on the current branch, as the repository's own identity.
pub fn commit_all(dir: &Path, message: &str) -> Result<Oid> {
    let repo = open(dir)?;
    (|| {
        let mut index = repo.index()?;
        index.add_all(["*"], IndexAddOption::DEFAULT, None)?;
        index.write()?;
        let tree = repo.find_tree(index.write_tree()?)?;
        let sig = repo
            .signature()
            .or_else(|_| Signature::now("approuter", "approuter@invalid"))?;
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
    })()
    .with_context(|| format!("{}: cannot commit", dir.display()))
}

/// Makes `branch` at the current commit and moves HEAD to it; the work tree stays as it is.
pub fn branch_here(dir: &Path, branch: &str) -> Result<()> {
    let repo = open(dir)?;
    (|| {
        let head = repo.head()?.peel_to_commit()?;
        repo.branch(branch, &head, false)?;
        repo.set_head(&format!("refs/heads/{branch}"))
    })()
    .with_context(|| format!("{}: cannot make branch {branch}", dir.display()))
}

/// Moves HEAD to `branch` and makes the work tree match it.
pub fn switch_branch(dir: &Path, branch: &str) -> Result<()> {
    let repo = open(dir)?;
    repo.set_head(&format!("refs/heads/{branch}"))
        .and_then(|()| repo.checkout_head(Some(CheckoutBuilder::new().force())))
        .with_context(|| format!("{}: cannot switch to {branch}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_a_checkout() {
        for ok in [
            "a",
            "a/b.txt",
            "static/.gitignore",
            ".github/x",
            "..a",
            "a..",
        ] {
            assert!(inside_checkout(ok.as_bytes()).is_some(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "..",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            ".git/config",
            "a/.GIT/hooks",
            ".Git",
            "a\0b",
            "a/",
        ] {
            assert!(inside_checkout(bad.as_bytes()).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn urls() {
        let root = Path::new("/srv/ar");
        assert_eq!(resolve_url(root, "app.git"), "/srv/ar/app.git");
        assert_eq!(resolve_url(root, "../app"), "/srv/ar/../app");
        assert_eq!(resolve_url(root, "/abs/app"), "/abs/app");
        assert_eq!(resolve_url(root, "file:///x"), "file:///x");
        assert_eq!(resolve_url(root, "https://h/x.git"), "https://h/x.git");
        assert_eq!(
            resolve_url(root, "git@github.com:me/x.git"),
            "git@github.com:me/x.git"
        );
    }
}
