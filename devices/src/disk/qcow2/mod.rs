//! qcow2 images (QEMU's `docs/interop/qcow2.txt`), versions 2 and 3, read and write.
//!
//! The header is ours ([`header`], `core` only): [`inspect`](super::inspect) and
//! [`open`](super::open) parse it first, so an image capsule cannot use is refused with one
//! sentence before any I/O. The data path (L1/L2 tables, refcounts, allocation at the file's
//! end, copy-on-write from the backing chain, zero clusters, compressed clusters) is `imago`,
//! the QEMU block layer maintainer's crate, in its native synchronous mode.
//!
//! Why a crate, and why this one: `qcow2-rs` (0.1.6, the candidate) is async-only,
//! its "sync" I/O still `async fn` over tokio and `RefCell`s (not `Send`), and its file
//! opener unwraps; the `qcow2` crate (0.1.2) reads only, without backing files. `imago`
//! (0.2.6) writes with refcounts QEMU's `qemu-img check` finds clean, takes the backing chain
//! from us (so we resolve and detect it, and open every backing file read-only), and its
//! `sync` feature has plain `fn`s with no runtime. Its metadata caches hold at most 128 L2
//! tables and 32 refcount blocks of one cluster each, filled as the guest touches the disk
//! (an L2 table maps `cluster_size² / 8` bytes: 512 MiB for 64 KiB clusters).

pub mod header;

#[cfg(feature = "std")]
mod image;

#[cfg(feature = "std")]
pub(super) use image::Qcow2Image;
