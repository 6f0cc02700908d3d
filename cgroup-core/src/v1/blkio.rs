//! v1 `blkio`: I/O weight.

use std::path::Path;

use crate::controller::Controller;
use crate::error::Result;
use crate::fs;
use crate::limits::Limits;

/// Writes the weight to `blkio.weight` (CFQ, gone since Linux 5.0) or, failing that,
/// `blkio.bfq.weight` (BFQ); runc picks between them the same way.
pub(crate) fn apply(limits: &Limits, dir: &Path) -> Result<()> {
    let Some(weight) = limits.io_weight else {
        return Ok(());
    };
    let file = fs::first_existing(dir, ["blkio.weight", "blkio.bfq.weight"], Controller::Blkio)?;
    fs::write(&file, &weight.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::test_util::{fixture, read};

    fn weight(w: u16) -> Limits {
        Limits {
            io_weight: Some(w),
            ..Limits::default()
        }
    }

    #[test]
    fn cfq_weight() {
        let dir = fixture(&["blkio.weight", "blkio.bfq.weight"]);
        apply(&weight(500), dir.path()).unwrap();
        assert_eq!(read(&dir, "blkio.weight"), "500");
        assert_eq!(read(&dir, "blkio.bfq.weight"), "");
    }

    #[test]
    fn bfq_weight_when_cfq_is_gone() {
        let dir = fixture(&["blkio.bfq.weight"]);
        apply(&weight(300), dir.path()).unwrap();
        assert_eq!(read(&dir, "blkio.bfq.weight"), "300");
    }

    #[test]
    fn no_weight_file() {
        let dir = fixture(&[]);
        let err = apply(&weight(300), dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Unavailable {
                    controller: Controller::Blkio,
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "host cannot give blkio: neither blkio.weight nor blkio.bfq.weight is in"
            ),
            "{msg}"
        );
    }
}
