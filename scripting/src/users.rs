//! Users and groups as the image names them: `--user`, `--group-add` and the default `HOME`
//! are resolved against the root filesystem's own `/etc/passwd` and `/etc/group`, as docker
//! and runc do, never the host's. Both files are opened inside the root
//! ([`ns_core::open_in_root`]), so an image whose `/etc/passwd` is a symlink to a host path
//! reads its own copy of that path, or nothing.

use std::io::ErrorKind;
use std::path::Path;

use ns_core::User;

/// Resolves `name`, `uid`, `name:group`, `uid:gid` (and mixes) for the image at `rootfs`.
/// A numeric id needs no entry; a name must exist in the image.
///
/// Supplementary groups follow runc's `GetExecUser` and docker's documented behaviour
/// (moby/moby#9360): the implicit form (`name`, or a `uid` with an entry) gets the groups
/// `/etc/group` lists the user in; a form with a group (`user:group`, `uid:gid`) runs with
/// that group alone.
pub fn resolve_user(spec: &str, rootfs: &Path) -> Result<User, String> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_db(rootfs, "/etc/passwd")?;

    let (uid, name, primary_gid) = if let Ok(uid) = user_part.parse::<u32>() {
        let entry = passwd
            .iter()
            .find(|f| f.get(2).and_then(|s| s.parse().ok()) == Some(uid));
        let gid = entry.and_then(|f| f.get(3)?.parse().ok());
        (uid, entry.map(|f| f[0].clone()), gid)
    } else {
        let entry = passwd
            .iter()
            .find(|f| f[0] == user_part)
            .ok_or_else(|| {
                format!(
                    "unknown user {user_part:?}: no such entry in {}/etc/passwd; give a numeric uid or a user of the image",
                    rootfs.display()
                )
            })?;
        let uid = entry.get(2).and_then(|s| s.parse().ok()).ok_or_else(|| {
            format!("user {user_part:?} has a malformed entry in the image's /etc/passwd")
        })?;
        (
            uid,
            Some(user_part.to_owned()),
            entry.get(3).and_then(|s| s.parse().ok()),
        )
    };

    if let Some(g) = group_part {
        return Ok(User {
            uid,
            gid: resolve_group(g, rootfs)?,
            additional_gids: Vec::new(),
        });
    }
    let gid = primary_gid.unwrap_or(0);
    let mut additional_gids: Vec<u32> = match &name {
        Some(name) => read_db(rootfs, "/etc/group")?
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
pub fn resolve_group(group: &str, rootfs: &Path) -> Result<u32, String> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    read_db(rootfs, "/etc/group")?
        .iter()
        .find(|f| f[0] == group)
        .and_then(|f| f.get(2)?.parse().ok())
        .ok_or_else(|| {
            format!(
                "unknown group {group:?}: no such entry in {}/etc/group; give a numeric gid or a group of the image",
                rootfs.display()
            )
        })
}

/// The home directory of `uid` in the image's `/etc/passwd`, or `/` when it has no entry (or
/// an empty one): the `HOME` runc and crun give a process whose environment has none.
pub fn home_of(uid: u32, rootfs: &Path) -> Result<String, String> {
    let passwd = read_db(rootfs, "/etc/passwd")?;
    Ok(passwd
        .iter()
        .find(|f| f.get(2).and_then(|s| s.parse().ok()) == Some(uid))
        .and_then(|f| f.get(5))
        .filter(|home| !home.is_empty())
        .map_or_else(|| "/".to_owned(), Clone::clone))
}

/// The most of an image's `/etc/passwd` or `/etc/group` the launcher reads (32 MiB: some
/// 400 000 entries).
const MAX_DB_BYTES: u64 = 32 << 20;

/// The entries of a colon-separated database of the image, split into fields. A missing file
/// is an empty database, as for runc; one that cannot be read is an error.
fn read_db(rootfs: &Path, file: &str) -> Result<Vec<Vec<String>>, String> {
    let text = ns_core::open_in_root(rootfs, Path::new(file)).and_then(|f| {
        // The launcher reads the untrusted image with its own memory: a bounded amount.
        let text = std::io::read_to_string(std::io::Read::take(f, MAX_DB_BYTES + 1))?;
        if text.len() as u64 > MAX_DB_BYTES {
            return Err(std::io::Error::other(format!(
                "larger than {} MiB",
                MAX_DB_BYTES >> 20
            )));
        }
        Ok(text)
    });
    let text = match text {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(format!(
                "cannot read the image's {file} in {}: {e}",
                rootfs.display()
            ));
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
        let user = resolve_user("user", dir.path()).unwrap();
        assert_eq!(
            (user.uid, user.gid, user.additional_gids),
            (1000, 1000, vec![10, 29])
        );
        // A uid with an entry is the implicit form too (runc: the user was matched).
        let user = resolve_user("1000", dir.path()).unwrap();
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
            let user = resolve_user(spec, dir.path()).unwrap();
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
        let user = resolve_user("4242:4343", dir.path()).unwrap();
        assert_eq!((user.uid, user.gid), (4242, 4343));
        let err = resolve_user("nobody", dir.path()).unwrap_err();
        assert!(err.contains("unknown user \"nobody\""), "{err}");
        assert!(
            resolve_user("user:staff", dir.path())
                .unwrap_err()
                .contains("unknown group")
        );
        assert_eq!(resolve_group("audio", dir.path()), Ok(29));
        assert_eq!(resolve_group("77", dir.path()), Ok(77));
    }

    #[test]
    fn home_comes_from_the_entry_else_slash() {
        let dir = image();
        assert_eq!(home_of(0, dir.path()).unwrap(), "/root");
        assert_eq!(home_of(1000, dir.path()).unwrap(), "/home/user");
        assert_eq!(home_of(1001, dir.path()).unwrap(), "/");
        assert_eq!(home_of(4242, dir.path()).unwrap(), "/");
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(home_of(0, empty.path()).unwrap(), "/");
    }

    #[test]
    fn an_absolute_symlink_reads_the_image_s_file_not_the_host_s() {
        let host = tempfile::tempdir().unwrap();
        let host_passwd = host.path().join("passwd");
        std::fs::write(&host_passwd, "intruder:x:0:0::/host-secret:/bin/sh\n").unwrap();
        let dir = image();
        let passwd = dir.path().join("etc/passwd");
        std::fs::remove_file(&passwd).unwrap();
        std::os::unix::fs::symlink(&host_passwd, &passwd).unwrap();
        assert_eq!(home_of(0, dir.path()).unwrap(), "/");
        assert!(resolve_user("intruder", dir.path()).is_err());
    }
}
