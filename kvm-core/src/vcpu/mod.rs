//! vCPUs: register setup ([`Vcpu`]), exit dispatch ([`handle_exit`]) and
//! the vCPU thread's run loop ([`run`], and the threads a
//! [`crate::Machine`] starts).

mod exit;
mod thread;

use kvm_bindings::{
    KVM_MP_STATE_HALTED, KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_UNINITIALIZED, kvm_regs,
};
use kvm_ioctls::VcpuFd;

pub use exit::{ExitAction, IoHandler, handle_exit};
pub use thread::run;
pub(crate) use thread::{VcpuThread, Wake, all_stopped, finish_all, pause_all};

use crate::memory::GuestMemory;
use crate::{Error, Result};

/// A vCPU of a [`crate::Vm`].
#[derive(Debug)]
pub struct Vcpu {
    fd: VcpuFd,
    id: u8,
    /// Keeps the mappings behind the memslots alive while this vCPU can run,
    /// even if the `Vm` is dropped first.
    _memory: GuestMemory,
}

impl Vcpu {
    pub(crate) fn new(id: u8, fd: VcpuFd, memory: GuestMemory) -> Vcpu {
        Vcpu {
            fd,
            id,
            _memory: memory,
        }
    }

    /// The vCPU's id (its initial APIC id).
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The vCPU file descriptor, for ioctls kvm-core does not wrap yet.
    pub fn fd(&self) -> &VcpuFd {
        &self.fd
    }

    /// The vCPU file descriptor, mutably (`KVM_RUN` needs it).
    pub fn fd_mut(&mut self) -> &mut VcpuFd {
        &mut self.fd
    }

    /// Whether the vCPU is stopped until another CPU wakes it: halted with
    /// interrupts off (`KVM_GET_MP_STATE` says `KVM_MP_STATE_HALTED` and
    /// `rflags.IF` is clear: only an NMI, INIT or SMI wakes it), or an AP still
    /// waiting for its INIT/SIPI. Linux's `machine_halt` (`halt -f`) leaves every
    /// CPU halted so (`stop_this_cpu`), and with the in-kernel LAPIC such a `hlt`
    /// never exits to user space (Firecracker #1601): when every vCPU is
    /// stopped, nothing can wake the guest. Only meaningful between two
    /// `KVM_RUN`s.
    pub fn stopped(&self) -> Result<bool> {
        const RFLAGS_IF: u64 = 1 << 9;
        let mp_state = self.fd.get_mp_state().map_err(|source| Error::Ioctl {
            ioctl: "KVM_GET_MP_STATE",
            source,
        })?;
        match mp_state.mp_state {
            KVM_MP_STATE_UNINITIALIZED | KVM_MP_STATE_INIT_RECEIVED => Ok(true),
            KVM_MP_STATE_HALTED => {
                let regs = self.fd.get_regs().map_err(|source| Error::Ioctl {
                    ioctl: "KVM_GET_REGS",
                    source,
                })?;
                Ok(regs.rflags & RFLAGS_IF == 0)
            }
            _ => Ok(false),
        }
    }

    /// Sets up 16-bit real mode starting at guest-physical `entry` (below 1 MiB).
    ///
    /// `cs` gets selector `entry >> 4` and base `selector << 4`, `ip` the low
    /// 4 bits, `rflags` 0x2 (bit 1 is reserved, always set; interrupts off).
    /// The other segments keep KVM's reset state (selector 0, base 0, limit
    /// 0xffff), so `ds:0` is guest-physical 0.
    pub fn setup_real_mode(&self, entry: u64) -> Result<()> {
        let selector = u16::try_from(entry >> 4).map_err(|_| Error::RealModeEntry(entry))?;
        let mut sregs = self.fd.get_sregs().map_err(|source| Error::Ioctl {
            ioctl: "KVM_GET_SREGS",
            source,
        })?;
        sregs.cs.selector = selector;
        sregs.cs.base = u64::from(selector) << 4;
        self.fd.set_sregs(&sregs).map_err(|source| Error::Ioctl {
            ioctl: "KVM_SET_SREGS",
            source,
        })?;
        let regs = kvm_regs {
            rip: entry & 0xf,
            rflags: 0x2,
            ..Default::default()
        };
        self.fd.set_regs(&regs).map_err(|source| Error::Ioctl {
            ioctl: "KVM_SET_REGS",
            source,
        })
    }
}
