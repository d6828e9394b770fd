//! `approuter svlogd` next to runit's svlogd: the same directories from the same input, signals, long lines, and directories that fail.

use nix::sys::signal::Signal;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{approuter_exe, wait_for, Proc, Tmpfs};

const DEADLINE: Duration = Duration::from_secs(20);

fn approuter_svlogd() -> Command {
    let mut c = Command::new(approuter_exe());
    c.arg("svlogd");
    c
}

/// Numbered lines of pseudo-random length (the same every run), each distinct.
fn numbered_lines(count: usize, max_len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::new();
    for i in 0..count {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let len = (x >> 33) as usize % (max_len + 1);
        out.extend_from_slice(format!("line {i:06} ").as_bytes());
        out.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, len));
        out.push(b'\n');
    }
    out
}

/// The log files of `dir` in order (rotated by name, then current), as one stream; empty if
/// there is no such directory (yet).
fn stream(dir: &Path) -> Vec<u8> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('@'))
        .collect();
    names.sort();
    names.push("current".into());
    names
        .iter()
        .flat_map(|n| fs::read(dir.join(n)).unwrap_or_default())
        .collect()
}

fn rotated(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('@'))
        .collect();
    v.sort();
    v
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every entry of a log directory as (name with any TAI64N label replaced by `@LABEL`, mode,
/// size): what must agree between two loggers fed the same input.
fn listing(dir: &Path) -> Vec<(String, u32, u64)> {
    let mut v: Vec<(String, u32, u64)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let shown = match name.strip_prefix('@') {
                Some(rest)
                    if rest.len() == 26 && rest[..24].bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    assert!(rest.starts_with("4000"), "{name}: not a TAI64N label");
                    format!("@LABEL{}", &rest[24..])
                }
                _ => name,
            };
            let m = e.metadata().unwrap();
            (shown, m.permissions().mode() & 0o7777, m.len())
        })
        .collect();
    v.sort();
    v
}

/// Whether `s` is the timestamp svlogd writes with this many `-t` flags, trailing space included.
fn stamp_ok(ts: usize, s: &[u8]) -> bool {
    let shape: &[u8] = match ts {
        1 => b"@4000xxxxxxxxxxxxxxxxxxxx ",
        2 => b"dddd-dd-dd_dd:dd:dd.ddddd ",
        _ => b"dddd-dd-ddTdd:dd:dd.ddddd ",
    };
    s.len() == shape.len()
        && s.iter().zip(shape).all(|(&c, &p)| match p {
            b'd' => c.is_ascii_digit(),
            b'x' => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
            _ => c == p,
        })
}

struct Case {
    what: &'static str,
    config: &'static str,
    flags: &'static [&'static str],
    input: Vec<u8>,
    /// A `current` left behind by a logger that did not exit cleanly.
    unclean: bool,
    /// Every input line is kept (no patterns or replacement), so what the limits keep must
    /// be exactly the last lines of the input.
    whole_lines: bool,
}

/// Runs runit's svlogd and approuter svlogd on the same input and config, each in its own
/// directory, and compares the directories.
fn compare_with_runit(case: &Case) {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    fs::write(&input, &case.input).unwrap();
    let mut dirs = Vec::new();
    for (who, mut cmd) in [
        ("runit", Command::new("/usr/bin/svlogd")),
        ("approuter", approuter_svlogd()),
    ] {
        let dir = tmp.path().join(who);
        fs::create_dir(&dir).unwrap();
        if !case.config.is_empty() {
            fs::write(dir.join("config"), case.config).unwrap();
        }
        if case.unclean {
            fs::write(dir.join("current"), "left by a crashed logger\n").unwrap();
            fs::set_permissions(dir.join("current"), fs::Permissions::from_mode(0o644)).unwrap();
        }
        cmd.args(case.flags).arg(&dir);
        let stdin = Stdio::from(fs::File::open(&input).unwrap());
        let mut p = Proc::spawn_with_stdin(&mut cmd, stdin, &tmp.path().join(format!("{who}.err")));
        let st = p.wait(DEADLINE);
        assert!(
            st.success(),
            "{}: {who} svlogd: {st}: {}",
            case.what,
            p.stderr()
        );
        assert_eq!(p.stderr(), "", "{}: {who} svlogd complained", case.what);
        dirs.push(dir);
    }
    let (runit, ours) = (&dirs[0], &dirs[1]);
    assert_eq!(
        listing(ours),
        listing(runit),
        "{}: directories differ",
        case.what
    );

    let max: u64 = case
        .config
        .lines()
        .find_map(|l| l.strip_prefix('s'))
        .map_or(1_000_000, |s| s.parse().unwrap());
    for f in rotated(ours) {
        let len = fs::metadata(&f).unwrap().len();
        assert!(
            max == 0 || len <= max,
            "{}: {} has {len} bytes",
            case.what,
            f.display()
        );
    }

    // Same lines, each with a well-formed timestamp. The first line of the stream is left
    // out: it may continue a line whose start was in a file deleted by `n`.
    let ts = case
        .flags
        .iter()
        .map(|f| {
            if f.trim_start_matches('-').chars().all(|c| c == 't') {
                f.len() - 1
            } else {
                0
            }
        })
        .sum::<usize>()
        .min(3);
    let payloads = |dir: &Path| -> Vec<Vec<u8>> {
        let s = stream(dir);
        let lines: Vec<&[u8]> = s.split_inclusive(|&b| b == b'\n').skip(1).collect();
        lines
            .iter()
            .map(|l| {
                if ts == 0 {
                    return l.to_vec();
                }
                assert!(
                    stamp_ok(ts, &l[..26.min(l.len())]),
                    "{}: bad timestamp in {:?}",
                    case.what,
                    String::from_utf8_lossy(l)
                );
                l[26..].to_vec()
            })
            .collect()
    };
    let (r, a) = (payloads(runit), payloads(ours));
    assert!(
        r == a,
        "{}: the logged lines differ from runit's",
        case.what
    );
    assert!(!a.is_empty(), "{}: nothing kept", case.what);
    if case.whole_lines {
        let input: Vec<&[u8]> = case.input.split_inclusive(|&b| b == b'\n').collect();
        let tail = &input[input.len() - a.len()..];
        assert!(
            a.iter().zip(tail).all(|(x, y)| x == y),
            "{}: kept lines are not the input's last lines, each once",
            case.what
        );
        // The last line ends current (a split at exactly s can leave its start in the
        // newest rotated file).
        let current = fs::read(ours.join("current")).unwrap();
        let last = input.last().unwrap();
        let end = current
            .split_inclusive(|&b| b == b'\n')
            .next_back()
            .unwrap_or_default();
        assert!(
            !end.is_empty() && (current.ends_with(last) || last.ends_with(end)),
            "{}: the last line is not in current",
            case.what
        );
        assert!(stream(ours).ends_with(last));
    }
}

#[test]
fn same_directory_as_runit_from_the_same_input() {
    let mut patterned = Vec::new();
    for i in 0..400 {
        let long = "z".repeat(150 + i % 7 * 40);
        patterned.extend_from_slice(
            match i % 5 {
                0 => format!("some debug noise {i}\n"),
                1 => format!("some debug keep this {i}\n"),
                2 => format!("debug at the start of a long line {long} {i}\n"),
                3 => format!("{long} debug only after -l bytes {i}\n"),
                _ => format!("normal line {i}\n"),
            }
            .as_bytes(),
        );
    }
    let mut odd = Vec::new();
    for i in 0..300 {
        odd.extend_from_slice(
            format!("tab\there, bell \x07, del \x7f, high \u{e9}, path /a/b:c {i}\n").as_bytes(),
        );
    }
    let cases = [
        Case {
            what: "s4096 n3",
            config: "s4096\nn3\n",
            flags: &["-tt"],
            input: numbered_lines(2000, 300, 1),
            unclean: false,
            whole_lines: true,
        },
        Case {
            what: "exact splits at s100",
            config: "s100\nn3\n",
            flags: &["-tt"],
            input: numbered_lines(60, 60, 2),
            unclean: false,
            whole_lines: true,
        },
        Case {
            what: "rotation at a line end within -l of s",
            config: "s2000\nn5\n",
            flags: &["-tt", "-l", "100"],
            input: numbered_lines(1500, 300, 3),
            unclean: false,
            whole_lines: true,
        },
        Case {
            what: "long lines",
            config: "s30000\nn100\n",
            flags: &["-tt", "-l", "100", "-b", "200"],
            input: numbered_lines(200, 9000, 4),
            unclean: false,
            whole_lines: true,
        },
        Case {
            what: "-t without a size limit",
            config: "s0\n",
            flags: &["-t"],
            input: numbered_lines(500, 200, 5),
            unclean: false,
            whole_lines: true,
        },
        Case {
            what: "-ttt and the defaults",
            config: "",
            flags: &["-ttt"],
            input: numbered_lines(300, 5000, 6),
            unclean: false,
            whole_lines: true,
        },
        Case {
            what: "-t -tt",
            config: "s3000\nn4",
            flags: &["-t", "-tt"],
            input: numbered_lines(200, 100, 7),
            unclean: false,
            whole_lines: true,
        },
        Case {
            what: "no timestamps",
            config: "s3000\nn4",
            flags: &[],
            input: numbered_lines(200, 100, 8),
            unclean: false,
            whole_lines: true,
        },
        Case {
            what: "unclean current",
            config: "s4096\nn3\n",
            flags: &["-tt"],
            input: numbered_lines(30, 50, 9),
            unclean: true,
            whole_lines: true,
        },
        Case {
            what: "patterns and prefix",
            config: "-*debug*\n+*debug keep*\npINFO: \ns3000\nn20\n",
            flags: &["-tt", "-l", "100"],
            input: patterned,
            unclean: false,
            whole_lines: false,
        },
        Case {
            what: "-r and -R",
            config: "s5000\nn5\n",
            flags: &["-tt", "-r", "#", "-R", "/:"],
            input: odd,
            unclean: false,
            whole_lines: false,
        },
    ];
    for case in &cases {
        compare_with_runit(case);
    }
}

/// A running `approuter svlogd` on a fresh directory; the process ends with the test.
struct Logger {
    proc: Proc,
    dir: PathBuf,
    tmp: tempfile::TempDir,
}

impl Logger {
    fn start(flags: &[&str], config: &str) -> Logger {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        fs::create_dir(&dir).unwrap();
        Logger::start_in(tmp, dir, flags, config)
    }

    fn start_in(tmp: tempfile::TempDir, dir: PathBuf, flags: &[&str], config: &str) -> Logger {
        if !config.is_empty() {
            fs::write(dir.join("config"), config).unwrap();
        }
        let proc = Proc::spawn(
            approuter_svlogd().args(flags).arg(&dir),
            &tmp.path().join("stderr"),
        );
        Logger { proc, dir, tmp }
    }

    fn current(&self) -> String {
        fs::read_to_string(self.dir.join("current")).unwrap_or_default()
    }

    fn wait_for_current(&self, what: &str, cond: impl Fn(&str) -> bool) {
        wait_for(DEADLINE, what, || cond(&self.current()));
    }

    /// Waits until `current` ends with the last line of `input`.
    fn wait_for_last_line_of(&self, input: &[u8]) {
        let text = String::from_utf8_lossy(input);
        let last = format!("{}\n", text.lines().last().unwrap());
        self.wait_for_current("the newest line", |c| c.ends_with(&last));
    }

    /// Ends input and checks the logger exits 0 with `current` closed cleanly.
    fn finish(mut self) -> Logger {
        self.proc.close_stdin();
        let st = self.proc.wait(DEADLINE);
        assert!(st.success(), "svlogd: {st}: {}", self.proc.stderr());
        assert_eq!(mode(&self.dir.join("current")), 0o744);
        self
    }
}

#[test]
fn tai64nlocal_reads_t_output() {
    let before = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S"])
        .output()
        .unwrap()
        .stdout;
    let mut log = Logger::start(&["-t"], "");
    log.proc.write(b"first\nsecond\n");
    let log = log.finish();
    let after = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S"])
        .output()
        .unwrap()
        .stdout;
    let out = Command::new("tai64nlocal")
        .env("TZ", "UTC")
        .stdin(fs::File::open(log.dir.join("current")).unwrap())
        .output()
        .expect("tai64nlocal is installed (daemontools)");
    assert!(out.status.success(), "tai64nlocal: {}", out.status);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, payload) in lines.iter().zip(["first", "second"]) {
        // `YYYY-MM-DD HH:MM:SS.nnnnnnnnn payload`, at a time between before and after.
        assert_eq!(&line[29..], format!(" {payload}"), "{line}");
        let when = &line.as_bytes()[..19];
        assert!(
            when >= &before[..19] && when <= &after[..19],
            "{line} not between {:?} and {:?}",
            String::from_utf8_lossy(&before),
            String::from_utf8_lossy(&after)
        );
    }
}

#[test]
fn rotates_after_t_seconds_but_never_empty() {
    let mut log = Logger::start(&["-tt"], "t1\n");
    log.proc.write(b"before the first rotation\n");
    wait_for(DEADLINE, "a rotation by age", || {
        rotated(&log.dir).len() == 1
    });
    assert!(log.current().is_empty());
    let first = fs::read_to_string(&rotated(&log.dir)[0]).unwrap();
    assert!(first.ends_with(" before the first rotation\n"), "{first}");
    assert_eq!(mode(&rotated(&log.dir)[0]), 0o744);
    // An empty current is not rotated: let at least two periods pass with nothing written.
    let since = std::time::Instant::now();
    wait_for(DEADLINE, "2.5 seconds to pass", || {
        since.elapsed() > Duration::from_millis(2500)
    });
    assert_eq!(rotated(&log.dir).len(), 1, "an empty current was rotated");
    log.proc.write(b"second\n");
    wait_for(DEADLINE, "a second rotation by age", || {
        rotated(&log.dir).len() == 2
    });
    log.finish();
}

#[test]
fn sighup_rereads_config_without_rotating() {
    let mut log = Logger::start(&["-tt"], "");
    log.proc.write(b"debug one\nkeep one\n");
    log.wait_for_current("the first lines", |c| c.contains("keep one"));
    fs::write(log.dir.join("config"), "-debug*\n").unwrap();
    // The logger reads signals before input, so lines written after the kill see the new config.
    log.proc.signal(Signal::SIGHUP);
    log.proc.write(b"debug two\nkeep two\n");
    log.wait_for_current("the second lines", |c| c.contains("keep two"));
    let log = log.finish();
    let current = log.current();
    assert!(
        current.contains(" debug one\n") && !current.contains("debug two"),
        "{current}"
    );
    assert!(rotated(&log.dir).is_empty());
}

#[test]
fn sigalrm_rotates_a_non_empty_current() {
    let mut log = Logger::start(&["-tt"], "");
    log.proc.write(b"one\ntwo\n");
    log.wait_for_current("the lines", |c| c.contains("two"));
    log.proc.signal(Signal::SIGALRM);
    wait_for(DEADLINE, "a rotation", || rotated(&log.dir).len() == 1);
    let old = fs::read_to_string(&rotated(&log.dir)[0]).unwrap();
    assert!(old.contains(" one\n") && old.ends_with(" two\n"), "{old}");
    // Again, with current empty: nothing to rotate.
    log.proc.signal(Signal::SIGALRM);
    log.proc.write(b"marker\n");
    log.wait_for_current("the marker", |c| c.contains("marker"));
    assert_eq!(rotated(&log.dir).len(), 1);
    log.finish();
}

#[test]
fn an_unfinished_last_line_is_written_at_eof_and_on_term() {
    let mut log = Logger::start(&["-tt"], "");
    log.proc.write(b"a\nb\npartial");
    let log = log.finish();
    let current = log.current();
    assert!(current.ends_with(" partial\n"), "{current}");
    assert_eq!(current.lines().count(), 3);

    // One write, so the logger reads both parts at once: seeing line1 means it holds "part".
    let mut log = Logger::start(&["-tt"], "");
    log.proc.write(b"line1\npart");
    log.wait_for_current("line1", |c| c.contains("line1"));
    log.proc.signal(Signal::SIGTERM);
    let st = log.proc.wait(DEADLINE);
    assert!(st.success(), "{st}: {}", log.proc.stderr());
    assert!(log.current().ends_with(" part\n"), "{}", log.current());
    assert_eq!(mode(&log.dir.join("current")), 0o744);
}

#[test]
fn very_long_lines_stay_whole_and_match_on_their_start() {
    let mut log = Logger::start(&["-tt", "-l", "100"], "-drop*\n");
    let big = "k".repeat(300_000);
    // Written in pieces, so that the logger sees the line arrive over many reads.
    let input = format!(
        "keep {big} end\ndrop {big} end\n{} drop after -l bytes\nlast\n",
        "k".repeat(200)
    );
    for piece in input.as_bytes().chunks(7000) {
        log.proc.write(piece);
    }
    let log = log.finish();
    let current = log.current();
    let lines: Vec<&str> = current.lines().collect();
    assert_eq!(lines.len(), 3, "{}", &current[..200]);
    assert_eq!(&lines[0][26..], format!("keep {big} end"));
    assert!(lines[1].ends_with(" drop after -l bytes"));
    assert_eq!(&lines[2][26..], "last");
}

#[test]
fn a_removed_directory_is_created_again() {
    let mut log = Logger::start(&["-tt"], "");
    log.proc.write(b"before\n");
    log.wait_for_current("the first line", |c| c.contains("before"));
    fs::remove_dir_all(&log.dir).unwrap();
    log.proc.write(b"after\n");
    log.wait_for_current("the line written after the removal", |c| {
        c.contains("after")
    });
    let log = log.finish();
    assert!(!log.current().contains("before"));
    let err = log.proc.stderr();
    assert!(
        err.contains("log directory was missing; created it again"),
        "{err}"
    );
    assert!(
        err.lines()
            .all(|l| l.starts_with("approuter svlogd: warning: ")),
        "{err}"
    );
}

#[test]
fn an_unusable_directory_never_blocks_the_service() {
    let mut log = Logger::start(&["-tt"], "s0\n");
    log.proc.write(b"first\n");
    log.wait_for_current("the first line", |c| c.contains("first"));
    // A file where the directory was: nothing can be written until it goes away.
    fs::remove_dir_all(&log.dir).unwrap();
    fs::write(&log.dir, "not a directory").unwrap();
    // Far more than the pipe and the logger's memory hold: the writer must never block.
    let input = numbered_lines(100_000, 150, 11);
    let total = input.iter().filter(|&&b| b == b'\n').count() as u64;
    log.proc.write_all_within(input.clone(), DEADLINE);
    wait_for(DEADLINE, "a warning", || {
        log.proc.stderr().contains("retrying every second")
    });
    fs::remove_file(&log.dir).unwrap();
    log.wait_for_last_line_of(&input);
    let log = log.finish();
    let err = log.proc.stderr();
    assert_eq!(
        err.matches("retrying every second").count(),
        1,
        "warn once: {err}"
    );
    let lost = lost_lines(&err);
    // Every line read is either in current or counted as lost, and what is kept is the newest.
    let kept = log.current();
    assert_eq!(kept.lines().count() as u64 + lost, total, "{err}");
    assert!(kept.len() <= (4 << 20) + 4096);
    let input = String::from_utf8(input).unwrap();
    let kept_payload: Vec<&str> = kept.lines().map(|l| &l[26..]).collect();
    let input_lines: Vec<&str> = input.lines().collect();
    assert_eq!(
        kept_payload[..],
        input_lines[input_lines.len() - kept_payload.len()..]
    );
}

#[test]
fn a_failing_directory_does_not_keep_the_cpu_busy() {
    // t1: a rotation falls due every second while the retries wait.
    let mut log = Logger::start(&["-tt"], "t1\n");
    log.proc.write(b"first\n");
    log.wait_for_current("the first line", |c| c.contains("first"));
    fs::remove_dir_all(&log.dir).unwrap();
    fs::write(&log.dir, "not a directory").unwrap();
    log.proc.write(b"second\n");
    wait_for(DEADLINE, "a warning", || {
        log.proc.stderr().contains("retrying every second")
    });
    // Each sleep in poll is a voluntary context switch: about one a second when idle, a
    // thousand a second if the loop woke for a deadline it then ignores.
    let wakeups = || -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", log.proc.child.id())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("voluntary_ctxt_switches:"));
        line.unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    let (since, before) = (std::time::Instant::now(), wakeups());
    wait_for(DEADLINE, "3 seconds of failing", || {
        since.elapsed() > Duration::from_secs(3)
    });
    let woke = wakeups() - before;
    assert!(woke < 50, "woke {woke} times in 3 s while failing");
    fs::remove_file(&log.dir).unwrap();
    // Written after recovery, then rotated by t1.
    wait_for(DEADLINE, "the second line", || {
        String::from_utf8_lossy(&stream(&log.dir)).contains(" second\n")
    });
}

/// How many lines the logger's recovery warning says were lost.
fn lost_lines(stderr: &str) -> u64 {
    // "...: writing again; lost the oldest N bytes (M lines) meanwhile"
    stderr
        .split("lost the oldest ")
        .nth(1)
        .and_then(|s| s.split(" bytes (").nth(1))
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no recovery warning with a count: {stderr}"))
}

#[test]
fn a_second_logger_and_a_missing_directory_are_refused_like_runit() {
    let mut log = Logger::start(&["-tt"], "");
    log.proc.write(b"x\n");
    log.wait_for_current("the line", |c| c.contains('x'));
    // Both directions: runit's svlogd and ours see each other's lock.
    for mut second in [approuter_svlogd(), Command::new("/usr/bin/svlogd")] {
        let out = second.arg(&log.dir).stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(111), "{:?}", out);
    }
    let out = approuter_svlogd()
        .arg(&log.dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = crate::util::one_line_error(&out);
    assert!(
        err.contains("lock") && err.contains(&log.dir.display().to_string()),
        "{err}"
    );

    let missing = log.tmp.path().join("missing");
    let out = approuter_svlogd()
        .arg(&missing)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(111));
    let err = crate::util::one_line_error(&out);
    assert!(
        err.contains(&missing.display().to_string()) && err.contains("create it"),
        "{err}"
    );
    assert!(!missing.exists());

    drop(log);
    let dir2 = tempfile::tempdir().unwrap();
    let mut runit = Proc::spawn(
        Command::new("/usr/bin/svlogd").arg(dir2.path()),
        &dir2.path().join("err"),
    );
    runit.write(b"held by runit\n");
    wait_for(DEADLINE, "runit's line", || {
        fs::read_to_string(dir2.path().join("current"))
            .unwrap_or_default()
            .contains("held")
    });
    let out = approuter_svlogd()
        .arg(dir2.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(111));
}

#[test]
fn several_directories_each_get_the_lines_their_config_selects() {
    let tmp = tempfile::tempdir().unwrap();
    let (all, errors) = (tmp.path().join("all"), tmp.path().join("errors"));
    fs::create_dir(&all).unwrap();
    fs::create_dir(&errors).unwrap();
    fs::write(errors.join("config"), "-*\n+*error*\n").unwrap();
    let mut p = Proc::spawn(
        approuter_svlogd().args(["-tt"]).arg(&all).arg(&errors),
        &tmp.path().join("err"),
    );
    p.write(b"fine\nan error here\nfine again\n");
    p.close_stdin();
    assert!(p.wait(DEADLINE).success(), "{}", p.stderr());
    assert_eq!(
        fs::read_to_string(all.join("current"))
            .unwrap()
            .lines()
            .count(),
        3
    );
    let e = fs::read_to_string(errors.join("current")).unwrap();
    assert!(
        e.lines().count() == 1 && e.ends_with(" an error here\n"),
        "{e}"
    );
}

/// A temp dir, a tmpfs of `size` in it, and an empty log directory on that.
fn log_dir_on_tmpfs(size: &str) -> Option<(tempfile::TempDir, Tmpfs, PathBuf)> {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = Tmpfs::mount(&tmp.path().join("mnt"), size)?;
    let dir = mnt.0.join("log");
    fs::create_dir(&dir).unwrap();
    Some((tmp, mnt, dir))
}

/// Fills the file system holding `dir` to the last byte.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut f = fs::File::create(&p).unwrap();
    for size in [1 << 16, 1 << 10, 1] {
        while f.write_all(&vec![0u8; size]).is_ok() {}
    }
    p
}

#[test]
fn full_disk_holds_the_newest_lines_and_recovers() {
    let Some((_tmp, mnt, dir)) = log_dir_on_tmpfs("16m") else {
        return;
    };
    fs::write(dir.join("config"), "s0\n").unwrap();
    let filler = fill(&mnt.0);
    let mut log = Logger::start_in(tempfile::tempdir().unwrap(), dir, &["-tt"], "");
    let input = numbered_lines(80_000, 150, 12);
    let total = input.iter().filter(|&&b| b == b'\n').count() as u64;
    log.proc.write_all_within(input.clone(), DEADLINE);
    wait_for(DEADLINE, "a warning", || {
        log.proc.stderr().contains("No space left on device")
    });
    fs::remove_file(filler).unwrap();
    log.wait_for_last_line_of(&input);
    let log = log.finish();
    let err = log.proc.stderr();
    assert_eq!(err.matches("retrying every second").count(), 1, "{err}");
    assert_eq!(
        log.current().lines().count() as u64 + lost_lines(&err),
        total,
        "{err}"
    );
}

#[test]
fn full_disk_deletes_old_files_down_to_n_min() {
    let Some((_tmp, _mnt, dir)) = log_dir_on_tmpfs("256k") else {
        return;
    };
    let mut log = Logger::start_in(
        tempfile::tempdir().unwrap(),
        dir,
        &["-tt"],
        "s16384\nn50\nN2\n",
    );
    let input = numbered_lines(20_000, 100, 13);
    log.proc.write_all_within(input.clone(), DEADLINE);
    log.wait_for_last_line_of(&input);
    let log = log.finish();
    let err = log.proc.stderr();
    assert!(
        err.contains("disk full: deleted the old log file @"),
        "{err}"
    );
    assert!(!err.contains("retrying"), "{err}");
    assert!(rotated(&log.dir).len() >= 2);
}

/// A logger killed with SIGKILL in the middle of a stream loses no line: the pipe it reads (held
/// open by the supervisor, here by the test) keeps what it had not written, and the next logger
/// reads it. A line may at worst appear twice.
#[test]
fn kill_9_of_the_logger_loses_no_line() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("config"), "s200000\nn100\n").unwrap();
    let (r, w) = nix::unistd::pipe().unwrap();
    let total = 40_000;
    let writer = std::thread::spawn(move || {
        let mut w = std::fs::File::from(w);
        for i in 0..total {
            // One write per line, as a program that prints whole lines does.
            w.write_all(format!("seq {i:06} {}\n", "x".repeat(i % 90)).as_bytes())
                .unwrap();
            if i % 500 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    let spawn = || {
        Proc::spawn_with_stdin(
            approuter_svlogd().arg(&dir),
            Stdio::from(r.try_clone().unwrap()),
            &tmp.path().join("err"),
        )
    };
    // Loggers are killed one after the other, each once it has written something more, until
    // the writer is done (it blocks while no logger reads): every kill lands mid-stream.
    let written = || -> u64 {
        fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    let mut kills = 0;
    while !writer.is_finished() {
        let before = written();
        let mut p = spawn();
        wait_for(DEADLINE, "the logger to write more", || {
            written() > before || writer.is_finished()
        });
        p.signal(Signal::SIGKILL);
        p.wait(DEADLINE);
        kills += 1;
    }
    writer.join().unwrap();
    assert!(kills >= 3, "only {kills} loggers were killed mid-stream");
    // The last logger reads to the end: the test's copy of the read end is the only one left
    // once it is dropped, and the write end is closed.
    let mut last = spawn();
    drop(r);
    let st = last.wait(DEADLINE);
    assert!(st.success(), "{}", last.stderr());
    let text = String::from_utf8_lossy(&stream(&dir)).into_owned();
    let mut seen = vec![false; total];
    for line in text.lines() {
        if let Some(n) = line
            .split("seq ")
            .nth(1)
            .and_then(|s| s.get(..6))
            .and_then(|s| s.parse::<usize>().ok())
        {
            seen[n] = true;
        }
    }
    let missing: Vec<usize> = (0..total).filter(|&i| !seen[i]).collect();
    assert!(
        missing.is_empty(),
        "{} lines lost, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

/// `--wait-lock` (cron's syncs, which may overlap): a second logger waits for the first to let
/// go of the directory, holding its input meanwhile, then writes it all, saying nothing.
#[test]
fn with_wait_lock_a_second_logger_waits_its_turn() {
    let mut first = Logger::start(&["-tt"], "");
    first.proc.write(b"first\n");
    first.wait_for_current("the first line", |c| c.contains("first"));
    let mut second = Proc::spawn(
        approuter_svlogd()
            .args(["-tt", "--wait-lock"])
            .arg(&first.dir)
            .stdout(Stdio::null()),
        &first.tmp.path().join("second.err"),
    );
    second.write(b"second\n");
    second.close_stdin();
    // Without --wait-lock it would have left at once (exit 111), its line lost.
    first.proc.close_stdin();
    assert!(first.proc.wait(DEADLINE).success());
    assert!(second.wait(DEADLINE).success(), "{}", second.stderr());
    let current = fs::read_to_string(first.dir.join("current")).unwrap();
    assert!(
        current.contains(" first\n") && current.contains(" second\n"),
        "{current}"
    );
    assert_eq!(second.stderr(), "", "waiting is not worth a warning");
}
