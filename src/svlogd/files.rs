//! The svlogd directory format: file names, modes, when `current` is rotated and which old files go; the only place that knows them.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::util::tai64::Tai64N;

pub const CURRENT: &str = "current";
pub const LOCK: &str = "lock";
pub const CONFIG: &str = "config";

/// `current` while a logger appends to it. svlogd sets the modes with fchmod, so the umask
/// does not change them.
pub const MODE_WRITING: u32 = 0o644;
/// `current` after a clean close, and every rotated file. A `current` without the owner's
/// execute bit at start-up was not closed cleanly.
pub const MODE_CLOSED: u32 = 0o744;
pub const MODE_LOCK: u32 = 0o600;

/// Opens a file of a log directory with `opts`, never through a symlink and only when it is a
/// regular file: the logger runs as root, and whoever could plant a link or a FIFO in the
/// directory must not get it to write, create or read anywhere else, or to hang.
pub fn open_regular(opts: &mut OpenOptions, path: &Path) -> io::Result<File> {
    // O_NONBLOCK: opening a FIFO for writing would wait for a reader. It means nothing to the
    // regular file that is kept.
    let f = opts
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => {
                io::Error::other("is a symbolic link; approuter svlogd never follows one")
            }
            _ => e,
        })?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("is not a regular file; move it away"));
    }
    Ok(f)
}

/// Opens a log file for reading, with the care of [`open_regular`].
pub fn open_read(path: &Path) -> io::Result<File> {
    open_regular(OpenOptions::new().read(true), path)
}

/// Name for `current` rotated now: `@` + TAI64N label + `.s`, or `.u` for a `current` found
/// after an unclean shutdown.
pub fn rotated_name(t: Tai64N, unclean: bool) -> String {
    format!("{}.{}", t.label(), if unclean { 'u' } else { 's' })
}

/// A rotated log file: `@<24 hex>.s` or `.u`. (`.t` is a processor's unfinished output.)
pub fn is_rotated(name: &str) -> bool {
    old_file_kind(name).is_some_and(|k| k != 't')
}

fn old_file_kind(name: &str) -> Option<char> {
    let (label, kind) = name.split_at_checked(25)?;
    Tai64N::parse_label(label)?;
    match kind {
        ".s" => Some('s'),
        ".u" => Some('u'),
        ".t" => Some('t'),
        _ => None,
    }
}

/// The rotated files of `dir`, oldest first. Together with `current` they are one stream: a
/// rotated file may end in the middle of a line that the next file continues, because svlogd
/// splits the write that reaches the size limit.
pub fn rotated_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names: Vec<String> = names_in(dir)?
        .into_iter()
        .filter(|n| is_rotated(n))
        .collect();
    // Labels are fixed-width hex of the rotation time, so name order is time order.
    names.sort();
    Ok(names)
}

pub fn names_in(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// Old files to delete after a rotation, given every name in the directory: leftovers of an
/// interrupted processor (`.t`, as svlogd does), and the oldest rotated files beyond `keep`
/// (0 keeps all). svlogd deletes at most one per rotation; deleting all of the excess makes a
/// lowered `n` take effect at the next rotation instead of over many.
pub fn to_delete(names: &[String], keep: u64) -> Vec<String> {
    let mut doomed: Vec<String> = names
        .iter()
        .filter(|n| old_file_kind(n) == Some('t'))
        .cloned()
        .collect();
    let mut rotated: Vec<&String> = names.iter().filter(|n| is_rotated(n)).collect();
    rotated.sort();
    if keep > 0 && rotated.len() as u64 > keep {
        let excess = rotated.len() - keep as usize;
        doomed.extend(rotated[..excess].iter().map(|n| (*n).clone()));
    }
    doomed
}

/// The old file to delete when the disk is full: the oldest, while more than `keep_min` remain.
/// As in svlogd this only applies when `keep_min` is below `keep`.
pub fn to_delete_for_space(names: &[String], keep: u64, keep_min: u64) -> Option<String> {
    if keep_min >= keep {
        return None;
    }
    let rotated: Vec<&String> = names.iter().filter(|n| is_rotated(n)).collect();
    if rotated.len() as u64 <= keep_min {
        return None;
    }
    rotated.into_iter().min().cloned()
}

/// What to do next with `pending` bytes for a `current` of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// `current` is full: rotate before writing anything.
    Rotate,
    /// Append the first `bytes` bytes, then rotate if `rotate` is set.
    Write { bytes: usize, rotate: bool },
}

/// svlogd's rotation rule, for a stream in which every `\n` ends a line. With a size limit
/// `max` (0: none), `current` is rotated when it reaches `max` bytes, the write that gets there
/// being split at exactly `max` (the rest starts the next file without a new timestamp); or,
/// when `max` exceeds the line length `len`, right after the first line that ends within `len`
/// bytes of `max`.
pub fn next_step(size: u64, max: u64, len: u64, pending: &[u8]) -> Step {
    if max == 0 {
        return Step::Write {
            bytes: pending.len(),
            rotate: false,
        };
    }
    if size >= max {
        return Step::Rotate;
    }
    let room = max - size;
    let limit = pending
        .len()
        .min(usize::try_from(room).unwrap_or(usize::MAX));
    if max > len {
        // A line ending at index i leaves size + i + 1 bytes in current.
        let from = usize::try_from((max - len).saturating_sub(size + 1)).unwrap_or(usize::MAX);
        if from < limit {
            if let Some(i) = memchr::memchr(b'\n', &pending[from..limit]) {
                return Step::Write {
                    bytes: from + i + 1,
                    rotate: true,
                };
            }
        }
    }
    Step::Write {
        bytes: limit,
        rotate: limit as u64 == room,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "@400000006b025bb211d9f04c.s";
    const B: &str = "@400000006b025bb214f01d74.s";
    const C: &str = "@400000006b025bb21b2e59e4.u";
    const D: &str = "@400000006b025bb31b2e59e4.s";
    const T: &str = "@400000006b025bb31b2e59e4.t";

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_table() {
        let t = Tai64N {
            secs: 0x4000_0000_6b02_5bb2,
            nanos: 0x11d9_f04c,
        };
        assert_eq!(rotated_name(t, false), A);
        assert_eq!(rotated_name(t, true), "@400000006b025bb211d9f04c.u");
        for (name, want) in [
            (A, true),
            (C, true),
            (T, false),
            ("current", false),
            ("lock", false),
            ("config", false),
            ("@400000006b025bb211d9f04c", false),
            ("@400000006b025bb211d9f04c.s.new", false),
            ("@400000006b025bb211d9f04.s", false),
            ("#400000006b025bb211d9f04c.s", false),
            ("@400000006b025bb211d9f0zz.s", false),
            ("@400000006b025bb211d9f04c.x", false),
            ("é00000006b025bb211d9f04c.s", false),
        ] {
            assert_eq!(is_rotated(name), want, "{name}");
        }
    }

    #[test]
    fn deletion_table() {
        let all = names(&[D, "current", B, "lock", C, A, "config"]);
        let cases: &[(u64, &[&str])] = &[
            (0, &[]),
            (4, &[]),
            (10, &[]),
            (3, &[A]),
            (2, &[A, B]),
            (1, &[A, B, C]),
        ];
        for (keep, want) in cases {
            assert_eq!(to_delete(&all, *keep), names(want), "n{keep}");
        }
        assert_eq!(to_delete(&names(&[A, T]), 10), names(&[T]));

        let cases: &[(u64, u64, Option<&str>)] = &[
            (10, 10, None), // svlogd's defaults never delete for space
            (10, 4, None),
            (10, 3, Some(A)),
            (10, 0, Some(A)),
            (3, 5, None),
        ];
        for (keep, keep_min, want) in cases {
            assert_eq!(
                to_delete_for_space(&all, *keep, *keep_min).as_deref(),
                *want,
                "n{keep} N{keep_min}"
            );
        }
        assert_eq!(to_delete_for_space(&names(&["current"]), 10, 0), None);
    }

    #[test]
    fn rotation_table() {
        let w = |bytes, rotate| Step::Write { bytes, rotate };
        let line56 = [&[b'x'; 55][..], b"\n"].concat();
        let two = [b"aaaa\n".as_slice(), b"bbbbbbbb\n"].concat();
        let cases: &[(u64, u64, u64, &[u8], Step)] = &[
            // No size limit: everything goes.
            (5_000_000, 0, 1000, b"abc\n", w(4, false)),
            // Full: rotate first (also when the limit was lowered below the size).
            (100, 100, 1000, b"abc\n", Step::Rotate),
            (150, 100, 1000, b"abc\n", Step::Rotate),
            // s100 with 56-byte lines (max < len: only exact splits), as observed in runit.
            (0, 100, 1000, &line56, w(56, false)),
            (56, 100, 1000, &line56, w(44, true)),
            (88, 100, 1000, &line56, w(12, true)),
            // Ends exactly at the limit.
            (96, 100, 1000, b"abc\n", w(4, true)),
            // Rotate at the first newline within len of max: 2000 - 1000 = 1000.
            (980, 2000, 1000, &two, w(14, false)),
            (990, 2000, 1000, &two, w(14, true)),
            (995, 2000, 1000, &two, w(5, true)),
            (996, 2000, 1000, &two, w(5, true)),
            (991, 2000, 1000, &two, w(14, true)),
            (1500, 2000, 1000, b"partial", w(7, false)),
            (1996, 2000, 1000, b"partial", w(4, true)),
            (0, 2000, 1000, b"", w(0, false)),
        ];
        for (size, max, len, pending, want) in cases {
            assert_eq!(
                &next_step(*size, *max, *len, pending),
                want,
                "size {size} s{max} -l {len} {:?}",
                String::from_utf8_lossy(pending)
            );
        }
    }
}
