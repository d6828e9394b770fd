//! Where everything lives under the root: the one map of the `managed/` tree.

use std::path::{Path, PathBuf};

/// The directory tree approuter owns, derived from the root that holds `managed/`.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn managed(&self) -> PathBuf {
        self.root.join("managed")
    }
    pub fn etc(&self) -> PathBuf {
        self.managed().join("etc")
    }
    pub fn etc_file(&self, name: &str) -> PathBuf {
        self.etc().join(name)
    }
    pub fn hooks(&self) -> PathBuf {
        self.etc().join("hooks")
    }
    pub fn var(&self) -> PathBuf {
        self.managed().join("var")
    }
    pub fn service_dir(&self) -> PathBuf {
        self.var().join("service")
    }
    pub fn log_root(&self) -> PathBuf {
        self.var().join("log")
    }
    pub fn log_dir(&self, name: &str) -> PathBuf {
        self.log_root().join(name)
    }
    pub fn nginx_dir(&self) -> PathBuf {
        self.var().join("nginx")
    }
    pub fn nginx_conf(&self) -> PathBuf {
        self.nginx_dir().join("nginx.conf")
    }
    pub fn run_dir(&self) -> PathBuf {
        self.var().join("run")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.var().join("state")
    }
    pub fn crontab(&self) -> PathBuf {
        self.var().join("crontab")
    }
    pub fn prod_checkout(&self, name: &str) -> PathBuf {
        self.managed().join("prod").join(name)
    }
    pub fn alternate_checkout(&self, name: &str) -> PathBuf {
        self.managed().join("alternates").join(name)
    }
}
