//! Attacks on approuter, mounted for real: unprivileged local users, squatting and escaped processes, hostile repositories and headers, a caching proxy in front. Each shows the defence holding.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use crate::app::{cmd_ok, configure, get, out, sync, AppRepo};
use crate::util::{environ, one_line_error, secs, uid_of, wait_for, Root, TestUser};

fn pid(root: &Root, svc: &str) -> u32 {
    fs::read_to_string(root.var(&format!("service/{svc}/supervise/pid")))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn write_secret(root: &Root, name: &str, text: &str) {
    root.write_etc(name, text);
    fs::set_permissions(root.etc(name), fs::Permissions::from_mode(0o600)).unwrap();
}

/// Instances run as the configured user, with a defined environment: nothing of whoever started
/// the supervisor (an operator's secrets and agent, or cron's bare PATH), and the same after the
/// supervisor is started again from cron's environment.
#[test]
fn instances_run_as_their_user_with_a_defined_environment() {
    let root = Root::new();
    let Some(user) = TestUser::new(root.path()) else {
        return;
    };
    let repo = AppRepo::new(&root);
    configure(&root, &repo.url(), &["beta"], 20);
    root.edit_etc("approuter.toml", |toml| {
        format!("{toml}user = \"{}\"\n", user.name)
    });
    write_secret(&root, "env", "SHARED=yes\nDATABASE_URL=postgres://prod\n");
    write_secret(&root, "env.beta", "DATABASE_URL=postgres://staging\n");
    let o = root
        .cmd(&["start"])
        .env("AWS_SECRET_ACCESS_KEY", "operator-secret")
        .env("SSH_AUTH_SOCK", "/tmp/operator-agent")
        .env("PATH", "/opt/operator/bin:/usr/bin:/bin")
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert!(!out(&o).contains("run as root"), "{}", out(&o));

    let root_dir = root.path().display().to_string();
    let expected = |role: &str, name: &str, db: &str, commit: &str| {
        let mut e: std::collections::BTreeMap<String, String> = [
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
            ("LANG", "C.UTF-8"),
            ("HOME", &user.home.display().to_string()),
            ("USER", &user.name),
            ("LOGNAME", &user.name),
            ("SHARED", "yes"),
            ("DATABASE_URL", db),
            ("APPROUTER_ROOT", &root_dir),
            ("APPROUTER_INSTANCE", name),
            ("APPROUTER_ROLE", role),
            ("APPROUTER_COMMIT", commit),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        e.insert("PORT".into(), String::new());
        e
    };
    let check = |root: &Root| {
        for (svc, role, db, branch) in [
            ("instance1", "production", "postgres://prod", "main"),
            ("beta", "alternate", "postgres://staging", "beta"),
        ] {
            let p = pid(root, svc);
            let mut env = environ(p);
            assert!(env.remove("PORT").is_some_and(|v| v.parse::<u16>().is_ok()));
            // The demo's `start` is a shell script, and sh exports PWD itself.
            env.remove("PWD");
            let commit = crate::app::git(&repo.dir, &["rev-parse", branch]);
            let mut want = expected(role, svc, db, &commit);
            want.remove("PORT");
            assert_eq!(env, want, "{svc}'s environment");
            assert_eq!(uid_of(p), Some(user.uid), "{svc} runs as {}", user.name);
        }
    };
    check(&root);
    let checkout = root.managed().join("prod/instance1");
    assert_eq!(
        fs::metadata(checkout.join("server.py")).unwrap().uid(),
        user.uid
    );

    // The supervisor killed and started again by cron's line, in cron's environment: the same.
    let svscan: i32 = fs::read_to_string(root.var("service/.svscan.lock"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(svscan),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let crontab = fs::read_to_string(root.var("crontab")).unwrap();
    let line = crontab
        .lines()
        .find(|l| l.starts_with("* * * * *"))
        .unwrap();
    let command = line.splitn(6, ' ').nth(5).unwrap().replace("\\%", "%");
    let o = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&command)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}",
        fs::read_to_string(root.var("log/sync/current")).unwrap_or_default()
    );
    wait_for(secs(20), "every service up again", || {
        root.cmd(&["status"]).output().unwrap().status.success()
    });
    check(&root);

    // A deploy works on checkouts the instances' user owns (git's ownership check).
    let v2 = repo.commit("main", &[("VERSION", "2")], "v2");
    let text = cmd_ok(&root, &["sync"]);
    assert!(
        text.contains(&format!("-> {} on instance2", &v2[..7])),
        "{text}"
    );
    assert_eq!(
        fs::metadata(root.managed().join("prod/instance2/VERSION"))
            .unwrap()
            .uid(),
        user.uid
    );

    // An environment file other users can read is refused, by name, before anything changes.
    fs::set_permissions(root.etc("env"), fs::Permissions::from_mode(0o644)).unwrap();
    let err = one_line_error(&root.cmd(&["sync"]).output().unwrap());
    assert!(
        err.contains("managed/etc/env: other users can read it (mode 644)")
            && err.contains("chmod 600"),
        "{err}"
    );
}

#[test]
fn a_root_start_without_user_says_the_instances_run_as_root() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let root = Root::new();
    let repo = AppRepo::new(&root);
    configure(&root, &repo.url(), &[], 20);
    let text = cmd_ok(&root, &["start"]);
    assert!(text.contains("note: the instances run as root"), "{text}");
    let text = cmd_ok(&root, &["status", "-l"]);
    assert!(text.contains("note: the instances run as root"), "{text}");
    let _ = get;
}

/// A server that answers 200 to anything, as whoever runs it: the squatter of an attack.
const SQUATTER: &str = r#"import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "6")
        self.send_header("X-Served-By", "instance2")
        self.end_headers()
        self.wfile.write(b"owned\n")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

/// The SQUATTER server on `port`, run as `user` (as the test's own user when `None`), once it
/// answers; ended when dropped.
fn squat(root: &Root, user: Option<&TestUser>, port: u16) -> crate::util::Proc {
    let script = match user {
        Some(u) => u.home.join("squat.py"),
        None => root.path().join("squat.py"),
    };
    fs::write(&script, SQUATTER).unwrap();
    let mut cmd = match user {
        Some(u) => u.command("python3"),
        None => std::process::Command::new("python3"),
    };
    let proc = crate::util::Proc::spawn(
        cmd.arg(&script).arg(port.to_string()),
        &root.path().join("squatter.err"),
    );
    wait_for(secs(10), "the squatter to answer", || {
        get(port, "/diagnostic", None).is_ok_and(|r| r.status == 200)
    });
    proc
}

/// A local user binds the inactive instance's port (the instance then cannot): its server
/// answers every health check, but never gets production, and every command names it.
#[test]
fn a_squatter_on_the_inactive_port_never_gets_production() {
    let (root, repo, ports) = crate::app::started(&[]);
    let Some(attacker) = TestUser::new(root.path()) else {
        return;
    };
    cmd_ok(&root, &["stop", "instance2"]);
    let _squatter = squat(&root, Some(&attacker), ports.prod[1]);
    let script = attacker.home.join("squat.py");
    let holder = format!("(user {}: python3 {}", attacker.name, script.display());
    // The instance cannot bind its port now: it crash-loops, and the squatter answers for it.
    let _ = root.cmd(&["start", "instance2"]).output();

    let v2 = repo.commit("main", &[("VERSION", "2")], "v2");
    let o = root
        .cmd(&["sync"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", out(&o));
    let text = out(&o);
    assert!(
        text.contains(&format!("instance2: port {} is held by pid", ports.prod[1]))
            && text.contains(&holder),
        "{text}"
    );
    assert!(!text.contains("switched"), "{text}");
    let r = get(ports.listen, "/", None).unwrap();
    assert_eq!(r.header("x-served-by"), Some("instance1"));
    assert_eq!(r.header("x-app-version"), Some("1"));
    let _ = v2;

    for args in [&["switch"][..], &["switch", "--force"][..]] {
        let err = one_line_error(&root.cmd(args).output().unwrap());
        assert!(
            err.contains("not switching to instance2") && err.contains(&holder),
            "{err}"
        );
    }
    let o = root.cmd(&["check"]).output().unwrap();
    assert!(!o.status.success());
    assert!(out(&o).contains(&holder), "{}", out(&o));
    let o = root.cmd(&["status", "-l", "instance2"]).output().unwrap();
    assert!(!o.status.success());
    assert!(
        out(&o).contains("FOREIGN LISTENER on its port") && out(&o).contains(&holder),
        "{}",
        out(&o)
    );
}

/// approuter run by an ordinary user (with `user` naming that same user, which changes nobody)
/// cannot read another user's /proc/<pid>/fd, so it cannot see who holds a socket: a squatter
/// it cannot see is still a stranger, never "nobody".
#[test]
fn a_squatter_approuter_cannot_see_still_never_gets_production() {
    let root = Root::new();
    let (Some(operator), Some(attacker)) = (TestUser::new(root.path()), TestUser::new(root.path()))
    else {
        return;
    };
    let repo = AppRepo::new(&root);
    let ports = configure(&root, &repo.url(), &[], 20);
    // Naming approuter's own user is allowed, and changes nobody.
    root.edit_etc("approuter.toml", |toml| {
        format!("{toml}user = \"{}\"\n", operator.name)
    });
    let chown = std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", operator.uid, operator.gid))
        .arg(root.path())
        .status()
        .unwrap();
    assert!(chown.success());
    let as_operator = |args: &[&str]| {
        operator
            .command(crate::util::approuter_exe())
            .arg("--root")
            .arg(root.path())
            .args(args)
            .output()
            .unwrap()
    };
    let o = as_operator(&["start"]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(uid_of(pid(&root, "instance1")), Some(operator.uid));
    let o = as_operator(&["stop", "instance2"]);
    assert!(o.status.success(), "{}", out(&o));
    let _squatter = squat(&root, Some(&attacker), ports.prod[1]);

    let o = operator
        .command("/bin/sh")
        .arg("-c")
        .arg("echo 2 > VERSION && git -c user.name=t -c user.email=t@x commit -qam v2")
        .current_dir(&repo.dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let o = as_operator(&["sync"]);
    assert!(!o.status.success(), "{}", out(&o));
    let text = out(&o);
    assert!(
        text.contains(&format!(
            "port {} is held by a process approuter cannot see",
            ports.prod[1]
        )),
        "{text}"
    );
    let r = get(ports.listen, "/", None).unwrap();
    assert_eq!(r.header("x-served-by"), Some("instance1"));
    assert_eq!(r.header("x-app-version"), Some("1"));
    let o = as_operator(&["switch", "--force"]);
    assert!(!o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("cannot see"), "{}", out(&o));
    let o = as_operator(&["check"]);
    assert!(!o.status.success());
    assert!(out(&o).contains("cannot see"), "{}", out(&o));
}

/// A process that starts listening on a new alternate's port while the alternate is being
/// cloned (its port was free when it was given) never gets the alternate's route; the next sync
/// adds the alternate on a port nobody holds.
#[test]
fn a_port_taken_while_an_alternate_is_cloned_gets_no_route() {
    let (root, _repo, ports) = crate::app::started(&[]);
    root.write_etc("alternates.conf", "beta\n");
    let go = root.path().join("go");
    let mut sync = crate::util::Proc::spawn(
        std::process::Command::new(crate::util::approuter_exe())
            .arg("--root")
            .arg(root.path())
            .arg("sync")
            .env("APPROUTER_FAILPOINT", "alternate-cloned")
            .env("APPROUTER_FAILPOINT_GO", &go)
            .stdout(std::process::Stdio::piped()),
        &root.path().join("sync.err"),
    );
    let checkout = root.managed().join("alternates/beta");
    wait_for(secs(30), "beta to be cloned", || {
        checkout.join(".git").is_dir()
    });
    let _squatter = squat(&root, None, ports.alt_base);
    fs::write(&go, "").unwrap();
    let status = sync.wait(secs(60));
    let mut text = String::new();
    use std::io::Read;
    sync.child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text.push_str(&sync.stderr());
    assert!(!status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "alternate beta: port {} is held by pid",
            ports.alt_base
        )) && text.contains("it is not added"),
        "{text}"
    );
    let r = get(ports.listen, "/", Some("approuter_alt=beta")).unwrap();
    assert_eq!(r.header("x-served-by"), Some("instance1"));
    assert_ne!(r.body, "owned\n");
    assert_eq!(
        get(ports.listen, "/set_alt_cookie_beta.html", None)
            .unwrap()
            .status,
        404
    );

    let text = cmd_ok(&root, &["sync"]);
    assert!(text.contains("alternate beta added"), "{text}");
    let r = get(ports.listen, "/", Some("approuter_alt=beta")).unwrap();
    assert_eq!(r.header("x-served-by"), Some("beta"));
    assert_eq!(r.header("x-app-version"), Some("2-beta"));
}

/// A start script that daemonizes its server out of its service (as `gunicorn --daemon` does)
/// and exits: the service crash-loops while the escaped server answers on its port. It does not
/// count, and it does not outlive its alternate.
#[test]
fn a_process_that_escaped_its_service_does_not_count_and_goes_with_it() {
    let (root, repo, ports) = crate::app::started(&[]);
    crate::app::git(&repo.dir, &["branch", "escape", "main"]);
    repo.commit(
        "escape",
        &[(
            "start",
            "#!/bin/sh\nsetsid python3 server.py \"$1\" >/dev/null 2>&1 < /dev/null &\nsleep 0.3\nexit 1",
        )],
        "daemonizes",
    );
    root.write_etc("alternates.conf", "escape\n");
    let o = root
        .cmd(&["sync"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let text = out(&o);
    assert!(
        text.contains("alternate escape added")
            && text.contains("which is not one of its own processes")
            && text.contains("python3 server.py"),
        "{text}"
    );
    let port: u16 = fs::read_to_string(root.var("state/ports"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("escape "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        get(port, "/diagnostic", None).is_ok(),
        "the escaped server runs"
    );
    assert_eq!(
        get(ports.listen, "/", Some("approuter_alt=escape"))
            .unwrap()
            .header("x-served-by"),
        Some("escape"),
        "nginx routes to the port (the route exists), which is why sync says so"
    );

    // Removed: its escaped processes go with it.
    root.write_etc("alternates.conf", "");
    let o = root
        .cmd(&["sync"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(out(&o).contains("alternate escape removed"), "{}", out(&o));
    wait_for(secs(10), "the escaped server to be gone", || {
        get(port, "/diagnostic", None).is_err()
    });
}

/// The mode bits of `path`.
fn mode(path: &std::path::Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

/// A local user holds a free lock with `flock` (which works on a read-only descriptor), as long
/// as the returned process lives. `None` when the user cannot take it.
fn hold_lock(
    user: &TestUser,
    path: &std::path::Path,
    err: &std::path::Path,
) -> Option<crate::util::Proc> {
    let mut p = crate::util::Proc::spawn(
        user.command("flock")
            .arg("-n")
            .arg("-F")
            .arg(path)
            .args(["sleep", "300"]),
        err,
    );
    let mut gone = None;
    crate::util::settle(secs(5), || {
        gone = p.child.try_wait().unwrap();
        gone.is_some() || crate::util::is_locked(path)
    });
    match gone {
        Some(_) => None,
        None => Some(p),
    }
}

/// Lock and state files: private where they may be, and a holder approuter did not start is an
/// error naming it, never "already running" with exit status 0 or a signal to a stranger.
#[test]
fn a_local_user_cannot_hold_approuter_s_locks() {
    let (root, repo, _ports) = crate::app::started(&[]);
    let Some(attacker) = TestUser::new(root.path()) else {
        return;
    };
    let run = root.var("run");
    let lock = run.join("approuter.lock");
    let scan_lock = root.var("service/.svscan.lock");
    let state = root.var("state");
    assert_eq!(mode(&run), 0o700);
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&lock), 0o600);
    assert_eq!(mode(&scan_lock), 0o600);
    for f in fs::read_dir(&state).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            assert_eq!(mode(&f) & 0o077, 0, "{}", f.display());
        }
    }
    let err = root.path().join("flock.err");
    for path in [&lock, &scan_lock] {
        let o = attacker
            .command("flock")
            .args(["-n", "-E", "99"])
            .arg(path)
            .arg("true")
            .output()
            .unwrap();
        // 99 would be a lock that is merely taken; the user cannot even open the file.
        assert!(
            o.status.code() != Some(99) && !o.status.success(),
            "{}: {o:?}",
            path.display()
        );
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
            "{}: {o:?}",
            path.display()
        );
    }

    // A tree left by an older approuter, with the modes of a careless umask: the attacker gets
    // hold of the lock. sync does not take that for a sync in progress and exit 0.
    fs::set_permissions(&run, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o644)).unwrap();
    let holder = hold_lock(&attacker, &lock, &err).expect("the lock is held");
    // flock -F execs its command: the holder is `sleep 300`.
    let who = format!("(user {}: sleep 300)", attacker.name);
    repo.commit("main", &[("VERSION", "2")], "v2");
    let o = crate::app::sync(&root, &[]);
    assert!(!o.status.success(), "{}", out(&o));
    let e = one_line_error(&o);
    assert!(
        e.contains(&who) && e.contains("not an approuter command"),
        "{e}"
    );
    drop(holder);
    let text = cmd_ok(&root, &["sync"]);
    assert!(text.contains("on instance2"), "{text}");
    assert_eq!(mode(&run), 0o700, "run/ is private again");
    assert_eq!(mode(&lock), 0o600, "the lock is private again");

    // The same with svscan's lock while nothing runs: start and shutdown name the holder, fail,
    // and signal nothing.
    cmd_ok(&root, &["shutdown"]);
    fs::set_permissions(&scan_lock, fs::Permissions::from_mode(0o644)).unwrap();
    let holder = hold_lock(&attacker, &scan_lock, &err).expect("svscan's lock is held");
    for cmd in ["start", "shutdown", "sync"] {
        let o = root
            .cmd(&[cmd])
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        assert!(!o.status.success(), "{cmd}: {}", out(&o));
        let e = one_line_error(&o);
        assert!(
            e.contains(&who) && e.contains("not by approuter's svscan"),
            "{cmd}: {e}"
        );
    }
    let mut holder = holder;
    assert!(
        holder.child.try_wait().unwrap().is_none(),
        "nobody signalled the process holding svscan's lock"
    );
    drop(holder);
    cmd_ok(&root, &["start"]);
    assert_eq!(mode(&scan_lock), 0o600, "svscan's lock is private again");
}

/// Whoever can plant names in a log directory (one made world-writable by a careless umask, say)
/// gets nothing from the logger, which runs as root: no write through a symlinked `current`
/// (here to a setuid file), no file created where a symlinked `lock` points, no line of a
/// root-only file read through a symlinked `config`, and no hang on a FIFO.
#[test]
fn the_logger_follows_no_planted_link_and_repeats_no_config_line() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    fs::create_dir(&dir).unwrap();
    let setuid = tmp.path().join("setuid-tool");
    fs::write(&setuid, "#!/bin/sh\necho original\n").unwrap();
    fs::set_permissions(&setuid, fs::Permissions::from_mode(0o4755)).unwrap();
    let secret = tmp.path().join("shadow");
    fs::write(&secret, "TOP-SECRET-1\nTOP-SECRET-2\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let chosen = tmp.path().join("created-by-the-logger");

    // `approuter svlogd -tt DIR`, as every log/run runs it.
    let logger = || {
        let mut c = std::process::Command::new(crate::util::approuter_exe());
        c.args(["svlogd", "-tt"]).arg(&dir);
        c
    };
    // A symlinked lock: the directory is refused at once, and nothing is created.
    symlink(&chosen, dir.join("lock")).unwrap();
    let o = logger()
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is a symbolic link"), "{err}");
    assert!(
        !chosen.exists(),
        "the logger created a file where a link pointed"
    );
    fs::remove_file(dir.join("lock")).unwrap();

    // A symlinked current and config.
    symlink(&setuid, dir.join("current")).unwrap();
    symlink(&secret, dir.join("config")).unwrap();
    let mut log = crate::util::Proc::spawn(&mut logger(), &tmp.path().join("stderr"));
    log.write(b"hello\n");
    wait_for(secs(10), "a warning about current", || {
        log.stderr()
            .contains("current: cannot use: is a symbolic link")
    });
    assert_eq!(
        fs::read_to_string(&setuid).unwrap(),
        "#!/bin/sh\necho original\n"
    );
    assert_eq!(mode(&setuid), 0o4755);
    // The link goes; the line is written to a real current.
    fs::remove_file(dir.join("current")).unwrap();
    wait_for(secs(10), "the line in a new current", || {
        fs::read_to_string(dir.join("current")).is_ok_and(|c| c.contains(" hello\n"))
    });
    assert!(fs::symlink_metadata(dir.join("current")).unwrap().is_file());
    let err = log.stderr();
    assert!(
        err.contains("config: cannot read: is a symbolic link"),
        "{err}"
    );

    // A FIFO as current is refused without waiting for a reader.
    drop(log);
    fs::remove_file(dir.join("current")).unwrap();
    nix::unistd::mkfifo(
        &dir.join("current"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    // A config that is a regular file but not a config (a hard link to a secret file, say):
    // its lines are never repeated.
    fs::remove_file(dir.join("config")).unwrap();
    fs::copy(&secret, dir.join("config")).unwrap();
    let mut log = crate::util::Proc::spawn(&mut logger(), &tmp.path().join("stderr2"));
    log.write(b"after\n");
    wait_for(secs(10), "a warning about the FIFO", || {
        log.stderr()
            .contains("current: cannot use: is not a regular file")
    });
    let err = log.stderr();
    assert!(
        err.contains("config: line 1: unknown setting; line ignored"),
        "{err}"
    );
    assert!(!err.contains("TOP-SECRET"), "{err}");
}

/// Started from a shell with `umask 000`, approuter still makes nothing that another user could
/// write: not managed/, not a run script, not a log directory, not a checkout.
#[test]
fn nothing_approuter_makes_is_writable_by_others_whatever_the_umask() {
    use std::os::unix::process::CommandExt;
    let root = Root::new();
    let repo = AppRepo::new(&root);
    configure(&root, &repo.url(), &["beta"], 20);
    let careless = |args: &[&str]| {
        let mut c = std::process::Command::new(crate::util::approuter_exe());
        c.arg("--root").arg(root.path()).args(args);
        // SAFETY: umask is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                nix::sys::stat::umask(nix::sys::stat::Mode::empty());
                Ok(())
            });
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", out(&o));
    };
    careless(&["start"]);
    repo.commit("main", &[("VERSION", "2")], "v2");
    careless(&["sync"]);

    let mut writable = Vec::new();
    let mut seen = 0;
    let mut stack = vec![root.managed()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        if m.is_symlink() {
            continue;
        }
        seen += 1;
        if m.mode() & 0o022 != 0 {
            writable.push(format!("{:o} {}", m.mode() & 0o7777, p.display()));
        }
        if m.is_dir() {
            stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert!(seen > 100, "only {seen} files looked at");
    assert!(
        writable.is_empty(),
        "writable by others:\n{}",
        writable.join("\n")
    );
}

/// A tree made by an older approuter under `umask 000`, every directory writable by all: a local
/// user plants symlinks where approuter writes (`run.new`, `nginx.conf.new`, the lock) and its
/// own copy of a run script. approuter writes through none of them, takes the run script back,
/// and closes the directories.
#[test]
fn an_old_world_writable_tree_is_closed_and_its_planted_links_lead_nowhere() {
    let (root, _repo, ports) = crate::app::started(&[]);
    let Some(user) = TestUser::new(root.path()) else {
        return;
    };
    cmd_ok(&root, &["shutdown"]);
    // The supervision tree; a checkout whose repository others could write is refused outright
    // (the_instances_user_cannot_lead_a_deploy_outside_its_checkout).
    fs::set_permissions(root.managed(), fs::Permissions::from_mode(0o777)).unwrap();
    let mut stack = vec![root.managed().join("var")];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        // nginx makes its temp directories itself, 0700 whatever the umask.
        if m.is_dir() && !p.to_string_lossy().ends_with("_temp") {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o777)).unwrap();
            stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    let victim = root.path().join("victim");
    fs::write(&victim, "root's\n").unwrap();
    let var = root.managed().join("var");
    let plant = |script: &str| {
        let o = user
            .command("/bin/sh")
            .arg("-c")
            .arg(script)
            .current_dir(&var)
            .output()
            .unwrap();
        assert!(o.status.success(), "{script}: {o:?}");
    };
    plant(&format!(
        "ln -s {v} service/instance1/run.new && ln -s {v} nginx/nginx.conf.new && rm nginx/nginx.conf \
         && cp service/instance2/run run.mine && mv -f run.mine service/instance2/run \
         && rm run/approuter.lock && ln -s {v} run/approuter.lock \
         && touch nginx/slots/instance1/instance2",
        v = victim.display()
    ));
    let run2 = var.join("service/instance2/run");
    assert_eq!(fs::metadata(&run2).unwrap().uid(), user.uid);

    // The lock is not opened through the link: the command stops, naming it.
    let o = root.cmd(&["start"]).output().unwrap();
    let err = one_line_error(&o);
    assert!(err.contains("run/approuter.lock: cannot open"), "{err}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "root's\n");
    // The operator removes it, as the message says.
    fs::remove_file(var.join("run/approuter.lock")).unwrap();
    fs::remove_file(var.join("service/instance1/run")).unwrap();
    cmd_ok(&root, &["start"]);
    assert_eq!(fs::read_to_string(&victim).unwrap(), "root's\n");
    assert_eq!(
        fs::metadata(&run2).unwrap().uid(),
        0,
        "the user's run script stayed"
    );
    for f in ["service/instance1/run", "nginx/nginx.conf"] {
        let m = fs::symlink_metadata(var.join(f)).unwrap();
        assert!(m.is_file() && m.uid() == 0, "{f}");
    }
    let mut open = Vec::new();
    let mut stack = vec![root.managed()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            if m.mode() & 0o022 != 0 {
                open.push(format!("{:o} {}", m.mode() & 0o7777, p.display()));
            }
            stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert!(
        open.is_empty(),
        "still writable by others:\n{}",
        open.join("\n")
    );
    // The file planted to make nginx take instance2 for production is gone.
    let r = get(ports.listen, "/", None).unwrap();
    assert_eq!(r.header("x-served-by"), Some("instance1"));
    // So is a slot directory replaced by a symlink to the other one (slots/instance1 ->
    // instance2 would make the active link name instance2's marker).
    cmd_ok(&root, &["shutdown"]);
    let slot = var.join("nginx/slots/instance1");
    fs::remove_dir_all(&slot).unwrap();
    std::os::unix::fs::symlink("instance2", &slot).unwrap();
    cmd_ok(&root, &["start"]);
    assert!(fs::symlink_metadata(&slot).unwrap().is_dir());
    let r = get(ports.listen, "/", None).unwrap();
    assert_eq!(r.header("x-served-by"), Some("instance1"));
}

/// A pushed commit can hold paths git itself never writes (`..`, `.git`): the deploy fails
/// naming the path, and nothing outside the checkout is touched on the way.
#[test]
fn a_commit_with_paths_git_refuses_touches_nothing_outside_the_checkout() {
    let (root, _repo, ports) = crate::app::started(&[]);
    // prod/instance1/../../.. is the root: `../../../victim/x` in a tree would make approuter
    // remove the file `victim`, which is "in the way" of a directory.
    let victim = root.path().join("victim");
    fs::write(&victim, "root's\n").unwrap();
    let dir = root.path().join("app-repo");
    let git_in = |args: &[&str], input: &str| {
        use std::io::Write;
        let mut c = std::process::Command::new("git")
            .args(args)
            .current_dir(&dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "git {args:?}");
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    let blob = git_in(&["hash-object", "-w", "--stdin"], "planted\n");
    let mut tree = git_in(&["mktree"], &format!("100644 blob {blob}\tx\n"));
    for name in ["victim", "..", ".."] {
        tree = git_in(&["mktree"], &format!("040000 tree {tree}\t{name}\n"));
    }
    let mut top = crate::app::git(&dir, &["ls-tree", "main"]);
    top.push_str(&format!("\n040000 tree {tree}\t..\n"));
    let top = git_in(&["mktree"], &top);
    let commit = git_in(&["commit-tree", &top, "-p", "main", "-m", "dots"], "");
    crate::app::git(&dir, &["update-ref", "refs/heads/main", &commit]);

    let o = sync(&root, &[]);
    assert!(!o.status.success(), "{}", out(&o));
    assert_eq!(
        fs::read_to_string(&victim).ok().as_deref(),
        Some("root's\n"),
        "the deploy removed a file outside the checkout"
    );
    let text = out(&o);
    assert!(
        text.contains("has a path git refuses to check out") && text.contains("../../../victim/x"),
        "{text}"
    );
    assert_eq!(
        get(ports.listen, "/", None)
            .unwrap()
            .header("x-app-version"),
        Some("1")
    );
}

/// A deploy leaves exactly the commit in a checkout: a planted script, an untracked directory
/// and an untracked symlink go; files the repository ignores (an app's cache) stay.
#[test]
fn untracked_files_do_not_survive_a_deploy() {
    use std::os::unix::fs::symlink;
    let (root, repo, ports) = crate::app::started(&[]);
    let co = root.managed().join("prod/instance2");
    fs::write(co.join("webshell.php"), "<?php system($_GET['c']);").unwrap();
    fs::create_dir_all(co.join("evil/deeper")).unwrap();
    fs::write(co.join("evil/deeper/shell.php"), "<?php").unwrap();
    symlink("/etc", co.join("etc-link")).unwrap();
    // Hidden by a .gitignore of its own (`*` ignores itself too), or inside a repository made
    // in the tree (git lists it as one untracked directory).
    fs::create_dir_all(co.join("static/hidden")).unwrap();
    fs::write(co.join("static/hidden/.gitignore"), "*\n").unwrap();
    fs::write(co.join("static/hidden/shell.php"), "<?php").unwrap();
    crate::app::git(&co, &["init", "-q", "nested"]);
    fs::write(co.join("nested/shell.php"), "<?php").unwrap();
    // Paths git's own listing never shows: a `.git` below the top, a `.GIT` at it, a FIFO.
    fs::create_dir_all(co.join("static/.git")).unwrap();
    fs::write(co.join("static/.git/shell.php"), "<?php").unwrap();
    fs::create_dir_all(co.join(".GIT")).unwrap();
    fs::write(co.join(".GIT/shell.php"), "<?php").unwrap();
    nix::unistd::mkfifo(
        &co.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    fs::write(co.join("keep.log"), "an app's log\n").unwrap();
    fs::create_dir_all(co.join("cache")).unwrap();
    fs::write(co.join("cache/data"), "cached\n").unwrap();
    repo.commit(
        "main",
        &[("VERSION", "2"), (".gitignore", "*.log\ncache/")],
        "v2 ignores logs and the cache",
    );
    let text = cmd_ok(&root, &["sync"]);
    assert!(text.contains("on instance2"), "{text}");
    assert_eq!(
        get(ports.listen, "/", None)
            .unwrap()
            .header("x-app-version"),
        Some("2")
    );
    for gone in [
        "webshell.php",
        "evil",
        "etc-link",
        "static/hidden",
        "nested",
        "static/.git",
        ".GIT",
        "pipe",
    ] {
        assert!(
            fs::symlink_metadata(co.join(gone)).is_err(),
            "{gone} survived the deploy"
        );
    }
    assert!(
        fs::metadata("/etc/passwd").is_ok(),
        "the link was not followed"
    );
    assert_eq!(
        fs::read_to_string(co.join("keep.log")).unwrap(),
        "an app's log\n"
    );
    assert_eq!(
        fs::read_to_string(co.join("cache/data")).unwrap(),
        "cached\n"
    );
}

/// The user instances run as owns its working tree but not the repository in it, so it cannot
/// point git (which runs as root) elsewhere through `.git/config`; nor can it lead a deploy
/// outside the tree by swapping a directory for a symlink; and a set-uid file it leaves is gone.
#[test]
fn the_instances_user_cannot_lead_a_deploy_outside_its_checkout() {
    let root = Root::new();
    let Some(user) = TestUser::new(root.path()) else {
        return;
    };
    let repo = AppRepo::new(&root);
    repo.commit("main", &[("static/app.css", "v1")], "static files");
    let ports = configure(&root, &repo.url(), &[], 20);
    root.edit_etc("approuter.toml", |toml| {
        format!("{toml}user = \"{}\"\n", user.name)
    });
    cmd_ok(&root, &["start"]);
    let co = root.managed().join("prod/instance2");
    assert_eq!(
        fs::metadata(co.join("static/app.css")).unwrap().uid(),
        user.uid
    );
    assert_eq!(fs::metadata(co.join(".git/config")).unwrap().uid(), 0);

    let as_user = |script: &str| {
        user.command("/bin/sh")
            .arg("-c")
            .arg(script)
            .current_dir(&co)
            .output()
            .unwrap()
    };
    let victim = root.path().join("victim");
    fs::create_dir(&victim).unwrap();
    let o = as_user(&format!(
        "printf '[core]\\n\\tworktree = {}\\n' >> .git/config",
        victim.display()
    ));
    assert!(!o.status.success(), "the user wrote .git/config");
    assert!(String::from_utf8_lossy(&o.stderr).contains("Permission denied"));
    let victim_file = root.path().join("victim-file");
    fs::write(&victim_file, "root's\n").unwrap();
    let o = as_user(&format!(
        "mv static static.old && ln -s {} static && rm VERSION && ln -s {} VERSION && cp /bin/true planted && chmod u+s planted",
        victim.display(),
        victim_file.display()
    ));
    assert!(o.status.success(), "{o:?}");
    // A hard link to a file of its own outside the checkout where the tree has a file, and a
    // FIFO where it has another: git must neither take the file over nor write through the
    // link, nor block on the FIFO.
    let outside = user.home.join("outside");
    let o = as_user(&format!(
        "echo mine > {o} && rm BRANCH && ln {o} BRANCH && rm start && mkfifo start",
        o = outside.display()
    ));
    assert!(o.status.success(), "{o:?}");

    repo.commit("main", &[("VERSION", "2"), ("static/app.css", "v2")], "v2");
    let text = cmd_ok(&root, &["sync"]);
    assert!(text.contains("on instance2"), "{text}");
    assert_eq!(
        get(ports.listen, "/", None)
            .unwrap()
            .header("x-app-version"),
        Some("2")
    );
    assert_eq!(
        fs::read_dir(&victim).unwrap().count(),
        0,
        "git wrote through the user's symlink"
    );
    assert_eq!(fs::read_to_string(&victim_file).unwrap(), "root's\n");
    assert!(fs::symlink_metadata(co.join("VERSION")).unwrap().is_file());
    assert_eq!(fs::read_to_string(&outside).unwrap(), "mine\n");
    assert_eq!(fs::metadata(&outside).unwrap().uid(), user.uid);
    assert_eq!(fs::read_to_string(co.join("BRANCH")).unwrap(), "main\n");
    assert!(fs::symlink_metadata(co.join("start")).unwrap().is_file());
    let css = co.join("static/app.css");
    assert!(fs::symlink_metadata(co.join("static")).unwrap().is_dir());
    assert_eq!(fs::read_to_string(&css).unwrap(), "v2\n");
    for gone in ["static.old", "planted"] {
        assert!(
            fs::symlink_metadata(co.join(gone)).is_err(),
            "{gone} survived"
        );
    }
    // Handed over again: the application can write in its tree, not in its repository.
    assert_eq!(fs::metadata(&css).unwrap().uid(), user.uid);
    assert_eq!(fs::metadata(&co).unwrap().uid(), user.uid);
    assert_eq!(fs::metadata(co.join(".git")).unwrap().uid(), 0);

    // The user owns the top directory of the checkout the next deploy rewrites, so it can put a
    // repository of its own where approuter's was: a copy working on another tree, a `gitdir:`
    // file pointing at one, a symlink to one. Git (as root) must refuse each.
    let next = root.managed().join("prod/instance1");
    let fake = user.home.join("fake.git");
    let as_user_in = |script: &str| {
        user.command("/bin/sh")
            .arg("-c")
            .arg(script)
            .current_dir(&next)
            .output()
            .unwrap()
    };
    let worktree = format!(
        "git init -q --bare {fake} && git --git-dir={fake} config core.bare false && git --git-dir={fake} config core.worktree {victim}",
        fake = fake.display(),
        victim = victim.display()
    );
    let attacks = [
        format!(
            "mv .git g && mkdir .git && cp -r g/. .git/ && git --git-dir=.git config core.worktree {}",
            victim.display()
        ),
        format!("{worktree} && mv .git g && echo 'gitdir: {}' > .git", fake.display()),
        format!("{worktree} && mv .git g && ln -s {} .git", fake.display()),
    ];
    for (n, attack) in attacks.iter().enumerate() {
        let o = as_user_in(attack);
        assert!(o.status.success(), "{attack}: {o:?}");
        repo.commit("main", &[("VERSION", &format!("{}", n + 3))], "next");
        let o = sync(&root, &[]);
        assert!(!o.status.success(), "{attack}: {}", out(&o));
        let text = out(&o);
        assert!(
            text.contains("instance1/.git") && text.contains("replaced it"),
            "{attack}: {text}"
        );
        assert_eq!(
            fs::read_dir(&victim).unwrap().count(),
            0,
            "{attack}: git wrote in the user's core.worktree"
        );
        assert_eq!(
            get(ports.listen, "/", None)
                .unwrap()
                .header("x-app-version"),
            Some("2"),
            "{attack}"
        );
        // Put approuter's repository back, as an operator would after reading the error.
        let restore = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "rm -rf .git {fake} && mv g .git && chown -R 0:0 .git",
                fake = fake.display()
            ))
            .current_dir(&next)
            .status()
            .unwrap();
        assert!(restore.success());
    }
    let text = cmd_ok(&root, &["sync"]);
    assert!(text.contains("on instance1"), "{text}");
    assert_eq!(
        get(ports.listen, "/", None)
            .unwrap()
            .header("x-app-version"),
        Some("5")
    );
}

/// `curl ARGS...`: the body of the answer.
fn curl(args: &[&str]) -> String {
    let o = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl");
    assert!(o.status.success(), "curl {args:?}: {o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The request headers the demo app saw (its /headers page), by lowercase name.
fn seen_headers(body: &str) -> std::collections::BTreeMap<String, String> {
    body.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect()
}

/// An ordinary caching proxy (a second, real nginx with proxy_cache) in front of approuter's
/// nginx; stopped when dropped.
struct CachingProxy {
    nginx: crate::util::Proc,
    port: u16,
    _dir: tempfile::TempDir,
}

impl CachingProxy {
    fn start(upstream: u16) -> CachingProxy {
        let dir = tempfile::tempdir().unwrap();
        // Its workers (nobody, when started as root) keep the cache in here.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(dir.path().join("cache")).unwrap();
        fs::set_permissions(dir.path().join("cache"), fs::Permissions::from_mode(0o777)).unwrap();
        let port = crate::app::free_ports(1);
        fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "daemon off;\nmaster_process on;\nworker_processes 1;\nerror_log stderr notice;\npid nginx.pid;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n  access_log off;\n  proxy_temp_path cache/tmp;\n  client_body_temp_path cache/body;\n\
                 proxy_cache_path cache/data keys_zone=c:1m;\n\
                 server {{\n    listen 127.0.0.1:{port};\n    location / {{\n\
                 proxy_pass http://127.0.0.1:{upstream};\n      proxy_cache c;\n      proxy_cache_valid 200 10m;\n\
                 add_header X-Cache $upstream_cache_status always;\n    }}\n  }}\n}}\n"
            ),
        )
        .unwrap();
        let nginx = crate::util::Proc::spawn(
            std::process::Command::new("nginx")
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg("nginx.conf")
                .stdout(std::process::Stdio::null()),
            &dir.path().join("stderr"),
        );
        wait_for(secs(10), "the caching proxy to answer", || {
            get(port, "/", None).is_ok()
        });
        CachingProxy {
            _dir: dir,
            nginx,
            port,
        }
    }
}

impl Drop for CachingProxy {
    fn drop(&mut self) {
        // TERM to the master, which ends its workers; killing it outright would leave them.
        self.nginx.signal(nix::sys::signal::Signal::SIGTERM);
        let mut gone = false;
        crate::util::settle(secs(10), || {
            gone = self.nginx.child.try_wait().unwrap().is_some();
            gone
        });
    }
}

/// The application cannot pass for another instance: nginx drops its X-Served-By and says which
/// instance answered. Here the new version claims to be the old one, which would make sync
/// believe its switch did not happen. And a cache in front never gives one routing cookie's page
/// to another (`Vary: Cookie`).
#[test]
fn the_app_cannot_claim_another_instance_and_caches_keep_routes_apart() {
    let (root, repo, ports) = crate::app::started(&["beta"]);
    repo.commit(
        "main",
        &[("VERSION", "2"), ("SERVED_BY", "instance1")],
        "v2 lies",
    );
    let text = cmd_ok(&root, &["sync"]);
    assert!(
        text.contains("on instance2") && text.contains("switched"),
        "{text}"
    );
    let r = get(ports.listen, "/", None).unwrap();
    let served: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("x-served-by"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(served, ["instance2"]);
    assert_eq!(r.header("vary"), Some("Cookie"));
    cmd_ok(&root, &["check"]);
    cmd_ok(&root, &["switch"]);
    cmd_ok(&root, &["switch"]);

    let cache = CachingProxy::start(ports.listen);
    let page = |cookie: Option<&str>| {
        let r = get(cache.port, "/cached", cookie).unwrap();
        (
            r.header("x-served-by").unwrap_or("").to_string(),
            r.header("x-cache").unwrap_or("").to_string(),
        )
    };
    let prod = page(None);
    assert_eq!(prod.0, "instance2");
    assert_eq!(
        page(None),
        ("instance2".into(), "HIT".into()),
        "the page is cached"
    );
    let beta = page(Some("approuter_alt=beta"));
    assert_eq!(beta.0, "beta", "a beta user got production's cached page");
    assert_eq!(
        page(Some("approuter_alt=beta")),
        ("beta".into(), "HIT".into())
    );
    assert_eq!(
        page(None).0,
        "instance2",
        "a production user got beta's cached page"
    );
}

/// Nobody reaches a production instance by name without the preview key: the inactive one may
/// run an older, unpatched version. The key is in files only root reads, never in the access
/// log, and `check` uses it.
#[test]
fn the_inactive_instance_is_reached_only_with_the_preview_key() {
    let (root, _repo, ports) = crate::app::started(&[]);
    let by = |cookie: Option<&str>| {
        get(ports.listen, "/", cookie)
            .unwrap()
            .header("x-served-by")
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(
        get(ports.listen, "/set_alt_cookie_instance2.html", None)
            .unwrap()
            .status,
        404
    );
    assert_eq!(by(Some("approuter_alt=instance2")), "instance1");
    assert_eq!(by(Some("approuter_alt=instance2.")), "instance1");

    let text = cmd_ok(&root, &["preview"]);
    assert!(
        text.contains("instance2 (inactive production instance)"),
        "{text}"
    );
    let page = text
        .split_whitespace()
        .find(|w| w.contains("/set_alt_cookie_instance2."))
        .unwrap()
        .split_once(&format!(":{}", ports.listen))
        .unwrap()
        .1
        .to_string();
    let value = page
        .trim_start_matches("/set_alt_cookie_")
        .trim_end_matches(".html")
        .to_string();
    let key = value.trim_start_matches("instance2.").to_string();
    assert_eq!(key.len(), 32);
    assert_eq!(by(Some(&format!("approuter_alt={value}"))), "instance2");
    let r = get(ports.listen, &page, None).unwrap();
    assert_eq!(r.status, 200);
    let cookie = r.header("set-cookie").unwrap();
    assert!(
        cookie.contains(&value) && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert!(!r.body.contains(&key), "{}", r.body);
    cmd_ok(&root, &["check"]);

    // A client that sends the page as Referer anyway: the instance never sees it.
    let url = format!("http://127.0.0.1:{}/headers", ports.listen);
    let h = seen_headers(&curl(&[
        "-b",
        &format!("approuter_alt={value}"),
        "-e",
        &format!("http://127.0.0.1:{}{page}", ports.listen),
        &url,
    ]));
    assert!(!h.contains_key("referer"), "{h:?}");
    let h = seen_headers(&curl(&["-e", "http://elsewhere.example/a", &url]));
    assert_eq!(h["referer"], "http://elsewhere.example/a");

    // Only root reads the key, and the access log does not hold it.
    for f in [root.var("nginx/nginx.conf"), root.var("state/preview-key")] {
        assert_eq!(mode(&f) & 0o077, 0, "{}", f.display());
    }
    if let Some(user) = TestUser::new(root.path()) {
        for f in [root.var("nginx/nginx.conf"), root.var("state/preview-key")] {
            let o = user.command("cat").arg(&f).output().unwrap();
            assert!(!o.status.success(), "{} read {}", user.name, f.display());
        }
    }
    get(ports.listen, "/logged-after-the-preview", None).unwrap();
    let log = root.var("log/nginx/current");
    wait_for(secs(10), "the access log to be written", || {
        fs::read_to_string(&log).is_ok_and(|l| l.contains("/logged-after-the-preview"))
    });
    assert!(!fs::read_to_string(&log).unwrap().contains(&key));

    // A new key: the old one opens nothing any more.
    let text = cmd_ok(&root, &["preview", "--new-key", "instance2"]);
    assert!(!text.contains(&key), "{text}");
    wait_for(secs(10), "the old key to stop working", || {
        by(Some(&format!("approuter_alt={value}"))) == "instance1"
    });
    cmd_ok(&root, &["check"]);
}

/// Instances see the Host the client asked for, port included, and forwarded headers only as a
/// trusted proxy set them; from anyone else they are replaced, never appended to.
#[test]
fn forwarded_headers_are_believed_only_from_trusted_proxies() {
    let (root, _repo, ports) = crate::app::started(&[]);
    let url = format!("http://127.0.0.1:{}/headers", ports.listen);
    let forged = [
        "-H",
        "X-Forwarded-For: 203.0.113.9",
        "-H",
        "X-Forwarded-Proto: https",
        "-H",
        "X-Real-IP: 203.0.113.9",
        "-H",
        "Forwarded: for=203.0.113.9;proto=https;host=bank.example",
        "-H",
        "X-Forwarded-Host: bank.example",
        "-H",
        "X-Forwarded-Port: 443",
        "-H",
        "X-Forwarded-Ssl: on",
        "-H",
        "X-Forwarded-Prefix: /admin",
        "-H",
        "X-Forwarded-Scheme: https",
        "-H",
        "Front-End-Https: on",
        "-H",
        "True-Client-IP: 203.0.113.9",
    ];
    let removed = [
        "forwarded",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-ssl",
        "x-forwarded-prefix",
        "x-forwarded-scheme",
        "front-end-https",
        "true-client-ip",
    ];
    let mut args = forged.to_vec();
    args.push(&url);
    let h = seen_headers(&curl(&args));
    assert_eq!(h["host"], format!("127.0.0.1:{}", ports.listen));
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    for name in removed {
        assert!(!h.contains_key(name), "{name} passed on: {h:?}");
    }

    root.edit_etc("approuter.toml", |toml| {
        format!("{toml}trusted_proxies = [\"127.0.0.1\"]\n")
    });
    cmd_ok(&root, &["sync"]);
    wait_for(secs(10), "nginx to trust 127.0.0.1", || {
        seen_headers(&curl(&args))
            .get("x-real-ip")
            .map(String::as_str)
            == Some("203.0.113.9")
    });
    let h = seen_headers(&curl(&args));
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "bank.example");
    assert_eq!(h["x-forwarded-prefix"], "/admin");
    assert!(h["forwarded"].contains("bank.example"), "{h:?}");
    // From an address that is not a trusted proxy, the same headers count for nothing.
    let mut args = vec!["--interface", "127.0.0.2"];
    args.extend_from_slice(&forged);
    args.push(&url);
    let h = seen_headers(&curl(&args));
    assert_eq!(h["x-forwarded-for"], "127.0.0.2");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-real-ip"], "127.0.0.2");
    for name in removed {
        assert!(!h.contains_key(name), "{name} passed on: {h:?}");
    }
}

/// True while `pid` runs (a zombie waiting for init to reap it has ended).
fn runs(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

/// What the caller of `approuter start` left open (here the lock of `flock LOCK approuter
/// start`) does not reach svscan or the services: the lock is free once start returns.
#[test]
fn what_the_caller_left_open_does_not_reach_the_services() {
    let root = Root::new();
    let repo = AppRepo::new(&root);
    configure(&root, &repo.url(), &[], 20);
    let lock = root.path().join("deploy.lock");
    let o = std::process::Command::new("flock")
        .arg("-n")
        .arg(&lock)
        .arg(crate::util::approuter_exe())
        .arg("--root")
        .arg(root.path())
        .arg("start")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        !crate::util::is_locked(&lock),
        "the caller's lock is still held by what approuter started"
    );
    for svc in ["instance1", "nginx"] {
        let fds = fs::read_dir(format!("/proc/{}/fd", pid(&root, svc))).unwrap();
        for fd in fds {
            let target = fs::read_link(fd.unwrap().path()).unwrap_or_default();
            assert_ne!(target, lock, "{svc} holds the caller's descriptor");
        }
    }
}

/// A hook that hangs, leaves a process behind and prints without end: killed at its timeout with
/// everything it started, its output cut, and the deploy done regardless.
#[test]
fn a_runaway_hook_is_ended_with_everything_it_started() {
    let (root, repo, ports) = crate::app::started(&[]);
    let toml = fs::read_to_string(root.etc("approuter.toml")).unwrap();
    root.write_etc("approuter.toml", &format!("{toml}hook_timeout_secs = 2\n"));
    let child_pid = root.path().join("hook-child.pid");
    crate::util::write_exec(
        &root.managed().join("etc/hooks/deployed"),
        &format!(
            "#!/bin/sh\nsleep 300 &\necho $! > '{}'\nhead -c 1000000 /dev/zero | tr '\\0' x\necho\nexec sleep 300\n",
            child_pid.display()
        ),
    );
    repo.commit("main", &[("VERSION", "2")], "v2");
    let begun = std::time::Instant::now();
    let text = cmd_ok(&root, &["sync"]);
    assert!(
        begun.elapsed() < secs(30),
        "the sync waited {:?}",
        begun.elapsed()
    );
    assert!(
        text.contains("hook deployed: (output cut at 64 KiB)")
            && text.contains("was killed, with every process it started"),
        "{}",
        &text[text.len().saturating_sub(2000)..]
    );
    assert!(text.len() < 100 * 1024, "{} bytes of output", text.len());
    assert_eq!(
        get(ports.listen, "/", None)
            .unwrap()
            .header("x-app-version"),
        Some("2")
    );
    let child: u32 = fs::read_to_string(&child_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for(secs(5), "the hook's background process to end", || {
        !runs(child)
    });
}

/// The release step runs as the instances' user, with their environment, and cannot forge its
/// own record (which would skip a later release) or touch anything of approuter's: the record
/// is written by approuter, as root, after the command ended.
#[test]
fn the_release_step_runs_as_the_instances_user_and_cannot_forge_its_record() {
    let root = Root::new();
    let Some(user) = TestUser::new(root.path()) else {
        return;
    };
    let repo = AppRepo::new(&root);
    let v1 = repo.commit(
        "main",
        &[(
            "release",
            "echo \"release as $(id -un) with $DATABASE_URL\"\nrecord=\"$APPROUTER_ROOT/managed/var/state/release-$APPROUTER_INSTANCE\"\nif printf 'commit forged\\nresult ok\\n' > \"$record\" 2>/dev/null; then echo FORGED; else echo 'record not writable'; fi\nif touch \"$APPROUTER_ROOT/managed/var/service/nginx/run\" 2>/dev/null; then echo TOUCHED; fi",
        )],
        "release",
    );
    configure(&root, &repo.url(), &[], 20);
    root.edit_etc("approuter.toml", |toml| {
        format!(
            "{toml}user = \"{}\"\nrelease_command = \"sh ./release\"\n",
            user.name
        )
    });
    write_secret(&root, "env", "DATABASE_URL=postgres://prod\n");
    let o = root
        .cmd(&["start"])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let log = fs::read_to_string(root.var("log/instance1/current")).unwrap();
    assert!(
        log.contains(&format!("release as {} with postgres://prod", user.name)),
        "{log}"
    );
    assert!(log.contains("record not writable"), "{log}");
    assert!(!log.contains("FORGED") && !log.contains("TOUCHED"), "{log}");
    let record = fs::read_to_string(root.var("state/release-instance1")).unwrap();
    assert!(
        record.contains(&format!("commit {v1}")) && record.contains("result ok"),
        "{record}"
    );
}
