//! Tier-1 tests: tiny hand-assembled real-mode guests on the host's KVM
//! (PVM included). Each guest is a few instructions, assembled by hand with
//! every instruction commented; every run has a deadline, so a hung guest
//! fails in seconds.
//!
//! They need `/dev/kvm`: without it they print "skipped: needs /dev/kvm",
//! except under `CI=true`, where a missing `/dev/kvm` is a failure.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvm_core::{Error, ExitAction, IoHandler, KvmFlavour, Vm, detect_flavour, run};

/// Where the guests are loaded: 4 KiB in, clear of the real-mode IVT.
const ENTRY: u64 = 0x1000;
/// Guest RAM: 64 KiB at 0, so 0x20000 is outside RAM and an MMIO access.
const RAM_SIZE: usize = 64 << 10;
/// A generous deadline for guests that do end: under PVM they halt in ~1 ms.
const RUN_TIMEOUT: Duration = Duration::from_secs(5);
/// The exit port: a byte written here ends the run with that status.
const EXIT_PORT: u16 = kvm_core::x86_64::layout::EXIT_PORT;
/// COM1's data register.
const COM1: u16 = 0x3f8;

/// True when `/dev/kvm` exists; otherwise skips (or panics under CI=true).
fn kvm_available() -> bool {
    tests::require(Path::new("/dev/kvm").exists(), "/dev/kvm")
}

/// Records port and MMIO traffic; the exit port returns the byte written.
#[derive(Debug, Default)]
struct Log {
    /// (port, bytes) of every `out`.
    pio_writes: Vec<(u16, Vec<u8>)>,
    /// (address, bytes) of every MMIO write.
    mmio_writes: Vec<(u64, Vec<u8>)>,
    /// Addresses of every MMIO read.
    mmio_reads: Vec<u64>,
}

impl Log {
    /// All bytes written to `port`, in order.
    fn written_to(&self, port: u16) -> Vec<u8> {
        self.pio_writes
            .iter()
            .filter(|(p, _)| *p == port)
            .flat_map(|(_, data)| data.iter().copied())
            .collect()
    }
}

/// The [`IoHandler`] the vCPU thread gets: a shared [`Log`] the test reads afterwards.
#[derive(Debug, Default, Clone)]
struct Recorder(Arc<Mutex<Log>>);

impl Recorder {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.0.lock().expect("not poisoned")
    }
}

impl IoHandler for Recorder {
    fn pio_read(&mut self, _port: u16, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn pio_write(&mut self, port: u16, data: &[u8]) -> ExitAction {
        self.log().pio_writes.push((port, data.to_vec()));
        match (port, data.first()) {
            (EXIT_PORT, Some(&status)) => ExitAction::Exit(status),
            _ => ExitAction::Continue,
        }
    }
    fn mmio_read(&mut self, addr: u64, data: &mut [u8]) {
        self.log().mmio_reads.push(addr);
        data.fill(0x55);
    }
    fn mmio_write(&mut self, addr: u64, data: &[u8]) -> ExitAction {
        self.log().mmio_writes.push((addr, data.to_vec()));
        ExitAction::Continue
    }
}

/// Boots `code` at [`ENTRY`] in real mode and runs it with `timeout`.
fn run_guest(code: &[u8], timeout: Duration) -> (kvm_core::Result<ExitAction>, Log, Duration) {
    let vm = Vm::new(RAM_SIZE).expect("create the vm");
    vm.write_memory(ENTRY, code).expect("load the guest code");
    let vcpu = vm.create_vcpu(0).expect("create vcpu 0");
    vcpu.setup_real_mode(ENTRY).expect("set up real mode");
    let io = Recorder::default();
    let start = Instant::now();
    let result = run(vcpu, io.clone(), timeout);
    let elapsed = start.elapsed();
    eprintln!("guest ran {elapsed:?}: {result:?}");
    let log = std::mem::take(&mut *io.log());
    (result, log, elapsed)
}

#[test]
fn serial_hi_then_hlt() {
    if !kvm_available() {
        return;
    }
    let code = [
        0xba, 0xf8, 0x03, // mov dx, 0x3f8
        0xb0, b'h', //       mov al, 'h'
        0xee, //             out dx, al
        0xb0, b'i', //       mov al, 'i'
        0xee, //             out dx, al
        0xf4, //             hlt
    ];
    let (result, io, _) = run_guest(&code, RUN_TIMEOUT);
    assert_eq!(result.expect("run"), ExitAction::Halt);
    assert_eq!(io.written_to(COM1), b"hi");
}

#[test]
fn exit_port_ends_the_run_with_the_status() {
    if !kvm_available() {
        return;
    }
    let code = [
        0xba, 0x01, 0x05, // mov dx, 0x501
        0xb0, 0x07, //       mov al, 7
        0xee, //             out dx, al
        0xf4, //             hlt (not reached)
    ];
    let (result, io, elapsed) = run_guest(&code, RUN_TIMEOUT);
    assert_eq!(result.expect("run"), ExitAction::Exit(7));
    assert_eq!(io.written_to(EXIT_PORT), [7]);
    // The deadline does not hold up a run that ended before it.
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[test]
fn access_outside_ram_is_mmio() {
    if !kvm_available() {
        return;
    }
    let code = [
        0xb8, 0x00, 0x20, //             mov ax, 0x2000
        0x8e,
        0xd8, //                   mov ds, ax          ; ds base 0x20000, past the 64 KiB of RAM
        0xc6, 0x06, 0x00, 0x00, 0x2a, // mov byte [0x0000], 0x2a  ; MMIO write at 0x20000
        0xa0, 0x01, 0x00, //             mov al, [0x0001]    ; MMIO read at 0x20001
        0xba, 0xf8, 0x03, //             mov dx, 0x3f8
        0xee, //                         out dx, al          ; echo what the read returned
        0xf4, //                         hlt
    ];
    let (result, io, _) = run_guest(&code, RUN_TIMEOUT);
    assert_eq!(result.expect("run"), ExitAction::Halt);
    assert_eq!(io.mmio_writes, [(0x20000, vec![0x2a])]);
    assert_eq!(io.mmio_reads, [0x20001]);
    assert_eq!(io.written_to(COM1), [0x55]);
}

#[test]
fn endless_loop_times_out() {
    if !kvm_available() {
        return;
    }
    let code = [
        0xeb, 0xfe, // jmp $
    ];
    let timeout = Duration::from_secs(1);
    let (result, io, elapsed) = run_guest(&code, timeout);
    assert!(
        matches!(result, Err(Error::Timeout(t)) if t == timeout),
        "{result:?}"
    );
    assert!(
        elapsed >= timeout,
        "returned before the deadline: {elapsed:?}"
    );
    assert!(
        elapsed < timeout + Duration::from_secs(2),
        "deadline missed: {elapsed:?}"
    );
    assert!(io.pio_writes.is_empty());
}

/// A guest that exits to user space all the time: the deadline's kick often
/// lands between two `KVM_RUN`s, where it would be lost; the kick's
/// `immediate_exit` must still end the run on time.
#[test]
fn busy_io_loop_times_out() {
    if !kvm_available() {
        return;
    }
    let code = [
        0xba, 0x80, 0x00, // mov dx, 0x80       ; the POST port
        0xee, //             loop: out dx, al
        0xeb, 0xfd, //       jmp loop
    ];
    let timeout = Duration::from_millis(500);
    let (result, io, elapsed) = run_guest(&code, timeout);
    assert!(
        matches!(result, Err(Error::Timeout(t)) if t == timeout),
        "{result:?}"
    );
    assert!(
        elapsed < timeout + Duration::from_secs(2),
        "deadline missed: {elapsed:?}"
    );
    eprintln!("{} port writes before the deadline", io.pio_writes.len());
    assert!(!io.pio_writes.is_empty());
}

/// Holds the vCPU thread in user space, handling the guest's first `out`,
/// for longer than the run's deadline.
struct SlowFirstWrite {
    delay: Duration,
    writes: usize,
}

impl IoHandler for SlowFirstWrite {
    fn pio_read(&mut self, _port: u16, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn pio_write(&mut self, _port: u16, _data: &[u8]) -> ExitAction {
        self.writes += 1;
        if self.writes == 1 {
            // The deadline's kick lands here, between two KVM_RUNs.
            std::thread::sleep(self.delay);
        }
        ExitAction::Continue
    }
    fn mmio_read(&mut self, _addr: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn mmio_write(&mut self, _addr: u64, _data: &[u8]) -> ExitAction {
        ExitAction::Continue
    }
}

/// The kick that ends a run lands while the vCPU thread handles an exit,
/// and the guest then spins in `jmp $` without another exit: only the kick
/// having set `kvm_run.immediate_exit` ends the run, once, not a repeated kick.
#[test]
fn a_kick_between_two_kvm_runs_is_not_lost() {
    if !kvm_available() {
        return;
    }
    let code = [
        0xe6, 0x80, // out 0x80, al
        0xeb, 0xfe, // jmp $
    ];
    let vm = Vm::new(RAM_SIZE).expect("create the vm");
    vm.write_memory(ENTRY, &code).expect("load the guest code");
    let vcpu = vm.create_vcpu(0).expect("create vcpu 0");
    vcpu.setup_real_mode(ENTRY).expect("set up real mode");
    let io = SlowFirstWrite {
        delay: Duration::from_millis(300),
        writes: 0,
    };
    let timeout = Duration::from_millis(50);
    // If the kick were lost the run would spin forever: wait on another thread.
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(run(vcpu, io, timeout)));
    let result = result
        .recv_timeout(Duration::from_secs(10))
        .expect("the run ended: the kick was not lost");
    assert!(
        matches!(result, Err(Error::Timeout(t)) if t == timeout),
        "{result:?}"
    );
}

/// A guest that faults with nowhere to go ends the run: on hardware KVM the
/// #UD finds no IVT entry (limit 0), escalates to a triple fault and gives
/// `Shutdown`; PVM's emulator reports KVM_EXIT_INTERNAL_ERROR for `ud2` in
/// real mode, which `handle_exit` turns into an error naming the exit.
/// Either way: no hang, no panic.
#[test]
fn faulting_guest_ends_the_run() {
    if !kvm_available() {
        return;
    }
    let code = [
        0x0f, 0x01, 0x1e, 0x00,
        0x02, // lidt [0x0200]  ; the memory there is zero: IVT base 0, limit 0
        0x0f, 0x0b, //                   ud2            ; #UD with no IVT entry
    ];
    let (result, _, _) = run_guest(&code, RUN_TIMEOUT);
    match result {
        Ok(ExitAction::Shutdown) => {}
        Err(Error::UnhandledExit(exit)) => assert_eq!(exit, "InternalError"),
        other => panic!("expected shutdown or an internal-error exit, got {other:?}"),
    }
}

#[test]
fn real_mode_entry_must_be_below_one_mib() {
    if !kvm_available() {
        return;
    }
    let vm = Vm::new(RAM_SIZE).expect("create the vm");
    let vcpu = vm.create_vcpu(0).expect("create vcpu 0");
    let err = vcpu
        .setup_real_mode(0x10_0000)
        .expect_err("1 MiB is out of reach");
    assert!(matches!(err, Error::RealModeEntry(0x10_0000)), "{err}");
}

#[test]
fn a_host_with_dev_kvm_has_a_flavour() {
    if !kvm_available() {
        return;
    }
    let flavour = detect_flavour();
    eprintln!("kvm flavour: {flavour:?}");
    assert_ne!(flavour, KvmFlavour::None);
}

/// Guest RAM shared through a memfd (what a vhost-user backend maps): KVM runs the guest on
/// it, and a byte the guest stores is there when read through the fd, not the VMM's mapping.
#[test]
fn a_guest_runs_on_shared_memory_and_its_writes_show_through_the_fd() {
    if !kvm_available() {
        return;
    }
    let vm = Vm::with_memory(RAM_SIZE, kvm_core::MemoryBacking::Shared).expect("create the vm");
    let code = [
        0xc6, 0x06, 0x00, 0x20, 0x5a, // mov byte [0x2000], 0x5a
        0xba, 0x01, 0x05, //             mov dx, 0x501
        0xb0, 0x03, //                   mov al, 3
        0xee, //                         out dx, al
        0xf4, //                         hlt (not reached)
    ];
    vm.write_memory(ENTRY, &code).expect("load the guest code");
    let vcpu = vm.create_vcpu(0).expect("create vcpu 0");
    vcpu.setup_real_mode(ENTRY).expect("set up real mode");
    let result = run(vcpu, Recorder::default(), RUN_TIMEOUT);
    assert_eq!(result.expect("run"), ExitAction::Exit(3));
    let region = vm_memory::GuestMemoryBackend::iter(vm.memory())
        .next()
        .expect("one region");
    let file = region.file_offset().expect("shared memory has a file");
    let mut byte = [0u8];
    std::os::unix::fs::FileExt::read_exact_at(file.file(), &mut byte, 0x2000)
        .expect("read through the memfd");
    assert_eq!(byte, [0x5a]);
}
