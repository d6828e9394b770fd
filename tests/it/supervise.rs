//! The embedded supervisor against the real runit and daemontools clients, and against runit's own runsvdir.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{
    kill_everything_under, processes_under, signal, wait_until, write_exec, Root, Signal, Svscan,
};

/// A scan directory with services made for comparison: `s1` (with a log), `s2` (normally down,
/// with a finish), `s3` (no log).
fn make_services(dir: &Path, marker: &str) {
    write_exec(
        &dir.join("s1/run"),
        &format!("#!/bin/sh\necho s1 up\nexec sleep 1000.{marker}1\n"),
    );
    write_exec(&dir.join("s1/log/run"), "#!/bin/sh\nexec cat > ../out\n");
    write_exec(
        &dir.join("s2/run"),
        &format!("#!/bin/sh\nexec sleep 1000.{marker}2\n"),
    );
    write_exec(
        &dir.join("s2/finish"),
        "#!/bin/sh\necho \"$@\" >> finish.args\n",
    );
    fs::write(dir.join("s2/down"), "").unwrap();
    write_exec(
        &dir.join("s3/run"),
        &format!("#!/bin/sh\nexec sleep 1000.{marker}3\n"),
    );
}

fn run_in(dir: &Path, prog: &str, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{prog} (install runit and daemontools): {e}"))
}

/// Digits vary between runs (pids, ages): compare the words.
fn normalize(o: &Output) -> String {
    let text = format!(
        "{}|{}|rc={}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        o.status.code().unwrap_or(-1)
    );
    let mut out = String::new();
    let mut in_digits = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out
}

/// runit's own `runsvdir -P`, ended when dropped: HUP makes it TERM every runsv, which stops
/// its service and exits.
struct Runsvdir {
    child: std::process::Child,
    dir: PathBuf,
}

impl Runsvdir {
    fn start(dir: &Path) -> Runsvdir {
        let child = Command::new("runsvdir")
            .arg("-P")
            .arg(dir)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("runsvdir (apt-get install runit)");
        Runsvdir {
            child,
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Runsvdir {
    fn drop(&mut self) {
        signal(self.child.id(), Signal::SIGHUP);
        let _ = self.child.wait();
        let dir = self.dir.clone();
        wait_until(10.0, || processes_under(&dir).is_empty());
        kill_everything_under(&self.dir);
    }
}

fn svok(dir: &Path, svc: &str) -> bool {
    run_in(dir, "svok", &[svc]).status.success()
}

/// The same client commands, in the same order, on runit's runsvdir and on approuter svscan:
/// the answers must be the same up to pids and ages.
#[test]
fn real_clients_answer_the_same_as_with_runit() {
    let root = Root::new();
    let ours = root.path().join("ours");
    let theirs = root.path().join("theirs");
    make_services(&ours, "1");
    make_services(&theirs, "2");
    let _svscan = Svscan::start(&ours);
    let _runsvdir = Runsvdir::start(&theirs);
    for dir in [&ours, &theirs] {
        assert!(
            wait_until(10.0, || ["s1", "s2", "s3"].iter().all(|s| svok(dir, s))
                && run_in(dir, "sv", &["status", "./s1"])
                    .stdout
                    .starts_with(b"run: ./s1")),
            "{} never came up",
            dir.display()
        );
    }

    // Each step: a client and its arguments; `sv -w` waits for the state, so the answers settle.
    let steps: &[(&str, &[&str])] = &[
        ("sv", &["status", "./s1", "./s2", "./s3"]),
        ("svstat", &["s1", "s1/log", "s2", "s3"]),
        ("svok", &["s1"]),
        ("sv", &["-w", "7", "down", "./s1"]),
        ("sv", &["status", "./s1"]),
        ("svstat", &["s1"]),
        ("sv", &["-w", "7", "up", "./s1"]),
        ("sv", &["-w", "7", "once", "./s2"]),
        ("sv", &["status", "./s2"]),
        ("sv", &["-w", "7", "down", "./s2"]),
        ("sv", &["status", "./s2"]),
        ("sv", &["pause", "./s3"]),
        ("sv", &["status", "./s3"]),
        ("svstat", &["s3"]),
        ("sv", &["cont", "./s3"]),
        ("sv", &["status", "./s3"]),
        ("sv", &["-w", "7", "term", "./s3"]),
        ("sv", &["-w", "7", "kill", "./s3"]),
        ("sv", &["-w", "7", "up", "./s3"]),
        ("sv", &["-w", "9", "restart", "./s1"]),
        ("svc", &["-d", "s3"]),
        ("svc", &["-bogus", "s3"]),
        ("sv", &["status", "./nosuch"]),
        ("svstat", &["nosuch"]),
        ("svc", &["-u", "nosuch"]),
    ];
    for (prog, args) in steps {
        let a = run_in(&ours, prog, args);
        let b = run_in(&theirs, prog, args);
        // svc returns at once: give both supervisors the same moment to act before the next step.
        if *prog == "svc" {
            for dir in [&ours, &theirs] {
                wait_until(5.0, || {
                    run_in(dir, "sv", &["status", "./s3"])
                        .stdout
                        .starts_with(b"down")
                });
            }
        }
        assert_eq!(
            normalize(&a),
            normalize(&b),
            "`{prog} {}` differs: approuter above, runit below",
            args.join(" ")
        );
    }

    // svc -u/-h/-k and the restart they cause, seen through svstat on both.
    for dir in [&ours, &theirs] {
        run_in(dir, "svc", &["-u", "s3"]);
        assert!(wait_until(5.0, || String::from_utf8_lossy(
            &run_in(dir, "svstat", &["s3"]).stdout
        )
        .contains(": up (pid")));
        let pid = |d: &Path| fs::read_to_string(d.join("s3/supervise/pid")).unwrap();
        let before = pid(dir);
        run_in(dir, "svc", &["-k", "s3"]);
        assert!(
            wait_until(5.0, || {
                let p = pid(dir);
                !p.is_empty() && p != before
            }),
            "{}: svc -k did not lead to a new pid",
            dir.display()
        );
    }

    // finish gets runit's arguments: s2 was stopped by TERM (-1 15), after the once it ran.
    let args_ours = fs::read_to_string(ours.join("s2/finish.args")).unwrap();
    let args_theirs = fs::read_to_string(theirs.join("s2/finish.args")).unwrap();
    assert_eq!(args_ours, args_theirs);
    assert_eq!(args_ours.trim(), "-1 15");

    // The same bytes in the status files' stable fields, and the same stat text.
    for svc in ["s1", "s2", "s3", "s1/log"] {
        let a = fs::read(ours.join(svc).join("supervise/status")).unwrap();
        let b = fs::read(theirs.join(svc).join("supervise/status")).unwrap();
        assert_eq!(a.len(), 20);
        assert_eq!(a[16..], b[16..], "{svc}: paused/want/term/state bytes");
        let sa = fs::read_to_string(ours.join(svc).join("supervise/stat")).unwrap();
        let sb = fs::read_to_string(theirs.join(svc).join("supervise/stat")).unwrap();
        assert_eq!(sa, sb, "{svc}: stat");
    }

    // File types and modes of supervise/, as runit makes them.
    for name in ["", "/lock", "/control", "/ok", "/status", "/stat", "/pid"] {
        let mode = |d: &Path| {
            use std::os::unix::fs::{FileTypeExt, PermissionsExt};
            let m = fs::metadata(format!("{}/s1/supervise{name}", d.display())).unwrap();
            (
                m.permissions().mode() & 0o7777,
                m.file_type().is_fifo(),
                m.is_dir(),
            )
        };
        assert_eq!(mode(&ours), mode(&theirs), "supervise{name}");
    }

    // exit: both supervisors let go of the service.
    let a = run_in(&ours, "sv", &["-w", "7", "exit", "./s3"]);
    let b = run_in(&theirs, "sv", &["-w", "7", "exit", "./s3"]);
    assert_eq!(normalize(&a), normalize(&b));
    assert_eq!(run_in(&ours, "svok", &["s3"]).status.code(), Some(100));
}
