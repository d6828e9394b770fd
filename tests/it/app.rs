//! End-to-end fixtures: a real git repository holding the demo application, free ports, and
//! a small HTTP/1.1 keep-alive client that never retries a request, GET or POST.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use crate::util::Root;

/// A git repository made in the test root, holding skel/demo-app with BRANCH and VERSION files.
pub struct AppRepo {
    pub dir: PathBuf,
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git (apt-get install git)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl AppRepo {
    /// `main` at version 1 and `beta` at version 2-beta.
    pub fn new(root: &Root) -> AppRepo {
        let dir = root.path().join("app-repo");
        fs::create_dir_all(&dir).unwrap();
        git(&dir, &["init", "-q", "-b", "main"]);
        let skel = Path::new(env!("CARGO_MANIFEST_DIR")).join("skel/demo-app");
        for f in ["start", "server.py"] {
            fs::copy(skel.join(f), dir.join(f)).unwrap();
        }
        fs::write(dir.join("BRANCH"), "main\n").unwrap();
        fs::write(dir.join("VERSION"), "1\n").unwrap();
        git(&dir, &["add", "-A"]);
        git(&dir, &["commit", "-q", "-m", "version 1"]);
        let repo = AppRepo { dir };
        git(&repo.dir, &["branch", "beta"]);
        repo.commit("beta", &[("BRANCH", "beta"), ("VERSION", "2-beta")], "beta");
        repo
    }

    /// Writes files on `branch` and commits them; returns the new commit.
    pub fn commit(&self, branch: &str, files: &[(&str, &str)], msg: &str) -> String {
        git(&self.dir, &["checkout", "-q", branch]);
        for (name, text) in files {
            let p = self.dir.join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, format!("{text}\n")).unwrap();
        }
        git(&self.dir, &["add", "-A"]);
        git(&self.dir, &["commit", "-q", "-m", msg]);
        let head = git(&self.dir, &["rev-parse", "HEAD"]);
        git(&self.dir, &["checkout", "-q", "main"]);
        head
    }

    pub fn url(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }
}

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// `n` consecutive free ports, below the ephemeral range, never handed out twice by this process.
pub fn free_ports(n: u16) -> u16 {
    if NEXT_PORT.load(Ordering::SeqCst) == 0 {
        let start = 20000 + (std::process::id() % 400) as u16 * 20;
        let _ = NEXT_PORT.compare_exchange(0, start, Ordering::SeqCst, Ordering::SeqCst);
    }
    loop {
        let base = NEXT_PORT.fetch_add(n, Ordering::SeqCst);
        if (0..n).all(|i| TcpListener::bind((Ipv4Addr::UNSPECIFIED, base + i)).is_ok()) {
            return base;
        }
    }
}

/// Ports for one environment: listen, two production ports, and room for alternates.
pub struct Ports {
    pub listen: u16,
    pub prod: [u16; 2],
    pub alt_base: u16,
}

/// Writes repo.conf, alternates.conf and an approuter.toml on free ports.
pub fn configure(root: &Root, repo: &str, alternates: &[&str], health_timeout: u64) -> Ports {
    let base = free_ports(10);
    let ports = Ports {
        listen: base,
        prod: [base + 1, base + 2],
        alt_base: base + 3,
    };
    root.write_etc("repo.conf", &format!("{repo}\n"));
    root.write_etc(
        "alternates.conf",
        &alternates
            .iter()
            .map(|a| format!("{a}\n"))
            .collect::<String>(),
    );
    root.write_etc(
        "approuter.toml",
        &format!(
            "listen_port = {}\nprod_ports = [{}, {}]\nalternate_base_port = {}\nhealth_timeout_secs = {health_timeout}\nstop_grace_secs = 3\nworker_shutdown_timeout_secs = 5\n",
            ports.listen, ports.prod[0], ports.prod[1], ports.alt_base
        ),
    );
    ports
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Resp>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Some(Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }))
}

/// A keep-alive client that never retries: a request sent on a reused connection that is closed
/// before an answer is a failure, as it is for an API client and for any POST (browsers would
/// send a GET again; nobody may send a POST again).
pub struct Client {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    pub fn new(port: u16) -> Client {
        Client { port, conn: None }
    }

    /// One request; `body` makes it a POST.
    pub fn request(
        &mut self,
        path: &str,
        cookie: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<Resp, String> {
        let reused = self.conn.is_some();
        let result = self.try_request(path, cookie, body);
        let closes = match &result {
            Ok(Some(r)) => r
                .header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close")),
            _ => true,
        };
        if closes {
            self.conn = None;
        }
        let what = if reused { "a reused" } else { "a new" };
        match result {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(format!("{what} connection closed before an answer")),
            Err(e) => Err(format!("{what} connection: {e}")),
        }
    }

    fn try_request(
        &mut self,
        path: &str,
        cookie: Option<&str>,
        body: Option<&[u8]>,
    ) -> std::io::Result<Option<Resp>> {
        if self.conn.is_none() {
            let s = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.set_nodelay(true)?;
            self.conn = Some(BufReader::new(s));
        }
        let conn = self.conn.as_mut().unwrap();
        let cookie = cookie
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default();
        let mut req = match body {
            Some(b) => format!(
                "POST {path} HTTP/1.1\r\nHost: localhost\r\n{cookie}Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                b.len()
            )
            .into_bytes(),
            None => format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{cookie}\r\n").into_bytes(),
        };
        req.extend_from_slice(body.unwrap_or_default());
        conn.get_mut().write_all(&req)?;
        read_response(conn)
    }

    pub fn get(&mut self, path: &str, cookie: Option<&str>) -> Result<Resp, String> {
        self.request(path, cookie, None)
    }

    pub fn post(&mut self, path: &str, cookie: Option<&str>, body: &[u8]) -> Result<Resp, String> {
        self.request(path, cookie, Some(body))
    }
}

/// One request on a fresh connection.
pub fn get(port: u16, path: &str, cookie: Option<&str>) -> Result<Resp, String> {
    Client::new(port).get(path, cookie)
}

/// Runs requests in a loop on `threads` keep-alive clients that never retry, GETs and POSTs in
/// turn, until stopped; counts failures.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Requests answered or failed so far, by every thread.
    done: std::sync::Arc<std::sync::atomic::AtomicU64>,
    handles: Vec<std::thread::JoinHandle<Tally>>,
}

/// One load thread's count: requests answered 200, failures (when, and what), instances seen.
type Tally = (
    u64,
    Vec<(std::time::Instant, String)>,
    std::collections::BTreeSet<String>,
);

pub struct LoadResult {
    pub ok: u64,
    pub failures: Vec<String>,
    /// When each failure happened, in the order of `failures`.
    pub failed_at: Vec<std::time::Instant>,
    pub served_by: std::collections::BTreeSet<String>,
}

impl LoadResult {
    /// Fails the test when any request failed, showing how many and the first few.
    #[track_caller]
    pub fn assert_none_failed(&self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} requests failed: {:?}",
            self.failures.len(),
            self.ok + self.failures.len() as u64,
            &self.failures[..self.failures.len().min(5)]
        );
    }
}

impl Load {
    pub fn start(port: u16, threads: usize) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let handles = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                let done = done.clone();
                std::thread::spawn(move || {
                    let mut c = Client::new(port);
                    let (mut ok, mut failures, mut seen) =
                        (0, Vec::new(), std::collections::BTreeSet::new());
                    let mut n: u64 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let post = n.is_multiple_of(2);
                        let (method, answer) = if post {
                            (
                                "POST",
                                c.post("/form", None, format!("request {n}").as_bytes()),
                            )
                        } else {
                            ("GET", c.get("/", None))
                        };
                        match answer {
                            Ok(r) if r.status == 200 => {
                                ok += 1;
                                if let Some(s) = r.header("x-served-by") {
                                    seen.insert(s.to_string());
                                }
                            }
                            Ok(r) => failures.push((
                                std::time::Instant::now(),
                                format!("{method}: status {}", r.status),
                            )),
                            Err(e) => {
                                failures.push((std::time::Instant::now(), format!("{method}: {e}")))
                            }
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    (ok, failures, seen)
                })
            })
            .collect();
        Load {
            stop,
            done,
            handles,
        }
    }

    /// Waits until `n` more requests have been made (answered or failed) from now: load that is
    /// known to have run across whatever happened before.
    #[track_caller]
    pub fn more(&self, n: u64) {
        let target = self.done.load(Ordering::Relaxed) + n;
        crate::util::wait_for(
            crate::util::secs(30),
            &format!("{n} more requests under load"),
            || self.done.load(Ordering::Relaxed) >= target,
        );
    }

    pub fn finish(mut self) -> LoadResult {
        self.stop.store(true, Ordering::Relaxed);
        let mut res = LoadResult {
            ok: 0,
            failures: Vec::new(),
            failed_at: Vec::new(),
            served_by: Default::default(),
        };
        for h in std::mem::take(&mut self.handles) {
            let (ok, f, s) = h.join().unwrap();
            res.ok += ok;
            for (at, what) in f {
                res.failed_at.push(at);
                res.failures.push(what);
            }
            res.served_by.extend(s);
        }
        res
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// stdout and stderr of a command, for assertion messages.
pub fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A root with the demo app's repository, configured on free ports and started.
pub fn started(alternates: &[&str]) -> (Root, AppRepo, Ports) {
    let root = Root::new();
    let repo = AppRepo::new(&root);
    let ports = configure(&root, &repo.url(), alternates, 20);
    let o = root
        .cmd(&["start"])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(o.status.success(), "start: {}", out(&o));
    (root, repo, ports)
}

/// `approuter sync ARGS...`, with a deadline.
pub fn sync(root: &Root, args: &[&str]) -> std::process::Output {
    let mut a = vec!["sync"];
    a.extend_from_slice(args);
    root.cmd(&a)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap()
}

/// `approuter sync ARGS...`, which must succeed; its output.
#[track_caller]
pub fn sync_ok(root: &Root, args: &[&str]) -> String {
    let o = sync(root, args);
    assert!(o.status.success(), "sync failed: {}", out(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `approuter ARGS...`, which must succeed; its output.
#[track_caller]
pub fn cmd_ok(root: &Root, args: &[&str]) -> String {
    let o = root
        .cmd(args)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(o.status.success(), "{args:?}: {}", out(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The version served through nginx on `port`, and which instance served it.
#[track_caller]
pub fn page(port: u16, cookie: Option<&str>) -> (String, String) {
    let r = get(port, "/", cookie).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    (
        r.header("x-app-version").unwrap_or("").to_string(),
        r.header("x-served-by").unwrap_or("").to_string(),
    )
}

/// The pid of a service's main process, from `supervise/pid`.
pub fn service_pid(root: &Root, svc: &str) -> Option<u32> {
    fs::read_to_string(root.var(&format!("service/{svc}/supervise/pid")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Runs the command of the crontab line that starts with `schedule` (`* * * * *`, `@reboot`)
/// as cron would: `\%` unescaped, through /bin/sh, with cron's bare environment, from `/`.
pub fn run_crontab_line(root: &Root, schedule: &str) -> std::process::Output {
    let crontab = fs::read_to_string(root.var("crontab")).unwrap();
    let line = crontab
        .lines()
        .find(|l| l.starts_with(schedule))
        .unwrap_or_else(|| panic!("no {schedule} line in\n{crontab}"));
    let command = line[schedule.len()..].trim_start().replace("\\%", "%");
    Command::new("/bin/sh")
        .arg("-c")
        .arg(&command)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("SHELL", "/bin/sh")
        .env("HOME", root.path())
        .env("LOGNAME", "root")
        .current_dir("/")
        .output()
        .unwrap()
}

/// An upgraded connection through nginx to the demo app's echo tunnel (`extra` is more header
/// lines, each ending in CRLF), its 101 and headers read.
pub fn tunnel(port: u16, extra: &str) -> BufReader<TcpStream> {
    let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s);
    write!(
        r.get_mut(),
        "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n"
    )
    .unwrap();
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h == "\r\n" {
            break;
        }
    }
    r
}
