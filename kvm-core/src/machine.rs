//! A whole microVM: the builder that assembles it in one function, and its
//! lifecycle: built, then its vCPU threads (and the device event loop's
//! thread) started paused or running, paused and resumed, and run until the
//! guest ends, a deadline passes or a [`Stopper`] says stop.

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use devices::event_loop::{EventLoop, RunningEventLoop};
use devices::legacy::{AcpiPm, ExitPort, I8042, Serial};
use devices::virtio::VirtioDevice;
use devices::{Bus, BusDevice, DeviceAction};
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;

use crate::io::{DeviceBuses, IrqFd};
use crate::memory::MemoryBacking;
use crate::vcpu::{ExitAction, Vcpu, VcpuThread, Wake, all_stopped, finish_all, pause_all};
use crate::virtio::{DeviceAllocator, attach_virtio_devices};
use crate::x86_64::acpi::{AcpiConfig, create_acpi_tables};
use crate::x86_64::layout::*;
use crate::x86_64::loader::{InitrdPart, KernelEntry, load_linux};
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
    /// Every vCPU is stopped (halted with interrupts off, as `halt -f` leaves
    /// them, or waiting for a SIPI): nothing can wake the guest again.
    Halted,
    /// The deadline passed first.
    Timeout,
    /// A [`Stopper`] asked the machine to stop (on a signal to the VMM, say).
    Stopped,
}

/// How often a running machine checks whether its guest halted for good. A
/// check takes every vCPU out of `KVM_RUN` once (microseconds each), so a
/// halted guest ends within this without costing a running one anything
/// measurable.
const HALT_PROBE_INTERVAL: Duration = Duration::from_millis(250);

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
/// // A signal handler (or any thread) ends the run with `stopper.stop()`.
/// let stopper = machine.stopper();
/// let exit = machine.run(Some(Duration::from_secs(30)))?;
/// assert_eq!(exit, MachineExit::Status(0));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Machine {
    state: MachineState,
    /// Set up, not started yet ([`MachineState::Built`]).
    vcpus: Vec<Vcpu>,
    /// One thread per vCPU once started.
    threads: Vec<VcpuThread>,
    /// What ends a run: vCPU reports and stoppers send here.
    wake: Sender<Wake>,
    woken: Receiver<Wake>,
    buses: DeviceBuses,
    user_space: Arc<OnceLock<Instant>>,
    /// The virtio devices' event loop until it starts with the vCPUs.
    event_loop: Option<EventLoop>,
    /// Its thread, from start to finish.
    running_loop: Option<RunningEventLoop>,
    // Last: vCPUs and irqfds go before the VM that owns them.
    vm: Vm,
}

impl Machine {
    /// Assembles the VM: memory, irqchip, devices, ACPI, the kernel and its
    /// initramfs, and every vCPU's registers. Nothing runs yet: the machine
    /// is [`MachineState::Built`].
    ///
    /// Errors: [`Error::VcpuCount`] for 0 or more than 254 vCPUs; the
    /// kernel's and initramfs's load errors ([`Error::File`],
    /// [`Error::Kernel`], [`Error::KernelFormat`], [`Error::InitrdTooLarge`],
    /// ...); failed KVM ioctls ([`Error::Ioctl`]).
    pub fn build(config: &MachineConfig, console: Box<dyn Write + Send>) -> Result<Machine> {
        Machine::build_with_devices(config, console, Vec::new())
    }

    /// [`Machine::build`] with virtio devices: each gets a virtio-mmio window and an
    /// interrupt line, in the order given (which is the order the guest finds them in: Linux
    /// names virtio-blk disks vda, vdb, ... by it), and does its work on the machine's
    /// event-loop thread, which starts with the vCPUs and ends with them.
    ///
    /// ```no_run
    /// use devices::virtio::rng::Rng;
    /// # fn main() -> kvm_core::Result<()> {
    /// # let config: kvm_core::MachineConfig = todo!();
    /// let machine = kvm_core::Machine::build_with_devices(
    ///     &config,
    ///     Box::new(std::io::stdout()),
    ///     vec![Box::new(Rng::new())],
    /// )?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Errors: those of [`Machine::build`], and [`Error::VirtioWindow`] or
    /// [`Error::VirtioIrq`] when the devices do not fit (19 interrupt lines), naming the first
    /// device that did not.
    pub fn build_with_devices(
        config: &MachineConfig,
        console: Box<dyn Write + Send>,
        virtio_devices: Vec<Box<dyn VirtioDevice>>,
    ) -> Result<Machine> {
        if config.vcpus == 0 || config.vcpus > 254 {
            return Err(Error::VcpuCount(config.vcpus));
        }
        let phase = Instant::now();
        // A device another process serves (vhost-user) maps guest memory itself.
        let backing = if virtio_devices.iter().any(|d| d.shares_guest_memory()) {
            MemoryBacking::Shared
        } else {
            MemoryBacking::Private
        };
        let vm = Vm::with_memory(config.memory, backing)?;
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
        let mut mmio = Bus::new();
        let mut event_loop = EventLoop::new()?;
        let virtio_devices = attach_virtio_devices(
            &vm,
            &mut DeviceAllocator::new(),
            &mut mmio,
            &mut event_loop,
            virtio_devices,
        )?;
        let buses = DeviceBuses {
            pio: Arc::new(pio),
            mmio: Arc::new(mmio),
        };

        let rsdp = create_acpi_tables(
            vm.memory(),
            &AcpiConfig {
                vcpus: config.vcpus,
                virtio_devices,
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
        let (wake, woken) = mpsc::channel();
        Ok(Machine {
            state: MachineState::Built,
            vcpus,
            threads: Vec::new(),
            wake,
            woken,
            buses,
            user_space,
            event_loop: Some(event_loop),
            running_loop: None,
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

    /// Where the machine is in its lifecycle.
    pub fn state(&self) -> MachineState {
        self.state
    }

    /// A handle that makes [`Machine::run`] return [`MachineExit::Stopped`],
    /// from any thread.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.wake.clone())
    }

    /// Starts the device event loop's thread and one thread per vCPU, the
    /// guest running or (with `paused`) not yet: a paused vCPU thread blocks
    /// until [`Machine::resume`]. Only a [`MachineState::Built`] machine
    /// starts, else [`Error::MachineState`]; [`Error::VcpuThread`] or
    /// [`Error::EventLoop`] if a thread cannot be spawned (those spawned
    /// already are ended).
    pub fn start(&mut self, paused: bool) -> Result<()> {
        self.require("start", &[MachineState::Built])?;
        if let Some(event_loop) = self.event_loop.take() {
            // However the loop ends (a device's panic included), the run ends
            // with it rather than wait on a device that no longer answers;
            // `finish` then reports why.
            let stopper = self.stopper();
            self.running_loop = Some(event_loop.start(move || stopper.stop())?);
        }
        for vcpu in std::mem::take(&mut self.vcpus) {
            match VcpuThread::spawn(vcpu, self.buses.clone(), paused, self.wake.clone()) {
                Ok(thread) => self.threads.push(thread),
                Err(error) => {
                    let _ = self.finish();
                    return Err(error);
                }
            }
        }
        self.state = if paused {
            MachineState::Paused
        } else {
            MachineState::Running
        };
        Ok(())
    }

    /// Takes every vCPU out of the guest and returns once all are paused
    /// (a vCPU whose run ended already counts as paused). Pausing a paused
    /// machine does nothing; a machine not started or finished is an
    /// [`Error::MachineState`].
    pub fn pause(&mut self) -> Result<()> {
        self.require("pause", &[MachineState::Running, MachineState::Paused])?;
        pause_all(&self.threads);
        self.state = MachineState::Paused;
        Ok(())
    }

    /// Lets every paused vCPU run the guest again. Resuming a running
    /// machine does nothing; a machine not started or finished is an
    /// [`Error::MachineState`].
    pub fn resume(&mut self) -> Result<()> {
        self.require("resume", &[MachineState::Running, MachineState::Paused])?;
        for thread in &self.threads {
            thread.resume();
        }
        self.state = MachineState::Running;
        Ok(())
    }

    /// Runs the guest until it ends, `timeout` passes (counted from this
    /// call, paused time included), or a [`Stopper`] says stop; then ends
    /// and joins every vCPU thread, on every path, and the machine is
    /// [`MachineState::Finished`]. A built machine is started, a paused one
    /// resumed; a stop asked for before the call returns
    /// [`MachineExit::Stopped`] without running the guest.
    ///
    /// Errors: the vCPU's ([`Error::Ioctl`] for `KVM_RUN`,
    /// [`Error::UnhandledExit`], [`Error::FailEntry`], [`Error::VcpuPanic`]),
    /// [`Error::VcpuThread`], the device event loop's ([`Error::EventLoop`]:
    /// a device panicked, say), and [`Error::MachineState`] for a machine
    /// that has run already.
    pub fn run(&mut self, timeout: Option<Duration>) -> Result<MachineExit> {
        self.require(
            "run",
            &[
                MachineState::Built,
                MachineState::Running,
                MachineState::Paused,
            ],
        )?;
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let exit = self.wait(deadline);
        let devices = self.finish();
        let exit = exit?;
        devices?;
        Ok(exit)
    }

    /// Runs the guest, if no stop came first, and waits for what ends the run.
    fn wait(&mut self, deadline: Option<Instant>) -> Result<MachineExit> {
        let wake = match self.woken.try_recv() {
            Ok(wake) => Ok(wake),
            Err(_) => {
                match self.state {
                    MachineState::Built => self.start(false)?,
                    MachineState::Paused => self.resume()?,
                    MachineState::Running | MachineState::Finished => {}
                }
                loop {
                    let probe_at = Instant::now() + HALT_PROBE_INTERVAL;
                    let until = deadline.map_or(probe_at, |deadline| deadline.min(probe_at));
                    match self
                        .woken
                        .recv_timeout(until.saturating_duration_since(Instant::now()))
                    {
                        Err(RecvTimeoutError::Timeout)
                            if deadline.is_none_or(|deadline| Instant::now() < deadline) =>
                        {
                            if all_stopped(&self.threads, HALT_PROBE_INTERVAL) {
                                return Ok(MachineExit::Halted);
                            }
                        }
                        wake => break wake,
                    }
                }
            }
        };
        match wake {
            Ok(Wake::Ended { vcpu, result }) => {
                tracing::debug!(vcpu, ?result, "the guest's run ended");
                result.map(machine_exit)
            }
            Ok(Wake::Stop) => Ok(MachineExit::Stopped),
            Err(RecvTimeoutError::Timeout) => Ok(MachineExit::Timeout),
            // The machine holds a sender itself, so this cannot happen.
            Err(RecvTimeoutError::Disconnected) => Ok(MachineExit::Stopped),
        }
    }

    /// Ends and joins every vCPU thread, then the event loop's; its error
    /// (a device panicked) is the result.
    fn finish(&mut self) -> Result<()> {
        finish_all(std::mem::take(&mut self.threads));
        self.vcpus.clear();
        self.event_loop = None;
        self.state = MachineState::Finished;
        match self.running_loop.take() {
            Some(running) => Ok(running.stop()?),
            None => Ok(()),
        }
    }

    fn require(&self, action: &'static str, states: &[MachineState]) -> Result<()> {
        if states.contains(&self.state) {
            Ok(())
        } else {
            Err(Error::MachineState {
                action,
                state: self.state,
            })
        }
    }
}

impl Drop for Machine {
    /// Ends the vCPU threads of a machine started but never run, before the
    /// VM and its memory go.
    fn drop(&mut self) {
        if let Err(error) = self.finish() {
            tracing::debug!(%error, "the machine's devices failed");
        }
    }
}

/// Where a [`Machine`] is in its lifecycle (youki's `ContainerStatus`, for a VM).
///
/// ```text
/// Built --start(false)--> Running <--pause/resume--> Paused
///   |  \--start(true)---------------------------------^   |
///   +--run--> Running --guest ends, timeout, stop--> Finished
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineState {
    /// Built, no vCPU thread yet.
    Built,
    /// The vCPU threads run the guest.
    Running,
    /// The vCPU threads wait, the guest frozen.
    Paused,
    /// The run is over and every vCPU thread joined.
    Finished,
}

impl fmt::Display for MachineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MachineState::Built => "built",
            MachineState::Running => "running",
            MachineState::Paused => "paused",
            MachineState::Finished => "finished",
        })
    }
}

/// Makes its [`Machine`]'s [`Machine::run`] return [`MachineExit::Stopped`]
/// promptly, whether the run is under way or not started yet. Cheap to
/// clone, callable from any thread any number of times; once the run is
/// over, or the machine dropped, a stop does nothing.
#[derive(Debug, Clone)]
pub struct Stopper(Sender<Wake>);

impl Stopper {
    /// Asks the machine to stop.
    pub fn stop(&self) {
        // The machine may be gone: then there is nothing to stop.
        let _ = self.0.send(Wake::Stop);
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
        // A vCPU thread never reports Continue.
        ExitAction::Continue => MachineExit::Stopped,
    }
}
