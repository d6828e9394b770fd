//! The fault suite: kill -9 of every part, a crash loop, a full disk, syncs killed midway, damaged files and hostile input; service resumes and nothing is lost.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::app::{self, configure, get, out, AppRepo, Load, Ports};
use crate::util::{one_line_error, secs, snapshot, wait_for, Root, Tmpfs};

/// A started environment whose production app prints a numbered tick every 5 ms.
fn ticking(alternates: &[&str], health_timeout: u64) -> (Root, AppRepo, Ports) {
    let root = Root::new();
    let repo = AppRepo::new(&root);
    repo.commit("main", &[("TICK_MS", "5")], "tick");
    let ports = configure(&root, &repo.url(), alternates, health_timeout);
    (root, repo, ports)
}

fn start(root: &Root) -> std::process::Output {
    root.cmd(&["start"])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap()
}

/// (main pid, log pid) of a service, from `status --json`.
fn pids(root: &Root, svc: &str) -> (Option<i32>, Option<i32>) {
    let o = root.cmd(&["status", "--json", svc]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    let pid = |k: &str| v[0][k]["pid"].as_i64().map(|p| p as i32);
    (pid("main"), pid("log"))
}

fn svscan_pid(root: &Root) -> i32 {
    fs::read_to_string(root.var("service/.svscan.lock"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn sigkill(pid: i32) {
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
}

fn ok(port: u16) -> bool {
    get(port, "/", None).is_ok_and(|r| r.status == 200)
}

/// Processes whose command line contains `needle`.
fn count(needle: &str) -> usize {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            fs::read(e.path().join("cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .count()
}

/// Every `tick <pid> <n>` line in a log directory (rotated files and current), by pid: the
/// numbers each process printed, as far as they reached the log.
fn ticks(dir: &Path) -> BTreeMap<u32, Vec<u64>> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('@') || n == "current")
        .collect();
    names.sort();
    let mut by_pid: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for n in names {
        for line in fs::read_to_string(dir.join(n)).unwrap_or_default().lines() {
            let mut w = line.split_whitespace().skip_while(|w| *w != "tick").skip(1);
            if let (Some(p), Some(k)) = (w.next(), w.next()) {
                if let (Ok(p), Ok(k)) = (p.parse(), k.parse()) {
                    by_pid.entry(p).or_default().push(k);
                }
            }
        }
    }
    by_pid
}

/// Numbers missing from each process's sequence (it starts at 1; repeats are allowed).
fn gaps(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (pid, mut ns) in ticks(dir) {
        ns.sort_unstable();
        ns.dedup();
        let max = *ns.last().unwrap();
        if ns.len() as u64 != max {
            let missing: Vec<u64> = (1..=max)
                .filter(|k| ns.binary_search(k).is_err())
                .take(5)
                .collect();
            out.push(format!(
                "pid {pid}: {} of {max} missing, first {missing:?}",
                max - ns.len() as u64
            ));
        }
    }
    out
}

#[test]
fn kill_9_of_each_part_while_serving_resumes_without_duplicates_or_lost_lines() {
    let (root, _repo, ports) = ticking(&["beta"], 30);
    assert!(start(&root).status.success());
    let load = Load::start(ports.listen, 2);
    let resumes = |what: &str| {
        wait_for(
            secs(20),
            &format!("service to resume after killing {what}"),
            || ok(ports.listen),
        );
    };

    // An instance (the active one): restarted, new pid.
    let (old, _) = pids(&root, "instance1");
    sigkill(old.unwrap());
    wait_for(secs(10), "a new instance1", || {
        pids(&root, "instance1").0.is_some_and(|p| Some(p) != old)
    });
    resumes("instance1");

    // A log service: restarted; the pipe kept what it had not written.
    let (_, old) = pids(&root, "instance1");
    sigkill(old.unwrap());
    wait_for(secs(10), "a new logger for instance1", || {
        pids(&root, "instance1").1.is_some_and(|p| Some(p) != old)
    });

    // nginx: its workers are ended with it, a new master takes the port.
    let (old, _) = pids(&root, "nginx");
    sigkill(old.unwrap());
    wait_for(secs(10), "a new nginx", || {
        pids(&root, "nginx").0.is_some_and(|p| Some(p) != old)
    });
    resumes("nginx");

    // The supervisor: everything keeps serving; the next start brings a new one that takes
    // every process over.
    let svscan = svscan_pid(&root);
    let before: Vec<_> = ["nginx", "instance1", "instance2", "beta"]
        .iter()
        .map(|n| pids(&root, n))
        .collect();
    sigkill(svscan);
    wait_for(secs(5), "the killed svscan to be gone", || {
        !Path::new(&format!("/proc/{svscan}")).exists()
    });
    assert!(
        ok(ports.listen),
        "services keep serving without their supervisor"
    );
    let o = start(&root);
    assert!(o.status.success(), "{}", out(&o));
    let st = root.cmd(&["status"]).output().unwrap();
    assert!(st.status.success(), "{}", out(&st));
    let after: Vec<_> = ["nginx", "instance1", "instance2", "beta"]
        .iter()
        .map(|n| pids(&root, n))
        .collect();
    assert_eq!(after, before, "every process taken over");
    load.more(100);
    let res = load.finish();
    assert!(res.ok > 100, "{} requests", res.ok);

    // Exactly one of everything.
    for port in [ports.prod[0], ports.prod[1], ports.alt_base] {
        assert_eq!(
            count(&format!("server.py {port}")),
            1,
            "instances on {port}: {}\n{}\n{}",
            out(&root.cmd(&["status"]).output().unwrap()),
            fs::read_to_string(root.var("log/beta/current")).unwrap_or_default(),
            fs::read_to_string(root.var("log/svscan/current")).unwrap_or_default()
        );
    }
    let conf = root.var("nginx/nginx.conf");
    let masters = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c).replace('\0', " ");
                c.starts_with("nginx: master process") && c.contains(&conf.display().to_string())
            })
        })
        .count();
    assert_eq!(masters, 1, "nginx masters");
    let needle = format!("svscan --grace 3 {}", root.var("service").display());
    assert_eq!(
        count(&needle),
        1,
        "{needle}: {}",
        String::from_utf8_lossy(
            &Command::new("ps")
                .args(["-eo", "args"])
                .output()
                .unwrap()
                .stdout
        )
        .lines()
        .filter(|l| l.contains("svscan"))
        .collect::<Vec<_>>()
        .join(" / ")
    );
    let st = root.cmd(&["status"]).output().unwrap();
    assert!(st.status.success(), "{}", out(&st));

    // Not a tick lost, in any process's sequence, across every kill (the loggers may still be
    // writing the newest lines: a gap that stays is a lost line). instance1 was killed once;
    // instance2 ran one process throughout.
    for (inst, runs) in [("instance1", 2), ("instance2", 1)] {
        let dir = root.var(&format!("log/{inst}"));
        wait_for(
            secs(5),
            &format!("{inst}: ticks of {runs} processes, none missing"),
            || {
                let t = ticks(&dir);
                let g = gaps(&dir);
                if t.len() == runs && g.is_empty() {
                    Ok(())
                } else {
                    Err(format!("ticks from {} processes, gaps {g:?}", t.len()))
                }
            },
        );
    }
}

/// Numbers printed more than once in any process's sequence: a line logged twice.
fn repeats(dir: &Path) -> Vec<String> {
    ticks(dir)
        .into_iter()
        .filter_map(|(pid, mut ns)| {
            let n = ns.len();
            ns.sort_unstable();
            ns.dedup();
            (ns.len() != n).then(|| format!("pid {pid}: {} repeated", n - ns.len()))
        })
        .collect()
}

/// kill -9 of svscan under GET+POST load, then sync as cron runs it: the new svscan takes over
/// nginx, both instances, the alternate and every logger (same pids), starts what died in
/// between (here the alternate), and sync returns once that answers; not one request fails and
/// no log line is lost or written twice.
#[test]
fn kill_9_of_svscan_then_sync_takes_everything_over_and_no_request_fails() {
    let (root, _repo, ports) = ticking(&["beta"], 30);
    assert!(start(&root).status.success());
    let names = ["nginx", "instance1", "instance2", "beta"];
    let pids_now = || -> Vec<_> { names.iter().map(|n| pids(&root, n)).collect() };
    let before = pids_now();
    let load = Load::start(ports.listen, 4);
    load.more(300);
    let svscan = svscan_pid(&root);
    sigkill(svscan);
    wait_for(secs(5), "the killed svscan to be gone", || {
        !Path::new(&format!("/proc/{svscan}")).exists()
    });
    // While no supervisor runs, the alternate dies.
    let beta = before[3].0.unwrap();
    sigkill(beta);
    load.more(300);
    let took = std::time::Instant::now();
    let o = app::sync(&root, &[]);
    let took = took.elapsed();
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("starting it again"), "{}", out(&o));
    // sync returned once the alternate it had to start answers.
    let r = get(ports.listen, "/", Some("approuter_alt=beta")).unwrap();
    assert_eq!(
        (r.status, r.header("x-served-by")),
        (200, Some("beta")),
        "right after sync ({took:?}): {r:?}"
    );
    load.more(300);
    let res = load.finish();
    eprintln!(
        "kill -9 of svscan, then sync ({:.1}s): {} of {} requests failed",
        took.as_secs_f64(),
        res.failures.len(),
        res.ok + res.failures.len() as u64
    );
    res.assert_none_failed();
    let after = pids_now();
    assert_eq!(after[..3], before[..3], "nginx and production taken over");
    // The alternate started again; its logger too, since it read to the end of its input once
    // nothing held the pipe's write end any more.
    assert!(after[3].0.is_some_and(|p| p != beta), "{after:?}");
    assert_ne!(svscan_pid(&root), svscan);
    let st = root.cmd(&["status"]).output().unwrap();
    assert!(st.status.success(), "{}", out(&st));
    for inst in ["instance1", "instance2"] {
        let dir = root.var(&format!("log/{inst}"));
        wait_for(
            secs(5),
            &format!("{inst}: one process's ticks, none missing, none twice"),
            || {
                let (t, g, r) = (ticks(&dir), gaps(&dir), repeats(&dir));
                if t.len() == 1 && g.is_empty() && r.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{} processes, gaps {g:?}, repeats {r:?}", t.len()))
                }
            },
        );
    }

    // Killed again, then shut down: what it left is taken over and stopped, nothing stays.
    let svscan = svscan_pid(&root);
    sigkill(svscan);
    wait_for(secs(5), "the killed svscan to be gone", || {
        !Path::new(&format!("/proc/{svscan}")).exists()
    });
    let o = root.cmd(&["shutdown"]).output().unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("taking them over to stop them"),
        "{}",
        out(&o)
    );
    let managed = root.managed().display().to_string();
    assert_eq!(count(&managed), 0, "processes of this root after shutdown");
    assert_eq!(count(&format!("server.py {}", ports.prod[0])), 0);
}

#[test]
fn a_full_log_disk_never_stops_service_and_logging_resumes() {
    let (root, _repo, ports) = ticking(&[], 30);
    let Some(_disk) = Tmpfs::mount(&root.var("log"), "4m") else {
        return;
    };
    assert!(start(&root).status.success());
    let load = Load::start(ports.listen, 1);
    // Fill the disk.
    let filler = root.var("log/filler");
    {
        use std::io::Write;
        let mut f = fs::File::create(&filler).unwrap();
        let block = vec![b'x'; 64 * 1024];
        while f.write_all(&block).is_ok() {}
    }
    let status_says = |what: &str| {
        String::from_utf8_lossy(&root.cmd(&["status", "instance1"]).output().unwrap().stdout)
            .contains(what)
    };
    wait_for(secs(15), "status to show the full disk", || {
        status_says("No space left on device")
    });
    load.more(200);
    assert!(ok(ports.listen), "instances keep serving on a full disk");
    let newest = || {
        ticks(&root.var("log/instance1"))
            .values()
            .map(|v| v.iter().copied().max().unwrap_or(0))
            .max()
            .unwrap_or(0)
    };
    let stuck = newest();
    fs::remove_file(&filler).unwrap();
    wait_for(secs(15), "logging to resume", || newest() > stuck + 100);
    wait_for(secs(10), "status to tell the recovery", || {
        status_says("writing again")
    });
    let res = load.finish();
    res.assert_none_failed();
    assert!(root.cmd(&["shutdown"]).output().unwrap().status.success());
}

#[test]
fn sync_killed_at_each_step_is_completed_by_the_next_and_production_never_fails() {
    let (root, repo, ports) = app::started(&[]);
    let load = Load::start(ports.listen, 2);
    let mut version = 1;
    for step in ["after-fetch", "after-reset", "health-wait", "after-switch"] {
        for sig in [Signal::SIGTERM, Signal::SIGKILL] {
            version += 1;
            repo.commit("main", &[("VERSION", &version.to_string())], "next");
            let mut sync = std::process::Command::new(assert_cmd::cargo::cargo_bin("approuter"))
                .arg("--root")
                .arg(root.path())
                .arg("sync")
                .env("APPROUTER_FAILPOINT", step)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut reader = std::io::BufReader::new(sync.stdout.take().unwrap());
            let mut line = String::new();
            loop {
                line.clear();
                let n = std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
                assert!(n > 0, "sync ended before reaching {step}");
                if line.contains(&format!("failpoint {step}")) {
                    break;
                }
            }
            kill(Pid::from_raw(sync.id() as i32), sig).unwrap();
            sync.wait().unwrap();
            assert!(
                ok(ports.listen),
                "production serves after sync was killed at {step}"
            );
            let o = root
                .cmd(&["sync"])
                .timeout(Duration::from_secs(60))
                .output()
                .unwrap();
            assert!(o.status.success(), "{step} {sig:?}: {}", out(&o));
            let r = get(ports.listen, "/", None).unwrap();
            assert_eq!(
                r.header("x-app-version"),
                Some(version.to_string().as_str()),
                "after a sync killed at {step} by {sig:?}, the next one completes"
            );
        }
    }
    let res = load.finish();
    res.assert_none_failed();
}

#[test]
fn damaged_supervise_files_are_reported_and_repaired() {
    let root = Root::new();
    let repo = AppRepo::new(&root);
    configure(&root, &repo.url(), &[], 20);
    assert!(start(&root).status.success());
    let svscan = svscan_pid(&root);
    let status_file = root.var("service/instance2/supervise/status");

    // A truncated status: E, the reason, exit 1; then rewritten at the next full scan.
    let bytes = fs::read(&status_file).unwrap();
    fs::write(&status_file, &bytes[..5]).unwrap();
    let o = root.cmd(&["status", "instance2"]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.starts_with("[E ") && text.contains("error: ") && text.contains("bad format"),
        "{text}"
    );
    assert_eq!(o.status.code(), Some(1));
    kill(Pid::from_raw(svscan), Signal::SIGHUP).unwrap();
    wait_for(secs(5), "the status file rewritten", || {
        root.cmd(&["status", "instance2"])
            .output()
            .unwrap()
            .status
            .success()
    });

    // A deleted control FIFO: a clear error, then recreated.
    fs::remove_file(root.var("service/instance2/supervise/control")).unwrap();
    let err = one_line_error(&root.cmd(&["stop", "instance2"]).output().unwrap());
    assert!(err.contains("supervise/control is missing"), "{err}");
    kill(Pid::from_raw(svscan), Signal::SIGHUP).unwrap();
    wait_for(secs(5), "the control FIFO recreated", || {
        root.var("service/instance2/supervise/control").exists()
    });
    let o = root.cmd(&["stop", "instance2"]).output().unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let o = Command::new("sv")
        .arg("status")
        .arg(root.var("service/instance2"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("down: "),
        "{}",
        out(&o)
    );
}

fn as_nobody(root: &Root, args: &[&str]) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    Command::new(assert_cmd::cargo::cargo_bin("approuter"))
        .arg("--root")
        .arg(root.path())
        .args(args)
        .uid(65534)
        .gid(65534)
        .env_remove("APPROUTER_ROOT")
        .current_dir("/")
        .output()
        .unwrap()
}

#[test]
fn another_users_tree_and_unreadable_configuration_get_clear_errors() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping: needs root to act as another user");
        return;
    }
    let root = Root::new();
    let repo = AppRepo::new(&root);
    // The target binary must be reachable by nobody.
    configure(&root, &repo.url(), &[], 20);
    assert!(root.cmd(&["generate"]).output().unwrap().status.success());
    let before = snapshot(&root.managed());

    // managed/var belongs to root: generate as nobody names what it cannot write.
    let o = as_nobody(&root, &["generate"]);
    if String::from_utf8_lossy(&o.stderr).contains("Permission denied")
        && String::from_utf8_lossy(&o.stderr).contains("target")
    {
        eprintln!("skipping: the test binary is not reachable by nobody");
        return;
    }
    let err = one_line_error(&o);
    assert!(
        err.contains("Permission denied") && err.contains("managed"),
        "{err}"
    );
    assert_eq!(before, snapshot(&root.managed()), "nothing half-written");

    // Controlling root's services as nobody.
    assert!(start(&root).status.success());
    let err = one_line_error(&as_nobody(&root, &["stop", "instance1"]));
    assert!(
        err.contains("permission denied") || err.contains("Permission denied"),
        "{err}"
    );
    let o = as_nobody(&root, &["status"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("[E ") && text.contains("Permission denied"),
        "{text}"
    );

    // An unreadable configuration file.
    let conf = root.etc("approuter.toml");
    fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let err = one_line_error(&as_nobody(&root, &["generate"]));
    assert!(
        err.contains("approuter.toml: cannot read: Permission denied"),
        "{err}"
    );
}

#[test]
fn hostile_input_never_reaches_nginx_shell_or_cron() {
    // A root whose path is full of shell, cron and nginx syntax.
    let root = Root::with_prefix("ar $(touch pwned1) `touch pwned2`; touch pwned3 ' \" % {} ");
    let repo = AppRepo::new(&root);
    let ports = configure(&root, &repo.url(), &["beta"], 30);
    let o = start(&root);
    assert!(o.status.success(), "{}", out(&o));
    // The crontab line, run as cron would run it.
    let crontab = fs::read_to_string(root.var("crontab")).unwrap();
    let line = crontab
        .lines()
        .find(|l| l.starts_with("* * * * *"))
        .unwrap();
    let command = line.splitn(6, ' ').nth(5).unwrap().replace("\\%", "%");
    let o = Command::new("/bin/sh")
        .arg("-c")
        .arg(&command)
        .current_dir(root.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert!(Command::new("crontab")
        .arg("-n")
        .arg(root.var("crontab"))
        .output()
        .unwrap()
        .status
        .success());
    for n in ["pwned1", "pwned2", "pwned3"] {
        for dir in [
            root.path().to_path_buf(),
            PathBuf::from("/"),
            std::env::current_dir().unwrap(),
        ] {
            assert!(!dir.join(n).exists(), "{n} created in {}", dir.display());
        }
    }

    // Cookies and URLs built to break out of the routing.
    for cookie in [
        "approuter_alt=beta\"",
        "approuter_alt=../../etc/passwd",
        "approuter_alt=127.0.0.1:22",
        "approuter_alt=$approuter_backend",
        "approuter_alt=beta; approuter_alt=instance2",
        "approuter_alt=approuter_production",
        "approuter_alt=",
    ] {
        let r = get(ports.listen, "/", Some(cookie)).unwrap();
        assert_eq!(r.status, 200, "{cookie}");
        let by = r.header("x-served-by").unwrap();
        assert!(
            by == "instance1" || (cookie.contains("beta;") && by == "beta"),
            "{cookie}: served by {by}"
        );
    }
    let r = get(
        ports.listen,
        "/set_alt_cookie_beta%0d%0aX-Evil:%201.html",
        None,
    )
    .unwrap();
    assert_eq!(r.status, 404);
    assert!(r.header("x-evil").is_none());
    let r = get(
        ports.listen,
        "/set_alt_cookie_$approuter_backend.html",
        None,
    )
    .unwrap();
    assert_eq!(r.status, 404);

    // Transports that run commands are refused before anything happens.
    let fresh = Root::new();
    configure(&fresh, "ext::sh -c touch% /tmp/approuter-pwned", &[], 5);
    let err = one_line_error(&start(&fresh));
    assert!(err.contains("`ext::` transports are refused"), "{err}");
    assert!(!Path::new("/tmp/approuter-pwned").exists());
    let err = one_line_error(&fresh.cmd(&["init", "--repo", "fd::17"]).output().unwrap());
    assert!(err.contains("transports are refused"), "{err}");
}

/// `approuter ARGS...` stopped at a failpoint, then killed: the moment a command was cut short.
fn killed_at(root: &Root, args: &[&str], step: &str) {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("approuter"))
        .arg("--root")
        .arg(root.path())
        .args(args)
        .env("APPROUTER_FAILPOINT", step)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert!(n > 0, "{args:?} ended before reaching {step}");
        if line.contains(&format!("failpoint {step}")) {
            break;
        }
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
}

/// A sync killed after a failed deploy, before it put the inactive instance back: the next sync
/// puts it back, and the rollback target is healthy again.
#[test]
fn a_failed_deploy_cut_short_is_finished_by_the_next_sync() {
    let (root, repo, ports) = app::started(&[]);
    let v1 = app::git(&repo.dir, &["rev-parse", "main"]);
    repo.commit("main", &[("start", "#!/bin/sh\nexit 3")], "broken");
    killed_at(&root, &["sync"], "before-restore");
    assert!(
        !root.cmd(&["check"]).output().unwrap().status.success(),
        "instance2 is broken now"
    );
    let o = app::sync(&root, &[]);
    let text = out(&o);
    assert!(
        text.contains(&format!("instance2 is back on {}", &v1[..7])),
        "{text}"
    );
    app::cmd_ok(&root, &["check"]);
    assert_eq!(
        app::page(ports.listen, None),
        ("1".into(), "instance1".into())
    );
}

/// A sync killed in the middle of moving the production ports: the next one finishes the move.
#[test]
fn a_port_move_cut_short_is_finished_by_the_next_sync() {
    let (root, _repo, ports) = app::started(&[]);
    let new = app::free_ports(2);
    root.edit_etc("approuter.toml", |toml| {
        toml.replace(
            &format!("prod_ports = [{}, {}]", ports.prod[0], ports.prod[1]),
            &format!("prod_ports = [{}, {}]", new, new + 1),
        )
    });
    let load = Load::start(ports.listen, 2);
    killed_at(&root, &["sync"], "move-before-restart");
    assert!(
        ok(ports.listen),
        "production answers after the sync was killed"
    );
    let o = root
        .cmd(&["sync"])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let o = app::sync(&root, &[]);
    assert!(
        o.status.success() && out(&o).is_empty(),
        "nothing left to do: {}",
        out(&o)
    );
    load.more(100);
    load.finish().assert_none_failed();
    let long = app::cmd_ok(&root, &["status", "-l"]);
    assert!(
        long.contains(&format!("port {new}  role active production"))
            && long.contains(&format!("port {}  role inactive production", new + 1)),
        "{long}"
    );
    app::cmd_ok(&root, &["check"]);
}

/// A rollback killed right after production moved: the hold was recorded first, so the next
/// sync does not undo the rollback.
#[test]
fn a_rollback_cut_short_still_holds() {
    let (root, repo, ports) = app::started(&[]);
    repo.commit("main", &[("VERSION", "2")], "v2");
    app::sync_ok(&root, &[]);
    assert_eq!(app::page(ports.listen, None).0, "2");
    killed_at(&root, &["switch"], "after-link");
    wait_for(secs(5), "production on the previous version", || {
        app::get(ports.listen, "/", None).is_ok_and(|r| r.header("x-app-version") == Some("1"))
    });
    let text = app::sync_ok(&root, &["-v"]);
    assert!(text.contains("production: held at"), "{text}");
    assert_eq!(app::page(ports.listen, None).0, "1");
}
