//! The guest memory type devices and the VMM share.

use std::fmt::Debug;

use vm_memory::bitmap::{Bitmap, NewBitmap, WithBitmapSlice};

/// What keeps a guest memory region's host mapping alive, in the slot vm-memory keeps for a
/// region's dirty bitmap (it tracks no dirty pages).
///
/// vm-memory's regions over a mapping the VMM made itself (kvm-core maps RAM 2 MiB-aligned)
/// never unmap it; the one value that lives exactly as long as a region and all its clones
/// is its bitmap, so the owner of the mapping sits here, and the mapping goes when the last
/// clone of the memory (a device's included) is dropped. Regions vm-memory maps itself (tests,
/// `GuestMemory::from_ranges`) have no owner.
#[derive(Debug, Default)]
pub struct RegionOwner {
    /// Only ever dropped.
    _owner: Option<Box<dyn Debug + Send + Sync>>,
}

impl RegionOwner {
    /// Keeps `owner` until the region is dropped.
    pub fn new(owner: impl Debug + Send + Sync + 'static) -> Self {
        Self {
            _owner: Some(Box::new(owner)),
        }
    }
}

impl WithBitmapSlice<'_> for RegionOwner {
    type S = ();
}

impl Bitmap for RegionOwner {
    fn mark_dirty(&self, _offset: usize, _len: usize) {}

    fn dirty_at(&self, _offset: usize) -> bool {
        false
    }

    fn slice_at(&self, _offset: usize) {}
}

impl NewBitmap for RegionOwner {
    fn with_len(_len: usize) -> Self {
        Self::default()
    }
}
