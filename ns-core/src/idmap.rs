//! Writes the uid and gid maps ([`IdMaps`], data of the `plan` crate) of the container's user
//! namespace (user_namespaces(7)).

use std::path::Path;

use plan::{IdMap, IdMaps};

use crate::Error;

/// Writes the maps of the process `pid`, which has just entered a new user namespace.
/// `setgroups` is denied first when the writer is unprivileged, as the kernel requires
/// before an unprivileged gid_map.
pub(crate) fn write_id_maps(maps: &IdMaps, pid: i32, privileged: bool) -> Result<(), Error> {
    let proc = Path::new("/proc").join(pid.to_string());
    if !privileged {
        write_file(&proc.join("setgroups"), "deny")?;
    }
    write_file(&proc.join("gid_map"), &render(&maps.gids))?;
    write_file(&proc.join("uid_map"), &render(&maps.uids))
}

fn render(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
        .collect()
}

fn write_file(path: &Path, content: &str) -> Result<(), Error> {
    std::fs::write(path, content).map_err(|e| {
        Error::host(
            format!("cannot write {content:?} to {}", path.display()),
            nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootless_maps_render_as_one_line() {
        let maps = IdMaps::rootless(1000, 1000);
        assert_eq!(render(&maps.uids), "0 1000 1\n");
    }
}
