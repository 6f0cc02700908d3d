//! Device models for capsule's microVM, and the bus they sit on.
//!
//! This crate is the guest-facing half of the VMM: register state machines
//! that a vCPU's port-I/O and MMIO exits are dispatched to. It knows no KVM.
//! Devices see offsets and bytes, raise interrupts through the small
//! [`Interrupt`] trait, and tell the run loop what the guest asked for with a
//! [`DeviceAction`]; the VMM (kvm-core) owns the address layout, the irqfds
//! and the decision what to do with an unmapped access.
//!
//! What is here:
//!
//! - [`bus`]: [`Bus`], [`BusRange`], [`BusDevice`], [`DeviceAction`],
//!   [`BusError`]: address ranges owned by devices, overlap-checked.
//! - [`interrupt`]: [`Interrupt`] and [`NoInterrupt`].
//! - [`legacy`]: the 16550A [`Serial`](legacy::Serial) (on `vm-superio`),
//!   the [`ExitPort`](legacy::ExitPort) and a minimal
//!   [`I8042`](legacy::I8042).
//!
//! - [`virtio`]: the [`VirtioDevice`](virtio::VirtioDevice) seam between the virtio-mmio
//!   transport and the device models, what a device gets on DRIVER_OK, the transport
//!   ([`virtio::mmio`]) and the devices (virtio-blk: [`virtio::block`], virtio-console:
//!   [`virtio::console`], virtio-rng: [`virtio::rng`]).
//! - [`event_loop`]: the one thread that does all virtio device work.
//! - [`disk`]: [`DiskImage`](disk::DiskImage), the bytes behind a block device;
//!   [`disk::inspect`] and [`disk::open`] for raw and qcow2 images, told apart by content;
//!   the qcow2 header parser ([`disk::qcow2::header`], `core` only).
//! - [`output`]: [`OutputSink`](output::OutputSink), bounded output to a host file that never
//!   blocks a device (backpressure for the virtio console, a lossy writer for the serial).
//!
//! # no_std
//!
//! With the default `std` feature off the crate builds on `core` + `alloc`
//! (`cargo build -p devices --no-default-features --target x86_64-unknown-none`, a step of
//! `cargo xtask ci`): what is left are the parts a firmware or another VMM can reuse, the
//! register state machines and wire formats, each in a file of its own
//! (`virtio/mmio/state.rs`, `disk/qcow2/header.rs`: the pattern is a `state.rs` or `wire.rs` next to the std glue,
//! declared without a `cfg`, while every module that does I/O, locks or touches guest memory
//! is behind `#[cfg(feature = "std")]`). Constants those files need are written out from the
//! spec, because `virtio-bindings` links `std`; a std test checks them against it.
//!
//! Everything a guest controls (addresses, access sizes, register values) is
//! untrusted: a misbehaving guest gets an error or a floating bus, never a
//! VMM panic.
//!
//! # Example
//!
//! A port-I/O bus with a UART at COM1 whose output is collected in a `Vec`:
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use devices::legacy::Serial;
//! use devices::{Bus, DeviceAction, NoInterrupt};
//!
//! let mut pio = Bus::new();
//! let com1 = Arc::new(Mutex::new(Serial::new(Arc::new(NoInterrupt), Vec::new())));
//! pio.insert(com1.clone(), 0x3f8, Serial::<Vec<u8>>::PORT_LEN)?;
//!
//! // The guest executes `outb 'h', 0x3f8`: THR, offset 0 of the UART.
//! assert_eq!(pio.write(0x3f8, b"h")?, DeviceAction::None);
//!
//! // The byte came out of the UART into our writer.
//! assert_eq!(com1.lock().expect("not poisoned").writer(), b"h");
//! # Ok::<(), devices::Error>(())
//! ```

#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

#[cfg(feature = "std")]
pub mod bus;
pub mod disk;
#[cfg(feature = "std")]
pub mod event_loop;
#[cfg(feature = "std")]
pub mod interrupt;
#[cfg(feature = "std")]
pub mod legacy;
#[cfg(feature = "std")]
pub mod output;
pub mod virtio;

#[cfg(feature = "std")]
pub use bus::{Bus, BusDevice, BusError, BusRange, DeviceAction};
#[cfg(feature = "std")]
pub use interrupt::{Interrupt, NoInterrupt};

/// A suggested port for [`legacy::ExitPort`]: the guest writes its exit
/// status here with `outb`. The VMM's layout (kvm-core) has the last word;
/// this is the port capsule's guests use unless told otherwise, and the one
/// definition both the VMM and capsule's guest init (`guest-init`) import.
pub const EXIT_PORT: u16 = 0x501;

/// The port capsule's guest init writes one byte to when user space starts,
/// so the VMM can time the boot up to it; next to [`EXIT_PORT`].
pub const STARTED_PORT: u16 = EXIT_PORT + 1;

/// Everything that can go wrong in this crate.
#[cfg(feature = "std")]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bus refused a range or an access.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// Raising a device's interrupt failed.
    #[error("{device}: cannot raise the interrupt")]
    Interrupt {
        /// The device, e.g. `serial`.
        device: &'static str,
        /// What the [`Interrupt`] implementation (an irqfd write, say) said.
        #[source]
        source: std::io::Error,
    },
    /// The serial receive FIFO has no room for more input.
    #[error("serial input fifo is full: {len} bytes refused")]
    SerialFifoFull {
        /// The length of the input that found no room.
        len: usize,
    },
    /// Serial input or output failed.
    #[error("serial i/o failed")]
    SerialIo(#[source] std::io::Error),
}
