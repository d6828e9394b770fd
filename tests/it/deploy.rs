//! Production's promises under load, with a client that never retries: the active instance killed, a rollback that holds, a failed deploy that keeps the rollback target, ports that move, alternates that come and go.

use std::fs;
use std::time::{Duration, Instant};

use crate::app::{
    self, cmd_ok, configure, free_ports, get, out, page, started, sync, sync_ok, AppRepo, Load,
};
use crate::util::{secs, wait_for, Root, Signal};

use crate::app::service_pid as pid;

/// kill -9 of the active instance under load: while it restarts, nginx sends its requests to
/// the other instance (a refused connection is safe to retry, POSTs included), so nothing fails
/// but what the killed process was itself answering at that instant. Of those, nginx sends a GET
/// again; a POST it may not (the instance may have acted on it), so at most one POST per client
/// fails, right at the kill.
#[test]
fn kill_9_of_the_active_instance_fails_only_the_posts_it_was_answering() {
    let (root, _repo, ports) = started(&[]);
    let clients = 4;
    let load = Load::start(ports.listen, clients);
    let mut kills = Vec::new();
    for _ in 0..3 {
        load.more(200);
        let old = pid(&root, "instance1").unwrap();
        kills.push(Instant::now());
        crate::util::signal(old, Signal::SIGKILL);
        wait_for(secs(20), "instance1 to run again and answer", || {
            pid(&root, "instance1").is_some_and(|p| p != old)
                && get(ports.prod[0], "/diagnostic", None).is_ok_and(|r| r.status == 200)
        });
        // Requests keep coming while it restarts: the backup serves them.
    }
    load.more(200);
    let res = load.finish();
    let at_a_kill = |t: &Instant| {
        kills
            .iter()
            .any(|k| *t >= *k && t.duration_since(*k) < Duration::from_millis(200))
    };
    for (what, when) in res.failures.iter().zip(&res.failed_at) {
        assert!(
            what.starts_with("POST: status 502") && at_a_kill(when),
            "a failure that was not a POST in flight at a kill: {what}; all: {:?}",
            res.failures
        );
    }
    eprintln!(
        "{} kills under load: {} of {} requests failed, each a POST the killed instance was answering",
        kills.len(),
        res.failures.len(),
        res.ok + res.failures.len() as u64
    );
    assert!(
        res.failures.len() <= clients * kills.len(),
        "{} failures: {:?}",
        res.failures.len(),
        res.failures
    );
    assert!(
        res.served_by.contains("instance1") && res.served_by.contains("instance2"),
        "the other instance served while instance1 restarted: {:?}",
        res.served_by
    );
}

#[test]
fn a_rollback_holds_until_a_newer_commit_or_a_deploy() {
    let (root, repo, ports) = started(&[]);
    let v2 = repo.commit("main", &[("VERSION", "2")], "v2");
    sync_ok(&root, &[]);
    assert_eq!(page(ports.listen, None), ("2".into(), "instance2".into()));

    // Rolled back: v2 is held, and sync leaves it so (instance2 is not touched either).
    let text = cmd_ok(&root, &["switch"]);
    assert!(
        text.contains(&format!("rolled back from {}", &v2[..7])),
        "{text}"
    );
    let instance2 = pid(&root, "instance2");
    assert_eq!(sync_ok(&root, &[]), "", "a held rollback is not news");
    let text = sync_ok(&root, &["-v"]);
    assert!(
        text.contains("production: held at")
            && text.contains(&format!("{} was rolled back at", &v2[..7])),
        "{text}"
    );
    assert_eq!(page(ports.listen, None), ("1".into(), "instance1".into()));
    assert_eq!(pid(&root, "instance2"), instance2, "nothing restarted");
    let long = cmd_ok(&root, &["status", "-l", "instance2"]);
    assert!(long.contains("rolled back at"), "{long}");

    // Switching forward again releases the hold; back again holds it again.
    let text = cmd_ok(&root, &["switch"]);
    assert!(text.contains("is live again"), "{text}");
    assert_eq!(page(ports.listen, None), ("2".into(), "instance2".into()));
    cmd_ok(&root, &["switch"]);
    assert_eq!(page(ports.listen, None).0, "1");

    // `approuter deploy` sends the held commit now: instance2 already runs it, so production
    // switches to it without a restart.
    let text = cmd_ok(&root, &["deploy"]);
    assert!(
        text.contains("already ran it and is healthy; switched, nothing restarted"),
        "{text}"
    );
    assert_eq!(page(ports.listen, None), ("2".into(), "instance2".into()));
    assert_eq!(pid(&root, "instance2"), instance2);

    // Held again, then a newer commit deploys as usual and ends the hold.
    cmd_ok(&root, &["switch"]);
    let v3 = repo.commit("main", &[("VERSION", "3")], "v3");
    let text = sync_ok(&root, &[]);
    assert!(
        text.contains(&format!("-> {} on instance2", &v3[..7])),
        "{text}"
    );
    assert_eq!(page(ports.listen, None), ("3".into(), "instance2".into()));
    assert!(!root.var("state/rolled-back").exists());
}

#[test]
fn a_failed_deploy_keeps_the_rollback_target() {
    let root = Root::new();
    let repo = AppRepo::new(&root);
    let ports = configure(&root, &repo.url(), &[], 30);
    cmd_ok(&root, &["start"]);

    // A start script that exits at once is reported at once, with its exit and its log.
    let crash = repo.commit(
        "main",
        &[(
            "start",
            "#!/bin/sh\necho cannot find my database >&2\nexit 3",
        )],
        "crash",
    );
    let t = Instant::now();
    let o = sync(&root, &[]);
    assert!(!o.status.success());
    let text = out(&o);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "waited {:?} (health_timeout_secs is 30) for a process that had exited",
        t.elapsed()
    );
    assert!(
        text.contains(&format!(
            "commit {} of main is not healthy on instance2",
            &crash[..7]
        )) && text.contains("its process ended (exit 3)"),
        "{text}"
    );
    assert!(
        text.contains("cannot find my database"),
        "the log's last lines: {text}"
    );
    // instance2 went back to what it ran: the rollback target is healthy, check is green.
    assert!(
        text.contains("instance2 is back on")
            && text.contains("`approuter switch` still rolls back to it"),
        "{text}"
    );
    assert_eq!(page(ports.listen, None), ("1".into(), "instance1".into()));
    cmd_ok(&root, &["check"]);
    cmd_ok(&root, &["switch"]);
    assert_eq!(page(ports.listen, None), ("1".into(), "instance2".into()));

    // One that never turns healthy waits health_timeout_secs, and is undone the same way.
    root.edit_etc("approuter.toml", |toml| {
        toml.replace("health_timeout_secs = 30", "health_timeout_secs = 5")
    });
    let sick = repo.commit(
        "main",
        &[
            ("start", "#!/bin/sh\nexec python3 server.py \"$1\""),
            ("HEALTH", "500"),
        ],
        "sick",
    );
    let o = sync(&root, &[]);
    assert!(!o.status.success());
    let text = out(&o);
    assert!(
        text.contains(&format!(
            "commit {} of main is not healthy on instance1 after 5s (/diagnostic answered 500)",
            &sick[..7]
        )),
        "{text}"
    );
    assert!(text.contains("instance1 is back on"), "{text}");
    cmd_ok(&root, &["check"]);
    assert_eq!(page(ports.listen, None), ("1".into(), "instance2".into()));
    // Not retried by sync; `approuter deploy` tries it again.
    let o = sync(&root, &[]);
    assert!(
        out(&o).contains("failed its health check earlier"),
        "{}",
        out(&o)
    );
    let o = root
        .cmd(&["deploy"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        out(&o).contains("is not healthy on instance1"),
        "{}",
        out(&o)
    );
}

#[test]
fn production_ports_move_under_load_and_no_request_fails() {
    let (root, _repo, ports) = started(&["beta"]);
    let new = free_ports(2);
    root.edit_etc("approuter.toml", |toml| {
        toml.replace(
            &format!("prod_ports = [{}, {}]", ports.prod[0], ports.prod[1]),
            &format!("prod_ports = [{}, {}]", new, new + 1),
        )
    });
    let text = sync_ok(&root, &["--dry-run"]);
    assert!(
        text.contains(&format!(
            "would move instance2 from port {} to {}",
            ports.prod[1],
            new + 1
        )) && text.contains(&format!(
            "would move instance1 from port {} to {new} (production served by instance2 meanwhile)",
            ports.prod[0]
        )),
        "{text}"
    );
    let load = Load::start(ports.listen, 4);
    load.more(100);
    let text = sync_ok(&root, &[]);
    assert!(
        text.contains(&format!(
            "instance2 moved from port {} to {}",
            ports.prod[1],
            new + 1
        )) && text.contains(&format!(
            "instance1 moved from port {} to {new}",
            ports.prod[0]
        )),
        "{text}"
    );
    load.more(200);
    let res = load.finish();
    res.assert_none_failed();
    assert_eq!(
        page(ports.listen, None).1,
        "instance1",
        "production went back to instance1"
    );
    cmd_ok(&root, &["check"]);
    let long = cmd_ok(&root, &["status", "-l"]);
    assert!(
        long.contains(&format!("port {new}  role active production"))
            && long.contains(&format!("port {}  role inactive production", new + 1)),
        "{long}"
    );
    for p in ports.prod {
        assert!(
            get(p, "/diagnostic", None).is_err(),
            "old port {p} still answers"
        );
    }
    // The next sync has nothing to move.
    assert_eq!(sync_ok(&root, &[]), "");
}

#[test]
fn alternates_come_and_go_under_load_without_failing_a_request() {
    let (root, repo, ports) = started(&["beta"]);
    for b in ["gamma", "delta"] {
        app::git(&repo.dir, &["branch", b, "main"]);
        repo.commit(b, &[("BRANCH", b)], b);
    }
    let load = Load::start(ports.listen, 4);
    load.more(100);

    // A branch that does not exist gets nothing: no checkout, no service, no route.
    root.write_etc("alternates.conf", "beta\nnosuch\n");
    let o = sync(&root, &[]);
    assert!(!o.status.success());
    assert!(
        out(&o).contains("alternate nosuch: branch `nosuch` does not exist"),
        "{}",
        out(&o)
    );
    assert!(!root.var("service/nosuch").exists());
    assert!(!root.managed().join("alternates/nosuch").exists());
    assert_eq!(
        get(ports.listen, "/set_alt_cookie_nosuch.html", None)
            .unwrap()
            .status,
        404
    );

    // The next port is held by another program: gamma gets another one.
    let beta_port = ports.alt_base;
    let squatter = std::net::TcpListener::bind(("127.0.0.1", beta_port + 1)).unwrap();
    root.write_etc("alternates.conf", "beta\ngamma\n");
    let text = sync_ok(&root, &[]);
    assert!(text.contains("alternate gamma added"), "{text}");
    let gamma = |root: &Root| -> u16 {
        let ports = fs::read_to_string(root.var("state/ports")).unwrap();
        ports
            .lines()
            .find_map(|l| l.strip_prefix("gamma "))
            .map(|p| p.trim().parse().unwrap())
            .unwrap()
    };
    let gamma_port = gamma(&root);
    assert_ne!(gamma_port, beta_port + 1, "a port in use was given out");
    drop(squatter);

    // gamma goes and delta comes in the same sync: delta does not get gamma's port.
    root.write_etc("alternates.conf", "beta\ndelta\n");
    let text = sync_ok(&root, &[]);
    assert!(
        text.contains("alternate gamma removed") && text.contains("alternate delta added"),
        "{text}"
    );
    let delta_port: u16 = fs::read_to_string(root.var("state/ports"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("delta "))
        .map(|p| p.trim().parse().unwrap())
        .unwrap();
    assert_ne!(delta_port, gamma_port);
    // The removed alternate's log stays, and `approuter logs` reads it.
    let text = crate::app::cmd_ok(&root, &["logs", "gamma"]);
    assert!(!text.is_empty(), "gamma's log is empty");

    // beta removed, then added again: it comes back healthy.
    root.write_etc("alternates.conf", "delta\n");
    sync_ok(&root, &[]);
    root.write_etc("alternates.conf", "delta\nbeta\n");
    let text = sync_ok(&root, &[]);
    assert!(
        text.contains("alternate beta added") && text.contains("healthy after"),
        "{text}"
    );
    let r = get(ports.listen, "/", Some("approuter_alt=beta")).unwrap();
    assert_eq!(r.header("x-served-by"), Some("beta"));
    // nginx's access log names the instance that answered and the request's time.
    get(ports.listen, "/served-by-beta", Some("approuter_alt=beta")).unwrap();
    wait_for(secs(10), "the access log line", || {
        let log = fs::read_to_string(root.var("log/nginx/current")).unwrap_or_default();
        let line = log.lines().find(|l| l.contains("GET /served-by-beta"));
        match line.and_then(|l| l.rsplit_once(' ')) {
            Some((head, time)) if head.ends_with(" beta") && time.parse::<f64>().is_ok() => Ok(()),
            _ => Err(log),
        }
    });
    // Removals are not errors: svscan's log does not say it could not write a status file
    // that went with its directory.
    let svscan_log = fs::read_to_string(root.var("log/svscan/current")).unwrap();
    assert!(
        !svscan_log.contains("cannot write supervise/status"),
        "{svscan_log}"
    );

    load.more(100);
    load.finish().assert_none_failed();
}

#[test]
fn sync_fails_while_production_does_not_answer() {
    let (root, _repo, _ports) = started(&[]);
    cmd_ok(&root, &["stop", "nginx"]);
    let o = sync(&root, &[]);
    assert!(
        !o.status.success(),
        "never a success while production is down"
    );
    assert!(
        out(&o).contains("production does not answer through nginx"),
        "{}",
        out(&o)
    );
}

/// The release command: once per commit in each checkout, before the instance starts, as its
/// user with its environment, its output in the instance's log; not again on a crash restart;
/// a failing or overlong release fails the deploy as a failed health check does.
#[test]
fn the_release_command_runs_once_per_commit_and_a_failing_one_fails_the_deploy() {
    let root = Root::new();
    let repo = AppRepo::new(&root);
    let v1 = repo.commit(
        "main",
        &[(
            "release",
            "echo \"release for $APPROUTER_COMMIT as $(id -un) for $APPROUTER_INSTANCE on $PORT\"\nsleep \"$(cat RELEASE_SLEEP 2>/dev/null || echo 0)\"\necho built > BUILT\nexit \"$(cat RELEASE_EXIT 2>/dev/null || echo 0)\"",
        )],
        "a release step",
    );
    let beta = repo.commit(
        "beta",
        &[("release", "echo \"release for $APPROUTER_COMMIT\"")],
        "beta release",
    );
    let ports = configure(&root, &repo.url(), &["beta"], 30);
    root.edit_etc("approuter.toml", |t| {
        format!("{t}release_command = \"sh ./release\"\nrelease_timeout_secs = 5\n")
    });
    cmd_ok(&root, &["start"]);
    let log = |svc: &str| fs::read_to_string(root.var(&format!("log/{svc}/current"))).unwrap();
    let releases =
        |svc: &str, commit: &str| log(svc).matches(&format!("release for {commit}")).count();
    let me = String::from_utf8(
        std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for (svc, port) in [("instance1", ports.prod[0]), ("instance2", ports.prod[1])] {
        assert_eq!(releases(svc, &v1), 1, "{}", log(svc));
        assert!(
            log(svc).contains(&format!(
                "release for {v1} as {} for {svc} on {port}",
                me.trim()
            )),
            "{}",
            log(svc)
        );
        assert!(root.managed().join(format!("prod/{svc}/BUILT")).exists());
    }
    assert_eq!(releases("beta", &beta), 1, "{}", log("beta"));
    let long = cmd_ok(&root, &["status", "-l", "instance1"]);
    assert!(
        long.contains(&format!("release ok for {}", &v1[..7])),
        "{long}"
    );

    // A crash restart does not run it again.
    let old = pid(&root, "instance1").unwrap();
    crate::util::signal(old, Signal::SIGKILL);
    wait_for(secs(20), "instance1 to run again and answer", || {
        pid(&root, "instance1").is_some_and(|p| p != old)
            && get(ports.prod[0], "/diagnostic", None).is_ok_and(|r| r.status == 200)
    });
    assert_eq!(releases("instance1", &v1), 1, "{}", log("instance1"));

    // A new commit: released on the inactive instance before it starts, then live.
    let v2 = repo.commit("main", &[("VERSION", "2")], "v2");
    let text = sync_ok(&root, &["-v"]);
    assert_eq!(releases("instance2", &v2), 1, "{}", log("instance2"));
    assert_eq!(page(ports.listen, None), ("2".into(), "instance2".into()));
    assert!(
        text.contains(&format!("-> {} on instance2, released in ", &v2[..7])),
        "{text}"
    );
    let text = sync_ok(&root, &["-v"]);
    assert!(
        text.contains(&format!("instance2: last release ok for {}", &v2[..7])),
        "{text}"
    );

    // A failing release: the deploy fails, production stays, the reason is in the report.
    let v3 = repo.commit("main", &[("VERSION", "3"), ("RELEASE_EXIT", "3")], "v3");
    let o = sync(&root, &[]);
    assert!(!o.status.success(), "{}", out(&o));
    let text = out(&o);
    assert!(
        text.contains(&format!(
            "commit {} of main is not healthy on instance1",
            &v3[..7]
        )) && text.contains(&format!("release exit 3 for {}", &v3[..7])),
        "{text}"
    );
    assert_eq!(page(ports.listen, None), ("2".into(), "instance2".into()));
    // The rollback target was put back (its checkout changed: released again) and answers.
    assert!(
        get(ports.prod[0], "/", None).is_ok_and(|r| r.header("x-app-version") == Some("1")),
        "{text}"
    );
    let long = cmd_ok(&root, &["status", "-l", "instance1"]);
    assert!(
        long.contains(&format!("release ok for {}", &v1[..7])),
        "{long}\n{text}"
    );

    // An overlong one is ended at its time limit, with the same outcome.
    let v4 = repo.commit(
        "main",
        &[
            ("VERSION", "4"),
            ("RELEASE_EXIT", "0"),
            ("RELEASE_SLEEP", "60"),
        ],
        "v4",
    );
    let t = Instant::now();
    let o = sync(&root, &[]);
    assert!(!o.status.success(), "{}", out(&o));
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
    let text = out(&o);
    assert!(
        text.contains(&format!("release timed out after 5s for {}", &v4[..7])),
        "{text}"
    );
    assert_eq!(page(ports.listen, None), ("2".into(), "instance2".into()));

    // A changed release command runs again, for the same commit, as sync restarts each
    // instance with it (the active one switched away and back).
    let before = releases("instance2", &v2);
    root.edit_etc("approuter.toml", |t| {
        t.replace("\"sh ./release\"", "\"sh ./release && echo second step\"")
    });
    // (sync still reports v4, which failed, as held back: exit 1.)
    let text = out(&sync(&root, &[]));
    assert!(
        text.contains("production: instance2 restarted for its new settings"),
        "{text}"
    );
    assert_eq!(
        releases("instance2", &v2),
        before + 1,
        "{text}\n{}",
        log("instance2")
    );
    assert!(log("instance2").contains("second step"));
    assert_eq!(page(ports.listen, None), ("2".into(), "instance2".into()));
}
