//! Which seccomp filter a process gets; `ns-core` compiles and installs it.

use serde::{Deserialize, Serialize};

/// Which filter a container gets. serde Serialize/Deserialize, lowercase ("default",
/// "strict", "unconfined").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompProfile {
    /// Docker's default profile (moby `profiles/seccomp/default.json`): an allow-list, with
    /// the groups a capability opens opened when the container holds it (`ns-core`'s
    /// `seccomp` module describes it).
    #[default]
    Default,
    /// The default profile minus the calls that reach the kernel's attack surface most
    /// (`ns-core`'s `seccomp::STRICT_DENIED`), namespace creation and `clone3`, whatever the
    /// container's capabilities.
    Strict,
    /// No filter at all.
    Unconfined,
}
