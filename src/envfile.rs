//! The instances' environment files under `managed/etc/`: `env` (every instance), `env.production` (both production instances), `env.<instance>` (one); KEY=VALUE lines, refused when other users can read them.

use anyhow::{bail, Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::layout::Layout;
use crate::util::file::read_optional;

/// Variables approuter itself sets for every instance; a file may not set them.
pub const RESERVED: &[&str] = &[
    "PORT",
    "APPROUTER_ROOT",
    "APPROUTER_INSTANCE",
    "APPROUTER_ROLE",
    "APPROUTER_COMMIT",
];

/// The files an instance's environment comes from, most general first (later ones win).
pub fn files_for(layout: &Layout, instance: &str, production: bool) -> Vec<PathBuf> {
    let mut files = vec![layout.etc_file("env")];
    if production {
        files.push(layout.etc_file("env.production"));
    }
    files.push(layout.etc_file(&format!("env.{instance}")));
    files
}

/// Every environment file present in `managed/etc/`, for checking them all at once.
pub fn all_files(layout: &Layout) -> Result<Vec<PathBuf>> {
    let etc = layout.etc();
    let entries = match std::fs::read_dir(&etc) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot list", etc.display())),
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == "env" || (n.starts_with("env.") && !n.ends_with(".new")))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads one environment file: `None` when it does not exist. Refused when other users may
/// read it, when anyone but its owner may write it (a variable such as `LD_PRELOAD` runs code
/// as the instances' user), when its owner is neither root nor approuter's user, and for any
/// line that is not `KEY=VALUE` (or blank, or a `#` comment). A group may read it (0640).
/// Values are taken as written: no quotes are removed and nothing is expanded.
pub fn read(path: &Path) -> Result<Option<Vec<(String, String)>>> {
    use std::os::unix::fs::MetadataExt;
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    let meta =
        std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mode = meta.permissions().mode();
    let refused = if mode & 0o004 != 0 {
        Some("other users can read it")
    } else if mode & 0o022 != 0 {
        Some("users other than its owner can write it")
    } else {
        None
    };
    if let Some(why) = refused {
        bail!(
            "{}: {why} (mode {:o}), and it holds the instances' secrets: chmod 600 it",
            path.display(),
            mode & 0o7777
        );
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != euid {
        bail!(
            "{}: it belongs to uid {}, who could change what the instances run with: chown it to root (or to approuter's user)",
            path.display(),
            meta.uid()
        );
    }
    parse(path, &text).map(Some)
}

pub fn parse(path: &Path, text: &str) -> Result<Vec<(String, String)>> {
    let mut vars = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let Some((key, value)) = trimmed.split_once('=') else {
            bail!("{}: expected KEY=VALUE", at());
        };
        let key = key.trim_end();
        let valid = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            bail!(
                "{}: `{}` is not a variable name (letters, digits and _, not starting with a digit)",
                at(),
                key.escape_debug()
            );
        }
        if RESERVED.contains(&key) {
            bail!(
                "{}: {key} is set by approuter itself; remove the line",
                at()
            );
        }
        if value.contains('\0') {
            bail!("{}: the value contains a NUL byte", at());
        }
        vars.push((key.to_string(), value.to_string()));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let p = Path::new("etc/env");
        let vars = parse(
            p,
            "# db\nDATABASE_URL=postgres://u:p@h/db?x=1\n\n  TOKEN = a b \r\n",
        )
        .unwrap();
        assert_eq!(
            vars,
            [
                (
                    "DATABASE_URL".to_string(),
                    "postgres://u:p@h/db?x=1".to_string()
                ),
                ("TOKEN".to_string(), " a b ".to_string())
            ]
        );
        for (text, want) in [
            ("JUSTAWORD\n", "etc/env:1: expected KEY=VALUE"),
            ("\n1X=2\n", "etc/env:2: `1X` is not a variable name"),
            ("A-B=1\n", "`A-B` is not a variable name"),
            ("PORT=1\n", "PORT is set by approuter itself"),
        ] {
            let err = parse(p, text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn readable_by_others_or_writable_by_anyone_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        std::fs::write(&path, "A=1\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("other users can read it (mode 644)"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o620)).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.contains("other than its owner can write it (mode 620)"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().len(), 1);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().len(), 1);
        assert!(read(&dir.path().join("none")).unwrap().is_none());
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(54321)), None).unwrap();
            let err = read(&path).unwrap_err().to_string();
            assert!(err.contains("belongs to uid 54321"), "{err}");
        }
    }
}
