//! `approuter status` held against the real perpls: perp 2.07 (vendored in tests/data, built once per run) supervises the same service definitions as `approuter svscan`, and the two listings must agree, numbers aside.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::util::{kill_everything_under, secs, wait_for, write_exec, Proc, Root, Svscan};

/// perp's tools (perpd, perpls, perpctl), built from tests/data/perp-2.07.tar.gz into cargo's
/// test scratch directory the first time a test asks (make, a few seconds), then reused.
fn perp_bin() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let top = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let src = top.join("perp-2.07");
        let bin = src.join("perp");
        if bin.join("perpls").exists() && bin.join("perpd").exists() {
            return bin;
        }
        let tarball = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/perp-2.07.tar.gz");
        let _ = fs::remove_dir_all(&src);
        let ok = Command::new("tar")
            .arg("xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(top)
            .status()
            .expect("tar")
            .success();
        assert!(ok, "unpacking {}", tarball.display());
        let o = Command::new("make")
            .current_dir(&src)
            .output()
            .expect("make (apt-get install make gcc)");
        assert!(
            o.status.success() && bin.join("perpls").exists(),
            "building perp 2.07 failed (it needs make and a C compiler):\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        bin
    })
}

/// perpd on a base directory, ended with everything it started when dropped.
struct Perpd {
    proc: Proc,
    base: PathBuf,
}

impl Perpd {
    fn start(base: &Path) -> Perpd {
        let proc = Proc::spawn(
            Command::new(perp_bin().join("perpd"))
                .arg(base)
                .current_dir(base),
            &base.with_extension("perpd.err"),
        );
        Perpd {
            proc,
            base: base.to_path_buf(),
        }
    }

    fn ctl(&self, cmd: &str, services: &[&str]) {
        let o = Command::new(perp_bin().join("perpctl"))
            .arg("-b")
            .arg(&self.base)
            .arg(cmd)
            .args(services)
            .output()
            .unwrap();
        assert!(o.status.success(), "perpctl {cmd} {services:?}: {o:?}");
    }

    fn ls(&self, args: &[&str]) -> String {
        let o = Command::new(perp_bin().join("perpls"))
            .arg("-b")
            .arg(&self.base)
            .args(args)
            .env_remove("PERPLS_COLORS")
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Perpd {
    fn drop(&mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
        kill_everything_under(&self.base);
    }
}

/// One service, written for both supervisors: its main program, what runs after it ends
/// (perp's reset, runit's finish), and whether it has a logger.
struct Def {
    name: &'static str,
    main: &'static str,
    after: Option<&'static str>,
    log: bool,
}

const DEFS: [Def; 8] = [
    Def {
        name: "up",
        main: "exec sleep 1001",
        after: None,
        log: true,
    },
    Def {
        name: "nolog",
        main: "exec sleep 1002",
        after: None,
        log: false,
    },
    Def {
        name: "down",
        main: "exec sleep 1003",
        after: None,
        log: true,
    },
    Def {
        name: "once",
        main: "exec sleep 1004",
        after: None,
        log: true,
    },
    Def {
        name: "paused",
        main: "exec sleep 1005",
        after: None,
        log: true,
    },
    Def {
        name: "crash",
        main: "exit 1",
        after: None,
        log: true,
    },
    // Ignores TERM: told down, it stays up.
    Def {
        name: "stubborn",
        main: "trap '' TERM; exec sleep 1006",
        after: None,
        log: true,
    },
    Def {
        name: "resetting",
        main: "sleep 0.5; exit 0",
        after: Some("exec sleep 1007"),
        log: true,
    },
];

fn write_perp(base: &Path, def: &Def) {
    let dir = base.join(def.name);
    let after = def.after.unwrap_or("exit 0");
    write_exec(
        &dir.join("rc.main"),
        &format!(
            "#!/bin/sh\nexec 2>&1\ncase \"$1\" in\n  start) {};;\n  reset) {after};;\nesac\nexit 0\n",
            def.main
        ),
    );
    if def.log {
        write_exec(
            &dir.join("rc.log"),
            "#!/bin/sh\n[ \"$1\" = start ] && exec cat >/dev/null\nexit 0\n",
        );
    }
    // The sticky bit activates a perp service.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o1755)).unwrap();
}

fn write_runit(dir: &Path, def: &Def) {
    let dir = dir.join(def.name);
    write_exec(
        &dir.join("run"),
        &format!("#!/bin/sh\nexec 2>&1\n{}\n", def.main),
    );
    if let Some(after) = def.after {
        write_exec(&dir.join("finish"), &format!("#!/bin/sh\n{after}\n"));
    }
    if def.log {
        write_exec(&dir.join("log/run"), "#!/bin/sh\nexec cat >/dev/null\n");
    }
}

/// A listing with every number replaced by `N`, and approuter's own notes (which follow the
/// perpls line after two spaces) left out.
fn numbers_aside(text: &str) -> String {
    let text: String = text
        .lines()
        .map(|l| match l.find("  pids: ") {
            Some(at) => match l[at + 8..].find("  ") {
                Some(end) => &l[..at + 8 + end],
                None => l,
            },
            None => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    crate::util::numbers_as_n(&text)
}

/// Every state perpls tells apart, on the same definitions under perpd and under approuter's
/// svscan: up, no log, down, once, paused, wants up but down (a crash loop), wants down but up,
/// resetting (finish), not activated, and an error; then the same with colors (-G) and
/// reversed (-r).
#[test]
fn status_prints_what_perpls_prints() {
    let root = Root::new();
    let base = root.path().join("perp");
    let service = root.managed().join("var/service");
    for def in &DEFS {
        write_perp(&base, def);
        write_runit(&service, def);
    }
    // Not activated: in perp a directory without the sticky bit; here one no supervisor holds
    // (its lock is someone else's, so svscan leaves it alone).
    write_exec(&base.join("inactive/rc.main"), "#!/bin/sh\nexit 0\n");
    write_exec(
        &service.join("inactive/run"),
        "#!/bin/sh\nexec sleep 1008\n",
    );
    fs::create_dir_all(service.join("inactive/supervise")).unwrap();
    let lock = service.join("inactive/supervise/lock");
    fs::write(&lock, "").unwrap();
    let _holder = Proc::spawn(
        Command::new("flock")
            .arg(&lock)
            .args(["sleep", "1009"])
            .current_dir(root.path())
            .stdout(std::process::Stdio::null()),
        &root.path().join("flock.err"),
    );
    wait_for(secs(5), "the inactive service's lock to be held", || {
        crate::util::is_locked(&lock)
    });

    let perp = Perpd::start(&base);
    // A long grace: the stubborn service must stay "wants down but up" while it is compared.
    let _sv = Svscan::start_with_grace(&service, 120);
    let names: Vec<&str> = DEFS.iter().map(|d| d.name).chain(["inactive"]).collect();
    let ours = |args: &[&str]| {
        let o = root
            .cmd(&["status"])
            .args(args)
            .env_remove("PERPLS_COLORS")
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // Both up a second or more, then told what to become.
    wait_for(
        secs(20),
        "both supervisors to run every service a second",
        || {
            let theirs = perp.ls(&["up", "down", "once", "paused", "stubborn"]);
            let mine = ours(&["up", "down", "once", "paused", "stubborn"]);
            theirs.lines().count() == 5
                && theirs
                    .lines()
                    .chain(mine.lines())
                    .all(|l| l.starts_with("[+ +++ +++]"))
        },
    );
    let control = |byte: &str, svc: &str| {
        fs::write(service.join(svc).join("supervise/control"), byte).unwrap();
    };
    for (byte, svc) in [
        ("d", "down"),
        ("o", "once"),
        ("p", "paused"),
        ("d", "stubborn"),
    ] {
        perp.ctl(byte, &[svc]);
        control(byte, svc);
    }

    let mut listings = (String::new(), String::new());
    let same = |args: &[&str], listings: &mut (String, String)| {
        let mut theirs_args = args.to_vec();
        theirs_args.extend(&names);
        let mut our_args = args.to_vec();
        our_args.extend(&names);
        *listings = (perp.ls(&theirs_args), ours(&our_args));
        numbers_aside(&listings.0) == numbers_aside(&listings.1)
    };
    let settled = crate::util::settle(secs(20), || same(&[], &mut listings));
    assert!(
        settled,
        "perpls and approuter status disagree:\nperpls:\n{}\napprouter:\n{}",
        listings.0, listings.1
    );
    // Every state is there (a comparison of two wrong listings proves nothing).
    for want in [
        "[+ +++ +++]  up         uptime: ",
        "[+ +++ ---]  nolog      uptime: ",
        "[+ ... +++]  down       uptime: -s/",
        "[+ +o+ +++]  once       uptime: ",
        "[+ ++p +++]  paused     uptime: ",
        "[+ !.. +++]  crash      uptime: -s/",
        "[+ !++ +++]  stubborn   uptime: ",
        "[+ ++r +++]  resetting  uptime: ",
        "[- --- ---]  inactive   (service not activated)",
    ] {
        assert!(listings.1.contains(want), "{want} missing:\n{}", listings.1);
    }
    for args in [&["-r"][..], &["-G"][..]] {
        let ok = crate::util::settle(secs(10), || {
            let mut l = (String::new(), String::new());
            let ok = same(args, &mut l);
            listings = l;
            ok
        });
        assert!(
            ok,
            "with {args:?}, perpls and approuter status disagree:\nperpls:\n{}\napprouter:\n{}",
            listings.0, listings.1
        );
    }
    assert!(
        listings.1.contains("\u{1b}[00m\u{1b}[01;33mstubborn "),
        "{}",
        listings.1
    );
    // A name with no service directory.
    assert_eq!(perp.ls(&["nosuch"]), ours(&["nosuch"]));
    // The stubborn ones are let go before the guards end everything.
    perp.ctl("k", &["stubborn"]);
    control("k", "stubborn");
}
