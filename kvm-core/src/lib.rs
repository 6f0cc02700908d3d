//! kvm-core: capsule's thin layer over KVM, built on the rust-vmm crates
//! (`kvm-ioctls`, `kvm-bindings`, `vm-memory`, `vmm-sys-util`).
//!
//! What it is: guest memory and its KVM memslots, the VM, vCPUs set up for a
//! given entry, the vCPU run loop with a watchdog, exit dispatch to an
//! [`IoHandler`], and detection of the host's KVM flavour (hardware or PVM).
//!
//! What it is not (yet): a boot loader. 64-bit setup (GDT, page tables,
//! CPUID, MSRs, the Linux boot protocol), the irqchip and the device models
//! come in later slices; the `devices` crate's `Bus` will implement
//! [`IoHandler`]. Today it runs tiny real-mode guests, which is what the
//! tier-1 tests on a PVM host exercise (see `DESIGN.md`, "Hosts without
//! hardware virtualization").
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

mod error;
/// Which KVM this host has (hardware, PVM, none) and whether stock kernels boot on it.
pub mod flavour;
/// The seam to the `devices` crate: buses as an [`IoHandler`], irqfds as interrupts.
pub mod io;
/// A whole microVM: [`Machine::build`] and [`Machine::run`].
pub mod machine;
/// Guest memory: the one place that names vm-memory's types.
pub mod memory;
/// vCPUs: register setup, exit dispatch ([`handle_exit`]) and the run loop ([`run`]).
pub mod vcpu;
/// The VM: `/dev/kvm`, the VM file descriptor, guest memory and its memslots.
pub mod vm;
/// The x86_64 machine: layout, boot-time CPU state, CPUID, ACPI, Linux boot.
pub mod x86_64;

pub use error::{Error, Result};
pub use flavour::{KvmFlavour, detect_flavour, require_stock_kernel_support};
pub use io::{DeviceBuses, IrqFd};
pub use kvm_ioctls::VcpuExit;
pub use machine::{Machine, MachineConfig, MachineExit, MachineState, Stopper};
pub use memory::{GuestMemory, RamMapping, create_guest_memory};
pub use vcpu::{ExitAction, IoHandler, Vcpu, handle_exit, run};
pub use vm::Vm;
pub use x86_64::loader::InitrdPart;
