//! Random register traffic into the virtio-mmio transport: whatever a guest writes to a
//! device's window (any offset, width and value, random queue addresses, DRIVER_OK, queue
//! notifications over random ring contents in a small guest memory), the VMM neither panics
//! nor hangs, and the device status only ever holds what §3.1.1 allows.
//!
//!   cargo xtask fuzz --target mmio --seconds 60
//!
//! runs, on the stable toolchain,
//!
//!   cd devices/fuzz && cargo fuzz run mmio --sanitizer none --debug-assertions \
//!       corpus/mmio -- -max_total_time=60 -timeout=10
//!
//! The device is virtio-rng, the simplest real one: notifications walk descriptor chains the
//! input wrote into guest memory.

#![no_main]

use std::sync::{Arc, Mutex};

use devices::event_loop::VirtioSubscriber;
use devices::virtio::GuestMemory;
use devices::virtio::mmio::MmioTransport;
use devices::virtio::mmio::state::{MAGIC_VALUE, VIRTIO_F_VERSION_1, reg, status};
use devices::virtio::rng::Rng;
use devices::{BusDevice, NoInterrupt};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress};

/// Guest RAM: small, so random addresses land inside and outside it alike.
const MEMORY_SIZE: usize = 64 << 10;

#[derive(Debug, Arbitrary)]
enum Op {
    /// A 32-bit aligned register read, `index * 4` into the window.
    Read { index: u8 },
    /// A 32-bit aligned register write.
    Write { index: u8, value: u32 },
    /// Any access: offset anywhere in the 4 KiB window, 0 to 8 bytes.
    RawRead { offset: u16, len: u8 },
    /// Any write.
    RawWrite { offset: u16, data: Vec<u8> },
    /// The driver's whole initialisation with random features and queue values.
    Setup {
        features: u64,
        size: u16,
        desc: u32,
        driver: u32,
        device: u32,
    },
    /// The queue's eventfd fired: the event loop's work for queue `index`.
    Notify { index: u8 },
    /// Guest RAM changes under the device (rings, descriptors).
    Poke { addr: u16, bytes: Vec<u8> },
}

fn write32(transport: &Mutex<MmioTransport>, offset: u64, value: u32) {
    let _ = transport
        .lock()
        .expect("not poisoned")
        .write(offset, &value.to_le_bytes());
}

fn read32(transport: &Mutex<MmioTransport>, offset: u64) -> u32 {
    let mut data = [0; 4];
    transport
        .lock()
        .expect("not poisoned")
        .read(offset, &mut data);
    u32::from_le_bytes(data)
}

fuzz_target!(|ops: Vec<Op>| {
    let memory = GuestMemory::from_ranges(&[(GuestAddress(0), MEMORY_SIZE)]).expect("guest memory");
    let transport = MmioTransport::new(Box::new(Rng::new()), memory.clone(), Arc::new(NoInterrupt))
        .expect("transport");
    let transport = Arc::new(Mutex::new(transport));
    let mut subscriber = VirtioSubscriber::new(&transport).expect("subscriber");
    for op in ops.into_iter().take(256) {
        match op {
            Op::Read { index } => {
                read32(&transport, u64::from(index) * 4);
            }
            Op::Write { index, value } => write32(&transport, u64::from(index) * 4, value),
            Op::RawRead { offset, len } => {
                let mut data = vec![0; usize::from(len % 9)];
                let offset = u64::from(offset % 0x1000);
                let end = offset + data.len() as u64;
                if end <= 0x1000 {
                    transport
                        .lock()
                        .expect("not poisoned")
                        .read(offset, &mut data);
                }
            }
            Op::RawWrite { offset, mut data } => {
                let offset = u64::from(offset % 0x1000);
                data.truncate((0x1000 - offset as usize).min(8));
                let _ = transport.lock().expect("not poisoned").write(offset, &data);
            }
            Op::Setup {
                features,
                size,
                desc,
                driver,
                device,
            } => {
                for (offset, value) in [
                    (reg::STATUS, 0),
                    (reg::STATUS, u32::from(status::ACKNOWLEDGE)),
                    (reg::STATUS, u32::from(status::ACKNOWLEDGE | status::DRIVER)),
                    (reg::DRIVER_FEATURES_SEL, 0),
                    (reg::DRIVER_FEATURES, features as u32),
                    (reg::DRIVER_FEATURES_SEL, 1),
                    (reg::DRIVER_FEATURES, (features >> 32) as u32),
                    (
                        reg::STATUS,
                        u32::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK),
                    ),
                    (reg::QUEUE_SEL, 0),
                    (reg::QUEUE_NUM, u32::from(size)),
                    (reg::QUEUE_DESC_LOW, desc),
                    (reg::QUEUE_DRIVER_LOW, driver),
                    (reg::QUEUE_DEVICE_LOW, device),
                    (reg::QUEUE_READY, 1),
                    (
                        reg::STATUS,
                        u32::from(
                            status::ACKNOWLEDGE
                                | status::DRIVER
                                | status::FEATURES_OK
                                | status::DRIVER_OK,
                        ),
                    ),
                ] {
                    write32(&transport, offset, value);
                }
            }
            Op::Notify { index } => subscriber.queue_notified(usize::from(index)),
            Op::Poke { addr, bytes } => {
                let _ = memory.write_slice(&bytes, GuestAddress(u64::from(addr)));
            }
        }
        // What must hold whatever the guest did.
        assert_eq!(read32(&transport, reg::MAGIC_VALUE), MAGIC_VALUE);
        let locked = transport.lock().expect("not poisoned");
        let state = locked.state();
        let device_status = state.status();
        if device_status & status::FEATURES_OK != 0 {
            assert_ne!(state.acked_features() & VIRTIO_F_VERSION_1, 0);
            assert_eq!(
                state.acked_features() & !VIRTIO_F_VERSION_1,
                0,
                "rng offers only VERSION_1"
            );
        }
        if device_status & status::DRIVER_OK != 0 {
            assert_ne!(device_status & status::FEATURES_OK, 0);
        }
    }
});
