//! `cargo xtask policy-doc`: regenerates `docs/policy.md` (the policy language reference)
//! from the functions the engine registers, through the test that checks it is current.

use anyhow::Result;

use crate::util::{self, progress};

pub fn run() -> Result<()> {
    progress!("regenerating docs/policy.md from the registered policy functions");
    util::run(
        util::cargo()
            .args(["test", "-q", "-p", "capsule", "--test", "policy_doc"])
            .env("UPDATE_DOCS", "1"),
        "the capsule crate must build; see the test's output above",
    )
}
