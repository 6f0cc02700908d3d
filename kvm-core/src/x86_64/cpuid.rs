//! The CPUID a vCPU shows its guest: what KVM supports on this host, with
//! the per-vCPU facts a CPU would report (APIC id, how many logical CPUs
//! share the package) and the bits a VMM is expected to set.
//!
//! Linux takes the CPU list from the MADT, but still reads topology and the
//! APIC id from CPUID; a vCPU that claimed the host's topology would make the
//! guest believe it has the host's cores.

use kvm_bindings::{CpuId, kvm_cpuid_entry2};

/// Leaf 1 ECX: TSC-deadline mode of the LAPIC timer (KVM emulates it; Linux
/// then needs no timer calibration against a PIT the VM does not have).
const LEAF1_ECX_TSC_DEADLINE: u32 = 1 << 24;
/// Leaf 1 ECX: running under a hypervisor.
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EDX: the package has more than one logical processor.
const LEAF1_EDX_HTT: u32 = 1 << 28;
/// Leaf 1 EBX bits 15:8: CLFLUSH line size in 8-byte units (64 bytes).
const LEAF1_EBX_CLFLUSH_64: u32 = 8 << 8;

/// Leaf 0xB / 0x1F level types.
const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

/// Bits needed to number `count` things (the APIC-id shift of a topology level).
fn id_bits(count: u32) -> u32 {
    u32::BITS - count.saturating_sub(1).leading_zeros()
}

/// Rewrites `cpuid` (as returned by `KVM_GET_SUPPORTED_CPUID`) for vCPU
/// `apic_id` of a VM with `vcpus` vCPUs, one core each, in one package.
pub fn normalize(cpuid: &mut CpuId, apic_id: u8, vcpus: u8) {
    let id = u32::from(apic_id);
    let count = u32::from(vcpus.max(1));
    for entry in cpuid.as_mut_slice() {
        normalize_entry(entry, id, count);
    }
}

fn normalize_entry(entry: &mut kvm_cpuid_entry2, apic_id: u32, vcpus: u32) {
    match entry.function {
        0x1 => {
            entry.ebx = (apic_id << 24) | (vcpus.min(255) << 16) | LEAF1_EBX_CLFLUSH_64;
            entry.ecx |= LEAF1_ECX_HYPERVISOR | LEAF1_ECX_TSC_DEADLINE;
            if vcpus > 1 {
                entry.edx |= LEAF1_EDX_HTT;
            } else {
                entry.edx &= !LEAF1_EDX_HTT;
            }
        }
        // Deterministic cache parameters: EAX 31:26 = cores per package - 1,
        // 25:14 = logical CPUs sharing this cache - 1 (each core is private
        // up to L2; L3 is shared by the package).
        0x4 if entry.eax & 0x1f != 0 => {
            let level = (entry.eax >> 5) & 0x7;
            let sharing = if level >= 3 { vcpus - 1 } else { 0 };
            entry.eax = (entry.eax & 0x3fff) | ((vcpus - 1) << 26) | (sharing << 14);
        }
        // Extended topology: level 0 threads (one per core), level 1 cores.
        0xb | 0x1f => {
            let (shift, logical, level_type) = match entry.index {
                0 => (0, 1, LEVEL_TYPE_SMT),
                1 => (id_bits(vcpus), vcpus, LEVEL_TYPE_CORE),
                _ => (0, 0, 0),
            };
            entry.eax = shift;
            entry.ebx = logical;
            entry.ecx = (level_type << 8) | (entry.index & 0xff);
            entry.edx = apic_id;
        }
        // AMD: ECX 7:0 = cores in the package - 1, 15:12 = APIC-id bits for them.
        0x8000_0008 => {
            entry.ecx = (id_bits(vcpus) << 12) | (vcpus - 1);
        }
        // AMD extended APIC id and one core per compute unit.
        0x8000_001e => {
            entry.eax = apic_id;
            entry.ebx = apic_id & 0xff;
            entry.ecx = 0;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ..Default::default()
        }
    }

    fn normalized(mut entry: kvm_cpuid_entry2, apic_id: u32, vcpus: u32) -> kvm_cpuid_entry2 {
        normalize_entry(&mut entry, apic_id, vcpus);
        entry
    }

    #[test]
    fn leaf_1_reports_the_apic_id_the_count_and_the_hypervisor() {
        let mut host = leaf(1, 0);
        host.ebx = 0x0520_0800; // host APIC id 5, 32 logical CPUs
        host.edx = LEAF1_EDX_HTT;
        let one = normalized(host, 0, 1);
        assert_eq!(one.ebx, (1 << 16) | LEAF1_EBX_CLFLUSH_64);
        assert_eq!(one.edx & LEAF1_EDX_HTT, 0);
        assert_ne!(one.ecx & LEAF1_ECX_HYPERVISOR, 0);
        assert_ne!(one.ecx & LEAF1_ECX_TSC_DEADLINE, 0);
        let second_of_two = normalized(host, 1, 2);
        assert_eq!(second_of_two.ebx >> 24, 1);
        assert_eq!((second_of_two.ebx >> 16) & 0xff, 2);
        assert_ne!(second_of_two.edx & LEAF1_EDX_HTT, 0);
    }

    #[test]
    fn extended_topology_has_one_thread_per_core_and_n_cores() {
        let smt = normalized(leaf(0xb, 0), 2, 3);
        assert_eq!((smt.eax, smt.ebx, smt.ecx >> 8, smt.edx), (0, 1, 1, 2));
        let core = normalized(leaf(0xb, 1), 2, 3);
        assert_eq!(
            (core.eax, core.ebx, core.ecx >> 8, core.ecx & 0xff),
            (2, 3, 2, 1)
        );
        let end = normalized(leaf(0xb, 2), 2, 3);
        assert_eq!((end.ebx, end.ecx >> 8), (0, 0));
    }

    #[test]
    fn amd_core_count() {
        assert_eq!(normalized(leaf(0x8000_0008, 0), 0, 4).ecx, (2 << 12) | 3);
        assert_eq!(normalized(leaf(0x8000_0008, 0), 0, 1).ecx, 0);
    }

    #[test]
    fn id_bits_round_up() {
        assert_eq!([1, 2, 3, 4, 5, 8, 9].map(id_bits), [0, 1, 2, 2, 3, 3, 4]);
    }
}
