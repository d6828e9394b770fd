//! `approuter start`, routing, `switch`, `which-prod`, `check`, `status -l`, `shutdown` and the demo, end to end: real git, real nginx, real processes.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};

use crate::app::{self, configure, get, out, AppRepo, Load};
use crate::util::{processes_under, secs, wait_for, Root};

fn start(root: &Root) -> std::process::Output {
    root.cmd(&["start"])
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap()
}

fn start_ok(root: &Root) -> String {
    let o = start(root);
    assert!(o.status.success(), "start failed:\n{}", out(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn served_by(port: u16, cookie: Option<&str>) -> String {
    let r = get(port, "/", cookie).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    r.header("x-served-by").unwrap_or("").to_string()
}

fn pids(root: &Root) -> serde_json::Value {
    let o = root.cmd(&["status", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| serde_json::json!([s["main"]["pid"], s["log"]["pid"]]))
        .collect()
}

#[test]
fn start_from_nothing_routes_by_cookie_and_shuts_down() {
    let root = Root::new();
    let repo = AppRepo::new(&root);
    let ports = configure(&root, &repo.url(), &["beta"], 30);
    let text = start_ok(&root);
    for svc in ["beta", "instance1", "instance2", "nginx"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("[+ +++ +++]  ") && l.contains(&format!(" {svc} "))),
            "{svc} not up in:\n{text}"
        );
    }
    assert!(root.managed().join("prod/instance1/.git").is_dir());
    assert!(root.managed().join("prod/instance2/.git").is_dir());
    assert!(root.managed().join("alternates/beta/.git").is_dir());

    // Production without a cookie, beta with it, production again after removing it.
    let r = get(ports.listen, "/", None).unwrap();
    assert_eq!(r.header("x-served-by"), Some("instance1"));
    assert!(r.body.contains("branch main, version 1"), "{}", r.body);
    let set = get(ports.listen, "/set_alt_cookie_beta.html", None).unwrap();
    assert_eq!(set.status, 200);
    assert!(
        set.header("set-cookie")
            .unwrap()
            .starts_with("approuter_alt=beta;"),
        "{set:?}"
    );
    let r = get(ports.listen, "/", Some("approuter_alt=beta")).unwrap();
    assert_eq!(r.header("x-served-by"), Some("beta"));
    assert!(r.body.contains("branch beta, version 2-beta"), "{}", r.body);
    assert_eq!(
        served_by(ports.listen, Some("approuter_alt=gone")),
        "instance1"
    );
    assert_eq!(
        served_by(ports.listen, Some("other=1; approuter_alt=beta")),
        "beta"
    );
    let rm = get(ports.listen, "/remove_alt_cookie_beta.html", None).unwrap();
    assert_eq!(rm.status, 200);
    assert!(rm.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        get(ports.listen, "/set_alt_cookie_nosuch.html", None)
            .unwrap()
            .status,
        404
    );
    // Headers reach the instance; the instance's own headers come back.
    assert_eq!(r.header("x-app-branch"), Some("beta"));

    let which = root.cmd(&["which-prod"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&which.stdout), "instance1\n");
    let which = root.cmd(&["which_prod"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&which.stdout), "instance1\n");

    let long = root.cmd(&["status", "-l"]).output().unwrap();
    let long = String::from_utf8_lossy(&long.stdout).into_owned();
    let head = app::git(&repo.dir, &["rev-parse", "--short=7", "main"]);
    assert!(
        long.contains(&format!(
            "branch main  commit {head}  port {}  role active production",
            ports.prod[0]
        )),
        "{long}"
    );
    assert!(
        long.contains(&format!("port {}  role inactive production", ports.prod[1])),
        "{long}"
    );
    assert!(long.contains("branch beta  commit "), "{long}");

    let check = root.cmd(&["check"]).output().unwrap();
    assert!(check.status.success(), "{}", out(&check));
    let check = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        check
            .lines()
            .any(|l| l.starts_with("production") && l.contains("200")),
        "{check}"
    );

    // The instances' output reaches their logs.
    let log = root.var("log/instance1/current");
    wait_for(secs(5), "instance1's output in its log", || {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("listening on 127.0.0.1")
    });

    // A second start changes nothing.
    let before = pids(&root);
    let again = start_ok(&root);
    assert!(again.contains("already running"), "{again}");
    assert_eq!(before, pids(&root));

    // The instances stop at once on TERM; the loggers read to the end of their input and exit:
    // nothing waits out the stop grace (3 s here).
    let t = std::time::Instant::now();
    let down = root.cmd(&["shutdown"]).output().unwrap();
    assert!(down.status.success(), "{}", out(&down));
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "shutdown took {:?}",
        t.elapsed()
    );
    assert!(
        processes_under(root.path()).is_empty(),
        "left: {:?}",
        processes_under(root.path())
    );
    assert!(
        TcpListener::bind((Ipv4Addr::UNSPECIFIED, ports.listen)).is_ok(),
        "listen port still held"
    );
    let again = root.cmd(&["shutdown"]).output().unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("not running"));
}

#[test]
fn switch_under_load_loses_no_request_and_survives_restart() {
    let root = Root::new();
    let repo = AppRepo::new(&root);
    let ports = configure(&root, &repo.url(), &[], 30);
    start_ok(&root);
    let load = Load::start(ports.listen, 4);
    let mut expect = "instance1";
    for _ in 0..5 {
        load.more(50);
        let o = root.cmd(&["switch"]).output().unwrap();
        assert!(o.status.success(), "{}", out(&o));
        expect = if expect == "instance1" {
            "instance2"
        } else {
            "instance1"
        };
        assert_eq!(served_by(ports.listen, None), expect);
    }
    load.more(50);
    let res = load.finish();
    assert!(res.ok > 100, "only {} requests", res.ok);
    res.assert_none_failed();
    assert!(
        res.served_by.contains("instance1") && res.served_by.contains("instance2"),
        "{:?}",
        res.served_by
    );

    // The aliases, and the choice surviving a restart.
    let o = root.cmd(&["switch_nginx_config"]).output().unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(served_by(ports.listen, None), "instance1");
    let o = root.cmd(&["switch-nginx-config"]).output().unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert!(root.cmd(&["shutdown"]).output().unwrap().status.success());
    start_ok(&root);
    assert_eq!(
        String::from_utf8_lossy(&root.cmd(&["which-prod"]).output().unwrap().stdout),
        "instance2\n"
    );
    assert_eq!(served_by(ports.listen, None), "instance2");
}

#[test]
fn switch_is_refused_when_the_inactive_instance_is_unhealthy() {
    let root = Root::new();
    let repo = AppRepo::new(&root);
    let ports = configure(&root, &repo.url(), &[], 30);
    start_ok(&root);
    assert!(root
        .cmd(&["stop", "instance2"])
        .output()
        .unwrap()
        .status
        .success());
    let o = root.cmd(&["switch"]).output().unwrap();
    let err = crate::util::one_line_error(&o);
    assert!(err.contains("instance2 is not healthy"), "{err}");
    assert!(err.contains("managed/var/log/instance2/current"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&root.cmd(&["which-prod"]).output().unwrap().stdout),
        "instance1\n"
    );
    assert_eq!(served_by(ports.listen, None), "instance1");
    let check = root.cmd(&["check"]).output().unwrap();
    assert!(
        !check.status.success(),
        "check must fail with instance2 down"
    );

    let o = root.cmd(&["switch", "--force"]).output().unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(
        String::from_utf8_lossy(&root.cmd(&["which-prod"]).output().unwrap().stdout),
        "instance2\n"
    );
    assert!(root
        .cmd(&["start", "instance2"])
        .output()
        .unwrap()
        .status
        .success());
    wait_for(secs(10), "production to answer 200", || {
        get(ports.listen, "/", None).is_ok_and(|r| r.status == 200)
    });
}

#[test]
fn start_names_the_instance_whose_start_script_fails() {
    let root = Root::new();
    let repo = AppRepo::new(&root);
    // beta's start is not executable; a second alternate has none at all.
    app::git(&repo.dir, &["checkout", "-q", "beta"]);
    app::git(&repo.dir, &["update-index", "--chmod=-x", "start"]);
    app::git(&repo.dir, &["commit", "-q", "-m", "start not executable"]);
    app::git(&repo.dir, &["checkout", "-q", "-b", "nostart"]);
    app::git(&repo.dir, &["rm", "-q", "-f", "start"]);
    app::git(&repo.dir, &["commit", "-q", "-m", "no start"]);
    app::git(&repo.dir, &["checkout", "-q", "main"]);
    let ports = configure(&root, &repo.url(), &["beta", "nostart"], 4);
    let o = start(&root);
    assert!(!o.status.success(), "start must fail:\n{}", out(&o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    for name in ["beta", "nostart"] {
        assert!(
            err.contains(&format!("approuter: {name} is not healthy")),
            "{err}"
        );
        assert!(
            err.contains(&format!("managed/var/log/{name}/current")),
            "{err}"
        );
    }
    assert!(
        err.contains("Permission denied"),
        "the log tail says why: {err}"
    );
    assert!(!err.contains("instance1 is not healthy"), "{err}");

    // While they crash-loop, production serves every request, and status shows the loop.
    let load = Load::start(ports.listen, 1);
    load.more(100);
    load.finish().assert_none_failed();
    wait_for(secs(10), "status to show beta's crash loop", || {
        let o = root.cmd(&["status", "beta"]).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        if o.status.code() == Some(1)
            && text.starts_with("[+ !.. +++]  beta")
            && text.contains("crash loop: exit 126")
        {
            Ok(())
        } else {
            Err(text)
        }
    });
}

#[test]
fn start_refuses_unreachable_remote_missing_branch_and_taken_port() {
    let root = Root::new();
    configure(&root, "/nonexistent/app.git", &[], 5);
    let o = start(&root);
    let err = crate::util::one_line_error(&o);
    assert!(err.contains("cannot reach /nonexistent/app.git"), "{err}");

    configure(&root, "file:///nonexistent/app.git", &[], 5);
    let err = crate::util::one_line_error(&start(&root));
    assert!(err.contains("file:///nonexistent/app.git"), "{err}");

    let repo = AppRepo::new(&root);
    configure(&root, &repo.url(), &["beta", "nosuch"], 5);
    let err = crate::util::one_line_error(&start(&root));
    assert!(err.contains("branch `nosuch` does not exist in"), "{err}");
    assert!(
        !root.managed().join("prod/instance1").exists(),
        "nothing cloned before the check"
    );

    let ports = configure(&root, &repo.url(), &["beta"], 5);
    let holder = TcpListener::bind((Ipv4Addr::UNSPECIFIED, ports.listen)).unwrap();
    let err = crate::util::one_line_error(&start(&root));
    assert!(err.contains(&format!("port {}", ports.listen)), "{err}");
    assert!(
        err.contains(&format!("(pid {})", std::process::id())),
        "names the holder: {err}"
    );
    drop(holder);
    assert!(processes_under(root.path()).is_empty(), "nothing started");

    // A checkout from another repository is reported, not replaced.
    start_ok(&root);
    assert!(root.cmd(&["shutdown"]).output().unwrap().status.success());
    let other = root.path().join("other-repo");
    fs::rename(&repo.dir, &other).unwrap();
    root.write_etc("repo.conf", &format!("{}\n", other.display()));
    let o = start(&root);
    assert!(!o.status.success(), "{}", out(&o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("approuter: error: ") && last.contains("alternates/beta: its origin is"),
        "{err}"
    );
    assert!(last.contains("move the checkout away"), "{err}");
    assert!(
        err.contains("warning: ") && err.contains("prod/instance1: its origin is"),
        "{err}"
    );
    assert!(
        root.managed().join("alternates/beta/.git").exists(),
        "not replaced"
    );
}

#[test]
fn root_with_a_space_starts_and_stops() {
    let root = Root::with_prefix("approuter start test ");
    let repo = AppRepo::new(&root);
    let ports = configure(&root, &repo.url(), &["beta"], 30);
    start_ok(&root);
    assert_eq!(served_by(ports.listen, Some("approuter_alt=beta")), "beta");
    assert!(root.cmd(&["shutdown"]).output().unwrap().status.success());
    assert!(processes_under(root.path()).is_empty());
}

#[test]
fn demo_sets_up_and_runs() {
    let root = Root::new();
    // The demo's own defaults are 9090 and up; give it free ports instead.
    let base = app::free_ports(10);
    root.write_etc(
        "approuter.toml",
        &format!(
            "listen_port = {base}\nprod_ports = [{}, {}]\nalternate_base_port = {}\n",
            base + 1,
            base + 2,
            base + 3
        ),
    );
    let o = root
        .cmd(&["demo"])
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(&format!("http://localhost:{base}/set_alt_cookie_beta.html")),
        "{text}"
    );
    assert!(get(base, "/", None)
        .unwrap()
        .body
        .contains("branch main, version 1"));
    assert!(get(base, "/", Some("approuter_alt=beta"))
        .unwrap()
        .body
        .contains("branch beta"));
    // Running it again finds it set up and running.
    let o = root.cmd(&["demo"]).output().unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("already"));
}

#[test]
fn environment_file_offers_the_control_words() {
    let env = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("environment");
    let script = format!(
        ". '{}' && echo \"root=$APPROUTER_ROOT\" && type start shutdown status switch which_prod stop >/dev/null && echo \"$PATH\" | cut -d: -f1 && . '{0}' && echo \"$PATH\" | tr ':' '\\n' | grep -c target/release && deactivate && echo \"after=${{APPROUTER_ROOT-unset}}\" && ! type start 2>/dev/null",
        env.display()
    );
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env_remove("APPROUTER_ROOT")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let here = env!("CARGO_MANIFEST_DIR");
    assert!(
        text.contains(&format!(
            "root={here}\n{here}/target/release\n1\nafter=unset"
        )),
        "{text}"
    );
}

#[test]
fn network_remotes_git_protocol_works_and_https_failure_is_clear() {
    let root = Root::new();
    let repo = AppRepo::new(&root);
    let port = app::free_ports(1);
    // A real network remote: git's own daemon, run from inside the test root.
    let mut daemon = std::process::Command::new("git")
        .args([
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", root.path().display()))
        .arg(root.path())
        .current_dir(root.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("git daemon");
    wait_for(secs(10), "git daemon to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let url = format!("git://127.0.0.1:{port}/app-repo");
    let ports = configure(&root, &url, &["beta"], 30);
    start_ok(&root);
    assert_eq!(served_by(ports.listen, Some("approuter_alt=beta")), "beta");
    repo.commit("main", &[("VERSION", "2")], "v2");
    let o = root.cmd(&["sync"]).output().unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert!(get(ports.listen, "/", None)
        .unwrap()
        .body
        .contains("version 2"));
    assert!(root.cmd(&["shutdown"]).output().unwrap().status.success());
    let _ = daemon.kill();
    let _ = daemon.wait();

    let fresh = Root::new();
    configure(&fresh, "https://127.0.0.1:1/app.git", &[], 5);
    let err = crate::util::one_line_error(&start(&fresh));
    assert!(
        err.contains("cannot reach https://127.0.0.1:1/app.git"),
        "{err}"
    );
}

#[test]
fn websocket_upgrades_pass_through_nginx() {
    use std::io::{Read, Write};
    let root = Root::new();
    let repo = AppRepo::new(&root);
    let ports = configure(&root, &repo.url(), &["beta"], 30);
    start_ok(&root);
    for cookie in ["", "Cookie: approuter_alt=beta\r\n"] {
        let mut r = app::tunnel(ports.listen, cookie);
        r.get_mut().write_all(b"ping through the tunnel").unwrap();
        let mut buf = [0u8; 23];
        r.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping through the tunnel");
    }
}
