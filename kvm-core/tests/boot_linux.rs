//! Tier-2 tests: boot the stock Debian kernel (`cargo xtask guest`) on a
//! [`Machine`] to a hand-written init, as the bzImage Debian ships and as
//! the ELF vmlinux inside it through PVH. A stock 64-bit kernel cannot boot
//! on a PVM host, so these are `#[ignore]`d on the host and `cargo xtask lab`
//! runs them, ignored ones included, on the lab's nested hardware KVM.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kvm_core::{InitrdPart, Machine, MachineConfig, MachineExit};

mod common;
use common::Console;

/// The bzImage, as Debian ships it.
const BZIMAGE: &str = "vmlinuz";
/// The ELF inside it, booted through PVH.
const VMLINUX: &str = "vmlinux";

/// Where `cargo xtask guest` put the kernel `name` (`$CAPSULE_GUEST_DIR`, the lab sets it).
fn kernel(name: &str) -> PathBuf {
    let dir = std::env::var_os("CAPSULE_GUEST_DIR")
        .map(PathBuf::from)
        .expect("CAPSULE_GUEST_DIR names the guest artifacts (cargo xtask lab sets it)");
    dir.join(name)
}

/// A static ELF init for the guest: `ioperm(0x501, 1, 1)`, `outb status, 0x501`, spin.
fn exit_port_init(status: u8) -> Vec<u8> {
    #[rustfmt::skip]
    let code = [
        0xb8, 0xad, 0x00, 0x00, 0x00, // mov eax, 173 (ioperm)
        0xbf, 0x01, 0x05, 0x00, 0x00, // mov edi, 0x501
        0xbe, 0x01, 0x00, 0x00, 0x00, // mov esi, 1
        0xba, 0x01, 0x00, 0x00, 0x00, // mov edx, 1
        0x0f, 0x05,                   // syscall
        0x66, 0xba, 0x01, 0x05,       // mov dx, 0x501
        0xb0, status,                 // mov al, status
        0xee,                         // out dx, al
        0xeb, 0xfe,                   // jmp $
    ];
    tests::elf::executable(&code)
}

/// An initramfs holding only `/init`.
fn initramfs(init: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    let entries = [(
        cpio::NewcBuilder::new("init").mode(0o100_755),
        std::io::Cursor::new(init),
    )];
    cpio::write_cpio(entries.into_iter(), &mut out).expect("write the cpio");
    out
}

/// Boots the kernel `name` to completion; prints how long it took, building
/// the machine (loading the kernel) included, as the boot-time measurement.
fn boot(name: &str, vcpus: u8, initrd: Vec<u8>, cmdline: &str) -> (MachineExit, String) {
    let console = Console::default();
    let config = MachineConfig {
        memory: 256 << 20,
        vcpus,
        kernel: kernel(name),
        initrd: vec![InitrdPart::Bytes(initrd)],
        cmdline: cmdline.into(),
    };
    let start = Instant::now();
    let mut machine = Machine::build(&config, Box::new(console.clone())).expect("build");
    let built = start.elapsed();
    let exit = machine.run(Some(Duration::from_secs(90))).expect("run");
    eprintln!(
        "{name}: {vcpus} vcpu(s): {exit:?} after {:?} (build {built:?})",
        start.elapsed()
    );
    let log = console.text();
    (exit, log)
}

const CMDLINE: &str = "console=ttyS0 8250.nr_uarts=1 reboot=acpi panic=-1 pci=off";

#[test]
#[ignore = "boots a stock kernel: needs hardware KVM (cargo xtask lab runs it)"]
fn the_debian_kernel_boots_to_init_which_reports_its_status() {
    let (exit, log) = boot(BZIMAGE, 1, initramfs(exit_port_init(42)), CMDLINE);
    assert_eq!(exit, MachineExit::Status(42), "console:\n{log}");
    assert!(log.contains("Linux version"), "console:\n{log}");
}

#[test]
#[ignore = "boots a stock kernel: needs hardware KVM (cargo xtask lab runs it)"]
fn the_debian_vmlinux_boots_through_pvh_to_init_which_reports_its_status() {
    let (exit, log) = boot(VMLINUX, 1, initramfs(exit_port_init(42)), CMDLINE);
    assert_eq!(exit, MachineExit::Status(42), "console:\n{log}");
    assert!(log.contains("Linux version"), "console:\n{log}");
}

#[test]
#[ignore = "boots a stock kernel: needs hardware KVM (cargo xtask lab runs it)"]
fn two_vcpus_come_up() {
    for name in [BZIMAGE, VMLINUX] {
        let (exit, log) = boot(name, 2, initramfs(exit_port_init(7)), CMDLINE);
        assert_eq!(exit, MachineExit::Status(7), "{name} console:\n{log}");
        assert!(
            log.contains("Brought up 1 node, 2 CPUs"),
            "{name} console:\n{log}"
        );
    }
}

#[test]
#[ignore = "boots a stock kernel: needs hardware KVM (cargo xtask lab runs it)"]
fn a_kernel_without_init_panics_and_resets() {
    let (exit, log) = boot(
        BZIMAGE,
        1,
        initramfs(b"not an executable".to_vec()),
        CMDLINE,
    );
    assert_eq!(exit, MachineExit::Reset, "console:\n{log}");
    assert!(log.contains("Kernel panic"), "console:\n{log}");
}
