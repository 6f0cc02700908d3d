//! Tier-1 tests of a whole [`Machine`] on the host's KVM (PVM included): a
//! hand-made bzImage whose "kernel" is a few 64-bit instructions goes
//! through the real builder (ACPI, zero page, CPUID, MSRs, LAPIC, long
//! mode) and the real run loop (vCPU threads, devices, stop, timeout); a
//! hand-made ELF with a PVH note whose "kernel" is a few 32-bit
//! instructions goes through the PVH path (start info, protected mode).
//!
//! Without `/dev/kvm` they print "skipped", except under `CI=true`, where
//! that is a failure.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kvm_core::{Error, InitrdPart, Machine, MachineConfig, MachineExit, MachineState, Stopper};
use vm_memory::{Bytes, GuestAddress};

mod common;
use common::Console;

fn kvm_available() -> bool {
    tests::require(Path::new("/dev/kvm").exists(), "/dev/kvm")
}

/// A bzImage (boot protocol 2.15, 64-bit entry) whose protected-mode part
/// is `code`, placed at the 64-bit entry (load address + 0x200).
fn bzimage(code: &[u8]) -> Vec<u8> {
    let mut image = vec![0u8; 1024]; // the boot sector and one setup sector
    let mut put = |offset: usize, bytes: &[u8]| {
        image[offset..offset + bytes.len()].copy_from_slice(bytes);
    };
    put(0x1f1, &[1]); // setup_sects
    put(0x1fe, &0xaa55u16.to_le_bytes()); // boot_flag
    put(0x202, b"HdrS");
    put(0x206, &0x020fu16.to_le_bytes()); // version 2.15
    put(0x211, &[1]); // loadflags: LOADED_HIGH
    put(0x214, &0x10_0000u32.to_le_bytes()); // code32_start
    put(0x22c, &0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
    put(0x236, &1u16.to_le_bytes()); // xloadflags: XLF_KERNEL_64
    put(0x238, &2048u32.to_le_bytes()); // cmdline_size
    put(0x260, &0x10_0000u32.to_le_bytes()); // init_size
    image.resize(1024 + 0x200, 0x90);
    image.extend_from_slice(code);
    image
}

/// Guest code: "ok" on COM1; then the exit port gets 42 if `rsi` points at a
/// zero page whose boot_flag is 0xaa55 and whose initrd size matches, else 99.
fn reports_its_boot_params(initrd_size: u32) -> Vec<u8> {
    let size = initrd_size.to_le_bytes();
    #[rustfmt::skip]
    let code = vec![
        0x66, 0xba, 0xf8, 0x03,                   // mov dx, 0x3f8
        0xb0, b'o', 0xee,                         // mov al, 'o'; out dx, al
        0xb0, b'k', 0xee,                         // mov al, 'k'; out dx, al
        0x66, 0x81, 0xbe, 0xfe, 0x01, 0, 0, 0x55, 0xaa, // cmp word [rsi+0x1fe], 0xaa55
        0x75, 0x0f,                               // jne bad
        0x81, 0xbe, 0x1c, 0x02, 0, 0, size[0], size[1], size[2], size[3], // cmp dword [rsi+0x21c], size
        0x75, 0x04,                               // jne bad
        0xb0, 42,                                 // mov al, 42
        0xeb, 0x02,                               // jmp report
        0xb0, 99,                                 // bad: mov al, 99
        0x66, 0xba, 0x01, 0x05,                   // report: mov dx, 0x501
        0xee,                                     // out dx, al
        0xf4,                                     // hlt
    ];
    code
}

/// Where the hand-made ELF is loaded (its one segment, from file offset 0).
const ELF_LOAD: u64 = 0x10_0000;
/// Where its code starts in the file, so the entry is `ELF_LOAD + ELF_CODE`.
const ELF_CODE: usize = 0x100;

/// An ELF64 vmlinux stand-in: one PT_LOAD segment holding the whole file at
/// [`ELF_LOAD`], with `code` at the entry; with `pvh`, the Xen note naming the
/// entry as the PVH 32-bit entry point.
fn pvh_elf(code: &[u8], pvh: bool) -> Vec<u8> {
    tests::elf::image(ELF_LOAD, ELF_CODE, code, pvh)
}

/// 32-bit guest code: "ok" on COM1; then the exit port gets 42 if `ebx`
/// points at an `hvm_start_info` whose magic is right, with one module of
/// `initrd_size` bytes, else 99.
fn reports_its_start_info(initrd_size: u32) -> Vec<u8> {
    let size = initrd_size.to_le_bytes();
    #[rustfmt::skip]
    let code = vec![
        0x66, 0xba, 0xf8, 0x03,                   // mov dx, 0x3f8
        0xb0, b'o', 0xee,                         // mov al, 'o'; out dx, al
        0xb0, b'k', 0xee,                         // mov al, 'k'; out dx, al
        0x81, 0x3b, 0x78, 0xc5, 0x6e, 0x33,       // cmp dword [ebx], 0x336ec578
        0x75, 0x16,                               // jne bad
        0x83, 0x7b, 0x0c, 0x01,                   // cmp dword [ebx+12], 1 (nr_modules)
        0x75, 0x10,                               // jne bad
        0x8b, 0x43, 0x10,                         // mov eax, [ebx+16] (modlist_paddr)
        0x81, 0x78, 0x08, size[0], size[1], size[2], size[3], // cmp dword [eax+8], size
        0x75, 0x04,                               // jne bad
        0xb0, 42,                                 // mov al, 42
        0xeb, 0x02,                               // jmp report
        0xb0, 99,                                 // bad: mov al, 99
        0x66, 0xba, 0x01, 0x05,                   // report: mov dx, 0x501
        0xee,                                     // out dx, al
        0xf4,                                     // hlt
    ];
    code
}

struct Run {
    exit: kvm_core::Result<MachineExit>,
    console: String,
    elapsed: Duration,
}

fn kernel_file(dir: &Path, code: &[u8]) -> PathBuf {
    image_file(dir, &bzimage(code))
}

fn image_file(dir: &Path, image: &[u8]) -> PathBuf {
    let path = dir.join("kernel");
    std::fs::write(&path, image).expect("write the kernel");
    path
}

fn run_machine(code: &[u8], vcpus: u8, initrd: Vec<u8>, timeout: Duration) -> Run {
    run_image(&bzimage(code), vcpus, initrd, timeout, None)
}

fn run_image(
    image: &[u8],
    vcpus: u8,
    initrd: Vec<u8>,
    timeout: Duration,
    stop_after: Option<Duration>,
) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = MachineConfig {
        memory: 32 << 20,
        vcpus,
        kernel: image_file(dir.path(), image),
        initrd: vec![InitrdPart::Bytes(initrd)],
        cmdline: "console=ttyS0".into(),
    };
    let console = Console::default();
    let mut machine = Machine::build(&config, Box::new(console.clone())).expect("build");
    let stopper = stop_after.map(|after| {
        let stopper = machine.stopper();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            stopper.stop();
        })
    });
    let start = Instant::now();
    let exit = machine.run(Some(timeout));
    let elapsed = start.elapsed();
    if let Some(stopper) = stopper {
        stopper.join().expect("stopper thread");
    }
    assert_eq!(machine.state(), MachineState::Finished);
    let console = console.text();
    eprintln!("{exit:?} after {elapsed:?}, console {console:?}");
    Run {
        exit,
        console,
        elapsed,
    }
}

fn run_code(code: &[u8], vcpus: u8) -> Run {
    run_machine(code, vcpus, Vec::new(), Duration::from_secs(10))
}

#[test]
fn the_kernel_entry_gets_the_zero_page_and_reports_through_the_exit_port() {
    if !kvm_available() {
        return;
    }
    let initrd = vec![7u8; 5000];
    let run = run_machine(
        &reports_its_boot_params(5000),
        1,
        initrd,
        Duration::from_secs(10),
    );
    assert_eq!(run.exit.expect("runs"), MachineExit::Status(42));
    assert_eq!(run.console, "ok");
}

#[test]
fn the_pvh_entry_gets_the_start_info_in_32_bit_protected_mode() {
    if !kvm_available() {
        return;
    }
    for vcpus in [1, 2] {
        let run = run_image(
            &pvh_elf(&reports_its_start_info(5000), true),
            vcpus,
            vec![7u8; 5000],
            Duration::from_secs(10),
            None,
        );
        assert_eq!(run.exit.expect("runs"), MachineExit::Status(42));
        assert_eq!(run.console, "ok");
    }
}

#[test]
fn an_elf_without_a_pvh_note_or_loading_below_1_mib_is_refused() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = MachineConfig {
        memory: 32 << 20,
        vcpus: 1,
        kernel: image_file(dir.path(), &pvh_elf(&[0xf4], false)),
        initrd: Vec::new(),
        cmdline: String::new(),
    };
    let err = Machine::build(&config, Box::new(std::io::sink())).expect_err("no PVH note");
    let message = err.to_string();
    assert!(
        message.contains(&config.kernel.display().to_string())
            && message.contains("no XEN_ELFNOTE_PHYS32_ENTRY note"),
        "{message}"
    );

    // The same ELF with its segment moved to 4 KiB, over the boot structures.
    let mut low = pvh_elf(&[0xf4], true);
    let paddr = 64 + 24; // the first program header's p_paddr
    low[paddr..paddr + 8].copy_from_slice(&0x1000u64.to_le_bytes());
    config.kernel = image_file(dir.path(), &low);
    let err = Machine::build(&config, Box::new(std::io::sink())).expect_err("below 1 MiB");
    assert!(err.to_string().contains("below 0x100000"), "{err}");
}

#[test]
fn a_second_vcpu_waiting_for_its_sipi_does_not_keep_the_machine_alive() {
    if !kvm_available() {
        return;
    }
    let run = run_machine(
        &reports_its_boot_params(0),
        2,
        Vec::new(),
        Duration::from_secs(10),
    );
    assert_eq!(run.exit.expect("runs"), MachineExit::Status(42));
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
}

#[test]
fn acpi_power_off_and_reset_end_the_machine() {
    if !kvm_available() {
        return;
    }
    // mov dx, 0x600; mov al, 5 << 2 | SLP_EN; out dx, al; hlt
    let power_off = [0x66, 0xba, 0x00, 0x06, 0xb0, 0x34, 0xee, 0xf4];
    assert_eq!(
        run_code(&power_off, 1).exit.expect("runs"),
        MachineExit::PowerOff
    );
    // mov dx, 0x602; mov al, 1; out dx, al; hlt
    let reset = [0x66, 0xba, 0x02, 0x06, 0xb0, 0x01, 0xee, 0xf4];
    assert_eq!(run_code(&reset, 1).exit.expect("runs"), MachineExit::Reset);
}

#[test]
fn a_triple_fault_ends_the_machine() {
    if !kvm_available() {
        return;
    }
    // ud2 with the boot IDT empty: #UD, then #DF, then a triple fault.
    assert_eq!(
        run_code(&[0x0f, 0x0b], 1).exit.expect("runs"),
        MachineExit::TripleFault
    );
}

#[test]
fn a_guest_halted_with_interrupts_off_ends_at_once() {
    if !kvm_available() {
        return;
    }
    // cli; hlt: what `halt -f` leaves every CPU doing. The second vCPU of the
    // two-vCPU run never gets its SIPI, so it cannot run either.
    for vcpus in [1, 2] {
        let run = run_machine(&[0xfa, 0xf4], vcpus, Vec::new(), Duration::from_secs(20));
        assert_eq!(
            run.exit.expect("runs"),
            MachineExit::Halted,
            "{vcpus} vCPUs"
        );
        assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
    }
    // An idle guest (sti; hlt; jmp back) is not halted for good: it runs to the timeout.
    let run = run_machine(
        &[0xfb, 0xf4, 0xeb, 0xfc],
        1,
        Vec::new(),
        Duration::from_millis(800),
    );
    assert_eq!(run.exit.expect("runs"), MachineExit::Timeout);
}

#[test]
fn a_spinning_guest_ends_at_the_timeout() {
    if !kvm_available() {
        return;
    }
    let run = run_machine(
        &[0xeb, 0xfe], // jmp $
        2,
        Vec::new(),
        Duration::from_millis(300),
    );
    assert_eq!(run.exit.expect("runs"), MachineExit::Timeout);
    assert!(run.elapsed < Duration::from_secs(3), "{:?}", run.elapsed);
}

#[test]
fn a_stopper_stops_every_vcpu() {
    if !kvm_available() {
        return;
    }
    let run = run_image(
        &bzimage(&[0xeb, 0xfe]), // jmp $
        2,
        Vec::new(),
        Duration::from_secs(30),
        Some(Duration::from_millis(200)),
    );
    assert_eq!(run.exit.expect("runs"), MachineExit::Stopped);
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
}

/// Where the counting guest keeps its count: 5 MiB, RAM clear of the
/// kernel at 1 MiB and of the boot structures below it.
const COUNTER: u64 = 0x50_0000;

/// 64-bit guest code that counts at [`COUNTER`] forever.
#[rustfmt::skip]
const COUNTS: [u8; 10] = [
    0x48, 0xff, 0x04, 0x25, 0x00, 0x00, 0x50, 0x00, // loop: inc qword [0x500000]
    0xeb, 0xf6,                                     // jmp loop
];

fn counting_machine(dir: &Path) -> Machine {
    let config = MachineConfig {
        memory: 32 << 20,
        vcpus: 2,
        kernel: kernel_file(dir, &COUNTS),
        initrd: Vec::new(),
        cmdline: String::new(),
    };
    Machine::build(&config, Box::new(std::io::sink())).expect("build")
}

fn count(machine: &Machine) -> u64 {
    machine
        .vm()
        .memory()
        .read_obj(GuestAddress(COUNTER))
        .expect("read the counter")
}

/// Waits up to 5 s for the count to pass `above`; returns it.
fn count_passes(machine: &Machine, above: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let count = count(machine);
        if count > above || Instant::now() > deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_paused_guest_makes_no_progress_until_resumed() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut machine = counting_machine(dir.path());
    assert_eq!(machine.state(), MachineState::Built);
    let err = machine.pause().expect_err("not started");
    assert!(
        matches!(
            err,
            Error::MachineState {
                action: "pause",
                state: MachineState::Built
            }
        ),
        "{err}"
    );

    machine.start(true).expect("start paused");
    assert_eq!(machine.state(), MachineState::Paused);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(count(&machine), 0, "a vcpu started paused ran");

    machine.resume().expect("resume");
    assert_eq!(machine.state(), MachineState::Running);
    let running = count_passes(&machine, 0);
    assert!(running > 0, "the resumed guest did not count");

    machine.pause().expect("pause");
    let paused = count(&machine);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(count(&machine), paused, "a paused guest counted");

    machine.resume().expect("resume again");
    assert!(
        count_passes(&machine, paused) > paused,
        "no count after resume"
    );
    machine.pause().expect("pause before the run");
    // The run resumes a paused machine; the stopper ends it.
    let stopper = machine.stopper();
    let stop = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        stopper.stop();
    });
    let start = Instant::now();
    assert_eq!(
        machine.run(Some(Duration::from_secs(30))).expect("runs"),
        MachineExit::Stopped
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    stop.join().expect("stopper thread");
    assert_eq!(machine.state(), MachineState::Finished);
    let err = machine.run(None).expect_err("ran already");
    assert!(
        matches!(
            err,
            Error::MachineState {
                action: "run",
                state: MachineState::Finished
            }
        ),
        "{err}"
    );
}

#[test]
fn a_stop_before_the_run_returns_at_once_without_running_the_guest() {
    if !kvm_available() {
        return;
    }
    fn assert_stopper<T: Clone + Send + Sync + 'static>() {}
    assert_stopper::<Stopper>();

    let dir = tempfile::tempdir().expect("tempdir");
    for paused in [None, Some(true), Some(false)] {
        let mut machine = counting_machine(dir.path());
        if let Some(paused) = paused {
            machine.start(paused).expect("start");
        }
        if paused != Some(false) {
            // Neither started nor running: nothing can have counted.
            machine.stopper().stop();
            machine.stopper().stop();
            let start = Instant::now();
            assert_eq!(machine.run(None).expect("runs"), MachineExit::Stopped);
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "{:?}",
                start.elapsed()
            );
            assert_eq!(count(&machine), 0, "{paused:?}: the guest ran");
        } else {
            count_passes(&machine, 0);
            machine.stopper().stop();
            assert_eq!(machine.run(None).expect("runs"), MachineExit::Stopped);
        }
        // Stopping a finished machine does nothing.
        machine.stopper().stop();
    }
}

#[test]
fn a_missing_or_bogus_kernel_is_a_clear_error() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = MachineConfig {
        memory: 32 << 20,
        vcpus: 1,
        kernel: dir.path().join("missing"),
        initrd: Vec::new(),
        cmdline: String::new(),
    };
    let err = Machine::build(&config, Box::new(std::io::sink())).expect_err("missing");
    assert!(
        err.to_string().starts_with("cannot read the kernel"),
        "{err}"
    );
    config.kernel = dir.path().join("bogus");
    std::fs::write(&config.kernel, vec![0u8; 4096]).expect("write");
    let err = Machine::build(&config, Box::new(std::io::sink())).expect_err("bogus");
    assert!(
        err.to_string()
            .contains("it is neither a bzImage nor an ELF vmlinux"),
        "{err}"
    );
    config.kernel = kernel_file(dir.path(), &[0xf4]);
    config.initrd = vec![InitrdPart::Bytes(vec![0; 40 << 20])];
    let err = Machine::build(&config, Box::new(std::io::sink())).expect_err("initrd too big");
    assert!(
        err.to_string().contains("does not fit in guest memory"),
        "{err}"
    );
    config.initrd = Vec::new();
    config.vcpus = 0;
    let err = Machine::build(&config, Box::new(std::io::sink())).expect_err("no vcpus");
    assert!(err.to_string().contains("0 vcpus"), "{err}");
}

#[test]
fn a_reader_that_stops_reading_does_not_stop_the_vmm() {
    if !kvm_available() {
        return;
    }
    // The guest floods COM1 (out dx, al in a loop) into a pipe nobody reads: the pipe fills in
    // a blink, and a VMM writing it directly would block its vCPU thread for good (Firecracker
    // PRs #2381, #2461). Through the bounded output's lossy writer the run still ends at its
    // timeout, and a stopper still stops it.
    let flood = [0x66, 0xba, 0xf8, 0x03, 0xb0, b'x', 0xee, 0xeb, 0xfd];
    let dir = tempfile::tempdir().expect("tempdir");
    let config = MachineConfig {
        memory: 32 << 20,
        vcpus: 1,
        kernel: image_file(dir.path(), &bzimage(&flood)),
        initrd: Vec::new(),
        cmdline: "console=ttyS0".into(),
    };
    let (reader, writer) = std::io::pipe().expect("pipe");
    let output = devices::output::OutputSink::new(writer, devices::output::DEFAULT_CAPACITY)
        .expect("output");
    // Fill the pipe and the buffer before the guest runs, so that every byte it writes meets a
    // stuck reader however slow the machine (the nested lab writes few in a second): the
    // writer thread moves what it can into the pipe, until a fill after a pause takes nothing.
    loop {
        let mut taken = 0;
        while let n @ 1.. = output.try_write(&[b'.'; 4096]) {
            taken += n;
        }
        std::thread::sleep(Duration::from_millis(50));
        if taken == 0 && output.try_write(b".") == 0 {
            break;
        }
    }
    for stop_after in [None, Some(Duration::from_millis(500))] {
        let mut machine = Machine::build(&config, Box::new(output.lossy_writer())).expect("build");
        if let Some(after) = stop_after {
            let stopper = machine.stopper();
            std::thread::spawn(move || {
                std::thread::sleep(after);
                stopper.stop();
            });
        }
        let start = Instant::now();
        let exit = machine.run(Some(Duration::from_secs(1))).expect("runs");
        let expected = if stop_after.is_some() {
            MachineExit::Stopped
        } else {
            MachineExit::Timeout
        };
        assert_eq!(exit, expected);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }
    // With the reader stuck the buffer never drains.
    assert!(!output.flush_for(Instant::now() + Duration::from_millis(100)));
    drop(reader);
}
