//! The functions scripts call, one module per part of the Plan. Each registered function
//! carries its `///` comment into Rhai's metadata, from which `docs/policy.md` is generated.

use rhai::Engine;
use rhai::exported_module;

mod create;
mod facts;
mod filesystem;
mod helpers;
mod isolation;
mod process;
mod resources;
mod units;
mod values;

pub(crate) use helpers::{FALLBACK_HOST_ID, HARDENED_IDS};

use super::Workload;
use super::script_plan::{Group, ScriptPlan};
use plan::Host;

/// Adds capsule's types and functions to `engine`, all in the global namespace.
pub(crate) fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<ScriptPlan>("Plan")
        .register_type_with_name::<Group>("Group")
        .register_type_with_name::<Host>("Host")
        .register_type_with_name::<Workload>("Workload");
    for module in [
        exported_module!(create::create),
        exported_module!(process::process),
        exported_module!(filesystem::filesystem),
        exported_module!(resources::resources),
        exported_module!(isolation::isolation),
        exported_module!(helpers::helpers),
        exported_module!(units::units),
        exported_module!(facts::facts),
    ] {
        engine.register_global_module(module.into());
    }
}
