//! Polling for kernel state that changes asynchronously (freezing, emptying).

use std::thread;
use std::time::{Duration, Instant};

use crate::error::Result;

/// How long freezing, thawing and emptying a cgroup may take before we give up.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(2);

/// Calls `done` until it returns true or `timeout` passes, sleeping 1 ms at first and backing off
/// to 50 ms. Returns whether `done` became true.
pub(crate) fn poll_until(
    timeout: Duration,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<bool> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if done()? {
            return Ok(true);
        }
        if start.elapsed() >= timeout {
            return Ok(false);
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
