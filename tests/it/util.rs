//! Test harness: a temp root per scenario, the approuter binary, snapshots of managed/var.

#![allow(dead_code)]

use assert_cmd::Command;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A scratch root holding `managed/`, removed when dropped.
pub struct Root {
    pub dir: tempfile::TempDir,
}

impl Root {
    pub fn new() -> Root {
        Root::with_prefix("approuter-test.")
    }

    pub fn with_prefix(prefix: &str) -> Root {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("temp root");
        // tempdir makes 0700 directories; nginx's unprivileged workers never need to enter the
        // tree, but a readable root mirrors a real installation.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        Root { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn managed(&self) -> PathBuf {
        self.path().join("managed")
    }
    pub fn etc(&self, name: &str) -> PathBuf {
        self.managed().join("etc").join(name)
    }
    pub fn var(&self, rel: &str) -> PathBuf {
        self.managed().join("var").join(rel)
    }

    /// Writes a configuration file under managed/etc.
    pub fn write_etc(&self, name: &str, text: &str) {
        let p = self.etc(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    /// `approuter --root <root> ARGS...`, ready to run.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = approuter();
        c.arg("--root").arg(self.path()).args(args);
        c
    }
}

pub fn approuter() -> Command {
    let mut c = Command::cargo_bin("approuter").expect("approuter binary");
    c.env_remove("APPROUTER_ROOT");
    c
}

/// Every file and directory under `dir` with its bytes and mtime: equal snapshots mean nothing
/// was written.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime, u32)> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.unwrap();
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        let bytes = if meta.is_file() {
            fs::read(entry.path()).unwrap()
        } else {
            Vec::new()
        };
        out.insert(
            entry.path().strip_prefix(dir).unwrap().to_path_buf(),
            (bytes, meta.modified().unwrap(), meta.permissions().mode()),
        );
    }
    out
}

/// The stderr of a failed command, which must be exactly one line.
pub fn one_line_error(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "error is not one line: {err:?}"
    );
    err
}
