//! vCPUs: register setup ([`Vcpu`]), exit dispatch ([`handle_exit`]) and
//! the vCPU thread's run loop ([`run`], and the threads a
//! [`crate::Machine`] starts).

mod exit;
mod thread;

use kvm_bindings::kvm_regs;
use kvm_ioctls::VcpuFd;

pub use exit::{ExitAction, IoHandler, handle_exit};
pub use thread::run;
pub(crate) use thread::{VcpuThread, Wake, finish_all, pause_all};

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
