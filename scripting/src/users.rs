//! Resolving `--user` against the root filesystem's own `/etc/passwd` and `/etc/group`, as
//! docker does: names mean what they mean inside the image, not on the host.

use std::path::Path;

use ns_core::User;

/// Resolves `name`, `uid`, `name:group`, `uid:gid` (and mixes) for the image at `rootfs`.
/// A numeric id needs no entry; a name must exist in the image. Supplementary groups are the
/// ones `/etc/group` lists the user in.
pub fn resolve_user(spec: &str, rootfs: &Path) -> Result<User, String> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_db(rootfs, "etc/passwd");
    let group = read_db(rootfs, "etc/group");

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

    let gid = match group_part {
        None => primary_gid.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f.get(2)?.parse().ok())
                .ok_or_else(|| {
                    format!(
                        "unknown group {g:?}: no such entry in {}/etc/group; give a numeric gid or a group of the image",
                        rootfs.display()
                    )
                })?,
        },
    };
    let mut additional_gids: Vec<u32> = match &name {
        Some(name) => group
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

fn read_db(rootfs: &Path, file: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(rootfs.join(file))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwheel:x:10:user\nuser:x:1000:\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn names_resolve_inside_the_image_with_supplementary_groups() {
        let dir = image();
        let user = resolve_user("user", dir.path()).unwrap();
        assert_eq!(
            (user.uid, user.gid, user.additional_gids),
            (1000, 1000, vec![10])
        );
        let user = resolve_user("user:wheel", dir.path()).unwrap();
        assert_eq!((user.uid, user.gid), (1000, 10));
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
    }
}
