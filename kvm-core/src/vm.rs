//! The VM: `/dev/kvm`, the VM file descriptor, guest memory and its memslots.

use kvm_bindings::{CpuId, KVM_PIT_SPEAKER_DUMMY, kvm_pit_config};
use kvm_ioctls::{Kvm, VmFd};

use crate::memory::{self, GuestMemory, MemoryBacking};
use crate::vcpu::Vcpu;
use crate::{Error, Result};

/// Guest-physical address of the three pages Intel VMX needs for real-mode
/// emulation (`KVM_SET_TSS_ADDR`); just below the 4 GiB BIOS area, as in
/// Firecracker. It must not overlap RAM or MMIO.
const TSS_ADDRESS: usize = 0xfffb_d000;

/// A KVM VM with its guest memory registered as memslots.
///
/// Field order is drop order: the VM fd is closed before the memory is
/// unmapped. vCPUs hold their own clone of the memory, so the mappings live
/// until the last vCPU is gone too.
#[derive(Debug)]
pub struct Vm {
    fd: VmFd,
    memory: GuestMemory,
    kvm: Kvm,
}

impl Vm {
    /// Opens `/dev/kvm`, creates a VM and `mem_size` bytes of private RAM at guest-physical 0.
    pub fn new(mem_size: usize) -> Result<Vm> {
        Vm::with_memory(mem_size, MemoryBacking::Private)
    }

    /// [`Vm::new`] with the RAM backed as `backing` says.
    pub fn with_memory(mem_size: usize, backing: MemoryBacking) -> Result<Vm> {
        let kvm = Kvm::new().map_err(Error::OpenKvm)?;
        let fd = kvm.create_vm().map_err(|source| Error::Ioctl {
            ioctl: "KVM_CREATE_VM",
            source,
        })?;
        fd.set_tss_address(TSS_ADDRESS)
            .map_err(|source| Error::Ioctl {
                ioctl: "KVM_SET_TSS_ADDR",
                source,
            })?;
        let memory = memory::create_guest_memory_backed(mem_size, backing)?;
        // SAFETY: `memory` is stored in the returned `Vm`, which drops `fd`
        // first, and every `Vcpu` keeps a clone of it: the mappings outlive
        // every KVM object that can touch them.
        unsafe { memory::register_memslots(&fd, &memory) }?;
        Ok(Vm { fd, memory, kvm })
    }

    /// The guest's memory.
    pub fn memory(&self) -> &GuestMemory {
        &self.memory
    }

    /// The VM file descriptor, for ioctls kvm-core does not wrap yet.
    pub fn fd(&self) -> &VmFd {
        &self.fd
    }

    /// Copies `bytes` into guest RAM at guest-physical `addr`.
    pub fn write_memory(&self, addr: u64, bytes: &[u8]) -> Result<()> {
        memory::write_bytes(&self.memory, addr, bytes)
    }

    /// Creates the in-kernel interrupt controllers (PIC, IOAPIC, a LAPIC per
    /// vCPU) and the PIT. Call before creating vCPUs.
    pub fn create_irqchip(&self) -> Result<()> {
        self.fd.create_irq_chip().map_err(|source| Error::Ioctl {
            ioctl: "KVM_CREATE_IRQCHIP",
            source,
        })?;
        // The PIT is there for guests that calibrate against it; the
        // speaker port is emulated as a dummy so probing it stays in KVM.
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        self.fd.create_pit2(pit).map_err(|source| Error::Ioctl {
            ioctl: "KVM_CREATE_PIT2",
            source,
        })
    }

    /// The CPUID leaves this host's KVM can offer a guest.
    pub fn supported_cpuid(&self, max_entries: usize) -> Result<CpuId> {
        self.kvm
            .get_supported_cpuid(max_entries)
            .map_err(|source| Error::Ioctl {
                ioctl: "KVM_GET_SUPPORTED_CPUID",
                source,
            })
    }

    /// Creates vCPU `id`, in KVM's reset state until set up.
    pub fn create_vcpu(&self, id: u8) -> Result<Vcpu> {
        let fd = self
            .fd
            .create_vcpu(u64::from(id))
            .map_err(|source| Error::Ioctl {
                ioctl: "KVM_CREATE_VCPU",
                source,
            })?;
        Ok(Vcpu::new(id, fd, self.memory.clone()))
    }
}
