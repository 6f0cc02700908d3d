//! The container a kata launch builds inside the guest (`--isolation kata`).

use serde::{Deserialize, Serialize};

/// The container capsule-init builds inside the guest with ns-core and cgroup-core, from the
/// launch's Plan: what the host decided, in the guest's terms (paths inside the guest, limits
/// as guest cgroups). Travels in the agent's first message to the guest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuestContainer {}
