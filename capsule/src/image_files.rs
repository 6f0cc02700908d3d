//! The launcher's [`ImageFiles`]: an image's files opened inside its root.

use std::io::{ErrorKind, Read};
use std::path::Path;

use plan::ImageFiles;

/// The most of an image file the launcher reads (32 MiB: some 400 000 `/etc/passwd`
/// entries). The image is untrusted and read with the launcher's own memory.
const MAX_BYTES: u64 = 32 << 20;

/// Opens with `openat2(RESOLVE_IN_ROOT)` ([`ns_core::open_in_root`]: regular files only), so
/// a symlink to a host path reads the image's own copy of that path, or nothing.
///
/// A root that is a disk image file (a microVM's) is not read: its files count as missing,
/// so numeric ids work as in an image without `/etc/passwd` (gid 0 unless given, `HOME` `/`)
/// and a user name is unknown. Reading inside would mean mounting the image or parsing ext4
/// (and qcow2) on the host, for every launch.
#[derive(Debug, Clone, Copy, Default)]
pub struct InRoot;

impl ImageFiles for InRoot {
    fn read(&self, rootfs: &Path, file: &str) -> std::io::Result<String> {
        if std::fs::metadata(rootfs).is_ok_and(|m| m.is_file()) {
            return Err(std::io::Error::new(
                ErrorKind::NotFound,
                "the root is a disk image, whose files capsule does not read on the host",
            ));
        }
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
    fn an_image_file_root_has_no_users_but_numeric_ids_work() {
        let image = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(plan::home_of(1000, image.path(), &InRoot).unwrap(), "/");
        let user = plan::resolve_user("1000:100", image.path(), &InRoot).unwrap();
        assert_eq!((user.uid, user.gid), (1000, 100));
        let err = plan::resolve_user("nobody", image.path(), &InRoot).unwrap_err();
        assert!(
            err.to_string().starts_with("unknown user \"nobody\""),
            "{err}"
        );
    }

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
