//! Turns a plan into file contents from the templates in `skel/`, quoting every value for the language it lands in. Pure: reads nothing from disk.

pub mod host;
pub mod quote;

use anyhow::{Context, Result};
use minijinja::value::Serde;
use minijinja::{Environment, ErrorKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use host::Host;
pub use quote::sh_quote;

use crate::config::Snippet;
use crate::ext::nginx;
use crate::layout::Layout;
use crate::plan::{Plan, Slot, NGINX};

/// The cookie nginx routes by: its value names the instance a browser is sent to.
pub const ROUTING_COOKIE: &str = "approuter_alt";

/// Which part of the running system a generated file belongs to, so whoever writes it knows who
/// must be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A file of a service directory (`run`, `log/run`).
    Service(String),
    Nginx,
    Crontab,
}

/// One alternate as the testers' page shows it; gathered by generate (checkouts, the
/// supervisor, a health check), so that rendering stays pure.
#[derive(Debug, Clone, Serialize)]
pub struct PickerRow {
    pub name: String,
    pub branch: String,
    pub commit: String,
    /// When its running process started (`2026-11-22 16:04:05 UTC`), or `not running`.
    pub deployed: String,
    pub healthy: bool,
}

/// A file to be placed under `managed/var`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub mode: u32,
    pub owner: Owner,
}

const TEMPLATES: &[(&str, &str)] = &[
    ("instance-run", include_str!("../../skel/instance-run")),
    ("log-run", include_str!("../../skel/log-run")),
    ("nginx-run", include_str!("../../skel/nginx-run")),
    ("nginx.conf", include_str!("../../skel/nginx.conf")),
    ("crontab", include_str!("../../skel/crontab")),
    (
        "systemd.service",
        include_str!("../../skel/systemd.service"),
    ),
    ("picker.html", include_str!("../../skel/picker.html")),
];

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("default delimiters are valid"),
    );
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_filter("sh", |s: String| sh_quote(&s));
    env.add_filter("systemd", |s: String| {
        quote::systemd_quote(&s)
            .map_err(|msg| minijinja::Error::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_filter("cron", |s: String| {
        quote::cron_quote(&s).map_err(|msg| minijinja::Error::new(ErrorKind::InvalidOperation, msg))
    });
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .expect("embedded template parses");
    }
    env
}

/// An alternate as nginx sees it: its name, port, and the name of its upstream.
#[derive(Serialize)]
struct AlternateRoute<'a> {
    name: &'a str,
    port: u16,
    upstream: String,
}

/// The upstream of an alternate: `<name>.alt` and 0 to 31 `_` (from its port, which is stable),
/// so that the upstreams' names differ in length and nginx's walk over them, which compares
/// lengths first, rarely compares a name.
fn alternate_upstream(name: &str, port: u16) -> String {
    format!("{name}.alt{}", "_".repeat(usize::from(port % 32)))
}

/// A production instance as nginx sees it: its port, the other instance's as its backup, and
/// the routing cookie's value (with the preview key) that reaches it by name.
#[derive(Serialize)]
struct Production<'a> {
    name: &'a str,
    port: u16,
    backup_port: u16,
    cookie: String,
}

fn path_str(p: &Path) -> Result<String> {
    p.to_str()
        .map(str::to_string)
        .with_context(|| format!("{}: path is not valid UTF-8", p.display()))
}

/// Renders every generated file of the plan; `preview_key` opens the production instances to
/// whoever holds it (see `state::preview_key`).
pub fn render(
    plan: &Plan,
    layout: &Layout,
    host: &Host,
    preview_key: &str,
) -> Result<Vec<OutFile>> {
    let env = environment();
    let exe = path_str(&host.exe)?;
    let mut out = Vec::new();
    let mut add =
        |path: PathBuf, name: &str, ctx: minijinja::Value, mode: u32, owner: Owner| -> Result<()> {
            out.push(OutFile {
                path,
                bytes: render_template(&env, name, ctx)?,
                mode,
                owner,
            });
            Ok(())
        };

    for inst in &plan.instances {
        add(
            layout.service_file(&inst.name, crate::supervise::servicedir::RUN),
            "instance-run",
            minijinja::context! {
                exe => exe.as_str(),
                root => path_str(layout.root())?,
                user => plan.settings.user.as_deref(),
                group => plan.settings.group.as_deref(),
                path => plan.settings.path.as_str(),
                lang => plan.settings.lang.as_str(),
                release_command => plan.settings.release_command.as_deref(),
                release_timeout => plan.settings.release_timeout_secs,
                name => inst.name.as_str(),
                role => inst.role.word(),
                port => inst.port,
                checkout => path_str(&layout.checkout(inst))?,
            },
            0o755,
            Owner::Service(inst.name.clone()),
        )?;
    }
    for name in plan.service_names() {
        add(
            layout.log_run(name),
            "log-run",
            minijinja::context! { logger => Serde(&host.logger), log_dir => path_str(&layout.log_dir(name))? },
            0o755,
            Owner::Service(name.to_string()),
        )?;
    }
    let nginx_args = nginx::invocation(&host.nginx_cmd, &layout.nginx_dir(), &layout.nginx_conf());
    add(
        layout.service_file(NGINX, crate::supervise::servicedir::RUN),
        "nginx-run",
        minijinja::context! {
            nginx_args => Serde(nginx_args),
            prefix => path_str(&layout.nginx_dir())?,
        },
        0o755,
        Owner::Service(NGINX.to_string()),
    )?;
    add(
        layout.crontab(),
        "crontab",
        minijinja::context! {
            exe => exe.as_str(),
            root => path_str(layout.root())?,
            crontab_path => path_str(&layout.crontab())?,
            sync_log => path_str(&layout.sync_log())?,
            reboot => !host.systemd_unit,
        },
        0o644,
        Owner::Crontab,
    )?;
    out.extend(render_nginx_with(&env, plan, layout, host, preview_key)?);
    Ok(out)
}

fn render_nginx_with(
    env: &Environment,
    plan: &Plan,
    layout: &Layout,
    host: &Host,
    preview_key: &str,
) -> Result<Vec<OutFile>> {
    let production: Vec<Production> = Slot::BOTH
        .iter()
        .map(|&s| Production {
            name: s.name(),
            port: plan.prod(s).port,
            backup_port: plan.prod(s.other()).port,
            cookie: crate::state::preview_cookie(s, preview_key),
        })
        .collect();
    let alternates: Vec<AlternateRoute> = plan
        .alternates()
        .map(|(i, _)| AlternateRoute {
            name: &i.name,
            port: i.port,
            upstream: alternate_upstream(&i.name, i.port),
        })
        .collect();
    let longest = alternates
        .iter()
        .map(|a| a.name.len())
        .chain(production.iter().map(|p| p.cookie.len()))
        .max()
        .unwrap_or(0);
    // Keys are up to "/set_alt_cookie_<value>.html" (or two addresses); nginx wants the bucket
    // to hold the longest key, and the table to be comfortably larger than the key count.
    let map_bucket_size = (longest + 32).next_power_of_two().max(64);
    let map_max_size = ((alternates.len() + 2) * 4).next_power_of_two().max(2048);
    let s = &plan.settings;
    let ctx = minijinja::context! {
        client_max_body_size => s.client_max_body_size.as_str(),
        proxy_read_timeout => s.proxy_read_timeout_secs,
        proxy_send_timeout => s.proxy_send_timeout_secs,
        keepalive_timeout => s.keepalive_timeout_secs,
        gzip => s.gzip,
        http_snippets => file_name(&layout.nginx_snippets("http")),
        picker_path => s.picker_path.as_deref(),
        picker_page => file_name(&layout.picker_page()),
        server_snippets => file_name(&layout.nginx_snippets("server")),
        worker_user => host.worker_user.clone(),
        worker_shutdown_timeout => s.worker_shutdown_timeout_secs,
        access_log => s.access_log,
        map_bucket_size => map_bucket_size,
        map_max_size => map_max_size,
        trusted_proxies => Serde(&s.trusted_proxies),
        forwarded_passed => Serde(forwarded_passed()),
        production => Serde(&production),
        alternates => Serde(&alternates),
        cookie => ROUTING_COOKIE,
        listen_port => s.listen_port,
        server_name => s.server_name.as_str(),
    };
    let mut out = vec![OutFile {
        path: layout.nginx_conf(),
        bytes: render_template(env, "nginx.conf", ctx)?,
        // It holds the preview key.
        mode: 0o600,
        owner: Owner::Nginx,
    }];
    for (level, snippets) in [
        ("http", &plan.snippets.http),
        ("server", &plan.snippets.server),
    ] {
        out.push(OutFile {
            path: layout.nginx_snippets(level),
            bytes: gather_snippets(snippets).into_bytes(),
            mode: 0o644,
            owner: Owner::Nginx,
        });
    }
    Ok(out)
}

/// A systemd unit running approuter for `root` (`None`: the template unit `approuter@.service`,
/// whose instance names the root), given the binary, whether its man pages are installed
/// (`systemd-analyze verify` checks what `Documentation=` names), how long a start may wait for
/// health and how long a shutdown may take.
pub fn systemd_unit(
    exe: &Path,
    root: Option<&Path>,
    man: bool,
    start_timeout: std::time::Duration,
    stop_timeout: std::time::Duration,
) -> Result<String> {
    let env = environment();
    let exe = quote::systemd_quote(&path_str(exe)?).map_err(|e| anyhow::anyhow!(e))?;
    let (root_arg, description) = match root {
        Some(r) => (
            quote::systemd_quote(&path_str(r)?).map_err(|e| anyhow::anyhow!(e))?,
            path_str(r)?.replace('%', "%%"),
        ),
        // %f: the instance name unescaped as a path.
        None => ("\"%f\"".to_string(), "%f".to_string()),
    };
    let ctx = minijinja::context! {
        template => root.is_none(),
        man => man,
        exe => exe,
        root => root_arg,
        description => description,
        // Clones and the release step can make a first start long; a minute more for nginx.
        start_timeout => start_timeout.as_secs() + 60,
        stop_timeout => stop_timeout.as_secs() + 10,
    };
    let bytes = render_template(&env, "systemd.service", ctx)?;
    Ok(String::from_utf8(bytes).expect("templates are UTF-8"))
}

/// The testers' page, for `picker_path` (written by generate's `refresh_picker`, not with the
/// rest: what it shows changes without the configuration changing).
pub fn picker_page(rows: &[PickerRow]) -> Result<Vec<u8>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    render_template(
        &environment(),
        "picker.html",
        minijinja::context! {
            rows => Serde(rows),
            generated => crate::util::tai64::utc_string(now),
        },
    )
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One level's snippets in one file, each after a line naming it. Every snippet starts on a
/// line of its own and ends with a newline, so [`snippet_line`] can tell where a line came from.
pub fn gather_snippets(snippets: &[Snippet]) -> String {
    let mut out =
        String::from("# Generated by approuter from managed/etc/nginx/*.d/*.conf; edit those.\n");
    for s in snippets {
        out.push_str(&format!("# {}\n", s.path.display()));
        out.push_str(&s.text);
        if !s.text.is_empty() && !s.text.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// The snippet file and line that line `line` (1-based) of [`gather_snippets`]'s output holds.
pub fn snippet_line(snippets: &[Snippet], line: usize) -> Option<(&Path, usize)> {
    let mut first = 2; // after the header, the first snippet's own header
    for s in snippets {
        let lines = s.text.lines().count();
        if line > first && line <= first + lines {
            return Some((&s.path, line - first));
        }
        first += lines + 1;
    }
    None
}

/// Headers by which a client could pass for another host, port, path or for HTTPS: passed on
/// only from a trusted proxy, removed otherwise. X-Forwarded-For and -Proto are rewritten
/// instead (the instances always get them).
const FORWARDED_PASSED: [&str; 11] = [
    "Forwarded",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "X-Forwarded-Ssl",
    "X-Forwarded-Prefix",
    "X-Forwarded-Scheme",
    "X-Forwarded-Protocol",
    "X-Url-Scheme",
    "Front-End-Https",
    "Client-IP",
    "True-Client-IP",
];

/// Each of them with the name of its nginx variable (`x_forwarded_host`).
fn forwarded_passed() -> Vec<BTreeMap<&'static str, String>> {
    FORWARDED_PASSED
        .iter()
        .map(|h| {
            BTreeMap::from([
                ("header", h.to_string()),
                ("var", h.to_ascii_lowercase().replace('-', "_")),
            ])
        })
        .collect()
}

fn render_template(env: &Environment, name: &str, ctx: minijinja::Value) -> Result<Vec<u8>> {
    let text = env
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .with_context(|| format!("rendering skel/{name}"))?;
    Ok(text.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Alternate, Config, Settings};
    use std::collections::BTreeSet;

    #[test]
    fn a_line_of_the_gathered_snippets_names_its_snippet() {
        let snip = |path: &str, text: &str| Snippet {
            path: path.into(),
            text: text.into(),
        };
        let snippets = [
            snip("a.conf", "one;\ntwo;\n"),
            snip("b.conf", "three;"),
            snip("c.conf", ""),
            snip("d.conf", "\nfive;\n"),
        ];
        let text = gather_snippets(&snippets);
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let n = n + 1;
            let want = match *line {
                "one;" => Some(("a.conf", 1)),
                "two;" => Some(("a.conf", 2)),
                "three;" => Some(("b.conf", 1)),
                "" => Some(("d.conf", 1)),
                "five;" => Some(("d.conf", 2)),
                _ => None,
            };
            let got = snippet_line(&snippets, n).map(|(p, l)| (p.to_str().unwrap(), l));
            assert_eq!(got, want, "line {n}: {line:?}\n{text}");
        }
        assert_eq!(lines.len(), 10, "{text}");
    }

    #[test]
    fn every_template_renders_for_a_plan() {
        let config = Config {
            repo: "/srv/app".into(),
            alternates: vec![Alternate {
                branch: "feature/x".into(),
                name: "feature-x".into(),
            }],
            prod_branch: None,
            settings: Settings::default(),
            snippets: Default::default(),
        };
        let plan = Plan::new(&config, &BTreeMap::new(), Slot::Instance1, &BTreeSet::new()).unwrap();
        let host = Host {
            exe: "/usr/bin/approuter".into(),
            logger: vec!["/usr/bin/approuter-svlogd".into()],
            nginx_cmd: vec!["/usr/sbin/nginx".into()],
            worker_user: None,
            systemd_unit: false,
        };
        let layout = Layout::new("/srv/ar");
        let files = render(&plan, &layout, &host, "0123456789abcdef0123456789abcdef").unwrap();
        let conf = files
            .iter()
            .find(|f| f.path == layout.nginx_conf())
            .map(|f| String::from_utf8_lossy(&f.bytes).into_owned())
            .unwrap();
        for want in [
            "upstream approuter_instance1 {",
            "server 127.0.0.1:9051 max_fails=0;",
            "server 127.0.0.1:9052 max_fails=0 backup;",
            "upstream feature-x.alt___ {",
            "\"feature-x\" feature-x.alt___;",
            "\"127.0.0.1:9052, 127.0.0.1:9051\" \"instance1\";",
            "if (-f active/instance2) {",
        ] {
            assert!(conf.contains(want), "{want} missing in:\n{conf}");
        }
        // Without trusted proxies, an nginx built without the realip module loads it too.
        assert!(
            !conf.contains("real_ip") && !conf.contains("$realip"),
            "{conf}"
        );
        let nginx_run = files
            .iter()
            .find(|f| f.path == layout.service_file(NGINX, "run"))
            .unwrap();
        let text = String::from_utf8_lossy(&nginx_run.bytes);
        assert!(
            text.contains("cd '/srv/ar/managed/var/nginx' || exit 111"),
            "{text}"
        );
        let log_run = files
            .iter()
            .find(|f| f.path == layout.log_run("feature-x"))
            .unwrap();
        assert!(String::from_utf8_lossy(&log_run.bytes).contains(
            "exec '/usr/bin/approuter-svlogd' -tt '/srv/ar/managed/var/log/feature-x'\n"
        ));
    }
}
