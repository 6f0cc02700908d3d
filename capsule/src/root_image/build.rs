//! Building the ext4 image of a tree: `mkfs.ext4 -d` (e2fsprogs) copies the tree, then one
//! `debugfs -w` script carries what mkfs leaves out.
//!
//! What e2fsprogs 1.47.0's `mkfs.ext4 -d` carries, checked by this module's tests: regular
//! files (holes stay holes), directories, symlinks, hard links (one inode), fifos, sockets,
//! character and block devices with their numbers, owners, modes with the setuid, setgid and
//! sticky bits, extended attributes (`user.`, `trusted.`, `security.`, POSIX ACLs) and names
//! that are not UTF-8. What it leaves out, the fix-up script adds: the nanoseconds of access
//! and modification times and the epoch bits of times past 2038 (mkfs keeps 32 bits of
//! seconds), and the root directory's own mode and times. mkfs also adds a `lost+found` the
//! tree does not have, which the script removes, so the image holds the tree as it is. A
//! change time cannot be set by anyone; every copy gets new ones.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::Error;
use super::tree::{BLOCK, Tree, extra_time};

/// The directories capsule-init mounts the kernel's file systems on; added when the tree
/// lacks them, so a read-only root (no overlay to create them in) can still be entered.
const MOUNT_POINTS: &[&str] = &["dev", "proc", "sys"];

/// ext4's inode size: 256 bytes leave room for nanosecond timestamps and small xattrs.
const INODE_SIZE: u64 = 256;

/// Blocks in one ext4 block group (one bitmap block of 4096 bytes covers 32768 blocks).
const BLOCKS_PER_GROUP: u64 = 32_768;

/// mkfs's configuration, instead of the host's `/etc/mke2fs.conf`, so that a newer host
/// cannot give the image features the guest's kernel (Debian's 6.1) lacks. The features are
/// ext4's of e2fsprogs 1.47 but three: no journal (the image is the read-only lower layer:
/// nothing to replay), no GDT blocks reserved for growing it, and `uninit_bg` rather than
/// `metadata_csum`, whose checksums more than double the build's time (measured: 42 s against
/// 16 s for a 1 GiB tree) and protect a file that is rebuilt, not repaired. Each size type
/// has a stanza, or mkfs warns that it is undefined; the command line sets block size, inode
/// size and count.
const MKE2FS_CONF: &str = "[defaults]
\tbase_features = sparse_super,large_file,filetype,dir_index,ext_attr
[fs_types]
\text4 = {
\t\tfeatures = extent,huge_file,flex_bg,uninit_bg,64bit,dir_nlink,extra_isize
\t}
\tfloppy = {
\t\tblocksize = 4096
\t}
\tsmall = {
\t\tblocksize = 4096
\t}
\tdefault = {
\t\tblocksize = 4096
\t}
\tbig = {
\t\tblocksize = 4096
\t}
\thuge = {
\t\tblocksize = 4096
\t}
";

/// How often a build that ran out of room is retried, each time with half as much again.
const ATTEMPTS: u32 = 3;

/// Builds the ext4 image of `tree` at `image` (created or truncated).
///
/// # Errors
///
/// [`Error::Tool`] when `mkfs.ext4` or `debugfs` is missing or fails (with its message),
/// [`Error::Io`] when the image file cannot be written.
pub fn build(tree: &Tree, image: &Path) -> Result<(), Error> {
    let mut size = image_size(tree);
    for attempt in 1..=ATTEMPTS {
        let file = File::create(image).map_err(|e| Error::io("creating", image, e))?;
        // Sparse: mkfs writes only the blocks it uses.
        file.set_len(size)
            .map_err(|e| Error::io("sizing", image, e))?;
        drop(file);
        let output = mkfs(tree, image)?;
        if output.status.success() {
            return fix_up(tree, image);
        }
        let message = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        // e2fsprogs says "Could not allocate block/inode" when the estimate fell short.
        if !message.contains("allocate") || attempt == ATTEMPTS {
            return Err(Error::Tool {
                tool: "mkfs.ext4",
                root: tree.root.clone(),
                message,
            });
        }
        tracing::debug!(size, %message, "the root image ran out of room; retrying larger");
        size += size / 2;
    }
    unreachable!("the last attempt returns")
}

/// Inodes to give mkfs (`-N`): the tree's, the mount points and `lost+found` it may add, and
/// the 10 inodes ext4 reserves, with a sixteenth more for the estimate's sake.
fn inode_count(tree: &Tree) -> u64 {
    let inodes = tree.inodes + MOUNT_POINTS.len() as u64 + 1 + 10;
    inodes + inodes / 16
}

/// The image's size in bytes: the tree's blocks, the inode tables, two bitmaps and a group
/// descriptor per block group, the superblock and its backups, and 5% and 1 MiB of room for
/// what the estimate does not see (xattr blocks, directory index blocks).
pub fn image_size(tree: &Tree) -> u64 {
    let inode_blocks = (inode_count(tree) * INODE_SIZE).div_ceil(BLOCK);
    let blocks = tree.data_blocks + inode_blocks + 16;
    let groups = blocks.div_ceil(BLOCKS_PER_GROUP);
    // A bitmap each for blocks and inodes, a descriptor block and a superblock backup.
    let blocks = blocks + groups * 4;
    (blocks + blocks / 20 + 256) * BLOCK
}

fn mkfs(tree: &Tree, image: &Path) -> Result<Output, Error> {
    let conf = sidecar(image, "mke2fs.conf");
    std::fs::write(&conf, MKE2FS_CONF).map_err(|e| Error::io("writing", &conf, e))?;
    let mut cmd = Command::new("mkfs.ext4");
    cmd.env("MKE2FS_CONFIG", &conf)
        .args(["-t", "ext4", "-q", "-F", "-b", "4096", "-I"])
        .arg(INODE_SIZE.to_string())
        .arg("-N")
        .arg(inode_count(tree).to_string())
        // No blocks kept back for root: nothing writes to the image in the guest.
        .args([
            "-m",
            "0",
            "-O",
            "^has_journal,^resize_inode",
            "-L",
            "capsule-root",
            "-E",
        ])
        .arg(format!(
            "root_owner={}:{},lazy_itable_init=1,nodiscard",
            tree.root_uid, tree.root_gid
        ))
        .arg("-d")
        .arg(&tree.root)
        .arg(image);
    let output = run(&mut cmd, "mkfs.ext4");
    // Best effort: a leftover is a few bytes in the cache, pruned with the images.
    let _ = std::fs::remove_file(&conf);
    output
}

/// A file beside the image being built, for one of the tools.
fn sidecar(image: &Path, extension: &str) -> PathBuf {
    PathBuf::from(format!("{}.{extension}", image.display()))
}

fn run(cmd: &mut Command, tool: &'static str) -> Result<Output, Error> {
    cmd.output()
        .map_err(|source| Error::ToolMissing { tool, source })
}

/// The `debugfs -w` commands that make the image hold the tree as it is (see the module doc).
pub fn fix_up_script(tree: &Tree) -> Vec<u8> {
    let mut script = Vec::new();
    let mut line = |parts: &[&[u8]]| {
        script.extend_from_slice(&parts.join(&b' '));
        script.push(b'\n');
    };
    if !tree.top_level.contains(OsStr::new("lost+found")) {
        line(&[b"rmdir", b"/lost+found"]);
    }
    for dir in MOUNT_POINTS {
        if !tree.top_level.contains(OsStr::new(dir)) {
            line(&[b"mkdir", format!("/{dir}").as_bytes()]);
        }
    }
    // The root's times last: the lines above change them.
    let root = &tree.root_meta;
    let mode = format!("0{:o}", tree.root_mode);
    line(&[b"sif", b"/", b"mode", mode.as_bytes()]);
    for stamps in tree.timestamps.iter().chain([root]) {
        let path = quote(&stamps.path);
        for (field, time) in [("atime", stamps.atime), ("mtime", stamps.mtime)] {
            // mkfs wrote the low 32 bits of every entry's seconds but the root's.
            if stamps.path == b"/" {
                let seconds = format!("@{}", time.0);
                line(&[b"sif", &path, field.as_bytes(), seconds.as_bytes()]);
            }
            let extra = format!("{:#x}", extra_time(time));
            line(&[
                b"sif",
                &path,
                format!("{field}_extra").as_bytes(),
                extra.as_bytes(),
            ]);
        }
    }
    script
}

/// A path as one argument of a debugfs command: in double quotes, a quote doubled (the `ss`
/// library's parser, which debugfs reads its commands with). Newlines cannot be written; the
/// walk refuses names that hold one.
fn quote(path: &[u8]) -> Vec<u8> {
    let mut quoted = vec![b'"'];
    for &byte in path {
        if byte == b'"' {
            quoted.push(b'"');
        }
        quoted.push(byte);
    }
    quoted.push(b'"');
    quoted
}

fn fix_up(tree: &Tree, image: &Path) -> Result<(), Error> {
    let script_path = sidecar(image, "debugfs");
    let result = (|| {
        let mut script =
            File::create(&script_path).map_err(|e| Error::io("creating", &script_path, e))?;
        script
            .write_all(&fix_up_script(tree))
            .map_err(|e| Error::io("writing", &script_path, e))?;
        drop(script);
        let output = run(
            Command::new("debugfs")
                .arg("-w")
                .arg("-f")
                .arg(&script_path)
                .arg(image),
            "debugfs",
        )?;
        // debugfs exits 0 whatever its commands did; each failure is a line on stderr, after
        // its version banner.
        let errors: Vec<&[u8]> = output
            .stderr
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty() && !line.starts_with(b"debugfs "))
            .collect();
        if !output.status.success() || !errors.is_empty() {
            return Err(Error::Tool {
                tool: "debugfs",
                root: tree.root.clone(),
                message: String::from_utf8_lossy(&errors.join(&b'\n')).into_owned(),
            });
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&script_path);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_for_debugfs_with_quotes_doubled() {
        assert_eq!(quote(b"/a b"), b"\"/a b\"");
        assert_eq!(quote(b"/say \"hi\""), b"\"/say \"\"hi\"\"\"");
        assert_eq!(quote(b"/bad\xffname"), b"\"/bad\xffname\"");
    }

    #[test]
    fn the_size_covers_the_data_the_inodes_and_the_groups() {
        let tmp = tempfile::tempdir().unwrap();
        let mut tree = super::super::tree::scan(tmp.path()).unwrap();
        let empty = image_size(&tree);
        tree.data_blocks += 1 << 18; // 1 GiB of data
        tree.inodes += 30_000;
        let big = image_size(&tree);
        let inode_tables = 30_000 * INODE_SIZE;
        assert!(big > empty + (1 << 30) + inode_tables, "{big}");
        // The overhead stays a small fraction.
        assert!(big < ((1u64 << 30) + inode_tables) * 11 / 10, "{big}");
    }
}
