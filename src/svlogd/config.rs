//! A log directory's `config` file as svlogd reads it, and svlogd's pattern language for `+`, `-`, `e` and `E` lines.

use std::time::Duration;

/// The settings of one log directory. `Default` is svlogd's behaviour without a `config` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `s`: rotate when `current` reaches this many bytes; 0 never rotates by size.
    pub size: u64,
    /// `n`: how many rotated files to keep; 0 keeps them all.
    pub keep: u64,
    /// `N`: on a full disk, old files are deleted while more than this many remain (only when
    /// below `keep`, as in svlogd, so by default nothing is deleted for space).
    pub keep_min: u64,
    /// `t`: rotate a non-empty `current` this long after it was started.
    pub age: Option<Duration>,
    /// `p`: written after the timestamp of every line.
    pub prefix: Vec<u8>,
    /// `+`, `-`, `e`, `E` lines, in file order: later matches override earlier ones.
    pub rules: Vec<Rule>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            size: 1_000_000,
            keep: 10,
            keep_min: 10,
            age: None,
            prefix: Vec::new(),
            rules: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `b'+'` select for the log, `b'-'` deselect, `b'e'` copy to stderr, `b'E'` do not.
    pub action: u8,
    pub pattern: Vec<u8>,
}

impl Config {
    /// Parses a `config` file. Lines approuter does not support, or cannot read, are skipped
    /// and described in the returned warnings (`line N: ...`), because a logger must keep
    /// logging whatever its configuration says.
    pub fn parse(text: &[u8]) -> (Config, Vec<String>) {
        let mut c = Config::default();
        let mut warnings = Vec::new();
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            let Some((&key, rest)) = line.split_first() else {
                continue;
            };
            // The line itself is never repeated: the logger runs as root, and a config file that
            // is not what it seems must not have its contents copied into a readable log.
            let mut bad =
                |what: &str| warnings.push(format!("line {}: {what}; line ignored", i + 1));
            match key {
                b'#' => {}
                b'+' | b'-' | b'e' | b'E' => c.rules.push(Rule {
                    action: key,
                    pattern: rest.to_vec(),
                }),
                b's' => match number(rest, &[(b'k', 1024), (b'm', 1024 * 1024)]) {
                    Some(n) => c.size = n,
                    None => bad("expected a size such as s1000000, s100k or s1m"),
                },
                b'n' => match number(rest, &[]) {
                    Some(n) => c.keep = n,
                    None => bad("expected a number of files such as n10"),
                },
                b'N' => match number(rest, &[]) {
                    Some(n) => c.keep_min = n,
                    None => bad("expected a number of files such as N5"),
                },
                b't' => match number(rest, &[(b'm', 60), (b'h', 3600)]) {
                    Some(0) => c.age = None,
                    Some(n) => c.age = Some(Duration::from_secs(n)),
                    None => bad("expected seconds such as t86400, t60m or t24h"),
                },
                b'p' => c.prefix = rest.to_vec(),
                b'!' => bad("processors are not supported by approuter svlogd"),
                b'u' | b'U' => bad("udp logging is not supported by approuter svlogd"),
                _ => bad("unknown setting"),
            }
        }
        (c, warnings)
    }

    /// What to do with a line whose first `-l` bytes are `head`: (write it to the log, copy it
    /// to stderr). Timestamps and the prefix are not part of what is matched.
    pub fn select(&self, head: &[u8]) -> (bool, bool) {
        let (mut log, mut err) = (true, false);
        for r in &self.rules {
            if pattern_matches(&r.pattern, head) {
                match r.action {
                    b'+' => log = true,
                    b'-' => log = false,
                    b'e' => err = true,
                    _ => err = false,
                }
            }
        }
        (log, err)
    }
}

/// Digits, then optionally one of the unit letters (each with its multiplier), then nothing.
fn number(s: &[u8], units: &[(u8, u64)]) -> Option<u64> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let n: u64 = std::str::from_utf8(&s[..digits]).ok()?.parse().ok()?;
    match &s[digits..] {
        [] => Some(n),
        [u] => units
            .iter()
            .find(|(c, _)| c == u)
            .and_then(|(_, m)| n.checked_mul(*m)),
        _ => None,
    }
}

/// svlogd's matcher, which is not a regular expression and must match the whole `s`: `*`
/// followed by a character skips up to (not past) that character's next occurrence, and at
/// the end of the pattern matches anything; `+c` matches one or more `c`. Quirks of runit's
/// `pmatch` are kept so that the same config selects the same lines: after `+c` has consumed
/// the rest of `s` the match succeeds whatever pattern is left, and a trailing `+` never
/// matches.
pub fn pattern_matches(p: &[u8], s: &[u8]) -> bool {
    let (mut p, mut s) = (p, s);
    loop {
        let Some((&c, rest)) = p.split_first() else {
            return s.is_empty();
        };
        p = rest;
        match c {
            b'*' => {
                let Some(&next) = p.first() else {
                    return true;
                };
                match s.iter().position(|&b| b == next) {
                    Some(i) => s = &s[i..],
                    None => return false,
                }
            }
            b'+' => {
                let Some((&rep, rest)) = p.split_first() else {
                    return false;
                };
                p = rest;
                if s.first() != Some(&rep) {
                    return false;
                }
                s = &s[s.iter().take_while(|&&b| b == rep).count()..];
                if s.is_empty() {
                    return true;
                }
            }
            _ => match s.split_first() {
                Some((&b, rest)) if b == c => s = rest,
                _ => return false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let d = Config::default();
        let cases: &[(&str, Config, usize)] = &[
            ("", d.clone(), 0),
            ("# comment\n\n", d.clone(), 0),
            (
                "s4096\nn3\n",
                Config {
                    size: 4096,
                    keep: 3,
                    ..d.clone()
                },
                0,
            ),
            (
                "s100k",
                Config {
                    size: 102_400,
                    ..d.clone()
                },
                0,
            ),
            (
                "s2m",
                Config {
                    size: 2 << 20,
                    ..d.clone()
                },
                0,
            ),
            (
                "s0",
                Config {
                    size: 0,
                    ..d.clone()
                },
                0,
            ),
            (
                "N2\nn20",
                Config {
                    keep: 20,
                    keep_min: 2,
                    ..d.clone()
                },
                0,
            ),
            (
                "t2",
                Config {
                    age: Some(Duration::from_secs(2)),
                    ..d.clone()
                },
                0,
            ),
            (
                "t5m",
                Config {
                    age: Some(Duration::from_secs(300)),
                    ..d.clone()
                },
                0,
            ),
            (
                "t1h",
                Config {
                    age: Some(Duration::from_secs(3600)),
                    ..d.clone()
                },
                0,
            ),
            ("t0", d.clone(), 0),
            (
                "pINFO: ",
                Config {
                    prefix: b"INFO: ".to_vec(),
                    ..d.clone()
                },
                0,
            ),
            (
                "-*debug*\n+*debug keep*\ne*error*",
                Config {
                    rules: vec![
                        Rule {
                            action: b'-',
                            pattern: b"*debug*".to_vec(),
                        },
                        Rule {
                            action: b'+',
                            pattern: b"*debug keep*".to_vec(),
                        },
                        Rule {
                            action: b'e',
                            pattern: b"*error*".to_vec(),
                        },
                    ],
                    ..d.clone()
                },
                0,
            ),
            // Unreadable or unsupported lines keep the previous value and say why.
            (
                "s4096\nsfoo",
                Config {
                    size: 4096,
                    ..d.clone()
                },
                1,
            ),
            ("s 10", d.clone(), 1),
            ("s10x", d.clone(), 1),
            ("t5d", d.clone(), 1),
            ("n-1", d.clone(), 1),
            ("s99999999999999999999999", d.clone(), 1),
            ("!gzip\nu127.0.0.1:514\nU10.0.0.1\nx", d.clone(), 4),
        ];
        for (text, want, warnings) in cases {
            let (got, w) = Config::parse(text.as_bytes());
            assert_eq!(&got, want, "{text:?}");
            assert_eq!(w.len(), *warnings, "{text:?}: {w:?}");
        }
        let (_, w) = Config::parse(b"s4096\n\nsfoo\n");
        assert!(w[0].starts_with("line 3: "), "{w:?}");
    }

    #[test]
    fn patterns_match_like_runit() {
        // Each row was checked against runit 2.1.2's svlogd with a `-PATTERN` config line.
        let cases: &[(&str, &str, bool)] = &[
            ("*pid*", "tcpsvd: info: pid 1977 from 10.4.1.14", false),
            ("*: *: pid *", "tcpsvd: info: pid 1977 from 10.4.1.14", true),
            ("a+b", "abbb", true),
            ("a+bc", "abbb", true),
            ("a+bc", "abbbc", true),
            ("a+b", "a", false),
            ("a+bz", "ab", true),
            ("ab", "abc", false),
            ("abc", "ab", false),
            ("*", "", true),
            ("", "", true),
            ("", "x", false),
            ("x*", "x", true),
            ("*x", "abx", true),
            ("*x", "abxy", false),
            ("*x*", "abxy", true),
            ("a**b", "azzb", false),
            ("+a", "aaa", true),
            ("a+", "ab", false),
        ];
        for (p, s, want) in cases {
            assert_eq!(
                pattern_matches(p.as_bytes(), s.as_bytes()),
                *want,
                "{p:?} on {s:?}"
            );
        }
    }

    #[test]
    fn select_table() {
        let (c, _) = Config::parse(b"-*debug*\n+*debug keep*\ne*error*\nE*error ok*");
        let cases: &[(&str, (bool, bool))] = &[
            ("normal line", (true, false)),
            ("some debug noise", (false, false)),
            ("some debug keep this", (true, false)),
            ("an error here", (true, true)),
            ("an error ok", (true, false)),
        ];
        for (line, want) in cases {
            assert_eq!(c.select(line.as_bytes()), *want, "{line:?}");
        }
    }
}
