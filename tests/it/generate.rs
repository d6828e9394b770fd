//! `approuter init` and `approuter generate`: files written, checked by the real sh, nginx and crontab, refusals that change nothing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::util::{one_line_error, snapshot, Root};

fn valid(root: &Root) {
    root.write_etc("repo.conf", "# the app\n/srv/app.git\n");
    root.write_etc("alternates.conf", "beta\r\n\n# comment\nfeature/x   \n");
}

fn generate_ok(root: &Root) -> String {
    let out = root.cmd(&["generate"]).output().unwrap();
    assert!(
        out.status.success(),
        "generate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn services(root: &Root) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root.var("service"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Checks every generated artefact with the real tool that will read it.
fn check_with_real_tools(root: &Root) {
    for svc in services(root) {
        for rel in ["run", "log/run"] {
            let p = root.var("service").join(&svc).join(rel);
            let mode = fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o755, "{} mode", p.display());
            let st = Command::new("sh").arg("-n").arg(&p).status().unwrap();
            assert!(st.success(), "sh -n {}", p.display());
        }
    }
    let nginx_dir = root.var("nginx");
    let out = Command::new("nginx")
        .arg("-t")
        .arg("-p")
        .arg(format!("{}/", nginx_dir.display()))
        .arg("-c")
        .arg(nginx_dir.join("nginx.conf"))
        .output()
        .expect("nginx is installed (apt-get install nginx-light)");
    assert!(
        out.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("crontab")
        .arg("-n")
        .arg(root.var("crontab"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "crontab -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn generate_writes_everything_and_real_tools_accept_it() {
    let root = Root::new();
    valid(&root);
    let out = generate_ok(&root);
    for line in [
        "added service beta (port 10051)",
        "added service feature-x (port 10052)",
        "added service instance1 (port 9051)",
        "added service instance2 (port 9052)",
        "added service nginx",
        "updated nginx configuration",
        "updated crontab",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in {out}");
    }
    assert_eq!(
        services(&root),
        ["beta", "feature-x", "instance1", "instance2", "nginx"]
    );

    let run = fs::read_to_string(root.var("service/feature-x/run")).unwrap();
    let checkout = root.managed().join("alternates/feature-x");
    assert!(
        run.contains(&format!("cd '{}'", checkout.display())),
        "{run}"
    );
    assert!(
        run.contains("exec 2>&1")
            && run.contains("instance-exec")
            && run.contains("-- ./start 10052"),
        "{run}"
    );
    let log_run = fs::read_to_string(root.var("service/beta/log/run")).unwrap();
    assert!(
        // The lean logger, installed beside approuter (cargo builds both).
        log_run.contains(&format!(
            "approuter-svlogd' -tt '{}'",
            root.var("log/beta").display()
        )),
        "{log_run}"
    );
    assert!(
        root.var("log/beta").is_dir(),
        "svlogd needs its directory to exist"
    );
    let nginx_run = fs::read_to_string(root.var("service/nginx/run")).unwrap();
    assert!(
        nginx_run.contains("-c ") || nginx_run.contains("'-c'"),
        "{nginx_run}"
    );
    let cron = fs::read_to_string(root.var("crontab")).unwrap();
    let exe = assert_cmd::cargo::cargo_bin("approuter");
    assert!(
        cron.contains(&format!("* * * * * '{}' --root", exe.display())),
        "{cron}"
    );
    check_with_real_tools(&root);
}

#[test]
fn root_with_spaces_and_quotes_works() {
    let root = Root::with_prefix("approuter test 'quoted' 50% ");
    valid(&root);
    generate_ok(&root);
    check_with_real_tools(&root);
    // The run script really changes into the checkout whose path has spaces and quotes.
    let checkout = root.managed().join("prod/instance1");
    fs::create_dir_all(&checkout).unwrap();
    fs::write(
        checkout.join("start"),
        "#!/bin/sh\necho \"started in $(pwd) on $1 as $APPROUTER_INSTANCE\"\n",
    )
    .unwrap();
    fs::set_permissions(checkout.join("start"), fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(root.var("service/instance1/run"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        format!("started in {} on 9051 as instance1", checkout.display())
    );
}

#[test]
fn second_generate_rewrites_nothing() {
    let root = Root::new();
    valid(&root);
    generate_ok(&root);
    let before = snapshot(&root.managed().join("var"));
    let out = generate_ok(&root);
    assert_eq!(out.trim(), "nothing changed");
    assert_eq!(
        before,
        snapshot(&root.managed().join("var")),
        "same bytes, same mtimes"
    );
}

#[test]
fn alternate_ports_are_stable_across_changes() {
    let root = Root::new();
    root.write_etc("repo.conf", "/srv/app.git\n");
    root.write_etc("alternates.conf", "a\nb\nc\n");
    generate_ok(&root);
    let ports = || fs::read_to_string(root.var("state/ports")).unwrap();
    assert!(
        ports().contains("a 10051\nb 10052\nc 10053\n"),
        "{}",
        ports()
    );

    root.write_etc("alternates.conf", "a\nc\n");
    let out = generate_ok(&root);
    assert!(out.contains("removed service b"), "{out}");
    assert!(!root.var("service/b").exists());
    assert!(ports().contains("a 10051\nc 10053\n"), "{}", ports());
    assert!(fs::read_to_string(root.var("service/c/run"))
        .unwrap()
        .contains("./start 10053"));

    root.write_etc("alternates.conf", "a\nc\nd\n");
    let out = generate_ok(&root);
    assert!(out.contains("added service d (port 10052)"), "{out}");
    assert!(
        ports().contains("a 10051\nc 10053\nd 10052\n"),
        "{}",
        ports()
    );
    check_with_real_tools(&root);
}

#[test]
fn refusals_name_the_problem_and_change_nothing() {
    let cases: &[(&str, &str, &str)] = &[
        ("repo.conf", "", "repo.conf: empty"),
        ("repo.conf", "/a\n/b\n", "repo.conf:2:"),
        (
            "repo.conf",
            "ext::sh -c touch% /tmp/pwned\n",
            "repo.conf:1: `ext::` transports are refused",
        ),
        (
            "alternates.conf",
            "beta\nbad name\n",
            "alternates.conf:2: branch `bad name` contains ' '",
        ),
        ("alternates.conf", "x\";}\n", "alternates.conf:1:"),
        ("alternates.conf", "$(reboot)\n", "alternates.conf:1:"),
        (
            "alternates.conf",
            ".hidden\n",
            "alternates.conf:1: branch `.hidden` starts with",
        ),
        (
            "alternates.conf",
            "-x\n",
            "alternates.conf:1: branch `-x` starts with",
        ),
        ("alternates.conf", "a..b\n", "alternates.conf:1:"),
        (
            "alternates.conf",
            "feature/x\nfeature-x\n",
            "alternates.conf:2: branch `feature-x` runs as instance `feature-x`, which line 1",
        ),
        (
            "alternates.conf",
            "nginx\n",
            "alternates.conf:1: `nginx` is reserved",
        ),
        (
            "alternates.conf",
            "instance2\n",
            "alternates.conf:1: `instance2` is reserved",
        ),
        ("prod_branch", "main\nother\n", "prod_branch:2:"),
        ("prod_branch", "ma in\n", "prod_branch:1:"),
        (
            "approuter.toml",
            "listen_port = 1\nbogus = 2\n",
            "approuter.toml:2: unknown field `bogus`",
        ),
        (
            "approuter.toml",
            "health_timeout_secs = \"soon\"\n",
            "approuter.toml:1: key `health_timeout_secs`",
        ),
        (
            "approuter.toml",
            "prod_ports = [9051, 9051]\n",
            "approuter.toml:1: key `prod_ports`",
        ),
        (
            "approuter.toml",
            "server_name = \"x; include /etc/passwd\"\n",
            "key `server_name`",
        ),
    ];
    for (file, text, want) in cases {
        let root = Root::new();
        valid(&root);
        generate_ok(&root);
        let before = snapshot(&root.managed().join("var"));
        root.write_etc(file, text);
        let out = root.cmd(&["generate"]).output().unwrap();
        let err = one_line_error(&out);
        assert!(
            err.contains(want),
            "{file} {text:?}: want {want:?} in {err:?}"
        );
        assert!(
            err.contains(&root.etc(file).display().to_string()),
            "names the file: {err}"
        );
        assert_eq!(
            before,
            snapshot(&root.managed().join("var")),
            "{file} {text:?} changed managed/var"
        );
    }
}

#[test]
fn missing_repo_conf_is_refused_before_anything_is_written() {
    let root = Root::new();
    let out = root.cmd(&["generate"]).output().unwrap();
    let err = one_line_error(&out);
    assert!(
        err.contains("repo.conf does not exist") && err.contains("approuter init"),
        "{err}"
    );
    assert!(!root.managed().join("var").exists());
}

#[test]
fn init_writes_a_configuration_that_generates_and_never_overwrites() {
    let root = Root::new();
    let out = root
        .cmd(&[
            "init",
            "--repo",
            "https://example.com/app.git",
            "--alternate",
            "beta",
            "--prod-branch",
            "main",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It names the next step as the README does.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(" start\n"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        fs::read_to_string(root.etc("prod_branch"))
            .unwrap()
            .lines()
            .last(),
        Some("main")
    );
    generate_ok(&root);
    let before = snapshot(&root.managed());
    let out = root.cmd(&["init", "--repo", "/other"]).output().unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(before, snapshot(&root.managed()));

    let fresh = Root::new();
    let out = fresh
        .cmd(&["init", "--repo", "/x", "--alternate", "no good"])
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("contains ' '"), "{err}");
    assert!(!fresh.managed().exists());
}

#[test]
fn root_comes_from_the_environment_or_the_current_directory() {
    let root = Root::new();
    valid(&root);
    let out = crate::util::approuter()
        .env("APPROUTER_ROOT", root.path())
        .arg("generate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other = Root::new();
    valid(&other);
    let out = crate::util::approuter()
        .current_dir(other.path())
        .arg("generate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(other.var("service/nginx/run").exists());
}
