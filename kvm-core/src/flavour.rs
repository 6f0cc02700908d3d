//! The host's KVM flavour, read from `/sys/module`.
//!
//! Under PVM (`kvm_pvm`, software virtualization for hosts without VT-x or
//! AMD-V) real-mode and 32-bit guest code is emulated and runs, but a 64-bit
//! guest kernel must be built for PVM: a stock kernel hangs. capsule refuses
//! that case up front with [`require_stock_kernel_support`] instead of
//! letting the guest hang.

use std::path::Path;

use crate::{Error, Result};

/// Which KVM serves `/dev/kvm` on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvmFlavour {
    /// `kvm_intel` or `kvm_amd`: hardware virtualization, stock kernels boot.
    Hardware,
    /// `kvm_pvm`: software virtualization; only PVM-built guest kernels boot.
    Pvm,
    /// No KVM vendor module is present.
    None,
}

impl KvmFlavour {
    /// Whether a stock (non-PVM) 64-bit Linux guest kernel can boot here.
    pub fn boots_stock_kernels(self) -> bool {
        self == KvmFlavour::Hardware
    }

    /// The sentence capsule prints when it refuses to boot a stock kernel.
    pub fn stock_kernel_refusal(self) -> &'static str {
        match self {
            KvmFlavour::Hardware => {
                "KVM is hardware-backed (kvm_intel or kvm_amd): stock kernels boot"
            }
            KvmFlavour::Pvm => {
                "this host's KVM is PVM (kvm_pvm: software virtualization for hosts without \
                 VT-x/AMD-V), under which a stock 64-bit guest kernel hangs; pass a PVM-built \
                 guest kernel with --kernel, or run stock kernels in the nested lab \
                 (cargo xtask lab)"
            }
            KvmFlavour::None => {
                "this host has no KVM: none of the kvm_intel, kvm_amd or kvm_pvm modules is \
                 loaded (modprobe kvm_intel or kvm_amd where the CPU has VT-x or AMD-V)"
            }
        }
    }
}

/// Detects the flavour from `/sys/module`.
pub fn detect_flavour() -> KvmFlavour {
    detect_flavour_in(Path::new("/sys/module"))
}

/// Detects the flavour from a `/sys/module`-shaped directory.
///
/// `kvm_pvm` wins when present: KVM accepts one vendor module at a time
/// (`kvm_x86_vendor_init` refuses a second), and a host that has loaded
/// `kvm_pvm` did so because hardware virtualization is missing.
pub fn detect_flavour_in(sys_module: &Path) -> KvmFlavour {
    if sys_module.join("kvm_pvm").exists() {
        KvmFlavour::Pvm
    } else if sys_module.join("kvm_intel").exists() || sys_module.join("kvm_amd").exists() {
        KvmFlavour::Hardware
    } else {
        KvmFlavour::None
    }
}

/// `Ok` when a stock guest kernel can boot on `flavour`, else
/// [`Error::NoStockKernel`] whose message says why.
pub fn require_stock_kernel_support(flavour: KvmFlavour) -> Result<()> {
    if flavour.boots_stock_kernels() {
        Ok(())
    } else {
        Err(Error::NoStockKernel(flavour))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys_module_with(modules: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        for module in modules {
            std::fs::create_dir(dir.path().join(module)).expect("create a module directory");
        }
        dir
    }

    #[test]
    fn kvm_intel_and_kvm_amd_are_hardware() {
        for module in ["kvm_intel", "kvm_amd"] {
            let dir = sys_module_with(&["kvm", module]);
            assert_eq!(detect_flavour_in(dir.path()), KvmFlavour::Hardware);
        }
    }

    #[test]
    fn kvm_pvm_is_pvm_even_beside_a_hardware_module() {
        let dir = sys_module_with(&["kvm", "kvm_pvm"]);
        assert_eq!(detect_flavour_in(dir.path()), KvmFlavour::Pvm);
        let dir = sys_module_with(&["kvm", "kvm_pvm", "kvm_intel"]);
        assert_eq!(detect_flavour_in(dir.path()), KvmFlavour::Pvm);
    }

    #[test]
    fn kvm_alone_is_none() {
        let dir = sys_module_with(&["kvm"]);
        assert_eq!(detect_flavour_in(dir.path()), KvmFlavour::None);
    }

    #[test]
    fn pvm_refuses_stock_kernels_and_says_why() {
        assert!(require_stock_kernel_support(KvmFlavour::Hardware).is_ok());
        let err = require_stock_kernel_support(KvmFlavour::Pvm).expect_err("pvm must refuse");
        let message = err.to_string();
        assert!(message.contains("pvm"), "{message}");
        assert!(
            message.contains("stock 64-bit guest kernel hangs"),
            "{message}"
        );
        assert!(matches!(
            require_stock_kernel_support(KvmFlavour::None),
            Err(Error::NoStockKernel(KvmFlavour::None))
        ));
    }
}
