//! Attacks on approuter, mounted for real: unprivileged local users, squatting and escaped processes, hostile repositories and headers, a caching proxy in front. Each shows the defence holding.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use crate::app::{cmd_ok, configure, get, out, AppRepo};
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
    let toml = fs::read_to_string(root.etc("approuter.toml")).unwrap();
    root.write_etc(
        "approuter.toml",
        &format!("{toml}user = \"{}\"\n", user.name),
    );
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
        fs::read_to_string(root.var("log/sync.log")).unwrap_or_default()
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

/// A local user binds the inactive instance's port (the instance then cannot): its server
/// answers every health check, but never gets production, and every command names it.
#[test]
fn a_squatter_on_the_inactive_port_never_gets_production() {
    let (root, repo, ports) = crate::app::started(&[]);
    let Some(attacker) = TestUser::new(root.path()) else {
        return;
    };
    cmd_ok(&root, &["stop", "instance2"]);
    let script = attacker.home.join("squat.py");
    fs::write(&script, SQUATTER).unwrap();
    let _squatter = crate::util::Proc::spawn(
        attacker
            .command("python3")
            .arg(&script)
            .arg(ports.prod[1].to_string()),
        &root.path().join("squatter.err"),
    );
    wait_for(secs(10), "the squatter to answer", || {
        get(ports.prod[1], "/diagnostic", None).is_ok_and(|r| r.status == 200)
    });
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

    // A symlinked lock: the directory is refused at once, and nothing is created.
    symlink(&chosen, dir.join("lock")).unwrap();
    let o = std::process::Command::new(crate::util::approuter_exe())
        .args(["svlogd", "-tt"])
        .arg(&dir)
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
    let mut log = crate::util::Proc::spawn(
        std::process::Command::new(crate::util::approuter_exe())
            .args(["svlogd", "-tt"])
            .arg(&dir),
        &tmp.path().join("stderr"),
    );
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
    let mut log = crate::util::Proc::spawn(
        std::process::Command::new(crate::util::approuter_exe())
            .args(["svlogd", "-tt"])
            .arg(&dir),
        &tmp.path().join("stderr2"),
    );
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
    for gone in ["webshell.php", "evil", "etc-link"] {
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
    let toml = fs::read_to_string(root.etc("approuter.toml")).unwrap();
    root.write_etc(
        "approuter.toml",
        &format!("{toml}user = \"{}\"\n", user.name),
    );
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
}
