//! Boot: `start --foreground` driven through systemd's notify protocol as systemd drives it, the unit checked by `systemd-analyze verify`, and the crontab's `@reboot` line for hosts without systemd.

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::app::{configure, get, out, page, run_crontab_line, service_pid, AppRepo};
use crate::util::{kill_everything_under, processes_under, secs, signal, wait_for, Root, Signal};

/// A process the test started, killed if the test ends before it did.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn svscan_pid(root: &Root) -> Option<u32> {
    fs::read_to_string(root.var("service/.svscan.lock"))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
}

/// What systemd does with a `Type=notify` unit: it waits for READY=1 (sent once production and
/// the alternate answer through nginx), and `systemctl stop` sends SIGTERM to the main process
/// only (KillMode=mixed), which must leave nothing running. A supervisor that dies meanwhile is
/// started again and takes over what runs.
#[test]
fn start_in_the_foreground_speaks_systemds_notify_protocol_and_stops_cleanly() {
    let root = Root::new();
    let repo = AppRepo::new(&root);
    let ports = configure(&root, &repo.url(), &["beta"], 30);
    let sock_path = root.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let log = fs::File::create(root.path().join("foreground.out")).unwrap();
    let mut fg = Guard(
        std::process::Command::new(crate::util::approuter_exe())
            .arg("--root")
            .arg(root.path())
            .args(["start", "--foreground"])
            .env("NOTIFY_SOCKET", &sock_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let said = std::cell::RefCell::new(String::new());
    let hear = || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            said.borrow_mut()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
            said.borrow_mut().push('\n');
        }
    };
    wait_for(secs(60), "READY=1 from start --foreground", || {
        hear();
        said.borrow().contains("READY=1")
    });
    // Ready means serving: production and the alternate answer at once.
    assert_eq!(page(ports.listen, None).1, "instance1");
    assert_eq!(page(ports.listen, Some("approuter_alt=beta")).1, "beta");
    assert!(
        said.borrow().contains("STATUS=running"),
        "{}",
        said.borrow()
    );

    // The supervisor dies: the foreground process starts another, which takes everything over.
    let old = svscan_pid(&root).unwrap();
    let pids: Vec<_> = ["nginx", "instance1", "instance2", "beta"]
        .iter()
        .map(|s| service_pid(&root, s))
        .collect();
    signal(old, Signal::SIGKILL);
    wait_for(secs(20), "a new supervisor", || {
        if svscan_pid(&root).is_some_and(|p| p != old) {
            Ok(())
        } else {
            Err(fs::read_to_string(root.path().join("foreground.out")).unwrap_or_default())
        }
    });
    let now: Vec<_> = ["nginx", "instance1", "instance2", "beta"]
        .iter()
        .map(|s| service_pid(&root, s))
        .collect();
    assert_eq!(now, pids, "taken over, not restarted");
    assert_eq!(page(ports.listen, None).1, "instance1");

    // systemctl stop: TERM to the main process.
    signal(fg.0.id(), Signal::SIGTERM);
    let mut status = None;
    wait_for(secs(40), "start --foreground to exit after SIGTERM", || {
        status = fg.0.try_wait().unwrap();
        status.is_some()
    });
    let text = fs::read_to_string(root.path().join("foreground.out")).unwrap();
    assert!(status.unwrap().success(), "{text}");
    hear();
    assert!(said.borrow().contains("STOPPING=1"), "{}", said.borrow());
    assert!(get(ports.listen, "/", None).is_err(), "nginx still answers");
    let managed = root.managed();
    assert!(
        processes_under(&managed).is_empty(),
        "left running: {:?}\n{text}",
        processes_under(&managed)
    );
}

fn verify(unit: &std::path::Path, extra: &[&str]) {
    let o = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .args(extra)
        .arg(unit)
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    assert!(
        o.status.success(),
        "systemd-analyze verify {}: {}",
        unit.display(),
        out(&o)
    );
    assert!(o.stderr.is_empty(), "{}", out(&o));
}

/// The unit a root gets, and the template the package installs, pass systemd's own check;
/// without a unit the crontab starts approuter at boot, and its @reboot line does bring a
/// killed environment back as cron runs it (bare environment); with a unit installed the line
/// goes, so that boot does not start approuter two ways.
#[test]
fn the_unit_passes_systemd_analyze_and_the_crontab_starts_approuter_at_boot_without_it() {
    let root = Root::new();
    let repo = AppRepo::new(&root);
    let ports = configure(&root, &repo.url(), &[], 30);
    let units = root.path().join("units");
    fs::create_dir_all(&units).unwrap();
    let o = root.cmd(&["systemd-unit"]).output().unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains(&format!(
            "ExecStart=\"{}\" --root \"{}\" start --foreground",
            crate::util::approuter_exe().display(),
            root.path().display()
        )),
        "{text}"
    );
    fs::write(units.join("approuter-test.service"), &text).unwrap();
    verify(&units.join("approuter-test.service"), &[]);
    let o = crate::util::approuter()
        .args(["systemd-unit", "--template"])
        .current_dir("/")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    fs::write(units.join("approuter@.service"), &o.stdout).unwrap();
    // The template names the man pages the package installs; here they are not installed.
    verify(&units.join("approuter@srv-app.service"), &["--man=no"]);

    // No unit: started at boot by cron. A "reboot": everything killed, nothing cleaned up.
    assert!(root.cmd(&["start"]).output().unwrap().status.success());
    assert!(fs::read_to_string(root.var("crontab"))
        .unwrap()
        .contains("@reboot "));
    kill_everything_under(root.path());
    assert!(get(ports.listen, "/", None).is_err());
    let o = run_crontab_line(&root, "@reboot");
    assert!(o.status.success(), "{}", out(&o));
    let r = get(ports.listen, "/", None);
    assert!(
        r.as_ref()
            .is_ok_and(|r| r.header("x-served-by") == Some("instance1")),
        "{r:?} after the @reboot line: {}\n{}",
        out(&o),
        fs::read_to_string(root.var("log/sync/current")).unwrap_or_default()
    );

    // With a unit installed, no @reboot line; without it again, the line is back.
    let o = root
        .cmd(&[
            "systemd-unit",
            "--write",
            "--name",
            "approuter-test",
            "--dir",
        ])
        .arg(&units)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("systemctl enable --now approuter-test"),
        "{}",
        out(&o)
    );
    assert_eq!(
        fs::read_to_string(units.join("approuter-test.service")).unwrap(),
        text
    );
    let crontab = fs::read_to_string(root.var("crontab")).unwrap();
    assert!(!crontab.contains("@reboot"), "{crontab}");
    assert!(crontab.contains("* * * * * "), "{crontab}");
    fs::remove_file(units.join("approuter-test.service")).unwrap();
    assert!(root.cmd(&["generate"]).output().unwrap().status.success());
    assert!(fs::read_to_string(root.var("crontab"))
        .unwrap()
        .contains("@reboot"));
}
