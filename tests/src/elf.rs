//! Tiny static x86_64 ELF executables written by hand, for probing the kernel from inside a
//! container without any library (the busybox image has no applet for most syscalls).

/// An ELF64 executable whose whole text is `code`, loaded at 0x400000.
pub fn executable(code: &[u8]) -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    let total = HEADERS + code.len() as u64;
    let mut elf = Vec::with_capacity(total as usize);
    // ELF header: 64-bit, little endian, version 1, System V ABI.
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    elf.extend_from_slice(&[0; 8]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // program headers follow this header
    elf.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, 1, 64, 0, 0] {
        elf.extend_from_slice(&v.to_le_bytes());
    }
    // One PT_LOAD of the whole file, readable and executable.
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&5u32.to_le_bytes());
    elf.extend_from_slice(&0u64.to_le_bytes());
    elf.extend_from_slice(&BASE.to_le_bytes());
    elf.extend_from_slice(&BASE.to_le_bytes());
    elf.extend_from_slice(&total.to_le_bytes());
    elf.extend_from_slice(&total.to_le_bytes());
    elf.extend_from_slice(&0x1000u64.to_le_bytes());
    elf.extend_from_slice(code);
    elf
}

/// Calls `keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)`, a syscall Docker's
/// default seccomp profile denies, and exits 1 if it failed with EPERM, else 0.
pub fn keyctl_probe() -> Vec<u8> {
    executable(&[
        0xb8, 0xfa, 0x00, 0x00, 0x00, // mov eax, 250 (keyctl)
        0x31, 0xff, // xor edi, edi (KEYCTL_GET_KEYRING_ID)
        0xbe, 0xfd, 0xff, 0xff, 0xff, // mov esi, -3 (KEY_SPEC_SESSION_KEYRING)
        0x31, 0xd2, // xor edx, edx
        0x0f, 0x05, // syscall
        0xf7, 0xd8, // neg eax: errno on failure
        0x89, 0xc7, // mov edi, eax
        0x83, 0xf8, 0x01, // cmp eax, 1 (EPERM)
        0x74, 0x02, // je exit
        0x31, 0xff, // xor edi, edi
        0xb8, 0x3c, 0x00, 0x00, 0x00, // exit: mov eax, 60 (exit)
        0x0f, 0x05, // syscall
    ])
}
