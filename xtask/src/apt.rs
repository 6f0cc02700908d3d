//! Debian packages fetched with `apt-get download` (never installed), each checked against the
//! SHA-256 of apt's signed index.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{self, progress};

/// A `.deb` as apt's index describes it.
struct Deb {
    filename: String,
    sha256: String,
}

/// A verified package file.
#[derive(Debug)]
pub struct Downloaded {
    pub path: PathBuf,
    pub filename: String,
    pub sha256: String,
}

/// Downloads `package` into `downloads` (or reuses a copy whose hash still matches) and returns
/// the verified file.
pub fn download(package: &str, downloads: &Path) -> Result<Downloaded> {
    fs::create_dir_all(downloads).with_context(|| format!("creating {}", downloads.display()))?;
    let deb = query_deb(package, downloads)?;
    let path = fetch_deb(package, downloads, &deb)?;
    Ok(Downloaded {
        path,
        filename: deb.filename,
        sha256: deb.sha256,
    })
}

/// A control field of a `.deb` (`Version`, `Depends`).
pub fn field(deb: &Path, name: &str) -> Result<String> {
    let value = util::output(
        Command::new("dpkg-deb").arg("-f").arg(deb).arg(name),
        "dpkg-deb must be able to read the downloaded package; delete it and run again",
    )?
    .trim()
    .to_string();
    if value.is_empty() {
        bail!("{} has no {name} field", deb.display());
    }
    Ok(value)
}

/// Unpacks a `.deb` into `dir` with `dpkg-deb -x`.
pub fn unpack(deb: &Path, dir: &Path) -> Result<()> {
    util::run(
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir),
        "dpkg-deb must be able to unpack the downloaded package; delete it and run again",
    )
}

/// Asks apt which file `apt-get download` would fetch and its SHA-256, running `apt-get update`
/// once if apt does not know the package yet (a fresh machine has empty package lists).
fn query_deb(package: &str, downloads: &Path) -> Result<Deb> {
    // `--print-uris` prints nothing for a file already present in the current directory, so ask
    // from an empty one.
    let query_dir = downloads.join(format!(".query-{}", std::process::id()));
    fs::create_dir_all(&query_dir).with_context(|| format!("creating {}", query_dir.display()))?;
    let result = query_deb_in(package, &query_dir);
    util::remove_dir_if_exists(&query_dir)?;
    result
}

fn query_deb_in(package: &str, dir: &Path) -> Result<Deb> {
    let print_uris = || {
        let mut cmd = Command::new("apt-get");
        cmd.args(["download", "--print-uris", package])
            .current_dir(dir);
        let line = util::describe(&cmd);
        let out = cmd.output().with_context(|| {
            format!("could not start `{line}`: is this a Debian machine with apt?")
        })?;
        anyhow::Ok((line, out))
    };
    let (mut line, mut out) = print_uris()?;
    if !out.status.success() && cannot_find_package(&String::from_utf8_lossy(&out.stderr)) {
        progress!("apt does not know {package} yet; running apt-get update");
        util::run(
            Command::new("apt-get").arg("update"),
            "apt-get update must reach the Debian mirrors; check the network and /etc/apt/sources.list",
        )?;
        (line, out) = print_uris()?;
    }
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): run `apt-get update` first; {package} is in Debian\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    // 'URI' FILENAME SIZE SHA256:HEX
    let fields: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with('\''))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let (Some(filename), Some(hash)) = (fields.get(1), fields.get(3)) else {
        bail!("unexpected output from `{line}`: {stdout:?}");
    };
    let Some(sha256) = hash.strip_prefix("SHA256:") else {
        bail!("apt gave no SHA256 for {package} (got {hash:?}); check the apt sources");
    };
    if filename.contains('/') || !filename.ends_with(".deb") {
        bail!("apt named a strange file for {package}: {filename:?}");
    }
    Ok(Deb {
        filename: (*filename).to_string(),
        sha256: sha256.to_ascii_lowercase(),
    })
}

fn cannot_find_package(stderr: &str) -> bool {
    stderr.contains("Unable to locate package")
        || stderr.contains("has no installation candidate")
        || stderr.contains("Can't select candidate")
}

/// Returns the path of the verified `.deb` in `downloads`, downloading it if needed.
fn fetch_deb(package: &str, downloads: &Path, deb: &Deb) -> Result<PathBuf> {
    let path = downloads.join(&deb.filename);
    if path.is_file() && util::sha256(&path)? == deb.sha256 {
        progress!("using {} (SHA-256 matches apt's index)", path.display());
        return Ok(path);
    }
    let mut cmd = Command::new("apt-get");
    cmd.arg("download");
    if nix::unistd::geteuid().is_root() {
        // apt's `_apt` sandbox user cannot write into our target dir; download as root rather
        // than print a warning (this is what apt falls back to anyway).
        cmd.args(["-o", "APT::Sandbox::User=root"]);
    }
    cmd.arg(package).current_dir(downloads);
    util::run(
        &mut cmd,
        &format!(
            "apt-get download {package} failed: run `apt-get update` first and check the network"
        ),
    )?;
    let got = util::sha256(&path)?;
    if got != deb.sha256 {
        bail!(
            "{} has SHA-256 {got}, apt's index says {}: delete it and run again",
            path.display(),
            deb.sha256
        );
    }
    Ok(path)
}
