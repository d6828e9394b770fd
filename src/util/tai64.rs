//! TAI64N timestamps as runit and daemontools write them, and the UTC calendar used by svlogd's `-tt`/`-ttt`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// TAI64 label of the Unix epoch: 2^62 plus the 10 seconds TAI was ahead of UTC in 1970, as
/// runit counts them (it ignores later leap seconds, and so must we to agree with `sv` and
/// `tai64nlocal`).
pub const EPOCH_LABEL: u64 = (1 << 62) + 10;

/// A TAI64N moment: seconds (already offset by [`EPOCH_LABEL`]) and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tai64N {
    pub secs: u64,
    pub nanos: u32,
}

impl Tai64N {
    /// runit takes the time from gettimeofday and writes `usec * 1000 + 500` nanoseconds, so
    /// its values always end in 500; we do the same so files are indistinguishable.
    pub fn from_system(t: SystemTime) -> Tai64N {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        Tai64N {
            secs: EPOCH_LABEL + d.as_secs(),
            nanos: d.subsec_micros() * 1000 + 500,
        }
    }

    pub fn now() -> Tai64N {
        Tai64N::from_system(SystemTime::now())
    }

    /// The 12 bytes of the external format: seconds then nanoseconds, both big-endian.
    pub fn to_bytes(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..8].copy_from_slice(&self.secs.to_be_bytes());
        b[8..].copy_from_slice(&self.nanos.to_be_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; 12]) -> Tai64N {
        Tai64N {
            secs: u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
            nanos: u32::from_be_bytes(b[8..].try_into().expect("4 bytes")),
        }
    }

    /// `@` and 24 lowercase hex digits, as svlogd -t and rotated file names use; `tai64nlocal`
    /// crashes on anything shorter, so the width is fixed.
    pub fn label(self) -> String {
        format!("@{:016x}{:08x}", self.secs, self.nanos)
    }

    /// Parses a label written by [`Tai64N::label`] (with or without the `@`).
    pub fn parse_label(s: &str) -> Option<Tai64N> {
        let hex = s.strip_prefix('@').unwrap_or(s);
        if hex.len() != 24 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        Some(Tai64N {
            secs: u64::from_str_radix(&hex[..16], 16).ok()?,
            nanos: u32::from_str_radix(&hex[16..], 16).ok()?,
        })
    }

    /// Seconds since the Unix epoch (negative labels before 1970 clamp to 0).
    pub fn unix_secs(self) -> u64 {
        self.secs.saturating_sub(EPOCH_LABEL)
    }

    pub fn to_system(self) -> SystemTime {
        UNIX_EPOCH + Duration::new(self.unix_secs(), self.nanos.min(999_999_999))
    }
}

/// `2026-11-22 10:31:55 UTC`, for messages.
pub fn utc_string(unix_secs: u64) -> String {
    let (y, mo, d, h, mi, s) = utc_civil(unix_secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// A UTC calendar time: (year, month 1-12, day 1-31, hour, minute, second).
pub fn utc_civil(unix_secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    // Howard Hinnant's days-from-civil inverse: exact for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem / 60 % 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runit_examples() {
        // From the reference: 0x6b025efc = unix 1795317490 + 10, 2026-11-22 03:18:10 UTC.
        let t = Tai64N {
            secs: 0x4000_0000_6b02_5efc,
            nanos: 692_311_500,
        };
        assert_eq!(t.unix_secs(), 1_795_317_490);
        assert_eq!(utc_civil(t.unix_secs()), (2026, 11, 22, 3, 18, 10));
        assert_eq!(
            t.to_bytes(),
            [0x40, 0, 0, 0, 0x6b, 0x02, 0x5e, 0xfc, 0x29, 0x43, 0xd5, 0xcc]
        );
        assert_eq!(Tai64N::from_bytes(&t.to_bytes()), t);
        // tai64nlocal's man page example.
        let l = Tai64N::parse_label("@4000000037c219bf2ef02e94").unwrap();
        assert_eq!(utc_civil(l.unix_secs()), (1999, 8, 24, 4, 4, 5));
        assert_eq!(l.nanos, 787_492_500);
        assert_eq!(l.label(), "@4000000037c219bf2ef02e94");
        assert_eq!(
            Tai64N::parse_label("@400000000000000a00000000")
                .unwrap()
                .unix_secs(),
            0
        );
        assert!(Tai64N::parse_label("@4000000037c219bf short").is_none());
    }

    #[test]
    fn nanos_end_in_500_like_runit() {
        let t = Tai64N::from_system(UNIX_EPOCH + Duration::new(5, 123_456_789));
        assert_eq!(t.nanos, 123_456_500);
        assert_eq!(t.secs, EPOCH_LABEL + 5);
    }

    #[test]
    fn calendar() {
        for (secs, want) in [
            (0, (1970, 1, 1, 0, 0, 0)),
            (951_782_400, (2000, 2, 29, 0, 0, 0)),
            (4_107_542_399, (2100, 2, 28, 23, 59, 59)),
            (1_709_251_199, (2024, 2, 29, 23, 59, 59)),
        ] {
            assert_eq!(utc_civil(secs), want, "{secs}");
        }
    }
}
