//! The command line at its edges: output cut short, no approuter where it is run, single services started and stopped, JSON for scripts.

use std::process::{Command, Stdio};

use crate::app::{cmd_ok, get, started};
use crate::util::{one_line_error, snapshot, Root};

/// `status -l | head -1`, `check | head -3`: the reader goes away, and approuter leaves
/// quietly (no panic, nothing on stderr), as other Unix tools do.
#[test]
fn output_cut_short_ends_quietly() {
    let (root, _repo, _ports) = started(&["beta"]);
    for args in [
        &["status", "-l"][..],
        &["check"][..],
        &["status"][..],
        &["which-prod"][..],
    ] {
        let o = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "{} --root {} {} | head -c 1 >/dev/null",
                crate::util::approuter_exe().display(),
                root.path().display(),
                args.join(" ")
            ))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
    }
}

/// Where there is no approuter, every command but `init` says so, exits non-zero and creates
/// nothing.
#[test]
fn no_approuter_here_is_said_and_nothing_is_created() {
    let root = Root::new();
    for args in [
        &["status"][..],
        &["status", "-l"][..],
        &["which-prod"][..],
        &["sync"][..],
        &["check"][..],
        &["switch"][..],
        &["logs", "instance1"][..],
        &["stop", "instance1"][..],
        &["shutdown"][..],
    ] {
        let o = root.cmd(args).output().unwrap();
        let err = one_line_error(&o);
        assert!(
            err.contains("there is no approuter in") && err.contains("approuter init --repo"),
            "{args:?}: {err}"
        );
        assert!(o.stdout.is_empty(), "{args:?}");
        assert!(
            snapshot(root.path()).len() <= 1,
            "{args:?} created {:?}",
            snapshot(root.path()).keys().collect::<Vec<_>>()
        );
    }
}

/// `start SERVICE` returns once the instance answers, as the whole `start` does; `stop` of the
/// active production instance is refused unless forced.
#[test]
fn single_services_start_healthy_and_production_is_not_stopped_by_accident() {
    let (root, _repo, ports) = started(&[]);
    let err = one_line_error(&root.cmd(&["stop", "instance1"]).output().unwrap());
    assert!(
        err.contains("instance1 serves production") && err.contains("approuter switch"),
        "{err}"
    );
    assert_eq!(
        get(ports.listen, "/", None).unwrap().header("x-served-by"),
        Some("instance1")
    );
    for _ in 0..3 {
        cmd_ok(&root, &["stop", "instance2"]);
        assert!(get(ports.prod[1], "/diagnostic", None).is_err());
        cmd_ok(&root, &["start", "instance2"]);
        // No wait here: start has waited.
        let r = get(ports.prod[1], "/diagnostic", None).expect("instance2 answers");
        assert_eq!(r.status, 200);
    }
    cmd_ok(&root, &["stop", "--force", "instance1"]);
    // The other instance takes production's requests meanwhile (nginx's backup).
    assert_eq!(get(ports.listen, "/", None).unwrap().status, 200);
    cmd_ok(&root, &["start", "instance1"]);
    assert_eq!(
        get(ports.listen, "/", None).unwrap().header("x-served-by"),
        Some("instance1")
    );
}

/// `status --json` and `status -l --json` give the same keys in the same order, and commits
/// in full.
#[test]
fn json_for_scripts() {
    let (root, _repo, _ports) = started(&["beta"]);
    let short_text = cmd_ok(&root, &["status", "--json"]);
    let long_text = cmd_ok(&root, &["status", "-l", "--json"]);
    // The order the keys are printed in (a parsed Value would sort them): each object's keys
    // at its indentation, `detail` aside.
    let order = |text: &str, indent: usize| -> Vec<String> {
        text.lines()
            .filter(|l| l.len() > indent && l[..indent].trim().is_empty())
            .filter_map(|l| l[indent..].strip_prefix('"'))
            .filter_map(|l| l.split_once('"').map(|(k, _)| k.to_string()))
            .filter(|k| k != "detail")
            .collect()
    };
    assert_eq!(order(&short_text, 4), order(&long_text, 4));
    let detail = [
        "branch",
        "commit",
        "port",
        "role",
        "held",
        "foreign_listener",
    ];
    let inner = |text: &str| -> Vec<String> {
        order(text, 6)
            .into_iter()
            .filter(|k| !detail.contains(&k.as_str()))
            .collect()
    };
    assert_eq!(inner(&short_text), inner(&long_text));
    let long: serde_json::Value = serde_json::from_str(&long_text).unwrap();
    let beta = long
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "beta")
        .unwrap();
    let commit = beta["detail"]["commit"].as_str().unwrap();
    assert!(
        commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit()),
        "{commit}"
    );
    // The text keeps the short form.
    let text = cmd_ok(&root, &["status", "-l", "beta"]);
    assert!(text.contains(&format!("commit {}", &commit[..7])), "{text}");
}

/// Completions and man pages come from the command line's own definition: bash completes
/// subcommands and options for real, and each page renders with `man`.
#[test]
fn completions_complete_and_man_pages_render() {
    let o = crate::util::approuter()
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let root = Root::new();
    let dir = root.path().to_path_buf();
    let script = dir.join("approuter.bash");
    std::fs::write(&script, &o.stdout).unwrap();
    let complete = |words: &str| {
        let o = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                ". {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); _approuter approuter \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                script.display()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let words = complete("approuter sy");
    assert!(words.lines().any(|w| w == "sync"), "{words}");
    assert!(words.lines().any(|w| w == "systemd-unit"), "{words}");
    let words = complete("approuter sync --dr");
    assert_eq!(words.trim(), "--dry-run");
    for (shell, first) in [
        ("zsh", "#compdef approuter"),
        ("fish", "complete -c approuter"),
    ] {
        let o = crate::util::approuter()
            .args(["completions", shell])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && text.contains(first),
            "{shell}: {text}"
        );
    }
    let o = crate::util::approuter()
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));

    let man = dir.join("man");
    let o = crate::util::approuter()
        .arg("manpages")
        .arg(&man)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    for page in [
        "approuter.1",
        "approuter-sync.1",
        "approuter-start.1",
        "approuter-systemd-unit.1",
    ] {
        let o = std::process::Command::new("man")
            .arg("-l")
            .arg(man.join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .expect("man (apt-get install man-db)");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{page}: {o:?}");
        match page {
            "approuter-sync.1" => assert!(text.contains("--dry-run"), "{text}"),
            "approuter-start.1" => assert!(text.contains("--foreground"), "{text}"),
            _ => assert!(text.contains("approuter"), "{text}"),
        }
    }
    // Hidden commands (the supervisor's own plumbing) get no page.
    assert!(!man.join("approuter-instance-exec.1").exists());
}
