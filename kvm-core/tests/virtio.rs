//! Tier-1 tests of virtio devices in a whole [`Machine`] on the host's KVM (PVM included): a
//! hand-made PVH "kernel" of a few 32-bit instructions reads the virtio-mmio registers
//! through real MMIO exits, and the run's end with a device that panics on the event loop.
//!
//! Without `/dev/kvm` they print "skipped", except under `CI=true`, where that is a failure.

use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use devices::event_loop::EventLoopError;
use devices::virtio::rng::Rng;
use devices::virtio::{ActivateError, Activation, HostError, QueueError, VirtioDevice};
use kvm_core::x86_64::layout::{ACPI_END, ACPI_START, VIRTIO_MMIO_SIZE, VIRTIO_MMIO_START};
use kvm_core::{Error, InitrdPart, Machine, MachineConfig, MachineExit};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

mod common;
use common::Console;

fn kvm_available() -> bool {
    tests::require(Path::new("/dev/kvm").exists(), "/dev/kvm")
}

/// A PVH ELF whose 32-bit entry runs `code`, on 32 MiB and one vCPU.
fn config(dir: &Path, code: &[u8]) -> MachineConfig {
    let kernel = dir.join("kernel");
    std::fs::write(&kernel, tests::elf::image(0x10_0000, 0x100, code, true)).expect("kernel");
    MachineConfig {
        memory: 32 << 20,
        vcpus: 1,
        kernel,
        initrd: vec![InitrdPart::Bytes(Vec::new())],
        cmdline: String::new(),
    }
}

/// 32-bit guest code: the exit port gets 42 if the first window's MagicValue is "virt" and
/// both windows' DeviceID is 4 (entropy), else 99.
#[rustfmt::skip]
const READS_TWO_RNG_WINDOWS: &[u8] = &[
    0xa1, 0x00, 0x00, 0x00, 0xd0,       // mov eax, [0xd0000000] (MagicValue)
    0x3d, 0x76, 0x69, 0x72, 0x74,       // cmp eax, 0x74726976
    0x75, 0x18,                         // jne bad
    0xa1, 0x08, 0x00, 0x00, 0xd0,       // mov eax, [0xd0000008] (DeviceID)
    0x83, 0xf8, 0x04,                   // cmp eax, 4
    0x75, 0x0e,                         // jne bad
    0xa1, 0x08, 0x10, 0x00, 0xd0,       // mov eax, [0xd0001008] (the next window's DeviceID)
    0x83, 0xf8, 0x04,                   // cmp eax, 4
    0x75, 0x04,                         // jne bad
    0xb0, 42,                           // mov al, 42
    0xeb, 0x02,                         // jmp report
    0xb0, 99,                           // bad: mov al, 99
    0x66, 0xba, 0x01, 0x05,             // report: mov dx, 0x501
    0xee,                               // out dx, al
    0xf4,                               // hlt
];

#[test]
fn a_guest_reads_the_transports_registers_through_mmio() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let console = Console::default();
    let mut machine = Machine::build_with_devices(
        &config(dir.path(), READS_TWO_RNG_WINDOWS),
        Box::new(console.clone()),
        vec![Box::new(Rng::new()), Box::new(Rng::new())],
    )
    .expect("build");

    // The DSDT declares both, in order, each at its window.
    let mut acpi = vec![0; (ACPI_END - ACPI_START) as usize];
    machine
        .vm()
        .memory()
        .read_slice(&mut acpi, GuestAddress(ACPI_START))
        .expect("ACPI area");
    let find = |needle: &[u8]| {
        acpi.windows(needle.len())
            .position(|w| w == needle)
            .unwrap_or_else(|| panic!("{needle:x?} not in the ACPI tables"))
    };
    let first = find(&(VIRTIO_MMIO_START as u32).to_le_bytes());
    let second = find(&((VIRTIO_MMIO_START + VIRTIO_MMIO_SIZE) as u32).to_le_bytes());
    assert!(first < second, "declared in the order given");
    assert_eq!(acpi.windows(8).filter(|w| w == b"LNRO0005").count(), 2);

    let exit = machine.run(Some(Duration::from_secs(10)));
    assert_eq!(
        exit.expect("runs"),
        MachineExit::Status(42),
        "console {:?}",
        console.text()
    );
}

#[test]
fn more_devices_than_interrupt_lines_is_an_error_naming_the_device() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let devices: Vec<Box<dyn VirtioDevice>> = (0..20).map(|_| Box::new(Rng::new()) as _).collect();
    let error = Machine::build_with_devices(
        &config(dir.path(), &[0xf4]),
        Box::new(Console::default()),
        devices,
    )
    .expect_err("19 lines for 20 devices");
    assert!(
        matches!(error, Error::VirtioIrq { ref device, .. } if device == "virtio-rng #19"),
        "{error}"
    );
}

/// A device whose host fd is ready at once and whose `host_ready` panics.
#[derive(Debug)]
struct Panics(EventFd);

impl VirtioDevice for Panics {
    fn device_type(&self) -> u32 {
        4
    }
    fn device_features(&self) -> u64 {
        1 << 32
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[8]
    }
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn activate(&mut self, _activation: Activation) -> Result<(), ActivateError> {
        Ok(())
    }
    fn queue_notified(&mut self, _index: usize) -> Result<(), QueueError> {
        Ok(())
    }
    fn host_fds(&self) -> Vec<RawFd> {
        vec![self.0.as_raw_fd()]
    }
    fn host_ready(&mut self, _fd: RawFd) -> Result<(), HostError> {
        panic!("device bug");
    }
    fn reset(&mut self) {}
}

#[test]
fn a_device_that_panics_ends_the_run_with_an_error() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ready = EventFd::new(0).expect("eventfd");
    ready.write(1).expect("ready");
    let mut machine = Machine::build_with_devices(
        &config(dir.path(), &[0xeb, 0xfe]), // jmp $
        Box::new(Console::default()),
        vec![Box::new(Panics(ready))],
    )
    .expect("build");
    let start = Instant::now();
    let exit = machine.run(Some(Duration::from_secs(20)));
    assert!(
        matches!(exit, Err(Error::EventLoop(EventLoopError::Panicked(ref message))) if message == "device bug"),
        "{exit:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(10), "not a hang");
}
