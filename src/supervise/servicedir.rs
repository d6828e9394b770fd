//! What a service directory is: a directory whose name does not start with '.', holding `run`, with an optional `log/`, `finish` and `down`. The one definition svscan and every client use.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub const RUN: &str = "run";
pub const FINISH: &str = "finish";
pub const LOG: &str = "log";
/// Present: the service is normally down (not started when supervision begins).
pub const DOWN: &str = "down";

/// The metadata of `dir/name` when it is a service directory (a symlink to one counts, as for
/// runsvdir), else `None`.
pub fn entry(dir: &Path, name: &str) -> Option<fs::Metadata> {
    if name.starts_with('.') {
        return None;
    }
    let path = dir.join(name);
    let meta = fs::metadata(&path).ok()?;
    (meta.is_dir() && path.join(RUN).exists()).then_some(meta)
}

/// The service directories under `dir`, sorted by name; none when `dir` does not exist.
pub fn list(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for e in entries {
        let name = e?.file_name().to_string_lossy().into_owned();
        if entry(dir, &name).is_some() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The log service of a service directory, when it has one.
pub fn log_of(service: &Path) -> Option<PathBuf> {
    let log = service.join(LOG);
    log.is_dir().then_some(log)
}

pub fn normally_down(service: &Path) -> bool {
    service.join(DOWN).exists()
}

/// Does the run recorded in this service directory, or in its log's, still run (left by a
/// supervisor that was killed, for the next one to take over)?
pub fn left_running(service: &Path) -> bool {
    [Some(service.to_path_buf()), log_of(service)]
        .into_iter()
        .flatten()
        .filter_map(|d| super::status::read(&d).ok())
        .any(|s| s.run_is_alive())
}
