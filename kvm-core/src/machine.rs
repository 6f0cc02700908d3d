//! A whole microVM: the builder that assembles it in one function, and the
//! run loop that drives one thread per vCPU until the guest ends.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use vmm_sys_util::signal::Killable;

use devices::legacy::{AcpiPm, ExitPort, I8042, Serial};
use devices::{Bus, BusDevice, DeviceAction};
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;

use crate::io::{DeviceBuses, IrqFd};
use crate::vcpu::{ExitAction, Vcpu, handle_exit};
use crate::watchdog::{install_kick_handler, kick_signal};
use crate::x86_64::acpi::{AcpiConfig, create_acpi_tables};
use crate::x86_64::boot::{InitrdPart, KernelEntry, load_linux};
use crate::x86_64::layout::*;
use crate::x86_64::{cpuid, regs};
use crate::{Error, Result, Vm};

/// What to boot, and on how much machine.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// Guest RAM in bytes (a multiple of 4 KiB).
    pub memory: usize,
    /// Number of vCPUs (1 to 254).
    pub vcpus: u8,
    /// A bzImage (boot protocol 2.12 or later, 64-bit entry), or an ELF
    /// vmlinux with a PVH entry (`CONFIG_PVH`), told apart by the ELF magic.
    pub kernel: PathBuf,
    /// The initramfs, as archives to concatenate.
    pub initrd: Vec<InitrdPart>,
    /// The kernel command line.
    pub cmdline: String,
}

/// Why a guest stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineExit {
    /// The guest wrote its exit status to the exit port.
    Status(u8),
    /// The guest powered off (ACPI S5) without reporting a status.
    PowerOff,
    /// The guest reset itself (a reboot, or a kernel panic with `panic=-1`).
    Reset,
    /// A vCPU triple-faulted.
    TripleFault,
    /// The deadline passed first.
    Timeout,
    /// The caller's stop flag was raised (a signal to the VMM, say).
    Stopped,
}

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// The guest's write to the "user space reached" port, timestamped.
#[derive(Debug, Default)]
struct UserSpaceMark(Arc<OnceLock<Instant>>);

impl BusDevice for UserSpaceMark {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, _offset: u64, _data: &[u8]) -> DeviceAction {
        let _ = self.0.set(Instant::now());
        DeviceAction::None
    }
}

/// A built microVM, ready to run.
///
/// ```no_run
/// use std::sync::atomic::AtomicBool;
/// use std::time::Duration;
/// use kvm_core::{InitrdPart, Machine, MachineConfig, MachineExit};
///
/// # fn main() -> kvm_core::Result<()> {
/// let config = MachineConfig {
///     memory: 256 << 20,
///     vcpus: 2,
///     kernel: "/var/cache/capsule/vmlinuz".into(),
///     initrd: vec![InitrdPart::File("/var/cache/capsule/initramfs.cpio".into())],
///     cmdline: "console=ttyS0 quiet".into(),
/// };
/// let mut machine = Machine::build(&config, Box::new(std::io::stdout()))?;
/// let exit = machine.run(Some(Duration::from_secs(30)), &AtomicBool::new(false))?;
/// assert_eq!(exit, MachineExit::Status(0));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Machine {
    vcpus: Vec<Vcpu>,
    buses: DeviceBuses,
    user_space: Arc<OnceLock<Instant>>,
    // Last: vCPUs and irqfds go before the VM that owns them.
    vm: Vm,
}

impl Machine {
    /// Assembles the VM: memory, irqchip, devices, ACPI, the kernel and its
    /// initramfs, and every vCPU's registers. Nothing runs yet.
    pub fn build(config: &MachineConfig, console: Box<dyn Write + Send>) -> Result<Machine> {
        if config.vcpus == 0 || config.vcpus > 254 {
            return Err(Error::VcpuCount(config.vcpus));
        }
        let phase = Instant::now();
        let vm = Vm::new(config.memory)?;
        vm.create_irqchip()?;
        tracing::debug!(ms = ms_since(phase), "VM and guest memory created");

        let user_space = Arc::new(OnceLock::new());
        let serial_irq = Arc::new(IrqFd::new(vm.fd(), SERIAL_IRQ)?);
        let mut pio = Bus::new();
        let mut insert = |device: Arc<Mutex<dyn BusDevice>>, port: u16, len: u64| {
            pio.insert(device, u64::from(port), len)
                .map_err(Error::Device)
        };
        insert(
            Arc::new(Mutex::new(Serial::new(serial_irq, console))),
            SERIAL_PORT,
            u64::from(SERIAL_PORT_LEN),
        )?;
        insert(Arc::new(Mutex::new(I8042)), I8042_PORT, I8042::PORT_LEN)?;
        insert(
            Arc::new(Mutex::new(ExitPort)),
            EXIT_PORT,
            ExitPort::PORT_LEN,
        )?;
        insert(
            Arc::new(Mutex::new(UserSpaceMark(Arc::clone(&user_space)))),
            STARTED_PORT,
            1,
        )?;
        insert(
            Arc::new(Mutex::new(AcpiPm::new(
                ACPI_S5_SLEEP_TYPE,
                ACPI_RESET_VALUE,
            ))),
            ACPI_SLEEP_CONTROL_PORT,
            AcpiPm::PORT_LEN,
        )?;
        let buses = DeviceBuses {
            pio: Arc::new(pio),
            mmio: Arc::new(Bus::new()),
        };

        let rsdp = create_acpi_tables(
            vm.memory(),
            &AcpiConfig {
                vcpus: config.vcpus,
                virtio_devices: Vec::new(),
            },
        )?;
        let phase = Instant::now();
        let kernel = load_linux(
            vm.memory(),
            &config.kernel,
            &config.initrd,
            &config.cmdline,
            rsdp,
        )?;
        tracing::debug!(ms = ms_since(phase), "kernel and initramfs loaded");
        let phase = Instant::now();

        let supported = vm.supported_cpuid(KVM_MAX_CPUID_ENTRIES)?;
        let mut vcpus = Vec::with_capacity(usize::from(config.vcpus));
        for id in 0..config.vcpus {
            let vcpu = vm.create_vcpu(id)?;
            let mut cpuid = supported.clone();
            cpuid::normalize(&mut cpuid, id, config.vcpus);
            vcpu.fd()
                .set_cpuid2(&cpuid)
                .map_err(|source| Error::Ioctl {
                    ioctl: "KVM_SET_CPUID2",
                    source,
                })?;
            regs::setup_msrs(vcpu.fd())?;
            regs::setup_fpu(vcpu.fd())?;
            regs::setup_lapic(vcpu.fd())?;
            // The other vCPUs wait in the in-kernel LAPIC for the boot
            // vCPU's INIT/SIPI, which sets their registers.
            if id == 0 {
                match kernel {
                    KernelEntry::Linux64 { entry, boot_params } => {
                        regs::setup_long_mode(vcpu.fd(), vm.memory(), entry, boot_params)?;
                    }
                    KernelEntry::Pvh { entry, start_info } => {
                        regs::setup_protected_mode(vcpu.fd(), vm.memory(), entry, start_info)?;
                    }
                }
            }
            vcpus.push(vcpu);
        }
        tracing::debug!(ms = ms_since(phase), "vCPUs set up");
        Ok(Machine {
            vcpus,
            buses,
            user_space,
            vm,
        })
    }

    /// When the guest's init reported reaching user space (its first write
    /// to [`STARTED_PORT`]), if it has.
    pub fn user_space_reached(&self) -> Option<Instant> {
        self.user_space.get().copied()
    }

    /// Bytes of guest RAM resident on the host (what the guest has touched).
    pub fn guest_memory_resident(&self) -> u64 {
        crate::memory::resident_bytes(self.vm.memory())
    }

    /// The VM, for what the builder does not wrap.
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    /// Runs every vCPU on its own thread until the guest ends, `timeout`
    /// passes, or `stop` is raised; then stops all vCPUs and joins them.
    /// A machine runs once.
    pub fn run(&mut self, timeout: Option<Duration>, stop: &AtomicBool) -> Result<MachineExit> {
        install_kick_handler()?;
        let halt = Arc::new(AtomicBool::new(false));
        let (report, reports) = mpsc::channel::<Result<ExitAction>>();
        let mut threads = Vec::with_capacity(self.vcpus.len());
        for vcpu in self.vcpus.drain(..) {
            let spawned = spawn_vcpu(vcpu, self.buses.clone(), Arc::clone(&halt), report.clone());
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(error) => {
                    stop_vcpus(&halt, threads);
                    return Err(error);
                }
            }
        }
        drop(report);

        let deadline = timeout.map(|t| Instant::now() + t);
        let outcome = loop {
            if stop.load(Ordering::SeqCst) {
                break Ok(MachineExit::Stopped);
            }
            let tick = Duration::from_millis(50);
            let wait = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) => left.min(tick),
                    None => break Ok(MachineExit::Timeout),
                },
                None => tick,
            };
            match reports.recv_timeout(wait) {
                Ok(Ok(action)) => break Ok(machine_exit(action)),
                Ok(Err(error)) => break Err(error),
                Err(RecvTimeoutError::Timeout) => {}
                // Every vCPU thread ended without a report: cannot happen
                // (each reports before it returns), but never spin on it.
                Err(RecvTimeoutError::Disconnected) => break Ok(MachineExit::Stopped),
            }
        };
        stop_vcpus(&halt, threads);
        outcome
    }
}

fn machine_exit(action: ExitAction) -> MachineExit {
    match action {
        ExitAction::Exit(status) => MachineExit::Status(status),
        ExitAction::PowerOff => MachineExit::PowerOff,
        ExitAction::Reset => MachineExit::Reset,
        // With an in-kernel LAPIC, `hlt` never reaches user space; a
        // halted-for-good vCPU is the shutdown a triple fault is.
        ExitAction::Shutdown | ExitAction::Halt => MachineExit::TripleFault,
        // The loop never reports Continue.
        ExitAction::Continue => MachineExit::Stopped,
    }
}

fn spawn_vcpu(
    mut vcpu: Vcpu,
    mut buses: DeviceBuses,
    halt: Arc<AtomicBool>,
    report: mpsc::Sender<Result<ExitAction>>,
) -> Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("vcpu{}", vcpu.id()))
        .spawn(move || {
            let result = loop {
                if halt.load(Ordering::SeqCst) {
                    return;
                }
                match vcpu.fd_mut().run() {
                    Ok(exit) => match handle_exit(exit, &mut buses) {
                        Ok(ExitAction::Continue) => {}
                        other => break other,
                    },
                    // EINTR: a kick from `stop_vcpus` (checked above); EAGAIN: re-enter.
                    Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
                    Err(source) => {
                        break Err(Error::Ioctl {
                            ioctl: "KVM_RUN",
                            source,
                        });
                    }
                }
            };
            // The receiver may be gone already if another vCPU ended the VM.
            let _ = report.send(result);
        })
        .map_err(Error::VcpuThread)
}

/// Raises `halt` and kicks every vCPU thread out of `KVM_RUN` until all
/// have ended, then joins them. The kick repeats because one that lands
/// between the thread's check of `halt` and its next `KVM_RUN` is lost.
fn stop_vcpus(halt: &AtomicBool, threads: Vec<JoinHandle<()>>) {
    halt.store(true, Ordering::SeqCst);
    let signal = kick_signal();
    while threads.iter().any(|thread| !thread.is_finished()) {
        for thread in threads.iter().filter(|thread| !thread.is_finished()) {
            // Not joined yet, so the handle is valid even if the thread finished
            // meanwhile; the kick's handler is installed and does nothing. A
            // failed kick is repeated by the loop.
            let _ = thread.kill(signal);
        }
        thread::sleep(Duration::from_millis(1));
    }
    for thread in threads {
        // A vCPU thread does not panic; nothing to add if one did.
        let _ = thread.join();
    }
}
