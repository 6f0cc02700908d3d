//! The event loop: one thread that does all virtio device work.
//!
//! It is rust-vmm's `event-manager` (Firecracker's event loop): an epoll loop whose
//! subscribers own their file descriptors and register them themselves, and which takes new
//! subscribers while it runs (through its remote endpoint, [`RunningEventLoop::add_subscriber`]),
//! which a hot-plugged device such as the vsock of a later issue needs. `vmm-sys-util`'s bare
//! epoll would have us write that dispatch and the cross-thread add ourselves.
//!
//! Each virtio device is a [`VirtioSubscriber`]: it watches the device's queue eventfds (KVM
//! signals them on the guest's `QueueNotify` writes) and its host file descriptors, and
//! calls the device model on this thread, never on a vCPU's. Notifications that arrive
//! before DRIVER_OK (or after a reset, or in DEVICE_NEEDS_RESET) are drained and ignored; a
//! [`QueueError`](crate::virtio::QueueError) puts the device in DEVICE_NEEDS_RESET.
//!
//! The loop stops when its stop eventfd is written ([`RunningEventLoop::stop`], and on drop);
//! it also ends if a device panics or loses its backend
//! ([`BackendLost`](crate::virtio::BackendLost): virtiofsd exited), and then calls the
//! `on_exit` hook given to [`EventLoop::start`] so the VMM ends the run instead of waiting
//! on a dead device, and [`RunningEventLoop::stop`] reports why.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use event_manager::{
    EventManager, EventOps, EventSet, Events, MutEventSubscriber, RemoteEndpoint, SubscriberOps,
};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::virtio::mmio::{DeviceSlot, MmioTransport};
use crate::virtio::{BackendLost, HostError};

/// What the loop holds: any subscriber that can move to the loop's thread.
pub type Subscriber = Box<dyn MutEventSubscriber + Send>;

/// Why the event loop could not start or did not end cleanly.
#[derive(Debug, thiserror::Error)]
pub enum EventLoopError {
    /// `event-manager` failed (creating its epoll, waiting on it, its remote endpoint).
    #[error("event loop: {0}")]
    Manager(#[from] event_manager::Error),
    /// Creating the stop eventfd failed.
    #[error("event loop: create the stop eventfd: {0}")]
    EventFd(#[source] std::io::Error),
    /// Spawning the loop's thread failed.
    #[error("event loop: spawn its thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// A device model (or the loop) panicked on the loop's thread, with this message.
    #[error("event loop: a device panicked: {0}")]
    Panicked(String),
    /// A device's host side went away for good, which ended the loop.
    #[error("event loop: {0}")]
    BackendLost(BackendLost),
}

/// The event loop before its thread starts: add the subscribers, then [`EventLoop::start`].
pub struct EventLoop {
    manager: EventManager<Subscriber>,
    stop: EventFd,
    ending: Arc<Ending>,
}

/// What ends the loop, shared by its thread and its subscribers.
#[derive(Debug, Default)]
struct Ending {
    /// Checked after each batch of events.
    stopped: AtomicBool,
    /// The first device that lost its backend: the loop's result.
    lost: Mutex<Option<BackendLost>>,
}

impl Ending {
    /// Ends the loop after the current batch of events with `lost` as its result (the
    /// first such loss wins).
    fn lose(&self, lost: BackendLost) {
        if let Ok(mut slot) = self.lost.lock() {
            slot.get_or_insert(lost);
        }
        self.stopped.store(true, Ordering::SeqCst);
    }
}

impl EventLoop {
    /// An event loop with only its stop eventfd.
    ///
    /// Errors: [`EventLoopError::Manager`], [`EventLoopError::EventFd`].
    pub fn new() -> Result<Self, EventLoopError> {
        let mut manager = EventManager::<Subscriber>::new()?;
        let stop = EventFd::new(EFD_NONBLOCK).map_err(EventLoopError::EventFd)?;
        let ending = Arc::new(Ending::default());
        manager.add_subscriber(Box::new(StopSubscriber {
            event: stop.try_clone().map_err(EventLoopError::EventFd)?,
            ending: Arc::clone(&ending),
        }));
        Ok(Self {
            manager,
            stop,
            ending,
        })
    }

    /// Adds a subscriber; its `init` registers its file descriptors now.
    pub fn add_subscriber(&mut self, subscriber: Subscriber) {
        self.manager.add_subscriber(subscriber);
    }

    /// Adds the virtio device behind `transport`: its queue eventfds and host fds. A loss of
    /// its backend ends this loop.
    ///
    /// Errors: cloning a queue eventfd failed ([`EventLoopError::EventFd`]).
    pub fn add_virtio(
        &mut self,
        transport: &Arc<Mutex<MmioTransport>>,
    ) -> Result<(), EventLoopError> {
        let mut subscriber = VirtioSubscriber::new(transport).map_err(EventLoopError::EventFd)?;
        subscriber.ending = Arc::clone(&self.ending);
        self.add_subscriber(Box::new(subscriber));
        Ok(())
    }

    /// Starts the loop's thread (`capsule-devices`). `on_exit` runs on that thread when the
    /// loop ends, however it ends (stopped, failed, a device's panic): the VMM's hook to end
    /// the run.
    ///
    /// Errors: [`EventLoopError::Spawn`], [`EventLoopError::EventFd`].
    pub fn start(
        self,
        on_exit: impl FnOnce() + Send + 'static,
    ) -> Result<RunningEventLoop, EventLoopError> {
        let Self {
            mut manager,
            stop,
            ending,
        } = self;
        let remote = manager.remote_endpoint();
        let thread = std::thread::Builder::new()
            .name("capsule-devices".into())
            .spawn(move || {
                let _on_exit = OnExit(Some(on_exit));
                while !ending.stopped.load(Ordering::SeqCst) {
                    manager.run().map_err(EventLoopError::Manager)?;
                }
                match ending.lost.lock().ok().and_then(|mut lost| lost.take()) {
                    Some(lost) => Err(EventLoopError::BackendLost(lost)),
                    None => Ok(()),
                }
            })
            .map_err(EventLoopError::Spawn)?;
        Ok(RunningEventLoop {
            thread: Some(thread),
            stop,
            remote,
        })
    }
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop").finish_non_exhaustive()
    }
}

/// Calls its hook when dropped: when the loop's thread returns or unwinds.
struct OnExit<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for OnExit<F> {
    fn drop(&mut self) {
        if let Some(hook) = self.0.take() {
            hook();
        }
    }
}

/// The event loop's thread, running. Dropping it stops and joins the thread too.
pub struct RunningEventLoop {
    thread: Option<JoinHandle<Result<(), EventLoopError>>>,
    stop: EventFd,
    remote: RemoteEndpoint<Subscriber>,
}

impl std::fmt::Debug for RunningEventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningEventLoop")
            .field("running", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

impl RunningEventLoop {
    /// Adds a subscriber to the running loop (on its thread, which runs the subscriber's
    /// `init`); returns once it is added.
    ///
    /// Errors: the loop has ended ([`EventLoopError::Manager`]).
    pub fn add_subscriber(&self, subscriber: Subscriber) -> Result<(), EventLoopError> {
        self.remote
            .call_blocking(move |ops| -> Result<(), event_manager::Error> {
                ops.add_subscriber(subscriber);
                Ok(())
            })?;
        Ok(())
    }

    /// Stops the loop and joins its thread.
    ///
    /// Errors: the loop had failed ([`EventLoopError::Manager`]), a device had panicked
    /// ([`EventLoopError::Panicked`]) or lost its backend ([`EventLoopError::BackendLost`]).
    pub fn stop(mut self) -> Result<(), EventLoopError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), EventLoopError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        // A full counter (it cannot be, with one write) still wakes the loop.
        let _ = self.stop.write(1);
        match thread.join() {
            Ok(result) => result,
            Err(panic) => Err(EventLoopError::Panicked(panic_message(panic.as_ref()))),
        }
    }
}

impl Drop for RunningEventLoop {
    fn drop(&mut self) {
        if let Err(error) = self.finish() {
            tracing::debug!(%error, "event loop ended with an error nobody asked for");
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Sets the flag that ends the loop when its eventfd is written.
#[derive(Debug)]
struct StopSubscriber {
    event: EventFd,
    ending: Arc<Ending>,
}

impl MutEventSubscriber for StopSubscriber {
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.event.read();
        self.ending.stopped.store(true, Ordering::SeqCst);
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(error) = ops.add(Events::new(&self.event, EventSet::IN)) {
            // Without it the loop would never stop: make that loud at once.
            panic!("event loop: cannot watch the stop eventfd: {error}");
        }
    }
}

/// The `data` of a host fd's events; queue eventfds carry their queue index (below 65536).
const HOST_FD: u32 = u32::MAX;

/// One virtio device on the event loop: its queue notifications and host fds, handed to the
/// device model while it is live.
#[derive(Debug)]
pub struct VirtioSubscriber {
    transport: Arc<Mutex<MmioTransport>>,
    device: Arc<Mutex<DeviceSlot>>,
    device_type: u32,
    queue_events: Vec<EventFd>,
    host_fds: Vec<RawFd>,
    /// Ended when the device loses its backend: the loop's, once [`EventLoop::add_virtio`]
    /// adds it (a subscriber made alone ends only itself).
    ending: Arc<Ending>,
}

impl VirtioSubscriber {
    /// The subscriber of the device behind `transport`, with clones of its queue eventfds.
    ///
    /// Errors: cloning an eventfd failed.
    pub fn new(transport: &Arc<Mutex<MmioTransport>>) -> std::io::Result<Self> {
        let locked = transport
            .lock()
            .map_err(|_| std::io::Error::other("the transport's lock is poisoned"))?;
        let device = locked.device_slot();
        let host_fds = device
            .lock()
            .map_err(|_| std::io::Error::other("the device's lock is poisoned"))?
            .device
            .host_fds();
        Ok(Self {
            transport: Arc::clone(transport),
            device_type: locked.device_type(),
            // A device that reads them itself (a vhost-user backend does) must not lose
            // kicks to this loop.
            queue_events: if locked.device_reads_queue_events() {
                Vec::new()
            } else {
                locked
                    .queue_events()
                    .iter()
                    .map(EventFd::try_clone)
                    .collect::<std::io::Result<_>>()?
            },
            device,
            host_fds,
            ending: Arc::default(),
        })
    }

    /// What the loop does when queue `index`'s eventfd fires: drains it and, if the device
    /// is live, runs [`VirtioDevice::queue_notified`](crate::virtio::VirtioDevice::queue_notified);
    /// its error puts the device in DEVICE_NEEDS_RESET. Public for tests and the fuzz target.
    pub fn queue_notified(&mut self, index: usize) {
        let Some(event) = self.queue_events.get(index) else {
            return;
        };
        // Non-blocking: EAGAIN when a reset drained it already.
        let _ = event.read();
        // A poisoned lock: the device panicked, and this thread with it; not reached.
        let Ok(mut slot) = self.device.lock() else {
            return;
        };
        if !slot.live {
            tracing::debug!(
                device = self.device_type,
                index,
                "queue notification while the device is not live: ignored"
            );
            return;
        }
        let result = slot.device.queue_notified(index);
        if result.is_err() {
            slot.live = false;
        }
        drop(slot);
        if let Err(error) = result {
            self.needs_reset(&error);
        }
    }

    fn host_ready(&mut self, events: &Events, ops: &mut EventOps) {
        let fd = events.fd();
        let Ok(mut slot) = self.device.lock() else {
            return;
        };
        // Called live or not: the device must clear the fd's readiness, else the
        // level-triggered epoll reports it again at once.
        let result = slot.device.host_ready(fd);
        let live = slot.live;
        if result.is_err() {
            slot.live = false;
        }
        drop(slot);
        let hung_up = events.event_set().contains(EventSet::HANG_UP);
        if !events.event_set().contains(EventSet::IN) || (hung_up && result.is_err()) {
            // Hung up or failed with nothing left to read, or hung up and the device has no
            // use for it any more (a vhost-user backend's socket): it would be reported
            // forever.
            tracing::debug!(
                device = self.device_type,
                fd,
                "host fd hung up: no longer watched"
            );
            let _ = ops.remove(Events::empty_raw(fd));
        }
        match result {
            Err(HostError::Queue(error)) if live => self.needs_reset(&error),
            Err(HostError::BackendLost(lost)) => {
                tracing::debug!(device = self.device_type, %lost, "ending the event loop");
                self.ending.lose(lost);
            }
            _ => {}
        }
    }

    fn needs_reset(&self, error: &crate::virtio::QueueError) {
        match self.transport.lock() {
            Ok(mut transport) => transport.set_needs_reset(error),
            Err(_) => tracing::debug!(device = self.device_type, "transport lock poisoned"),
        }
    }
}

impl MutEventSubscriber for VirtioSubscriber {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        match events.data() {
            HOST_FD => self.host_ready(&events, ops),
            index => self.queue_notified(index as usize),
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        let queues = self
            .queue_events
            .iter()
            .enumerate()
            .map(|(index, event)| Events::with_data(event, index as u32, EventSet::IN));
        let hosts = self
            .host_fds
            .iter()
            .map(|&fd| Events::with_data_raw(fd, HOST_FD, EventSet::IN));
        for events in queues.chain(hosts).collect::<Vec<_>>() {
            if let Err(error) = ops.add(events) {
                tracing::error!(
                    device = self.device_type,
                    fd = events.fd(),
                    %error,
                    "event loop cannot watch the device's fd: the device will not be served"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::virtio::mmio::tests::Driver;
    use crate::virtio::test_device::Behaviour;

    /// Starts a loop serving `driver`'s device; the receiver hears when the loop ends.
    fn serve(driver: &Driver) -> (RunningEventLoop, mpsc::Receiver<()>) {
        let mut event_loop = EventLoop::new().expect("event loop");
        event_loop.add_virtio(&driver.transport).expect("add");
        let (ended, ended_rx) = mpsc::channel();
        let running = event_loop
            .start(move || {
                let _ = ended.send(());
            })
            .expect("start");
        (running, ended_rx)
    }

    fn signal(driver: &Driver, queue: usize) {
        let transport = driver.transport.lock().expect("transport");
        transport.queue_events()[queue].write(1).expect("signal");
    }

    /// Waits until `done` holds, for at most 5 s.
    fn wait_for(mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("timed out");
    }

    #[test]
    fn a_queue_notification_runs_the_device_on_the_loop_thread() {
        let driver = Driver::new(Behaviour::default());
        driver.bring_up();
        let (running, ended) = serve(&driver);
        signal(&driver, 1);
        wait_for(|| !driver.log.lock().expect("log").notified.is_empty());
        let (queue, thread) = driver.log.lock().expect("log").notified[0];
        assert_eq!(queue, 1);
        assert_ne!(thread, std::thread::current().id());
        running.stop().expect("stops cleanly");
        assert!(ended.try_recv().is_ok(), "the exit hook ran");
    }

    #[test]
    fn notifications_before_driver_ok_never_reach_the_device() {
        let driver = Driver::new(Behaviour::default());
        driver.negotiate();
        let (running, _ended) = serve(&driver);
        signal(&driver, 0);
        std::thread::sleep(Duration::from_millis(100));
        // Live now: only what is signalled from here on reaches the device.
        driver.bring_up_from_features_ok();
        signal(&driver, 1);
        wait_for(|| !driver.log.lock().expect("log").notified.is_empty());
        running.stop().expect("stops");
        let log = driver.log.lock().expect("log");
        let queues: Vec<usize> = log.notified.iter().map(|(queue, _)| *queue).collect();
        assert_eq!(
            queues,
            [1],
            "queue 0's early notification was drained and dropped"
        );
    }

    #[test]
    fn a_device_panic_ends_the_loop_calls_the_hook_and_is_reported() {
        let driver = Driver::new(Behaviour {
            panic_on_queue: true,
            ..Behaviour::default()
        });
        driver.bring_up();
        let (running, ended) = serve(&driver);
        signal(&driver, 0);
        ended
            .recv_timeout(Duration::from_secs(5))
            .expect("the hook runs when the loop dies");
        let error = running.stop().expect_err("the panic is reported");
        assert!(
            matches!(error, EventLoopError::Panicked(ref message) if message == "test device asked to panic"),
            "{error}"
        );
        // The vCPU side still answers.
        assert_eq!(driver.read(0), crate::virtio::mmio::state::MAGIC_VALUE);
    }

    #[test]
    fn a_lost_backend_ends_the_loop_calls_the_hook_and_is_reported() {
        let backend = EventFd::new(EFD_NONBLOCK).expect("eventfd");
        let driver = Driver::new(Behaviour {
            backend: Some(std::os::fd::AsRawFd::as_raw_fd(&backend)),
            ..Behaviour::default()
        });
        driver.bring_up();
        let (running, ended) = serve(&driver);
        assert!(
            ended.recv_timeout(Duration::from_millis(100)).is_err(),
            "runs until the backend goes"
        );
        backend.write(1).expect("backend goes");
        ended
            .recv_timeout(Duration::from_secs(5))
            .expect("the hook runs when the backend is lost");
        let error = running.stop().expect_err("the loss is reported");
        assert!(
            matches!(error, EventLoopError::BackendLost(ref lost) if lost.device == "test"),
            "{error}"
        );
        assert!(error.to_string().contains("its backend"), "{error}");
    }

    #[test]
    fn dropping_the_running_loop_stops_and_joins_it() {
        let driver = Driver::new(Behaviour::default());
        let (running, ended) = serve(&driver);
        drop(running);
        assert!(
            ended.try_recv().is_ok(),
            "joined: the hook ran before drop returned"
        );
    }

    #[test]
    fn subscribers_can_be_added_while_the_loop_runs() {
        let first = Driver::new(Behaviour::default());
        let (running, _ended) = serve(&first);
        let second = Driver::new(Behaviour::default());
        second.bring_up();
        let subscriber = VirtioSubscriber::new(&second.transport).expect("subscriber");
        running.add_subscriber(Box::new(subscriber)).expect("added");
        signal(&second, 0);
        wait_for(|| !second.log.lock().expect("log").notified.is_empty());
        running.stop().expect("stops");
    }
}
