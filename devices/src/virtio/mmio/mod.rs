//! The virtio-mmio transport (virtio 1.2 §4.2), modern interface (version 2).
//!
//! - [`state`]: the register file and device-status state machine, on `core` + `alloc`;
//! - [`MmioTransport`] (std): the [`BusDevice`](crate::BusDevice) a vCPU's MMIO exits reach,
//!   which checks access widths, serves the configuration space from the device, builds the
//!   queues in guest memory on DRIVER_OK and activates the device, and owns one eventfd per
//!   queue for its `QueueNotify` (the VMM registers each as a KVM ioeventfd).

pub mod state;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(feature = "std")]
mod transport;

pub use state::{MmioState, QueueConfig, WriteEffect};
#[cfg(feature = "std")]
pub(crate) use transport::DeviceSlot;
#[cfg(feature = "std")]
pub use transport::MmioTransport;
