//! Attaching virtio devices to a VM: each gets a 4 KiB virtio-mmio window and an IOAPIC pin
//! from `vm-allocator`, an irqfd for its interrupt, one KVM ioeventfd per queue on its
//! `QueueNotify` register, a place on the MMIO bus and on the event loop, and a DSDT entry.
//! Devices are attached in the order given, so the guest enumerates them in that order
//! (Linux names virtio-blk disks vda, vdb, ... by probe order).

use std::sync::{Arc, Mutex};

use devices::Bus;
use devices::event_loop::EventLoop;
use devices::virtio::VirtioDevice;
use devices::virtio::mmio::MmioTransport;
use devices::virtio::mmio::state::reg;
use kvm_ioctls::IoEventAddress;
use virtio_ids::*;
use vm_allocator::{AddressAllocator, AllocPolicy, IdAllocator};

use crate::io::IrqFd;
use crate::vm::Vm;
use crate::x86_64::acpi::VirtioMmioDevice;
use crate::x86_64::layout::{
    FIRST_DEVICE_IRQ, LAST_DEVICE_IRQ, VIRTIO_MMIO_END, VIRTIO_MMIO_SIZE, VIRTIO_MMIO_START,
};
use crate::{Error, Result};

/// Device IDs (virtio 1.2 §5) named in logs and errors.
mod virtio_ids {
    pub(super) const NET: u32 = 1;
    pub(super) const BLOCK: u32 = 2;
    pub(super) const CONSOLE: u32 = 3;
    pub(super) const RNG: u32 = 4;
    pub(super) const VSOCK: u32 = 19;
    pub(super) const FS: u32 = 26;
}

/// A device's name in logs and errors: its kind and its place in the list,
/// e.g. `virtio-blk #1`.
pub fn device_name(device_type: u32, index: usize) -> String {
    let kind = match device_type {
        NET => "net",
        BLOCK => "blk",
        CONSOLE => "console",
        RNG => "rng",
        VSOCK => "vsock",
        FS => "fs",
        _ => return format!("virtio device type {device_type} #{index}"),
    };
    format!("virtio-{kind} #{index}")
}

/// Hands out virtio-mmio windows and interrupt lines.
#[derive(Debug)]
pub struct DeviceAllocator {
    windows: AddressAllocator,
    irqs: IdAllocator,
}

impl DeviceAllocator {
    /// Windows from `VIRTIO_MMIO_START..VIRTIO_MMIO_END`, IRQs `FIRST_DEVICE_IRQ..=LAST_DEVICE_IRQ`
    /// (the layout's).
    pub fn new() -> Self {
        Self::with_ranges(
            VIRTIO_MMIO_START,
            VIRTIO_MMIO_END - VIRTIO_MMIO_START,
            FIRST_DEVICE_IRQ,
            LAST_DEVICE_IRQ,
        )
        .expect("the layout's ranges are valid")
    }

    /// Windows from `base..base + size`, IRQs `first_irq..=last_irq`.
    ///
    /// Errors: an empty or overflowing range ([`Error::DeviceRange`]).
    pub fn with_ranges(base: u64, size: u64, first_irq: u32, last_irq: u32) -> Result<Self> {
        Ok(Self {
            windows: AddressAllocator::new(base, size).map_err(Error::DeviceRange)?,
            irqs: IdAllocator::new(first_irq, last_irq).map_err(Error::DeviceRange)?,
        })
    }

    /// The next window (4 KiB, 4 KiB-aligned) and IRQ, for the device named `device`.
    ///
    /// Errors: [`Error::VirtioWindow`], [`Error::VirtioIrq`] when the ranges are used up.
    pub fn allocate(&mut self, device: &str) -> Result<VirtioMmioDevice> {
        let window = self
            .windows
            .allocate(VIRTIO_MMIO_SIZE, VIRTIO_MMIO_SIZE, AllocPolicy::FirstMatch)
            .map_err(|source| Error::VirtioWindow {
                device: device.to_owned(),
                source,
            })?;
        let irq = self.irqs.allocate_id().map_err(|source| Error::VirtioIrq {
            device: device.to_owned(),
            source,
        })?;
        Ok(VirtioMmioDevice {
            base: window.start(),
            size: window.len(),
            irq,
        })
    }
}

impl Default for DeviceAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// Attaches `devices`, in order, to `vm`: windows and IRQs from `allocator`, each transport on
/// `mmio` and on `event_loop`. Returns what the DSDT declares, in the same order.
///
/// Errors: the allocator's ([`Error::VirtioWindow`], [`Error::VirtioIrq`]), an eventfd
/// ([`Error::EventFd`]), `KVM_IRQFD` or `KVM_IOEVENTFD` ([`Error::Ioctl`]), the bus
/// ([`Error::Device`]), the event loop ([`Error::EventLoop`]).
pub(crate) fn attach_virtio_devices(
    vm: &Vm,
    allocator: &mut DeviceAllocator,
    mmio: &mut Bus,
    event_loop: &mut EventLoop,
    devices: Vec<Box<dyn VirtioDevice>>,
) -> Result<Vec<VirtioMmioDevice>> {
    let mut declared = Vec::with_capacity(devices.len());
    for (index, device) in devices.into_iter().enumerate() {
        let name = device_name(device.device_type(), index);
        let slot = allocator.allocate(&name)?;
        let line = Arc::new(IrqFd::new(vm.fd(), slot.irq)?);
        let transport =
            MmioTransport::new(device, vm.memory().clone(), line).map_err(Error::EventFd)?;
        let notify = IoEventAddress::Mmio(slot.base + reg::QUEUE_NOTIFY);
        for (queue, event) in transport.queue_events().iter().enumerate() {
            // Queue indexes come from `queue_max_sizes`, far below 2^32.
            vm.fd()
                .register_ioevent(event, &notify, queue as u32)
                .map_err(|source| Error::Ioctl {
                    ioctl: "KVM_IOEVENTFD",
                    source,
                })?;
        }
        let transport = Arc::new(Mutex::new(transport));
        event_loop.add_virtio(&transport)?;
        mmio.insert(transport, slot.base, slot.size)?;
        tracing::debug!(
            device = name,
            window = format_args!("{:#x}..{:#x}", slot.base, slot.base + slot.size),
            irq = slot.irq,
            "virtio device attached"
        );
        declared.push(slot);
    }
    Ok(declared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_get_distinct_windows_and_irqs_in_order() {
        let mut allocator = DeviceAllocator::new();
        let slots: Vec<_> = (0..3)
            .map(|i| allocator.allocate(&format!("d{i}")).expect("room"))
            .collect();
        assert_eq!(
            slots,
            [0, 1, 2].map(|i| VirtioMmioDevice {
                base: VIRTIO_MMIO_START + i * VIRTIO_MMIO_SIZE,
                size: VIRTIO_MMIO_SIZE,
                irq: FIRST_DEVICE_IRQ + i as u32,
            })
        );
    }

    #[test]
    fn a_full_allocator_is_an_error_naming_the_device() {
        let mut allocator = DeviceAllocator::new();
        for i in FIRST_DEVICE_IRQ..=LAST_DEVICE_IRQ {
            allocator.allocate(&format!("d{i}")).expect("room");
        }
        let error = allocator
            .allocate("virtio-blk #19")
            .expect_err("no irq left");
        assert!(matches!(error, Error::VirtioIrq { ref device, .. } if device == "virtio-blk #19"));
        assert!(error.to_string().contains("virtio-blk #19"), "{error}");

        let mut allocator =
            DeviceAllocator::with_ranges(VIRTIO_MMIO_START, VIRTIO_MMIO_SIZE, 5, 23).expect("ok");
        allocator.allocate("virtio-rng #0").expect("one window");
        let error = allocator
            .allocate("virtio-rng #1")
            .expect_err("no window left");
        assert!(
            matches!(error, Error::VirtioWindow { ref device, .. } if device == "virtio-rng #1")
        );
    }

    #[test]
    fn names_say_the_kind_and_the_place() {
        assert_eq!(device_name(2, 0), "virtio-blk #0");
        assert_eq!(device_name(4, 3), "virtio-rng #3");
        assert_eq!(device_name(42, 1), "virtio device type 42 #1");
    }
}
