//! Where everything lives under the root: the one map of the `managed/` tree.

use std::path::{Path, PathBuf};

use crate::plan::{Instance, Role, NGINX};
use crate::supervise::servicedir;
use crate::svlogd;

/// The supervisor's own log directory, `managed/var/log/svscan/`.
pub const SVSCAN: &str = "svscan";
/// sync's log directory, `managed/var/log/sync/` (and so no alternate's name).
pub const SYNC: &str = "sync";

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

    // managed/etc: the operator's configuration.
    pub fn etc(&self) -> PathBuf {
        self.managed().join("etc")
    }
    pub fn etc_file(&self, name: &str) -> PathBuf {
        self.etc().join(name)
    }
    pub fn hooks(&self) -> PathBuf {
        self.etc().join("hooks")
    }

    // Checkouts.
    pub fn prod_checkout(&self, name: &str) -> PathBuf {
        self.managed().join("prod").join(name)
    }
    pub fn alternate_checkout(&self, name: &str) -> PathBuf {
        self.managed().join("alternates").join(name)
    }
    /// Where an instance's code is checked out.
    pub fn checkout(&self, inst: &Instance) -> PathBuf {
        match inst.role {
            Role::Prod(_) => self.prod_checkout(&inst.name),
            Role::Alternate { .. } => self.alternate_checkout(&inst.name),
        }
    }

    // managed/var: everything approuter generates and runs.
    pub fn var(&self) -> PathBuf {
        self.managed().join("var")
    }
    pub fn service_dir(&self) -> PathBuf {
        self.var().join("service")
    }
    pub fn service(&self, name: &str) -> PathBuf {
        self.service_dir().join(name)
    }
    pub fn service_file(&self, name: &str, file: &str) -> PathBuf {
        self.service(name).join(file)
    }
    pub fn log_run(&self, name: &str) -> PathBuf {
        self.service(name)
            .join(servicedir::LOG)
            .join(servicedir::RUN)
    }
    pub fn log_root(&self) -> PathBuf {
        self.var().join("log")
    }
    pub fn log_dir(&self, name: &str) -> PathBuf {
        self.log_root().join(name)
    }
    /// The file a service's logger is writing now.
    pub fn log_current(&self, name: &str) -> PathBuf {
        svlogd::current_file(&self.log_dir(name))
    }
    /// sync's log directory: cron pipes each sync's output into `approuter svlogd -tt` there.
    pub fn sync_log(&self) -> PathBuf {
        self.log_dir(SYNC)
    }
    pub fn nginx_dir(&self) -> PathBuf {
        self.var().join(NGINX)
    }
    pub fn nginx_conf(&self) -> PathBuf {
        self.nginx_dir().join("nginx.conf")
    }
    /// The testers' page (`picker_path`), served by nginx from beside nginx.conf.
    pub fn picker_page(&self) -> PathBuf {
        self.nginx_dir().join("picker.html")
    }
    /// The operator's snippets of one level (`http`, `server`), gathered in one file that
    /// nginx.conf includes by this name (relative: it sits beside nginx.conf).
    pub fn nginx_snippets(&self, level: &str) -> PathBuf {
        self.nginx_dir().join(format!("snippets-{level}.conf"))
    }
    /// The symlink naming the active production instance (`slots/instance2`), which nginx
    /// follows on every request.
    pub fn nginx_active(&self) -> PathBuf {
        self.nginx_dir().join("active")
    }
    pub fn nginx_slot(&self, name: &str) -> PathBuf {
        self.nginx_dir().join("slots").join(name)
    }
    /// Present while a reload is being prepared: nginx then closes each connection after its
    /// answer.
    pub fn nginx_draining(&self) -> PathBuf {
        self.nginx_dir().join("draining")
    }
    pub fn run_dir(&self) -> PathBuf {
        self.var().join("run")
    }
    /// The lock every command that changes state holds while it runs.
    pub fn lock(&self) -> PathBuf {
        self.run_dir().join("approuter.lock")
    }
    /// The pid of svscan's logger, which `start` runs beside svscan.
    pub fn svscan_logger_pid(&self) -> PathBuf {
        self.run_dir().join("svscan-log.pid")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.var().join("state")
    }
    pub fn state_file(&self, name: &str) -> PathBuf {
        self.state_dir().join(name)
    }
    pub fn crontab(&self) -> PathBuf {
        self.var().join("crontab")
    }
}
