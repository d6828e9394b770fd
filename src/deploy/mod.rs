//! Bringing the running environment to what the plan says: checkouts, generated files, the supervisor, health, switches and sync.

pub mod checkouts;
pub mod environment;
pub mod generate;
pub mod health;
pub mod listener;
pub mod lock;
pub mod processes;
pub mod runas;
pub mod switch;
pub mod sync;

use anyhow::Result;

use crate::config::Config;
use crate::ext::procfs;
use crate::layout::Layout;
use crate::plan::Plan;
use crate::state;

/// Loads the configuration and the remembered state, and makes the plan.
pub fn load_plan(layout: &Layout) -> Result<(Config, Plan)> {
    let config = Config::load(layout)?;
    let ports = state::load_ports(layout)?;
    let active = state::load_active(layout)?;
    let plan = Plan::new(&config, &ports, active, &procfs::listening_ports())?;
    Ok((config, plan))
}
