//! approuter's own runit/daemontools-compatible supervisor: the on-disk protocol, one supervised unit, and the scanner.

pub mod control;
pub mod policy;
pub mod procfs;
pub mod scan;
pub mod status;
pub mod unit;
