//! The two I/O ports the init talks to the VMM through.

use guest_init::{EXIT_PORT, STARTED_PORT};

/// Tells the VMM that user space started. Never fatal: without the port (a VMM that does not
/// grant it, a kernel without ioperm) there is simply no milestone.
pub fn announce_start() {
    if set_access(STARTED_PORT, true) {
        outb(STARTED_PORT, 0);
        // The command must not inherit access to the ports (fork copies it): it could stop the
        // VM with any status it likes.
        set_access(STARTED_PORT, false);
    }
}

/// Hands the command's exit status to the VMM, which stops the VM on this write. Returns
/// whether the write could be made at all.
pub fn report(status: u8) -> bool {
    if !set_access(EXIT_PORT, true) {
        return false;
    }
    outb(EXIT_PORT, status);
    true
}

#[cfg(target_arch = "x86_64")]
fn set_access(port: u16, on: bool) -> bool {
    // SAFETY: ioperm only changes this thread's I/O permission bitmap; it touches no memory of
    // ours.
    unsafe { libc::ioperm(libc::c_ulong::from(port), 1, libc::c_int::from(on)) == 0 }
}

/// Only called right after `set_access(port, true)` succeeded.
#[cfg(target_arch = "x86_64")]
fn outb(port: u16, value: u8) {
    // SAFETY: `out` writes one byte to an I/O port and touches no memory; the caller has been
    // granted the port by ioperm, so the instruction cannot fault.
    unsafe {
        std::arch::asm!(
            "out dx, al",
            in("dx") port,
            in("al") value,
            options(nomem, nostack, preserves_flags)
        );
    }
}

// Elsewhere the VMM has no port I/O; the init falls back to powering off.
#[cfg(not(target_arch = "x86_64"))]
fn set_access(_port: u16, _on: bool) -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
fn outb(_port: u16, _value: u8) {}
