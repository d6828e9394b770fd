//! Turns a plan into file contents from the templates in `skel/`, quoting every value for the language it lands in.

use anyhow::{Context, Result};
use minijinja::value::Serde;
use minijinja::{Environment, ErrorKind};
use serde::Serialize;
use std::path::{Path, PathBuf};

use crate::layout::Layout;
use crate::plan::{Plan, Role, NGINX};
use crate::state;

/// A file to be placed under `managed/var`, relative to it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutFile {
    pub rel: PathBuf,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

/// What the running system needs from outside the plan: where things are installed.
#[derive(Debug, Clone)]
pub struct Host {
    /// This binary, by absolute path: cron's PATH is bare and run scripts exec it.
    pub exe: PathBuf,
    /// The nginx command line up to, not including, `-p`: the binary and options that depend on its version.
    pub nginx_cmd: Vec<String>,
    /// The user nginx's workers run as, when nginx starts as root.
    pub worker_user: Option<String>,
}

const TEMPLATES: &[(&str, &str)] = &[
    ("instance-run", include_str!("../skel/instance-run")),
    ("log-run", include_str!("../skel/log-run")),
    ("nginx-run", include_str!("../skel/nginx-run")),
    ("nginx.conf", include_str!("../skel/nginx.conf")),
    ("active.conf", include_str!("../skel/active.conf")),
    ("crontab", include_str!("../skel/crontab")),
];

/// Single-quotes a string for /bin/sh: nothing inside single quotes is special but the quote itself.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A value for a crontab command line: shell-quoted, with `%` escaped (cron turns a bare `%` into
/// a newline) and newlines refused (they would end the entry).
fn cron_quote(s: &str) -> std::result::Result<String, minijinja::Error> {
    if s.contains(['\n', '\r']) {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "a newline cannot be written into a crontab line",
        ));
    }
    Ok(sh_quote(s).replace('%', r"\%"))
}

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
    env.add_filter("cron", |s: String| cron_quote(&s));
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .expect("embedded template parses");
    }
    env
}

#[derive(Serialize)]
struct Route<'a> {
    name: &'a str,
    port: u16,
}

fn path_str(p: &Path) -> Result<String> {
    p.to_str()
        .map(str::to_string)
        .with_context(|| format!("{}: path is not valid UTF-8", p.display()))
}

/// Renders every generated file of the plan. Pure: reads nothing from disk.
pub fn render(plan: &Plan, layout: &Layout, host: &Host) -> Result<Vec<OutFile>> {
    let env = environment();
    let exe = path_str(&host.exe)?;
    let mut out = Vec::new();
    let mut add = |rel: PathBuf, name: &str, ctx: minijinja::Value, mode: u32| -> Result<()> {
        out.push(OutFile {
            rel,
            bytes: render_template(&env, name, ctx)?,
            mode,
        });
        Ok(())
    };
    let service = PathBuf::from("service");

    for inst in &plan.instances {
        let checkout = match inst.role {
            Role::Prod(_) => layout.prod_checkout(&inst.name),
            Role::Alternate => layout.alternate_checkout(&inst.name),
        };
        add(
            service.join(&inst.name).join("run"),
            "instance-run",
            minijinja::context! { name => inst.name.as_str(), port => inst.port, checkout => path_str(&checkout)? },
            0o755,
        )?;
    }
    for name in plan.service_names() {
        add(
            service.join(name).join("log").join("run"),
            "log-run",
            minijinja::context! { exe => exe.as_str(), log_dir => path_str(&layout.log_dir(name))? },
            0o755,
        )?;
    }

    let prefix = format!("{}/", path_str(&layout.nginx_dir())?);
    let mut nginx_args = host.nginx_cmd.clone();
    nginx_args.extend([
        "-p".into(),
        prefix,
        "-c".into(),
        path_str(&layout.nginx_conf())?,
    ]);
    add(
        service.join(NGINX).join("run"),
        "nginx-run",
        minijinja::context! { nginx_args => Serde(nginx_args) },
        0o755,
    )?;

    add(
        PathBuf::from("crontab"),
        "crontab",
        minijinja::context! {
            exe => exe.as_str(),
            root => path_str(layout.root())?,
            crontab_path => path_str(&layout.crontab())?,
            sync_log => path_str(&layout.log_root().join("sync.log"))?,
        },
        0o644,
    )?;

    out.extend(render_nginx_with(&env, plan, host)?);
    out.push(OutFile {
        rel: PathBuf::from("state").join(state::PORTS),
        bytes: state::render_ports(&plan.ports).into_bytes(),
        mode: 0o644,
    });
    Ok(out)
}

/// The nginx configuration files and their template contexts: `nginx.conf` and `active.conf`.
fn nginx_files(plan: &Plan, host: &Host) -> [(&'static str, minijinja::Value); 2] {
    let routes: Vec<Route> = plan
        .instances
        .iter()
        .map(|i| Route {
            name: &i.name,
            port: i.port,
        })
        .collect();
    let longest = routes.iter().map(|r| r.name.len()).max().unwrap_or(0);
    // Keys are up to "/remove_alt_cookie_<name>.html"; nginx wants the bucket to hold the
    // longest key, and the table to be comfortably larger than the key count.
    let map_bucket_size = (longest + 32).next_power_of_two().max(64);
    let map_max_size = (routes.len() * 4).next_power_of_two().max(2048);
    let active = plan.prod(plan.active);
    let s = &plan.settings;
    [
        (
            "nginx.conf",
            minijinja::context! {
                worker_user => host.worker_user.clone(),
                worker_shutdown_timeout => s.worker_shutdown_timeout_secs,
                access_log => s.access_log,
                map_bucket_size => map_bucket_size,
                map_max_size => map_max_size,
                routes => Serde(&routes),
                listen_port => s.listen_port,
                server_name => s.server_name.as_str(),
            },
        ),
        (
            "active.conf",
            minijinja::context! { active => Serde(Route { name: &active.name, port: active.port }) },
        ),
    ]
}

/// Only the nginx configuration (`nginx/nginx.conf`, `nginx/active.conf`), for a switch.
pub fn render_nginx(plan: &Plan, host: &Host) -> Result<Vec<OutFile>> {
    render_nginx_with(&environment(), plan, host)
}

fn render_nginx_with(env: &Environment, plan: &Plan, host: &Host) -> Result<Vec<OutFile>> {
    nginx_files(plan, host)
        .into_iter()
        .map(|(name, ctx)| {
            Ok(OutFile {
                rel: PathBuf::from("nginx").join(name),
                bytes: render_template(env, name, ctx)?,
                mode: 0o644,
            })
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

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$(x) `y`"), "'$(x) `y`'");
        assert_eq!(cron_quote("50% off").unwrap(), r"'50\% off'");
        assert!(cron_quote("a\nb").is_err());
    }
}
