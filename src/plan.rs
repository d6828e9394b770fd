//! The validated plan: which instances run on which ports and branches, decided from configuration and remembered state without any I/O.

use anyhow::{bail, Result};
use std::collections::{BTreeMap, BTreeSet};

use crate::config::{Config, Settings, Snippets};
use crate::layout;

/// One of the two production instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Instance1,
    Instance2,
}

impl Slot {
    pub const BOTH: [Slot; 2] = [Slot::Instance1, Slot::Instance2];

    pub fn name(self) -> &'static str {
        match self {
            Slot::Instance1 => "instance1",
            Slot::Instance2 => "instance2",
        }
    }
    pub fn other(self) -> Slot {
        match self {
            Slot::Instance1 => Slot::Instance2,
            Slot::Instance2 => Slot::Instance1,
        }
    }
    pub fn index(self) -> usize {
        match self {
            Slot::Instance1 => 0,
            Slot::Instance2 => 1,
        }
    }
    pub fn parse(s: &str) -> Option<Slot> {
        Slot::BOTH.into_iter().find(|slot| slot.name() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Prod(Slot),
    Alternate { branch: String },
}

impl Role {
    /// `production` or `alternate`, as instances see it in APPROUTER_ROLE.
    pub fn word(&self) -> &'static str {
        match self {
            Role::Prod(_) => "production",
            Role::Alternate { .. } => "alternate",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    pub role: Role,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub settings: Settings,
    /// instance1, instance2, then the alternates in the order of alternates.conf.
    pub instances: Vec<Instance>,
    pub active: Slot,
    /// The production branch as configured; `None` means the remote's default branch.
    pub prod_branch: Option<String>,
    /// The ports to remember: every alternate's, and the production instances' (which move one
    /// at a time when `prod_ports` changes, so may differ from it for a while).
    pub ports: BTreeMap<String, u16>,
    /// The operator's nginx snippets, included as they are.
    pub snippets: Snippets,
}

/// The service that runs nginx; its name is reserved for it.
pub const NGINX: &str = "nginx";

/// Names that belong to approuter itself (services and log directories); an alternate may not
/// take them.
pub const RESERVED_NAMES: [&str; 5] = [
    "instance1",
    "instance2",
    NGINX,
    layout::SVSCAN,
    layout::SYNC,
];

impl Plan {
    /// The plan for `config`, given the ports remembered from the last run and the ports some
    /// process listens on now (`busy`): a new alternate never gets a busy port, nor one an
    /// alternate going away still had.
    pub fn new(
        config: &Config,
        previous_ports: &BTreeMap<String, u16>,
        active: Slot,
        busy: &BTreeSet<u16>,
    ) -> Result<Plan> {
        let s = &config.settings;
        let names: Vec<&str> = config.alternates.iter().map(|a| a.name.as_str()).collect();
        let prod_port = |slot: Slot| {
            previous_ports
                .get(slot.name())
                .copied()
                .unwrap_or(s.prod_ports[slot.index()])
        };
        let mut reserved = reserved_ports(s);
        reserved.extend(Slot::BOTH.map(prod_port));
        let alternates_before: BTreeMap<String, u16> = previous_ports
            .iter()
            .filter(|(n, _)| Slot::parse(n).is_none())
            .map(|(n, p)| (n.clone(), *p))
            .collect();
        let mut avoid = busy.clone();
        avoid.extend(alternates_before.values());
        let mut ports = allocate_ports(
            &alternates_before,
            &names,
            s.alternate_base_port,
            &reserved,
            &avoid,
        )?;
        let mut instances = Vec::with_capacity(2 + names.len());
        for slot in Slot::BOTH {
            ports.insert(slot.name().to_string(), prod_port(slot));
            instances.push(Instance {
                name: slot.name().to_string(),
                role: Role::Prod(slot),
                port: prod_port(slot),
            });
        }
        for alt in &config.alternates {
            instances.push(Instance {
                name: alt.name.clone(),
                role: Role::Alternate {
                    branch: alt.branch.clone(),
                },
                port: ports[&alt.name],
            });
        }
        Ok(Plan {
            settings: s.clone(),
            instances,
            active,
            prod_branch: config.prod_branch.clone(),
            ports,
            snippets: config.snippets.clone(),
        })
    }

    /// Every supervised service: the instances and nginx.
    pub fn service_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.instances.iter().map(|i| i.name.as_str()).collect();
        names.push(NGINX);
        names
    }

    pub fn instance(&self, name: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.name == name)
    }

    pub fn prod(&self, slot: Slot) -> &Instance {
        &self.instances[slot.index()]
    }

    /// The same plan without the alternates named (ones that could not be added).
    pub fn without(&self, skip: &BTreeSet<String>) -> Plan {
        let mut plan = self.clone();
        plan.instances
            .retain(|i| matches!(i.role, Role::Prod(_)) || !skip.contains(&i.name));
        plan.ports.retain(|n, _| !skip.contains(n));
        plan
    }

    /// The same plan with a production instance on another port.
    pub fn with_prod_port(&self, slot: Slot, port: u16) -> Plan {
        let mut plan = self.clone();
        plan.instances[slot.index()].port = port;
        plan.ports.insert(slot.name().to_string(), port);
        plan
    }

    /// Production instances whose port differs from `prod_ports` (they move at the next sync).
    pub fn prod_ports_to_move(&self) -> Vec<(Slot, u16, u16)> {
        Slot::BOTH
            .into_iter()
            .filter_map(|s| {
                let want = self.settings.prod_ports[s.index()];
                let now = self.prod(s).port;
                (now != want).then_some((s, now, want))
            })
            .collect()
    }

    pub fn alternates(&self) -> impl Iterator<Item = (&Instance, &str)> {
        self.instances.iter().filter_map(|i| match &i.role {
            Role::Alternate { branch } => Some((i, branch.as_str())),
            Role::Prod(_) => None,
        })
    }
}

fn reserved_ports(s: &Settings) -> BTreeSet<u16> {
    [s.listen_port, s.prod_ports[0], s.prod_ports[1]]
        .into_iter()
        .collect()
}

/// Gives every alternate a port: the one it had, when it is still free to keep, else the lowest
/// port from `base` up that is neither reserved nor to be avoided (in use by some process, or
/// just given up by an alternate going away). Adding or removing one alternate never moves
/// another.
pub fn allocate_ports(
    previous: &BTreeMap<String, u16>,
    names: &[&str],
    base: u16,
    reserved: &BTreeSet<u16>,
    avoid: &BTreeSet<u16>,
) -> Result<BTreeMap<String, u16>> {
    let mut taken = reserved.clone();
    let mut out = BTreeMap::new();
    for name in names {
        if let Some(&port) = previous.get(*name) {
            if port >= base && taken.insert(port) {
                out.insert(name.to_string(), port);
            }
        }
    }
    taken.extend(avoid);
    let mut next = base;
    for name in names {
        if out.contains_key(*name) {
            continue;
        }
        while taken.contains(&next) {
            next = match next.checked_add(1) {
                Some(n) => n,
                None => bail!(
                    "no free port left above alternate_base_port {base} for alternate `{name}`; lower alternate_base_port"
                ),
            };
        }
        taken.insert(next);
        out.insert(name.to_string(), next);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(prev: &[(&str, u16)], names: &[&str]) -> Vec<(String, u16)> {
        alloc_avoiding(prev, names, &[])
    }

    fn alloc_avoiding(prev: &[(&str, u16)], names: &[&str], avoid: &[u16]) -> Vec<(String, u16)> {
        let prev = prev.iter().map(|(n, p)| (n.to_string(), *p)).collect();
        let reserved = [9090, 10052].into_iter().collect();
        let avoid = avoid.iter().copied().collect();
        allocate_ports(&prev, names, 10051, &reserved, &avoid)
            .unwrap()
            .into_iter()
            .collect()
    }

    fn v(pairs: &[(&str, u16)]) -> Vec<(String, u16)> {
        pairs.iter().map(|(n, p)| (n.to_string(), *p)).collect()
    }

    #[test]
    fn ports_are_stable() {
        type Ports<'a> = &'a [(&'a str, u16)];
        let table: &[(Ports, &[&str], Ports)] = &[
            // fresh: lowest free ports, skipping reserved ones
            (
                &[],
                &["a", "b", "c"],
                &[("a", 10051), ("b", 10053), ("c", 10054)],
            ),
            // removing one leaves the others where they were
            (
                &[("a", 10051), ("b", 10053), ("c", 10054)],
                &["a", "c"],
                &[("a", 10051), ("c", 10054)],
            ),
            // a new one takes the hole, the others stay
            (
                &[("a", 10051), ("c", 10054)],
                &["a", "c", "d"],
                &[("a", 10051), ("c", 10054), ("d", 10053)],
            ),
            // a remembered port that is now reserved or below base is given up
            (
                &[("a", 10052), ("b", 80)],
                &["a", "b"],
                &[("a", 10051), ("b", 10053)],
            ),
        ];
        for (prev, names, want) in table {
            assert_eq!(alloc(prev, names), v(want), "{prev:?} {names:?}");
        }
    }

    #[test]
    fn busy_and_freed_ports_are_not_given_out() {
        // A port some other process listens on is skipped; a kept alternate keeps its own.
        assert_eq!(
            alloc_avoiding(&[("a", 10051)], &["a", "b"], &[10051, 10053]),
            v(&[("a", 10051), ("b", 10054)])
        );
        // In the plan: the port of an alternate going away is not reused in the same run.
        let config = |alts: &[&str]| Config {
            repo: "/r".into(),
            alternates: alts
                .iter()
                .map(|a| crate::config::Alternate {
                    branch: a.to_string(),
                    name: a.to_string(),
                })
                .collect(),
            prod_branch: None,
            settings: Settings::default(),
            snippets: Default::default(),
        };
        let before: BTreeMap<String, u16> = [("old".to_string(), 10051)].into();
        let plan = Plan::new(
            &config(&["new"]),
            &before,
            Slot::Instance1,
            &BTreeSet::new(),
        )
        .unwrap();
        assert_eq!(plan.instance("new").unwrap().port, 10052);
        assert!(!plan.ports.contains_key("old"));
    }

    #[test]
    fn production_ports_move_one_at_a_time() {
        let config = Config {
            repo: "/r".into(),
            alternates: vec![],
            prod_branch: None,
            settings: Settings {
                prod_ports: [9061, 9062],
                ..Settings::default()
            },
            snippets: Default::default(),
        };
        let before: BTreeMap<String, u16> = [
            ("instance1".to_string(), 9051),
            ("instance2".to_string(), 9062),
        ]
        .into();
        let plan = Plan::new(&config, &before, Slot::Instance1, &BTreeSet::new()).unwrap();
        assert_eq!(plan.prod(Slot::Instance1).port, 9051, "still where it runs");
        assert_eq!(plan.prod_ports_to_move(), [(Slot::Instance1, 9051, 9061)]);
        let moved = plan.with_prod_port(Slot::Instance1, 9061);
        assert!(moved.prod_ports_to_move().is_empty());
        assert_eq!(moved.ports["instance1"], 9061);
    }

    #[test]
    fn ports_run_out_clearly() {
        let err = allocate_ports(
            &BTreeMap::new(),
            &["a", "b"],
            65535,
            &BTreeSet::new(),
            &BTreeSet::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("alternate `b`"), "{err}");
    }
}

#[cfg(test)]
mod slot_tests {
    use super::*;

    #[test]
    fn reserved_names_cover_the_production_slots() {
        for slot in Slot::BOTH {
            assert!(RESERVED_NAMES.contains(&slot.name()));
            assert_eq!(Slot::parse(slot.name()), Some(slot));
        }
        assert_eq!(Slot::parse("instance3"), None);
    }
}
