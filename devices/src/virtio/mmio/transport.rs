//! The std half of the virtio-mmio transport: register accesses from a vCPU thread, the
//! device's configuration space, the queues built in guest memory on DRIVER_OK.

use std::fmt::Display;
use std::sync::{Arc, Mutex, MutexGuard};

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::state::{CONFIG_SPACE_OFFSET, MmioState, WriteEffect};
use crate::virtio::{Activation, GuestMemory, VirtioDevice, VirtioInterrupt};
use crate::{BusDevice, DeviceAction, Interrupt};

/// VIRTIO_F_RING_EVENT_IDX (bit 29, virtio 1.2 §6).
const VIRTIO_F_RING_EVENT_IDX: u64 = 1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;

/// The device model and whether it is live (activated, not reset, not in
/// DEVICE_NEEDS_RESET), under one lock: the vCPU thread activates and resets the device, the
/// event loop hands it notifications, and holding this lock across the check and the call
/// keeps a notification from reaching a device that is being reset.
#[derive(Debug)]
pub(crate) struct DeviceSlot {
    pub(crate) device: Box<dyn VirtioDevice>,
    pub(crate) live: bool,
}

/// One virtio-mmio device: its registers ([`MmioState`]) and its device model, on the MMIO
/// bus at a 4 KiB window (`0x000..0x100` registers, `0x100..` the device's configuration
/// space).
///
/// Registers are 32 bits wide and 4-byte aligned (§4.2.2): an access of another width or
/// alignment reads 0 and is ignored, with a debug line. The configuration space takes any
/// width; the device decides.
///
/// The transport never runs device work: a `QueueNotify` write that reaches it (KVM's
/// ioeventfd takes the 4-byte writes of a valid index first) signals the queue's eventfd,
/// which the event loop ([`crate::event_loop`]) watches.
#[derive(Debug)]
pub struct MmioTransport {
    state: MmioState,
    device: Arc<Mutex<DeviceSlot>>,
    device_type: u32,
    memory: GuestMemory,
    interrupt: VirtioInterrupt,
    queue_events: Vec<EventFd>,
    /// The device took the queue eventfds ([`VirtioDevice::adopt_queue_events`]): the event
    /// loop does not watch them.
    device_reads_queue_events: bool,
}

impl MmioTransport {
    /// A transport for `device` in its reset state, interrupting on `line`, with one
    /// non-blocking eventfd per queue (offered to the device:
    /// [`VirtioDevice::adopt_queue_events`]).
    ///
    /// Errors: creating an eventfd failed, or the device's `adopt_queue_events`.
    pub fn new(
        mut device: Box<dyn VirtioDevice>,
        memory: GuestMemory,
        line: Arc<dyn Interrupt>,
    ) -> std::io::Result<Self> {
        let queue_sizes = device.queue_max_sizes();
        let state = MmioState::new(device.device_type(), device.device_features(), queue_sizes);
        let queue_events = queue_sizes
            .iter()
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<std::io::Result<Vec<_>>>()?;
        let device_reads_queue_events = device.adopt_queue_events(&queue_events)?;
        Ok(Self {
            state,
            device_type: device.device_type(),
            device: Arc::new(Mutex::new(DeviceSlot {
                device,
                live: false,
            })),
            memory,
            interrupt: VirtioInterrupt::new(line),
            queue_events,
            device_reads_queue_events,
        })
    }

    /// The device ID (virtio 1.2 §5).
    pub fn device_type(&self) -> u32 {
        self.device_type
    }

    /// One eventfd per queue, in index order: queue `i`'s is signalled by a write of `i` to
    /// `QueueNotify` (offset 0x50). The VMM registers each as a KVM ioeventfd with datamatch
    /// `i`; the event loop reads them.
    pub fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    /// Whether the device reads its queue eventfds itself
    /// ([`VirtioDevice::adopt_queue_events`]), so the event loop must not.
    pub fn device_reads_queue_events(&self) -> bool {
        self.device_reads_queue_events
    }

    /// The register state, for tests and diagnostics.
    pub fn state(&self) -> &MmioState {
        &self.state
    }

    /// The device's interrupt and its `InterruptStatus`.
    pub fn interrupt(&self) -> &VirtioInterrupt {
        &self.interrupt
    }

    pub(crate) fn device_slot(&self) -> Arc<Mutex<DeviceSlot>> {
        Arc::clone(&self.device)
    }

    /// Puts the device in DEVICE_NEEDS_RESET (§2.1.2) because of `why`: it gets no more
    /// notifications until the driver resets it, and the driver hears of it through a
    /// configuration change interrupt.
    pub fn set_needs_reset(&mut self, why: &dyn Display) {
        tracing::debug!(device = self.device_type, %why, "virtio device needs reset");
        if let Some(mut slot) = self.lock_device() {
            slot.live = false;
        }
        self.state.set_needs_reset();
        if let Err(error) = self.interrupt.signal_config_change() {
            tracing::debug!(device = self.device_type, %error, "cannot raise the interrupt");
        }
    }

    /// The device model, unless it panicked holding its lock (then the event loop's failure
    /// ends the run, and the registers answer without it).
    fn lock_device(&self) -> Option<MutexGuard<'_, DeviceSlot>> {
        let slot = self.device.lock().ok();
        if slot.is_none() {
            tracing::debug!(device = self.device_type, "device model panicked earlier");
        }
        slot
    }

    /// DRIVER_OK: the queues from the driver's values, checked against guest memory, then
    /// the device's activation; either failing is DEVICE_NEEDS_RESET.
    fn activate(&mut self) {
        let queues = match self.build_queues() {
            Ok(queues) => queues,
            Err(why) => return self.set_needs_reset(&why),
        };
        let activation = Activation {
            memory: self.memory.clone(),
            queues,
            interrupt: self.interrupt.clone(),
            acked_features: self.state.acked_features(),
        };
        let Some(mut slot) = self.lock_device() else {
            return;
        };
        let result = slot.device.activate(activation);
        slot.live = result.is_ok();
        drop(slot);
        if let Err(error) = result {
            self.set_needs_reset(&error);
        }
    }

    fn build_queues(&self) -> Result<Vec<Queue>, String> {
        let event_idx = self.state.acked_features() & VIRTIO_F_RING_EVENT_IDX != 0;
        let mut queues = Vec::with_capacity(self.state.queues().len());
        for (index, config) in self.state.queues().iter().enumerate() {
            let mut queue = Queue::new(config.max_size)
                .map_err(|e| format!("queue {index}: maximum size {}: {e}", config.max_size))?;
            if config.ready {
                queue.try_set_size(config.size).map_err(|_| {
                    format!(
                        "queue {index}: size {} is not a power of 2 in 1..={}",
                        config.size, config.max_size
                    )
                })?;
                let misaligned = |area: &'static str, addr: u64| {
                    move |_| format!("queue {index}: {area} area {addr:#x} is misaligned")
                };
                queue
                    .try_set_desc_table_address(GuestAddress(config.desc))
                    .map_err(misaligned("descriptor", config.desc))?;
                queue
                    .try_set_avail_ring_address(GuestAddress(config.driver))
                    .map_err(misaligned("driver", config.driver))?;
                queue
                    .try_set_used_ring_address(GuestAddress(config.device))
                    .map_err(misaligned("device", config.device))?;
                queue.set_event_idx(event_idx);
                queue.set_ready(true);
                if !queue.is_valid(&self.memory) {
                    return Err(format!(
                        "queue {index}: rings (descriptors {:#x}, driver {:#x}, device {:#x}, \
                         size {}) are not all in guest memory",
                        config.desc, config.driver, config.device, config.size
                    ));
                }
            }
            queues.push(queue);
        }
        Ok(queues)
    }

    /// Status 0: the device forgets its activation; notifications still queued on the
    /// eventfds are drained by the event loop, which finds the device not live.
    fn reset(&mut self) {
        if let Some(mut slot) = self.lock_device() {
            slot.live = false;
            slot.device.reset();
        }
        self.interrupt.acknowledge(u32::MAX);
    }

    fn notify(&self, index: u16) {
        let event = self.queue_events.get(usize::from(index));
        if let Some(Err(error)) = event.map(|event| event.write(1)) {
            tracing::debug!(device = self.device_type, index, %error, "cannot signal the queue");
        }
    }
}

/// The 32-bit register value of a guest access, if it is one: 4 bytes at a 4-byte boundary.
fn register_access(offset: u64, len: usize) -> bool {
    len == 4 && offset % 4 == 0
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let Some(config_offset) = offset.checked_sub(CONFIG_SPACE_OFFSET) {
            match self.lock_device() {
                Some(slot) => slot.device.read_config(config_offset, data),
                None => data.fill(0),
            }
            return;
        }
        data.fill(0);
        if !register_access(offset, data.len()) {
            tracing::debug!(
                device = self.device_type,
                offset,
                len = data.len(),
                "register read of the wrong width or alignment: reads 0"
            );
            return;
        }
        match self.state.read(offset, self.interrupt.status()) {
            Some(value) => data.copy_from_slice(&value.to_le_bytes()),
            None => tracing::debug!(
                device = self.device_type,
                offset,
                "read of no readable register: reads 0"
            ),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> DeviceAction {
        if let Some(config_offset) = offset.checked_sub(CONFIG_SPACE_OFFSET) {
            if let Some(mut slot) = self.lock_device() {
                slot.device.write_config(config_offset, data);
            }
            return DeviceAction::None;
        }
        let value = match <[u8; 4]>::try_from(data) {
            Ok(bytes) if register_access(offset, 4) => u32::from_le_bytes(bytes),
            _ => {
                tracing::debug!(
                    device = self.device_type,
                    offset,
                    len = data.len(),
                    "register write of the wrong width or alignment: ignored"
                );
                return DeviceAction::None;
            }
        };
        match self.state.write(offset, value) {
            WriteEffect::None => {}
            WriteEffect::Activate => self.activate(),
            WriteEffect::Reset => self.reset(),
            WriteEffect::Notify(index) => self.notify(index),
            WriteEffect::InterruptAck(bits) => self.interrupt.acknowledge(bits),
            WriteEffect::Ignored(reason) => tracing::debug!(
                device = self.device_type,
                offset,
                value,
                reason,
                "register write ignored"
            ),
        }
        DeviceAction::None
    }
}
