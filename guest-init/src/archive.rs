use std::io::{BufWriter, Write};
use std::path::Path;

use crate::newc::{Meta, NewcWriter};
use crate::{CONFIG_PATH, Error, GuestConfig, ROOTFS_DIR, Result};

/// Big enough that a header is never a write of its own on `out`.
const OUT_BUFFER: usize = 64 * 1024;

/// Writes the per-launch archive: [`CONFIG_PATH`] holding `config` as JSON and, if `rootfs` is
/// given, that whole tree under [`ROOTFS_DIR`] (see [`NewcWriter::tree`] for what is kept).
/// It ends with the trailer and is 4-aligned, so it can follow the base archive in one initrd.
/// Returns its length in bytes.
///
/// `config` is validated first: nothing is written for a config the init would refuse. On an
/// error, part of an archive may have been written.
pub fn write_launch_archive(
    out: &mut impl Write,
    config: &GuestConfig,
    rootfs: Option<&Path>,
) -> Result<u64> {
    let json = config.to_json()?;
    let mut archive = NewcWriter::new(BufWriter::with_capacity(OUT_BUFFER, out));
    // The base archive has /capsule too; a second entry for it is harmless, and this archive
    // then does not depend on the base one's layout.
    archive.directory(entry_name(parent(CONFIG_PATH)), Meta::root(0o755))?;
    // Only root reads it: it may carry the workload's secrets in `env`.
    archive.file(entry_name(CONFIG_PATH), Meta::root(0o600), &json)?;
    if let Some(rootfs) = rootfs {
        archive.tree(entry_name(ROOTFS_DIR), rootfs)?;
    }
    let (out, len) = archive.finish()?;
    out.into_inner().map_err(|e| Error::Write(e.into_error()))?;
    Ok(len)
}

/// Entry names are relative to the initramfs root.
fn entry_name(path: &str) -> &str {
    path.trim_start_matches('/')
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(dir, _)| dir)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    /// Every entry of an archive: (name, mode, data), up to and including the trailer.
    fn entries(archive: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut rest = archive;
        let mut out = Vec::new();
        loop {
            let mut reader = cpio::NewcReader::new(rest).unwrap();
            let (name, mode) = (reader.entry().name().to_owned(), reader.entry().mode());
            let trailer = reader.entry().is_trailer();
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            rest = reader.finish().unwrap();
            out.push((name, mode, data));
            if trailer {
                assert!(rest.is_empty(), "{} bytes after the trailer", rest.len());
                return out;
            }
        }
    }

    #[test]
    fn the_archive_holds_the_config_and_the_rootfs_dirs_first() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("a/deep/dir")).unwrap();
        std::fs::write(root.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(root.join("bin/tool"), PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::write(root.join("a/deep/dir/empty"), b"").unwrap();
        symlink("tool", root.join("bin/alias")).unwrap();
        std::fs::hard_link(root.join("bin/tool"), root.join("bin/twin")).unwrap();
        let fifo = root.join("bin/fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();

        let mut config = GuestConfig::new(vec!["/bin/tool".into()]);
        config
            .workload
            .as_mut()
            .unwrap()
            .process
            .env
            .push("PATH=/bin".into());
        let mut out = Vec::new();
        let len = write_launch_archive(&mut out, &config, Some(root)).unwrap();
        assert_eq!(len, out.len() as u64);
        assert_eq!(len % 4, 0);

        let entries = entries(&out);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "capsule",
                "capsule/config.json",
                "capsule/rootfs",
                "capsule/rootfs/a",
                "capsule/rootfs/bin",
                "capsule/rootfs/a/deep",
                "capsule/rootfs/a/deep/dir",
                "capsule/rootfs/a/deep/dir/empty",
                "capsule/rootfs/bin/alias",
                "capsule/rootfs/bin/tool",
                "capsule/rootfs/bin/twin",
                "TRAILER!!!",
            ]
        );
        // Every entry's parent directory came before it.
        for (i, name) in names.iter().enumerate() {
            if let Some((dir, _)) = name.rsplit_once('/') {
                let at = names.iter().position(|n| *n == dir).unwrap();
                assert!(at < i, "{name} comes before its directory");
                assert_eq!(entries[at].1 & 0o170_000, 0o040_000, "{dir}");
            }
        }
        let find = |name: &str| entries.iter().find(|e| e.0 == name).unwrap();
        let (_, mode, json) = find("capsule/config.json");
        assert_eq!(*mode, 0o100_600);
        assert_eq!(GuestConfig::from_json(json).unwrap(), config);
        let (_, mode, data) = find("capsule/rootfs/bin/tool");
        assert_eq!(
            (*mode, data.as_slice()),
            (0o100_755, &b"#!/bin/sh\necho hi\n"[..])
        );
        assert_eq!(find("capsule/rootfs/bin/twin").2, data.clone());
        let (_, mode, target) = find("capsule/rootfs/bin/alias");
        assert_eq!(
            (*mode & 0o170_000, target.as_slice()),
            (0o120_000, &b"tool"[..])
        );
    }

    #[test]
    fn owners_and_mtimes_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(when)
            .unwrap();
        let mut out = Vec::new();
        let config = GuestConfig::new(vec!["true".into()]);
        write_launch_archive(&mut out, &config, Some(tmp.path())).unwrap();
        let mut rest = out.as_slice();
        loop {
            let reader = cpio::NewcReader::new(rest).unwrap();
            if reader.entry().name() == "capsule/rootfs/f" {
                assert_eq!(reader.entry().mtime(), 1_700_000_000);
                assert_eq!(reader.entry().uid(), nix::unistd::geteuid().as_raw());
                assert_eq!(reader.entry().gid(), nix::unistd::getegid().as_raw());
                assert_eq!(reader.entry().nlink(), 1);
                return;
            }
            assert!(!reader.entry().is_trailer(), "no entry for the file");
            rest = reader.finish().unwrap();
        }
    }

    #[test]
    fn without_a_rootfs_only_the_config_is_written() {
        let mut out = Vec::new();
        let config = GuestConfig::new(vec!["true".into()]);
        write_launch_archive(&mut out, &config, None).unwrap();
        let names: Vec<String> = entries(&out).into_iter().map(|e| e.0).collect();
        assert_eq!(names, ["capsule", "capsule/config.json", "TRAILER!!!"]);
    }

    #[test]
    fn bad_inputs_write_nothing_or_name_the_path() {
        let mut out = Vec::new();
        let err = write_launch_archive(&mut out, &GuestConfig::new(Vec::new()), None).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
        assert!(out.is_empty());
        let config = GuestConfig::new(vec!["true".into()]);
        let missing = Path::new("/nonexistent/rootfs");
        let err = write_launch_archive(&mut out, &config, Some(missing)).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/rootfs"), "{err}");
    }
}
