//! A minimal i8042 keyboard controller, there so the guest can reset.
//!
//! Firecracker's approach: no keyboard, no mouse, just enough of the
//! controller for Linux's `reboot=k` path, which writes the "pulse output
//! line 0" command `0xfe` to the command port `0x64` and expects the CPU to
//! reset. That write returns [`DeviceAction::Reset`]; the VMM decides what a
//! reset means (capsule stops the VM).
//!
//! One device covers the five ports `0x60..0x65` (offset 0 is the data port
//! `0x60`, offset 4 the status/command port `0x64`), as Firecracker registers
//! it. Offsets 1 to 3 (ports `0x61..0x64`, among them the PC speaker /
//! system control port `0x61`) read 0 and ignore writes. Every read answers
//! 0: in the status register that means "output buffer empty, input buffer
//! empty", so a driver finds nothing to read and never waits to write:
//! the kernel's reset path (`kb_wait` in `arch/x86/kernel/reboot.c`, which
//! polls for bit 1 of the status to clear) goes straight to the reset
//! command. Linux's keyboard driver probes, gets no answer and gives up;
//! other commands (self-test `0xaa`, read/write the configuration byte) are
//! ignored.

use crate::{BusDevice, DeviceAction};

/// Offset of the data port (`0x60`) from the device's base.
pub const DATA_OFFSET: u64 = 0;
/// Offset of the status (read) / command (write) port (`0x64`).
pub const COMMAND_OFFSET: u64 = 4;
/// The command that pulses the CPU reset line.
pub const CMD_RESET_CPU: u8 = 0xfe;

/// The i8042 controller on ports `0x60..0x65`.
///
/// ```
/// use devices::{BusDevice, DeviceAction};
/// use devices::legacy::{I8042, i8042};
///
/// let mut kbd = I8042;
/// assert_eq!(kbd.write(i8042::COMMAND_OFFSET, &[i8042::CMD_RESET_CPU]), DeviceAction::Reset);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct I8042;

impl I8042 {
    /// How many ports the device occupies on the bus (`0x60..0x65`).
    pub const PORT_LEN: u64 = 5;
}

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> DeviceAction {
        match (offset, data) {
            (COMMAND_OFFSET, &[CMD_RESET_CPU]) => DeviceAction::Reset,
            _ => {
                tracing::debug!(offset, len = data.len(), "i8042: write ignored");
                DeviceAction::None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::Bus;

    #[test]
    fn reset_command_asks_for_reset() {
        assert_eq!(
            I8042.write(COMMAND_OFFSET, &[CMD_RESET_CPU]),
            DeviceAction::Reset
        );
    }

    #[test]
    fn status_and_data_read_zero() {
        let mut kbd = I8042;
        for offset in [DATA_OFFSET, 1, 2, 3, COMMAND_OFFSET, 99, u64::MAX] {
            let mut data = [0xaa];
            kbd.read(offset, &mut data);
            assert_eq!(data, [0], "offset {offset}");
        }
        kbd.read(COMMAND_OFFSET, &mut []);
    }

    #[test]
    fn other_writes_are_ignored() {
        let mut kbd = I8042;
        assert_eq!(kbd.write(DATA_OFFSET, &[CMD_RESET_CPU]), DeviceAction::None);
        assert_eq!(kbd.write(COMMAND_OFFSET, &[0x20]), DeviceAction::None);
        assert_eq!(kbd.write(COMMAND_OFFSET, &[]), DeviceAction::None);
        assert_eq!(
            kbd.write(COMMAND_OFFSET, &[CMD_RESET_CPU, 0]),
            DeviceAction::None
        );
        assert_eq!(kbd.write(u64::MAX, &[CMD_RESET_CPU]), DeviceAction::None);
    }

    #[test]
    fn on_a_bus_at_0x60() {
        let mut bus = Bus::new();
        bus.insert(Arc::new(Mutex::new(I8042)), 0x60, I8042::PORT_LEN)
            .expect("empty bus");
        assert_eq!(bus.write(0x64, &[CMD_RESET_CPU]), Ok(DeviceAction::Reset));
        let mut status = [0xff];
        bus.read(0x64, &mut status).expect("mapped");
        assert_eq!(status, [0]);
        assert!(bus.read(0x65, &mut status).is_err());
    }
}
