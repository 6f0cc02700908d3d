//! Subordinate id ranges: the `/etc/subuid` and `/etc/subgid` files of subuid(5) and
//! subgid(5), which set host ids aside for a user's user namespaces (what `newuidmap` and
//! podman read).

use serde::{Deserialize, Serialize};

/// `count` host ids from `start`: one `name:start:count` line of subuid(5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubIdRange {
    /// The first host id.
    pub start: u32,
    /// How many ids.
    pub count: u32,
}

impl SubIdRange {
    /// The first range given to `owner` (a user name, as shadow-utils' `useradd` writes
    /// them) in the text of a subuid or subgid file. Comments (`#`), blank lines, lines for
    /// other owners, malformed lines and empty ranges are skipped, as shadow-utils skips
    /// them; `None` when no line is left.
    pub fn first_of(text: &str, owner: &str) -> Option<SubIdRange> {
        text.lines().find_map(|line| {
            let mut fields = line.trim().split(':');
            let (name, start, count) = (fields.next()?, fields.next()?, fields.next()?);
            if name != owner || fields.next().is_some() {
                return None;
            }
            let range = SubIdRange {
                start: start.parse().ok()?,
                count: count.parse().ok()?,
            };
            let fits = u64::from(range.start) + u64::from(range.count) <= 1 << 32;
            (range.count > 0 && fits).then_some(range)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_valid_line_of_the_owner_wins() {
        let text = "# comment\n\
                    alice:100000:65536\n\
                    capsule:x:65536\n\
                    capsule:1:0\n\
                    capsule:1:2:3\n\
                    capsule:4294967295:2\n\
                    \n  capsule:231072:65536  \n\
                    capsule:500000:65536\n";
        assert_eq!(
            SubIdRange::first_of(text, "capsule"),
            Some(SubIdRange {
                start: 231_072,
                count: 65_536
            })
        );
        assert_eq!(SubIdRange::first_of(text, "bob"), None);
        assert_eq!(
            SubIdRange::first_of("capsule:0:4294967296", "capsule"),
            None
        );
    }
}
