//! The console against mock queues, a gated writer behind its sink, and a pipe for input.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use virtio_queue::mock::MockSplitQueue;

use super::{Console, QUEUE_SIZE, RECEIVEQ, RECEIVEQ_SIZE, TRANSMITQ};
use crate::output::OutputSink;
use crate::output::tests::pipe;
use crate::virtio::test_utils::{
    BUFFERS, OUTSIDE, activation, add_chain, memory, read, readable, used, writable, write,
};
use crate::virtio::{GuestMemory, VirtioDevice};

/// A host file whose writes wait until the test opens the gate.
#[derive(Clone, Default)]
struct Gated {
    open: Arc<(Mutex<bool>, Condvar)>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl Gated {
    fn open(&self) {
        *self.open.0.lock().unwrap() = true;
        self.open.1.notify_all();
    }

    fn written(&self) -> Vec<u8> {
        self.written.lock().unwrap().clone()
    }
}

impl Write for Gated {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut open = self.open.0.lock().unwrap();
        while !*open {
            open = self.open.1.wait(open).unwrap();
        }
        self.written.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A console activated with mock queues.
fn console<'m>(
    memory: &'m GuestMemory,
    output: OutputSink,
    input: Option<OwnedFd>,
) -> (
    Console,
    MockSplitQueue<'m, GuestMemory>,
    MockSplitQueue<'m, GuestMemory>,
) {
    let mut console = Console::new(output, input).unwrap();
    let receiveq = MockSplitQueue::create(memory, vm_memory::GuestAddress(0), RECEIVEQ_SIZE);
    let transmitq = MockSplitQueue::create(memory, vm_memory::GuestAddress(0x8000), QUEUE_SIZE);
    let (act, _) = activation(memory, &[&receiveq, &transmitq], console.device_features());
    console.activate(act).unwrap();
    (console, receiveq, transmitq)
}

/// Calls `f` every 5 ms until it is true, for up to 5 s.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn transmit_buffers_reach_the_output() {
    let memory = memory();
    let host = Gated::default();
    host.open();
    let sink = OutputSink::new(host.clone(), 4096).unwrap();
    let (mut console, _, tx) = console(&memory, sink.clone(), None);
    write(&memory, BUFFERS, b"hello ");
    write(&memory, BUFFERS + 0x100, b"hvc0\n");
    add_chain(
        &tx,
        0,
        &[readable(BUFFERS, 6), readable(BUFFERS + 0x100, 5)],
    );
    console.queue_notified(TRANSMITQ).unwrap();
    assert_eq!(used(&tx, 0), (1, 0, 0));
    assert!(sink.flush_for(Instant::now() + Duration::from_secs(5)));
    assert_eq!(host.written(), b"hello hvc0\n");
}

#[test]
fn a_full_sink_leaves_transmit_buffers_in_the_ring_until_room_frees() {
    let memory = memory();
    let host = Gated::default();
    // 8 bytes of room; the writer thread blocks on the closed gate with what it took.
    let sink = OutputSink::new(host.clone(), 8).unwrap();
    let (mut console, _, tx) = console(&memory, sink.clone(), None);
    assert!(console.host_fds().contains(&sink.room_fd()));

    write(&memory, BUFFERS, b"0123456789");
    write(&memory, BUFFERS + 0x100, b"abcd");
    add_chain(&tx, 0, &[readable(BUFFERS, 10)]);
    add_chain(&tx, 1, &[readable(BUFFERS + 0x100, 4)]);
    console.queue_notified(TRANSMITQ).unwrap();
    // The first buffer did not fit whole: nothing is used, the guest waits.
    assert_eq!(tx.used().idx().load(), 0);
    // More notifications change nothing while the sink is full.
    console.queue_notified(TRANSMITQ).unwrap();
    assert_eq!(tx.used().idx().load(), 0);

    host.open();
    let room = sink.room_fd();
    assert!(eventually(|| {
        console.host_ready(room).unwrap();
        tx.used().idx().load() == 2
    }));
    assert!(sink.flush_for(Instant::now() + Duration::from_secs(5)));
    assert_eq!(host.written(), b"0123456789abcd");
}

#[test]
fn a_transmit_buffer_outside_memory_is_returned_and_the_next_sent() {
    let memory = memory();
    let host = Gated::default();
    host.open();
    let sink = OutputSink::new(host.clone(), 4096).unwrap();
    let (mut console, _, tx) = console(&memory, sink.clone(), None);
    write(&memory, BUFFERS, b"ok");
    add_chain(&tx, 0, &[readable(OUTSIDE, 16)]);
    add_chain(&tx, 1, &[readable(BUFFERS, 2)]);
    console.queue_notified(TRANSMITQ).unwrap();
    assert_eq!(tx.used().idx().load(), 2);
    assert!(sink.flush_for(Instant::now() + Duration::from_secs(5)));
    assert_eq!(host.written(), b"ok");
}

#[test]
fn input_from_a_pipe_fills_receive_buffers() {
    let memory = memory();
    let (reader, mut writer) = pipe();
    let sink = OutputSink::new(std::io::sink(), 4096).unwrap();
    let (mut console, rx, _) = console(&memory, sink, Some(reader.into()));
    let ready = console.host_fds()[1];

    add_chain(&rx, 0, &[writable(BUFFERS, 64)]);
    console.queue_notified(RECEIVEQ).unwrap();
    assert_eq!(rx.used().idx().load(), 0, "no input yet");

    writer.write_all(b"typed\n").unwrap();
    assert!(eventually(|| {
        console.host_ready(ready).unwrap();
        rx.used().idx().load() == 1
    }));
    assert_eq!(used(&rx, 0), (1, 0, 6));
    assert_eq!(read(&memory, BUFFERS, 6), b"typed\n");
}

#[test]
fn input_before_any_receive_buffer_waits_for_one() {
    let memory = memory();
    let (reader, mut writer) = pipe();
    let sink = OutputSink::new(std::io::sink(), 4096).unwrap();
    let (mut console, rx, _) = console(&memory, sink, Some(reader.into()));
    let ready = console.host_fds()[1];

    writer.write_all(b"early").unwrap();
    // The input thread reads it and fires; with no buffer nothing is used.
    std::thread::sleep(Duration::from_millis(100));
    console.host_ready(ready).unwrap();
    assert_eq!(rx.used().idx().load(), 0);

    // A buffer of 3 takes the first 3 bytes; the next takes the rest.
    add_chain(&rx, 0, &[writable(BUFFERS, 3)]);
    add_chain(&rx, 1, &[writable(BUFFERS + 0x100, 16)]);
    console.queue_notified(RECEIVEQ).unwrap();
    assert_eq!(rx.used().idx().load(), 2);
    assert_eq!(read(&memory, BUFFERS, 3), b"ear");
    assert_eq!(read(&memory, BUFFERS + 0x100, 2), b"ly");
    assert_eq!(used(&rx, 1).2, 2);
}

#[test]
fn dropping_the_console_stops_the_input_thread() {
    let memory = memory();
    let (reader, mut writer) = pipe();
    let sink = OutputSink::new(std::io::sink(), 4096).unwrap();
    let (console, _, _) = console(&memory, sink, Some(reader.into()));
    drop(console);
    // The thread closed its read end on the way out: the pipe has no reader left.
    assert!(eventually(|| writer.write_all(b"x").is_err()));
}
