//! virtio-blk (virtio 1.2 §5.2): a block device over a [`DiskImage`](crate::disk::DiskImage).
//!
//! - [`request`]: the wire format (header, types, status, segments, configuration space) and
//!   the parse of one request's descriptor chain, `core` only;
//! - [`Block`] (std): the device, serving its one queue synchronously on the event loop.

pub mod request;

#[cfg(feature = "std")]
mod device;

#[cfg(feature = "std")]
pub use device::{Block, QUEUE_SIZE, SEG_MAX};

#[cfg(test)]
mod tests;
