//! The launcher's [`ImageFiles`]: an image's files opened inside its root.

use std::io::{ErrorKind, Read};
use std::path::Path;

use plan::ImageFiles;

/// The most of an image file the launcher reads (32 MiB: some 400 000 `/etc/passwd`
/// entries). The image is untrusted and read with the launcher's own memory.
const MAX_BYTES: u64 = 32 << 20;

/// Opens with `openat2(RESOLVE_IN_ROOT)` ([`ns_core::open_in_root`]: regular files only), so
/// a symlink to a host path reads the image's own copy of that path, or nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct InRoot;

impl ImageFiles for InRoot {
    fn read(&self, rootfs: &Path, file: &str) -> std::io::Result<String> {
        let file = ns_core::open_in_root(rootfs, Path::new(file))?;
        let text = std::io::read_to_string(file.take(MAX_BYTES + 1))?;
        if text.len() as u64 > MAX_BYTES {
            return Err(std::io::Error::new(
                ErrorKind::FileTooLarge,
                format!("larger than {} MiB", MAX_BYTES >> 20),
            ));
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absolute_symlink_reads_the_image_s_file_not_the_host_s() {
        let host = tempfile::tempdir().unwrap();
        let host_passwd = host.path().join("passwd");
        std::fs::write(&host_passwd, "intruder:x:0:0::/host-secret:/bin/sh\n").unwrap();
        let image = tempfile::tempdir().unwrap();
        std::fs::create_dir(image.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(&host_passwd, image.path().join("etc/passwd")).unwrap();
        assert_eq!(plan::home_of(0, image.path(), &InRoot).unwrap(), "/");
        assert!(plan::resolve_user("intruder", image.path(), &InRoot).is_err());
    }
}
