//! The logger every generated `log/run` execs: `approuter svlogd` and nothing else of approuter (no git, TLS or HTTP client linked in), so that a logger per service costs what runit's svlogd costs.

// The logger's own code, shared with `approuter svlogd` (one home: src/svlogd/), and the two
// helpers it uses; the rest of those files (the log reader, atomic writes) is approuter's and
// unused here.
#[allow(dead_code)]
#[path = "../svlogd/mod.rs"]
mod svlogd;

#[allow(dead_code)]
#[path = "../util/file.rs"]
mod util_file;
#[allow(dead_code)]
#[path = "../util/tai64.rs"]
mod util_tai64;

/// The paths the logger's code names them by (`crate::util::tai64`).
mod util {
    pub(crate) use super::util_file as file;
    pub(crate) use super::util_tai64 as tai64;
}

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "approuter-svlogd",
    version,
    about = "Append stdin to svlogd-style log directories, as runit's svlogd does (`approuter svlogd` in a process of its own)"
)]
struct Cli {
    #[command(flatten)]
    args: svlogd::Args,
}

fn main() -> ExitCode {
    let args = Cli::parse().args;
    // What parsing the command line allocated (clap builds its whole description) is free now
    // but would stay in this process's heap, dirty, for the logger's whole life: a thousand
    // loggers would keep 88 KiB each. Handed back to the kernel.
    // SAFETY: malloc_trim only releases free memory.
    unsafe { nix::libc::malloc_trim(0) };
    match svlogd::main(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("approuter-svlogd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
