//! How a device raises its interrupt line.
//!
//! Devices hold an `Arc<dyn Interrupt>` and call [`Interrupt::trigger`]; they
//! never learn how it reaches the guest. The VMM plugs in an irqfd (an
//! eventfd registered with KVM) later; tests plug in a counter; a device
//! whose interrupts nobody wants gets [`NoInterrupt`].

use std::io;

/// An edge on one interrupt line of the guest.
pub trait Interrupt: Send + Sync {
    /// Raises the interrupt once.
    fn trigger(&self) -> io::Result<()>;
}

/// An interrupt that goes nowhere: `trigger` always succeeds and does nothing.
///
/// ```
/// use devices::{Interrupt, NoInterrupt};
///
/// NoInterrupt.trigger().expect("never fails");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoInterrupt;

impl Interrupt for NoInterrupt {
    fn trigger(&self) -> io::Result<()> {
        Ok(())
    }
}
