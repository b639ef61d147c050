//! Paths under a root that never leave it and never pass through a link: the one place that
//! turns an untrusted relative path (an archive entry, a name in a relocation list, a file a
//! manifest names) into a path on disk. Used by the installer's extraction, the relocation
//! engine and the tarball packer.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Splits an archive path into checked components: refuses absolute paths and `..`, drops
/// `.` and empty components.
pub(crate) fn components(name: &[u8], what: &str) -> Result<Vec<OsString>> {
    let display = String::from_utf8_lossy(name);
    if name.first() == Some(&b'/') {
        bail!("{what} {display:?} is an absolute path; an archive may only hold relative paths");
    }
    let mut out = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => bail!(
                "{what} {display:?} contains a `..` component, which could write outside the target"
            ),
            c => out.push(OsStr::from_bytes(c).to_owned()),
        }
    }
    Ok(out)
}

pub(crate) fn join(root: &Path, comps: &[OsString]) -> PathBuf {
    let mut p = root.to_path_buf();
    for c in comps {
        p.push(c);
    }
    p
}

/// Checks that no existing component of `rel` under `root`, except possibly the last, is a
/// symlink (or other non-directory), and returns the joined path.
pub(crate) fn no_follow_path(root: &Path, rel: &Path) -> Result<PathBuf> {
    let comps = components(rel.as_os_str().as_bytes(), "path")?;
    let Some((_, parents)) = comps.split_last() else {
        bail!("empty path");
    };
    let mut p = root.to_path_buf();
    for c in parents {
        p.push(c);
        let m = fs::symlink_metadata(&p).with_context(|| format!("{}", p.display()))?;
        if !m.file_type().is_dir() {
            bail!(
                "{} is a {}, not a directory; refusing to follow it",
                p.display(),
                kind(&m)
            );
        }
    }
    Ok(join(root, &comps))
}

pub(crate) fn kind(m: &fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "file"
    } else {
        "special file"
    }
}
