//! The outside world approuter drives: git, nginx, HTTP health checks, operator hooks, and /proc.

pub mod git;
pub mod hooks;
pub mod http;
pub mod nginx;
pub mod procfs;
