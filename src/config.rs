//! The operator's configuration under `managed/etc/`: reading it, and refusing what is wrong with the file and line named.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::layout::Layout;
use crate::plan::RESERVED_NAMES;
use crate::util::file::read_optional;

pub const REPO_CONF: &str = "repo.conf";
pub const ALTERNATES_CONF: &str = "alternates.conf";
pub const PROD_BRANCH: &str = "prod_branch";
pub const SETTINGS_TOML: &str = "approuter.toml";
/// Directories of nginx snippets under `managed/etc/`, included at the `http` and `server` levels.
pub const HTTP_SNIPPETS: &str = "nginx/http.d";
pub const SERVER_SNIPPETS: &str = "nginx/server.d";

/// Longest instance name accepted: it becomes a directory, a cookie value and an nginx map key.
pub const MAX_NAME_LEN: usize = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub repo: String,
    pub alternates: Vec<Alternate>,
    pub prod_branch: Option<String>,
    pub settings: Settings,
    pub snippets: Snippets,
}

/// nginx configuration the operator adds without rebuilding: every `*.conf` of
/// `managed/etc/nginx/http.d/` (in the `http` block) and `server.d/` (in the `server` block),
/// each level's files in name order. Checked with `nginx -t` with the rest before any reload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snippets {
    pub http: Vec<Snippet>,
    pub server: Vec<Snippet>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snippet {
    pub path: PathBuf,
    pub text: String,
}

/// One line of `alternates.conf`: the branch and the instance name it runs under.
#[derive(Debug, Clone, PartialEq)]
pub struct Alternate {
    pub branch: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub listen_port: u16,
    pub prod_ports: [u16; 2],
    pub alternate_base_port: u16,
    pub health_path: String,
    pub health_timeout_secs: u64,
    pub server_name: String,
    /// How long a service gets between TERM and KILL when it is stopped.
    pub stop_grace_secs: u64,
    /// nginx's `worker_shutdown_timeout`: how long old workers may hold connections after a reload.
    pub worker_shutdown_timeout_secs: u64,
    /// Send nginx's access log through its logger to `managed/var/log/nginx/current`.
    pub access_log: bool,
    /// The nginx binary; found on PATH or in the sbin directories when not set.
    pub nginx: Option<PathBuf>,
    /// The user instances (and their `./start`) run as; unset: the user approuter runs as.
    pub user: Option<String>,
    /// Their group; unset: the user's primary group.
    pub group: Option<String>,
    /// Instances' `PATH`, whoever starts the supervisor (a shell, cron, boot).
    pub path: String,
    /// Instances' `LANG`.
    pub lang: String,
    /// Addresses (or networks, `10.0.0.0/8`) of proxies in front of approuter whose
    /// X-Forwarded-For and X-Forwarded-Proto are believed; anyone else's are replaced.
    pub trusted_proxies: Vec<String>,
    /// How long a hook may run before it is killed, with every process it started.
    pub hook_timeout_secs: u64,
    /// nginx's `client_max_body_size`: the largest request body (`50m`; `0`: no limit).
    pub client_max_body_size: String,
    /// How long nginx waits for an instance to send (read timeout) or take (send timeout) the
    /// next bytes of an answer or a body; an upgraded connection (WebSocket) idle that long is
    /// closed.
    pub proxy_read_timeout_secs: u64,
    pub proxy_send_timeout_secs: u64,
    /// How long an idle client connection is kept open.
    pub keepalive_timeout_secs: u64,
    /// Compress text answers (HTML, CSS, JavaScript, JSON, XML, SVG) for clients that accept it.
    pub gzip: bool,
    /// Run once per commit in each checkout, before its instance starts (install dependencies,
    /// build assets, migrate): a shell command line, run by `sh -c` in the checkout as the
    /// instance's user with its environment.
    pub release_command: Option<String>,
    /// How long the release command may run before it is killed and the start fails.
    pub release_timeout_secs: u64,
    /// Where nginx serves the page listing the alternates for testers (`/approuter/alternates`);
    /// unset: no page.
    pub picker_path: Option<String>,
}

impl Settings {
    /// How long an instance may take from its start until it answers its health path: with a
    /// release command, the release's time limit on top of the health timeout.
    pub fn start_timeout(&self) -> std::time::Duration {
        let release = if self.release_command.is_some() {
            self.release_timeout_secs
        } else {
            0
        };
        std::time::Duration::from_secs(self.health_timeout_secs + release)
    }
}

/// The `PATH` instances get unless `path` says otherwise: the system's, as Debian's login sets it.
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            listen_port: 9090,
            prod_ports: [9051, 9052],
            alternate_base_port: 10051,
            health_path: "/diagnostic".into(),
            health_timeout_secs: 60,
            server_name: "_".into(),
            stop_grace_secs: 10,
            worker_shutdown_timeout_secs: 60,
            access_log: true,
            nginx: None,
            user: None,
            group: None,
            path: SYSTEM_PATH.into(),
            lang: "C.UTF-8".into(),
            trusted_proxies: Vec::new(),
            hook_timeout_secs: 30,
            client_max_body_size: "50m".into(),
            proxy_read_timeout_secs: 240,
            proxy_send_timeout_secs: 240,
            keepalive_timeout_secs: 75,
            gzip: true,
            release_command: None,
            release_timeout_secs: 600,
            picker_path: None,
        }
    }
}

impl Config {
    /// Reads every configuration file; the first problem found is the error.
    pub fn load(layout: &Layout) -> Result<Config> {
        let repo_path = layout.etc_file(REPO_CONF);
        let repo_text = read_optional(&repo_path)?.with_context(|| {
            format!(
                "{}: missing; write the application's git URL or path in it (or run `approuter init --repo URL`)",
                repo_path.display()
            )
        })?;
        let repo = parse_repo(&repo_path, &repo_text)?;

        let alt_path = layout.etc_file(ALTERNATES_CONF);
        let alternates = match read_optional(&alt_path)? {
            Some(text) => parse_alternates(&alt_path, &text)?,
            None => Vec::new(),
        };

        let prod_path = layout.etc_file(PROD_BRANCH);
        let prod_branch = match read_optional(&prod_path)? {
            Some(text) => parse_prod_branch(&prod_path, &text)?,
            None => None,
        };

        let settings_path = layout.etc_file(SETTINGS_TOML);
        let settings = match read_optional(&settings_path)? {
            Some(text) => parse_settings(&settings_path, &text)?,
            None => Settings::default(),
        };

        // The instances' environment files are read at each start of an instance; a mistake in
        // one is refused here first, where the operator sees it.
        for path in crate::envfile::all_files(layout)? {
            crate::envfile::read(&path)?;
        }

        let snippets = Snippets {
            http: read_snippets(&layout.etc_file(HTTP_SNIPPETS))?,
            server: read_snippets(&layout.etc_file(SERVER_SNIPPETS))?,
        };

        Ok(Config {
            repo,
            alternates,
            prod_branch,
            settings,
            snippets,
        })
    }
}

/// Every `*.conf` file of `dir`, by name; none when the directory does not exist.
fn read_snippets(dir: &Path) -> Result<Vec<Snippet>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot list", dir.display())),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: cannot list", dir.display()))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "conf") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "{}: cannot read (an nginx snippet must be UTF-8 text)",
                    path.display()
                )
            })?;
            Ok(Snippet { path, text })
        })
        .collect()
}

/// The meaningful lines of a line-based file: (line number, text), comments and blanks dropped,
/// CRLF and surrounding spaces tolerated.
fn content_lines(text: &str, inline_comments: bool) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(move |(i, line)| {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = if inline_comments {
            line.split('#').next().unwrap_or("")
        } else if line.trim_start().starts_with('#') {
            ""
        } else {
            line
        };
        let line = line.trim();
        (!line.is_empty()).then_some((i + 1, line))
    })
}

pub fn parse_repo(path: &Path, text: &str) -> Result<String> {
    let lines: Vec<_> = content_lines(text, false).collect();
    match lines.as_slice() {
        [] => bail!(
            "{}: empty; write the application's git URL or local path on one line",
            path.display()
        ),
        [(line, url)] => {
            check_repo_url(url)
                .map_err(|msg| anyhow::anyhow!("{}:{line}: {msg}", path.display()))?;
            Ok(url.to_string())
        }
        [_, (line, _), ..] => bail!(
            "{}:{line}: a second repository; repo.conf holds exactly one git URL or path",
            path.display()
        ),
    }
}

/// Refuses URLs that would make git run a command or read an option, and anything not one line
/// of printable text.
pub fn check_repo_url(url: &str) -> std::result::Result<(), String> {
    if url.chars().any(|c| c.is_control()) {
        return Err("the repository URL contains a control character".into());
    }
    if url.starts_with('-') {
        return Err(format!("`{url}` starts with '-'; write a URL or a path"));
    }
    // git's `<transport>::<address>` syntax (ext::, fd::, ...) runs helpers or commands.
    if let Some((transport, _)) = url.split_once("::") {
        if !transport.contains('/') {
            return Err(format!(
                "`{transport}::` transports are refused: they can run commands; use a path, file://, https://, ssh:// or git@host:path"
            ));
        }
    }
    if let Some((scheme, _)) = url.split_once("://") {
        let known = ["file", "https", "http", "ssh", "git", "git+ssh", "ssh+git"];
        if !known.contains(&scheme.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "unsupported URL scheme `{scheme}://`; use a path, file://, https://, ssh:// or git@host:path"
            ));
        }
    }
    Ok(())
}

pub fn parse_alternates(path: &Path, text: &str) -> Result<Vec<Alternate>> {
    let mut out: Vec<Alternate> = Vec::new();
    // Keyed by lowercase name: nginx's map and case-insensitive filesystems would merge them.
    let mut seen: HashMap<String, (usize, String)> = HashMap::new();
    for (line, branch) in content_lines(text, true) {
        let name = instance_name(branch)
            .map_err(|msg| anyhow::anyhow!("{}:{line}: {msg}", path.display()))?;
        if let Some((first, other)) = seen.get(&name.to_ascii_lowercase()) {
            if other == branch {
                bail!("{}:{line}: branch `{branch}` is listed twice (first on line {first}); remove one", path.display());
            }
            bail!(
                "{}:{line}: branch `{branch}` runs as instance `{name}`, which line {first} (`{other}`) already uses; rename one of the branches",
                path.display()
            );
        }
        seen.insert(name.to_ascii_lowercase(), (line, branch.to_string()));
        out.push(Alternate {
            branch: branch.to_string(),
            name,
        });
    }
    Ok(out)
}

pub fn parse_prod_branch(path: &Path, text: &str) -> Result<Option<String>> {
    let lines: Vec<_> = content_lines(text, true).collect();
    match lines.as_slice() {
        [] => Ok(None),
        [(line, branch)] => {
            check_branch(branch)
                .map_err(|msg| anyhow::anyhow!("{}:{line}: {msg}", path.display()))?;
            Ok(Some(branch.to_string()))
        }
        [_, (line, _), ..] => bail!(
            "{}:{line}: a second branch; prod_branch holds one branch name",
            path.display()
        ),
    }
}

/// Checks a branch name against the characters approuter lets through to paths, nginx, cookies
/// and shell scripts, and against git's own rules.
pub fn check_branch(branch: &str) -> std::result::Result<(), String> {
    if let Some(c) = branch
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-')))
    {
        return Err(format!(
            "branch `{}` contains {c:?}; branch names may use only letters, digits and . _ / -",
            branch.escape_debug()
        ));
    }
    if branch.starts_with(['.', '-', '/']) {
        return Err(format!(
            "branch `{branch}` starts with {:?}; start it with a letter or digit",
            &branch[..1]
        ));
    }
    if branch.contains("..") {
        return Err(format!(
            "branch `{branch}` contains `..`, which git and approuter refuse"
        ));
    }
    if branch.contains("//")
        || branch.ends_with('/')
        || branch.contains("/.")
        || branch.contains("/-")
    {
        return Err(format!(
            "branch `{branch}` has an empty path component or one starting with '.' or '-'"
        ));
    }
    if branch.ends_with('.') || branch.ends_with(".lock") {
        return Err(format!(
            "branch `{branch}` ends with `.` or `.lock`, which git refuses"
        ));
    }
    Ok(())
}

/// The instance name a branch runs under: `/` becomes `-`.
pub fn instance_name(branch: &str) -> std::result::Result<String, String> {
    check_branch(branch)?;
    let name = branch.replace('/', "-");
    if RESERVED_NAMES.contains(&name.as_str()) {
        return Err(format!(
            "`{name}` is reserved for approuter's own services ({}); run that branch under another name",
            RESERVED_NAMES.join(", ")
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "branch `{branch}` is {} characters long; at most {MAX_NAME_LEN} are accepted",
            name.len()
        ));
    }
    Ok(name)
}

pub fn parse_settings(path: &Path, text: &str) -> Result<Settings> {
    let settings: Settings = toml::from_str(text).map_err(|e| {
        let (line, key) = e
            .span()
            .map(|span| locate(text, span.start))
            .unwrap_or((0, None));
        let msg = e.message().trim().replace('\n', " ");
        match (line, key) {
            (0, _) => anyhow::anyhow!("{}: {msg}", path.display()),
            (line, Some(key)) if !msg.contains(&format!("`{key}`")) => {
                anyhow::anyhow!("{}:{line}: key `{key}`: {msg}", path.display())
            }
            (line, _) => anyhow::anyhow!("{}:{line}: {msg}", path.display()),
        }
    })?;
    check_settings(&settings).map_err(|(key, msg)| {
        let line = key_line(text, key);
        match line {
            Some(line) => anyhow::anyhow!("{}:{line}: key `{key}`: {msg}", path.display()),
            None => anyhow::anyhow!("{}: key `{key}`: {msg}", path.display()),
        }
    })?;
    Ok(settings)
}

/// Line number (1-based) of a byte offset, and the key assigned on that line, if any.
fn locate(text: &str, offset: usize) -> (usize, Option<String>) {
    let offset = offset.min(text.len());
    let line_no = text[..offset].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('#'));
    (line_no, key)
}

fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines().enumerate().find_map(|(i, line)| {
        let (k, _) = line.split_once('=')?;
        (k.trim().trim_matches('"') == key).then_some(i + 1)
    })
}

/// `192.0.2.1`, `10.0.0.0/8`, `::1`, `2001:db8::/32`: what nginx's realip and geo accept.
fn is_address_or_network(text: &str) -> bool {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    len.is_none_or(|l| l.parse::<u8>().is_ok_and(|l| l <= max) && !l.starts_with('+'))
}

/// A size as nginx reads it: digits, then at most one of k, m, g (either case).
fn is_nginx_size(text: &str) -> bool {
    let digits = text.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
    text.len() - digits.len() <= 1
        && !digits.is_empty()
        && digits.len() <= 12
        && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Semantic checks that serde cannot express; each names the key at fault.
fn check_settings(s: &Settings) -> std::result::Result<(), (&'static str, String)> {
    if s.listen_port == 0 {
        return Err(("listen_port", "must be a port from 1 to 65535".into()));
    }
    if s.prod_ports.contains(&0) {
        return Err(("prod_ports", "ports must be from 1 to 65535".into()));
    }
    if s.prod_ports[0] == s.prod_ports[1] {
        return Err((
            "prod_ports",
            "instance1 and instance2 need two different ports".into(),
        ));
    }
    if s.prod_ports.contains(&s.listen_port) {
        return Err((
            "prod_ports",
            format!("port {} is also listen_port", s.listen_port),
        ));
    }
    if s.alternate_base_port == 0 {
        return Err((
            "alternate_base_port",
            "must be a port from 1 to 65535".into(),
        ));
    }
    if !s.health_path.starts_with('/') || s.health_path.chars().any(|c| !c.is_ascii_graphic()) {
        return Err((
            "health_path",
            "must be a URL path starting with '/', without spaces or control characters".into(),
        ));
    }
    if s.hook_timeout_secs == 0 {
        return Err(("hook_timeout_secs", "must be at least 1".into()));
    }
    for (key, v) in [
        ("proxy_read_timeout_secs", s.proxy_read_timeout_secs),
        ("proxy_send_timeout_secs", s.proxy_send_timeout_secs),
        ("keepalive_timeout_secs", s.keepalive_timeout_secs),
    ] {
        if v == 0 {
            return Err((key, "must be at least 1".into()));
        }
    }
    if let Some(p) = &s.picker_path {
        let plain = p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_.-".contains(c));
        if !p.starts_with('/') || p.len() < 2 || !plain {
            return Err((
                "picker_path",
                "must be a URL path such as \"/approuter/alternates\": '/' then letters, digits and / _ . - only".into(),
            ));
        }
        if p.starts_with("/set_alt_cookie_")
            || p.starts_with("/remove_alt_cookie_")
            || *p == s.health_path
        {
            return Err((
                "picker_path",
                "must not be a cookie page or the health path; choose another path".into(),
            ));
        }
    }
    if s.release_timeout_secs == 0 {
        return Err(("release_timeout_secs", "must be at least 1".into()));
    }
    if let Some(cmd) = &s.release_command {
        if cmd.trim().is_empty() || cmd.chars().any(|c| c.is_control()) {
            return Err((
                "release_command",
                "must be one line of shell, e.g. \"./release\" (leave the key out for none)".into(),
            ));
        }
    }
    if !is_nginx_size(&s.client_max_body_size) {
        return Err((
            "client_max_body_size",
            format!(
                "`{}` is not a size: write a number of bytes with an optional k, m or g (\"50m\"), or \"0\" for no limit",
                s.client_max_body_size
            ),
        ));
    }
    if s.health_timeout_secs == 0 {
        return Err(("health_timeout_secs", "must be at least 1".into()));
    }
    let names: Vec<&str> = s.server_name.split_whitespace().collect();
    if names.is_empty()
        || names.iter().any(|n| {
            !n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*'))
        })
    {
        return Err((
            "server_name",
            "must be host names separated by spaces (letters, digits, . - _ *), or \"_\"".into(),
        ));
    }
    let name_ok = |n: &str| {
        !n.is_empty()
            && !n.starts_with('-')
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    if s.user.as_deref().is_some_and(|u| !name_ok(u)) {
        return Err((
            "user",
            "must be a user name (letters, digits, _ - .)".into(),
        ));
    }
    if s.group.as_deref().is_some_and(|g| !name_ok(g)) {
        return Err((
            "group",
            "must be a group name (letters, digits, _ - .)".into(),
        ));
    }
    if s.group.is_some() && s.user.is_none() {
        return Err(("group", "needs `user` too".into()));
    }
    if s.path.is_empty() || s.path.split(':').any(|d| !d.starts_with('/')) || s.path.contains('\0')
    {
        return Err((
            "path",
            "must be absolute directories separated by `:`".into(),
        ));
    }
    if s.lang.is_empty() || s.lang.chars().any(|c| c.is_control() || c == ' ') {
        return Err(("lang", "must be a locale name such as C.UTF-8".into()));
    }
    if let Some(bad) = s.trusted_proxies.iter().find(|p| !is_address_or_network(p)) {
        return Err((
            "trusted_proxies",
            format!("`{bad}` is not an IP address or a network such as 10.0.0.0/8"),
        ));
    }
    if let Some(nginx) = &s.nginx {
        if !nginx.is_absolute() {
            return Err((
                "nginx",
                "must be an absolute path to the nginx binary".into(),
            ));
        }
    }
    Ok(())
}

/// The files `approuter init` writes, as text; they are parsed back before anything is written.
pub fn initial_files(
    repo: &str,
    alternates: &[String],
    prod_branch: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut files = vec![(
        REPO_CONF,
        format!("# The application's git repository: a URL or a local path.\n{repo}\n"),
    )];
    let mut alt = String::from(
        "# One branch per line; each runs as an alternate instance named after it ('/' becomes '-').\n",
    );
    for a in alternates {
        alt.push_str(a);
        alt.push('\n');
    }
    files.push((ALTERNATES_CONF, alt));
    if let Some(b) = prod_branch {
        files.push((
            PROD_BRANCH,
            format!(
                "# The production branch (without this file: the remote's default branch).\n{b}\n"
            ),
        ));
    }
    let d = Settings::default();
    files.push((
        SETTINGS_TOML,
        format!(
            "# approuter settings; every key is optional and shows its default. See docs/configuration.md.\n\
             # listen_port = {}\n\
             # prod_ports = [{}, {}]\n\
             # alternate_base_port = {}\n\
             # health_path = \"{}\"\n\
             # health_timeout_secs = {}\n\
             # server_name = \"{}\"\n\
             # stop_grace_secs = {}\n\
             # worker_shutdown_timeout_secs = {}\n\
             # access_log = {}\n\
             # nginx = \"/usr/sbin/nginx\"\n\
             # user = \"app\"          # the user instances run as (recommended when approuter runs as root)\n\
             # group = \"app\"\n\
             # path = \"{}\"\n\
             # lang = \"{}\"\n\
             # trusted_proxies = [\"127.0.0.1\"]   # proxies whose X-Forwarded-For/-Proto are believed\n\
             # hook_timeout_secs = {}\n\
             # client_max_body_size = \"{}\"   # the largest request body nginx takes\n\
             # proxy_read_timeout_secs = {}   # a slow answer, an idle WebSocket\n\
             # proxy_send_timeout_secs = {}\n\
             # keepalive_timeout_secs = {}\n\
             # gzip = {}\n\
             # release_command = \"./release\"   # once per commit in each checkout, before it starts\n\
             # release_timeout_secs = {}\n\
             # picker_path = \"/approuter/alternates\"   # a page where testers pick an alternate\n",
            d.listen_port,
            d.prod_ports[0],
            d.prod_ports[1],
            d.alternate_base_port,
            d.health_path,
            d.health_timeout_secs,
            d.server_name,
            d.stop_grace_secs,
            d.worker_shutdown_timeout_secs,
            d.access_log,
            d.path,
            d.lang,
            d.hook_timeout_secs,
            d.client_max_body_size,
            d.proxy_read_timeout_secs,
            d.proxy_send_timeout_secs,
            d.keepalive_timeout_secs,
            d.gzip,
            d.release_timeout_secs,
        ),
    ));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("etc/alternates.conf")
    }

    #[test]
    fn instance_names() {
        let table: &[(&str, Result<&str, &str>)] = &[
            ("beta", Ok("beta")),
            ("feature/x", Ok("feature-x")),
            ("release-1.2_rc", Ok("release-1.2_rc")),
            ("a/b/c", Ok("a-b-c")),
            ("feat ure", Err("contains ' '")),
            ("x;rm", Err("contains ';'")),
            ("a$b", Err("contains '$'")),
            ("quote\"", Err("contains '\"'")),
            ("new\nline", Err("contains '\\n'")),
            (".hidden", Err("starts with \".\"")),
            ("-opt", Err("starts with \"-\"")),
            ("/abs", Err("starts with \"/\"")),
            ("a..b", Err("contains `..`")),
            ("a//b", Err("empty path component")),
            ("a/", Err("empty path component")),
            ("a/.b", Err("starting with '.'")),
            ("a.lock", Err("`.lock`")),
            ("a.", Err("ends with `.`")),
            ("nginx", Err("reserved")),
            ("instance1", Err("reserved")),
            ("sync", Err("reserved")),
            ("svscan", Err("reserved")),
            ("instance2", Err("reserved")),
            ("ünï", Err("contains 'ü'")),
        ];
        for (branch, want) in table {
            let got = instance_name(branch);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(w, g, "{branch}"),
                (Err(w), Err(g)) => assert!(g.contains(w), "{branch}: {g:?} lacks {w:?}"),
                _ => panic!("{branch}: want {want:?}, got {got:?}"),
            }
        }
        assert!(instance_name(&"a".repeat(MAX_NAME_LEN)).is_ok());
        assert!(instance_name(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn alternates_file() {
        let text = "# comment\r\nbeta\r\n\n  feature/x   \ngamma # trailing comment\n";
        let alts = parse_alternates(p(), text).unwrap();
        let names: Vec<_> = alts
            .iter()
            .map(|a| (a.branch.as_str(), a.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("beta", "beta"),
                ("feature/x", "feature-x"),
                ("gamma", "gamma")
            ]
        );
    }

    #[test]
    fn alternates_refusals_name_the_line() {
        let cases = [
            (
                "beta\nfeature/x\nfeature-x\n",
                "alternates.conf:3:",
                "line 2",
            ),
            ("beta\nbeta\n", "alternates.conf:2:", "listed twice"),
            ("Beta\nbeta\n", "alternates.conf:2:", "line 1"),
            ("ok\n\nbad name\n", "alternates.conf:3:", "contains ' '"),
            ("nginx\n", "alternates.conf:1:", "reserved"),
        ];
        for (text, loc, what) in cases {
            let err = parse_alternates(p(), text).unwrap_err().to_string();
            assert!(err.contains(loc) && err.contains(what), "{text:?}: {err}");
        }
    }

    #[test]
    fn repo_file() {
        let path = Path::new("repo.conf");
        assert_eq!(
            parse_repo(path, "# x\n/srv/app.git\n").unwrap(),
            "/srv/app.git"
        );
        assert_eq!(
            parse_repo(path, "git@github.com:me/app.git\r\n").unwrap(),
            "git@github.com:me/app.git"
        );
        for (text, want) in [
            ("", "empty"),
            ("# only\n\n", "empty"),
            ("a\nb\n", "repo.conf:2:"),
            ("ext::sh -c evil\n", "refused"),
            ("fd::3\n", "refused"),
            ("-uevil\n", "starts with '-'"),
            ("gopher://x/y\n", "unsupported URL scheme"),
        ] {
            let err = parse_repo(path, text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn settings_defaults_and_refusals() {
        let path = Path::new("approuter.toml");
        assert_eq!(parse_settings(path, "").unwrap(), Settings::default());
        let s = parse_settings(path, "listen_port = 8080\nprod_ports = [1, 2]\n").unwrap();
        assert_eq!((s.listen_port, s.prod_ports), (8080, [1, 2]));
        let s = parse_settings(
            path,
            "trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"2001:db8::/32\", \"::1\"]\n",
        )
        .unwrap();
        assert_eq!(s.trusted_proxies.len(), 4);
        let s = parse_settings(
            path,
            "client_max_body_size = \"0\"\nproxy_read_timeout_secs = 3600\ngzip = false\n",
        )
        .unwrap();
        assert_eq!(
            (
                s.client_max_body_size.as_str(),
                s.proxy_read_timeout_secs,
                s.gzip
            ),
            ("0", 3600, false)
        );
        for ok in ["1", "50m", "2G", "512k", "1024"] {
            assert!(is_nginx_size(ok), "{ok}");
        }
        for (text, want) in [
            (
                "listen_prot = 1\n",
                "approuter.toml:1: unknown field `listen_prot`",
            ),
            (
                "\nlisten_port = \"x\"\n",
                "approuter.toml:2: key `listen_port`",
            ),
            ("listen_port = 70000\n", "key `listen_port`"),
            (
                "prod_ports = [1, 1]\n",
                "approuter.toml:1: key `prod_ports`",
            ),
            ("prod_ports = [9090, 1]\n", "also listen_port"),
            ("health_path = \"diag\"\n", "key `health_path`"),
            ("server_name = \"a;b\"\n", "key `server_name`"),
            ("nginx = \"nginx\"\n", "key `nginx`"),
            (
                "trusted_proxies = [\"10.0.0.0/8\", \"10.0.0.1;\"]\n",
                "approuter.toml:1: key `trusted_proxies`: `10.0.0.1;` is not an IP address",
            ),
            (
                "trusted_proxies = [\"10.0.0.0/33\"]\n",
                "key `trusted_proxies`",
            ),
            ("trusted_proxies = [\"all\"]\n", "key `trusted_proxies`"),
            (
                "\nclient_max_body_size = \"50 MB\"\n",
                "approuter.toml:2: key `client_max_body_size`: `50 MB` is not a size",
            ),
            ("client_max_body_size = 50\n", "key `client_max_body_size`"),
            ("client_max_body_size = \"1mk\"\n", "is not a size"),
            (
                "proxy_read_timeout_secs = 0\n",
                "key `proxy_read_timeout_secs`: must be at least 1",
            ),
            (
                "keepalive_timeout_secs = -1\n",
                "key `keepalive_timeout_secs`",
            ),
            ("gzip = \"yes\"\n", "key `gzip`"),
            (
                "release_command = \"\"\n",
                "approuter.toml:1: key `release_command`: must be one line of shell",
            ),
            ("release_timeout_secs = 0\n", "key `release_timeout_secs`"),
            (
                "picker_path = \"alternates\"\n",
                "key `picker_path`: must be a URL path",
            ),
            ("picker_path = \"/a b\"\n", "key `picker_path`"),
            ("picker_path = \"/x;\"\n", "key `picker_path`"),
            (
                "picker_path = \"/set_alt_cookie_x.html\"\n",
                "key `picker_path`: must not be a cookie page",
            ),
        ] {
            let err = parse_settings(path, text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
    }

    #[test]
    fn initial_files_parse_back() {
        let files = initial_files(
            "/srv/app",
            &["beta".into(), "feature/x".into()],
            Some("main"),
        );
        for (name, text) in files {
            let path = Path::new(name);
            match name {
                REPO_CONF => assert_eq!(parse_repo(path, &text).unwrap(), "/srv/app"),
                ALTERNATES_CONF => assert_eq!(parse_alternates(path, &text).unwrap().len(), 2),
                PROD_BRANCH => assert_eq!(
                    parse_prod_branch(path, &text).unwrap().as_deref(),
                    Some("main")
                ),
                SETTINGS_TOML => {
                    assert_eq!(parse_settings(path, &text).unwrap(), Settings::default())
                }
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn shipped_examples_parse() {
        let dir = Path::new("managed/examples");
        parse_repo(
            &dir.join(REPO_CONF),
            include_str!("../managed/examples/repo.conf"),
        )
        .unwrap();
        let alts = parse_alternates(
            &dir.join(ALTERNATES_CONF),
            include_str!("../managed/examples/alternates.conf"),
        )
        .unwrap();
        assert_eq!(alts[1].name, "feature-new-checkout");
        parse_prod_branch(
            &dir.join(PROD_BRANCH),
            include_str!("../managed/examples/prod_branch"),
        )
        .unwrap();
        let s = parse_settings(
            &dir.join(SETTINGS_TOML),
            include_str!("../managed/examples/approuter.toml"),
        )
        .unwrap();
        assert_eq!(s, Settings::default(), "the example shows the defaults");
    }
}
