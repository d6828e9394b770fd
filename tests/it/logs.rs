//! `approuter logs`: tails and follows real logs written by `approuter svlogd`.

use nix::sys::signal::Signal;
use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::{approuter_exe, one_line_error, wait_for, Proc, Root};

const DEADLINE: Duration = Duration::from_secs(20);

/// A service directory (all `logs` needs is its name; a `run` makes it one) and its log directory.
fn service(root: &Root, name: &str, config: &str) -> PathBuf {
    crate::util::write_exec(
        &root.var("service").join(name).join("run"),
        "#!/bin/sh
",
    );
    let dir = root.var("log").join(name);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("config"), config).unwrap();
    dir
}

/// Logs `count` numbered lines for `name` through a real `approuter svlogd -tt`.
fn log_lines(root: &Root, name: &str, config: &str, count: usize) {
    let dir = service(root, name, config);
    let input: String = (0..count).map(|i| format!("{name} line {i}\n")).collect();
    root.cmd(&["svlogd", "-tt"])
        .arg(&dir)
        .write_stdin(input)
        .timeout(DEADLINE)
        .assert()
        .success();
}

fn logs(root: &Root, args: &[&str]) -> String {
    let out = root.cmd(&[&["logs"], args].concat()).output().unwrap();
    assert!(
        out.status.success(),
        "logs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty());
    String::from_utf8(out.stdout).unwrap()
}

/// The lines with their svlogd `-tt` timestamps (shown as written) checked and removed.
fn payloads(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            let l = l.strip_prefix(prefix).unwrap_or_else(|| panic!("{l:?}"));
            assert_eq!(&l[10..11], "_", "timestamp as written: {l:?}");
            l[26..].to_string()
        })
        .collect()
}

#[test]
fn tail_reaches_back_into_rotated_files() {
    let root = Root::new();
    // s300: current holds only a few lines, the rest are in rotated files.
    log_lines(&root, "web", "s300\nn20\n", 50);
    let want: Vec<String> = (30..50).map(|i| format!("web line {i}")).collect();
    assert_eq!(payloads(&logs(&root, &["web"]), ""), want);
    assert_eq!(payloads(&logs(&root, &["-n", "3", "web"]), ""), want[17..]);
    assert_eq!(logs(&root, &["-n", "0", "web"]), "");
    // More than there is: everything kept, from the start of a line.
    let all = payloads(&logs(&root, &["-n", "1000", "web"]), "");
    assert!(all.len() > 20 && all.ends_with(&want), "{all:?}");
}

#[test]
fn several_services_are_prefixed_and_all_covers_every_one() {
    let root = Root::new();
    log_lines(&root, "web", "", 5);
    log_lines(&root, "worker", "", 5);
    fs::create_dir_all(root.var("service/quiet")).unwrap();
    let out = logs(&root, &["-n", "2", "web", "worker", "web"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(
        payloads(&lines[..2].join("\n"), "web    | "),
        ["web line 3", "web line 4"]
    );
    assert_eq!(
        payloads(&lines[2..].join("\n"), "worker | "),
        ["worker line 3", "worker line 4"]
    );
    // A service with no log yet shows nothing rather than failing.
    let out = logs(&root, &["--all", "-n", "1"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("web    | ") && lines[1].starts_with("worker | "));
}

#[test]
fn unknown_services_are_refused_with_the_known_ones() {
    let root = Root::new();
    log_lines(&root, "web", "", 1);
    log_lines(&root, "worker", "", 1);
    let out = root.cmd(&["logs", "web", "nope"]).output().unwrap();
    let err = one_line_error(&out);
    assert!(
        err.contains("\"nope\"") && err.contains("web, worker"),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    let empty = Root::new();
    let err = one_line_error(&empty.cmd(&["logs", "--all"]).output().unwrap());
    assert!(err.contains("there is no approuter in"), "{err}");
}

/// `approuter logs -f` with its stdout collected as it comes.
struct Follow {
    proc: Proc,
    out: Arc<Mutex<String>>,
}

impl Follow {
    fn start(root: &Root, args: &[&str]) -> Follow {
        let mut cmd = Command::new(approuter_exe());
        cmd.arg("--root")
            .arg(root.path())
            .args(["logs", "-f"])
            .args(args)
            .stdout(Stdio::piped());
        let mut proc = Proc::spawn(&mut cmd, &root.path().join("logs.err"));
        let mut stdout = proc.child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Follow { proc, out }
    }

    fn text(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn wait_for(&self, what: &str) {
        wait_for(DEADLINE, what, || self.text().contains(what));
    }

    /// Interrupts it and checks it ends quietly.
    fn stop(mut self, sig: Signal) -> String {
        self.proc.signal(sig);
        let st = self.proc.wait(DEADLINE);
        assert!(st.success(), "logs -f after {sig}: {st}");
        assert_eq!(self.proc.stderr(), "");
        self.text()
    }
}

#[test]
fn follow_goes_across_rotations_until_interrupted() {
    let root = Root::new();
    log_lines(&root, "web", "s300\nn100\n", 3);
    let dir = root.var("log/web");
    let follow = Follow::start(&root, &["-n", "2", "web"]);
    follow.wait_for("web line 2\n");
    let mut logger = Proc::spawn(
        Command::new(approuter_exe())
            .args(["svlogd", "-tt"])
            .arg(&dir),
        &root.path().join("svlogd.err"),
    );
    // In batches, each seen before the next is written, so -f meets many rotations (s300).
    for batch in 0..10 {
        let lines: String = (0..10)
            .map(|i| format!("web new {}\n", batch * 10 + i))
            .collect();
        logger.write(lines.as_bytes());
        follow.wait_for(&format!("web new {}\n", batch * 10 + 9));
    }
    // A burst: many rotations between two looks, each file must still be shown, in order.
    let burst: String = (100..400).map(|i| format!("web new {i}\n")).collect();
    logger.write(burst.as_bytes());
    follow.wait_for("web new 399\n");
    let rotations = fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('@')
        })
        .count();
    assert!(rotations >= 40, "only {rotations} rotations");
    let text = follow.stop(Signal::SIGTERM);
    let want: Vec<String> = ["web line 1".to_string(), "web line 2".to_string()]
        .into_iter()
        .chain((0..400).map(|i| format!("web new {i}")))
        .collect();
    assert_eq!(payloads(&text, ""), want, "every line once, in order");
    logger.close_stdin();
    assert!(logger.wait(DEADLINE).success());

    // Several services, and SIGINT (Ctrl-C).
    log_lines(&root, "worker", "", 1);
    let follow = Follow::start(&root, &["--all", "-n", "1"]);
    follow.wait_for("worker | ");
    let text = follow.stop(Signal::SIGINT);
    assert_eq!(
        payloads(text.lines().next().unwrap(), "web    | "),
        ["web new 399"]
    );
}
