//! kvm-core: capsule's microVM monitor on KVM, built on the rust-vmm crates
//! (`kvm-ioctls`, `kvm-bindings`, `vm-memory`, `vmm-sys-util`,
//! `linux-loader`, `acpi_tables`).
//!
//! What it is: a [`Machine`] that boots a Linux kernel (a bzImage through the
//! Linux boot protocol, or an ELF vmlinux through PVH) with its initramfs
//! and command line, on guest memory, vCPUs set up for the kernel's entry,
//! an in-kernel irqchip, ACPI tables, and the legacy devices of the
//! `devices` crate (serial, i8042, the exit port, ACPI power management) on
//! its buses. Each vCPU runs on its own thread, a state machine (running,
//! paused, finished) driven by events: a machine starts paused or running,
//! pauses and resumes, and runs until the guest ends, a deadline passes or
//! a [`Stopper`] says stop. Below the machine, the pieces are usable on
//! their own: a [`Vm`] and its [`Vcpu`]s run tiny hand-written guests with
//! [`run`], which is how the tier-1 tests exercise a PVM host, where only
//! real-mode and 32-bit guest code runs (see `DESIGN.md`, "Hosts without
//! hardware virtualization"); [`detect_flavour`] says which KVM a host has.
//!
//! Virtio devices (the `devices` crate's models behind its virtio-mmio
//! transport) are attached by [`Machine::build_with_devices`]: each gets a
//! window, an interrupt line, ioeventfds and a DSDT entry ([`virtio`]), and
//! does its work on one event-loop thread that runs with the vCPUs.
//!
//! What it is not: a launcher. It knows no Plans, policies or signals; the
//! caller owns those and stops a run with a [`Stopper`].
//!
//! The modules, bottom up:
//! - [`memory`]: guest RAM (vm-memory), the one place that names its types;
//! - [`vm`]: `/dev/kvm`, the VM, its memslots, irqchip and vCPUs;
//! - [`vcpu`]: a vCPU's registers, exit dispatch ([`handle_exit`] to an
//!   [`IoHandler`]) and the vCPU thread's run loop;
//! - [`io`]: the seam to the `devices` crate (buses as an [`IoHandler`],
//!   irqfds as interrupts);
//! - [`virtio`]: attaching virtio devices (windows and IRQs from
//!   `vm-allocator`, ioeventfds, irqfds, the event loop);
//! - [`x86_64`]: the address layout, boot-time CPU state, CPUID, ACPI and
//!   the kernel loader;
//! - [`machine`]: the builder and the lifecycle of a whole microVM;
//! - [`flavour`]: hardware KVM, PVM or none, and whether stock kernels boot.
//!
//! Errors are one [`Error`] enum for the crate.
//!
//! ```no_run
//! use std::time::Duration;
//! use kvm_core::{ExitAction, IoHandler, Vm, run};
//!
//! struct Console;
//! impl IoHandler for Console {
//!     fn pio_read(&mut self, _port: u16, data: &mut [u8]) { data.fill(0xff) }
//!     fn pio_write(&mut self, _port: u16, data: &[u8]) -> ExitAction {
//!         print!("{}", String::from_utf8_lossy(data));
//!         ExitAction::Continue
//!     }
//!     fn mmio_read(&mut self, _addr: u64, data: &mut [u8]) { data.fill(0xff) }
//!     fn mmio_write(&mut self, _addr: u64, _data: &[u8]) -> ExitAction { ExitAction::Continue }
//! }
//!
//! # fn main() -> kvm_core::Result<()> {
//! let vm = Vm::new(64 << 10)?;
//! // mov al, '!' ; out 0x3f8 via dx ; hlt
//! vm.write_memory(0x1000, &[0xb0, b'!', 0xba, 0xf8, 0x03, 0xee, 0xf4])?;
//! let vcpu = vm.create_vcpu(0)?;
//! vcpu.setup_real_mode(0x1000)?;
//! assert_eq!(run(vcpu, Console, Duration::from_secs(5))?, ExitAction::Halt);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod error;
/// Which KVM this host has (hardware, PVM, none) and whether stock kernels boot on it.
pub mod flavour;
/// The seam to the `devices` crate: buses as an [`IoHandler`], irqfds as interrupts.
pub mod io;
/// A whole microVM: [`Machine::build`], its lifecycle ([`MachineState`]) and [`Machine::run`].
pub mod machine;
/// Guest memory: the one place that names vm-memory's types.
pub mod memory;
/// vCPUs: register setup, exit dispatch ([`handle_exit`]) and the vCPU thread's run loop ([`run`]).
pub mod vcpu;
/// Attaching virtio devices: windows, IRQs, ioeventfds, irqfds, the event loop.
pub mod virtio;
/// The VM: `/dev/kvm`, the VM file descriptor, guest memory and its memslots.
pub mod vm;
/// The x86_64 machine: layout, boot-time CPU state, CPUID, ACPI, the Linux loader.
pub mod x86_64;

pub use error::{Error, Result};
pub use flavour::{KvmFlavour, detect_flavour, require_stock_kernel_support};
pub use io::{DeviceBuses, IrqFd};
pub use kvm_ioctls::VcpuExit;
pub use machine::{Machine, MachineConfig, MachineExit, MachineState, Stopper};
pub use memory::{GuestMemory, MemoryBacking, RamMapping, create_guest_memory};
pub use vcpu::{ExitAction, IoHandler, Vcpu, handle_exit, run};
pub use vm::Vm;
pub use x86_64::loader::{InitrdPart, KernelFormat, check_kernel};
