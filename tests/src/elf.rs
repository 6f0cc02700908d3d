//! Tiny static x86_64 ELF images written by hand: executables that probe the kernel from
//! inside a container without any library (the busybox image has no applet for most
//! syscalls), and the stand-in kernels kvm-core's tests boot.

/// An ELF64 executable whose whole text is `code`, loaded at 0x400000.
pub fn executable(code: &[u8]) -> Vec<u8> {
    image(0x40_0000, HEADERS, code, false)
}

/// The ELF header and one program header: where a code that follows them right away starts.
const HEADERS: usize = 64 + 56;

/// An ELF64 x86_64 `ET_EXEC` image: one readable, executable `PT_LOAD` segment holding the
/// whole file at address `load`, with `code` at file offset `code_at` (at least the headers'
/// size), which is the entry point. With `pvh`, a `PT_NOTE` segment holds the Xen note
/// (`XEN_ELFNOTE_PHYS32_ENTRY`) naming the entry as the PVH 32-bit entry point, as a vmlinux
/// that boots through PVH has: the stand-in kernels of kvm-core's tests.
pub fn image(load: u64, code_at: usize, code: &[u8], pvh: bool) -> Vec<u8> {
    let entry = load + code_at as u64;
    let phnum: u16 = if pvh { 2 } else { 1 };
    let note_offset = 64 + 56 * u64::from(phnum);
    assert!(
        code_at as u64 >= note_offset + if pvh { 20 } else { 0 },
        "the code would overlap the headers"
    );
    // ELF header: 64-bit, little endian, version 1, System V ABI.
    let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&entry.to_le_bytes());
    elf.extend_from_slice(&64u64.to_le_bytes()); // program headers follow this header
    elf.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0u32.to_le_bytes());
    for field in [64u16, 56, phnum, 64, 0, 0] {
        elf.extend_from_slice(&field.to_le_bytes());
    }
    let total = (code_at + code.len()) as u64;
    let mut segment = |kind: u32, flags: u32, offset: u64, addr: u64, size: u64, align: u64| {
        elf.extend_from_slice(&kind.to_le_bytes());
        elf.extend_from_slice(&flags.to_le_bytes());
        elf.extend_from_slice(&offset.to_le_bytes());
        elf.extend_from_slice(&addr.to_le_bytes()); // vaddr
        elf.extend_from_slice(&addr.to_le_bytes()); // paddr
        elf.extend_from_slice(&size.to_le_bytes()); // filesz
        elf.extend_from_slice(&size.to_le_bytes()); // memsz
        elf.extend_from_slice(&align.to_le_bytes());
    };
    segment(1, 5, 0, load, total, 0x1000); // PT_LOAD, R+X
    if pvh {
        segment(4, 4, note_offset, 0, 20, 4); // PT_NOTE, R
        elf.extend_from_slice(&4u32.to_le_bytes()); // namesz
        elf.extend_from_slice(&4u32.to_le_bytes()); // descsz
        elf.extend_from_slice(&18u32.to_le_bytes()); // XEN_ELFNOTE_PHYS32_ENTRY
        elf.extend_from_slice(b"Xen\0");
        elf.extend_from_slice(&(entry as u32).to_le_bytes());
    }
    elf.resize(code_at, 0);
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
