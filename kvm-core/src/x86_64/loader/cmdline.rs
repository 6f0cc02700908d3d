//! The kernel command line, NUL-terminated at [`CMDLINE_START`], where both
//! the zero page (`cmd_line_ptr`) and the PVH start info (`cmdline_paddr`)
//! point.

use crate::memory::GuestMemory;
use crate::x86_64::layout::CMDLINE_START;
use crate::{Error, Result};

/// Writes `cmdline`, NUL-terminated, at [`CMDLINE_START`]; with its NUL it
/// must fit the kernel's `cmdline_size`.
pub(super) fn write_cmdline(memory: &GuestMemory, cmdline: &str, cmdline_size: u64) -> Result<()> {
    if cmdline.len() as u64 >= cmdline_size || cmdline.contains('\0') {
        return Err(Error::Cmdline {
            len: cmdline.len(),
            max: cmdline_size.saturating_sub(1),
        });
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    crate::memory::write_bytes(memory, CMDLINE_START, &bytes)
}
