//! approuter's integration tests: one binary, one module per capability, all against real processes.

mod app;
mod boot;
mod cli;
mod deploy;
mod faults;
mod generate;
mod logs;
mod nginx;
mod perpls;
mod picker;
mod security;
mod start;
mod supervise;
mod svlogd;
mod sync;
mod util;
