//! Exit dispatch: where a `KVM_RUN` exit goes ([`IoHandler`]) and what the
//! run loop does next ([`ExitAction`]). [`handle_exit`] is a free function,
//! so it is tested with fabricated exits and no thread.

use kvm_ioctls::VcpuExit;

use crate::{Error, Result};

/// Where the guest's port I/O and MMIO go: [`crate::DeviceBuses`] in a
/// [`crate::Machine`]; tests implement it with a recorder.
///
/// For `rep ins`/`rep outs`, `data` holds all the elements back to back.
pub trait IoHandler {
    /// `in` from `port`: fill `data` (1, 2 or 4 bytes).
    fn pio_read(&mut self, port: u16, data: &mut [u8]);
    /// `out` to `port`; anything but [`ExitAction::Continue`] ends the run.
    fn pio_write(&mut self, port: u16, data: &[u8]) -> ExitAction;
    /// A read from guest-physical `addr` that is not RAM: fill `data`.
    fn mmio_read(&mut self, addr: u64, data: &mut [u8]);
    /// A write to guest-physical `addr` that is not RAM; anything but
    /// [`ExitAction::Continue`] ends the run.
    fn mmio_write(&mut self, addr: u64, data: &[u8]) -> ExitAction;
}

/// What the run loop does after an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitAction {
    /// Re-enter the guest.
    Continue,
    /// The guest reported its exit status (exit port or MMIO); stop.
    Exit(u8),
    /// The guest executed `hlt` (KVM_EXIT_HLT, no in-kernel LAPIC); stop.
    Halt,
    /// Triple fault (KVM_EXIT_SHUTDOWN); stop.
    Shutdown,
    /// The guest asked its devices for a reset (ACPI reset register, i8042).
    Reset,
    /// The guest powered off (ACPI S5).
    PowerOff,
}

/// Dispatches one vCPU exit to `io` and says what the run loop does next.
///
/// Exits capsule does not expect become [`Error::UnhandledExit`] naming the
/// exit, never a panic.
pub fn handle_exit(exit: VcpuExit<'_>, io: &mut dyn IoHandler) -> Result<ExitAction> {
    match exit {
        VcpuExit::IoIn(port, data) => {
            io.pio_read(port, data);
            Ok(ExitAction::Continue)
        }
        VcpuExit::IoOut(port, data) => Ok(io.pio_write(port, data)),
        VcpuExit::MmioRead(addr, data) => {
            io.mmio_read(addr, data);
            Ok(ExitAction::Continue)
        }
        VcpuExit::MmioWrite(addr, data) => Ok(io.mmio_write(addr, data)),
        VcpuExit::Hlt => Ok(ExitAction::Halt),
        VcpuExit::Shutdown => Ok(ExitAction::Shutdown),
        // KVM_EXIT_INTR: a signal interrupted the guest; the loop checks why.
        VcpuExit::Intr => Ok(ExitAction::Continue),
        VcpuExit::FailEntry(reason, cpu) => Err(Error::FailEntry { reason, cpu }),
        other => Err(Error::UnhandledExit(format!("{other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every access; port 0x501 and address 0xd000_0000 are exit registers.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u64, Vec<u8>)>,
        reads: Vec<u64>,
    }

    impl IoHandler for Recorder {
        fn pio_read(&mut self, port: u16, data: &mut [u8]) {
            self.reads.push(u64::from(port));
            data.fill(0xab);
        }
        fn pio_write(&mut self, port: u16, data: &[u8]) -> ExitAction {
            self.writes.push((u64::from(port), data.to_vec()));
            if port == 0x501 {
                ExitAction::Exit(data[0])
            } else {
                ExitAction::Continue
            }
        }
        fn mmio_read(&mut self, addr: u64, data: &mut [u8]) {
            self.reads.push(addr);
            data.fill(0xcd);
        }
        fn mmio_write(&mut self, addr: u64, data: &[u8]) -> ExitAction {
            self.writes.push((addr, data.to_vec()));
            if addr == 0xd000_0000 {
                ExitAction::Exit(data[0])
            } else {
                ExitAction::Continue
            }
        }
    }

    #[test]
    fn io_in_fills_the_data() {
        let mut io = Recorder::default();
        let mut data = [0u8; 2];
        let action = handle_exit(VcpuExit::IoIn(0x60, &mut data), &mut io).expect("handled");
        assert_eq!(action, ExitAction::Continue);
        assert_eq!(data, [0xab, 0xab]);
        assert_eq!(io.reads, [0x60]);
    }

    #[test]
    fn mmio_read_fills_the_data() {
        let mut io = Recorder::default();
        let mut data = [0u8; 4];
        let action =
            handle_exit(VcpuExit::MmioRead(0xd000_1000, &mut data), &mut io).expect("handled");
        assert_eq!(action, ExitAction::Continue);
        assert_eq!(data, [0xcd; 4]);
        assert_eq!(io.reads, [0xd000_1000]);
    }

    #[test]
    fn writes_continue_unless_the_handler_returns_a_status() {
        let mut io = Recorder::default();
        let mut exit = |e| handle_exit(e, &mut io).expect("handled");
        assert_eq!(exit(VcpuExit::IoOut(0x3f8, b"x")), ExitAction::Continue);
        assert_eq!(exit(VcpuExit::IoOut(0x501, &[7])), ExitAction::Exit(7));
        assert_eq!(
            exit(VcpuExit::MmioWrite(0x1000_0000, &[1])),
            ExitAction::Continue
        );
        assert_eq!(
            exit(VcpuExit::MmioWrite(0xd000_0000, &[3])),
            ExitAction::Exit(3)
        );
        assert_eq!(io.writes.len(), 4);
        assert_eq!(io.writes[0], (0x3f8, b"x".to_vec()));
    }

    #[test]
    fn hlt_halts_and_shutdown_shuts_down() {
        let mut io = Recorder::default();
        assert_eq!(
            handle_exit(VcpuExit::Hlt, &mut io).expect("handled"),
            ExitAction::Halt
        );
        assert_eq!(
            handle_exit(VcpuExit::Shutdown, &mut io).expect("handled"),
            ExitAction::Shutdown
        );
    }

    #[test]
    fn unknown_exits_are_errors_naming_the_exit() {
        let mut io = Recorder::default();
        for (exit, name) in [
            (VcpuExit::Unknown, "Unknown"),
            (VcpuExit::InternalError, "InternalError"),
            (VcpuExit::Unsupported(999), "Unsupported(999)"),
        ] {
            let err = handle_exit(exit, &mut io).expect_err("unhandled");
            assert!(matches!(err, Error::UnhandledExit(_)), "{err}");
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn fail_entry_names_the_hardware_reason() {
        let mut io = Recorder::default();
        let err = handle_exit(VcpuExit::FailEntry(0x21, 1), &mut io).expect_err("failed entry");
        assert_eq!(
            err.to_string(),
            "kvm_run failed entry: hardware reason 0x21 on cpu 1"
        );
    }
}
