//! A deadline for one vCPU run loop.
//!
//! Why a signal and not "run the vCPU on a thread and kill it": Rust cannot
//! kill a thread, and a vCPU blocked in `KVM_RUN` only comes back to user
//! space when the guest exits or a signal is pending. So the watchdog thread
//! waits for the deadline, sets `fired`, then sends a no-op signal
//! (`SIGRTMIN`, as Firecracker does) to the vCPU thread: `KVM_RUN` returns
//! `EINTR` and the loop sees `fired`.
//!
//! A signal that lands while the vCPU thread is in user space (between two
//! `KVM_RUN`s) would be lost, so the watchdog repeats it every
//! [`KICK_INTERVAL`] until it is disarmed. That is simpler than the
//! alternative (a signal handler setting `kvm_run.immediate_exit` through a
//! thread-local pointer) and just as robust: the loop checks `fired` before
//! every `KVM_RUN`, and at worst waits one more interval.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use libc::{c_int, c_void, siginfo_t};
use vmm_sys_util::signal::{Killable, SIGRTMIN, register_signal_handler};

use crate::{Error, Result};

/// How often a fired watchdog repeats its kick.
const KICK_INTERVAL: Duration = Duration::from_millis(10);

/// The kick signal: the first real-time signal.
pub(crate) fn kick_signal() -> c_int {
    SIGRTMIN()
}

extern "C" fn on_kick(_: c_int, _: *mut siginfo_t, _: *mut c_void) {
    // Nothing to do: its delivery alone makes KVM_RUN return EINTR.
}

/// Installs the no-op kick handler once per process.
pub(crate) fn install_kick_handler() -> Result<()> {
    static INSTALLED: OnceLock<std::result::Result<(), vmm_sys_util::errno::Error>> =
        OnceLock::new();
    let signal = kick_signal();
    (*INSTALLED.get_or_init(|| register_signal_handler(signal, on_kick)))
        .map_err(|source| Error::Signal { signal, source })
}

/// The armed thread's handle, moved to the watchdog thread. glibc's `pthread_t` is an integer,
/// musl's a pointer, which Rust does not let cross threads on its own.
struct Target(libc::pthread_t);

// SAFETY: a pthread_t is an opaque handle valid in every thread of the process; the watchdog
// thread only kills through it while the target is alive (see `Watchdog::drop`).
unsafe impl Send for Target {}

// SAFETY: Killable needs a handle valid whenever `kill` runs: the watchdog thread kills
// only while the armed thread is alive (see `Watchdog::drop`).
unsafe impl Killable for Target {
    fn pthread_handle(&self) -> libc::pthread_t {
        self.0
    }
}

/// Armed on the vCPU thread; kicks that thread once the deadline passes.
///
/// Disarmed (and its thread joined) on drop. It is `!Send` because it targets
/// the thread that armed it, and that thread must outlive it.
#[derive(Debug)]
pub(crate) struct Watchdog {
    fired: Arc<AtomicBool>,
    disarm: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _not_send: PhantomData<*const ()>,
}

impl Watchdog {
    /// Arms a watchdog that kicks the calling thread after `timeout`.
    pub(crate) fn arm(timeout: Duration) -> Result<Watchdog> {
        install_kick_handler()?;
        let signal = kick_signal();
        // SAFETY: pthread_self has no preconditions and cannot fail.
        let target = Target(unsafe { libc::pthread_self() });
        let fired = Arc::new(AtomicBool::new(false));
        let (disarm, disarmed) = mpsc::channel::<()>();
        let thread_fired = Arc::clone(&fired);
        let thread = thread::Builder::new()
            .name("vcpu-watchdog".into())
            .spawn(move || {
                if disarmed.recv_timeout(timeout) != Err(RecvTimeoutError::Timeout) {
                    return; // disarmed before the deadline
                }
                thread_fired.store(true, Ordering::SeqCst);
                loop {
                    // `target` is the thread that armed this watchdog; it is
                    // still alive because `Watchdog` is `!Send` and its `drop`
                    // (on that thread) joins this thread before the target can
                    // go on. The signal has a no-op handler; a failed kick is
                    // tried again at the next interval.
                    let _ = target.kill(signal);
                    if disarmed.recv_timeout(KICK_INTERVAL) != Err(RecvTimeoutError::Timeout) {
                        return;
                    }
                }
            })
            .map_err(Error::Watchdog)?;
        Ok(Watchdog {
            fired,
            disarm: Some(disarm),
            thread: Some(thread),
            _not_send: PhantomData,
        })
    }

    /// Whether the deadline has passed.
    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Dropping the sender disconnects the channel, which ends the thread.
        drop(self.disarm.take());
        if let Some(thread) = self.thread.take() {
            // The watchdog thread cannot panic; nothing to report if it did.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn fires_after_the_deadline_and_interrupts_a_sleep() {
        let watchdog = Watchdog::arm(Duration::from_millis(50)).expect("arm");
        assert!(!watchdog.fired());
        let start = Instant::now();
        // A blocking syscall, like KVM_RUN: the kick interrupts it with EINTR.
        // SAFETY: pause has no preconditions; it returns once a handled signal arrives.
        let ret = unsafe { libc::pause() };
        assert_eq!(ret, -1);
        assert!(watchdog.fired());
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn disarms_quickly_before_the_deadline() {
        let start = Instant::now();
        let watchdog = Watchdog::arm(Duration::from_secs(60)).expect("arm");
        drop(watchdog);
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
