//! Tempdir fixtures standing in for cgroup directories.

use tempfile::TempDir;

/// A directory holding empty files with these names, as the kernel would show them.
pub(crate) fn fixture(files: &[&str]) -> TempDir {
    let dir = tempfile::tempdir().expect("create tempdir");
    for name in files {
        std::fs::write(dir.path().join(name), "").expect("create fixture file");
    }
    dir
}

/// The contents of a fixture file.
pub(crate) fn read(dir: &TempDir, name: &str) -> String {
    std::fs::read_to_string(dir.path().join(name)).expect("read fixture file")
}
