//! The logger every generated `log/run` execs: `approuter svlogd` and nothing else of approuter (no git, TLS, HTTP client or clap linked in), so that a logger per service costs what runit's svlogd costs.

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

fn main() -> std::process::ExitCode {
    svlogd::cli("approuter-svlogd", std::env::args_os().skip(1))
}
