//! A virtio device for the transport's and the event loop's tests: it records what it is
//! asked, and fails or panics on demand.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use virtio_queue::QueueT;

use super::mmio::state::VIRTIO_F_VERSION_1;
use super::{
    ActivateError, Activation, BackendLost, HostError, QueueError, VirtioDevice, VirtioInterrupt,
};
use crate::Interrupt;

/// A queue as the device got it on activation: ready, size, and the three ring addresses.
pub(crate) type QueueSeen = (bool, u16, u64, u64, u64);

#[derive(Debug, Default)]
pub(crate) struct Log {
    pub(crate) activations: Vec<(u64, Vec<QueueSeen>)>,
    pub(crate) resets: usize,
    pub(crate) notified: Vec<(usize, ThreadId)>,
    pub(crate) config_writes: Vec<(u64, Vec<u8>)>,
    pub(crate) interrupt: Option<VirtioInterrupt>,
}

/// What the device does when asked.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Behaviour {
    pub(crate) fail_activate: bool,
    pub(crate) fail_queue: bool,
    pub(crate) panic_on_queue: bool,
    /// A host fd whose readiness means the device's backend is gone.
    pub(crate) backend: Option<RawFd>,
}

#[derive(Debug)]
pub(crate) struct TestDevice {
    pub(crate) log: Arc<Mutex<Log>>,
    pub(crate) behaviour: Behaviour,
}

/// Device type 0xffff, one feature bit beyond VERSION_1, two queues.
pub(crate) const TEST_FEATURES: u64 = VIRTIO_F_VERSION_1 | 1;
/// The configuration space: 8 bytes.
pub(crate) const TEST_CONFIG: [u8; 8] = *b"capsule!";

impl TestDevice {
    pub(crate) fn new(behaviour: Behaviour) -> (Self, Arc<Mutex<Log>>) {
        let log = Arc::default();
        (
            Self {
                log: Arc::clone(&log),
                behaviour,
            },
            log,
        )
    }
}

impl VirtioDevice for TestDevice {
    fn device_type(&self) -> u32 {
        0xffff
    }

    fn device_features(&self) -> u64 {
        TEST_FEATURES
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[16, 8]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            let at = usize::try_from(offset).ok().and_then(|o| o.checked_add(i));
            *byte = at.and_then(|at| TEST_CONFIG.get(at)).copied().unwrap_or(0);
        }
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        let mut log = self.log.lock().expect("log");
        log.config_writes.push((offset, data.to_vec()));
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        let mut log = self.log.lock().expect("log");
        let queues = activation
            .queues
            .iter()
            .map(|q| {
                (
                    q.ready(),
                    q.size(),
                    q.desc_table(),
                    q.avail_ring(),
                    q.used_ring(),
                )
            })
            .collect();
        log.activations.push((activation.acked_features, queues));
        log.interrupt = Some(activation.interrupt);
        if self.behaviour.fail_activate {
            return Err(ActivateError {
                device: "test".into(),
                reason: "asked to fail".into(),
            });
        }
        Ok(())
    }

    fn queue_notified(&mut self, index: usize) -> Result<(), QueueError> {
        assert!(!self.behaviour.panic_on_queue, "test device asked to panic");
        let mut log = self.log.lock().expect("log");
        log.notified.push((index, std::thread::current().id()));
        if self.behaviour.fail_queue {
            return Err(QueueError {
                device: "test".into(),
                queue: index,
                reason: "asked to fail".into(),
            });
        }
        Ok(())
    }

    fn host_fds(&self) -> Vec<RawFd> {
        self.behaviour.backend.into_iter().collect()
    }

    fn host_ready(&mut self, fd: RawFd) -> Result<(), HostError> {
        Err(BackendLost {
            device: "test".into(),
            reason: format!("its backend (fd {fd}) went"),
        }
        .into())
    }

    fn reset(&mut self) {
        self.log.lock().expect("log").resets += 1;
    }
}

/// An interrupt line that counts its triggers.
#[derive(Debug, Default)]
pub(crate) struct CountingLine(pub(crate) AtomicUsize);

impl CountingLine {
    pub(crate) fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Interrupt for CountingLine {
    fn trigger(&self) -> std::io::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
