//! Opening a file of an image as the container will see it: every path resolves inside the
//! image's root, never on the host.
//!
//! A plain `root.join(path)` follows an absolute symlink such as `/etc/passwd ->
//! /etc/shadow` to the **host's** file, and `..` climbs out of the root. openat2(2) with
//! `RESOLVE_IN_ROOT` resolves every component (absolute and relative symlinks, `..`) as if
//! `root` were `/`, in the kernel and in one step, so a symlink swapped in between a check and
//! the open cannot redirect it either. This is how runc (libpathrs) and crun read an image's
//! `/etc/passwd` and `/etc/group`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

/// Opens the regular file `path` (absolute or relative, read-only) inside `root`, resolving it
/// as though `root` were `/`: a symlink to `/x` means `root/x`, and `..` stops at `root`. Magic
/// links (`/proc/self/fd/N`) are refused. Needs Linux 5.6 or later.
///
/// The caller reads an image it does not trust with the host's privileges, so only a regular
/// file is opened: the path is first resolved without opening it (`O_PATH`), and a FIFO (whose
/// open would block forever), a device node (whose open acts on the host's device, e.g. arms a
/// watchdog, and whose reads may never end, e.g. `/dev/zero`) or a socket is refused.
///
/// # Errors
///
/// `root` cannot be opened as a directory, or `path` does not exist inside it (`NotFound`),
/// is not a regular file (`InvalidInput`), or openat2(2) fails otherwise (`ENOSYS` on kernels
/// before 5.6; `EXDEV`, `ELOOP`).
///
/// ```no_run
/// use std::io::Read;
/// let mut passwd = String::new();
/// ns_core::open_in_root("/srv/rootfs".as_ref(), "/etc/passwd".as_ref())?
///     .read_to_string(&mut passwd)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn open_in_root(root: &Path, path: &Path) -> std::io::Result<File> {
    let dir = File::open(root)?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let found = File::from(openat2(&dir, path, how)?);
    if !found.metadata()?.file_type().is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    // The descriptor's own file, opened for reading: a file swapped in since the check is not
    // the one this opens.
    File::open(format!("/proc/self/fd/{}", found.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;

    fn read(root: &Path, path: &str) -> std::io::Result<String> {
        std::io::read_to_string(open_in_root(root, Path::new(path))?)
    }

    #[test]
    fn symlinks_and_dot_dot_stay_inside_the_root() {
        let host = tempfile::tempdir().unwrap();
        let secret = host.path().join("secret");
        std::fs::write(&secret, "host\n").unwrap();
        let root = host.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        // Inside the root, the symlink's target names this file, not the host's.
        let inside = root.join(secret.strip_prefix("/").unwrap());
        std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
        std::fs::write(&inside, "image\n").unwrap();

        symlink(&secret, root.join("etc/absolute")).unwrap();
        assert_eq!(read(&root, "/etc/absolute").unwrap(), "image\n");

        let climb = format!("../../../../../../../..{}", secret.display());
        symlink(&climb, root.join("etc/relative")).unwrap();
        assert_eq!(read(&root, "etc/relative").unwrap(), "image\n");
        assert_eq!(read(&root, &climb).unwrap(), "image\n");

        // A target missing from the root is missing, even though the host has it.
        std::fs::remove_file(&inside).unwrap();
        let err = read(&root, "/etc/absolute").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    }

    /// A FIFO would block the launcher forever, and a directory is no file to read: both are
    /// refused before any open (device nodes need root to make; the integration test has one).
    #[test]
    fn only_regular_files_are_opened() {
        let host = tempfile::tempdir().unwrap();
        std::fs::create_dir(host.path().join("etc")).unwrap();
        let fifo = CString::new(host.path().join("etc/passwd").as_os_str().as_bytes()).unwrap();
        // SAFETY: `fifo` is a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let (done, wait) = std::sync::mpsc::channel();
        let root = host.path().to_owned();
        std::thread::spawn(move || {
            let _ = done.send(open_in_root(&root, Path::new("/etc/passwd")).map(drop));
        });
        let err = wait
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("opening a FIFO must not block")
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
        let err = open_in_root(host.path(), Path::new("/etc")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    }
}
