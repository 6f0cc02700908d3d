//! Small file helpers that turn `io::Error`s into [`Error`]s naming the path and the value.
//!
//! Cgroup files are written without `O_CREAT`: a file that is not there means the controller is
//! not there, and creating a plain file in its place (as `fs::write` would in a test fixture) would
//! hide that.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::controller::Controller;
use crate::error::{Error, Result};

/// Reads a whole file.
pub(crate) fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads a whole file, or `None` if it does not exist (the controller is not enabled there).
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes `value` to an existing file in one `write(2)`, as cgroup files want.
pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    let wrap = |source| Error::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(wrap)?;
    file.write_all(value.as_bytes()).map_err(wrap)
}

/// Writes each of `values` to `path` with a write(2) of its own on one open file: for the
/// control files that take one entry per write (v1 `devices.allow`).
pub(crate) fn write_each(path: &Path, values: &[&str]) -> Result<()> {
    let wrap = |value: &str, source| Error::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| wrap(values.first().copied().unwrap_or_default(), e))?;
    for value in values {
        file.write_all(value.as_bytes())
            .map_err(|e| wrap(value, e))?;
    }
    Ok(())
}

/// Parses a file's whole (trimmed) contents as a number.
pub(crate) fn parse<T: FromStr>(path: &Path, text: &str) -> Result<T> {
    let text = text.trim();
    text.parse().map_err(|_| Error::Parse {
        path: path.to_owned(),
        value: text.to_owned(),
        reason: "expected a non-negative integer",
    })
}

/// Reads a file holding one number, or `None` if the file does not exist.
pub(crate) fn read_u64_opt(path: &Path) -> Result<Option<u64>> {
    read_opt(path)?.map(|text| parse(path, &text)).transpose()
}

/// Finds `key` in a flat-keyed file (`key value` lines, as `cgroup.events`, `cpu.stat`,
/// `memory.events` and v1 `memory.oom_control`) and parses its value.
pub(crate) fn keyed_u64(path: &Path, text: &str, key: &str) -> Result<Option<u64>> {
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| parse(path, v))
        .transpose()
}

/// The names of the subdirectories of `dir`; none if `dir` does not exist.
pub(crate) fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let wrap = |source| Error::ListDir {
        path: dir.to_owned(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(wrap(err)),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(wrap)?;
        if entry.file_type().map_err(wrap)?.is_dir() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Parses `cgroup.procs`: one pid per line.
pub(crate) fn parse_pids(path: &Path, text: &str) -> Result<Vec<i32>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| parse(path, l))
        .collect()
}

/// The first of two files that exists in `dir`: interface files that differ between kernels
/// or I/O schedulers (`blkio.weight` / `blkio.bfq.weight`); [`Error::Unavailable`] for
/// `controller` when neither does.
pub(crate) fn first_existing(
    dir: &Path,
    [first, second]: [&str; 2],
    controller: Controller,
) -> Result<PathBuf> {
    [first, second]
        .iter()
        .map(|name| dir.join(name))
        .find(|file| file.exists())
        .ok_or_else(|| Error::Unavailable {
            controller,
            reason: format!("neither {first} nor {second} is in {}", dir.display()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_refuses_to_create_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(&dir.path().join("memory.max"), "42").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("failed to write \"42\" to "), "{msg}");
        assert!(msg.contains("memory.max: No such file"), "{msg}");
    }

    #[test]
    fn keyed_values() {
        let path = Path::new("cpu.stat");
        let text = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n";
        assert_eq!(keyed_u64(path, text, "usage_usec").unwrap(), Some(1500));
        assert_eq!(keyed_u64(path, text, "nr_periods").unwrap(), None);
        let err = keyed_u64(path, "usage_usec lots\n", "usage_usec").unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to parse \"lots\" in cpu.stat: expected a non-negative integer"
        );
    }

    #[test]
    fn pids_lists() {
        let path = Path::new("cgroup.procs");
        assert_eq!(parse_pids(path, "12\n345\n").unwrap(), vec![12, 345]);
        assert_eq!(parse_pids(path, "").unwrap(), Vec::<i32>::new());
    }
}
