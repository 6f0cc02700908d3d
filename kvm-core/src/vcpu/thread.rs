//! The vCPU thread: one run loop, an explicit state machine (Firecracker's
//! `VcpuRunState` in `src/vmm/src/vstate/vcpu.rs`), driven by events.
//!
//! ```text
//!            Resume                       guest exit, error, Finish
//!   Paused ----------> Running ------------------------------------> Finished
//!     ^  |   <--------  (KVM_RUN)                                      ^
//!     |  |    Pause                                                    |
//!     |  +-------------------------- Finish ---------------------------+
//! ```
//!
//! The controller ([`run`] or a [`crate::Machine`]) sends a [`VcpuEvent`]
//! down the thread's channel, then kicks the thread with a no-op signal
//! (`SIGRTMIN`, as Firecracker does) through `vmm_sys_util`'s `Killable`. A
//! vCPU blocked in `KVM_RUN` only comes back to user space when the guest
//! exits or a signal is pending, so the kick makes `KVM_RUN` return `EINTR`
//! and the thread reads its events. A paused thread blocks on its channel and
//! burns no CPU.
//!
//! A kick can land while the thread is in user space, between two
//! `KVM_RUN`s (handling an exit), where it would be lost. So the kick's
//! handler sets `kvm_run.immediate_exit` of the vCPU the signalled thread
//! runs (found through a thread-local pointer): the next `KVM_RUN` then
//! returns `EINTR` at once (KVM API, "immediate_exit"). The thread clears
//! the flag before it reads its events, so an event sent after that read
//! comes with a kick that sets the flag again. One kick per event is enough.
//!
//! When a guest's run ends by itself (an exit that is not
//! [`ExitAction::Continue`], or an error), the thread reports it to the
//! controller as a [`Wake::Ended`] and finishes; the controller then sends
//! [`VcpuEvent::Finish`] to the others and joins every thread.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{Ordering, compiler_fence};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use kvm_ioctls::VcpuExit;
use libc::{c_int, c_void, siginfo_t};
use vmm_sys_util::signal::{Killable, SIGRTMIN, register_signal_handler};

use super::{ExitAction, IoHandler, Vcpu, handle_exit};
use crate::{Error, Result};

/// What wakes a controller: a vCPU's run ended, or someone asked it to stop.
#[derive(Debug)]
pub(crate) enum Wake {
    /// vCPU `vcpu`'s run ended by itself: the guest's exit, or an error.
    Ended {
        /// The vCPU's id.
        vcpu: u8,
        /// What ended it; never [`ExitAction::Continue`].
        result: Result<ExitAction>,
    },
    /// A [`crate::machine::Stopper`] asked the machine to stop.
    Stop,
}

/// A request from the controller to a vCPU thread.
#[derive(Debug)]
enum VcpuEvent {
    /// Leave `KVM_RUN` and wait for [`VcpuEvent::Resume`]; send `()` on the
    /// sender once paused.
    Pause(Sender<()>),
    /// Run the guest (again).
    Resume,
    /// Say on the sender whether the vCPU is [`Vcpu::stopped`], then run the
    /// guest on.
    Probe(Sender<bool>),
    /// End the thread.
    Finish,
}

/// The states of the vCPU thread's run loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VcpuRunState {
    /// In and out of `KVM_RUN`, dispatching exits.
    Running,
    /// Blocked on the event channel, the guest not running.
    Paused,
    /// The loop is over; the thread returns.
    Finished,
}

/// The kick signal: the first real-time signal.
fn kick_signal() -> c_int {
    SIGRTMIN()
}

thread_local! {
    /// `kvm_run.immediate_exit` of the vCPU this thread runs, null on every
    /// other thread. Const-initialised and without a destructor, so reading it
    /// in a signal handler is a plain TLS load (no lazy initialisation).
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(ptr::null_mut()) };
}

extern "C" fn on_kick(_: c_int, _: *mut siginfo_t, _: *mut c_void) {
    let flag = IMMEDIATE_EXIT.get();
    if !flag.is_null() {
        // SAFETY: a non-null pointer is the `immediate_exit` byte of the
        // `kvm_run` mapping of the vCPU this thread runs; `ImmediateExit`
        // publishes it only while that vCPU (hence its mapping) is alive and
        // clears it before the vCPU is dropped. A volatile byte store is
        // async-signal-safe.
        unsafe { flag.write_volatile(1) };
    }
}

/// Installs the kick handler once per process.
fn install_kick_handler() -> Result<()> {
    static INSTALLED: OnceLock<std::result::Result<(), vmm_sys_util::errno::Error>> =
        OnceLock::new();
    let signal = kick_signal();
    (*INSTALLED.get_or_init(|| register_signal_handler(signal, on_kick)))
        .map_err(|source| Error::Signal { signal, source })
}

/// Publishes a vCPU's `immediate_exit` to the kick handler of the thread
/// that runs it, for as long as this lives (which must be shorter than the
/// vCPU: create it after, so it drops before).
struct ImmediateExit(*mut u8);

impl ImmediateExit {
    /// Publishes the flag, set: a kick that came before the thread got here
    /// found no flag to set, so the first `KVM_RUN` returns at once and the
    /// thread reads the events that kick was for.
    fn publish(vcpu: &mut Vcpu) -> ImmediateExit {
        let flag = ptr::addr_of_mut!(vcpu.fd_mut().get_kvm_run().immediate_exit);
        IMMEDIATE_EXIT.set(flag);
        // SAFETY: `flag` points into the live vCPU's `kvm_run` mapping.
        unsafe { flag.write_volatile(1) };
        ImmediateExit(flag)
    }

    /// Clears the flag a kick set, before the thread reads its events.
    fn clear(&self) {
        // SAFETY: the pointer is the live vCPU's `immediate_exit` (see
        // `publish`); only this thread and its signal handler write it.
        unsafe { self.0.write_volatile(0) };
        // Keep the compiler from moving the store past the event reads that
        // follow: the handler that may set the flag again runs on this thread.
        compiler_fence(Ordering::SeqCst);
    }
}

impl Drop for ImmediateExit {
    fn drop(&mut self) {
        IMMEDIATE_EXIT.set(ptr::null_mut());
    }
}

/// The thread's side: the vCPU, where its exits go, and its events.
struct VcpuLoop<'a> {
    vcpu: &'a mut Vcpu,
    io: &'a mut dyn IoHandler,
    events: Receiver<VcpuEvent>,
    immediate_exit: ImmediateExit,
    /// Set when the guest's run ended by itself.
    ended: Option<Result<ExitAction>>,
}

impl VcpuLoop<'_> {
    fn run(&mut self, mut state: VcpuRunState) {
        loop {
            state = match state {
                VcpuRunState::Running => self.running(),
                VcpuRunState::Paused => self.paused(),
                VcpuRunState::Finished => return,
            };
        }
    }

    /// Runs the guest until an exit that ends it, or a kick.
    fn running(&mut self) -> VcpuRunState {
        loop {
            let result = match self.vcpu.fd_mut().run() {
                // A kick: read the events. (KVM_EXIT_INTR comes with EINTR, as
                // an error, but treat the exit alike if it ever comes alone.)
                Ok(VcpuExit::Intr) => break,
                Err(e) if e.errno() == libc::EINTR => break,
                // KVM asks to re-enter.
                Err(e) if e.errno() == libc::EAGAIN => continue,
                Ok(exit) => handle_exit(exit, self.io),
                Err(source) => Err(Error::Ioctl {
                    ioctl: "KVM_RUN",
                    source,
                }),
            };
            match result {
                Ok(ExitAction::Continue) => {}
                // Running -- guest exit or error --> Finished
                ended => {
                    self.ended = Some(ended);
                    return VcpuRunState::Finished;
                }
            }
        }
        self.immediate_exit.clear();
        let mut state = VcpuRunState::Running;
        loop {
            state = match self.events.try_recv() {
                // Running -- Pause --> Paused
                Ok(VcpuEvent::Pause(paused)) => {
                    let _ = paused.send(());
                    VcpuRunState::Paused
                }
                // Paused -- Resume --> Running, when both came in one kick.
                Ok(VcpuEvent::Resume) => VcpuRunState::Running,
                // Running -- Probe --> Running (or Paused, if a Pause came first).
                Ok(VcpuEvent::Probe(halted)) => {
                    let _ = halted.send(
                        state == VcpuRunState::Running && self.vcpu.stopped().unwrap_or(false),
                    );
                    state
                }
                // Running -- Finish (or the controller is gone) --> Finished
                Ok(VcpuEvent::Finish) | Err(TryRecvError::Disconnected) => {
                    return VcpuRunState::Finished;
                }
                Err(TryRecvError::Empty) => return state,
            };
        }
    }

    /// Waits for the next event, the guest not running.
    fn paused(&mut self) -> VcpuRunState {
        match self.events.recv() {
            // Paused -- Pause --> Paused: acknowledged again.
            Ok(VcpuEvent::Pause(paused)) => {
                let _ = paused.send(());
                VcpuRunState::Paused
            }
            // Paused -- Resume --> Running
            Ok(VcpuEvent::Resume) => VcpuRunState::Running,
            // A paused guest is not a halted one.
            Ok(VcpuEvent::Probe(halted)) => {
                let _ = halted.send(false);
                VcpuRunState::Paused
            }
            // Paused -- Finish (or the controller is gone) --> Finished
            Ok(VcpuEvent::Finish) | Err(_) => VcpuRunState::Finished,
        }
    }
}

/// The controller's side of one vCPU thread.
#[derive(Debug)]
pub(crate) struct VcpuThread {
    id: u8,
    events: Sender<VcpuEvent>,
    thread: JoinHandle<()>,
}

impl VcpuThread {
    /// Starts `vcpu` on a thread named `vcpu<id>`, paused or running, its
    /// exits going to `io`; the end of its run is reported on `wake`.
    pub(crate) fn spawn(
        mut vcpu: Vcpu,
        mut io: impl IoHandler + Send + 'static,
        paused: bool,
        wake: Sender<Wake>,
    ) -> Result<VcpuThread> {
        install_kick_handler()?;
        let id = vcpu.id();
        let (events, receiver) = mpsc::channel();
        let thread = thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(move || {
                let immediate_exit = ImmediateExit::publish(&mut vcpu);
                let mut vcpu_loop = VcpuLoop {
                    vcpu: &mut vcpu,
                    io: &mut io,
                    events: receiver,
                    immediate_exit,
                    ended: None,
                };
                let initial = if paused {
                    VcpuRunState::Paused
                } else {
                    VcpuRunState::Running
                };
                // A device model that panics ends the machine with an error
                // rather than leaving the controller waiting for a report.
                let ended = match panic::catch_unwind(AssertUnwindSafe(|| vcpu_loop.run(initial))) {
                    Ok(()) => vcpu_loop.ended.take(),
                    Err(_) => Some(Err(Error::VcpuPanic(id))),
                };
                if let Some(result) = ended {
                    // The controller may be gone already.
                    let _ = wake.send(Wake::Ended { vcpu: id, result });
                }
            })
            .map_err(Error::VcpuThread)?;
        Ok(VcpuThread { id, events, thread })
    }

    /// Sends `event` and kicks the thread so that it reads it.
    fn send(&self, event: VcpuEvent) {
        // A thread that has finished has dropped its receiver: nothing to do.
        if self.events.send(event).is_ok() {
            // The thread is not joined yet, so its handle is valid; a failed
            // kick (the thread just ended) needs no retry.
            let _ = self.thread.kill(kick_signal());
        }
    }

    /// Asks the thread to pause; it sends `()` on `paused` once it has.
    pub(crate) fn pause(&self, paused: Sender<()>) {
        self.send(VcpuEvent::Pause(paused));
    }

    /// Lets a paused thread run the guest again.
    pub(crate) fn resume(&self) {
        self.send(VcpuEvent::Resume);
    }
}

/// Ends every thread in `threads`, then joins them: all are told first, so
/// they wind down together.
pub(crate) fn finish_all(threads: Vec<VcpuThread>) {
    for thread in &threads {
        thread.send(VcpuEvent::Finish);
    }
    for thread in threads {
        // The loop catches panics, so the thread returns normally.
        let _ = thread.thread.join();
    }
}

/// Pauses every thread in `threads` and returns once all are paused (or
/// have finished: a finished thread drops its `Pause` and its sender).
pub(crate) fn pause_all(threads: &[VcpuThread]) {
    let (paused, acks) = mpsc::channel();
    for thread in threads {
        thread.pause(paused.clone());
    }
    drop(paused);
    // Ends once every sender is gone: each paused thread sent and dropped
    // its own, each finished thread dropped its event unread.
    while acks.recv().is_ok() {}
}

/// Whether every vCPU of `threads` is [`Vcpu::stopped`]: each is taken out
/// of `KVM_RUN` (a kick), looks at its own state and runs on. A thread that
/// does not answer within `patience` (or has finished) counts as not stopped.
pub(crate) fn all_stopped(threads: &[VcpuThread], patience: Duration) -> bool {
    let (halted, answers) = mpsc::channel();
    for thread in threads {
        thread.send(VcpuEvent::Probe(halted.clone()));
    }
    drop(halted);
    let deadline = Instant::now() + patience;
    let mut count = 0;
    while count < threads.len() {
        match answers.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(true) => count += 1,
            Ok(false) | Err(_) => return false,
        }
    }
    !threads.is_empty()
}

/// Runs `vcpu` on a vCPU thread until an exit that ends the run, or
/// [`Error::Timeout`] once `timeout` has passed; the thread is ended and
/// joined before this returns.
///
/// The vCPU's exits go to `io`, which moves to the vCPU thread: to look at
/// what it recorded afterwards, give it a shared handle (an `Arc`).
pub fn run(
    vcpu: Vcpu,
    io: impl IoHandler + Send + 'static,
    timeout: Duration,
) -> Result<ExitAction> {
    let (wake, woken) = mpsc::channel();
    let thread = VcpuThread::spawn(vcpu, io, false, wake)?;
    let result = match woken.recv_timeout(timeout) {
        Ok(Wake::Ended { result, .. }) => result,
        // Only a machine's stopper sends Stop.
        Ok(Wake::Stop) => unreachable!("no stopper for a lone vcpu"),
        Err(RecvTimeoutError::Timeout) => Err(Error::Timeout(timeout)),
        // The thread reports before it drops its sender, panics included.
        Err(RecvTimeoutError::Disconnected) => Err(Error::VcpuPanic(thread.id)),
    };
    finish_all(vec![thread]);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real-mode guest running `code` at 0x1000 with the in-kernel irqchip (so a `hlt`
    /// stays in KVM) on a vCPU thread, probed once it has had time to get going.
    fn probe(code: &[u8]) -> bool {
        let vm = crate::Vm::new(64 << 10).expect("vm");
        vm.create_irqchip().expect("irqchip");
        vm.write_memory(0x1000, code).expect("code");
        let vcpu = vm.create_vcpu(0).expect("vcpu");
        vcpu.setup_real_mode(0x1000).expect("real mode");
        let (wake, _woken) = mpsc::channel();
        let thread =
            VcpuThread::spawn(vcpu, crate::DeviceBuses::default(), false, wake).expect("thread");
        thread::sleep(Duration::from_millis(100));
        let stopped = all_stopped(std::slice::from_ref(&thread), Duration::from_secs(2));
        finish_all(vec![thread]);
        stopped
    }

    #[test]
    fn a_vcpu_halted_with_interrupts_off_is_stopped_and_a_spinning_or_idle_one_is_not() {
        if !::tests::require(std::path::Path::new("/dev/kvm").exists(), "/dev/kvm") {
            return;
        }
        assert!(probe(&[0xfa, 0xf4]), "cli; hlt");
        assert!(!probe(&[0xeb, 0xfe]), "jmp $");
        // An idle loop (`sti; hlt`) waits for an interrupt that may come.
        assert!(!probe(&[0xfb, 0xf4, 0xeb, 0xfc]), "sti; hlt; jmp");
    }

    #[test]
    fn a_kick_interrupts_a_blocking_syscall() {
        install_kick_handler().expect("install");
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() } as usize;
        let kicker = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            // SAFETY: the target is this test's thread, which joins the
            // kicker before it returns, so the handle is valid.
            unsafe { libc::pthread_kill(me as libc::pthread_t, kick_signal()) }
        });
        let start = Instant::now();
        // A blocking syscall, like KVM_RUN: the kick interrupts it with EINTR.
        // SAFETY: pause has no preconditions; it returns once a handled signal arrives.
        let ret = unsafe { libc::pause() };
        assert_eq!(ret, -1);
        assert_eq!(kicker.join().expect("kicker"), 0);
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_kick_sets_the_published_immediate_exit_of_its_thread_only() {
        install_kick_handler().expect("install");
        let mut flag = 0u8;
        IMMEDIATE_EXIT.set(&mut flag);
        // SAFETY: raise sends the signal to this thread; its handler is installed.
        assert_eq!(unsafe { libc::raise(kick_signal()) }, 0);
        IMMEDIATE_EXIT.set(ptr::null_mut());
        // SAFETY: the handler has run (raise returns after it) and the TLS
        // pointer is cleared, so nothing else writes `flag`.
        assert_eq!(unsafe { ptr::read_volatile(&flag) }, 1);
        // A thread that runs no vCPU is kicked harmlessly.
        let other = thread::spawn(|| {
            // SAFETY: as above.
            unsafe { libc::raise(kick_signal()) }
        });
        assert_eq!(other.join().expect("other thread"), 0);
    }
}
