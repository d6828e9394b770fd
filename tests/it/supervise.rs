//! The embedded supervisor against the real runit and daemontools clients, and against runit's own runsvdir.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{
    kill_everything_under, numbers_as_n, processes_under, secs, settle, signal, wait_for,
    write_exec, Root, Signal, Svscan,
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
    numbers_as_n(&text)
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
        settle(secs(10), || processes_under(&dir).is_empty());
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
        wait_for(secs(10), &format!("{} to come up", dir.display()), || {
            ["s1", "s2", "s3"].iter().all(|s| svok(dir, s))
                && run_in(dir, "sv", &["status", "./s1"])
                    .stdout
                    .starts_with(b"run: ./s1")
        });
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
        // svc returns at once: both supervisors must have acted before the next step. Every
        // svc step here leaves s3 down (-d brings it down, the others do nothing to it).
        if *prog == "svc" {
            for dir in [&ours, &theirs] {
                wait_for(secs(5), &format!("s3 down in {}", dir.display()), || {
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
        wait_for(secs(5), "svstat to report s3 up", || {
            String::from_utf8_lossy(&run_in(dir, "svstat", &["s3"]).stdout).contains(": up (pid")
        });
        let pid = |d: &Path| fs::read_to_string(d.join("s3/supervise/pid")).unwrap();
        let before = pid(dir);
        run_in(dir, "svc", &["-k", "s3"]);
        // runsv writes `pid` before `status`, so a new pid alone does not mean the status
        // file says so yet: wait until svstat, which reads `status`, reports the new pid up.
        wait_for(
            secs(5),
            &format!("{}: a new pid after svc -k", dir.display()),
            || {
                let p = pid(dir);
                !p.is_empty()
                    && p != before
                    && String::from_utf8_lossy(&run_in(dir, "svstat", &["s3"]).stdout)
                        .contains(&format!(": up (pid {}", p.trim()))
            },
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

    // exit: the service goes down and is let go; then, as runsvdir starts a new runsv as soon
    // as the old one exits, svscan takes it up again at once (so whether sv sees it gone in
    // between is a race on both: not compared).
    let before = read_pid(&ours, "s3");
    let _ = run_in(&ours, "sv", &["-w", "7", "exit", "./s3"]);
    wait_for(secs(5), "s3 taken up again with a new process", || {
        svok(&ours, "s3") && read_pid(&ours, "s3").is_some_and(|p| Some(p) != before)
    });
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

/// Waits until `sv status` says the service has been up a second or more: from then on, an end
/// of it is not a quick exit, and it restarts at once.
fn up_a_second(dir: &Path, svc: &str) {
    wait_for(secs(5), &format!("{svc} to be up a second"), || {
        let text =
            String::from_utf8_lossy(&run_in(dir, "sv", &["status", &format!("./{svc}")]).stdout)
                .into_owned();
        // run: ./a: (pid 123) 4s; ...
        let age = text
            .split(") ")
            .nth(1)
            .and_then(|rest| rest.split('s').next())
            .and_then(|n| n.parse::<u64>().ok());
        if age.is_some_and(|a| a >= 1) {
            Ok(())
        } else {
            Err(text)
        }
    });
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
    wait_for(secs(10), "a to run", || read_pid(&dir, "a").is_some());
    let first = read_pid(&dir, "a").unwrap();
    // Up for a second, so the restart is immediate rather than held back as a crash.
    up_a_second(&dir, "a");
    signal(first, Signal::SIGKILL);
    wait_for(secs(5), "a new pid for a", || {
        read_pid(&dir, "a").is_some_and(|p| p != first)
    });
    let second = read_pid(&dir, "a").unwrap();
    let out = dir.join("a/out");
    wait_for(secs(5), "both runs in the log", || {
        let text = fs::read_to_string(&out).unwrap_or_default();
        if text.contains(&format!("run {first}\n")) && text.contains(&format!("run {second}\n")) {
            Ok(())
        } else {
            Err(text)
        }
    });
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
    wait_for(secs(10), "three sleeps", || {
        pids_with("sleep 702.").len() == 3
    });
    let out = root.cmd(&["stop", "forker"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("[+ ... ---]  forker"));
    wait_for(secs(5), "every sleep to end", || {
        let left = pids_with("sleep 702.");
        left.is_empty()
            .then_some(())
            .ok_or(format!("left: {left:?}"))
    });

    // When ./run itself exits, its stray children are ended before the restart.
    let out = root.cmd(&["start", "forker"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(secs(10), "three sleeps again", || {
        pids_with("sleep 702.").len() == 3
    });
    let main = read_pid(&dir, "forker").unwrap();
    up_a_second(&dir, "forker");
    let old_sleeps = pids_with("sleep 702.");
    signal(main, Signal::SIGKILL);
    wait_for(secs(5), "a new pid for forker", || {
        read_pid(&dir, "forker").is_some_and(|p| p != main)
    });
    // The old generation is gone (ended before the restart), and a new one runs: only one.
    wait_for(secs(5), "exactly one generation of sleeps", || {
        let now = pids_with("sleep 702.");
        if now.len() == 3 && now.iter().all(|p| !old_sleeps.contains(p)) {
            Ok(())
        } else {
            Err(format!("old {old_sleeps:?}, now {now:?}"))
        }
    });
}

/// Start times of a crash-looping service, as it wrote them.
fn start_times(file: &Path) -> Vec<f64> {
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn crash_loop_backs_off_and_shows_in_status() {
    let root = Root::new();
    let dir = root.managed().join("var/service");
    write_exec(
        &dir.join("crash/run"),
        "#!/bin/sh\ndate +%s.%N >> ../starts\nexit 1\n",
    );
    write_exec(&dir.join("fine/run"), "#!/bin/sh\nexec sleep 703.1\n");
    let _sv = Svscan::start(&dir);
    // Starts at 0, 1 and 3 s: the wait doubles (the whole policy is table-tested in policy.rs;
    // what it costs is measured by bench/supervise.py).
    let starts = dir.join("starts");
    wait_for(secs(10), "three starts of the crash loop", || {
        start_times(&starts).len() >= 3
    });
    let t = start_times(&starts);
    let (first_wait, second_wait) = (t[1] - t[0], t[2] - t[1]);
    assert!(
        (0.9..1.9).contains(&first_wait) && (1.9..3.5).contains(&second_wait),
        "waits between starts: {first_wait:.2}s then {second_wait:.2}s"
    );

    let out = root.cmd(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a crash loop is not as wanted: {text}"
    );
    let crash = text.lines().find(|l| l.contains(" crash ")).unwrap();
    assert!(
        crash.starts_with("[+ !.. ---]  crash  uptime: -s/-s  pids: -/-"),
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
    wait_for(secs(5), "the reason in broken's log", || {
        let text = fs::read_to_string(&out).unwrap_or_default();
        if text.contains("unable to start ./run: Permission denied") {
            Ok(())
        } else {
            Err(text)
        }
    });
    wait_for(secs(5), "ok to run", || pids_with("sleep 704.2").len() == 1);
    // Its logger shown up once it has run a second (perpls's rule).
    wait_for(secs(5), "broken's panel", || {
        let st = root.cmd(&["status", "broken"]).output().unwrap();
        let text = String::from_utf8_lossy(&st.stdout).into_owned();
        if text.starts_with("[+ !.. +++]  broken") && text.contains("not started") {
            Ok(())
        } else {
            Err(text)
        }
    });
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
    wait_for(secs(10), "a's two sleeps", || {
        pids_with("sleep 705.").len() == 2
    });
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
    wait_for(secs(10), "x to run", || pids_with("sleep 706.1").len() == 1);
    let other_dir = root.path().join("other");
    fs::create_dir_all(&other_dir).unwrap();
    std::os::unix::fs::symlink(lone.join("x"), other_dir.join("x")).unwrap();
    let third = Svscan::start(&other_dir);
    wait_for(secs(5), "the third svscan to refuse x", || {
        let text = third.output();
        text.contains("already supervised")
            .then_some(())
            .ok_or(text)
    });
    assert_eq!(pids_with("sleep 706.1").len(), 1);
    drop(third);
    other.terminate(secs(10)).expect("exits");

    // SIGTERM: every service down (the stubborn one killed after the grace), then exit 0.
    let status = sv.terminate(secs(15)).expect("svscan exits after SIGTERM");
    assert!(status.success(), "{status:?}: {}", sv.output());
    assert!(
        processes_under(&dir).is_empty(),
        "left: {:?}",
        processes_under(&dir)
    );
    assert!(pids_with("sleep 705.").is_empty());
    assert_eq!(run_in(&dir, "svok", &["a"]).status.code(), Some(100));
}

/// Consecutive `tick N` lines of one writer, none missing or repeated: the numbers seen.
fn ticks_in(text: &str) -> Result<usize, String> {
    // A line still being written is not counted yet.
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    let nums: Vec<u64> = whole
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
        .collect();
    for (i, n) in nums.iter().enumerate() {
        if *n != i as u64 + 1 {
            return Err(format!("line {} says tick {n}", i + 1));
        }
    }
    Ok(nums.len())
}

#[test]
fn a_new_svscan_takes_over_what_a_killed_one_left_running() {
    let root = Root::new();
    let dir = scan_dir(&root);
    // a: a group of two, logging; b: a steady writer; c: loses its logger while no supervisor
    // runs; d: dies while no supervisor runs; e: has no log.
    write_exec(
        &dir.join("a/run"),
        "#!/bin/sh\nsleep 707.1 &\necho \"run $$\"\nexec sleep 707.2\n",
    );
    write_exec(
        &dir.join("b/run"),
        "#!/bin/sh\ni=0\nwhile :; do i=$((i+1)); echo \"tick $i\"; sleep 0.002; done\n",
    );
    write_exec(
        &dir.join("c/run"),
        "#!/bin/sh\ntrap 'echo \"usr1 $$\"' USR1\necho \"run $$\"\nwhile :; do sleep 707.4 & wait $!; done\n",
    );
    write_exec(
        &dir.join("d/run"),
        "#!/bin/sh\necho \"run $$\"\nexec sleep 707.5\n",
    );
    write_exec(&dir.join("e/run"), "#!/bin/sh\nexec sleep 707.3\n");
    for s in ["a", "b", "c", "d"] {
        write_exec(
            &dir.join(s).join("log/run"),
            "#!/bin/sh\nexec cat >> ../out\n",
        );
    }
    let mut sv = Svscan::start(&dir);
    wait_for(secs(10), "every service and log up", || {
        ["a", "b", "c", "d", "e"]
            .iter()
            .all(|s| read_pid(&dir, s).is_some())
            && ["a", "b", "c", "d"]
                .iter()
                .all(|s| read_pid(&dir.join(s), "log").is_some())
            && pids_with("sleep 707.").len() == 5
    });
    let before: Vec<(u32, Option<u32>)> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|s| (read_pid(&dir, s).unwrap(), read_pid(&dir.join(s), "log")))
        .collect();
    let sleeps = pids_with("sleep 707.");
    let uptime = |s: &str| -> u64 {
        let o = run_in(&dir, "sv", &["status", &format!("./{s}")]);
        let t = String::from_utf8_lossy(&o.stdout).into_owned();
        t.split(") ")
            .nth(1)
            .and_then(|r| r.split('s').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{t}"))
    };
    wait_for(secs(5), "a up for 2 s", || uptime("a") >= 2);

    sv.child.kill().unwrap();
    sv.child.wait().unwrap();
    // Services outlive a killed supervisor; meanwhile c's logger and d die.
    assert_eq!(pids_with("sleep 707."), sleeps);
    let (d_pid, _) = before[3];
    let (_, c_log) = before[2];
    signal(c_log.unwrap(), Signal::SIGKILL);
    signal(d_pid, Signal::SIGKILL);
    let gone = |pid: u32| {
        fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |t| {
            t.rsplit(") ").next().is_some_and(|r| r.starts_with('Z'))
        })
    };
    wait_for(secs(5), "c's logger and d gone", || {
        gone(c_log.unwrap()) && gone(d_pid)
    });
    let b_ticks = ticks_in(&fs::read_to_string(dir.join("b/out")).unwrap()).unwrap();

    let _sv2 = Svscan::start(&dir);
    // d was started again, and c's log: new pids.
    wait_for(secs(10), "new runs for d and c's log", || {
        read_pid(&dir, "d").is_some_and(|p| p != d_pid)
            && read_pid(&dir.join("c"), "log").is_some_and(|p| Some(p) != c_log)
    });
    // Everything else was taken over: the same processes, nothing started twice.
    for (i, s) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        if *s != "d" {
            assert_eq!(read_pid(&dir, s), Some(before[i].0), "{s}");
        }
        // d's logger read to the end of its input when d was gone (nobody else held the pipe)
        // and was started again with d.
        if !matches!(*s, "c" | "d" | "e") {
            assert_eq!(read_pid(&dir.join(s), "log"), before[i].1, "{s}/log");
        }
    }
    let now_sleeps = pids_with("sleep 707.");
    assert_eq!(now_sleeps.len(), 5, "{now_sleeps:?}");
    assert!(
        sleeps
            .iter()
            .filter(|&&p| p as u32 != d_pid)
            .all(|p| now_sleeps.contains(p)),
        "before {sleeps:?}, now {now_sleeps:?}"
    );
    // The uptime goes on from the first start, as sv and svstat read it.
    assert!(uptime("a") >= 2, "a's uptime restarted");
    let o = run_in(&dir, "svstat", &["a", "e"]);
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .matches(": up (pid ")
            .count()
            == 2,
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        _sv2.output()
            .contains(&format!("a: took over pid {}", before[0].0)),
        "{}",
        _sv2.output()
    );

    // c's output reaches its new logger through the pipe found again on c's stdout.
    assert!(run_in(&dir, "sv", &["1", "./c"]).status.success());
    let c_pid = before[2].0;
    wait_for(secs(5), "c's line after the take-over in its log", || {
        fs::read_to_string(dir.join("c/out")).is_ok_and(|t| t.contains(&format!("usr1 {c_pid}\n")))
    });
    // Each run logged once, b's lines all there exactly once.
    let a_out = fs::read_to_string(dir.join("a/out")).unwrap();
    assert_eq!(a_out.matches("run ").count(), 1, "{a_out}");
    wait_for(
        secs(10),
        "b's ticks going on across the take-over, each once",
        || match ticks_in(&fs::read_to_string(dir.join("b/out")).unwrap_or_default()) {
            Ok(n) if n > b_ticks + 200 => Ok(()),
            Ok(n) => Err(format!("{n} ticks, {b_ticks} at the kill")),
            Err(e) => Err(e),
        },
    );
    let d_out = fs::read_to_string(dir.join("d/out")).unwrap();
    assert_eq!(d_out.matches("run ").count(), 2, "{d_out}");

    // The runs taken over are supervised as any other: a stop ends a's whole group, an end
    // of e (not our child) is seen and e is started again.
    assert!(run_in(&dir, "sv", &["down", "./a"]).status.success());
    wait_for(secs(5), "a's group ended", || {
        pids_with("sleep 707.1").is_empty() && pids_with("sleep 707.2").is_empty()
    });
    signal(before[4].0, Signal::SIGKILL);
    wait_for(secs(5), "e started again", || {
        read_pid(&dir, "e").is_some_and(|p| p != before[4].0)
    });
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
        .contains("[- --- ---]  alpha           (service not activated)\n"));

    let sv = Svscan::start(&dir);
    // As it wants to be, and shown up: perpls shows a process up for less than a second as
    // not up yet.
    wait_for(secs(10), "every service as it wants to be", || {
        let o = root.cmd(&["status"]).output().unwrap();
        o.status.success() && String::from_utf8_lossy(&o.stdout).matches("[+ +++").count() == 2
    });
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
        lines[2].starts_with("[+ ... ---]  gamma           uptime: -s/-s  pids: -/-"),
        "{text}"
    );

    let json = root.cmd(&["status", "--json", "alpha"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[0]["name"], "alpha");
    assert_eq!(v[0]["main"]["pid"], a);
    assert_eq!(v[0]["log"]["state"], "run");

    // start waits until gamma runs, then shows it up.
    let out = root.cmd(&["start", "gamma"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("[+ +++ ---]  gamma"), "{text}");
    assert!(read_pid(&dir, "gamma").is_some(), "{text}");
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
    assert!(text.contains("[+ ... +++]  alpha"), "{text}");
    assert!(text.contains("[+ ... ---]  beta-long-name"), "{text}");

    let out = root.cmd(&["stop", "nosuch"]).output().unwrap();
    let err = crate::util::one_line_error(&out);
    assert!(
        err.contains("unknown service `nosuch`; known services: alpha, beta-long-name, gamma"),
        "{err}"
    );

    // A removed directory is brought down and forgotten (at once on SIGHUP).
    fs::rename(dir.join("gamma"), root.path().join("gamma.gone")).unwrap();
    signal(sv.pid(), Signal::SIGHUP);
    wait_for(secs(5), "the removed gamma to end", || {
        pids_with("sleep 708.3").is_empty()
    });
    // A new directory is taken at the next scan.
    write_exec(&dir.join("delta/run"), "#!/bin/sh\nexec sleep 708.4\n");
    signal(sv.pid(), Signal::SIGHUP);
    wait_for(secs(5), "the new delta to run", || {
        pids_with("sleep 708.4").len() == 1
    });
}

/// `x` releases a service, and svscan takes it again at once, as runsvdir starts a new runsv:
/// `sv exit` restarts the service's supervision, and never leaves it unsupervised.
#[test]
fn a_service_released_with_exit_is_taken_up_again() {
    let root = Root::new();
    let dir = scan_dir(&root);
    write_exec(&dir.join("a/run"), "#!/bin/sh\nexec sleep 709.1\n");
    write_exec(&dir.join("a/log/run"), "#!/bin/sh\nexec cat >> ../out\n");
    write_exec(&dir.join("b/run"), "#!/bin/sh\nexec sleep 709.2\n");
    let mut sv = Svscan::start(&dir);
    wait_for(secs(10), "a and b supervised", || {
        svok(&dir, "a") && svok(&dir, "b")
    });
    let before = (read_pid(&dir, "a"), read_pid(&dir, "b"));
    let _ = run_in(&dir, "sv", &["-w", "7", "exit", "./a", "./b"]);
    wait_for(
        secs(10),
        "a and b running again under new processes",
        || {
            let now = (read_pid(&dir, "a"), read_pid(&dir, "b"));
            svok(&dir, "a")
                && svok(&dir, "b")
                && now.0.is_some()
                && now.1.is_some()
                && now.0 != before.0
                && now.1 != before.1
        },
    );
    assert_eq!(pids_with("sleep 709.1").len(), 1);
    assert_eq!(pids_with("sleep 709.2").len(), 1);
    assert!(sv.child.try_wait().unwrap().is_none(), "svscan exited");
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
    wait_for(secs(10), "a to run", || read_pid(&dir, "a").is_some());
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
    wait_for(secs(15), "svscan to exit", || {
        child.try_wait().unwrap().is_some()
    });
}

#[test]
fn a_service_removed_and_put_back_runs_again_at_once() {
    let root = Root::new();
    let dir = scan_dir(&root);
    let make = |dir: &Path| {
        write_exec(&dir.join("a/run"), "#!/bin/sh\nexec sleep 712.1\n");
        write_exec(
            &dir.join("a/log/run"),
            "#!/bin/sh\nexec cat >> ../../a.out\n",
        );
    };
    make(&dir);
    let sv = Svscan::start(&dir);
    wait_for(secs(10), "a to run", || pids_with("sleep 712.1").len() == 1);
    // As sync removes an alternate and a later sync adds it back: the directory goes away in
    // one rename, then a new one appears under the same name.
    fs::rename(dir.join("a"), root.path().join("a.gone")).unwrap();
    signal(sv.pid(), Signal::SIGHUP);
    wait_for(secs(5), "the removed a to end", || {
        pids_with("sleep 712.1").is_empty()
    });
    make(&dir);
    signal(sv.pid(), Signal::SIGHUP);
    // Its logger had to drain first; then the new directory is taken at once, not at the next
    // full scan a minute later.
    wait_for(secs(5), "the new a to run", || {
        read_pid(&dir, "a").is_some() && pids_with("sleep 712.1").len() == 1
    });
}

/// The note of a past crash loop stays while it matters and goes once the service has run
/// well for 10 s: a healthy service is not shown with its old troubles.
#[test]
fn a_past_crash_loop_is_forgotten_once_the_service_runs_well() {
    let root = Root::new();
    let dir = root.managed().join("var/service");
    write_exec(
        &dir.join("flaky/run"),
        "#!/bin/sh\nn=$(cat ../n 2>/dev/null || echo 0)\necho $((n+1)) > ../n\n[ \"$n\" -ge 2 ] || exit 1\nexec sleep 711.1\n",
    );
    let _sv = Svscan::start(&dir);
    let status = || {
        let o = root.cmd(&["status", "flaky"]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    wait_for(
        secs(15),
        "flaky to run (a second) after its crashes",
        || pids_with("sleep 711.1").len() == 1 && status().starts_with("[+ +++ ---]"),
    );
    let text = status();
    assert!(
        text.starts_with("[+ +++ ---]  flaky") && text.contains("exit 1"),
        "the crashes are still news: {text}"
    );
    wait_for(secs(20), "the old note to go", || {
        let text = status();
        if text.starts_with("[+ +++ ---]  flaky") && text.trim_end().ends_with("/-") {
            Ok(())
        } else {
            Err(text)
        }
    });
}

/// CPU ticks (user + system) a process has used, from /proc/PID/stat.
fn cpu_ticks(pid: u32) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = text[text.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// A run the old svscan was stopping (TERM sent, KILL pending) when it was killed, that the new
/// one cannot take over (an older svscan recorded no pipe): it is ended, and svscan then
/// sleeps. (A stop deadline left behind once made it wake at once, forever.)
#[test]
fn a_run_given_up_in_the_middle_of_a_stop_leaves_svscan_idle() {
    let root = Root::new();
    let dir = scan_dir(&root);
    // TERM ignored, inherited by the sleep it execs: only KILL ends it.
    write_exec(
        &dir.join("a/run"),
        "#!/bin/sh\ntrap '' TERM\nexec sleep 709.1\n",
    );
    write_exec(&dir.join("a/log/run"), "#!/bin/sh\nexec cat >> ../out\n");
    let mut sv = Svscan::start_with_grace(&dir, 60);
    wait_for(secs(10), "a up", || pids_with("sleep 709.1").len() == 1);
    fs::write(dir.join("a/supervise/control"), "d").unwrap();
    wait_for(secs(5), "a told to stop", || {
        let o = run_in(&dir, "sv", &["status", "./a"]);
        String::from_utf8_lossy(&o.stdout).contains("got TERM")
    });
    sv.child.kill().unwrap();
    sv.child.wait().unwrap();
    // What an svscan from before pipes were recorded leaves: no log_pipe line.
    let extra = dir.join("a/log/supervise/extra");
    let text = fs::read_to_string(&extra).unwrap_or_default();
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with("log_pipe") && !l.starts_with("capture_pipe"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&extra, kept).unwrap();
    let sv2 = Svscan::start_with_grace(&dir, 1);
    wait_for(secs(10), "the old run ended (KILL after the grace)", || {
        pids_with("sleep 709.1").is_empty()
    });
    wait_for(secs(5), "a down", || {
        let o = run_in(&dir, "sv", &["status", "./a"]);
        String::from_utf8_lossy(&o.stdout).starts_with("down: ./a")
    });
    // Idle means asleep: over two seconds a spinning loop would use most of them.
    let before = cpu_ticks(sv2.pid());
    std::thread::sleep(std::time::Duration::from_secs(2));
    let used = cpu_ticks(sv2.pid()) - before;
    assert!(used < 20, "svscan used {used} ticks in 2 s while idle");
}
