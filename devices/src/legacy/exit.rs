//! The exit port: one I/O port where the guest writes its exit status.
//!
//! A guest (capsule-init, or a tiny test guest) ends the VM with
//! `outb status, port`; the write returns [`DeviceAction::Exit`] and the
//! VMM's run loop stops with that status. The conventional port is
//! [`EXIT_PORT`](crate::EXIT_PORT) (`0x501`).
//!
//! The port is one byte wide: write the status with `outb`. Wider writes
//! (`outw`, `outl`) run past the device's one-port range, so the
//! [`Bus`](crate::Bus) refuses them before they get here; if the device is
//! ever given a wider range, it still only acts on a write of exactly one
//! byte at offset 0. Reads answer 0.

use crate::{BusDevice, DeviceAction};

/// The exit port device.
///
/// ```
/// use devices::{BusDevice, DeviceAction};
/// use devices::legacy::ExitPort;
///
/// assert_eq!(ExitPort.write(0, &[42]), DeviceAction::Exit(42));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitPort;

impl ExitPort {
    /// How many ports the device occupies on the bus.
    pub const PORT_LEN: u64 = 1;
}

impl BusDevice for ExitPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> DeviceAction {
        match (offset, data) {
            (0, &[status]) => DeviceAction::Exit(status),
            _ => {
                tracing::debug!(
                    offset,
                    len = data.len(),
                    "exit port: unsupported write dropped"
                );
                DeviceAction::None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::{Bus, BusError, EXIT_PORT};

    #[test]
    fn status_byte_becomes_exit_action() {
        for status in [0, 1, 42, 255] {
            assert_eq!(ExitPort.write(0, &[status]), DeviceAction::Exit(status));
        }
    }

    #[test]
    fn reads_answer_zero() {
        let mut data = [0xaa; 2];
        ExitPort.read(0, &mut data);
        assert_eq!(data, [0, 0]);
    }

    #[test]
    fn odd_writes_do_nothing() {
        assert_eq!(ExitPort.write(0, &[]), DeviceAction::None);
        assert_eq!(ExitPort.write(0, &[1, 0]), DeviceAction::None);
        assert_eq!(ExitPort.write(1, &[1]), DeviceAction::None);
        assert_eq!(ExitPort.write(u64::MAX, &[1]), DeviceAction::None);
    }

    #[test]
    fn on_a_bus_at_the_exit_port() {
        let mut bus = Bus::new();
        bus.insert(
            Arc::new(Mutex::new(ExitPort)),
            u64::from(EXIT_PORT),
            ExitPort::PORT_LEN,
        )
        .expect("empty bus");
        assert_eq!(bus.write(0x501, &[7]), Ok(DeviceAction::Exit(7)));
        assert!(matches!(
            bus.write(0x501, &[7, 0, 0, 0]),
            Err(BusError::Straddle { .. })
        ));
        assert!(matches!(
            bus.write(0x502, &[7]),
            Err(BusError::Unmapped { .. })
        ));
    }
}
