//! approuter's own runit/daemontools-compatible supervisor: the on-disk protocol, one supervised unit, the scanner, and the client side.

pub mod client;
pub mod control;
pub mod policy;
pub mod scan;
pub mod servicedir;
pub mod status;
pub mod unit;

/// A line on svscan's stderr. Never fails: svscan's logger may be gone (killed, or not yet
/// restarted), and a supervisor must not die because nobody reads what it says.
pub fn say(msg: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "approuter svscan: {msg}");
}
