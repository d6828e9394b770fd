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
        &format!("#!/bin/sh\necho s1 up\nexec sleep 711.{marker}1\n"),
    );
    write_exec(&dir.join("s1/log/run"), "#!/bin/sh\nexec cat > ../out\n");
    write_exec(
        &dir.join("s2/run"),
        &format!("#!/bin/sh\nexec sleep 711.{marker}2\n"),
    );
    write_exec(
        &dir.join("s2/finish"),
        "#!/bin/sh\necho \"$@\" >> finish.args\n",
    );
    fs::write(dir.join("s2/down"), "").unwrap();
    write_exec(
        &dir.join("s3/run"),
        &format!("#!/bin/sh\nexec sleep 711.{marker}3\n"),
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
        ("sv", &["-w", "7", "pause", "./s3"]),
        ("sv", &["status", "./s3"]),
        ("svstat", &["s3"]),
        ("sv", &["-w", "7", "cont", "./s3"]),
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
        // runsv writes `pid` before `status`, so a new pid alone does not mean the status
        // file says so yet: wait until svstat, which reads `status`, reports the new pid up.
        assert!(
            wait_until(5.0, || {
                let p = pid(dir);
                !p.is_empty()
                    && p != before
                    && String::from_utf8_lossy(&run_in(dir, "svstat", &["s3"]).stdout)
                        .contains(&format!(": up (pid {}", p.trim()))
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

    // exit: svscan lets go of the service and keeps it released. (runsvdir instead starts a
    // new runsv as soon as the old one exits, so sv may or may not see it gone: not compared.)
    let a = run_in(&ours, "sv", &["-w", "7", "exit", "./s3"]);
    assert_eq!(normalize(&a), "ok: ./sN: runsv not running\n||rc=N");
    assert_eq!(run_in(&ours, "svok", &["s3"]).status.code(), Some(100));
}

/// Pids of processes whose command line contains `needle`.
fn pids_with(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd)
                .replace('\0', " ")
                .contains(needle)
            {
                pids.push(pid);
            }
        }
    }
    pids
}

fn read_pid(dir: &Path, svc: &str) -> Option<u32> {
    fs::read_to_string(dir.join(svc).join("supervise/pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn scan_dir(root: &Root) -> PathBuf {
    let dir = root.path().join("sv");
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn killed_service_restarts_with_a_new_pid_and_both_runs_logged() {
    let root = Root::new();
    let dir = scan_dir(&root);
    write_exec(
        &dir.join("a/run"),
        "#!/bin/sh\necho \"run $$\"\nexec sleep 701.1\n",
    );
    write_exec(&dir.join("a/log/run"), "#!/bin/sh\nexec cat >> ../out\n");
    let _sv = Svscan::start(&dir);
    assert!(wait_until(10.0, || read_pid(&dir, "a").is_some()));
    let first = read_pid(&dir, "a").unwrap();
    // Up for a while, so the restart is immediate.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    signal(first, Signal::SIGKILL);
    assert!(
        wait_until(5.0, || read_pid(&dir, "a").is_some_and(|p| p != first)),
        "no restart"
    );
    let second = read_pid(&dir, "a").unwrap();
    let out = dir.join("a/out");
    assert!(
        wait_until(5.0, || {
            let text = fs::read_to_string(&out).unwrap_or_default();
            text.contains(&format!("run {first}\n")) && text.contains(&format!("run {second}\n"))
        }),
        "log lacks a run: {:?}",
        fs::read_to_string(&out)
    );
    assert_eq!(pids_with("sleep 701.1").len(), 1, "exactly one copy");
}

#[test]
fn forking_start_script_leaves_nothing_after_stop() {
    let root = Root::new();
    let dir = root.managed().join("var/service");
    write_exec(
        &dir.join("forker/run"),
        "#!/bin/sh\n(sleep 702.1 &)\nsleep 702.2 &\nexec sleep 702.3\n",
    );
    let _sv = Svscan::start(&dir);
    assert!(
        wait_until(10.0, || pids_with("sleep 702.").len() == 3),
        "three sleeps"
    );
    let out = root.cmd(&["stop", "forker"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("[+ .++ ---]  forker"));
    assert!(
        wait_until(5.0, || pids_with("sleep 702.").is_empty()),
        "left: {:?}",
        pids_with("sleep 702.")
    );

    // When ./run itself exits, its stray children are ended before the restart.
    let out = root.cmd(&["start", "forker"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_until(10.0, || pids_with("sleep 702.").len() == 3));
    let main = read_pid(&dir, "forker").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    signal(main, Signal::SIGKILL);
    assert!(wait_until(5.0, || read_pid(&dir, "forker").is_some_and(|p| p != main)));
    assert!(
        wait_until(5.0, || pids_with("sleep 702.").len() == 3),
        "one generation only: {:?}",
        pids_with("sleep 702.")
    );
}

#[test]
fn crash_loop_backs_off_costs_little_and_shows_in_status() {
    let root = Root::new();
    let dir = root.managed().join("var/service");
    write_exec(
        &dir.join("crash/run"),
        "#!/bin/sh\necho start >> ../starts\nexit 1\n",
    );
    write_exec(&dir.join("fine/run"), "#!/bin/sh\nexec sleep 703.1\n");
    let sv = Svscan::start(&dir);
    let starts = || {
        fs::read_to_string(dir.join("starts"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert!(wait_until(5.0, || starts() >= 1));
    let t0 = cpu_ticks(sv.pid());
    let begin = std::time::Instant::now();
    // Starts at 0, 1, 3, 7 s: four in eight seconds, where runsv would make eight.
    wait_until(8.5, || false);
    let n = starts();
    assert!((3..=5).contains(&n), "{n} starts in 8.5 s");
    let used = cpu_ticks(sv.pid()) - t0;
    let hz = 100.0;
    let share = used as f64 / hz / begin.elapsed().as_secs_f64();
    assert!(share < 0.02, "svscan used {:.1}% of a core", share * 100.0);

    let out = root.cmd(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a crash loop is not as wanted: {text}"
    );
    let crash = text.lines().find(|l| l.contains(" crash ")).unwrap();
    assert!(
        crash.starts_with("[+ !++ ---]  crash  uptime: -/-"),
        "{crash}"
    );
    assert!(crash.contains("crash loop: exit 1"), "{crash}");
    let fine = text.lines().find(|l| l.contains(" fine ")).unwrap();
    assert!(fine.starts_with("[+ +++ ---]  fine   uptime: "), "{fine}");
}

#[test]
fn run_that_is_not_executable_is_reported_and_others_keep_going() {
    let root = Root::new();
    let dir = root.managed().join("var/service");
    write_exec(&dir.join("broken/run"), "#!/bin/sh\nexec sleep 704.1\n");
    fs::set_permissions(
        dir.join("broken/run"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    write_exec(
        &dir.join("broken/log/run"),
        "#!/bin/sh\nexec cat >> ../out\n",
    );
    write_exec(&dir.join("ok/run"), "#!/bin/sh\nexec sleep 704.2\n");
    let _sv = Svscan::start(&dir);
    let out = dir.join("broken/out");
    assert!(
        wait_until(5.0, || fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("unable to start ./run: Permission denied")),
        "log: {:?}",
        fs::read_to_string(&out)
    );
    assert!(wait_until(5.0, || pids_with("sleep 704.2").len() == 1));
    let st = root.cmd(&["status", "broken"]).output().unwrap();
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.starts_with("[+ !++ +++]  broken"), "{text}");
    assert!(text.contains("not started"), "{text}");
}

#[test]
fn second_svscan_is_refused_and_sigterm_leaves_nothing() {
    let root = Root::new();
    let dir = scan_dir(&root);
    write_exec(
        &dir.join("a/run"),
        "#!/bin/sh\nsleep 705.1 &\nexec sleep 705.2\n",
    );
    write_exec(&dir.join("a/log/run"), "#!/bin/sh\nexec cat >> ../out\n");
    write_exec(
        &dir.join("stubborn/run"),
        "#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 0.1; done\n",
    );
    let mut sv = Svscan::start(&dir);
    assert!(wait_until(10.0, || pids_with("sleep 705.").len() == 2));
    let second = crate::util::approuter()
        .args(["svscan"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("already supervised by another approuter svscan"),
        "{err}"
    );
    // A service directory locked by another supervisor is refused too.
    let lone = root.path().join("lone");
    write_exec(&lone.join("x/run"), "#!/bin/sh\nexec sleep 706.1\n");
    let mut other = Svscan::start(&lone);
    assert!(wait_until(10.0, || pids_with("sleep 706.1").len() == 1));
    let other_dir = root.path().join("other");
    fs::create_dir_all(&other_dir).unwrap();
    std::os::unix::fs::symlink(lone.join("x"), other_dir.join("x")).unwrap();
    let third = Svscan::start(&other_dir);
    assert!(
        wait_until(5.0, || third.output().contains("already supervised")),
        "{}",
        third.output()
    );
    assert_eq!(pids_with("sleep 706.1").len(), 1);
    drop(third);
    other.terminate(10.0).expect("exits");

    // SIGTERM: every service down (the stubborn one killed after the grace), then exit 0.
    let status = sv.terminate(15.0).expect("svscan exits after SIGTERM");
    assert!(status.success(), "{status:?}: {}", sv.output());
    assert!(
        processes_under(&dir).is_empty(),
        "left: {:?}",
        processes_under(&dir)
    );
    assert!(pids_with("sleep 705.").is_empty());
    assert_eq!(run_in(&dir, "svok", &["a"]).status.code(), Some(100));
}

#[test]
fn killed_svscan_then_new_one_makes_no_duplicates() {
    let root = Root::new();
    let dir = scan_dir(&root);
    write_exec(
        &dir.join("a/run"),
        "#!/bin/sh\nsleep 707.1 &\necho \"run $$\"\nexec sleep 707.2\n",
    );
    write_exec(&dir.join("a/log/run"), "#!/bin/sh\nexec cat >> ../out\n");
    let mut sv = Svscan::start(&dir);
    assert!(wait_until(10.0, || pids_with("sleep 707.").len() == 2));
    let old = read_pid(&dir, "a").unwrap();
    sv.child.kill().unwrap();
    sv.child.wait().unwrap();
    // Services outlive a killed supervisor...
    assert_eq!(pids_with("sleep 707.").len(), 2);
    // ...and the next one ends them before starting its own.
    let _sv2 = Svscan::start(&dir);
    assert!(wait_until(10.0, || read_pid(&dir, "a").is_some_and(|p| p != old)));
    assert!(
        wait_until(5.0, || pids_with("sleep 707.").len() == 2),
        "{:?}",
        pids_with("sleep 707.")
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        pids_with("sleep 707.").len(),
        2,
        "duplicates: {:?}",
        pids_with("sleep 707.")
    );
    let new = read_pid(&dir, "a").unwrap();
    assert!(wait_until(5.0, || {
        let text = fs::read_to_string(dir.join("a/out")).unwrap_or_default();
        text.contains(&format!("run {old}\n")) && text.contains(&format!("run {new}\n"))
    }));
}

#[test]
fn status_start_stop_and_removal() {
    let root = Root::new();
    let dir = root.managed().join("var/service");
    write_exec(&dir.join("alpha/run"), "#!/bin/sh\nexec sleep 708.1\n");
    write_exec(
        &dir.join("alpha/log/run"),
        "#!/bin/sh\nexec cat >> ../out\n",
    );
    write_exec(
        &dir.join("beta-long-name/run"),
        "#!/bin/sh\nexec sleep 708.2\n",
    );
    write_exec(&dir.join("gamma/run"), "#!/bin/sh\nexec sleep 708.3\n");
    fs::write(dir.join("gamma/down"), "").unwrap();
    let out = root.cmd(&["status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("[- --- ---]  alpha           uptime: -/-  pids: -/-  not supervised"));

    let sv = Svscan::start(&dir);
    assert!(wait_until(10.0, || root
        .cmd(&["status"])
        .output()
        .unwrap()
        .status
        .success()));
    let out = root.cmd(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let (a, l) = (
        read_pid(&dir, "alpha").unwrap(),
        read_pid(&dir.join("alpha"), "log").unwrap(),
    );
    assert!(
        lines[0].starts_with("[+ +++ +++]  alpha           uptime: "),
        "{text}"
    );
    assert!(lines[0].ends_with(&format!("pids: {a}/{l}")), "{text}");
    assert!(
        lines[1].starts_with("[+ +++ ---]  beta-long-name  uptime: "),
        "{text}"
    );
    assert!(
        lines[2].starts_with("[+ .++ ---]  gamma           uptime: -/-  pids: -/-"),
        "{text}"
    );

    let json = root.cmd(&["status", "--json", "alpha"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[0]["name"], "alpha");
    assert_eq!(v[0]["main"]["pid"], a);
    assert_eq!(v[0]["log"]["state"], "run");

    let out = root.cmd(&["start", "gamma"]).output().unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("[+ !++ ---]  gamma")
            || read_pid(&dir, "gamma").is_some()
    );
    let out = root
        .cmd(&["stop", "alpha", "beta-long-name"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("[+ .++ +++]  alpha"), "{text}");
    assert!(text.contains("[+ .++ ---]  beta-long-name"), "{text}");

    let out = root.cmd(&["stop", "nosuch"]).output().unwrap();
    let err = crate::util::one_line_error(&out);
    assert!(
        err.contains("unknown service `nosuch`; known services: alpha, beta-long-name, gamma"),
        "{err}"
    );

    // A removed directory is brought down and forgotten (at once on SIGHUP).
    fs::rename(dir.join("gamma"), root.path().join("gamma.gone")).unwrap();
    signal(sv.pid(), Signal::SIGHUP);
    assert!(wait_until(5.0, || pids_with("sleep 708.3").is_empty()));
    // A new directory is taken at the next scan.
    write_exec(&dir.join("delta/run"), "#!/bin/sh\nexec sleep 708.4\n");
    signal(sv.pid(), Signal::SIGHUP);
    assert!(wait_until(5.0, || pids_with("sleep 708.4").len() == 1));
}

#[test]
fn exit_to_every_service_ends_svscan() {
    let root = Root::new();
    let dir = scan_dir(&root);
    write_exec(&dir.join("a/run"), "#!/bin/sh\nexec sleep 709.1\n");
    write_exec(&dir.join("a/log/run"), "#!/bin/sh\nexec cat >> ../out\n");
    write_exec(&dir.join("b/run"), "#!/bin/sh\nexec sleep 709.2\n");
    let mut sv = Svscan::start(&dir);
    assert!(wait_until(10.0, || svok(&dir, "a") && svok(&dir, "b")));
    assert!(run_in(&dir, "sv", &["-w", "7", "exit", "./a", "./b"])
        .status
        .success());
    let mut status = None;
    assert!(
        wait_until(10.0, || {
            status = sv.child.try_wait().unwrap();
            status.is_some()
        }),
        "svscan still running: {}",
        sv.output()
    );
    assert!(status.unwrap().success());
    assert!(processes_under(&dir).is_empty());
}

#[test]
fn services_start_with_default_signals_whatever_svscan_inherited() {
    let root = Root::new();
    let dir = scan_dir(&root);
    write_exec(&dir.join("a/run"), "#!/bin/sh\nexec sleep 710.1\n");
    // A shell's background job or nohup hands svscan ignored signals.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("trap '' INT QUIT HUP; exec \"$0\" svscan \"$1\"")
        .arg(assert_cmd::cargo::cargo_bin("approuter"))
        .arg(&dir)
        .current_dir(&dir)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(10.0, || read_pid(&dir, "a").is_some()));
    let status =
        fs::read_to_string(format!("/proc/{}/status", read_pid(&dir, "a").unwrap())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(
        u64::from_str_radix(&field("SigBlk:"), 16).unwrap(),
        0,
        "blocked signals"
    );
    assert_eq!(
        u64::from_str_radix(&field("SigIgn:"), 16).unwrap() & 0x7fff_ffff,
        0,
        "ignored standard signals"
    );
    signal(child.id(), Signal::SIGTERM);
    assert!(wait_until(15.0, || child.try_wait().unwrap().is_some()));
}
