//! What is wrong with a kernel file, said before it is loaded: a directory, an empty or
//! truncated image, a file that is neither a bzImage nor an ELF vmlinux. Without this a
//! truncated bzImage loads and then triple-faults in the guest, far from its cause.

use std::fs::File;
use std::io::Read;
use std::mem::size_of;
use std::path::Path;

use linux_loader::elf::{Elf64_Ehdr, Elf64_Phdr, PT_LOAD};
use vm_memory::ByteValued;

use crate::{Error, Result};

/// The two kernel formats capsule boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// A bzImage, booted through the Linux boot protocol's 64-bit entry.
    BzImage,
    /// An ELF vmlinux, booted through its PVH entry.
    Elf,
}

/// The setup header's `boot_flag`, `header` and `version`, `setup_sects` and `syssize`, at
/// their offsets in the file (`Documentation/arch/x86/boot.rst`).
const SETUP_SECTS: usize = 0x1f1;
const SYSSIZE: usize = 0x1f4;
const BOOT_FLAG: usize = 0x1fe;
const HEADER: usize = 0x202;
const VERSION: usize = 0x206;
/// 2.12: the first protocol with a 64-bit entry (`XLF_KERNEL_64`).
const MIN_VERSION: u16 = 0x020c;

/// Reads `kernel`'s headers and checks that the whole image is there.
///
/// Errors ([`Error::KernelFormat`] unless the file cannot be read, [`Error::File`]): a
/// directory or other non-regular file, a file that is neither an ELF (`\x7fELF`) nor a bzImage
/// (`HdrS` at 0x202, boot flag 0xaa55), a bzImage older than boot protocol 2.12, a 32-bit ELF,
/// and a file shorter than its headers say (the setup sectors plus `syssize`, or the end of
/// the last loadable ELF segment).
pub fn check_kernel(kernel: &Path) -> Result<KernelFormat> {
    let format_error = |reason: String| Error::KernelFormat {
        path: kernel.to_path_buf(),
        reason,
    };
    let metadata = std::fs::metadata(kernel).map_err(Error::file("kernel", kernel))?;
    if metadata.is_dir() {
        return Err(format_error(
            "it is a directory, not a kernel image (give the bzImage or vmlinux file)".into(),
        ));
    }
    if !metadata.is_file() {
        return Err(format_error("it is not a regular file".into()));
    }
    let len = metadata.len();
    let mut head = Vec::with_capacity(4096);
    File::open(kernel)
        .and_then(|file| file.take(4096).read_to_end(&mut head))
        .map_err(Error::file("kernel", kernel))?;
    if head.starts_with(b"\x7fELF") {
        check_elf(&head, len).map_err(format_error)?;
        return Ok(KernelFormat::Elf);
    }
    check_bzimage(&head, len).map_err(format_error)?;
    Ok(KernelFormat::BzImage)
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn check_bzimage(head: &[u8], len: u64) -> std::result::Result<(), String> {
    let not_a_kernel =
        || format!("it is neither a bzImage nor an ELF vmlinux ({len} bytes, no kernel header)");
    if u16_at(head, BOOT_FLAG) != Some(0xaa55) || u32_at(head, HEADER) != Some(0x5372_6448) {
        return Err(not_a_kernel());
    }
    let version = u16_at(head, VERSION).ok_or_else(not_a_kernel)?;
    if version < MIN_VERSION {
        return Err(format!(
            "its boot protocol is {}.{}; capsule needs 2.12 or later (a 64-bit entry)",
            version >> 8,
            version & 0xff
        ));
    }
    // setup_sects 0 means 4 (boot.rst); the boot sector itself is one more.
    let setup_sects = match head[SETUP_SECTS] {
        0 => 4,
        n => u64::from(n),
    };
    let syssize = u64::from(u32_at(head, SYSSIZE).ok_or_else(not_a_kernel)?);
    let expected = (setup_sects + 1) * 512 + syssize * 16;
    if len < expected {
        return Err(format!(
            "it is truncated: its header says {expected} bytes, the file has {len}"
        ));
    }
    Ok(())
}

fn check_elf(head: &[u8], len: u64) -> std::result::Result<(), String> {
    const ELFCLASS64: u8 = 2;
    if head.get(4) != Some(&ELFCLASS64) {
        return Err("it is a 32-bit ELF; capsule boots a 64-bit vmlinux".into());
    }
    let truncated =
        |at: u64| format!("it is truncated: its ELF headers reach byte {at}, the file has {len}");
    let header = Elf64_Ehdr::from_slice(
        head.get(..size_of::<Elf64_Ehdr>())
            .ok_or_else(|| truncated(size_of::<Elf64_Ehdr>() as u64))?,
    )
    .ok_or_else(|| "its ELF header is unreadable".to_string())?;
    let phentsize = usize::from(header.e_phentsize);
    if phentsize < size_of::<Elf64_Phdr>() {
        return Err(format!(
            "its ELF program header size {phentsize} is too small"
        ));
    }
    // The program headers follow the ELF header in every vmlinux; read them from the head we
    // have, else from the file.
    let table_end = header.e_phoff + u64::from(header.e_phnum) * phentsize as u64;
    if table_end > len {
        return Err(truncated(table_end));
    }
    let table = if table_end as usize <= head.len() {
        head[header.e_phoff as usize..table_end as usize].to_vec()
    } else {
        return Ok(()); // an unusual layout: linux-loader checks the rest while loading
    };
    let mut end = 0u64;
    for entry in table.chunks_exact(phentsize) {
        let Some(phdr) = Elf64_Phdr::from_slice(&entry[..size_of::<Elf64_Phdr>()]) else {
            continue;
        };
        if phdr.p_type == PT_LOAD {
            end = end.max(phdr.p_offset.saturating_add(phdr.p_filesz));
        }
    }
    if end > len {
        return Err(truncated(end));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bzimage_head(setup_sects: u8, syssize: u32, version: u16) -> Vec<u8> {
        let mut head = vec![0u8; 1024];
        head[SETUP_SECTS] = setup_sects;
        head[SYSSIZE..SYSSIZE + 4].copy_from_slice(&syssize.to_le_bytes());
        head[BOOT_FLAG..BOOT_FLAG + 2].copy_from_slice(&0xaa55u16.to_le_bytes());
        head[HEADER..HEADER + 4].copy_from_slice(b"HdrS");
        head[VERSION..VERSION + 2].copy_from_slice(&version.to_le_bytes());
        head
    }

    fn write(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join("kernel");
        std::fs::write(&path, bytes).expect("write");
        path
    }

    #[test]
    fn a_directory_an_empty_file_and_a_stranger_are_named_as_such() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = check_kernel(dir.path())
            .expect_err("a directory")
            .to_string();
        assert!(err.contains("is a directory"), "{err}");
        let err = check_kernel(&write(dir.path(), b""))
            .expect_err("empty")
            .to_string();
        assert!(err.contains("neither a bzImage nor an ELF"), "{err}");
        let err = check_kernel(&write(dir.path(), &[7; 5000]))
            .expect_err("noise")
            .to_string();
        assert!(err.contains("neither a bzImage nor an ELF"), "{err}");
        let err = check_kernel(&dir.path().join("absent"))
            .expect_err("absent")
            .to_string();
        assert!(err.contains("No such file"), "{err}");
    }

    #[test]
    fn a_truncated_bzimage_is_refused_and_a_whole_one_passes() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 2 setup sectors + the boot sector, then 100 paragraphs of kernel.
        let mut image = bzimage_head(2, 100, 0x020f);
        image.resize(3 * 512 + 1600, 0);
        assert_eq!(
            check_kernel(&write(dir.path(), &image)).expect("whole"),
            KernelFormat::BzImage
        );
        image.truncate(3 * 512 + 1000);
        let err = check_kernel(&write(dir.path(), &image))
            .expect_err("truncated")
            .to_string();
        assert!(
            err.contains("truncated: its header says 3136 bytes, the file has 2536"),
            "{err}"
        );
    }

    #[test]
    fn an_old_boot_protocol_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut image = bzimage_head(2, 1, 0x020a);
        image.resize(4096, 0);
        let err = check_kernel(&write(dir.path(), &image))
            .expect_err("2.10")
            .to_string();
        assert!(err.contains("boot protocol is 2.10"), "{err}");
    }

    #[test]
    fn a_truncated_elf_is_refused_and_a_whole_one_passes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let elf = ::tests::elf::image(0x100_0000, 0x200, &[0x90; 3000], true);
        assert_eq!(
            check_kernel(&write(dir.path(), &elf)).expect("whole"),
            KernelFormat::Elf
        );
        let err = check_kernel(&write(dir.path(), &elf[..elf.len() - 100]))
            .expect_err("truncated")
            .to_string();
        assert!(
            err.contains("truncated: its ELF headers reach byte"),
            "{err}"
        );
    }
}
