//! The ACPI hardware-reduced sleep and reset registers: how a guest powers
//! off or resets a machine that has no PM1 block.
//!
//! A hardware-reduced FADT names a `SLEEP_CONTROL_REG`, a `SLEEP_STATUS_REG`
//! and a `RESET_REG`. Linux powers off by writing `SLP_TYP << 2 | SLP_EN`
//! (with `SLP_TYP` from the DSDT's `\_S5` package) to the control register,
//! and resets by writing the FADT's reset value to the reset register. One
//! device holds all three, at consecutive offsets.
//! (ACPI 6.5 §4.8.3.6 "Reset Register" and §4.8.3.7 "Sleep Control and
//! Status Registers"; the FADT fields in §5.2.9.)

use crate::{BusDevice, DeviceAction};

/// Offset of the sleep control register.
pub const SLEEP_CONTROL_OFFSET: u64 = 0;
/// Offset of the sleep status register (reads 0: never "woken").
pub const SLEEP_STATUS_OFFSET: u64 = 1;
/// Offset of the reset register.
pub const RESET_OFFSET: u64 = 2;
/// Sleep control: the "enter the sleep state" bit.
pub const SLP_EN: u8 = 1 << 5;

/// The sleep and reset registers.
///
/// ```
/// use devices::{BusDevice, DeviceAction};
/// use devices::legacy::{AcpiPm, acpi_pm};
///
/// let mut pm = AcpiPm::new(5, 1);
/// let s5 = 5 << 2 | acpi_pm::SLP_EN;
/// assert_eq!(pm.write(acpi_pm::SLEEP_CONTROL_OFFSET, &[s5]), DeviceAction::PowerOff);
/// assert_eq!(pm.write(acpi_pm::RESET_OFFSET, &[1]), DeviceAction::Reset);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcpiPm {
    soft_off_type: u8,
    reset_value: u8,
}

impl AcpiPm {
    /// How many ports the device occupies on the bus.
    pub const PORT_LEN: u64 = 3;

    /// A device that powers off on sleep type `soft_off_type` (the DSDT's
    /// `\_S5`) and resets when `reset_value` (the FADT's) is written.
    pub fn new(soft_off_type: u8, reset_value: u8) -> Self {
        AcpiPm {
            soft_off_type,
            reset_value,
        }
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> DeviceAction {
        match (offset, data) {
            (SLEEP_CONTROL_OFFSET, &[value])
                if value & SLP_EN != 0 && (value >> 2) & 0x7 == self.soft_off_type =>
            {
                DeviceAction::PowerOff
            }
            (RESET_OFFSET, &[value]) if value == self.reset_value => DeviceAction::Reset,
            _ => {
                tracing::debug!(offset, ?data, "acpi pm: write ignored");
                DeviceAction::None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_s5_with_slp_en_powers_off() {
        let mut pm = AcpiPm::new(5, 1);
        assert_eq!(
            pm.write(SLEEP_CONTROL_OFFSET, &[5 << 2]),
            DeviceAction::None
        );
        assert_eq!(
            pm.write(SLEEP_CONTROL_OFFSET, &[3 << 2 | SLP_EN]),
            DeviceAction::None
        );
        assert_eq!(
            pm.write(SLEEP_CONTROL_OFFSET, &[5 << 2 | SLP_EN]),
            DeviceAction::PowerOff
        );
        assert_eq!(
            pm.write(SLEEP_STATUS_OFFSET, &[5 << 2 | SLP_EN]),
            DeviceAction::None
        );
    }

    #[test]
    fn only_the_reset_value_resets() {
        let mut pm = AcpiPm::new(5, 1);
        assert_eq!(pm.write(RESET_OFFSET, &[2]), DeviceAction::None);
        assert_eq!(pm.write(RESET_OFFSET, &[1, 0]), DeviceAction::None);
        assert_eq!(pm.write(RESET_OFFSET, &[1]), DeviceAction::Reset);
    }

    #[test]
    fn registers_read_zero() {
        let mut pm = AcpiPm::new(5, 1);
        let mut data = [0xff; 2];
        pm.read(SLEEP_STATUS_OFFSET, &mut data);
        assert_eq!(data, [0, 0]);
    }
}
