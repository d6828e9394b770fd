//! Quoting values for the languages generated files are written in: /bin/sh, crontab lines and systemd unit command lines.

/// Single-quotes a string for /bin/sh: nothing inside single quotes is special but the quote itself.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A value for a crontab command line: shell-quoted, with `%` escaped (cron turns a bare `%` into
/// a newline) and newlines refused (they would end the entry).
pub fn cron_quote(s: &str) -> Result<String, &'static str> {
    if s.contains(['\n', '\r']) {
        return Err("a newline cannot be written into a crontab line");
    }
    Ok(sh_quote(s).replace('%', r"\%"))
}

/// One word of a systemd `ExecStart=` line: double-quoted, with `\` and `"` escaped, `%`
/// doubled (a specifier otherwise) and `$` doubled (a variable otherwise); newlines refused.
pub fn systemd_quote(s: &str) -> Result<String, &'static str> {
    if s.contains(['\n', '\r']) {
        return Err("a newline cannot be written into a systemd unit");
    }
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
        .replace('$', "$$");
    Ok(format!("\"{escaped}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$(x) `y`"), "'$(x) `y`'");
        assert_eq!(cron_quote("50% off").unwrap(), r"'50\% off'");
        assert!(cron_quote("a\nb").is_err());
        assert_eq!(systemd_quote("/srv/my app").unwrap(), "\"/srv/my app\"");
        assert_eq!(
            systemd_quote(r#"/a"b\c%d$e"#).unwrap(),
            r#""/a\"b\\c%%d$$e""#
        );
        assert!(systemd_quote("a\nb").is_err());
    }
}
