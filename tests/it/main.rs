//! approuter's integration tests: one binary, one module per capability, all against real processes.

mod generate;
mod logs;
mod svlogd;
mod util;
