//! The guest's memory map (e820), as the zero page carries it and the PVH
//! start info's memory map repeats it.

use linux_loader::loader::bootparam::boot_e820_entry;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use crate::memory::GuestMemory;
use crate::x86_64::layout::{EBDA_START, HIMEM_START};

/// `boot_e820_entry.type`: usable RAM.
pub(super) const E820_RAM: u32 = 1;
/// `boot_e820_entry.type`: reserved (the BIOS area, where the ACPI tables are).
pub(super) const E820_RESERVED: u32 = 2;

/// The e820 map: RAM below the EBDA, the reserved BIOS area (where the
/// ACPI tables are), then every RAM region from 1 MiB up.
pub(super) fn e820_map(memory: &GuestMemory) -> Vec<boot_e820_entry> {
    let entry = |addr: u64, size: u64, kind: u32| boot_e820_entry {
        addr,
        size,
        r#type: kind,
    };
    let mut map = vec![
        entry(0, EBDA_START, E820_RAM),
        entry(EBDA_START, HIMEM_START - EBDA_START, E820_RESERVED),
    ];
    for region in memory.iter() {
        let start = region.start_addr().0.max(HIMEM_START);
        let end = region.start_addr().0 + region.len();
        if end > start {
            map.push(entry(start, end - start, E820_RAM));
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::create_guest_memory;

    #[test]
    fn e820_covers_ram_around_the_hole() {
        let memory = create_guest_memory(3200 << 20).expect("map");
        let map: Vec<(u64, u64, u32)> = e820_map(&memory)
            .iter()
            .map(|e| (e.addr, e.size, e.r#type))
            .collect();
        assert_eq!(
            map,
            [
                (0, 0x9fc00, E820_RAM),
                (0x9fc00, 0x60400, E820_RESERVED),
                (0x10_0000, 0xc000_0000 - 0x10_0000, E820_RAM),
                (0x1_0000_0000, (3200 << 20) - 0xc000_0000, E820_RAM),
            ]
        );
    }
}
