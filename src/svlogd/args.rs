//! The logger's command line, runit svlogd's: parsed here for both `approuter svlogd` and `approuter-svlogd`.

// Parsed with lexopt rather than clap: a logger runs per service, and clap's parser (its
// description of every argument, built at each start) left ~30 KiB dirty in each of them for
// their whole life; lexopt (ripgrep's parser) builds nothing.

use std::ffi::OsString;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: svlogd [-t|-tt|-ttt] [-v] [-l LEN] [-b BUFLEN] [-r C] [-R XYZ] [--wait-lock] DIR...

Append stdin to svlogd-style log directories, as runit's svlogd does.

  -t        timestamp lines: -t TAI64N (@4000..., for tai64nlocal),
            -tt UTC YYYY-MM-DD_HH:MM:SS.xxxxx, -ttt ISO 8601
  -v        say on stderr what is done to each directory (open, rotate, delete, close)
  -l LEN    line length: patterns see a line's first LEN bytes, and current is rotated after
            a line ending within LEN bytes of its size limit (default and 0: 1000)
  -b BUFLEN accepted for runit compatibility and ignored: buffers are sized automatically
  -r C      replace non-printable characters in lines with C
  -R XYZ    also replace these characters (with C, or _ without -r)
  --wait-lock
            when another logger holds a directory, wait for it (holding the newest input)
            rather than leave it out: for overlapping writers such as cron's syncs
  DIR...    log directories (they must exist); each gets every line its config selects
  -h, --help  this text;  -V, --version  the version
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub timestamps: u8,
    pub verbose: u8,
    pub len: usize,
    pub replace: Option<char>,
    pub replace_also: Option<String>,
    pub wait_lock: bool,
    pub dirs: Vec<PathBuf>,
}

/// What the command line asks for: a run, or a text to print (help, version) and exit 0.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(Args),
    Print(String),
}

/// Parses the arguments after the program name, as runit's svlogd takes them (`-tt`, `-tv`,
/// `-l100` and `-l 100` alike). The error is one line.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut a = Args {
        timestamps: 0,
        verbose: 0,
        len: 1000,
        replace: None,
        replace_also: None,
        wait_lock: false,
        dirs: Vec::new(),
    };
    let text = |v: OsString, what: &str| {
        v.into_string()
            .map_err(|v| format!("{what}: not UTF-8: {v:?}"))
    };
    let number = |v: OsString, what: &str| -> Result<usize, String> {
        let v = text(v, what)?;
        v.parse()
            .map_err(|_| format!("{what} must be a number of bytes, not {v:?}"))
    };
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('t') => a.timestamps = a.timestamps.saturating_add(1),
            Short('v') => a.verbose = a.verbose.saturating_add(1),
            Short('l') => a.len = number(p.value().map_err(|e| e.to_string())?, "-l")?,
            Short('b') => {
                number(p.value().map_err(|e| e.to_string())?, "-b")?;
            }
            Short('r') => {
                let v = text(p.value().map_err(|e| e.to_string())?, "-r")?;
                let mut chars = v.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => a.replace = Some(c),
                    _ => return Err(format!("-r takes one character, not {v:?}")),
                }
            }
            Short('R') => a.replace_also = Some(text(p.value().map_err(|e| e.to_string())?, "-R")?),
            Long("wait-lock") => a.wait_lock = true,
            Short('h') | Long("help") => return Ok(Parsed::Print(USAGE.into())),
            Short('V') | Long("version") => {
                return Ok(Parsed::Print(format!(
                    "svlogd (approuter {})\n",
                    env!("CARGO_PKG_VERSION")
                )))
            }
            Value(dir) => a.dirs.push(dir.into()),
            other => return Err(other.unexpected().to_string()),
        }
    }
    if a.dirs.is_empty() {
        return Err("no log directory given".into());
    }
    Ok(Parsed::Run(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Args, String> {
        match parse(args.iter().map(OsString::from))? {
            Parsed::Run(a) => Ok(a),
            Parsed::Print(t) => Err(format!("printed {t}")),
        }
    }

    #[test]
    fn options_as_runit_svlogd_takes_them() {
        let a = run(&[
            "-tt", "-v", "-l100", "-b", "2048", "-r", "#", "-R/:", "a", "b",
        ])
        .unwrap();
        assert_eq!(
            a,
            Args {
                timestamps: 2,
                verbose: 1,
                len: 100,
                replace: Some('#'),
                replace_also: Some("/:".into()),
                wait_lock: false,
                dirs: vec!["a".into(), "b".into()],
            }
        );
        assert_eq!(run(&["-t", "-tt", "d"]).unwrap().timestamps, 3);
        assert_eq!(run(&["-tv", "d"]).unwrap().verbose, 1);
        assert_eq!(run(&["-l", "0", "d"]).unwrap().len, 0);
        assert!(run(&["--wait-lock", "d"]).unwrap().wait_lock);
        assert_eq!(
            run(&["--", "-odd-dir"]).unwrap().dirs,
            vec![PathBuf::from("-odd-dir")]
        );
    }

    #[test]
    fn bad_command_lines_are_one_line_errors() {
        for (args, says) in [
            (&["-tt"][..], "no log directory given"),
            (&["-x", "d"][..], "invalid option '-x'"),
            (
                &["-l", "many", "d"][..],
                "-l must be a number of bytes, not \"many\"",
            ),
            (&["-r", "ab", "d"][..], "-r takes one character, not \"ab\""),
            (&["-l"][..], "missing argument for option '-l'"),
            (&["--nope", "d"][..], "invalid option '--nope'"),
        ] {
            let e = run(args).unwrap_err();
            assert_eq!(e, says, "{args:?}");
            assert!(!e.contains('\n'));
        }
        assert!(matches!(
            parse(["--help"].map(OsString::from)),
            Ok(Parsed::Print(t)) if t == USAGE
        ));
    }
}
