//! The virtio-mmio register file and device-status state machine (virtio 1.2 §4.2.2, §3.1.1),
//! on `core` + `alloc` only: what a register read answers and what a register write changes
//! and asks for ([`WriteEffect`]). No I/O, no guest memory, no locks: the std transport
//! ([`super::MmioTransport`]) checks the access width, builds the queues in guest memory and
//! drives the device from the effects.
//!
//! The constants are written out from the spec because `virtio-bindings` links `std` (it does
//! not build for `x86_64-unknown-none`); a std test checks each against `virtio-bindings`.

use alloc::vec::Vec;

/// `MagicValue`: "virt" in little-endian.
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// `Version` of the modern (non-legacy) virtio-mmio interface.
pub const VERSION: u32 = 2;
/// `VendorID`: "CAPS" in little-endian; drivers match on the device ID, not on this.
pub const VENDOR_ID: u32 = u32::from_le_bytes(*b"CAPS");
/// Offset of the device configuration space from the window's base.
pub const CONFIG_SPACE_OFFSET: u64 = 0x100;

/// Register offsets (virtio 1.2 §4.2.2, table "MMIO Device Register Layout").
pub mod reg {
    /// R: `MAGIC_VALUE`.
    pub const MAGIC_VALUE: u64 = 0x000;
    /// R: 2.
    pub const VERSION: u64 = 0x004;
    /// R: the device type.
    pub const DEVICE_ID: u64 = 0x008;
    /// R.
    pub const VENDOR_ID: u64 = 0x00c;
    /// R: 32 feature bits from 32 × `DeviceFeaturesSel`.
    pub const DEVICE_FEATURES: u64 = 0x010;
    /// W.
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    /// W: 32 accepted feature bits at 32 × `DriverFeaturesSel`.
    pub const DRIVER_FEATURES: u64 = 0x020;
    /// W.
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    /// W: the queue the queue registers below refer to.
    pub const QUEUE_SEL: u64 = 0x030;
    /// R: the selected queue's largest size, 0 if there is no such queue.
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    /// W: the selected queue's size.
    pub const QUEUE_NUM: u64 = 0x038;
    /// RW: the selected queue is set up.
    pub const QUEUE_READY: u64 = 0x044;
    /// W: a queue index with new buffers.
    pub const QUEUE_NOTIFY: u64 = 0x050;
    /// R: `VIRTIO_MMIO_INT_VRING` | `VIRTIO_MMIO_INT_CONFIG`.
    pub const INTERRUPT_STATUS: u64 = 0x060;
    /// W: the interrupt bits the driver handled.
    pub const INTERRUPT_ACK: u64 = 0x064;
    /// RW: the device status (§2.1).
    pub const STATUS: u64 = 0x070;
    /// W: the descriptor area's guest-physical address, low 32 bits.
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    /// W: high 32 bits.
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    /// W: the driver (available) area's address, low 32 bits.
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    /// W: high 32 bits.
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    /// W: the device (used) area's address, low 32 bits.
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    /// W: high 32 bits.
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    /// W: the shared memory region the two registers below refer to.
    pub const SHM_SEL: u64 = 0x0ac;
    /// R: the region's length, low 32 bits (all ones: no such region).
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    /// R: high 32 bits.
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    /// R: changes when the configuration space changes.
    pub const CONFIG_GENERATION: u64 = 0x0fc;
}

/// Device status bits (virtio 1.2 §2.1).
pub mod status {
    /// The guest found the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u8 = 2;
    /// The driver is set up and the device live.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u8 = 8;
    /// The device hit an error it cannot recover from without a reset.
    pub const DEVICE_NEEDS_RESET: u8 = 64;
    /// The driver gave up on the device.
    pub const FAILED: u8 = 128;
}

/// VIRTIO_F_VERSION_1 (bit 32, virtio 1.2 §6): a modern device; the transport refuses a
/// driver that does not accept it.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Interrupt status bits (virtio 1.2 §4.2.2, `InterruptStatus`).
pub mod interrupt {
    /// "Used Buffer Notification".
    pub const VRING: u32 = 1;
    /// "Configuration Change Notification".
    pub const CONFIG: u32 = 2;
}

/// One queue as the driver describes it through the queue registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// `QueueNumMax`: what the device offers.
    pub max_size: u16,
    /// `QueueNum`: what the driver chose; checked (a power of 2, 1 to `max_size`) on
    /// DRIVER_OK, not here. Starts at `max_size`.
    pub size: u16,
    /// `QueueReady`.
    pub ready: bool,
    /// `QueueDescLow`/`High`: guest-physical address of the descriptor area.
    pub desc: u64,
    /// `QueueDriverLow`/`High`: the driver (available) area.
    pub driver: u64,
    /// `QueueDeviceLow`/`High`: the device (used) area.
    pub device: u64,
}

impl QueueConfig {
    fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            ready: false,
            desc: 0,
            driver: 0,
            device: 0,
        }
    }
}

/// What a register write asks of the transport, beyond the register state it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteEffect {
    /// Nothing more: the register took the value.
    None,
    /// The driver set DRIVER_OK: build the queues and activate the device; on failure call
    /// [`MmioState::set_needs_reset`].
    Activate,
    /// The driver wrote 0 to `Status`: the registers are reset; reset the device and clear
    /// its interrupt status.
    Reset,
    /// `QueueNotify` named this queue of a live device (without an ioeventfd, the write
    /// reaches the transport).
    Notify(u16),
    /// `InterruptAck` with these bits.
    InterruptAck(u32),
    /// The write was refused and changed nothing, for this reason (the transport logs it).
    Ignored(&'static str),
}

/// The register file of one virtio-mmio device.
#[derive(Debug, Clone)]
pub struct MmioState {
    device_id: u32,
    device_features: u64,
    device_features_sel: u32,
    driver_features: u64,
    driver_features_sel: u32,
    queue_sel: u32,
    queues: Vec<QueueConfig>,
    status: u8,
}

impl MmioState {
    /// The registers of a device of type `device_id` offering `device_features`, with one queue
    /// per entry of `queue_max_sizes`, in the reset state.
    pub fn new(device_id: u32, device_features: u64, queue_max_sizes: &[u16]) -> Self {
        Self {
            device_id,
            device_features,
            device_features_sel: 0,
            driver_features: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            queues: queue_max_sizes
                .iter()
                .map(|&max| QueueConfig::new(max))
                .collect(),
            status: 0,
        }
    }

    /// The device status (§2.1), as the driver reads it.
    pub fn status(&self) -> u8 {
        self.status
    }

    /// The features the driver accepted (final once FEATURES_OK is set).
    pub fn acked_features(&self) -> u64 {
        self.driver_features
    }

    /// The queues as the driver set them up, in index order.
    pub fn queues(&self) -> &[QueueConfig] {
        &self.queues
    }

    /// Whether the device is live: DRIVER_OK set, neither DEVICE_NEEDS_RESET nor FAILED.
    pub fn is_live(&self) -> bool {
        self.status & (status::DRIVER_OK | status::DEVICE_NEEDS_RESET | status::FAILED)
            == status::DRIVER_OK
    }

    /// Sets DEVICE_NEEDS_RESET (§2.1.2): the device cannot go on until the driver resets it;
    /// the transport also raises a configuration change interrupt.
    pub fn set_needs_reset(&mut self) {
        self.status |= status::DEVICE_NEEDS_RESET;
    }

    /// Reads the 32-bit register at `offset` (below [`CONFIG_SPACE_OFFSET`]);
    /// `interrupt_status` is the device's `InterruptStatus`, which lives with its interrupt
    /// line. `None` for an offset that is no readable register (the transport reads 0).
    pub fn read(&self, offset: u64, interrupt_status: u32) -> Option<u32> {
        let value = match offset {
            reg::MAGIC_VALUE => MAGIC_VALUE,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.device_id,
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device_features as u32,
                1 => (self.device_features >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => self.selected().map_or(0, |q| u32::from(q.max_size)),
            reg::QUEUE_READY => self.selected().map_or(0, |q| u32::from(q.ready)),
            reg::INTERRUPT_STATUS => interrupt_status,
            reg::STATUS => u32::from(self.status),
            // No shared memory regions: all ones says so (§4.2.2).
            reg::SHM_LEN_LOW | reg::SHM_LEN_HIGH => u32::MAX,
            // capsule's devices never change their configuration space after activation.
            reg::CONFIG_GENERATION => 0,
            _ => return None,
        };
        Some(value)
    }

    /// Writes the 32-bit register at `offset` (below [`CONFIG_SPACE_OFFSET`]) and says what
    /// else the write asks for. A write the current status does not allow (§3.1.1, §4.2.3.2)
    /// changes nothing and is [`WriteEffect::Ignored`].
    pub fn write(&mut self, offset: u64, value: u32) -> WriteEffect {
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            reg::DRIVER_FEATURES => return self.write_driver_features(value),
            reg::QUEUE_SEL => self.queue_sel = value,
            reg::QUEUE_NUM
            | reg::QUEUE_READY
            | reg::QUEUE_DESC_LOW
            | reg::QUEUE_DESC_HIGH
            | reg::QUEUE_DRIVER_LOW
            | reg::QUEUE_DRIVER_HIGH
            | reg::QUEUE_DEVICE_LOW
            | reg::QUEUE_DEVICE_HIGH => return self.write_queue(offset, value),
            reg::QUEUE_NOTIFY => return self.notify(value),
            reg::INTERRUPT_ACK => return WriteEffect::InterruptAck(value),
            reg::STATUS => return self.write_status(value),
            // Selecting a region that does not exist is harmless: its length reads all ones.
            reg::SHM_SEL => {}
            _ => return WriteEffect::Ignored("not a writable register"),
        }
        WriteEffect::None
    }

    fn selected(&self) -> Option<&QueueConfig> {
        self.queues.get(usize::try_from(self.queue_sel).ok()?)
    }

    fn write_driver_features(&mut self, value: u32) -> WriteEffect {
        // §3.1.1: features are negotiated after DRIVER and before FEATURES_OK.
        if self.status & (status::DRIVER | status::FEATURES_OK | status::FAILED) != status::DRIVER {
            return WriteEffect::Ignored("driver features outside feature negotiation");
        }
        let shift = match self.driver_features_sel {
            0 => 0,
            1 => 32,
            _ => return WriteEffect::Ignored("driver features beyond bit 63"),
        };
        self.driver_features =
            (self.driver_features & !(u64::from(u32::MAX) << shift)) | u64::from(value) << shift;
        WriteEffect::None
    }

    fn write_queue(&mut self, offset: u64, value: u32) -> WriteEffect {
        // §4.2.3.2: queues are set up after FEATURES_OK and before DRIVER_OK.
        if self.status & (status::FEATURES_OK | status::DRIVER_OK | status::FAILED)
            != status::FEATURES_OK
        {
            return WriteEffect::Ignored("queue set-up outside FEATURES_OK..DRIVER_OK");
        }
        let Some(queue) = usize::try_from(self.queue_sel)
            .ok()
            .and_then(|sel| self.queues.get_mut(sel))
        else {
            return WriteEffect::Ignored("QueueSel names no queue");
        };
        let set_low = |addr: &mut u64| *addr = (*addr & !u64::from(u32::MAX)) | u64::from(value);
        let set_high =
            |addr: &mut u64| *addr = (*addr & u64::from(u32::MAX)) | u64::from(value) << 32;
        match offset {
            reg::QUEUE_NUM => match u16::try_from(value) {
                Ok(size) => queue.size = size,
                Err(_) => return WriteEffect::Ignored("queue size above 65535"),
            },
            reg::QUEUE_READY => match value {
                0 | 1 => queue.ready = value == 1,
                _ => return WriteEffect::Ignored("QueueReady is 0 or 1"),
            },
            reg::QUEUE_DESC_LOW => set_low(&mut queue.desc),
            reg::QUEUE_DESC_HIGH => set_high(&mut queue.desc),
            reg::QUEUE_DRIVER_LOW => set_low(&mut queue.driver),
            reg::QUEUE_DRIVER_HIGH => set_high(&mut queue.driver),
            reg::QUEUE_DEVICE_LOW => set_low(&mut queue.device),
            reg::QUEUE_DEVICE_HIGH => set_high(&mut queue.device),
            _ => return WriteEffect::Ignored("not a queue register"),
        }
        WriteEffect::None
    }

    fn notify(&self, value: u32) -> WriteEffect {
        if !self.is_live() {
            return WriteEffect::Ignored("queue notification before DRIVER_OK");
        }
        match u16::try_from(value) {
            Ok(index) if usize::from(index) < self.queues.len() => WriteEffect::Notify(index),
            _ => WriteEffect::Ignored("QueueNotify names no queue"),
        }
    }

    fn write_status(&mut self, value: u32) -> WriteEffect {
        use status::*;
        if value == 0 {
            self.reset();
            return WriteEffect::Reset;
        }
        let Ok(value) = u8::try_from(value) else {
            return WriteEffect::Ignored("status above 8 bits");
        };
        // DEVICE_NEEDS_RESET is the device's bit: a driver that writes back what it read
        // carries it along, and neither sets nor clears it.
        let needs_reset = self.status & DEVICE_NEEDS_RESET;
        let old = self.status & !DEVICE_NEEDS_RESET;
        let new = value & !DEVICE_NEEDS_RESET;
        let effect = if new == old | FAILED && old & FAILED == 0 {
            // The driver may give up at any point (§3.1.1).
            WriteEffect::None
        } else if old == 0 && new == ACKNOWLEDGE
            || old == ACKNOWLEDGE && new == ACKNOWLEDGE | DRIVER
        {
            WriteEffect::None
        } else if old == ACKNOWLEDGE | DRIVER && new == old | FEATURES_OK {
            if let Some(refusal) = self.features_refusal() {
                // FEATURES_OK stays clear: the driver reads it back and gives up (§3.1.1).
                return WriteEffect::Ignored(refusal);
            }
            WriteEffect::None
        } else if old == ACKNOWLEDGE | DRIVER | FEATURES_OK && new == old | DRIVER_OK {
            WriteEffect::Activate
        } else {
            return WriteEffect::Ignored("not a valid device status transition");
        };
        self.status = new | needs_reset;
        effect
    }

    fn features_refusal(&self) -> Option<&'static str> {
        if self.driver_features & VIRTIO_F_VERSION_1 == 0 {
            Some("driver did not accept VIRTIO_F_VERSION_1")
        } else if self.driver_features & !self.device_features != 0 {
            Some("driver accepted features the device does not offer")
        } else {
            None
        }
    }

    /// Back to the state after [`MmioState::new`] (the driver wrote 0 to `Status`).
    fn reset(&mut self) {
        self.device_features_sel = 0;
        self.driver_features = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        for queue in &mut self.queues {
            *queue = QueueConfig::new(queue.max_size);
        }
        self.status = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::status::*;
    use super::*;

    const FEATURES: u64 = VIRTIO_F_VERSION_1 | 1 << 5;

    fn device() -> MmioState {
        MmioState::new(4, FEATURES, &[256, 64])
    }

    /// Brings the device to `ACKNOWLEDGE | DRIVER` with `features` accepted.
    fn negotiating(features: u64) -> MmioState {
        let mut state = device();
        assert_eq!(
            state.write(reg::STATUS, ACKNOWLEDGE.into()),
            WriteEffect::None
        );
        assert_eq!(
            state.write(reg::STATUS, (ACKNOWLEDGE | DRIVER).into()),
            WriteEffect::None
        );
        for sel in 0..2 {
            state.write(reg::DRIVER_FEATURES_SEL, sel);
            state.write(reg::DRIVER_FEATURES, (features >> (32 * sel)) as u32);
        }
        state
    }

    fn features_ok() -> MmioState {
        let mut state = negotiating(FEATURES);
        let value = (ACKNOWLEDGE | DRIVER | FEATURES_OK).into();
        assert_eq!(state.write(reg::STATUS, value), WriteEffect::None);
        state
    }

    fn live() -> MmioState {
        let mut state = features_ok();
        let value = (ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK).into();
        assert_eq!(state.write(reg::STATUS, value), WriteEffect::Activate);
        state
    }

    #[test]
    fn the_constants_are_the_specs() {
        use virtio_bindings::virtio_config as config;
        use virtio_bindings::virtio_mmio as mmio;
        let registers = [
            (reg::MAGIC_VALUE, mmio::VIRTIO_MMIO_MAGIC_VALUE),
            (reg::VERSION, mmio::VIRTIO_MMIO_VERSION),
            (reg::DEVICE_ID, mmio::VIRTIO_MMIO_DEVICE_ID),
            (reg::VENDOR_ID, mmio::VIRTIO_MMIO_VENDOR_ID),
            (reg::DEVICE_FEATURES, mmio::VIRTIO_MMIO_DEVICE_FEATURES),
            (
                reg::DEVICE_FEATURES_SEL,
                mmio::VIRTIO_MMIO_DEVICE_FEATURES_SEL,
            ),
            (reg::DRIVER_FEATURES, mmio::VIRTIO_MMIO_DRIVER_FEATURES),
            (
                reg::DRIVER_FEATURES_SEL,
                mmio::VIRTIO_MMIO_DRIVER_FEATURES_SEL,
            ),
            (reg::QUEUE_SEL, mmio::VIRTIO_MMIO_QUEUE_SEL),
            (reg::QUEUE_NUM_MAX, mmio::VIRTIO_MMIO_QUEUE_NUM_MAX),
            (reg::QUEUE_NUM, mmio::VIRTIO_MMIO_QUEUE_NUM),
            (reg::QUEUE_READY, mmio::VIRTIO_MMIO_QUEUE_READY),
            (reg::QUEUE_NOTIFY, mmio::VIRTIO_MMIO_QUEUE_NOTIFY),
            (reg::INTERRUPT_STATUS, mmio::VIRTIO_MMIO_INTERRUPT_STATUS),
            (reg::INTERRUPT_ACK, mmio::VIRTIO_MMIO_INTERRUPT_ACK),
            (reg::STATUS, mmio::VIRTIO_MMIO_STATUS),
            (reg::QUEUE_DESC_LOW, mmio::VIRTIO_MMIO_QUEUE_DESC_LOW),
            (reg::QUEUE_DESC_HIGH, mmio::VIRTIO_MMIO_QUEUE_DESC_HIGH),
            (reg::QUEUE_DRIVER_LOW, mmio::VIRTIO_MMIO_QUEUE_AVAIL_LOW),
            (reg::QUEUE_DRIVER_HIGH, mmio::VIRTIO_MMIO_QUEUE_AVAIL_HIGH),
            (reg::QUEUE_DEVICE_LOW, mmio::VIRTIO_MMIO_QUEUE_USED_LOW),
            (reg::QUEUE_DEVICE_HIGH, mmio::VIRTIO_MMIO_QUEUE_USED_HIGH),
            (reg::SHM_SEL, mmio::VIRTIO_MMIO_SHM_SEL),
            (reg::SHM_LEN_LOW, mmio::VIRTIO_MMIO_SHM_LEN_LOW),
            (reg::SHM_LEN_HIGH, mmio::VIRTIO_MMIO_SHM_LEN_HIGH),
            (reg::CONFIG_GENERATION, mmio::VIRTIO_MMIO_CONFIG_GENERATION),
            (CONFIG_SPACE_OFFSET, mmio::VIRTIO_MMIO_CONFIG),
        ];
        for (ours, theirs) in registers {
            assert_eq!(ours, u64::from(theirs));
        }
        let bits = [
            (ACKNOWLEDGE, config::VIRTIO_CONFIG_S_ACKNOWLEDGE),
            (DRIVER, config::VIRTIO_CONFIG_S_DRIVER),
            (DRIVER_OK, config::VIRTIO_CONFIG_S_DRIVER_OK),
            (FEATURES_OK, config::VIRTIO_CONFIG_S_FEATURES_OK),
            (DEVICE_NEEDS_RESET, config::VIRTIO_CONFIG_S_NEEDS_RESET),
            (FAILED, config::VIRTIO_CONFIG_S_FAILED),
        ];
        for (ours, theirs) in bits {
            assert_eq!(u32::from(ours), theirs);
        }
        assert_eq!(VIRTIO_F_VERSION_1, 1 << config::VIRTIO_F_VERSION_1);
        assert_eq!(interrupt::VRING, mmio::VIRTIO_MMIO_INT_VRING);
        assert_eq!(interrupt::CONFIG, mmio::VIRTIO_MMIO_INT_CONFIG);
        assert_eq!(&MAGIC_VALUE.to_le_bytes(), b"virt");
    }

    #[test]
    fn identity_and_features_read_back() {
        let mut state = device();
        assert_eq!(state.read(reg::MAGIC_VALUE, 0), Some(MAGIC_VALUE));
        assert_eq!(state.read(reg::VERSION, 0), Some(2));
        assert_eq!(state.read(reg::DEVICE_ID, 0), Some(4));
        assert_eq!(state.read(reg::VENDOR_ID, 0), Some(VENDOR_ID));
        assert_eq!(state.read(reg::DEVICE_FEATURES, 0), Some(1 << 5));
        state.write(reg::DEVICE_FEATURES_SEL, 1);
        assert_eq!(state.read(reg::DEVICE_FEATURES, 0), Some(1));
        state.write(reg::DEVICE_FEATURES_SEL, 2);
        assert_eq!(state.read(reg::DEVICE_FEATURES, 0), Some(0));
        assert_eq!(state.read(reg::QUEUE_NUM_MAX, 0), Some(256));
        state.write(reg::QUEUE_SEL, 1);
        assert_eq!(state.read(reg::QUEUE_NUM_MAX, 0), Some(64));
        state.write(reg::QUEUE_SEL, 2);
        assert_eq!(state.read(reg::QUEUE_NUM_MAX, 0), Some(0));
        assert_eq!(state.read(reg::QUEUE_READY, 0), Some(0));
        assert_eq!(state.read(reg::INTERRUPT_STATUS, 3), Some(3));
        assert_eq!(state.read(reg::SHM_LEN_LOW, 0), Some(u32::MAX));
        assert_eq!(state.read(reg::CONFIG_GENERATION, 0), Some(0));
        // Write-only and legacy registers are not readable.
        assert_eq!(state.read(reg::QUEUE_DESC_LOW, 0), None);
        assert_eq!(state.read(0x028, 0), None);
    }

    #[test]
    fn every_valid_transition_is_taken() {
        let state = live();
        assert_eq!(
            state.status(),
            ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK
        );
        assert!(state.is_live());
        assert_eq!(state.acked_features(), FEATURES);
    }

    #[test]
    fn failed_is_taken_from_every_state() {
        for state in [device(), negotiating(FEATURES), features_ok(), live()] {
            let mut state = state;
            let old = state.status();
            assert_eq!(
                state.write(reg::STATUS, (old | FAILED).into()),
                WriteEffect::None
            );
            assert_eq!(state.status(), old | FAILED);
            assert!(!state.is_live());
        }
    }

    #[test]
    fn invalid_transitions_are_refused() {
        let cases: [(MmioState, u8); 8] = [
            (device(), ACKNOWLEDGE | DRIVER),
            (device(), DRIVER),
            (device(), DRIVER_OK),
            (negotiating(FEATURES), ACKNOWLEDGE | DRIVER | DRIVER_OK),
            (negotiating(FEATURES), ACKNOWLEDGE),
            (features_ok(), ACKNOWLEDGE | DRIVER),
            (live(), ACKNOWLEDGE | DRIVER | FEATURES_OK),
            (live(), ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK),
        ];
        for (mut state, value) in cases {
            let old = state.status();
            assert!(
                matches!(
                    state.write(reg::STATUS, value.into()),
                    WriteEffect::Ignored(_)
                ),
                "{old:#x} -> {value:#x}"
            );
            assert_eq!(state.status(), old, "{old:#x} -> {value:#x}");
        }
        let mut failed = device();
        failed.write(reg::STATUS, FAILED.into());
        assert!(matches!(
            failed.write(reg::STATUS, (FAILED | ACKNOWLEDGE).into()),
            WriteEffect::Ignored(_)
        ));
        assert!(matches!(
            device().write(reg::STATUS, 0x100),
            WriteEffect::Ignored(_)
        ));
    }

    #[test]
    fn features_ok_is_refused_without_version_1() {
        let mut state = negotiating(1 << 5);
        let value = (ACKNOWLEDGE | DRIVER | FEATURES_OK).into();
        assert_eq!(
            state.write(reg::STATUS, value),
            WriteEffect::Ignored("driver did not accept VIRTIO_F_VERSION_1")
        );
        assert_eq!(state.status() & FEATURES_OK, 0);
    }

    #[test]
    fn features_ok_is_refused_for_features_not_offered() {
        let mut state = negotiating(FEATURES | 1 << 7);
        let value = (ACKNOWLEDGE | DRIVER | FEATURES_OK).into();
        assert_eq!(
            state.write(reg::STATUS, value),
            WriteEffect::Ignored("driver accepted features the device does not offer")
        );
        assert_eq!(state.status() & FEATURES_OK, 0);
    }

    #[test]
    fn driver_features_are_written_only_during_negotiation() {
        let mut state = device();
        assert!(matches!(
            state.write(reg::DRIVER_FEATURES, 1),
            WriteEffect::Ignored(_)
        ));
        let mut state = features_ok();
        assert!(matches!(
            state.write(reg::DRIVER_FEATURES, 0),
            WriteEffect::Ignored(_)
        ));
        assert_eq!(state.acked_features(), FEATURES);
        let mut state = negotiating(FEATURES);
        state.write(reg::DRIVER_FEATURES_SEL, 2);
        assert!(matches!(
            state.write(reg::DRIVER_FEATURES, 1),
            WriteEffect::Ignored(_)
        ));
    }

    #[test]
    fn queue_registers_are_written_only_between_features_ok_and_driver_ok() {
        for mut state in [device(), negotiating(FEATURES), live()] {
            for offset in [reg::QUEUE_NUM, reg::QUEUE_READY, reg::QUEUE_DESC_LOW] {
                assert!(matches!(state.write(offset, 1), WriteEffect::Ignored(_)));
            }
            assert_eq!(state.queues()[0], QueueConfig::new(256));
        }
        let mut state = features_ok();
        state.write(reg::QUEUE_SEL, 1);
        for (offset, value) in [
            (reg::QUEUE_NUM, 32),
            (reg::QUEUE_DESC_LOW, 0x1000),
            (reg::QUEUE_DESC_HIGH, 1),
            (reg::QUEUE_DRIVER_LOW, 0x2000),
            (reg::QUEUE_DRIVER_HIGH, 2),
            (reg::QUEUE_DEVICE_LOW, 0x3000),
            (reg::QUEUE_DEVICE_HIGH, 3),
            (reg::QUEUE_READY, 1),
        ] {
            assert_eq!(state.write(offset, value), WriteEffect::None);
        }
        assert_eq!(
            state.queues()[1],
            QueueConfig {
                max_size: 64,
                size: 32,
                ready: true,
                desc: 0x1_0000_1000,
                driver: 0x2_0000_2000,
                device: 0x3_0000_3000,
            }
        );
        assert_eq!(state.read(reg::QUEUE_READY, 0), Some(1));
        assert!(matches!(
            state.write(reg::QUEUE_NUM, 1 << 16),
            WriteEffect::Ignored(_)
        ));
        assert!(matches!(
            state.write(reg::QUEUE_READY, 2),
            WriteEffect::Ignored(_)
        ));
        state.write(reg::QUEUE_SEL, 2);
        assert!(matches!(
            state.write(reg::QUEUE_NUM, 8),
            WriteEffect::Ignored(_)
        ));
    }

    #[test]
    fn notifications_count_only_for_a_live_device_and_its_queues() {
        assert!(matches!(
            features_ok().write(reg::QUEUE_NOTIFY, 0),
            WriteEffect::Ignored(_)
        ));
        let mut state = live();
        assert_eq!(state.write(reg::QUEUE_NOTIFY, 1), WriteEffect::Notify(1));
        assert!(matches!(
            state.write(reg::QUEUE_NOTIFY, 2),
            WriteEffect::Ignored(_)
        ));
        state.set_needs_reset();
        assert!(matches!(
            state.write(reg::QUEUE_NOTIFY, 0),
            WriteEffect::Ignored(_)
        ));
    }

    #[test]
    fn needs_reset_stays_until_the_driver_resets() {
        let mut state = live();
        state.set_needs_reset();
        assert!(!state.is_live());
        let old = state.status();
        assert_eq!(old & DEVICE_NEEDS_RESET, DEVICE_NEEDS_RESET);
        // The driver writes back what it read, plus FAILED.
        assert_eq!(
            state.write(reg::STATUS, (old | FAILED).into()),
            WriteEffect::None
        );
        assert_eq!(state.status(), old | FAILED);
        assert_eq!(state.write(reg::STATUS, 0), WriteEffect::Reset);
        assert_eq!(state.status(), 0);
    }

    #[test]
    fn reset_clears_everything() {
        let mut state = features_ok();
        state.write(reg::QUEUE_SEL, 1);
        state.write(reg::QUEUE_NUM, 16);
        state.write(reg::QUEUE_DESC_LOW, 0x1000);
        state.write(reg::QUEUE_READY, 1);
        state.write(reg::DEVICE_FEATURES_SEL, 1);
        state.write(
            reg::STATUS,
            (ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK).into(),
        );
        state.set_needs_reset();
        assert_eq!(state.write(reg::STATUS, 0), WriteEffect::Reset);
        let fresh = device();
        assert_eq!(state.status(), 0);
        assert_eq!(state.acked_features(), 0);
        assert_eq!(state.queues(), fresh.queues());
        assert_eq!(state.read(reg::DEVICE_FEATURES, 0), Some(1 << 5));
        assert_eq!(state.read(reg::QUEUE_NUM_MAX, 0), Some(256));
    }

    #[test]
    fn interrupt_ack_is_handed_on() {
        assert_eq!(
            live().write(reg::INTERRUPT_ACK, 3),
            WriteEffect::InterruptAck(3)
        );
    }

    #[test]
    fn unknown_and_read_only_registers_ignore_writes() {
        let mut state = device();
        for offset in [
            reg::MAGIC_VALUE,
            reg::DEVICE_ID,
            reg::QUEUE_NUM_MAX,
            0x028,
            0x040,
        ] {
            assert!(matches!(state.write(offset, 1), WriteEffect::Ignored(_)));
        }
        assert_eq!(state.read(reg::DEVICE_ID, 0), Some(4));
    }
}
