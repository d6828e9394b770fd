//! Test harness: a temp root per scenario, the approuter binary, snapshots of managed/var.

#![allow(dead_code)]

use assert_cmd::Command;
use nix::sys::signal::kill;
pub use nix::sys::signal::Signal;
use nix::unistd::Pid;
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

    /// Rewrites a configuration file under managed/etc through `change`.
    pub fn edit_etc(&self, name: &str, change: impl FnOnce(String) -> String) {
        let text = fs::read_to_string(self.etc(name)).unwrap();
        self.write_etc(name, &change(text));
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

/// What a condition polled by [`wait_for`] returns: `true`, or `Ok(())`, once it holds; while it
/// does not, `Err` may say how things stand, for the failure message.
pub trait Check {
    fn check(self) -> Result<(), String>;
}

impl Check for bool {
    fn check(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err(String::new())
        }
    }
}

impl Check for Result<(), String> {
    fn check(self) -> Result<(), String> {
        self
    }
}

/// The one way tests wait: polls `cond` every 20 ms until it holds, and fails the test naming
/// `what` it waited for (and how things stood last) once `timeout` has passed.
#[track_caller]
pub fn wait_for<T: Check>(timeout: std::time::Duration, what: &str, mut cond: impl FnMut() -> T) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let last = match cond().check() {
            Ok(()) => return,
            Err(e) => e,
        };
        if std::time::Instant::now() >= deadline {
            let last = if last.is_empty() {
                String::new()
            } else {
                format!(": {last}")
            };
            panic!("timed out after {timeout:?} waiting for {what}{last}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Seconds, for timeouts.
pub fn secs(s: u64) -> std::time::Duration {
    std::time::Duration::from_secs(s)
}

/// Cleanup's wait, for Drop: polls `cond` until it holds or `timeout` passes, never failing.
pub fn settle(timeout: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while !cond() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

/// Pids of the processes whose working directory lies under `dir`: everything a test started
/// there (supervisors, services, loggers, nginx) runs from inside its temp root.
pub fn processes_under(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let me = std::process::id() as i32;
    let Ok(entries) = fs::read_dir("/proc") else {
        return pids;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(cwd) = fs::read_link(e.path().join("cwd")) {
            if cwd.starts_with(dir) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Kills every process working under `dir`, until none is left (a killed shell's children may
/// appear a moment later).
pub fn kill_everything_under(dir: &Path) {
    for _ in 0..50 {
        let pids = processes_under(dir);
        if pids.is_empty() {
            return;
        }
        for p in pids {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn signal(pid: u32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), sig);
}

impl Drop for Root {
    fn drop(&mut self) {
        // An environment started by `approuter start` is shut down the way an operator would;
        // whatever is left after that (or without it) is killed.
        if self.var("service/.svscan.lock").exists() {
            let _ = self
                .cmd(&["shutdown"])
                .timeout(std::time::Duration::from_secs(30))
                .output();
        }
        kill_everything_under(self.path());
    }
}

/// `approuter svscan DIR`, ended (TERM, then KILL) when dropped.
pub struct Svscan {
    pub child: std::process::Child,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Svscan {
    pub fn start(dir: &Path) -> Svscan {
        Svscan::start_with_grace(dir, 3)
    }

    /// With `grace` seconds between TERM and KILL for a stopping service.
    pub fn start_with_grace(dir: &Path, grace: u64) -> Svscan {
        let log = dir.with_extension("svscan.err");
        let err = fs::File::create(&log).unwrap();
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("approuter"))
            .args(["svscan", "--grace", &grace.to_string()])
            .arg(dir)
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stdout(err.try_clone().unwrap())
            .stderr(err)
            .spawn()
            .expect("approuter svscan");
        Svscan {
            child,
            dir: dir.to_path_buf(),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and wait for the exit; None if it did not exit within `timeout`.
    pub fn terminate(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        signal(self.pid(), Signal::SIGTERM);
        let mut status = None;
        settle(timeout, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status
    }

    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Svscan {
    fn drop(&mut self) {
        if self.child.try_wait().unwrap().is_none() && self.terminate(secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        kill_everything_under(&self.dir);
    }
}

/// Writes an executable file.
pub fn write_exec(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A child process that is killed and reaped when dropped, so that a failing test leaves
/// nothing running. Its stderr goes to a file, read with [`Proc::stderr`].
pub struct Proc {
    pub child: std::process::Child,
    stderr: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdin piped and stderr into `stderr_file`.
    pub fn spawn(cmd: &mut std::process::Command, stderr_file: &Path) -> Proc {
        Proc::spawn_with_stdin(cmd, std::process::Stdio::piped(), stderr_file)
    }

    pub fn spawn_with_stdin(
        cmd: &mut std::process::Command,
        stdin: std::process::Stdio,
        stderr_file: &Path,
    ) -> Proc {
        let err = fs::File::create(stderr_file).unwrap();
        let child = cmd
            .stdin(stdin)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc {
            child,
            stderr: stderr_file.to_path_buf(),
        }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin still open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// Writes `bytes` to stdin from another thread, and fails the test if that has not
    /// finished by `timeout`: a reader that stopped reading must not hang the test.
    pub fn write_all_within(&mut self, bytes: Vec<u8>, timeout: std::time::Duration) {
        use std::io::Write;
        let mut stdin = self.child.stdin.take().expect("stdin still open");
        let writer = std::thread::spawn(move || {
            let r = stdin.write_all(&bytes);
            (stdin, r)
        });
        wait_for(timeout, "the input to be taken in", || writer.is_finished());
        let (stdin, r) = writer.join().unwrap();
        r.unwrap();
        self.child.stdin = Some(stdin);
    }

    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    /// Waits (polling, with a deadline) for the process to exit by itself.
    pub fn wait(&mut self, timeout: std::time::Duration) -> std::process::ExitStatus {
        let mut status = None;
        wait_for(timeout, "the process to exit", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of the approuter binary under test, for processes that need piped stdin.
pub fn approuter_exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_approuter"))
}

/// A tmpfs mounted for one test (root only: None, with a note saying the test skips, where it
/// cannot be mounted), unmounted when dropped.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "skipping: cannot mount a tmpfs at {} (needs root)",
                at.display()
            );
        }
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let umount = |lazy: bool| {
            let mut c = std::process::Command::new("umount");
            if lazy {
                c.arg("-l");
            }
            c.arg(&self.0).status().is_ok_and(|s| s.success())
        };
        if !umount(false) {
            umount(true);
        }
    }
}

/// A system user made for one test (root only), removed with its home when dropped: the
/// unprivileged local user of an attack, or the user instances run as.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl TestUser {
    /// None, with a note that the test skips, when not root.
    pub fn new(home_in: &Path) -> Option<TestUser> {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping: needs root to make a user");
            return None;
        }
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "art{}x{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let home = home_in.join(format!("home-{name}"));
        let ok = std::process::Command::new("useradd")
            .args([
                "--system",
                "--create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--home-dir",
            ])
            .arg(&home)
            .arg(&name)
            .status()
            .expect("useradd")
            .success();
        assert!(ok, "useradd {name}");
        let user = nix::unistd::User::from_name(&name).unwrap().unwrap();
        Some(TestUser {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home,
        })
    }

    /// A command run as this user, with a bare environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        let mut c = std::process::Command::new(program);
        c.uid(self.uid)
            .gid(self.gid)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &self.home)
            .current_dir("/");
        c
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // Its processes first: userdel refuses a user that still runs something.
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-u", &self.name])
            .status();
        settle(std::time::Duration::from_secs(5), || {
            std::process::Command::new("userdel")
                .args(["--remove", &self.name])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    }
}

/// What /proc says of a process: its environment as started, and its real uid.
pub fn environ(pid: u32) -> std::collections::BTreeMap<String, String> {
    fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

pub fn uid_of(pid: u32) -> Option<u32> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// True when some process holds an flock on `path`.
pub fn is_locked(path: &Path) -> bool {
    fs::File::open(path).is_ok_and(|f| matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock)))
}

/// `text` with every run of digits replaced by one `N`: pids and ages vary between runs.
pub fn numbers_as_n(text: &str) -> String {
    let mut out = String::new();
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            out.push(c);
            in_number = false;
        }
    }
    out
}
