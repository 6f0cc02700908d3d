//! The transport's std half against a test device and queues in guest memory
//! (virtio-queue's driver-side mock).

use std::sync::{Arc, Mutex};

use virtio_queue::mock::MockSplitQueue;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::MmioTransport;
use super::state::status::*;
use super::state::{MAGIC_VALUE, interrupt, reg};
use crate::BusDevice;
use crate::event_loop::VirtioSubscriber;
use crate::virtio::GuestMemory;
use crate::virtio::test_device::{
    Behaviour, CountingLine, Log, TEST_CONFIG, TEST_FEATURES, TestDevice,
};

const MEMORY_SIZE: usize = 1 << 20;

pub(crate) struct Driver {
    pub(crate) transport: Arc<Mutex<MmioTransport>>,
    pub(crate) memory: GuestMemory,
    pub(crate) log: Arc<Mutex<Log>>,
    pub(crate) line: Arc<CountingLine>,
}

impl Driver {
    pub(crate) fn new(behaviour: Behaviour) -> Self {
        let memory =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEMORY_SIZE)]).expect("memory");
        let (device, log) = TestDevice::new(behaviour);
        let line = Arc::new(CountingLine::default());
        let transport =
            MmioTransport::new(Box::new(device), memory.clone(), line.clone()).expect("transport");
        Self {
            transport: Arc::new(Mutex::new(transport)),
            memory,
            log,
            line,
        }
    }

    pub(crate) fn read(&self, offset: u64) -> u32 {
        let mut data = [0xaa; 4];
        self.transport
            .lock()
            .expect("transport")
            .read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    pub(crate) fn write(&self, offset: u64, value: u32) {
        self.transport
            .lock()
            .expect("transport")
            .write(offset, &value.to_le_bytes());
    }

    pub(crate) fn status(&self) -> u8 {
        self.read(reg::STATUS) as u8
    }

    /// The driver's initialisation up to FEATURES_OK.
    pub(crate) fn negotiate(&self) {
        self.write(reg::STATUS, ACKNOWLEDGE.into());
        self.write(reg::STATUS, (ACKNOWLEDGE | DRIVER).into());
        for sel in 0..2 {
            self.write(reg::DRIVER_FEATURES_SEL, sel);
            self.write(reg::DRIVER_FEATURES, (TEST_FEATURES >> (32 * sel)) as u32);
        }
        self.write(reg::STATUS, (ACKNOWLEDGE | DRIVER | FEATURES_OK).into());
        assert_eq!(self.status(), ACKNOWLEDGE | DRIVER | FEATURES_OK);
    }

    /// Queue `index` at these addresses, ready.
    pub(crate) fn set_queue(&self, index: u32, size: u32, desc: u64, driver: u64, device: u64) {
        self.write(reg::QUEUE_SEL, index);
        self.write(reg::QUEUE_NUM, size);
        for (low, addr) in [
            (reg::QUEUE_DESC_LOW, desc),
            (reg::QUEUE_DRIVER_LOW, driver),
            (reg::QUEUE_DEVICE_LOW, device),
        ] {
            self.write(low, addr as u32);
            self.write(low + 4, (addr >> 32) as u32);
        }
        self.write(reg::QUEUE_READY, 1);
    }

    pub(crate) fn driver_ok(&self) {
        self.write(
            reg::STATUS,
            (ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK).into(),
        );
    }

    /// Negotiates, sets queue 0 up on a mock queue at 0x1000 and sets DRIVER_OK.
    pub(crate) fn bring_up(&self) {
        self.negotiate();
        self.bring_up_from_features_ok();
    }

    /// Sets queue 0 up on a mock queue at 0x1000 and sets DRIVER_OK.
    pub(crate) fn bring_up_from_features_ok(&self) {
        let mock = MockSplitQueue::create(&self.memory, GuestAddress(0x1000), 16);
        self.set_queue(
            0,
            16,
            mock.desc_table_addr().0,
            mock.avail_addr().0,
            mock.used_addr().0,
        );
        self.driver_ok();
    }

    pub(crate) fn needs_reset(&self) -> bool {
        self.status() & DEVICE_NEEDS_RESET != 0
    }
}

#[test]
fn driver_ok_activates_the_device_with_the_drivers_queues() {
    let driver = Driver::new(Behaviour::default());
    driver.bring_up();
    assert_eq!(
        driver.status(),
        ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK
    );
    let log = driver.log.lock().expect("log");
    let [(features, queues)] = log.activations.as_slice() else {
        panic!("one activation expected: {:?}", log.activations);
    };
    assert_eq!(*features, TEST_FEATURES);
    let mock = MockSplitQueue::create(&driver.memory, GuestAddress(0x1000), 16);
    assert_eq!(
        queues[0],
        (
            true,
            16,
            mock.desc_table_addr().0,
            mock.avail_addr().0,
            mock.used_addr().0
        )
    );
    // Queue 1 was left unready: it is there, unready.
    assert!(!queues[1].0);
}

#[test]
fn rings_outside_guest_memory_need_reset() {
    let driver = Driver::new(Behaviour::default());
    driver.negotiate();
    driver.set_queue(0, 16, MEMORY_SIZE as u64 - 0x10, 0x2000, 0x3000);
    driver.driver_ok();
    assert!(driver.needs_reset());
    assert!(driver.log.lock().expect("log").activations.is_empty());
    assert_eq!(driver.read(reg::INTERRUPT_STATUS), interrupt::CONFIG);
    assert_eq!(driver.line.count(), 1);
}

#[test]
fn a_queue_size_not_a_power_of_two_needs_reset() {
    for size in [0, 12, 32] {
        let driver = Driver::new(Behaviour::default());
        driver.negotiate();
        driver.set_queue(0, size, 0x1000, 0x2000, 0x3000);
        driver.driver_ok();
        assert!(driver.needs_reset(), "size {size}");
    }
}

#[test]
fn misaligned_rings_need_reset() {
    let driver = Driver::new(Behaviour::default());
    driver.negotiate();
    driver.set_queue(0, 16, 0x1008, 0x2000, 0x3000);
    driver.driver_ok();
    assert!(driver.needs_reset());
}

#[test]
fn a_failed_activation_needs_reset() {
    let driver = Driver::new(Behaviour {
        fail_activate: true,
        ..Behaviour::default()
    });
    driver.bring_up();
    assert!(driver.needs_reset());
    assert_eq!(driver.read(reg::INTERRUPT_STATUS), interrupt::CONFIG);
}

#[test]
fn registers_of_another_width_or_alignment_read_zero_and_ignore_writes() {
    let driver = Driver::new(Behaviour::default());
    let mut transport = driver.transport.lock().expect("transport");
    for len in [1, 2, 8] {
        let mut data = vec![0xaa; len];
        transport.read(reg::MAGIC_VALUE, &mut data);
        assert_eq!(data, vec![0; len]);
    }
    let mut data = [0xaa; 4];
    transport.read(reg::MAGIC_VALUE + 2, &mut data);
    assert_eq!(data, [0; 4]);
    transport.write(reg::STATUS, &[ACKNOWLEDGE]);
    transport.write(reg::STATUS, &u64::from(ACKNOWLEDGE).to_le_bytes());
    transport.write(reg::STATUS + 1, &u32::from(ACKNOWLEDGE).to_le_bytes());
    assert_eq!(transport.state().status(), 0);
    drop(transport);
    assert_eq!(driver.read(reg::MAGIC_VALUE), MAGIC_VALUE);
}

#[test]
fn config_space_goes_to_the_device_at_any_width() {
    let driver = Driver::new(Behaviour::default());
    let mut transport = driver.transport.lock().expect("transport");
    let mut data = [0; 2];
    transport.read(0x102, &mut data);
    assert_eq!(data, TEST_CONFIG[2..4]);
    transport.write(0x101, &[7]);
    drop(transport);
    assert_eq!(driver.read(0x104), u32::from_le_bytes(*b"ule!"));
    assert_eq!(
        driver.log.lock().expect("log").config_writes,
        vec![(1, vec![7])]
    );
}

#[test]
fn interrupt_status_reads_what_the_device_raised_and_ack_clears_it() {
    let driver = Driver::new(Behaviour::default());
    driver.bring_up();
    let interrupt = driver
        .log
        .lock()
        .expect("log")
        .interrupt
        .clone()
        .expect("activated");
    interrupt.signal_used_queue().expect("signal");
    interrupt.signal_config_change().expect("signal");
    assert_eq!(driver.line.count(), 2);
    assert_eq!(
        driver.read(reg::INTERRUPT_STATUS),
        interrupt::VRING | interrupt::CONFIG
    );
    driver.write(reg::INTERRUPT_ACK, interrupt::VRING);
    assert_eq!(driver.read(reg::INTERRUPT_STATUS), interrupt::CONFIG);
    driver.write(reg::INTERRUPT_ACK, interrupt::CONFIG);
    assert_eq!(driver.read(reg::INTERRUPT_STATUS), 0);
}

#[test]
fn reset_resets_the_device_and_clears_interrupts_and_needs_reset() {
    let driver = Driver::new(Behaviour {
        fail_activate: true,
        ..Behaviour::default()
    });
    driver.bring_up();
    assert!(driver.needs_reset());
    driver.write(reg::STATUS, 0);
    assert_eq!(driver.status(), 0);
    assert_eq!(driver.read(reg::INTERRUPT_STATUS), 0);
    assert_eq!(driver.log.lock().expect("log").resets, 1);
    driver.write(reg::QUEUE_SEL, 0);
    assert_eq!(driver.read(reg::QUEUE_READY), 0);
    // And it comes up again.
    driver.write(reg::STATUS, ACKNOWLEDGE.into());
    assert_eq!(driver.status(), ACKNOWLEDGE);
}

#[test]
fn queue_notify_signals_the_queues_eventfd_only_when_live() {
    let driver = Driver::new(Behaviour::default());
    driver.negotiate();
    driver.write(reg::QUEUE_NOTIFY, 0);
    let transport = driver.transport.lock().expect("transport");
    assert!(transport.queue_events()[0].read().is_err(), "not live yet");
    drop(transport);
    driver.bring_up_from_features_ok();
    driver.write(reg::QUEUE_NOTIFY, 1);
    let transport = driver.transport.lock().expect("transport");
    assert!(transport.queue_events()[0].read().is_err());
    assert_eq!(transport.queue_events()[1].read().expect("signalled"), 1);
}

#[test]
fn a_queue_error_needs_reset_and_later_notifications_are_ignored() {
    let driver = Driver::new(Behaviour {
        fail_queue: true,
        ..Behaviour::default()
    });
    driver.bring_up();
    let mut subscriber = VirtioSubscriber::new(&driver.transport).expect("subscriber");
    subscriber.queue_notified(0);
    assert!(driver.needs_reset());
    assert_eq!(driver.read(reg::INTERRUPT_STATUS), interrupt::CONFIG);
    subscriber.queue_notified(0);
    assert_eq!(driver.log.lock().expect("log").notified.len(), 1);
}

#[test]
fn notifications_before_driver_ok_are_drained_and_ignored() {
    let driver = Driver::new(Behaviour::default());
    driver.negotiate();
    let mut subscriber = VirtioSubscriber::new(&driver.transport).expect("subscriber");
    let transport = driver.transport.lock().expect("transport");
    transport.queue_events()[0].write(1).expect("signal");
    drop(transport);
    subscriber.queue_notified(0);
    assert!(driver.log.lock().expect("log").notified.is_empty());
    let transport = driver.transport.lock().expect("transport");
    assert!(transport.queue_events()[0].read().is_err(), "drained");
}
