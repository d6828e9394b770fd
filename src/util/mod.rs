//! Small helpers every part of approuter shares: atomic files, pid lock files, waiting with a deadline, TAI64N time.

pub mod failpoint;
pub mod file;
pub mod pidlock;
pub mod poll;
pub mod tai64;
