//! svlogd's line timestamps: `-t` TAI64N labels, `-tt` and `-ttt` UTC times with five fractional digits.

use std::io::Write;

use crate::util::tai64::{utc_civil, Tai64N};

/// Formats the timestamp that starts each line (with its trailing space), reusing the
/// calendar part while the second has not changed: at a million lines a second the date is
/// computed once per read, not once per line.
pub struct Stamper {
    /// 0: none, 1: `-t`, 2: `-tt`, 3: `-ttt`, as runit counts the flags.
    kind: u8,
    /// The whole-second part of the last UTC stamp, and the second it is for.
    date: Vec<u8>,
    date_secs: Option<u64>,
    out: Vec<u8>,
}

impl Stamper {
    pub fn new(kind: u8) -> Stamper {
        Stamper {
            kind: kind.min(3),
            date: Vec::with_capacity(24),
            date_secs: None,
            out: Vec::with_capacity(32),
        }
    }

    pub fn stamp(&mut self, t: Tai64N) -> &[u8] {
        self.out.clear();
        match self.kind {
            0 => {}
            1 => {
                self.out.extend_from_slice(t.label().as_bytes());
                self.out.push(b' ');
            }
            _ => {
                let secs = t.unix_secs();
                if self.date_secs != Some(secs) {
                    let (y, mo, d, h, mi, s) = utc_civil(secs);
                    let sep = if self.kind == 2 { '_' } else { 'T' };
                    self.date.clear();
                    let _ = write!(
                        self.date,
                        "{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}."
                    );
                    self.date_secs = Some(secs);
                }
                self.out.extend_from_slice(&self.date);
                // runit prints the first five of the nine nanosecond digits.
                let _ = write!(self.out, "{:05} ", t.nanos.min(999_999_999) / 10_000);
            }
        }
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_table() {
        // 2026-11-22 03:04:07.941690500 UTC, as in the reference's `-tt` example.
        let t = Tai64N {
            secs: 0x4000_0000_6b02_5bb1,
            nanos: 941_690_500,
        };
        let early = Tai64N { nanos: 5_500, ..t };
        let cases: &[(u8, Tai64N, &str)] = &[
            (0, t, ""),
            (1, t, "@400000006b025bb138210e84 "),
            (2, t, "2026-11-22_03:04:07.94169 "),
            (3, t, "2026-11-22T03:04:07.94169 "),
            (2, early, "2026-11-22_03:04:07.00000 "),
            (4, t, "2026-11-22T03:04:07.94169 "),
        ];
        for (kind, t, want) in cases {
            let mut s = Stamper::new(*kind);
            assert_eq!(String::from_utf8_lossy(s.stamp(*t)), *want, "-t x{kind}");
        }
        // The cached date must follow the clock across seconds and days.
        let mut s = Stamper::new(2);
        s.stamp(t);
        let next_day = Tai64N {
            secs: t.secs + 86_400 + 1,
            nanos: 500,
        };
        assert_eq!(s.stamp(next_day), b"2026-11-23_03:04:08.00000 ");
        assert_eq!(s.stamp(t), b"2026-11-22_03:04:07.94169 ");
    }
}
