//! What a sync must do, decided from what it found: pure, no I/O, tested with tables.

use git2::Oid;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::deploy::checkouts::production_branch;
use crate::deploy::listener;
use crate::ext::git::{self, Checkout, RemoteHeads};
use crate::plan::{Plan, Slot};
use crate::state::{Failed, Held};
use crate::util::tai64;

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
    /// A production commit that failed its health check earlier, and what its instance was to
    /// go back to.
    pub failed: Option<Failed>,
    /// A production commit `approuter switch` rolled back from.
    pub held: Option<Held>,
    /// Whether each production instance answers its health path now, by slot index.
    pub prod_healthy: [bool; 2],
    /// The commit each production instance's running process was started from (its checkout
    /// may have moved on since, by a sync that was cut short), by slot index.
    pub prod_runs: [Option<Oid>; 2],
    /// `approuter deploy` (`sync --redeploy`): the head deploys even if it was rolled back or
    /// failed before.
    pub redeploy: bool,
    /// Instances whose port some other process listens on, and who it is.
    pub foreign: BTreeMap<String, String>,
    /// The last run of the release command in each instance's checkout, described.
    pub releases: BTreeMap<String, String>,
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
    /// svscan and nginx, then wait for added alternates and clean up removed ones. Alternates in
    /// `skip` could not be added and get nothing: no service, no route.
    Regenerate {
        skip: BTreeSet<String>,
    },
    /// A production instance moves to the port `prod_ports` now gives it: generated anew,
    /// restarted and health-gated there. The active one first hands production to the other
    /// (`switch_away`) and takes it back once it answers on its new port.
    MoveProductionPort {
        slot: Slot,
        from: u16,
        to: u16,
        switch_away: bool,
    },
    /// Update the inactive production instance, wait for health, switch to it; if it does not
    /// turn healthy, put it back on what it ran (`restore`), so that it stays the rollback.
    DeployProduction {
        to: Slot,
        branch: String,
        from: Oid,
        target: Oid,
        restore: Option<Checkout>,
    },
    /// The inactive production instance (the rollback target) does not answer: put it back on
    /// `to` (what it ran before a deploy that failed and was cut short), or just restart it.
    RecoverInactive {
        slot: Slot,
        to: Option<Oid>,
    },
    /// The inactive instance already runs the head and is healthy: switch to it, no restart.
    SwitchProduction {
        to: Slot,
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
    /// Last: production must answer through nginx, or the sync fails and says why.
    CheckProduction,
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
            Action::Regenerate { .. } | Action::CheckProduction => return None,
            Action::MoveProductionPort {
                slot,
                from,
                to,
                switch_away,
            } => format!(
                "would move {} from port {from} to {to}{}",
                slot.name(),
                if *switch_away {
                    format!(" (production served by {} meanwhile)", slot.other().name())
                } else {
                    String::new()
                }
            ),
            Action::DeployProduction {
                to,
                branch,
                from,
                target,
                ..
            } => format!(
                "would deploy {branch} {} -> {} to {} and switch production to it",
                s(*from),
                s(*target),
                to.name()
            ),
            Action::RecoverInactive { slot, to } => match to {
                Some(c) => format!(
                    "would put {} back on {} and restart it: it does not answer",
                    slot.name(),
                    s(*c)
                ),
                None => format!("would restart {}: it does not answer", slot.name()),
            },
            Action::SwitchProduction { to, from, target } => format!(
                "would switch production {} -> {} to {}, which already runs it (no restart)",
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
/// generated files, production ports), production, the alternates whose branch moved, and a
/// last check that production answers.
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
    for inst in &plan.instances {
        if let Some(r) = facts.releases.get(&inst.name) {
            out.push(verbose(format!("{}: last release {r}", inst.name)));
        }
    }
    let heads = match &facts.remote {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            out.push(fail(format!(
                "{e}; nothing changed; the next sync tries again"
            )));
            out.push(Action::CheckProduction);
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
        out.push(Action::CheckProduction);
        return out;
    };
    let seen = |name: &str| facts.checkouts.get(name).unwrap_or(&Seen::Missing);

    // Configuration: alternates added (only when their branch exists: one that does not gets
    // nothing, not even a route) and removed, then the generated files.
    let mut skip = BTreeSet::new();
    for (inst, branch) in plan.alternates() {
        if !matches!(seen(&inst.name), Seen::Missing) {
            continue;
        }
        match heads.head(url, branch) {
            Ok(_) => out.push(Action::AddAlternate {
                name: inst.name.clone(),
                branch: branch.to_string(),
            }),
            Err(e) => {
                skip.insert(inst.name.clone());
                out.push(fail(format!(
                    "alternate {}: {e:#}; it is not added",
                    inst.name
                )));
            }
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
    out.push(Action::Regenerate { skip });

    // A port held by something that is not the instance: said every time, as `start` refuses it.
    for inst in &plan.instances {
        if let Some(who) = facts.foreign.get(&inst.name) {
            out.push(fail(format!(
                "{}: {}",
                inst.name,
                listener::foreign_message(&inst.name, inst.port, who)
            )));
        }
    }

    // Moving ports relies on the inactive instance: one that does not answer is brought back
    // first (a move cut short leaves it so).
    let inactive = plan.active.other();
    let recovered = !plan.prod_ports_to_move().is_empty()
        && !facts.prod_healthy[inactive.index()]
        && !facts.foreign.contains_key(inactive.name());
    if recovered {
        out.push(Action::RecoverInactive {
            slot: inactive,
            to: None,
        });
    }

    // Production ports that changed: the inactive instance moves first. A port the other
    // instance still uses cannot be moved to (a swap): one step at a time.
    let mut moves = plan.prod_ports_to_move();
    moves.sort_by_key(|(slot, _, _)| *slot == plan.active);
    let blocked = moves
        .iter()
        .find(|(slot, _, to)| plan.prod(slot.other()).port == *to);
    match blocked {
        Some((slot, _, to)) => out.push(fail(format!(
            "prod_ports: {} cannot move to port {to} while {} still uses it; change one port at a time (or go through a free port)",
            slot.name(),
            slot.other().name()
        ))),
        None => {
            for (slot, from, to) in moves {
                out.push(Action::MoveProductionPort {
                    slot,
                    from,
                    to,
                    switch_away: slot == plan.active,
                });
            }
        }
    }

    out.extend(production(facts, plan, heads, &prod_branch, recovered));

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
    out.push(Action::CheckProduction);
    out
}

/// Production: the branch's head goes live on the inactive instance when the active one does
/// not run it, unless that very commit was rolled back or failed before (then only
/// `approuter deploy` sends it); an inactive instance that already runs it and is healthy is
/// switched to without a restart. When nothing is deployed, an inactive instance that does not
/// answer is brought back: it is the rollback target.
fn production(
    facts: &Facts,
    plan: &Plan,
    heads: &RemoteHeads,
    branch: &str,
    recovered: bool,
) -> Vec<Action> {
    let url = facts.url.as_str();
    let target = match heads.head(url, branch) {
        Ok(t) => t,
        Err(e) => {
            return vec![fail(format!(
                "production: {e:#}; production keeps running what it runs"
            ))]
        }
    };
    let active = plan.active;
    let inactive = active.other();
    let co = match facts.checkouts.get(active.name()) {
        Some(Seen::At(co)) => co,
        Some(Seen::Unreadable(e)) => {
            return vec![fail(format!(
                "production: {e}; the active instance's checkout cannot be read, so nothing is deployed"
            ))]
        }
        Some(Seen::Missing) | None => {
            return vec![fail(format!(
                "production: {} has no checkout; `approuter start` clones it",
                active.name()
            ))]
        }
    };
    let short = git::short;
    let other = match facts.checkouts.get(inactive.name()) {
        Some(Seen::At(co)) => Some(co.clone()),
        _ => None,
    };
    let runs = facts.prod_runs[inactive.index()];
    let squatted = facts.foreign.contains_key(inactive.name());
    // What keeps the rollback target when nothing is deployed to it.
    let recover = || -> Vec<Action> {
        if facts.prod_healthy[inactive.index()] || squatted || recovered {
            return Vec::new();
        }
        // A deploy that failed and was cut short before it put the instance back: back it goes.
        let to = facts.failed.as_ref().and_then(|f| {
            let on_failed = runs.map(|r| r.to_string()) == Some(f.commit.clone())
                || other.as_ref().map(|o| o.head.to_string()) == Some(f.commit.clone());
            on_failed.then_some(f.restore).flatten()
        });
        vec![Action::RecoverInactive { slot: inactive, to }]
    };
    if co.is_at(url, branch, target) {
        let mut out = vec![verbose(format!(
            "production: {} serves {}, the head of {branch}; nothing to do",
            active.name(),
            short(target)
        ))];
        out.extend(recover());
        return out;
    }
    let target_s = target.to_string();
    if !facts.redeploy {
        if let Some(h) = facts.held.as_ref().filter(|h| h.commit == target_s) {
            let mut out = vec![verbose(format!(
                "production: held at {} on {}: {} was rolled back at {}; a newer commit deploys as usual, `approuter deploy` deploys it now",
                short(co.head),
                active.name(),
                short(target),
                tai64::utc_string(h.since)
            ))];
            out.extend(recover());
            return out;
        }
        if facts.failed.as_ref().is_some_and(|f| f.commit == target_s) {
            let mut out = vec![fail(format!(
                "production: commit {} of {branch} failed its health check earlier; production stays on {} until a newer commit arrives (`approuter deploy` tries it again)",
                short(target),
                short(co.head)
            ))];
            out.extend(recover());
            return out;
        }
    }
    if squatted {
        return vec![fail(format!(
            "production: {} cannot be deployed to {}, whose port another process holds",
            short(target),
            inactive.name()
        ))];
    }
    if other.as_ref().is_some_and(|o| o.is_at(url, branch, target))
        && runs == Some(target)
        && facts.prod_healthy[inactive.index()]
    {
        return vec![Action::SwitchProduction {
            to: inactive,
            from: co.head,
            target,
        }];
    }
    // What to go back to if the new commit fails: what the instance runs (its checkout may
    // already hold the new commit, left there by a sync that was cut short).
    let restore = other
        .map(|o| Checkout {
            head: runs.unwrap_or(o.head),
            ..o
        })
        .filter(|r| r.head != target);
    vec![Action::DeployProduction {
        to: inactive,
        branch: branch.to_string(),
        from: co.head,
        target,
        restore,
    }]
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
            snippets: Default::default(),
        };
        Plan::new(&config, &BTreeMap::new(), active, &BTreeSet::new()).unwrap()
    }

    fn at(branch: &str, head: Oid) -> Seen {
        Seen::At(Checkout {
            branch: Some(branch.into()),
            head,
            origin: Some(URL.into()),
        })
    }

    fn co(branch: &str, head: Oid) -> Checkout {
        Checkout {
            branch: Some(branch.into()),
            head,
            origin: Some(URL.into()),
        }
    }

    /// A running environment: main at 1 on both production instances, beta at 2, all healthy.
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
            failed: None,
            held: None,
            prod_healthy: [true, true],
            prod_runs: [Some(oid(1)), Some(oid(1))],
            redeploy: false,
            foreign: BTreeMap::new(),
            releases: BTreeMap::new(),
        }
    }

    fn heads(f: &mut Facts) -> &mut RemoteHeads {
        f.remote.as_mut().unwrap().as_mut().unwrap()
    }

    /// main moves to `n`.
    fn main_at(f: &mut Facts, n: u8) {
        heads(f).branches.insert("main".into(), oid(n));
    }

    /// instance2's checkout is at `n` and its process was started from it.
    fn instance2_runs(f: &mut Facts, n: u8) {
        f.checkouts.insert("instance2".into(), at("main", oid(n)));
        f.prod_runs[1] = Some(oid(n));
    }

    fn deploy(to: Slot, from: u8, target: u8, restore: u8) -> Action {
        Action::DeployProduction {
            to,
            branch: "main".into(),
            from: oid(from),
            target: oid(target),
            restore: Some(co("main", oid(restore))),
        }
    }

    fn failed(commit: u8, restore: Option<u8>) -> Failed {
        Failed {
            commit: oid(commit).to_string(),
            restore: restore.map(oid),
        }
    }

    fn regen() -> Action {
        Action::Regenerate {
            skip: BTreeSet::new(),
        }
    }

    fn is_verbose(a: &Action) -> bool {
        matches!(a, Action::Say(Note::Verbose(_)))
    }

    #[test]
    fn decisions() {
        type Case = (
            &'static str,
            Box<dyn Fn(&mut Facts, &mut Plan)>,
            Vec<Action>,
        );
        let v = |s: &str| Action::Say(Note::Verbose(s.into()));
        let check = Action::CheckProduction;
        let s = git::short;
        let cases: Vec<Case> = vec![
            (
                "nothing new",
                Box::new(|_, _| {}),
                vec![
                    regen(),
                    v(&format!("production: instance1 serves {}, the head of main; nothing to do", s(oid(1)))),
                    v(&format!("alternate beta: at {}; nothing to do", s(oid(2)))),
                    check.clone(),
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
                vec![Action::StartSupervisor, regen(), check.clone()],
            ),
            (
                "production branch moved: deploy to the inactive instance, keeping what it ran",
                Box::new(|f, _| main_at(f, 3)),
                vec![regen(), deploy(Slot::Instance2, 1, 3, 1), check.clone()],
            ),
            (
                "after a switch, instance2 is active: deploy to instance1",
                Box::new(|f, p| {
                    p.active = Slot::Instance2;
                    main_at(f, 3);
                }),
                vec![regen(), deploy(Slot::Instance1, 1, 3, 1), check.clone()],
            ),
            (
                "a commit that failed before is not retried",
                Box::new(|f, _| {
                    main_at(f, 3);
                    f.failed = Some(failed(3, Some(1)));
                }),
                vec![regen(), fail(format!(
                    "production: commit {} of main failed its health check earlier; production stays on {} until a newer commit arrives (`approuter deploy` tries it again)",
                    s(oid(3)), s(oid(1))
                )), check.clone()],
            ),
            (
                "approuter deploy retries a commit that failed",
                Box::new(|f, _| {
                    main_at(f, 3);
                    f.failed = Some(failed(3, Some(1)));
                    f.redeploy = true;
                }),
                vec![regen(), deploy(Slot::Instance2, 1, 3, 1), check.clone()],
            ),
            (
                "a newer commit after a failed one deploys",
                Box::new(|f, _| {
                    main_at(f, 4);
                    f.failed = Some(failed(3, Some(1)));
                }),
                vec![regen(), deploy(Slot::Instance2, 1, 4, 1), check.clone()],
            ),
            (
                "a rollback holds: the commit rolled back from is not deployed again",
                Box::new(|f, p| {
                    // instance2 ran 3 and was switched away from; instance1 serves 1 again.
                    main_at(f, 3);
                    instance2_runs(f, 3);
                    f.held = Some(Held { commit: oid(3).to_string(), since: 1_795_000_000 });
                    p.active = Slot::Instance1;
                }),
                vec![regen(), v(&format!(
                    "production: held at {} on instance1: {} was rolled back at 2026-11-18 11:06:40 UTC; a newer commit deploys as usual, `approuter deploy` deploys it now",
                    s(oid(1)), s(oid(3))
                )), v(&format!("alternate beta: at {}; nothing to do", s(oid(2)))), check.clone()],
            ),
            (
                "a newer commit than the one rolled back deploys as usual",
                Box::new(|f, _| {
                    main_at(f, 4);
                    instance2_runs(f, 3);
                    f.held = Some(Held { commit: oid(3).to_string(), since: 1 });
                }),
                vec![regen(), deploy(Slot::Instance2, 1, 4, 3), check.clone()],
            ),
            (
                "approuter deploy after a rollback: the instance that runs it is switched to",
                Box::new(|f, _| {
                    main_at(f, 3);
                    instance2_runs(f, 3);
                    f.held = Some(Held { commit: oid(3).to_string(), since: 1 });
                    f.redeploy = true;
                }),
                vec![regen(), Action::SwitchProduction {
                    to: Slot::Instance2,
                    from: oid(1),
                    target: oid(3),
                }, check.clone()],
            ),
            (
                "inactive already runs the head and is healthy: switched to, not restarted",
                Box::new(|f, _| {
                    main_at(f, 3);
                    instance2_runs(f, 3);
                }),
                vec![regen(), Action::SwitchProduction {
                    to: Slot::Instance2,
                    from: oid(1),
                    target: oid(3),
                }, check.clone()],
            ),
            (
                "inactive runs the head but is not healthy: deployed (restarted), not switched to blindly",
                Box::new(|f, _| {
                    main_at(f, 3);
                    instance2_runs(f, 3);
                    f.prod_healthy = [true, false];
                }),
                vec![regen(), Action::DeployProduction {
                    to: Slot::Instance2,
                    branch: "main".into(),
                    from: oid(1),
                    target: oid(3),
                    restore: None,
                }, check.clone()],
            ),
            (
                "inactive's checkout was reset but it still runs the old commit (a sync cut short): redeployed, and it goes back to what it runs if that fails",
                Box::new(|f, _| {
                    main_at(f, 3);
                    f.checkouts.insert("instance2".into(), at("main", oid(3)));
                }),
                vec![regen(), deploy(Slot::Instance2, 1, 3, 1), check.clone()],
            ),
            (
                "configured production branch wins over the remote's default",
                Box::new(|f, p| {
                    p.prod_branch = Some("release".into());
                    heads(f).branches.insert("release".into(), oid(5));
                }),
                vec![regen(), Action::DeployProduction {
                    to: Slot::Instance2,
                    branch: "release".into(),
                    from: oid(1),
                    target: oid(5),
                    restore: Some(co("main", oid(1))),
                }, check.clone()],
            ),
            (
                "alternate branch moved: replaced",
                Box::new(|f, _| {
                    heads(f).branches.insert("beta".into(), oid(6));
                }),
                vec![regen(), Action::UpdateAlternate {
                    name: "beta".into(),
                    branch: "beta".into(),
                    from: oid(2),
                    target: oid(6),
                }, check.clone()],
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
                    regen(),
                    check.clone(),
                ],
            ),
            (
                "an alternate whose branch is missing gets nothing, not even a route",
                Box::new(|f, p| {
                    *p = plan(&["beta", "nosuch"], None, Slot::Instance1);
                    f.checkouts.remove("nosuch");
                }),
                vec![
                    fail(format!("alternate nosuch: branch `nosuch` does not exist in {URL}; create it or fix the configuration; it is not added")),
                    Action::Regenerate { skip: ["nosuch".to_string()].into() },
                    check.clone(),
                ],
            ),
            (
                "unreachable remote: nothing else, but production is checked",
                Box::new(|f, _| f.remote = Some(Err(format!("cannot reach {URL}: gone")))),
                vec![fail(format!("cannot reach {URL}: gone; nothing changed; the next sync tries again")), check.clone()],
            ),
            (
                "no default branch and none configured",
                Box::new(|f, _| heads(f).default_branch = None),
                vec![fail(format!("{URL} has no default branch; write the production branch in managed/etc/prod_branch")), check.clone()],
            ),
            (
                "an unreadable checkout is a failure, not 'nothing to do'",
                Box::new(|f, _| {
                    f.checkouts.insert("instance1".into(), Seen::Unreadable("not a git checkout".into()));
                    f.checkouts.insert("beta".into(), Seen::Unreadable("not a git checkout".into()));
                }),
                vec![
                    regen(),
                    fail("production: not a git checkout; the active instance's checkout cannot be read, so nothing is deployed".into()),
                    fail("alternate beta: not a git checkout; it keeps running what it runs".into()),
                    check.clone(),
                ],
            ),
            (
                "prod_branch changed: the same commit on another branch is deployed (nothing else to go back to)",
                Box::new(|f, p| {
                    p.prod_branch = Some("release".into());
                    heads(f).branches.insert("release".into(), oid(1));
                }),
                vec![regen(), Action::DeployProduction {
                    to: Slot::Instance2,
                    branch: "release".into(),
                    from: oid(1),
                    target: oid(1),
                    restore: None,
                }, check.clone()],
            ),
            (
                "a squatter on the inactive instance's port: said, and nothing deployed to it",
                Box::new(|f, _| {
                    main_at(f, 3);
                    f.foreign.insert("instance2".into(), "pid 7 (user nobody: squat)".into());
                    f.prod_healthy[1] = false;
                }),
                vec![
                    regen(),
                    fail("instance2: port 9052 is held by pid 7 (user nobody: squat), not by instance2's own processes; end it, or give instance2 another port".into()),
                    fail(format!("production: {} cannot be deployed to instance2, whose port another process holds", s(oid(3)))),
                    check.clone(),
                ],
            ),
            (
                "a failed deploy cut short before the instance went back: it goes back now",
                Box::new(|f, _| {
                    main_at(f, 3);
                    instance2_runs(f, 3);
                    f.prod_healthy = [true, false];
                    f.failed = Some(failed(3, Some(1)));
                }),
                vec![
                    regen(),
                    fail(format!(
                        "production: commit {} of main failed its health check earlier; production stays on {} until a newer commit arrives (`approuter deploy` tries it again)",
                        s(oid(3)), s(oid(1))
                    )),
                    Action::RecoverInactive { slot: Slot::Instance2, to: Some(oid(1)) },
                    check.clone(),
                ],
            ),
            (
                "held and failed at once: the hold is said, and a rollback target that stopped answering is restarted",
                Box::new(|f, _| {
                    main_at(f, 3);
                    instance2_runs(f, 3);
                    f.held = Some(Held { commit: oid(3).to_string(), since: 1 });
                    f.failed = Some(failed(2, None));
                    f.prod_healthy = [true, false];
                }),
                vec![
                    regen(),
                    Action::RecoverInactive { slot: Slot::Instance2, to: None },
                    check.clone(),
                ],
            ),
            (
                "nothing to deploy, and the rollback target does not answer: restarted",
                Box::new(|f, _| f.prod_healthy = [true, false]),
                vec![regen(), Action::RecoverInactive { slot: Slot::Instance2, to: None }, check.clone()],
            ),
            (
                "repo.conf moved to another URL: the inactive instance is deployed from it, alternates follow",
                Box::new(|f, _| {
                    f.url = "/srv/moved.git".into();
                }),
                vec![regen(), Action::DeployProduction {
                    to: Slot::Instance2,
                    branch: "main".into(),
                    from: oid(1),
                    target: oid(1),
                    restore: None,
                }, Action::UpdateAlternate {
                    name: "beta".into(),
                    branch: "beta".into(),
                    from: oid(2),
                    target: oid(2),
                }, check.clone()],
            ),
            (
                "prod_ports changed and a new commit in the same sync: ports move, then the deploy",
                Box::new(|f, p| {
                    p.settings.prod_ports = [9061, 9062];
                    main_at(f, 3);
                }),
                vec![
                    regen(),
                    Action::MoveProductionPort { slot: Slot::Instance2, from: 9052, to: 9062, switch_away: false },
                    Action::MoveProductionPort { slot: Slot::Instance1, from: 9051, to: 9061, switch_away: true },
                    deploy(Slot::Instance2, 1, 3, 1),
                    check.clone(),
                ],
            ),
            (
                "a port move cut short: the inactive instance (already on its new port) is restarted before the other moves",
                Box::new(|f, p| {
                    p.settings.prod_ports = [9061, 9052];
                    f.prod_healthy = [true, false];
                }),
                vec![
                    regen(),
                    Action::RecoverInactive { slot: Slot::Instance2, to: None },
                    Action::MoveProductionPort { slot: Slot::Instance1, from: 9051, to: 9061, switch_away: true },
                    check.clone(),
                ],
            ),
            (
                "prod_ports swapped: refused, one step at a time",
                Box::new(|_, p| p.settings.prod_ports = [9052, 9051]),
                vec![
                    regen(),
                    fail("prod_ports: instance2 cannot move to port 9051 while instance1 still uses it; change one port at a time (or go through a free port)".into()),
                    check.clone(),
                ],
            ),
            (
                "prod_ports changed: the inactive instance moves first, the active one hands over",
                Box::new(|_, p| {
                    p.settings.prod_ports = [9061, 9062];
                }),
                vec![
                    regen(),
                    Action::MoveProductionPort { slot: Slot::Instance2, from: 9052, to: 9062, switch_away: false },
                    Action::MoveProductionPort { slot: Slot::Instance1, from: 9051, to: 9061, switch_away: true },
                    check.clone(),
                ],
            ),
            (
                "one production port changed, instance2 active",
                Box::new(|_, p| {
                    p.active = Slot::Instance2;
                    p.settings.prod_ports = [9061, 9052];
                }),
                vec![
                    regen(),
                    Action::MoveProductionPort { slot: Slot::Instance1, from: 9051, to: 9061, switch_away: false },
                    check.clone(),
                ],
            ),
        ];
        for (what, change, want) in cases {
            let mut p = plan(&["beta"], None, Slot::Instance1);
            let mut f = facts(&p);
            change(&mut f, &mut p);
            // Verbose lines are compared only where the case lists some.
            let wants_verbose = want.iter().any(is_verbose);
            let got: Vec<Action> = decide(&f, &p)
                .into_iter()
                .filter(|a| wants_verbose || !is_verbose(a))
                .collect();
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn dry_run_lines() {
        let s = git::short;
        let table = [
            (deploy(Slot::Instance2, 1, 3, 1), Some(format!(
                "would deploy main {} -> {} to instance2 and switch production to it",
                s(oid(1)), s(oid(3))
            ))),
            (Action::SwitchProduction { to: Slot::Instance2, from: oid(1), target: oid(3) }, Some(format!(
                "would switch production {} -> {} to instance2, which already runs it (no restart)",
                s(oid(1)), s(oid(3))
            ))),
            (Action::MoveProductionPort { slot: Slot::Instance1, from: 9051, to: 9061, switch_away: true },
             Some("would move instance1 from port 9051 to 9061 (production served by instance2 meanwhile)".into())),
            (Action::StartSupervisor, Some("would start svscan, which is not running".into())),
            (Action::AddAlternate { name: "g".into(), branch: "g".into() }, Some("would add alternate g (branch g)".into())),
            (Action::RemoveAlternate { name: "b".into(), port: None }, Some("would remove alternate b".into())),
            (regen(), None),
            (Action::CheckProduction, None),
        ];
        for (action, want) in table {
            assert_eq!(action.dry_run_line(), want, "{action}");
        }
    }
}
