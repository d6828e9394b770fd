//! approuter's integration tests: one binary, one module per capability, all against real processes.

mod app;
mod generate;
mod start;
mod supervise;
mod util;
