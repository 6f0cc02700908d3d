//! The seam between KVM exits and the `devices` crate: a pair of buses as
//! an [`IoHandler`], and an irqfd as a device [`devices::Interrupt`].

use std::sync::Arc;

use devices::{Bus, DeviceAction, Interrupt};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::vcpu::{ExitAction, IoHandler};
use crate::{Error, Result};

/// The port-I/O and MMIO buses of a VM. Cheap to clone: every vCPU thread
/// holds one, and the devices behind them lock themselves.
///
/// An access no device claims reads as all ones (a PC's floating bus: how
/// Linux learns that a probed device is absent) and a write to it is
/// dropped, so probing never stops a guest.
#[derive(Debug, Clone, Default)]
pub struct DeviceBuses {
    /// Port I/O.
    pub pio: Arc<Bus>,
    /// Memory-mapped I/O (guest-physical addresses outside RAM).
    pub mmio: Arc<Bus>,
}

fn exit_action(action: DeviceAction) -> ExitAction {
    match action {
        DeviceAction::None => ExitAction::Continue,
        DeviceAction::Exit(status) => ExitAction::Exit(status),
        DeviceAction::Reset => ExitAction::Reset,
        DeviceAction::PowerOff => ExitAction::PowerOff,
    }
}

fn read(bus: &Bus, addr: u64, data: &mut [u8]) {
    if let Err(error) = bus.read(addr, data) {
        tracing::trace!(addr, %error, "unclaimed read");
        data.fill(0xff);
    }
}

fn write(bus: &Bus, addr: u64, data: &[u8]) -> ExitAction {
    bus.write(addr, data).map_or_else(
        |error| {
            tracing::trace!(addr, %error, "unclaimed write");
            ExitAction::Continue
        },
        exit_action,
    )
}

impl IoHandler for DeviceBuses {
    fn pio_read(&mut self, port: u16, data: &mut [u8]) {
        read(&self.pio, u64::from(port), data);
    }
    fn pio_write(&mut self, port: u16, data: &[u8]) -> ExitAction {
        write(&self.pio, u64::from(port), data)
    }
    fn mmio_read(&mut self, addr: u64, data: &mut [u8]) {
        read(&self.mmio, addr, data);
    }
    fn mmio_write(&mut self, addr: u64, data: &[u8]) -> ExitAction {
        write(&self.mmio, addr, data)
    }
}

/// An interrupt line backed by an eventfd KVM injects as GSI `gsi` (irqfd):
/// a device's `trigger` reaches the guest without a trip through the VMM.
#[derive(Debug)]
pub struct IrqFd {
    event: EventFd,
    gsi: u32,
}

impl IrqFd {
    /// Registers a new irqfd for `gsi` with `vm`.
    pub fn new(vm: &VmFd, gsi: u32) -> Result<IrqFd> {
        let event = EventFd::new(EFD_NONBLOCK).map_err(Error::EventFd)?;
        vm.register_irqfd(&event, gsi)
            .map_err(|source| Error::Ioctl {
                ioctl: "KVM_IRQFD",
                source,
            })?;
        Ok(IrqFd { event, gsi })
    }

    /// The GSI this line raises.
    pub fn gsi(&self) -> u32 {
        self.gsi
    }
}

impl Interrupt for IrqFd {
    fn trigger(&self) -> std::io::Result<()> {
        self.event.write(1)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use devices::legacy::{AcpiPm, ExitPort};

    use super::*;

    #[test]
    fn device_actions_end_the_run_and_unclaimed_accesses_float() {
        let mut pio = Bus::new();
        pio.insert(Arc::new(Mutex::new(ExitPort)), 0x501, 1)
            .expect("exit port");
        pio.insert(Arc::new(Mutex::new(AcpiPm::new(5, 1))), 0x600, 3)
            .expect("acpi pm");
        let mut buses = DeviceBuses {
            pio: Arc::new(pio),
            mmio: Arc::default(),
        };
        assert_eq!(buses.pio_write(0x501, &[7]), ExitAction::Exit(7));
        assert_eq!(
            buses.pio_write(0x600, &[5 << 2 | 1 << 5]),
            ExitAction::PowerOff
        );
        assert_eq!(buses.pio_write(0x602, &[1]), ExitAction::Reset);
        assert_eq!(buses.pio_write(0x80, &[0]), ExitAction::Continue);
        let mut data = [0u8; 2];
        buses.pio_read(0x2f8, &mut data);
        assert_eq!(data, [0xff, 0xff]);
        let mut data = [0u8; 4];
        buses.mmio_read(0xfed0_0000, &mut data);
        assert_eq!(data, [0xff; 4]);
        assert_eq!(buses.mmio_write(0xfed0_0000, &[1]), ExitAction::Continue);
    }
}
