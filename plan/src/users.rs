//! Users and groups as the image names them: `--user`, `--group-add` and the default `HOME`
//! are resolved against the root filesystem's own `/etc/passwd` and `/etc/group`, as docker
//! and runc do, never the host's. The files are read through [`ImageFiles`], which the
//! launcher implements inside the root (`openat2(RESOLVE_IN_ROOT)`), so an image whose
//! `/etc/passwd` is a symlink to a host path reads its own copy of that path, or nothing.

use std::fmt::Debug;
use std::io::ErrorKind;
use std::path::Path;

use crate::{Error, User};

/// Reads the files of an image by their path inside it.
pub trait ImageFiles: Debug {
    /// The text of `file`, an absolute path inside the image whose root is `rootfs`. A file
    /// that does not exist is `ErrorKind::NotFound`. An implementation never leaves `rootfs`
    /// (symlinks and `..` resolve inside it) and reads a bounded amount of an untrusted image.
    fn read(&self, rootfs: &Path, file: &str) -> std::io::Result<String>;
}

/// Resolves `name`, `uid`, `name:group`, `uid:gid` (and mixes) for the image at `rootfs`.
/// A numeric id needs no entry; a name must exist in the image.
///
/// Supplementary groups follow runc's `GetExecUser` and docker's documented behaviour
/// (moby/moby#9360): the implicit form (`name`, or a `uid` with an entry) gets the groups
/// `/etc/group` lists the user in; a form with a group (`user:group`, `uid:gid`) runs with
/// that group alone.
pub fn resolve_user(spec: &str, rootfs: &Path, files: &dyn ImageFiles) -> Result<User, Error> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_db(files, rootfs, "/etc/passwd")?;

    let (uid, name, primary_gid) = if let Ok(uid) = user_part.parse::<u32>() {
        let entry = passwd
            .iter()
            .find(|f| f.get(2).and_then(|s| s.parse().ok()) == Some(uid));
        let gid = entry.and_then(|f| f.get(3)?.parse().ok());
        (uid, entry.map(|f| f[0].clone()), gid)
    } else {
        let entry =
            passwd
                .iter()
                .find(|f| f[0] == user_part)
                .ok_or_else(|| Error::UnknownUser {
                    name: user_part.to_owned(),
                    rootfs: rootfs.to_owned(),
                })?;
        let uid = entry
            .get(2)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::MalformedUser(user_part.to_owned()))?;
        (
            uid,
            Some(user_part.to_owned()),
            entry.get(3).and_then(|s| s.parse().ok()),
        )
    };

    if let Some(g) = group_part {
        return Ok(User {
            uid,
            gid: resolve_group(g, rootfs, files)?,
            additional_gids: Vec::new(),
        });
    }
    let gid = primary_gid.unwrap_or(0);
    let mut additional_gids: Vec<u32> = match &name {
        Some(name) => read_db(files, rootfs, "/etc/group")?
            .iter()
            .filter(|f| {
                f.get(3)
                    .is_some_and(|members| members.split(',').any(|m| m == name))
            })
            .filter_map(|f| f.get(2)?.parse().ok())
            .filter(|g| *g != gid)
            .collect(),
        None => Vec::new(),
    };
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(User {
        uid,
        gid,
        additional_gids,
    })
}

/// Resolves a group name of the image's `/etc/group`, or a numeric gid (which needs no
/// entry), as `-u user:GROUP` and `--group-add GROUP` take it.
pub fn resolve_group(group: &str, rootfs: &Path, files: &dyn ImageFiles) -> Result<u32, Error> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    read_db(files, rootfs, "/etc/group")?
        .iter()
        .find(|f| f[0] == group)
        .and_then(|f| f.get(2)?.parse().ok())
        .ok_or_else(|| Error::UnknownGroup {
            name: group.to_owned(),
            rootfs: rootfs.to_owned(),
        })
}

/// The home directory of `uid` in the image's `/etc/passwd`, or `/` when it has no entry (or
/// an empty one): the `HOME` runc and crun give a process whose environment has none.
pub fn home_of(uid: u32, rootfs: &Path, files: &dyn ImageFiles) -> Result<String, Error> {
    let passwd = read_db(files, rootfs, "/etc/passwd")?;
    Ok(passwd
        .iter()
        .find(|f| f.get(2).and_then(|s| s.parse().ok()) == Some(uid))
        .and_then(|f| f.get(5))
        .filter(|home| !home.is_empty())
        .map_or_else(|| "/".to_owned(), Clone::clone))
}

/// The entries of a colon-separated database of the image, split into fields. A missing file
/// is an empty database, as for runc; one that cannot be read is an error.
fn read_db(
    files: &dyn ImageFiles,
    rootfs: &Path,
    file: &'static str,
) -> Result<Vec<Vec<String>>, Error> {
    let text = files.read(rootfs, file);
    let text = match text {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(Error::ImageFile {
                file,
                rootfs: rootfs.to_owned(),
                source,
            });
        }
    };
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The image's files read as plain paths: the tests' images hold no symlinks.
    #[derive(Debug)]
    struct Plain;

    impl ImageFiles for Plain {
        fn read(&self, rootfs: &Path, file: &str) -> std::io::Result<String> {
            std::fs::read_to_string(rootfs.join(file.trim_start_matches('/')))
        }
    }

    fn image() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\nnohome:x:1001:1001:::/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwheel:x:10:user\naudio:x:29:other,user\nuser:x:1000:\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn the_implicit_form_keeps_the_supplementary_groups() {
        let dir = image();
        let user = resolve_user("user", dir.path(), &Plain).unwrap();
        assert_eq!(
            (user.uid, user.gid, user.additional_gids),
            (1000, 1000, vec![10, 29])
        );
        // A uid with an entry is the implicit form too (runc: the user was matched).
        let user = resolve_user("1000", dir.path(), &Plain).unwrap();
        assert_eq!(user.additional_gids, vec![10, 29]);
    }

    #[test]
    fn a_group_in_the_spec_is_the_only_group() {
        let dir = image();
        for (spec, gid) in [
            ("user:user", 1000),
            ("user:wheel", 10),
            ("1000:1000", 1000),
            ("1000:wheel", 10),
        ] {
            let user = resolve_user(spec, dir.path(), &Plain).unwrap();
            assert_eq!(
                (user.uid, user.gid, user.additional_gids),
                (1000, gid, vec![]),
                "{spec}"
            );
        }
    }

    #[test]
    fn numeric_ids_need_no_entry_and_unknown_names_are_refused() {
        let dir = image();
        let user = resolve_user("4242:4343", dir.path(), &Plain).unwrap();
        assert_eq!((user.uid, user.gid), (4242, 4343));
        let err = resolve_user("nobody", dir.path(), &Plain).unwrap_err();
        assert!(err.to_string().contains("unknown user \"nobody\""), "{err}");
        assert!(
            resolve_user("user:staff", dir.path(), &Plain)
                .unwrap_err()
                .to_string()
                .contains("unknown group")
        );
        assert_eq!(resolve_group("audio", dir.path(), &Plain).unwrap(), 29);
        assert_eq!(resolve_group("77", dir.path(), &Plain).unwrap(), 77);
    }

    #[test]
    fn home_comes_from_the_entry_else_slash() {
        let dir = image();
        assert_eq!(home_of(0, dir.path(), &Plain).unwrap(), "/root");
        assert_eq!(home_of(1000, dir.path(), &Plain).unwrap(), "/home/user");
        assert_eq!(home_of(1001, dir.path(), &Plain).unwrap(), "/");
        assert_eq!(home_of(4242, dir.path(), &Plain).unwrap(), "/");
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(home_of(0, empty.path(), &Plain).unwrap(), "/");
    }
}
