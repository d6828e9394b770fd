//! `approuter sync`, end to end: health-gated production updates under load, alternates, configuration changes, failures, hooks and cron.

use std::fs;
use std::time::{Duration, Instant};

use crate::app::{self, cmd_ok, configure, out, page, started, sync, sync_ok, AppRepo, Load};
use crate::util::{approuter_exe, processes_under, secs, wait_for, write_exec, Root};

fn which_prod(root: &Root) -> String {
    String::from_utf8_lossy(&root.cmd(&["which-prod"]).output().unwrap().stdout)
        .trim()
        .to_string()
}

#[test]
fn nothing_new_is_a_quiet_no_op() {
    let (root, _repo, ports) = started(&["beta"]);
    let before = page(ports.listen, None);
    assert_eq!(
        sync_ok(&root, &[]),
        "",
        "a sync with nothing to do says nothing"
    );
    let o = sync(&root, &["-v"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("production: instance1 serves") && text.contains("nothing to do"),
        "{text}"
    );
    assert!(text.contains("alternate beta: at"), "{text}");
    assert_eq!(page(ports.listen, None), before);
}

#[test]
fn ten_production_updates_under_load_lose_no_request() {
    let (root, repo, ports) = started(&[]);
    let load = Load::start(ports.listen, 4);
    for v in 2..=11 {
        let version = v.to_string();
        let head = repo.commit("main", &[("VERSION", &version)], &format!("version {v}"));
        let text = sync_ok(&root, &[]);
        assert!(
            text.contains(&format!("-> {} on instance", &head[..7])),
            "{text}"
        );
        assert!(text.contains("healthy after"), "{text}");
        assert_eq!(
            page(ports.listen, None).0,
            version,
            "version {v} live after its sync"
        );
    }
    load.more(50);
    let res = load.finish();
    assert!(res.ok > 200, "only {} requests", res.ok);
    res.assert_none_failed();
    // The previous version is one switch away.
    assert!(root.cmd(&["switch"]).output().unwrap().status.success());
    assert_eq!(page(ports.listen, None).0, "10");
    assert!(root.cmd(&["switch"]).output().unwrap().status.success());
    assert_eq!(page(ports.listen, None).0, "11");
}

#[test]
fn broken_commit_never_goes_live_and_is_not_retried() {
    let root = Root::new();
    let repo = AppRepo::new(&root);
    let ports = configure(&root, &repo.url(), &[], 3);
    assert!(root
        .cmd(&["start"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap()
        .status
        .success());
    let bad = repo.commit("main", &[("VERSION", "2"), ("HEALTH", "500")], "broken");
    let o = sync(&root, &[]);
    assert!(!o.status.success(), "a failed deploy exits non-zero");
    let text = out(&o);
    assert!(
        text.contains(&format!(
            "commit {} of main is not healthy on instance2",
            &bad[..7]
        )),
        "{text}"
    );
    assert!(text.contains("managed/var/log/instance2/current"), "{text}");
    assert_eq!(
        page(ports.listen, None),
        ("1".to_string(), "instance1".to_string())
    );
    assert_eq!(which_prod(&root), "instance1");

    // The next sync reports it at once and does not restart anything.
    let pid_before = fs::read_to_string(root.var("service/instance2/supervise/pid")).unwrap();
    let t = Instant::now();
    let o = sync(&root, &[]);
    assert!(!o.status.success());
    assert!(
        out(&o).contains("failed its health check earlier"),
        "{}",
        out(&o)
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(
        fs::read_to_string(root.var("service/instance2/supervise/pid")).unwrap(),
        pid_before
    );

    // A fixed commit deploys normally.
    let good = repo.commit("main", &[("VERSION", "3"), ("HEALTH", "200")], "fixed");
    let text = sync_ok(&root, &[]);
    assert!(text.contains(&good[..7]), "{text}");
    assert_eq!(
        page(ports.listen, None),
        ("3".to_string(), "instance2".to_string())
    );
}

#[test]
fn alternates_follow_their_branch_and_the_configuration() {
    let (root, repo, ports) = started(&["beta"]);
    let beta = Some("approuter_alt=beta");
    assert_eq!(
        page(ports.listen, beta),
        ("2-beta".to_string(), "beta".to_string())
    );

    // The branch moves: replaced at once.
    let head = repo.commit("beta", &[("VERSION", "3-beta")], "beta 3");
    let text = sync_ok(&root, &[]);
    assert!(
        text.contains("alternate beta: ")
            && text.contains(&format!("-> {}, restarted, healthy", &head[..7])),
        "{text}"
    );
    assert_eq!(page(ports.listen, beta).0, "3-beta");

    // One added, one removed, in one sync.
    app::git(&repo.dir, &["branch", "gamma", "main"]);
    repo.commit(
        "gamma",
        &[("BRANCH", "gamma"), ("VERSION", "1-gamma")],
        "gamma",
    );
    root.write_etc("alternates.conf", "gamma\n");
    let text = sync_ok(&root, &[]);
    assert!(text.contains("alternate gamma added"), "{text}");
    assert!(text.contains("alternate beta removed"), "{text}");
    assert_eq!(
        page(ports.listen, Some("approuter_alt=gamma")),
        ("1-gamma".to_string(), "gamma".to_string())
    );
    assert_eq!(
        page(ports.listen, beta).1,
        "instance1",
        "beta's cookie falls back to production"
    );
    assert!(!root.managed().join("alternates/beta").exists());
    assert!(root.var("log/beta/current").exists(), "logs are kept");
    assert!(!root.var("service/beta").exists());
    let beta_dir = root.managed().join("alternates/beta");
    wait_for(secs(10), "beta's processes to end", || {
        processes_under(&beta_dir).is_empty()
    });
    let status = root.cmd(&["status"]).output().unwrap();
    assert!(status.status.success(), "{}", out(&status));
    assert!(!String::from_utf8_lossy(&status.stdout).contains(" beta "));
}

#[test]
fn changed_prod_branch_goes_through_the_health_gated_switch() {
    let (root, repo, ports) = started(&[]);
    app::git(&repo.dir, &["branch", "release", "main"]);
    repo.commit("release", &[("VERSION", "5-release")], "release");
    root.write_etc("prod_branch", "release\n");
    let load = Load::start(ports.listen, 2);
    let text = sync_ok(&root, &[]);
    assert!(
        text.contains("on instance2") && text.contains("switched"),
        "{text}"
    );
    let res = load.finish();
    res.assert_none_failed();
    assert_eq!(
        page(ports.listen, None),
        ("5-release".to_string(), "instance2".to_string())
    );
    let long = String::from_utf8_lossy(
        &root
            .cmd(&["status", "-l", "instance2"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(long.contains("branch release"), "{long}");
    // Restarting keeps the lagging instance1 (still on main) as the rollback, with a warning.
    assert!(root.cmd(&["shutdown"]).output().unwrap().status.success());
    let o = root
        .cmd(&["start"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("warning"), "{}", out(&o));
}

/// `approuter --root ROOT ARGS...` as a child process (with its output piped), for commands a
/// test runs alongside others.
fn spawn(root: &Root, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    std::process::Command::new(approuter_exe())
        .arg("--root")
        .arg(root.path())
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the kernel lists `pid` as blocked on an flock (in /proc/locks, after "->").
fn blocked_on_a_lock(pid: u32) {
    let pid = pid.to_string();
    wait_for(secs(10), &format!("pid {pid} to block on the lock"), || {
        fs::read_to_string("/proc/locks").unwrap().lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&"->") && f.get(2) == Some(&"FLOCK") && f.contains(&pid.as_str())
        })
    });
}

/// Waits until the kernel lists `pid` as holding an flock (in /proc/locks, without "->").
fn holds_the_lock(pid: u32) {
    let pid = pid.to_string();
    wait_for(secs(10), &format!("pid {pid} to hold the lock"), || {
        fs::read_to_string("/proc/locks").unwrap().lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&"FLOCK") && f.get(4) == Some(&pid.as_str())
        })
    });
}

/// Reads a child's stdout until a line contains `what`.
fn read_until(child: &mut std::process::Child, what: &str) {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(child.stdout.as_mut().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "ended before {what:?}"
        );
        if line.contains(what) {
            return;
        }
    }
}

#[test]
fn one_lock_for_every_state_change() {
    let (root, repo, ports) = started(&[]);
    // A sync stopped midway (at a failpoint) holds approuter's lock.
    repo.commit("main", &[("VERSION", "2")], "v2");
    let mut stuck = spawn(&root, &["sync"], &[("APPROUTER_FAILPOINT", "after-fetch")]);
    read_until(&mut stuck, "failpoint after-fetch");

    // Cron's next sync leaves it to finish, quietly and with status 0 (it does not wait: the
    // stuck one never finishes).
    let o = sync(&root, &[]);
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(&format!(
            "another sync is running (approuter sync (pid {}))",
            stuck.id()
        )),
        "{text}"
    );
    // switch --no-wait refuses, naming the sync.
    let o = root.cmd(&["--no-wait", "switch"]).output().unwrap();
    let err = crate::util::one_line_error(&o);
    assert!(
        err.contains(&format!("approuter sync (pid {})", stuck.id())),
        "{err}"
    );
    stuck.kill().unwrap();
    stuck.wait().unwrap();

    // A slow sync (the new version takes two seconds to start) and a switch run during it: the
    // switch waits, then rolls back what the sync deployed, instead of switching to the instance
    // the sync is resetting.
    let v3 = repo.commit(
        "main",
        &[
            ("VERSION", "3"),
            ("start", "#!/bin/sh\nsleep 2\nexec python3 server.py \"$1\""),
        ],
        "v3, slow to start",
    );
    let mut slow = spawn(&root, &["sync"], &[]);
    holds_the_lock(slow.id());
    let mut switch = spawn(&root, &["switch"], &[]);
    blocked_on_a_lock(switch.id());
    let mut status = None;
    wait_for(secs(60), "the slow sync to finish", || {
        status = slow.try_wait().unwrap();
        status.is_some()
    });
    let sync_out = String::from_utf8_lossy(&slow.wait_with_output().unwrap().stdout).into_owned();
    assert!(status.unwrap().success(), "{sync_out}");
    assert!(
        sync_out.contains(&format!("-> {} on instance2", &v3[..7]))
            && sync_out.contains("switched"),
        "{sync_out}"
    );
    wait_for(secs(30), "the switch to finish", || {
        switch.try_wait().unwrap().is_some()
    });
    let o = switch.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("waiting for approuter sync")
            && out(&o).contains(&format!("rolled back from {}", &v3[..7])),
        "{}",
        out(&o)
    );
    assert_eq!(page(ports.listen, None), ("1".into(), "instance1".into()));
    assert_eq!(which_prod(&root), "instance1");

    // Anything else holding the lock is named, and sync fails: cron's deploys must not stop
    // silently.
    let lock = fs::File::open(root.var("run/approuter.lock")).unwrap();
    lock.lock().unwrap();
    let o = sync(&root, &[]);
    let err = crate::util::one_line_error(&o);
    assert!(
        err.contains(&format!("pid {} (user root", std::process::id()))
            && err.contains("not an approuter command"),
        "{err}"
    );
    drop(lock);
}

#[test]
fn an_unreachable_remote_changes_nothing() {
    let (root, repo, ports) = started(&[]);
    repo.commit("main", &[("VERSION", "2")], "v2");
    sync_ok(&root, &[]);
    assert_eq!(page(ports.listen, None).0, "2");

    // The remote goes away: a clear error, nothing touched, and it works again when it is back.
    let away = root.path().join("away");
    fs::rename(&repo.dir, &away).unwrap();
    let o = sync(&root, &[]);
    assert!(!o.status.success());
    let text = out(&o);
    assert!(
        text.contains(&format!("cannot reach {}", repo.url())) && text.contains("nothing changed"),
        "{text}"
    );
    assert_eq!(page(ports.listen, None).0, "2");
    fs::rename(&away, &repo.dir).unwrap();
    repo.commit("main", &[("VERSION", "3")], "v3");
    sync_ok(&root, &[]);
    assert_eq!(page(ports.listen, None).0, "3");
}

#[test]
fn dry_run_changes_nothing_and_hooks_report_without_blocking() {
    let (root, repo, ports) = started(&["beta"]);
    let record = root.path().join("hook-calls");
    write_exec(
        &root.managed().join("etc/hooks/deployed"),
        &format!(
            "#!/bin/sh\necho \"deployed $*\" >> '{}'\necho hello from the hook\n",
            record.display()
        ),
    );
    write_exec(
        &root.managed().join("etc/hooks/switched"),
        "#!/bin/sh\necho switch hook fails >&2\nexit 3\n",
    );
    write_exec(
        &root.managed().join("etc/hooks/alternate-updated"),
        &format!(
            "#!/bin/sh\necho \"alternate $*\" >> '{}'\n",
            record.display()
        ),
    );
    let head = repo.commit("main", &[("VERSION", "2")], "v2");
    let beta_head = repo.commit("beta", &[("VERSION", "3-beta")], "b3");

    let o = sync(&root, &["--dry-run"]);
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.contains("would deploy main")
            && text.contains(&format!("-> {} to instance2", &head[..7])),
        "{text}"
    );
    assert!(text.contains("would update alternate beta"), "{text}");
    assert_eq!(page(ports.listen, None).0, "1", "nothing changed");
    assert!(!record.exists());
    // A change of approuter.toml is shown too, and applied by the sync that follows.
    let toml = fs::read_to_string(root.etc("approuter.toml")).unwrap();
    root.write_etc(
        "approuter.toml",
        &format!("{toml}server_name = \"example.test _\"\n"),
    );
    let text = sync_ok(&root, &["--dry-run"]);
    assert!(text.contains("would update nginx configuration"), "{text}");

    let text = sync_ok(&root, &[]);
    assert!(
        text.contains("hook deployed: hello from the hook"),
        "{text}"
    );
    assert!(
        text.contains("hook switched: switch hook fails") && text.contains("hook switched failed"),
        "{text}"
    );
    assert_eq!(page(ports.listen, None).0, "2");
    let calls = fs::read_to_string(&record).unwrap();
    assert!(
        calls.contains("deployed instance2 ") && calls.contains(&head),
        "{calls}"
    );
    assert!(
        calls.contains("alternate beta ") && calls.contains(&beta_head),
        "{calls}"
    );
}

#[test]
fn the_crontab_line_deploys_with_crons_bare_environment() {
    let (root, repo, ports) = started(&[]);
    repo.commit("main", &[("VERSION", "2")], "v2");
    let o = crate::app::run_crontab_line(&root, "* * * * *");
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(page(ports.listen, None).0, "2");
    // sync's output goes through the svlogd-style logger: one timestamp per line (svlogd -tt's),
    // and not a second one of sync's own.
    let log = fs::read_to_string(root.var("log/sync/current")).unwrap();
    let line = log.lines().find(|l| l.contains("production:")).unwrap();
    let (stamp, rest) = line.split_once(' ').unwrap();
    assert!(
        stamp.len() == 25 && stamp.as_bytes()[10] == b'_' && rest.starts_with("production:"),
        "{line}"
    );
    // `approuter logs` reads it, as it reads svscan's.
    for name in ["sync", "svscan"] {
        let text = cmd_ok(&root, &["logs", name]);
        assert!(!text.is_empty(), "{name}");
    }
    assert!(cmd_ok(&root, &["logs", "sync"]).contains("production:"));
}

#[test]
fn sync_restarts_a_supervisor_that_was_killed() {
    let (root, repo, ports) = started(&[]);
    let pid: i32 = fs::read_to_string(root.var("service/.svscan.lock"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for(secs(5), "status to show nothing supervised", || {
        root.cmd(&["status"])
            .output()
            .unwrap()
            .stdout
            .starts_with(b"[-")
    });
    repo.commit("main", &[("VERSION", "2")], "v2");
    let text = sync_ok(&root, &[]);
    assert!(text.contains("starting it again"), "{text}");
    assert_eq!(page(ports.listen, None).0, "2");
    wait_for(secs(10), "every service as it wants to be", || {
        root.cmd(&["status"]).output().unwrap().status.success()
    });
}
