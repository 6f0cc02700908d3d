//! Taking descriptor chains off a queue without losing why one ended (virtio 1.2 §2.7).
//!
//! virtio-queue bounds every guest number (a chain yields at most the queue size of
//! descriptors, or an indirect table's length; no next index past the table; at most 2^32
//! bytes, §2.7.5.2), but its iterator just *ends* on a malformed chain, so a device cannot
//! tell "the chain is done" from "the guest lied". Here a chain whose last yielded
//! descriptor still says VIRTQ_DESC_F_NEXT, or that yields nothing, is a [`MalformedChain`];
//! the device then returns it unanswered (used length 0) with a debug line.

use std::fmt;

use virtio_queue::desc::split::Descriptor;
use virtio_queue::{DescriptorChain, QueueOwnedT, QueueT};

use super::{GuestMemory, Queue};

/// Why a chain could not be walked to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MalformedChain {
    /// The head yields no descriptor (its index is past the table, or it points to a broken
    /// indirect table).
    Empty {
        /// The head's index.
        head: u16,
    },
    /// The chain stops at a descriptor that says it has a next one: a loop that ran out of
    /// the queue size, a next index past the table, an unreadable descriptor, a bad indirect
    /// table or more than 2^32 bytes.
    Truncated {
        /// The head's index.
        head: u16,
        /// How many descriptors were read.
        after: usize,
    },
    /// More descriptors than the device allows in one chain.
    TooLong {
        /// The head's index.
        head: u16,
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for MalformedChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty { head } => write!(f, "chain at head {head} has no descriptor"),
            Self::Truncated { head, after } => write!(
                f,
                "chain at head {head} breaks off after {after} descriptors (loop, bad next index, \
                 bad indirect table or over 2^32 bytes)"
            ),
            Self::TooLong { head, max } => {
                write!(f, "chain at head {head} has more than {max} descriptors")
            }
        }
    }
}

/// Reads `chain`'s descriptors into `out` (cleared first), at most `max` of them.
pub(crate) fn walk<M>(
    chain: DescriptorChain<M>,
    max: usize,
    out: &mut Vec<Descriptor>,
) -> Result<(), MalformedChain>
where
    M: std::ops::Deref,
    M::Target: vm_memory::GuestMemory,
{
    let head = chain.head_index();
    out.clear();
    for desc in chain {
        if out.len() == max {
            return Err(MalformedChain::TooLong { head, max });
        }
        out.push(desc);
    }
    match out.last() {
        None => Err(MalformedChain::Empty { head }),
        Some(last) if last.has_next() => Err(MalformedChain::Truncated {
            head,
            after: out.len(),
        }),
        Some(_) => Ok(()),
    }
}

/// The next available chain of `queue`, `None` when the driver offered no more.
///
/// Errors: the queue itself is broken (its avail index more than the queue size ahead, a
/// ring outside guest memory, a head index past the queue size), with the reason; the
/// device answers with DEVICE_NEEDS_RESET.
pub(crate) fn pop<'m>(
    queue: &mut Queue,
    memory: &'m GuestMemory,
) -> Result<Option<DescriptorChain<&'m GuestMemory>>, String> {
    let size = queue.size();
    let chain = queue
        .iter(memory)
        .map_err(|e| format!("cannot read the available ring: {e}"))?
        .next();
    match chain {
        Some(chain) if chain.head_index() >= size => Err(format!(
            "head index {} past the queue's {size} descriptors",
            chain.head_index()
        )),
        chain => Ok(chain),
    }
}
