//! Paths inside the container's root, resolved by the kernel as if that root were `/`.
//!
//! Every path that comes from the image or the spec (mount destinations, `/dev` entries,
//! masked and read-only paths, the working directory) is opened with openat2(2) and
//! `RESOLVE_IN_ROOT`: absolute symlinks, relative symlinks and `..` all stay inside the root,
//! and magic links (`/proc/self/root`) are refused. What is missing is created one component
//! at a time relative to a directory descriptor that was itself resolved in the root, and a
//! dangling symlink is followed inside the root the way runc's securejoin and crun do. Mounts
//! then target the descriptor (`/proc/self/fd/N`, or move_mount(2)), never a path, so a
//! component swapped for a symlink between the check and the mount cannot redirect it.
//!
//! No crate fits here: `pathrs` (libpathrs) allocates, and this code runs in the container
//! child between `clone` and `execve`, where only plain syscalls on stack buffers are safe.

use std::ffi::CStr;
use std::os::fd::RawFd;

use crate::sys::errno;

/// The longest path the walk handles, as the kernel's `PATH_MAX`.
const PATH_MAX: usize = libc::PATH_MAX as usize;

/// How many symlinks one resolution may follow while creating (the kernel's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// What to create when the path does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    /// Nothing: a missing path is `ENOENT`.
    Nothing,
    /// Directories, mode 0755, owned by `owner` (uid, gid) when given.
    Dir { owner: Option<(u32, u32)> },
    /// Directories up to the last component, which becomes an empty file (mode 0644).
    File,
}

/// A file descriptor the child owns, closed when dropped (no allocation involved).
#[derive(Debug)]
pub(crate) struct Fd(pub RawFd);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor was opened by this process and is closed exactly once.
        unsafe { libc::close(self.0) };
    }
}

fn check_fd(fd: libc::c_long) -> Result<Fd, i32> {
    if fd < 0 {
        Err(errno())
    } else {
        Ok(Fd(fd as RawFd))
    }
}

/// openat2(2) of `path` (NUL-terminated, relative to `root`) as an `O_PATH` descriptor, with
/// `root` as the root of the resolution. A trailing symlink is followed, inside the root.
pub(crate) fn open_path_in_root(root: RawFd, path: *const libc::c_char) -> Result<Fd, i32> {
    // SAFETY: open_how is plain data; all-zero is its "no flags" value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `path` is NUL-terminated and `how` is a valid open_how of the size passed.
    check_fd(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root,
            path,
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    })
}

/// A path being walked: the bytes of a relative path in a stack buffer that the walk can
/// cut with a NUL at any component boundary and rewrite when it follows a symlink.
struct Walk {
    buf: [u8; PATH_MAX + 1],
    len: usize,
}

impl Walk {
    fn new(path: &[u8]) -> Result<Self, i32> {
        let mut walk = Walk {
            buf: [0; PATH_MAX + 1],
            len: 0,
        };
        walk.set(&[path])?;
        Ok(walk)
    }

    /// Replaces the path with the concatenation of `parts`, without leading or trailing
    /// slashes.
    fn set(&mut self, parts: &[&[u8]]) -> Result<(), i32> {
        let mut next = [0u8; PATH_MAX + 1];
        let mut len = 0;
        for part in parts {
            if len + part.len() > PATH_MAX {
                return Err(libc::ENAMETOOLONG);
            }
            next[len..len + part.len()].copy_from_slice(part);
            len += part.len();
        }
        let start = next[..len].iter().position(|&b| b != b'/').unwrap_or(len);
        let end = next[..len]
            .iter()
            .rposition(|&b| b != b'/')
            .map_or(start, |i| i + 1);
        self.buf = [0; PATH_MAX + 1];
        self.buf[..end - start].copy_from_slice(&next[start..end]);
        self.len = end - start;
        Ok(())
    }

    /// The whole path, NUL-terminated (`.` when empty: the root itself).
    fn whole(&mut self) -> *const libc::c_char {
        if self.len == 0 {
            return c".".as_ptr();
        }
        self.buf[self.len] = 0;
        self.buf.as_ptr().cast()
    }
}

/// Resolves `path` (relative to `root`, NUL-free) inside `root` and returns an `O_PATH`
/// descriptor of what it names, creating what is missing as `create` says.
pub(crate) fn resolve(root: RawFd, path: &CStr, create: Create) -> Result<Fd, i32> {
    let mut walk = Walk::new(path.to_bytes())?;
    for _ in 0..MAX_SYMLINKS {
        match open_path_in_root(root, walk.whole()) {
            Err(libc::ENOENT) if create != Create::Nothing => {}
            done => return done,
        }
        if let Some(fd) = create_missing(root, &mut walk, create)? {
            return Ok(fd);
        }
    }
    Err(libc::ELOOP)
}

/// Walks `walk` one component at a time, creating each missing one in its parent. Returns the
/// descriptor of the whole path, or `None` after rewriting `walk` to follow a dangling
/// symlink (the caller starts over with the new path).
fn create_missing(root: RawFd, walk: &mut Walk, create: Create) -> Result<Option<Fd>, i32> {
    let mut parent: Option<Fd> = None;
    let mut start = 0;
    while start < walk.len {
        let end = walk.buf[start..walk.len]
            .iter()
            .position(|&b| b == b'/')
            .map_or(walk.len, |i| start + i);
        let last = end == walk.len;
        let name = &walk.buf[start..end];
        let plain = !name.is_empty() && name != b"." && name != b"..";
        // Cut the path after this component: `buf[..end]` is the prefix and `buf[start..end]`
        // the name, both NUL-terminated now; the slash goes back below.
        let saved = walk.buf[end];
        walk.buf[end] = 0;
        let prefix = walk.buf.as_ptr().cast::<libc::c_char>();
        let name_ptr = walk.buf[start..].as_ptr().cast::<libc::c_char>();
        let dir = parent.as_ref().map_or(root, |fd| fd.0);
        let opened = match open_path_in_root(root, prefix) {
            Err(libc::ENOENT) if plain => {
                let mut link = [0u8; PATH_MAX];
                // SAFETY: `name_ptr` is NUL-terminated and `link` is writable for its length.
                let n = unsafe {
                    libc::readlinkat(dir, name_ptr, link.as_mut_ptr().cast(), link.len())
                };
                if n >= 0 {
                    // A dangling symlink: continue at its target, inside the root.
                    let target = &link[..n as usize];
                    walk.buf[end] = saved;
                    let rest = &walk.buf[end..walk.len];
                    let mut rest_copy = [0u8; PATH_MAX];
                    rest_copy[..rest.len()].copy_from_slice(rest);
                    let rest = &rest_copy[..rest.len()];
                    let base = if target.first() == Some(&b'/') {
                        [0u8; 0].as_slice()
                    } else {
                        &walk.buf[..start]
                    };
                    let mut base_copy = [0u8; PATH_MAX];
                    base_copy[..base.len()].copy_from_slice(base);
                    let base = &base_copy[..base.len()];
                    walk.set(&[base, target, rest])?;
                    return Ok(None);
                }
                make(dir, name_ptr, last, create)?;
                open_path_in_root(root, prefix)
            }
            other => other,
        };
        walk.buf[end] = saved;
        parent = Some(opened?);
        start = end + 1;
    }
    Ok(parent)
}

/// Creates `name` in `dir`: the last component as `create` says, any other a directory. One
/// that exists already (made by someone else meanwhile) is fine: the caller opens it again.
fn make(dir: RawFd, name: *const libc::c_char, last: bool, create: Create) -> Result<(), i32> {
    // SAFETY: `name` is NUL-terminated; the calls take no other memory.
    let rc = unsafe {
        if last && create == Create::File {
            let fd = libc::openat(
                dir,
                name,
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644,
            );
            if fd >= 0 {
                libc::close(fd);
            }
            fd.min(0)
        } else {
            libc::mkdirat(dir, name, 0o755)
        }
    };
    if rc != 0 {
        return match errno() {
            libc::EEXIST => Ok(()),
            e => Err(e),
        };
    }
    if let Create::Dir {
        owner: Some((uid, gid)),
    } = create
    {
        // SAFETY: as above; the directory was just created by us and is not a symlink.
        if unsafe { libc::fchownat(dir, name, uid, gid, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
            return Err(errno());
        }
    }
    Ok(())
}

/// `/proc/self/fd/N` for `fd`, NUL-terminated in a stack buffer: the path mount(2) follows
/// to exactly the file the descriptor holds.
pub(crate) struct FdPath {
    buf: [u8; 32],
}

impl FdPath {
    pub fn new(fd: RawFd) -> Self {
        let mut buf = [0u8; 32];
        let prefix = b"/proc/self/fd/";
        buf[..prefix.len()].copy_from_slice(prefix);
        let mut digits = [0u8; 10];
        let mut n = fd.unsigned_abs();
        let mut count = 0;
        loop {
            digits[count] = b'0' + (n % 10) as u8;
            count += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..count {
            buf[prefix.len() + i] = digits[count - 1 - i];
        }
        FdPath { buf }
    }

    pub fn as_c_str(&self) -> &CStr {
        // The buffer holds at most 24 bytes of text and ends in zeros.
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"")
    }

    pub fn as_ptr(&self) -> *const libc::c_char {
        self.as_c_str().as_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::symlink;

    fn root_fd(dir: &std::path::Path) -> std::fs::File {
        std::fs::File::open(dir).unwrap()
    }

    fn real_path(fd: &Fd) -> std::path::PathBuf {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.0)).unwrap()
    }

    fn resolve_str(root: &std::fs::File, path: &str, create: Create) -> Result<Fd, i32> {
        resolve(root.as_raw_fd(), &CString::new(path).unwrap(), create)
    }

    #[test]
    fn absolute_and_relative_symlinks_and_dotdot_stay_inside_the_root() {
        let host = tempfile::tempdir().unwrap();
        let root = host.path().join("root");
        let outside = host.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        symlink(&outside, root.join("abs")).unwrap();
        symlink("../../outside", root.join("etc/rel")).unwrap();
        let fd = root_fd(&root);

        let abs = resolve_str(&fd, "abs/sub", Create::Dir { owner: None }).unwrap();
        assert_eq!(
            real_path(&abs),
            root.join(outside.strip_prefix("/").unwrap()).join("sub")
        );
        let rel = resolve_str(&fd, "etc/rel/file", Create::File).unwrap();
        assert_eq!(real_path(&rel), root.join("outside/file"));
        let dots = resolve_str(&fd, "../../../x", Create::Dir { owner: None }).unwrap();
        assert_eq!(real_path(&dots), root.join("x"));
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing on the host"
        );
    }

    #[test]
    fn a_dangling_symlink_is_created_at_its_target_inside_the_root() {
        let host = tempfile::tempdir().unwrap();
        let root = host.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        symlink("/host/created-file", root.join("etc/evil-file")).unwrap();
        let fd = root_fd(&root);
        let file = resolve_str(&fd, "/etc/evil-file", Create::File).unwrap();
        assert_eq!(real_path(&file), root.join("host/created-file"));
        assert!(root.join("host/created-file").is_file());
    }

    #[test]
    fn missing_paths_are_enoent_without_create_and_magic_links_are_refused() {
        let host = tempfile::tempdir().unwrap();
        let fd = root_fd(host.path());
        assert_eq!(
            resolve_str(&fd, "nope", Create::Nothing).unwrap_err(),
            libc::ENOENT
        );
        symlink("/proc/self/root", host.path().join("magic")).unwrap();
        // The symlink's target is looked up in the root, which has no /proc: confined.
        assert_eq!(
            resolve_str(&fd, "magic/etc", Create::Nothing).unwrap_err(),
            libc::ENOENT
        );
        let loops = host.path().join("loop");
        symlink("loop", &loops).unwrap();
        assert_eq!(
            resolve_str(&fd, "loop/x", Create::Dir { owner: None }).unwrap_err(),
            libc::ELOOP
        );
    }

    #[test]
    fn fd_path_names_the_descriptor() {
        assert_eq!(FdPath::new(7).as_c_str(), c"/proc/self/fd/7");
        assert_eq!(FdPath::new(1234).as_c_str(), c"/proc/self/fd/1234");
    }
}
