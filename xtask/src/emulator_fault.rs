//! What an L2 guest lost to the lab's emulator looks like, for the lab (which reruns such
//! cases on a fresh boot) and the benchmark driver (which reruns such a launch); the driver
//! includes this file by path, as it is built apart from xtask.

/// Starts the line on which the benchmark driver says it launches a run again after an
/// emulator fault; xtask counts these lines in its report.
pub const RELAUNCH_MARKER: &str = "CAPSULE-BENCH-RETRY";

/// Whether a failed case's output shows an L2 guest that the emulator broke rather than a
/// fault of capsule's: under TCG's emulated SVM, L2 kernels triple-fault, reset or stop
/// during boot or while streaming now and then, as L1's own kernel panics now and then. In
/// one `lab --exec` on 2026-12-01, 5 of 14 launches of the 200 MB agent test: 4 triple
/// faults, two of them during the guest's boot, and one guest that never reached its init
/// in 120 s; in another, with `--kernel-log`, 4 of 10 triple-faulted, two of them in the
/// guest's boot before its virtio drivers loaded (so before any device of ours had a
/// buffer), and L1 panicked in 4 of 5 boots ("TASK stack guard page was hit" in capsule's
/// vCPU thread, "Fatal exception in interrupt"). One TCG thread (`-accel tcg,thread=single`)
/// made it worse: 4 of 4 guests stalled in boot.
/// With L1's CPU model stripped of XSAVE (`-cpu EPYC,+svm,+npt,-xsave`), 5 of 16 kata launches
/// still triple-faulted on 2026-12-01: that takes away the "XSAVE consistency problem" warning
/// every L2 kernel prints (TCG runs L2's `xsetbv` without the SVM intercept, so L1's KVM
/// never learns L2's XCR0), but not the faults.
/// The lab runs such a case again on a fresh boot, and the benchmark driver runs such a
/// launch again; a real fault of ours fails there again.
pub fn shows_an_emulator_fault(output: &str) -> bool {
    [
        "the guest kernel triple-faulted",
        "the guest kernel reset",
        "the guest agent did not accept a connection",
    ]
    .iter()
    .any(|sign| output.contains(sign))
}
