//! `sbang` for relocated scripts. Spack rewrites a script whose `#!` line would be too long to
//! start `#!/bin/sh <install root>/bin/sbang`, followed by the real `#!` line; relocation points
//! that first line at the new install tree's `bin/sbang`. This module puts a working `sbang`
//! there: our own minimal POSIX-sh equivalent ([`SCRIPT`], `src/install/sbang.sh`), not
//! Spack's.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::paths::no_follow_path;
use crate::relocate::BuildInfo;

/// The `sbang` script.
pub const SCRIPT: &str = include_str!("sbang.sh");

/// Where `sbang` goes below an install root.
pub const REL_PATH: &str = "bin/sbang";

/// The first line of a script that runs through `sbang` at `sbang`.
pub fn shebang(sbang: &Path) -> String {
    format!("#!/bin/sh {}", sbang.display())
}

/// Whether a text file the build info lists in `prefix` starts with the `sbang` line of
/// `sbang` (read after relocation, never through a symlink).
pub fn needed(prefix: &Path, info: &BuildInfo, sbang: &Path) -> Result<bool> {
    let want = shebang(sbang);
    for rel in &info.relocate_textfiles {
        let p = no_follow_path(prefix, Path::new(rel))?;
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if !m.is_file() {
            continue;
        }
        let mut head = Vec::with_capacity(want.len() + 1);
        fs::File::open(&p)
            .with_context(|| format!("cannot read {}", p.display()))?
            .take(want.len() as u64 + 1)
            .read_to_end(&mut head)?;
        if head.starts_with(want.as_bytes())
            && matches!(head.get(want.len()), None | Some(b'\n' | b'\r'))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Puts [`SCRIPT`] at `<root>/bin/sbang` (mode 0755) unless a regular file is already there
/// (Spack's own, or ours from an earlier install). Refuses to write through a symlink. Returns
/// the path when it was written now.
pub fn install(root: &Path) -> Result<Option<PathBuf>> {
    let bin = root.join("bin");
    match fs::symlink_metadata(&bin) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!(
            "{} is not a directory, so sbang cannot be installed there; scripts relocated to use {}/{REL_PATH} would not run",
            bin.display(),
            root.display()
        ),
        Err(_) => {
            fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?
        }
    }
    let path = no_follow_path(root, Path::new(REL_PATH))?;
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => return Ok(None),
        Ok(_) => bail!(
            "{} exists but is not a regular file; remove it so sbang can be installed",
            path.display()
        ),
        Err(_) => {}
    }
    let mut tmp = tempfile::NamedTempFile::new_in(&bin)
        .with_context(|| format!("cannot write in {}", bin.display()))?;
    std::io::Write::write_all(&mut tmp, SCRIPT.as_bytes())?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))?;
    tmp.persist_noclobber(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Some(path))
}

/// Removes the `sbang` [`install`] put at `<root>/bin/sbang` (only a regular file holding
/// exactly [`SCRIPT`]), and `<root>/bin` when that leaves it empty. For cleaning up after a
/// failed install; errors are ignored.
pub fn uninstall(root: &Path) {
    let Ok(path) = no_follow_path(root, Path::new(REL_PATH)) else {
        return;
    };
    let ours = fs::symlink_metadata(&path).is_ok_and(|m| m.is_file())
        && fs::read(&path).is_ok_and(|b| b == SCRIPT.as_bytes());
    if ours && fs::remove_file(&path).is_ok() {
        let _ = fs::remove_dir(root.join("bin"));
    }
}
