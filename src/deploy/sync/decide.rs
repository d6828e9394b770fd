//! What a sync must do, decided from what it found: pure, no I/O, tested with tables.

use git2::Oid;
use std::collections::BTreeMap;
use std::fmt;

use crate::deploy::checkouts::production_branch;
use crate::ext::git::{self, Checkout, RemoteHeads};
use crate::plan::{Plan, Slot};

/// What a checkout holds, as sync found it.
#[derive(Debug, Clone)]
pub enum Seen {
    Missing,
    Unreadable(String),
    At(Checkout),
}

/// Everything sync looked at before deciding.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The repository URL as git is given it.
    pub url: String,
    pub svscan_running: bool,
    /// `start` ran and `shutdown` did not since.
    pub meant_to_run: bool,
    /// What the remote has; `None` when it was not asked (approuter is not meant to run here).
    pub remote: Option<Result<RemoteHeads, String>>,
    /// Each instance's checkout, by instance name.
    pub checkouts: BTreeMap<String, Seen>,
    /// The service directories present now.
    pub services: Vec<String>,
    /// The ports remembered before this sync, for alternates that are going away.
    pub old_ports: BTreeMap<String, u16>,
    /// A production commit that failed its health check earlier.
    pub failed_commit: Option<String>,
}

/// A line sync says without doing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Only with `-v`: what needed no change.
    Verbose(String),
    /// Something is wrong: said always, and the sync exits 1.
    Failure(String),
}

/// One thing to do, in the order decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Say(Note),
    /// The supervisor is gone though approuter was started: start a new one.
    StartSupervisor,
    /// Clone a new alternate's branch (it starts once the files are generated).
    AddAlternate {
        name: String,
        branch: String,
    },
    /// An alternate gone from alternates.conf: its checkout goes once its port is free.
    RemoveAlternate {
        name: String,
        port: Option<u16>,
    },
    /// Bring the generated files in line with the configuration and the recorded state, tell
    /// svscan and nginx, then wait for added alternates and clean up removed ones.
    Regenerate,
    /// Update the inactive production instance, wait for health, switch to it.
    DeployProduction {
        to: Slot,
        branch: String,
        from: Oid,
        target: Oid,
    },
    /// Replace an alternate with its branch's new head at once.
    UpdateAlternate {
        name: String,
        branch: String,
        from: Oid,
        target: Oid,
    },
}

impl Action {
    /// What `--dry-run` prints; `None` for what it need not mention.
    pub fn dry_run_line(&self) -> Option<String> {
        let s = git::short;
        Some(match self {
            Action::Say(Note::Verbose(_)) => return None,
            Action::Say(Note::Failure(line)) => line.clone(),
            Action::StartSupervisor => "would start svscan, which is not running".into(),
            Action::AddAlternate { name, branch } => {
                format!("would add alternate {name} (branch {branch})")
            }
            Action::RemoveAlternate { name, .. } => format!("would remove alternate {name}"),
            Action::Regenerate => return None,
            Action::DeployProduction {
                to,
                branch,
                from,
                target,
            } => format!(
                "would deploy {branch} {} -> {} to {} and switch production to it",
                s(*from),
                s(*target),
                to.name()
            ),
            Action::UpdateAlternate {
                name, from, target, ..
            } => format!(
                "would update alternate {name} {} -> {}",
                s(*from),
                s(*target)
            ),
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

fn fail(line: String) -> Action {
    Action::Say(Note::Failure(line))
}

fn verbose(line: String) -> Action {
    Action::Say(Note::Verbose(line))
}

/// Decides a sync: the supervisor, configuration changes (alternates added and removed, the
/// generated files), production, then the alternates whose branch moved.
pub fn decide(facts: &Facts, plan: &Plan) -> Vec<Action> {
    let mut out = Vec::new();
    if !facts.svscan_running {
        if !facts.meant_to_run {
            out.push(verbose(
                "approuter is not running here (approuter start starts it); nothing to sync".into(),
            ));
            return out;
        }
        out.push(Action::StartSupervisor);
    }
    let heads = match &facts.remote {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            out.push(fail(format!(
                "{e}; nothing changed; the next sync tries again"
            )));
            return out;
        }
        None => return out,
    };
    let url = facts.url.as_str();
    let Some(prod_branch) = production_branch(
        plan.prod_branch.as_deref(),
        heads.default_branch.as_deref(),
        None,
    ) else {
        out.push(fail(format!(
            "{url} has no default branch; write the production branch in managed/etc/prod_branch"
        )));
        return out;
    };
    let seen = |name: &str| facts.checkouts.get(name).unwrap_or(&Seen::Missing);

    for (inst, branch) in plan.alternates() {
        if !matches!(seen(&inst.name), Seen::Missing) {
            continue;
        }
        match heads.head(url, branch) {
            Ok(_) => out.push(Action::AddAlternate {
                name: inst.name.clone(),
                branch: branch.to_string(),
            }),
            Err(e) => out.push(fail(format!("alternate {}: {e:#}", inst.name))),
        }
    }
    let planned = plan.service_names();
    for name in &facts.services {
        if !planned.contains(&name.as_str()) {
            out.push(Action::RemoveAlternate {
                name: name.clone(),
                port: facts.old_ports.get(name).copied(),
            });
        }
    }
    out.push(Action::Regenerate);

    out.extend(production(facts, plan, heads, &prod_branch));

    for (inst, branch) in plan.alternates() {
        let target = match heads.head(url, branch) {
            Ok(t) => t,
            Err(e) => {
                if !matches!(seen(&inst.name), Seen::Missing) {
                    out.push(fail(format!(
                        "alternate {}: {e:#}; it keeps running what it runs",
                        inst.name
                    )));
                }
                continue;
            }
        };
        match seen(&inst.name) {
            Seen::Missing => {}
            Seen::Unreadable(e) => out.push(fail(format!(
                "alternate {}: {e}; it keeps running what it runs",
                inst.name
            ))),
            Seen::At(co) if co.is_at(url, branch, target) => out.push(verbose(format!(
                "alternate {}: at {}; nothing to do",
                inst.name,
                git::short(target)
            ))),
            Seen::At(co) => out.push(Action::UpdateAlternate {
                name: inst.name.clone(),
                branch: branch.to_string(),
                from: co.head,
                target,
            }),
        }
    }
    out
}

/// Production: deploy the branch's head to the inactive instance when the active one does not
/// run it, unless that very commit failed before.
fn production(facts: &Facts, plan: &Plan, heads: &RemoteHeads, branch: &str) -> Option<Action> {
    let url = facts.url.as_str();
    let target = match heads.head(url, branch) {
        Ok(t) => t,
        Err(e) => {
            return Some(fail(format!(
                "production: {e:#}; production keeps running what it runs"
            )))
        }
    };
    let active = plan.active;
    let co = match facts.checkouts.get(active.name()) {
        Some(Seen::At(co)) => co,
        Some(Seen::Unreadable(e)) => {
            return Some(fail(format!(
                "production: {e}; the active instance's checkout cannot be read, so nothing is deployed"
            )))
        }
        Some(Seen::Missing) | None => {
            return Some(fail(format!(
                "production: {} has no checkout; `approuter start` clones it",
                active.name()
            )))
        }
    };
    if co.is_at(url, branch, target) {
        return Some(verbose(format!(
            "production: {} serves {}, the head of {branch}; nothing to do",
            active.name(),
            git::short(target)
        )));
    }
    if facts.failed_commit.as_deref() == Some(target.to_string().as_str()) {
        return Some(fail(format!(
            "production: commit {} of {branch} failed its health check earlier; production stays on {} until a newer commit arrives",
            git::short(target),
            git::short(co.head)
        )));
    }
    Some(Action::DeployProduction {
        to: active.other(),
        branch: branch.to_string(),
        from: co.head,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Alternate, Config, Settings};

    const URL: &str = "/srv/app.git";

    fn oid(n: u8) -> Oid {
        Oid::from_str(&format!("{n:02x}").repeat(20)).unwrap()
    }

    fn plan(alternates: &[&str], prod_branch: Option<&str>, active: Slot) -> Plan {
        let config = Config {
            repo: URL.into(),
            alternates: alternates
                .iter()
                .map(|b| Alternate {
                    branch: b.to_string(),
                    name: b.replace('/', "-"),
                })
                .collect(),
            prod_branch: prod_branch.map(str::to_string),
            settings: Settings::default(),
        };
        Plan::new(&config, &BTreeMap::new(), active).unwrap()
    }

    fn at(branch: &str, head: Oid) -> Seen {
        Seen::At(Checkout {
            branch: Some(branch.into()),
            head,
            origin: Some(URL.into()),
        })
    }

    /// A running environment: every checkout at its branch's head (main at 1, beta at 2).
    fn facts(plan: &Plan) -> Facts {
        let mut heads = RemoteHeads {
            default_branch: Some("main".into()),
            ..RemoteHeads::default()
        };
        heads.branches.insert("main".into(), oid(1));
        heads.branches.insert("beta".into(), oid(2));
        let mut checkouts = BTreeMap::new();
        for i in &plan.instances {
            let branch = crate::deploy::checkouts::branch_of(i, "main");
            checkouts.insert(i.name.clone(), at(branch, heads.branches[branch]));
        }
        Facts {
            url: URL.into(),
            svscan_running: true,
            meant_to_run: true,
            remote: Some(Ok(heads)),
            checkouts,
            services: plan.service_names().iter().map(|s| s.to_string()).collect(),
            old_ports: BTreeMap::new(),
            failed_commit: None,
        }
    }

    fn heads(f: &mut Facts) -> &mut RemoteHeads {
        f.remote.as_mut().unwrap().as_mut().unwrap()
    }

    fn deploy(to: Slot, from: u8, target: u8) -> Action {
        Action::DeployProduction {
            to,
            branch: "main".into(),
            from: oid(from),
            target: oid(target),
        }
    }

    fn failure(a: &Action) -> Option<&str> {
        match a {
            Action::Say(Note::Failure(s)) => Some(s),
            _ => None,
        }
    }

    #[test]
    fn decisions() {
        type Case = (
            &'static str,
            Box<dyn Fn(&mut Facts, &mut Plan)>,
            Vec<Action>,
        );
        let v = |s: &str| Action::Say(Note::Verbose(s.into()));
        let cases: Vec<Case> = vec![
            (
                "nothing new",
                Box::new(|_, _| {}),
                vec![
                    Action::Regenerate,
                    v(&format!(
                        "production: instance1 serves {}, the head of main; nothing to do",
                        git::short(oid(1))
                    )),
                    v(&format!("alternate beta: at {}; nothing to do", git::short(oid(2)))),
                ],
            ),
            (
                "not meant to run: nothing, and the remote is not asked",
                Box::new(|f, _| {
                    f.svscan_running = false;
                    f.meant_to_run = false;
                    f.remote = None;
                }),
                vec![v("approuter is not running here (approuter start starts it); nothing to sync")],
            ),
            (
                "supervisor gone: started again first",
                Box::new(|f, _| f.svscan_running = false),
                vec![Action::StartSupervisor, Action::Regenerate],
            ),
            (
                "production branch moved: deploy to the inactive instance",
                Box::new(|f, _| {
                    heads(f).branches.insert("main".into(), oid(3));
                }),
                vec![Action::Regenerate, deploy(Slot::Instance2, 1, 3)],
            ),
            (
                "after a switch, instance2 is active: deploy to instance1",
                Box::new(|f, p| {
                    p.active = Slot::Instance2;
                    heads(f).branches.insert("main".into(), oid(3));
                }),
                vec![Action::Regenerate, deploy(Slot::Instance1, 1, 3)],
            ),
            (
                "a commit that failed before is not retried",
                Box::new(|f, _| {
                    heads(f).branches.insert("main".into(), oid(3));
                    f.failed_commit = Some(oid(3).to_string());
                }),
                vec![Action::Regenerate, fail(format!(
                    "production: commit {} of main failed its health check earlier; production stays on {} until a newer commit arrives",
                    git::short(oid(3)), git::short(oid(1))
                ))],
            ),
            (
                "a newer commit after a failed one deploys",
                Box::new(|f, _| {
                    heads(f).branches.insert("main".into(), oid(4));
                    f.failed_commit = Some(oid(3).to_string());
                }),
                vec![Action::Regenerate, deploy(Slot::Instance2, 1, 4)],
            ),
            (
                "configured production branch wins over the remote's default",
                Box::new(|f, p| {
                    p.prod_branch = Some("release".into());
                    heads(f).branches.insert("release".into(), oid(5));
                }),
                vec![Action::Regenerate, Action::DeployProduction {
                    to: Slot::Instance2,
                    branch: "release".into(),
                    from: oid(1),
                    target: oid(5),
                }],
            ),
            (
                "alternate branch moved: replaced",
                Box::new(|f, _| {
                    heads(f).branches.insert("beta".into(), oid(6));
                }),
                vec![Action::Regenerate, Action::UpdateAlternate {
                    name: "beta".into(),
                    branch: "beta".into(),
                    from: oid(2),
                    target: oid(6),
                }],
            ),
            (
                "alternate added and one removed",
                Box::new(|f, p| {
                    *p = plan(&["gamma"], None, Slot::Instance1);
                    heads(f).branches.insert("gamma".into(), oid(7));
                    f.old_ports.insert("beta".into(), 10051);
                }),
                vec![
                    Action::AddAlternate { name: "gamma".into(), branch: "gamma".into() },
                    Action::RemoveAlternate { name: "beta".into(), port: Some(10051) },
                    Action::Regenerate,
                ],
            ),
            (
                "an alternate whose branch is missing is refused",
                Box::new(|f, p| {
                    *p = plan(&["beta", "nosuch"], None, Slot::Instance1);
                    f.checkouts.remove("nosuch");
                }),
                vec![
                    fail(format!("alternate nosuch: branch `nosuch` does not exist in {URL}; create it or fix the configuration")),
                    Action::Regenerate,
                ],
            ),
            (
                "unreachable remote: nothing else",
                Box::new(|f, _| f.remote = Some(Err(format!("cannot reach {URL}: gone")))),
                vec![fail(format!("cannot reach {URL}: gone; nothing changed; the next sync tries again"))],
            ),
            (
                "no default branch and none configured",
                Box::new(|f, _| heads(f).default_branch = None),
                vec![fail(format!("{URL} has no default branch; write the production branch in managed/etc/prod_branch"))],
            ),
            (
                "an unreadable checkout is a failure, not 'nothing to do'",
                Box::new(|f, _| {
                    f.checkouts.insert("instance1".into(), Seen::Unreadable("not a git checkout".into()));
                    f.checkouts.insert("beta".into(), Seen::Unreadable("not a git checkout".into()));
                }),
                vec![
                    Action::Regenerate,
                    fail("production: not a git checkout; the active instance's checkout cannot be read, so nothing is deployed".into()),
                    fail("alternate beta: not a git checkout; it keeps running what it runs".into()),
                ],
            ),
            (
                "production checkout on another branch after a prod_branch change",
                Box::new(|f, p| {
                    p.prod_branch = Some("release".into());
                    heads(f).branches.insert("release".into(), oid(1));
                }),
                vec![Action::Regenerate, Action::DeployProduction {
                    to: Slot::Instance2,
                    branch: "release".into(),
                    from: oid(1),
                    target: oid(1),
                }],
            ),
        ];
        for (what, change, want) in cases {
            let mut p = plan(&["beta"], None, Slot::Instance1);
            let mut f = facts(&p);
            change(&mut f, &mut p);
            // Verbose lines are compared only where the case lists some.
            let is_verbose = |a: &Action| matches!(a, Action::Say(Note::Verbose(_)));
            let wants_verbose = want.iter().any(is_verbose);
            let got: Vec<Action> = decide(&f, &p)
                .into_iter()
                .filter(|a| wants_verbose || !is_verbose(a))
                .collect();
            assert_eq!(got, want, "{what}");
            assert!(
                got.iter().filter_map(failure).all(|l| !l.contains('\n')),
                "{what}"
            );
        }
    }

    #[test]
    fn dry_run_lines() {
        let table = [
            (
                deploy(Slot::Instance2, 1, 3),
                Some(format!(
                    "would deploy main {} -> {} to instance2 and switch production to it",
                    git::short(oid(1)),
                    git::short(oid(3))
                )),
            ),
            (
                Action::StartSupervisor,
                Some("would start svscan, which is not running".into()),
            ),
            (
                Action::AddAlternate {
                    name: "g".into(),
                    branch: "g".into(),
                },
                Some("would add alternate g (branch g)".into()),
            ),
            (
                Action::RemoveAlternate {
                    name: "b".into(),
                    port: None,
                },
                Some("would remove alternate b".into()),
            ),
            (Action::Regenerate, None),
        ];
        for (action, want) in table {
            assert_eq!(action.dry_run_line(), want, "{action}");
        }
    }
}
