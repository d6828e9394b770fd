//! What sync says: one line per action, timestamped when it goes to a file rather than a terminal or a logger's pipe, and whether anything failed.

use std::io::{IsTerminal, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Settings;
use crate::ext::hooks::{self, Event};
use crate::layout::Layout;
use crate::util::tai64;

pub struct Report {
    stamp: bool,
    verbose: bool,
    pub failed: bool,
}

/// Lines get a timestamp when they go to a file: not on a terminal, and not into a pipe, where
/// the reader is cron's logger (`approuter svlogd -tt`, which stamps every line) or a person's
/// `| less`.
fn stamps_its_lines() -> bool {
    let out = std::io::stdout();
    if out.is_terminal() {
        return false;
    }
    !nix::sys::stat::fstat(&out).is_ok_and(|st| {
        nix::sys::stat::SFlag::from_bits_truncate(st.st_mode) & nix::sys::stat::SFlag::S_IFMT
            == nix::sys::stat::SFlag::S_IFIFO
    })
}

impl Report {
    pub fn new(verbose: bool) -> Report {
        Report {
            stamp: stamps_its_lines(),
            verbose,
            failed: false,
        }
    }

    pub fn say(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        if self.stamp {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let (y, mo, d, h, mi, s) = tai64::utc_civil(now);
            let _ = writeln!(out, "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} {line}");
        } else {
            let _ = writeln!(out, "{line}");
        }
    }

    /// A line that only `-v` shows: what needed no change.
    pub fn verbose(&self, line: &str) {
        if self.verbose {
            self.say(line);
        }
    }

    /// A line about something that failed: the sync will exit 1.
    pub fn fail(&mut self, line: &str) {
        self.failed = true;
        self.say(line);
    }

    pub fn lines(&self, lines: Vec<String>) {
        for line in lines {
            self.say(&line);
        }
    }

    pub fn hook(&self, layout: &Layout, settings: &Settings, event: Event, args: &[&str]) {
        self.lines(hooks::run(layout, settings, event, args));
    }
}
