//! The sink against a real pipe whose reader does not read.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::{DEFAULT_CAPACITY, OutputSink};

/// A pipe: (read end, write end).
#[allow(unsafe_code)]
pub(crate) fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into the two-element array it is given.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are owned by nobody else.
    unsafe {
        (
            File::from(OwnedFd::from_raw_fd(fds[0])),
            File::from(OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

/// Offers 4 KiB pieces until the sink takes nothing; returns how much it took.
fn fill(sink: &OutputSink) -> usize {
    let piece = [b'x'; 4096];
    let mut total = 0;
    // Bounded: pipe (64 KiB) + buffer + one chunk in flight, far under this.
    for _ in 0..1000 {
        let n = sink.try_write(&piece);
        if n == 0 {
            return total;
        }
        total += n;
    }
    panic!("the sink never filled");
}

/// Fills the sink and the pipe behind it (the writer thread moves buffered bytes into the
/// pipe until it is full); clears the room events those moves fired.
fn fill_all(sink: &OutputSink) -> usize {
    let mut total = 0;
    let mut empty_rounds = 0;
    for _ in 0..100 {
        let n = fill(sink);
        total += n;
        // Twice nothing, 100 ms apart: the thread is stuck in write(2), the pipe full.
        empty_rounds = if n == 0 { empty_rounds + 1 } else { 0 };
        if empty_rounds == 2 {
            sink.clear_room();
            return total;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the pipe never filled");
}

/// Waits up to 5 s for the room event.
fn room_fired(sink: &OutputSink) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if sink.clear_room() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn a_reader_that_never_reads_fills_the_sink_without_blocking_the_writer() {
    let (_reader, writer) = pipe();
    let sink = OutputSink::new(writer, DEFAULT_CAPACITY).unwrap();
    let start = Instant::now();
    let taken = fill_all(&sink);
    assert!(taken >= DEFAULT_CAPACITY, "took {taken}");
    assert_eq!(sink.try_write(b"more"), 0);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "try_write blocked"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(!sink.clear_room(), "no room freed while the reader sleeps");
}

#[test]
fn reading_the_pipe_makes_room_and_fires_the_eventfd() {
    let (mut reader, writer) = pipe();
    let sink = OutputSink::new(writer, 8192).unwrap();
    let taken = fill_all(&sink);
    assert_eq!(sink.try_write(b"again"), 0);

    let mut buf = vec![0; 256 << 10];
    let n = reader.read(&mut buf).unwrap();
    assert!(n > 0);
    assert!(room_fired(&sink), "no room event after the reader read");
    assert!(sink.try_write(b"again") > 0);
    // Everything taken arrives, in order and whole.
    drop(sink);
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(n + rest.len(), taken + 5);
    assert!(rest.ends_with(b"xagain"));
}

#[test]
fn dropping_the_sink_with_a_stuck_reader_returns_at_once() {
    let (reader, writer) = pipe();
    let sink = OutputSink::new(writer, DEFAULT_CAPACITY).unwrap();
    fill_all(&sink);
    let start = Instant::now();
    drop(sink);
    assert!(start.elapsed() < Duration::from_millis(100));
    // The writer thread stays blocked in write(2) until the reader goes; closing it here
    // lets it end with EPIPE.
    drop(reader);
}

#[test]
fn flush_for_waits_for_the_last_bytes_or_the_deadline() {
    let (mut reader, writer) = pipe();
    let sink = OutputSink::new(writer, DEFAULT_CAPACITY).unwrap();
    assert_eq!(sink.try_write(b"last words"), 10);
    assert!(sink.flush_for(Instant::now() + Duration::from_secs(5)));
    let mut got = [0; 10];
    reader.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"last words");

    fill_all(&sink);
    let start = Instant::now();
    assert!(!sink.flush_for(start + Duration::from_millis(100)));
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(100) && waited < Duration::from_secs(2));
}

#[test]
fn a_reader_gone_makes_the_sink_drop_instead_of_holding_the_guest() {
    let (reader, writer) = pipe();
    drop(reader);
    let sink = OutputSink::new(writer, 4096).unwrap();
    assert_eq!(sink.try_write(b"into the void"), 13);
    // The thread's write fails with EPIPE; from then on everything is taken and dropped.
    assert!(!sink.flush_for(Instant::now() + Duration::from_secs(5)));
    assert_eq!(sink.try_write(&[0; 10_000]), 10_000);
}

#[test]
fn the_lossy_writer_drops_and_counts_what_does_not_fit() {
    let (_reader, writer) = pipe();
    let sink = OutputSink::new(writer, 4096).unwrap();
    let mut serial = sink.lossy_writer();
    let start = Instant::now();
    let total = 1 << 20;
    for _ in 0..total / 1024 {
        assert_eq!(serial.write(&[b's'; 1024]).unwrap(), 1024);
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the serial blocked"
    );
    // At most the pipe, the buffer and one chunk got through.
    let dropped = serial.dropped();
    assert!(
        dropped >= total as u64 - (64 << 10) - 4096 - (16 << 10),
        "{dropped}"
    );
    assert!(dropped < total as u64);
    // The serial's losses do not arm the console's room event.
    assert!(!sink.clear_room());
}
