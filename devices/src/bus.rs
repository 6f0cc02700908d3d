//! A port-I/O or MMIO bus: it owns address ranges, devices see offsets.
//!
//! The VMM keeps one [`Bus`] for port I/O and one for MMIO. Each device is
//! inserted at a `base` with a length; the bus refuses empty, overflowing and
//! overlapping ranges, so at most one device answers any address. On a vCPU
//! exit the VMM calls [`Bus::read`] or [`Bus::write`] with the guest address;
//! the bus finds the device and hands it the offset from its base.
//!
//! Rules for an access (all of them guest-controlled, none of them panics):
//!
//! - it must start inside a device's range, else [`BusError::Unmapped`];
//! - it must end inside the same range, else [`BusError::Straddle`]: the bus
//!   never splits an access across devices, and a device is never asked for
//!   bytes past its end;
//! - a zero-length access that starts inside a range reaches the device with
//!   an empty slice (devices ignore it).
//!
//! What to do with an error is the VMM's call: a read of an unmapped port
//! usually answers `0xff` bytes (a floating ISA bus), a write is dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// What the VMM's run loop must do after a guest write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceAction {
    /// Nothing: keep running.
    None,
    /// The guest asked to stop with this exit status (the exit port).
    Exit(u8),
    /// The guest asked for a reset (the i8042 "pulse reset line" command,
    /// the ACPI reset register).
    Reset,
    /// The guest powered off (ACPI sleep state S5).
    PowerOff,
}

/// A device on a [`Bus`].
///
/// `offset` is relative to the base the device was inserted at, and
/// `offset + data.len()` never exceeds the length it was inserted with. The
/// size of `data` is whatever the guest used (1, 2, 4 or 8 bytes, or even 0):
/// a device must not assume one.
pub trait BusDevice: Send {
    /// Fills `data` with the bytes read at `offset`.
    fn read(&mut self, offset: u64, data: &mut [u8]);

    /// Takes the bytes the guest wrote at `offset`. The default ignores them.
    fn write(&mut self, offset: u64, data: &[u8]) -> DeviceAction {
        let _ = (offset, data);
        DeviceAction::None
    }
}

/// A non-empty range of bus addresses, `base..base + len`, that does not
/// wrap around the end of the 64-bit address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BusRange {
    base: u64,
    len: u64,
}

impl BusRange {
    /// Checks and builds a range.
    ///
    /// ```
    /// use devices::{BusError, BusRange};
    ///
    /// let com1 = BusRange::new(0x3f8, 8)?;
    /// assert_eq!(com1.end(), 0x400);
    /// assert!(matches!(BusRange::new(0x3f8, 0), Err(BusError::EmptyRange { .. })));
    /// assert!(matches!(BusRange::new(u64::MAX, 2), Err(BusError::RangeOverflow { .. })));
    /// # Ok::<(), BusError>(())
    /// ```
    pub fn new(base: u64, len: u64) -> Result<Self, BusError> {
        if len == 0 {
            return Err(BusError::EmptyRange { base });
        }
        if base.checked_add(len).is_none() {
            return Err(BusError::RangeOverflow { base, len });
        }
        Ok(Self { base, len })
    }

    /// The first address of the range.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The number of addresses in the range (never 0).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always `false`: [`BusRange::new`] refuses empty ranges. Here for
    /// clippy's `len_without_is_empty` and for symmetry with slices.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The first address past the range.
    pub fn end(&self) -> u64 {
        // Cannot overflow: `new` checked `base + len` with `checked_add`.
        self.base + self.len
    }

    /// Whether `addr` lies in the range.
    pub fn contains(&self, addr: u64) -> bool {
        self.base <= addr && addr < self.end()
    }

    /// Whether the two ranges share at least one address.
    pub fn overlaps(&self, other: &BusRange) -> bool {
        self.base < other.end() && other.base < self.end()
    }
}

impl fmt::Display for BusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..{:#x}", self.base, self.end())
    }
}

/// Why a range could not be inserted or an access could not be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// A range of length 0.
    #[error("empty range at {base:#x}")]
    EmptyRange {
        /// The base of the refused range.
        base: u64,
    },
    /// A range whose end does not fit in 64 bits.
    #[error("range at {base:#x} of length {len:#x} overflows the address space")]
    RangeOverflow {
        /// The base of the refused range.
        base: u64,
        /// The length of the refused range.
        len: u64,
    },
    /// A range that shares addresses with one already on the bus.
    #[error("range {new} overlaps {existing}")]
    Overlap {
        /// The refused range.
        new: BusRange,
        /// The range already on the bus.
        existing: BusRange,
    },
    /// An access that starts where no device is.
    #[error("no device at {addr:#x} for a {len}-byte access")]
    Unmapped {
        /// The guest address of the access.
        addr: u64,
        /// The size of the access in bytes.
        len: usize,
    },
    /// An access that starts inside a device's range and ends past it.
    #[error("{len}-byte access at {addr:#x} runs past the end of {range}")]
    Straddle {
        /// The guest address of the access.
        addr: u64,
        /// The size of the access in bytes.
        len: usize,
        /// The range of the device the access starts in.
        range: BusRange,
    },
    /// The device's lock is poisoned: it panicked during an earlier access.
    #[error("device at {range} panicked during an earlier access")]
    Poisoned {
        /// The range of the device.
        range: BusRange,
    },
}

struct Slot {
    range: BusRange,
    device: Arc<Mutex<dyn BusDevice>>,
}

/// Address ranges, each owned by one device.
///
/// Inserting takes `&mut self`; accesses take `&self`, so a finished bus can
/// be shared by the vCPU threads behind an `Arc` with no lock of its own.
/// Each device has its own `Mutex`, taken for the length of one access.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use devices::{Bus, BusDevice, BusError};
///
/// struct Zeroes;
/// impl BusDevice for Zeroes {
///     fn read(&mut self, _offset: u64, data: &mut [u8]) {
///         data.fill(0);
///     }
/// }
///
/// let mut bus = Bus::new();
/// bus.insert(Arc::new(Mutex::new(Zeroes)), 0x80, 1)?;
/// let mut byte = [0xaa];
/// bus.read(0x80, &mut byte)?;
/// assert_eq!(byte, [0]);
/// assert_eq!(bus.read(0x81, &mut byte), Err(BusError::Unmapped { addr: 0x81, len: 1 }));
/// # Ok::<(), BusError>(())
/// ```
#[derive(Default)]
pub struct Bus {
    /// Keyed by `range.base`; the ranges never overlap.
    slots: BTreeMap<u64, Slot>,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.slots.values().map(|slot| slot.range))
            .finish()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives `device` the addresses `base..base + len`.
    ///
    /// Fails if the range is empty, overflows, or overlaps a range already
    /// on the bus (the error names both).
    pub fn insert(
        &mut self,
        device: Arc<Mutex<dyn BusDevice>>,
        base: u64,
        len: u64,
    ) -> Result<(), BusError> {
        let range = BusRange::new(base, len)?;
        // Ranges on the bus are disjoint, so only two can overlap the new
        // one's start: the last one starting at or before it, and the first
        // one starting after it.
        let before = self.slots.range(..=base).next_back();
        let after = self.slots.range(base..).next();
        for (_, slot) in before.into_iter().chain(after) {
            if slot.range.overlaps(&range) {
                return Err(BusError::Overlap {
                    new: range,
                    existing: slot.range,
                });
            }
        }
        self.slots.insert(base, Slot { range, device });
        Ok(())
    }

    /// The ranges on the bus, lowest first.
    pub fn ranges(&self) -> impl Iterator<Item = BusRange> + '_ {
        self.slots.values().map(|slot| slot.range)
    }

    /// Reads `data.len()` bytes at guest address `addr` from the device that
    /// owns it.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> Result<(), BusError> {
        let (slot, offset) = self.resolve(addr, data.len())?;
        let mut device = slot
            .device
            .lock()
            .map_err(|_| BusError::Poisoned { range: slot.range })?;
        device.read(offset, data);
        Ok(())
    }

    /// Writes `data` at guest address `addr` to the device that owns it, and
    /// returns what the device asks of the run loop.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<DeviceAction, BusError> {
        let (slot, offset) = self.resolve(addr, data.len())?;
        let mut device = slot
            .device
            .lock()
            .map_err(|_| BusError::Poisoned { range: slot.range })?;
        Ok(device.write(offset, data))
    }

    /// Finds the slot that holds the whole access and the offset into it.
    fn resolve(&self, addr: u64, len: usize) -> Result<(&Slot, u64), BusError> {
        let slot = self
            .slots
            .range(..=addr)
            .next_back()
            .map(|(_, slot)| slot)
            .filter(|slot| slot.range.contains(addr))
            .ok_or(BusError::Unmapped { addr, len })?;
        // Cannot underflow: `contains` checked `base <= addr`.
        let offset = addr - slot.range.base();
        let fits = u64::try_from(len)
            .ok()
            .and_then(|len| offset.checked_add(len))
            .is_some_and(|end| end <= slot.range.len());
        if !fits {
            return Err(BusError::Straddle {
                addr,
                len,
                range: slot.range,
            });
        }
        Ok((slot, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the last access and answers reads with `id` bytes.
    #[derive(Default)]
    struct Probe {
        id: u8,
        last: Option<(u64, Vec<u8>)>,
        action: Option<DeviceAction>,
    }

    impl BusDevice for Probe {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            self.last = Some((offset, data.to_vec()));
            data.fill(self.id);
        }

        fn write(&mut self, offset: u64, data: &[u8]) -> DeviceAction {
            self.last = Some((offset, data.to_vec()));
            self.action.unwrap_or(DeviceAction::None)
        }
    }

    fn probe(id: u8) -> Arc<Mutex<Probe>> {
        Arc::new(Mutex::new(Probe {
            id,
            ..Probe::default()
        }))
    }

    fn last(p: &Arc<Mutex<Probe>>) -> Option<(u64, Vec<u8>)> {
        p.lock().expect("test probe never panics").last.clone()
    }

    #[test]
    fn range_rejects_zero_length() {
        assert_eq!(
            BusRange::new(0x10, 0),
            Err(BusError::EmptyRange { base: 0x10 })
        );
    }

    #[test]
    fn range_rejects_overflow() {
        assert_eq!(
            BusRange::new(u64::MAX, 1),
            Err(BusError::RangeOverflow {
                base: u64::MAX,
                len: 1
            })
        );
        assert!(BusRange::new(1, u64::MAX).is_err());
        let top = BusRange::new(u64::MAX - 1, 1).expect("ends at u64::MAX");
        assert_eq!(top.end(), u64::MAX);
        assert!(top.contains(u64::MAX - 1));
        assert!(!top.contains(u64::MAX));
    }

    #[test]
    fn range_display_is_hex() {
        let r = BusRange::new(0x3f8, 8).expect("valid");
        assert_eq!(r.to_string(), "0x3f8..0x400");
    }

    #[test]
    fn insert_rejects_empty_and_overflowing_ranges() {
        let mut bus = Bus::new();
        assert_eq!(
            bus.insert(probe(1), 0x10, 0),
            Err(BusError::EmptyRange { base: 0x10 })
        );
        assert!(matches!(
            bus.insert(probe(1), u64::MAX, 2),
            Err(BusError::RangeOverflow { .. })
        ));
        assert_eq!(bus.ranges().count(), 0);
    }

    #[test]
    fn overlap_error_names_both_ranges() {
        let mut bus = Bus::new();
        bus.insert(probe(1), 0x3f8, 8).expect("empty bus");
        let err = bus.insert(probe(2), 0x3f0, 9).expect_err("overlaps");
        assert_eq!(err.to_string(), "range 0x3f0..0x3f9 overlaps 0x3f8..0x400");
        let err = bus.insert(probe(2), 0x3ff, 4).expect_err("overlaps");
        assert_eq!(err.to_string(), "range 0x3ff..0x403 overlaps 0x3f8..0x400");
    }

    #[test]
    fn insert_rejects_every_kind_of_overlap() {
        let mut bus = Bus::new();
        bus.insert(probe(1), 0x100, 0x10).expect("empty bus");
        for (base, len) in [
            (0x100, 0x10), // same
            (0x104, 0x4),  // inside
            (0xf0, 0x100), // around
            (0xff, 0x2),   // over the start
            (0x10f, 0x1),  // last address
        ] {
            let err = bus.insert(probe(2), base, len).expect_err("overlaps");
            assert!(
                matches!(err, BusError::Overlap { existing, .. } if existing.base() == 0x100),
                "{base:#x}+{len:#x}: {err}"
            );
        }
        // Touching ranges do not overlap.
        bus.insert(probe(2), 0xf0, 0x10)
            .expect("ends where the other starts");
        bus.insert(probe(3), 0x110, 0x10)
            .expect("starts where the other ends");
        let ranges: Vec<_> = bus.ranges().map(|r| (r.base(), r.len())).collect();
        assert_eq!(ranges, [(0xf0, 0x10), (0x100, 0x10), (0x110, 0x10)]);
    }

    #[test]
    fn unmapped_access_is_an_error() {
        let mut bus = Bus::new();
        bus.insert(probe(1), 0x60, 1).expect("empty bus");
        let mut data = [0u8; 2];
        assert_eq!(
            bus.read(0x61, &mut data),
            Err(BusError::Unmapped { addr: 0x61, len: 2 })
        );
        assert_eq!(
            bus.write(0x5f, &[1]),
            Err(BusError::Unmapped { addr: 0x5f, len: 1 })
        );
        assert_eq!(
            Bus::new().read(0, &mut data),
            Err(BusError::Unmapped { addr: 0, len: 2 })
        );
        assert_eq!(
            bus.write(u64::MAX, &[1]),
            Err(BusError::Unmapped {
                addr: u64::MAX,
                len: 1
            })
        );
    }

    #[test]
    fn dispatches_to_the_right_device_with_its_offset() {
        let mut bus = Bus::new();
        let (a, b, c) = (probe(0xa), probe(0xb), probe(0xc));
        bus.insert(a.clone(), 0x3f8, 8).expect("free");
        bus.insert(b.clone(), 0x400, 4).expect("free");
        bus.insert(c.clone(), 0x2f8, 8).expect("free");

        let mut data = [0u8; 2];
        bus.read(0x402, &mut data).expect("in b");
        assert_eq!(data, [0xb, 0xb]);
        assert_eq!(last(&b), Some((2, vec![0, 0])));
        assert_eq!(last(&a), None);

        assert_eq!(bus.write(0x3ff, &[7]), Ok(DeviceAction::None));
        assert_eq!(last(&a), Some((7, vec![7])));

        bus.read(0x2f8, &mut data[..1]).expect("in c");
        assert_eq!(last(&c), Some((0, vec![0xb])));
    }

    #[test]
    fn write_returns_the_device_action() {
        let mut bus = Bus::new();
        let p = probe(1);
        p.lock().expect("fresh").action = Some(DeviceAction::Exit(3));
        bus.insert(p, 0x501, 1).expect("empty bus");
        assert_eq!(bus.write(0x501, &[3]), Ok(DeviceAction::Exit(3)));
    }

    #[test]
    fn access_past_a_device_end_is_refused() {
        let mut bus = Bus::new();
        let (a, b) = (probe(1), probe(2));
        bus.insert(a.clone(), 0x10, 4).expect("free");
        bus.insert(b.clone(), 0x14, 4).expect("free");
        let mut data = [0u8; 4];
        let err = bus.read(0x12, &mut data).expect_err("straddles");
        assert_eq!(
            err,
            BusError::Straddle {
                addr: 0x12,
                len: 4,
                range: BusRange::new(0x10, 4).expect("valid")
            }
        );
        assert_eq!(
            err.to_string(),
            "4-byte access at 0x12 runs past the end of 0x10..0x14"
        );
        assert!(bus.write(0x13, &[0; 2]).is_err());
        // Neither device saw the refused accesses.
        assert_eq!(last(&a), None);
        assert_eq!(last(&b), None);
        // A huge access at the very top of the address space does not overflow.
        let mut bus = Bus::new();
        bus.insert(probe(3), u64::MAX - 1, 1).expect("free");
        assert!(matches!(
            bus.write(u64::MAX - 1, &[0; 8]),
            Err(BusError::Straddle { .. })
        ));
    }

    #[test]
    fn zero_length_access_reaches_the_device() {
        let mut bus = Bus::new();
        let p = probe(1);
        bus.insert(p.clone(), 0x20, 2).expect("free");
        bus.read(0x21, &mut []).expect("inside");
        assert_eq!(last(&p), Some((1, vec![])));
        assert_eq!(
            bus.write(0x22, &[]),
            Err(BusError::Unmapped { addr: 0x22, len: 0 })
        );
    }

    #[test]
    fn poisoned_device_is_an_error_not_a_panic() {
        struct Panics;
        impl BusDevice for Panics {
            fn read(&mut self, _offset: u64, _data: &mut [u8]) {
                panic!("device bug");
            }
        }
        let mut bus = Bus::new();
        bus.insert(Arc::new(Mutex::new(Panics)), 0x70, 2)
            .expect("empty bus");
        let bus = Arc::new(bus);
        let shared = Arc::clone(&bus);
        let joined = std::thread::spawn(move || {
            let mut data = [0u8; 1];
            let _ = shared.read(0x70, &mut data);
        })
        .join();
        assert!(joined.is_err(), "the device panicked");
        assert_eq!(
            bus.write(0x71, &[0]),
            Err(BusError::Poisoned {
                range: BusRange::new(0x70, 2).expect("valid")
            })
        );
    }

    #[test]
    fn debug_lists_the_ranges() {
        let mut bus = Bus::new();
        bus.insert(probe(1), 0x60, 5).expect("free");
        assert_eq!(format!("{bus:?}"), "[BusRange { base: 96, len: 5 }]");
    }
}
