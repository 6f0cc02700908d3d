//! The signals `capsule` receives, routed to the launches it runs.
//!
//! Only the binary installs signal handlers ([`SignalRouter::install`]); a launch gets a
//! [`StopHandle`] of its own and tells it where its signals go while it runs (the container's
//! PID 1, the microVM's stop). So several launches share one process, as a group's members
//! do, and a library user keeps its own signal handling.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::{Handle, Signals};

/// The signals passed on to every running launch, as `docker run` forwards them (`--sig-proxy`).
pub const FORWARDED: [i32; 6] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2];

type Target = Box<dyn Fn(i32) + Send>;

#[derive(Default)]
struct Route {
    /// Where signals go now; `None` before the launch has a process to signal.
    target: Option<Target>,
    /// Signals that arrived with no target, delivered when one is set, in order.
    pending: Vec<i32>,
}

/// One launch's end of the signal routing: cheap to clone, `Send` and `Sync`.
#[derive(Clone, Default)]
pub struct StopHandle(Arc<Mutex<Route>>);

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopHandle")
            .field("pending", &self.route().pending)
            .finish_non_exhaustive()
    }
}

impl StopHandle {
    /// A handle no signal reaches until it is [`deliver`](StopHandle::deliver)ed one: for a
    /// launch run from a library, or a test.
    pub fn new() -> StopHandle {
        StopHandle::default()
    }

    /// Passes `signal` to the launch: to its target, else kept until it has one.
    pub fn deliver(&self, signal: i32) {
        let mut route = self.route();
        match &route.target {
            Some(target) => target(signal),
            None => route.pending.push(signal),
        }
    }

    /// Sends this launch's signals to `target` until the returned guard is dropped; signals
    /// that arrived before are delivered first, so a SIGTERM sent while the launch was being
    /// prepared still reaches its workload.
    pub fn forward_to(&self, target: impl Fn(i32) + Send + 'static) -> Forwarding<'_> {
        let mut route = self.route();
        for signal in route.pending.drain(..) {
            target(signal);
        }
        route.target = Some(Box::new(target));
        Forwarding(self)
    }

    fn route(&self) -> MutexGuard<'_, Route> {
        // A target that panicked leaves the route as it was; keep routing.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Forwards a launch's signals to its target while it lives ([`StopHandle::forward_to`]).
#[derive(Debug)]
pub struct Forwarding<'a>(&'a StopHandle);

impl Drop for Forwarding<'_> {
    fn drop(&mut self) {
        self.0.route().target = None;
    }
}

/// Receives [`FORWARDED`] on a thread of its own and passes each to every launch that is
/// still running.
#[derive(Debug)]
pub struct SignalRouter {
    launches: Arc<Mutex<Vec<Weak<Mutex<Route>>>>>,
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl SignalRouter {
    /// Installs the handlers (signal-hook's self-pipe: the handler itself only writes a byte)
    /// and starts the routing thread.
    ///
    /// # Errors
    ///
    /// When a handler cannot be installed or the thread cannot start.
    pub fn install() -> std::io::Result<SignalRouter> {
        let mut signals = Signals::new(FORWARDED)?;
        let handle = signals.handle();
        let launches: Arc<Mutex<Vec<Weak<Mutex<Route>>>>> = Arc::default();
        let routed = launches.clone();
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    let live: Vec<StopHandle> = routed
                        .lock()
                        .map(|list| {
                            list.iter()
                                .filter_map(Weak::upgrade)
                                .map(StopHandle)
                                .collect()
                        })
                        .unwrap_or_default();
                    for launch in live {
                        launch.deliver(signal);
                    }
                }
            })?;
        Ok(SignalRouter {
            launches,
            handle,
            thread: Some(thread),
        })
    }

    /// A handle for one more launch; it receives every signal from now until it is dropped.
    pub fn launch(&self) -> StopHandle {
        let handle = StopHandle::new();
        if let Ok(mut list) = self.launches.lock() {
            list.retain(|route| route.strong_count() > 0);
            list.push(Arc::downgrade(&handle.0));
        }
        handle
    }
}

impl Drop for SignalRouter {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn signals_before_a_target_are_delivered_to_it_in_order_then_stop_with_the_guard() {
        let stop = StopHandle::new();
        stop.deliver(SIGTERM);
        stop.deliver(SIGUSR1);
        let (sent, received) = mpsc::channel();
        let forwarding = stop.forward_to(move |signal| sent.send(signal).unwrap());
        stop.deliver(SIGHUP);
        assert_eq!(
            received.try_iter().collect::<Vec<_>>(),
            [SIGTERM, SIGUSR1, SIGHUP]
        );
        drop(forwarding);
        stop.deliver(SIGINT);
        assert!(received.try_recv().is_err());
        assert_eq!(stop.route().pending, [SIGINT]);
    }

    #[test]
    fn the_router_reaches_every_live_launch_and_forgets_dropped_ones() {
        let router = SignalRouter::install().unwrap();
        let (first, second) = (router.launch(), router.launch());
        let (sent, received) = mpsc::channel();
        let to_first = sent.clone();
        let _one = first.forward_to(move |s| to_first.send((1, s)).unwrap());
        let _two = second.forward_to(move |s| sent.send((2, s)).unwrap());
        signal_hook::low_level::raise(SIGUSR2).unwrap();
        let mut got = vec![
            received
                .recv_timeout(std::time::Duration::from_secs(5))
                .unwrap(),
            received
                .recv_timeout(std::time::Duration::from_secs(5))
                .unwrap(),
        ];
        got.sort_unstable();
        assert_eq!(got, [(1, SIGUSR2), (2, SIGUSR2)]);
        assert_eq!(router.launches.lock().unwrap().len(), 2);
        drop(_two);
        drop(second);
        // The routing thread may still hold the second launch for the rest of its delivery;
        // once it lets go, the next launch finds it gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let _third = router.launch();
            if router.launches.lock().unwrap().len() == 2 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the dropped launch is never forgotten"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
