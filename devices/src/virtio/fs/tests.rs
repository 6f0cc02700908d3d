//! virtio-fs against a real virtiofsd: negotiation, the tag, FUSE requests through the
//! rings (so the memory table, ring addresses, kicks and calls all work), `--readonly`
//! refusing writes, and a backend that goes away.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use virtio_queue::mock::MockSplitQueue;
use vm_memory::{FileOffset, GuestAddress};

use super::*;
use crate::virtio::GuestMemory;
use crate::virtio::test_utils::{self, BUFFERS, add_chain, readable, used, writable};

/// virtiofsd serving a directory of its own, killed on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
    shared: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts virtiofsd (`tests::virtiofsd()`), or `None` when it is missing and the test
    /// may skip.
    fn start(readonly: bool) -> Option<Daemon> {
        let binary = ::tests::virtiofsd();
        if !::tests::require(
            binary.is_some(),
            "virtiofsd (cargo xtask virtiofsd, or $CAPSULE_VIRTIOFSD)",
        ) {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = tempfile::tempdir().expect("tempdir");
        std::fs::write(shared.path().join("hello"), "from the host").expect("write");
        let socket = dir.path().join("fs.sock");
        let mut command = Command::new(binary?);
        command
            .arg("--socket-path")
            .arg(&socket)
            .arg("--shared-dir")
            .arg(shared.path())
            // The test exercises the protocol, not the sandbox (capsule's own tests do).
            .args([
                "--sandbox",
                "none",
                "--seccomp",
                "none",
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null());
        if readonly {
            command.arg("--readonly");
        }
        let child = command.spawn().expect("virtiofsd starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "virtiofsd made no socket in 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(Daemon {
            child,
            socket,
            shared,
            _dir: dir,
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 16 MiB of guest memory in a file, as vhost-user needs it.
fn shared_memory() -> GuestMemory {
    let file = tempfile::tempfile().expect("tempfile");
    file.set_len(16 << 20).expect("size");
    GuestMemory::from_ranges_with_files(&[(
        GuestAddress(0),
        16 << 20,
        Some(FileOffset::new(file, 0)),
    )])
    .expect("map the file")
}

const FUSE_ROOT_ID: u64 = 1;
const FUSE_MKDIR: u32 = 9;
const FUSE_INIT: u32 = 26;
const EROFS: i32 = 30;

/// A FUSE request: `fuse_in_header` (40 bytes) and the body.
fn fuse_request(opcode: u32, unique: u64, nodeid: u64, body: &[u8]) -> Vec<u8> {
    let len = 40 + body.len() as u32;
    let mut request = Vec::new();
    request.extend(len.to_le_bytes());
    request.extend(opcode.to_le_bytes());
    request.extend(unique.to_le_bytes());
    request.extend(nodeid.to_le_bytes());
    request.extend([0u8; 16]); // uid, gid, pid, total_extlen, padding
    request.extend(body);
    request
}

/// A driver of the device's request queue, the way the guest's virtio-fs driver uses it.
struct Guest {
    memory: GuestMemory,
    device: Fs,
    interrupt: std::sync::Arc<test_utils::Counter>,
    next_descriptor: u16,
    next_buffer: u64,
    requests: u16,
}

impl Guest {
    /// Connects a device to `daemon` and activates it on two mock queues in shared memory.
    /// The mock queues are leaked: they borrow `memory` for the test's length.
    fn activate(daemon: &Daemon) -> (Guest, MockSplitQueue<'static, GuestMemory>) {
        let memory: &'static GuestMemory = Box::leak(Box::new(shared_memory()));
        let mut device = adopted(daemon);
        let hiprio = MockSplitQueue::create(memory, GuestAddress(0x1000), 16);
        let requests = MockSplitQueue::create(memory, GuestAddress(0x4000), 16);
        let (activation, interrupt) = test_utils::activation(
            memory,
            &[&hiprio, &requests],
            1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1,
        );
        device.activate(activation).expect("the backend starts");
        (
            Guest {
                memory: memory.clone(),
                device,
                interrupt,
                next_descriptor: 0,
                next_buffer: BUFFERS,
                requests: 0,
            },
            requests,
        )
    }

    /// Sends `request` on the request queue, kicks it and waits for the backend's call;
    /// returns the reply's `fuse_out_header.error` (0 or a negative errno).
    fn call(
        &mut self,
        queue: &MockSplitQueue<'static, GuestMemory>,
        kicks: &EventFd,
        request: &[u8],
    ) -> i32 {
        let input = self.next_buffer;
        let output = input + 0x1000;
        self.next_buffer += 0x2000;
        test_utils::write(&self.memory, input, request);
        add_chain(
            queue,
            self.next_descriptor,
            &[
                readable(input, request.len() as u32),
                writable(output, 0x1000),
            ],
        );
        self.next_descriptor += 2;
        kicks.write(1).expect("kick");
        let before = self.interrupt.count();
        let call = self.device.calls[1].as_raw_fd();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.interrupt.count() == before {
            assert!(Instant::now() < deadline, "the backend never called");
            std::thread::sleep(Duration::from_millis(5));
            self.device.host_ready(call).expect("call handled");
        }
        self.requests += 1;
        let (used_index, _, len) = used(queue, self.requests - 1);
        assert_eq!(used_index, self.requests, "one used element per request");
        assert!(len >= 16, "a fuse_out_header came back ({len} bytes)");
        let header = test_utils::read(&self.memory, output, 16);
        assert_eq!(
            header[8..16],
            request[8..16],
            "the reply's unique is the request's"
        );
        i32::from_le_bytes(header[4..8].try_into().expect("4 bytes"))
    }
}

/// A device connected to `daemon` that took two queue eventfds, as the transport hands them.
fn adopted(daemon: &Daemon) -> Fs {
    let mut device = Fs::new("share", &daemon.socket).expect("negotiates");
    let kicks =
        [EventFd::new(EFD_NONBLOCK), EventFd::new(EFD_NONBLOCK)].map(|e| e.expect("eventfd"));
    assert!(device.adopt_queue_events(&kicks).expect("adopted"));
    device
}

/// An activation with two mock queues in `memory` (which outlives only this call: for
/// activations that fail before the rings are used).
fn activation_on(memory: &GuestMemory) -> crate::virtio::Activation {
    let hiprio = MockSplitQueue::create(memory, GuestAddress(0x1000), 16);
    let requests = MockSplitQueue::create(memory, GuestAddress(0x4000), 16);
    test_utils::activation(memory, &[&hiprio, &requests], 1 << 32).0
}

fn init(guest: &mut Guest, queue: &MockSplitQueue<'static, GuestMemory>, kick: &EventFd) {
    // fuse_init_in: major 7, minor 31, max_readahead, flags; the rest zero.
    let mut body = Vec::new();
    for word in [7u32, 31, 0, 0] {
        body.extend(word.to_le_bytes());
    }
    body.extend([0u8; 48]);
    assert_eq!(
        guest.call(queue, kick, &fuse_request(FUSE_INIT, 1, 0, &body)),
        0,
        "FUSE_INIT"
    );
}

fn mkdir(guest: &mut Guest, queue: &MockSplitQueue<'static, GuestMemory>, kick: &EventFd) -> i32 {
    let mut body = Vec::new();
    body.extend(0o755u32.to_le_bytes());
    body.extend(0u32.to_le_bytes());
    body.extend(b"made\0");
    guest.call(
        queue,
        kick,
        &fuse_request(FUSE_MKDIR, 2, FUSE_ROOT_ID, &body),
    )
}

fn kick(guest: &Guest) -> EventFd {
    guest.device.kicks[1].try_clone().expect("clone")
}

#[test]
fn negotiation_gives_the_driver_the_backend_s_features_and_the_tag() {
    let Some(daemon) = Daemon::start(false) else {
        return;
    };
    let device = Fs::new("share", &daemon.socket).expect("negotiates");
    assert_eq!(device.device_type(), 26);
    let features = device.device_features();
    assert_ne!(features & (1 << 32), 0, "VIRTIO_F_VERSION_1 offered");
    assert_eq!(
        features & (1 << 30),
        0,
        "the protocol's own bit is never offered"
    );
    assert_eq!(device.queue_max_sizes(), [1024, 1024]);
    let mut tag = [0xffu8; 36];
    device.read_config(0, &mut tag);
    assert_eq!(&tag[..5], b"share");
    assert!(tag[5..].iter().all(|&b| b == 0), "NUL-padded");
    let mut queues = [0u8; 4];
    device.read_config(36, &mut queues);
    assert_eq!(u32::from_le_bytes(queues), 1, "num_request_queues");
    let mut past = [0xffu8; 4];
    device.read_config(40, &mut past);
    assert_eq!(past, [0; 4], "past the end reads 0");
}

#[test]
fn fuse_requests_travel_through_the_rings_and_reach_the_directory() {
    let Some(daemon) = Daemon::start(false) else {
        return;
    };
    let (mut guest, queue) = Guest::activate(&daemon);
    let kick = kick(&guest);
    init(&mut guest, &queue, &kick);
    assert_eq!(mkdir(&mut guest, &queue, &kick), 0, "FUSE_MKDIR");
    assert!(
        daemon.shared.path().join("made").is_dir(),
        "the guest's mkdir reached the host"
    );
    guest.device.reset();
}

#[test]
fn a_readonly_backend_refuses_writes_with_erofs() {
    let Some(daemon) = Daemon::start(true) else {
        return;
    };
    let (mut guest, queue) = Guest::activate(&daemon);
    let kick = kick(&guest);
    init(&mut guest, &queue, &kick);
    assert_eq!(
        mkdir(&mut guest, &queue, &kick),
        -EROFS,
        "FUSE_MKDIR on --readonly"
    );
    assert!(!daemon.shared.path().join("made").exists());
}

#[test]
fn a_backend_that_goes_away_fails_activation_and_shows_as_hung_up() {
    let Some(mut daemon) = Daemon::start(false) else {
        return;
    };
    let mut device = adopted(&daemon);
    daemon.child.kill().expect("kill");
    daemon.child.wait().expect("reaped");
    let socket_fd = device.backend.socket_fd();
    let lost = device.host_ready(socket_fd);
    assert!(
        matches!(lost, Err(HostError::BackendLost(ref lost)) if lost.reason.contains("hung up")),
        "the hang-up ends the run, not just the device: {lost:?}"
    );
    let memory = shared_memory();
    let activation = activation_on(&memory);
    let started = Instant::now();
    let error = device.activate(activation).expect_err("nobody to start");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no wait on a dead backend"
    );
    assert!(error.to_string().contains("SET_FEATURES"), "{error}");
}

#[test]
fn private_guest_memory_is_refused_by_name() {
    let Some(daemon) = Daemon::start(false) else {
        return;
    };
    let mut device = adopted(&daemon);
    let memory = test_utils::memory();
    let activation = activation_on(&memory);
    let error = device.activate(activation).expect_err("anonymous memory");
    assert!(error.to_string().contains("private to the VMM"), "{error}");
}

#[test]
fn a_missing_socket_is_a_connect_error_naming_it() {
    let missing = Path::new("/nonexistent/virtiofsd.sock");
    let error = Fs::new("share", missing).expect_err("nothing listens");
    assert!(
        matches!(error, FsError::Backend(VhostUserError::Connect { .. })),
        "{error}"
    );
    assert!(
        error.to_string().contains("/nonexistent/virtiofsd.sock"),
        "{error}"
    );
}

#[test]
fn tags_must_fit_the_config_space() {
    let socket = Path::new("/nonexistent");
    for (tag, reason) in [
        ("", "empty"),
        (&"x".repeat(37)[..], "longer than the 36 bytes"),
        ("a\0b", "NUL"),
    ] {
        let error = Fs::new(tag, socket).expect_err("bad tag");
        assert!(matches!(error, FsError::Tag { .. }), "{error}");
        assert!(error.to_string().contains(reason), "{error}");
    }
}
