//! The protocol: frames, messages and every bound, byte for byte.

use std::io::{self, Read};

use super::wire::{Decoder, ProtocolError, kind};
use super::{
    ExitReport, GuestMessage, HostMessage, MAX_DATA, MAX_RUN, RunRequest, VERSION, WindowSize,
};

/// Hands out its bytes `step` at a time, then `WouldBlock` once, then the end: a
/// non-blocking stream whose data trickles in.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    step: usize,
    blocked: bool,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.blocked {
            self.blocked = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.blocked = false;
        let n = self.step.min(buf.len()).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn header(kind: u8, len: u32) -> Vec<u8> {
    let mut h = vec![kind, 0, 0, 0];
    h.extend_from_slice(&len.to_le_bytes());
    h
}

fn host_decode(bytes: &[u8]) -> Result<GuestMessage, ProtocolError> {
    let (kind, payload) = Decoder::for_host()
        .read_frame(&mut &bytes[..])?
        .expect("a blocking reader");
    GuestMessage::decode(kind, &payload)
}

fn guest_decode(bytes: &[u8]) -> Result<HostMessage, ProtocolError> {
    let (kind, payload) = Decoder::for_guest()
        .read_frame(&mut &bytes[..])?
        .expect("a blocking reader");
    HostMessage::decode(kind, &payload)
}

fn request() -> RunRequest {
    RunRequest {
        workload: crate::Workload::new(vec!["/bin/sh".into(), "-c".into(), "exit 3".into()]),
        stdin: true,
        terminal: Some(WindowSize { rows: 24, cols: 80 }),
    }
}

#[test]
fn every_message_round_trips_through_its_frame() {
    let host = [
        HostMessage::Hello(VERSION),
        HostMessage::Run(Box::new(request())),
        HostMessage::Stdin(b"input".to_vec()),
        HostMessage::Stdin(vec![7; MAX_DATA]),
        HostMessage::StdinEof,
        HostMessage::Signal(15),
        HostMessage::Resize(WindowSize {
            rows: 50,
            cols: 132,
        }),
    ];
    for message in host {
        let mut frame = Vec::new();
        message.encode(&mut frame);
        assert_eq!(guest_decode(&frame).unwrap(), message);
    }
    let guest = [
        GuestMessage::Hello(VERSION),
        GuestMessage::Started { pid: 42 },
        GuestMessage::Stdout(b"out".to_vec()),
        GuestMessage::Stderr(Vec::new()),
        GuestMessage::Exited(ExitReport {
            code: 143,
            signal: Some(15),
            oom_killed: false,
        }),
        GuestMessage::Exited(ExitReport {
            code: 137,
            signal: Some(9),
            oom_killed: true,
        }),
        GuestMessage::Error("the container's rootfs: é".into()),
    ];
    for message in guest {
        let mut frame = Vec::new();
        message.encode(&mut frame);
        assert_eq!(host_decode(&frame).unwrap(), message);
    }
}

#[test]
fn the_header_is_kind_zero_reserved_and_a_little_endian_length() {
    let mut frame = Vec::new();
    GuestMessage::Stdout(b"hi".to_vec()).encode(&mut frame);
    assert_eq!(frame, [0x03, 0, 0, 0, 2, 0, 0, 0, b'h', b'i']);
    frame.clear();
    HostMessage::Signal(15).encode(&mut frame);
    assert_eq!(frame, [0x85, 0, 0, 0, 4, 0, 0, 0, 15, 0, 0, 0]);
}

#[test]
fn frames_that_trickle_in_are_put_together_and_what_follows_stays() {
    let mut bytes = Vec::new();
    GuestMessage::Stdout(b"first".to_vec()).encode(&mut bytes);
    GuestMessage::Started { pid: 1 }.encode(&mut bytes);
    let mut stream = Trickle {
        data: bytes,
        at: 0,
        step: 3,
        blocked: false,
    };
    let mut decoder = Decoder::for_host();
    let mut frames = Vec::new();
    let mut nones = 0;
    while frames.len() < 2 {
        match decoder.read_frame(&mut stream).unwrap() {
            Some(frame) => frames.push(frame),
            None => nones += 1,
        }
    }
    assert!(nones > 2, "WouldBlock came back as None");
    assert_eq!(frames[0], (kind::STDOUT, b"first".to_vec()));
    assert_eq!(frames[1], (kind::STARTED, vec![1, 0, 0, 0]));
    assert!(matches!(
        decoder.read_frame(&mut stream),
        Err(ProtocolError::Closed) | Ok(None)
    ));
}

#[test]
fn an_oversize_length_is_refused_from_the_header_alone() {
    // Only the header: a decoder that allocated first would wait for 4 GiB instead.
    let err = host_decode(&header(kind::STDOUT, u32::MAX)).unwrap_err();
    assert!(
        matches!(err, ProtocolError::TooLong { kind: "Stdout", len: u32::MAX, max } if max == MAX_DATA),
        "{err}"
    );
    let err = host_decode(&header(kind::ERROR, 4097)).unwrap_err();
    assert!(matches!(err, ProtocolError::TooLong { .. }), "{err}");
    let err = guest_decode(&header(kind::RUN, (MAX_RUN + 1) as u32)).unwrap_err();
    assert!(
        matches!(err, ProtocolError::TooLong { kind: "Run", .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "a Run message of {} bytes (at most {MAX_RUN} allowed)",
            MAX_RUN + 1
        )
    );
}

#[test]
fn fixed_size_messages_of_another_size_are_refused() {
    let err = host_decode(&header(kind::EXITED, 7)).unwrap_err();
    assert!(
        matches!(
            err,
            ProtocolError::BadLength {
                kind: "Exited",
                len: 7,
                expected: 8
            }
        ),
        "{err}"
    );
    let err = guest_decode(&header(kind::STDIN_EOF, 1)).unwrap_err();
    assert!(matches!(err, ProtocolError::BadLength { .. }), "{err}");
}

#[test]
fn unknown_kinds_and_the_other_side_s_kinds_are_refused() {
    for kind in [0x00, 0x07, 0x7f, 0xff] {
        let err = host_decode(&header(kind, 0)).unwrap_err();
        assert!(
            matches!(err, ProtocolError::UnknownKind(k) if k == kind),
            "{err}"
        );
    }
    // A guest cannot send a host's Run, nor the host a guest's Stdout.
    let err = host_decode(&header(kind::RUN, 2)).unwrap_err();
    assert!(matches!(err, ProtocolError::UnknownKind(0x82)), "{err}");
    let err = guest_decode(&header(kind::STDOUT, 2)).unwrap_err();
    assert!(matches!(err, ProtocolError::UnknownKind(0x03)), "{err}");
    assert_eq!(err.to_string(), "a message of unknown type 0x03");
}

#[test]
fn reserved_bytes_must_be_zero() {
    let mut h = header(kind::STDOUT, 0);
    h[2] = 1;
    let err = host_decode(&h).unwrap_err();
    assert!(
        matches!(err, ProtocolError::Reserved { kind: "Stdout", .. }),
        "{err}"
    );
}

#[test]
fn a_truncated_frame_says_how_much_came() {
    let mut frame = header(kind::STDOUT, 10);
    frame.extend_from_slice(b"abc");
    let err = host_decode(&frame).unwrap_err();
    assert!(
        matches!(
            err,
            ProtocolError::Truncated {
                kind: "Stdout",
                got: 11,
                expected: 18
            }
        ),
        "{err}"
    );
    let err = host_decode(&frame[..5]).unwrap_err();
    assert!(
        matches!(
            err,
            ProtocolError::Truncated {
                got: 5,
                expected: 8,
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        host_decode(&[]).unwrap_err(),
        ProtocolError::Closed
    ));
}

#[test]
fn payloads_that_do_not_parse_are_refused() {
    let mut exited = header(kind::EXITED, 8);
    exited.extend_from_slice(&300i32.to_le_bytes());
    exited.extend_from_slice(&[0; 4]);
    let err = host_decode(&exited).unwrap_err();
    assert!(err.to_string().contains("exit status 300"), "{err}");

    let mut flags = header(kind::EXITED, 8);
    flags.extend_from_slice(&[0, 0, 0, 0, 65, 0, 0, 0]);
    assert!(matches!(
        host_decode(&flags).unwrap_err(),
        ProtocolError::BadPayload { .. }
    ));

    let mut error = header(kind::ERROR, 2);
    error.extend_from_slice(&[0xff, 0xfe]);
    assert!(matches!(
        host_decode(&error).unwrap_err(),
        ProtocolError::BadPayload { kind: "Error", .. }
    ));

    let mut signal = header(kind::SIGNAL, 4);
    signal.extend_from_slice(&0i32.to_le_bytes());
    let err = guest_decode(&signal).unwrap_err();
    assert!(err.to_string().contains("signal 0 is not 1 to 64"), "{err}");

    let json = br#"{"workload":{"process":{"args":[]}},"stdin":false,"terminal":null}"#;
    let mut run = header(kind::RUN, json.len() as u32);
    run.extend_from_slice(json);
    let err = guest_decode(&run).unwrap_err();
    assert!(
        err.to_string().contains("args: must name a command"),
        "{err}"
    );
}

#[test]
fn a_long_error_is_cut_at_a_character_within_the_limit() {
    let mut frame = Vec::new();
    GuestMessage::Error("é".repeat(3000)).encode(&mut frame);
    let GuestMessage::Error(text) = host_decode(&frame).unwrap() else {
        panic!("not an Error");
    };
    assert_eq!(text.len(), 4096);
}
