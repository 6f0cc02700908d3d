//! v2 `io`: I/O weight.

use std::path::Path;

use crate::controller::Controller;
use crate::error::Result;
use crate::fs;
use crate::limits::Limits;

/// Writes `default N` to `io.weight` or, where only BFQ gives weights, `io.bfq.weight`; both take
/// `default N` as the weight for every device. The value is written unchanged: 10..=1000 fits
/// both files' ranges (1..=10000 and 1..=1000). runc differs here: it prefers `io.bfq.weight`
/// and rescales for `io.weight` (`ConvertBlkIOToIOWeightValue`, `1 + (w - 10) * 9999 / 990`),
/// which turns docker's default 500 into 4950, fifty times io.weight's default of 100; an
/// unchanged value keeps weights comparable with the cgroups around ours.
pub(crate) fn apply(limits: &Limits, dir: &Path) -> Result<()> {
    let Some(weight) = limits.io_weight else {
        return Ok(());
    };
    let file = fs::first_existing(dir, ["io.weight", "io.bfq.weight"], Controller::Blkio)?;
    fs::write(&file, &format!("default {weight}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{fixture, read};

    #[test]
    fn bfq_when_no_io_weight() {
        let dir = fixture(&["io.bfq.weight"]);
        apply(
            &Limits {
                io_weight: Some(10),
                ..Limits::default()
            },
            dir.path(),
        )
        .unwrap();
        assert_eq!(read(&dir, "io.bfq.weight"), "default 10");
    }
}
