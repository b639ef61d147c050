//! Which files of a Spack view go into the tarball, in which order.
//!
//! Kept: everything a runtime needs: `bin/`, `sbin/`, shared libraries and plugins, `libexec/`,
//! `etc/`, `share/` data (OpenMPI's help files and components live there), and the man pages of
//! sections 1, 5, 7 and 8 (commands, file formats, overviews, daemons), since the module sets
//! `MANPATH`. Dropped, as the upstream tarballs did: headers (`include/`), static and libtool
//! archives (`*.a`, `*.la`), build-system metadata (`pkgconfig/`, `cmake/`, `aclocal/`),
//! documentation (`share/doc`, `share/info`, `share/gtk-doc`, man section 3, the C API), Python
//! bytecode (`*.pyc`, `__pycache__/`) and Spack's own metadata (`.spack/`).
//!
//! Entries come in a stable order (depth first, names sorted bytewise), so two walks of the
//! same tree give the same archive.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use anyhow::{Context, Result, bail};

/// One entry of the view, by its `/`-separated path relative to the view root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A directory.
    Dir(String),
    /// A regular file; `executable` when any execute bit is set.
    File {
        /// Path relative to the view root.
        path: String,
        /// Whether any execute bit is set.
        executable: bool,
    },
    /// A symbolic link with a relative target that stays inside the view.
    Symlink {
        /// Path relative to the view root.
        path: String,
        /// The link target, relative.
        target: String,
    },
}

impl Entry {
    /// The entry's path relative to the view root.
    pub(crate) fn path(&self) -> &str {
        match self {
            Entry::Dir(p) => p,
            Entry::File { path, .. } | Entry::Symlink { path, .. } => path,
        }
    }
}

/// The selected entries and what was left out, by reason.
#[derive(Debug, Default)]
pub(crate) struct Selection {
    /// Entries in archive order.
    pub(crate) entries: Vec<Entry>,
    /// Number of files and directories dropped, by reason.
    pub(crate) dropped: BTreeMap<&'static str, usize>,
}

/// Why `rel` is left out, if it is.
fn drop_reason(rel: &str, is_dir: bool) -> Option<&'static str> {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let top = rel.split('/').next().unwrap_or(rel);
    if top == ".spack" || name.starts_with(".spack-") {
        return Some("Spack metadata");
    }
    if top == "include" {
        return Some("headers");
    }
    if name == "__pycache__" || (!is_dir && (name.ends_with(".pyc") || name.ends_with(".pyo"))) {
        return Some("Python bytecode");
    }
    if !is_dir && (name.ends_with(".a") || name.ends_with(".la")) {
        return Some("static or libtool archives");
    }
    let build_meta = [
        "lib/pkgconfig",
        "lib64/pkgconfig",
        "share/pkgconfig",
        "lib/cmake",
        "lib64/cmake",
        "share/cmake",
        "share/aclocal",
    ];
    let docs = [
        "share/doc",
        "share/info",
        "share/gtk-doc",
        "share/man/man3",
        "doc",
    ];
    let under = |dirs: &[&str]| {
        dirs.iter()
            .any(|d| rel == *d || rel.starts_with(&format!("{d}/")))
    };
    if under(&build_meta) {
        return Some("build-system metadata");
    }
    if under(&docs) {
        return Some("documentation");
    }
    None
}

/// Walks the view at `root` and selects what the tarball carries. Refuses special files
/// (FIFOs, sockets, devices), names that are not UTF-8 or contain line breaks, and symlinks
/// that leave the view; absolute symlinks into the view or the build tree are made relative by
/// `absolute_link`, which returns the target's path relative to the view root.
pub(crate) fn select(
    root: &Path,
    absolute_link: &dyn Fn(&str) -> Option<String>,
) -> Result<Selection> {
    let meta = std::fs::symlink_metadata(root).with_context(|| {
        format!(
            "the view {} does not exist; pass the `view` directory build-slurm wrote (--view, or --build-dir holding it)",
            root.display()
        )
    })?;
    if !meta.is_dir() {
        bail!("the view {} is not a directory", root.display());
    }
    let mut sel = Selection::default();
    let walker = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by(|a, b| {
            a.file_name()
                .as_encoded_bytes()
                .cmp(b.file_name().as_encoded_bytes())
        });
    let mut it = walker.into_iter();
    while let Some(entry) = it.next() {
        let entry = entry.with_context(|| format!("cannot read the view {}", root.display()))?;
        let rel_path = entry
            .path()
            .strip_prefix(root)
            .expect("walkdir stays under root");
        let rel = rel_path.to_str().with_context(|| {
            format!(
                "{} has a name that is not UTF-8; rename it (Spack never writes such names)",
                entry.path().display()
            )
        })?;
        if rel.contains(['\n', '\r', '\\']) {
            bail!(
                "{} has a line break or backslash in its name; the install script lists files one per line, so such names are refused",
                entry.path().display()
            );
        }
        let ft = entry.file_type();
        if let Some(reason) = drop_reason(rel, ft.is_dir()) {
            *sel.dropped.entry(reason).or_default() += 1;
            if ft.is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        let rel = rel.to_owned();
        if ft.is_dir() {
            sel.entries.push(Entry::Dir(rel));
        } else if ft.is_file() {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = entry
                .metadata()
                .with_context(|| format!("cannot stat {}", entry.path().display()))?
                .permissions()
                .mode();
            sel.entries.push(Entry::File {
                path: rel,
                executable: mode & 0o111 != 0,
            });
        } else if ft.is_symlink() {
            let target = std::fs::read_link(entry.path())
                .with_context(|| format!("cannot read the symlink {}", entry.path().display()))?;
            let target = link_target(&rel, &target, absolute_link).with_context(|| {
                format!(
                    "the symlink {} points to {}, outside the view; a relocatable tarball can only carry links inside it",
                    entry.path().display(),
                    target.display()
                )
            })?;
            sel.entries.push(Entry::Symlink { path: rel, target });
        } else {
            bail!(
                "{} is not a regular file, directory or symlink (a FIFO, socket or device); a view never holds one, so remove it",
                entry.path().display()
            );
        }
    }
    Ok(sel)
}

/// The relative target of the link at `rel`, if it stays inside the view.
fn link_target(
    rel: &str,
    target: &Path,
    absolute_link: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    let t = target.to_str()?;
    if t.is_empty() || t.contains(['\n', '\r']) {
        return None;
    }
    if target.is_absolute() {
        let in_view = absolute_link(t)?;
        let from = Path::new(rel)
            .parent()
            .map(|p| p.to_str().unwrap_or(""))
            .unwrap_or("");
        let origin = super::relocate::origin_relative(from, &in_view);
        let relative = origin
            .strip_prefix("$ORIGIN")
            .unwrap_or(&origin)
            .trim_start_matches('/');
        return Some(if relative.is_empty() {
            ".".into()
        } else {
            relative.into()
        });
    }
    // A relative target must resolve inside the view, lexically.
    let mut depth: Vec<&str> = Path::new(rel)
        .parent()
        .map(|p| {
            p.to_str()
                .unwrap_or("")
                .split('/')
                .filter(|c| !c.is_empty())
                .collect()
        })
        .unwrap_or_default();
    for c in Path::new(t).components() {
        match c {
            Component::Normal(n) => depth.push(n.to_str()?),
            Component::ParentDir => {
                depth.pop()?;
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_what_a_runtime_does_not_need() {
        for (p, dir) in [
            ("include", true),
            ("lib/libslurm.a", false),
            ("lib/libslurm.la", false),
            ("lib/pkgconfig", true),
            ("share/man/man3", true),
            ("share/doc", true),
            ("lib/python3/x.pyc", false),
            ("lib/python3/__pycache__", true),
            (".spack", true),
        ] {
            assert!(drop_reason(p, dir).is_some(), "{p} kept");
        }
        for p in [
            "bin/sinfo",
            "lib/libslurm.so.42",
            "lib/slurm/auth_munge.so",
            "share/man/man1/sinfo.1",
            "share/man/man5/slurm.conf.5",
            "share/openmpi/help-mpi-api.txt",
            "lib/libarchive.so",
            "sbin/slurmctld",
        ] {
            assert_eq!(drop_reason(p, false), None, "{p} dropped");
        }
    }

    #[test]
    fn symlinks_must_stay_inside() {
        let none = |_: &str| None;
        assert_eq!(
            link_target("lib/libx.so", Path::new("libx.so.1"), &none).as_deref(),
            Some("libx.so.1")
        );
        assert_eq!(
            link_target("lib/a/b", Path::new("../c"), &none).as_deref(),
            Some("../c")
        );
        assert_eq!(
            link_target("lib/a", Path::new("../../etc/passwd"), &none),
            None
        );
        assert_eq!(link_target("a", Path::new("/etc/passwd"), &none), None);
        let map = |t: &str| t.strip_prefix("/build/view/").map(str::to_owned);
        assert_eq!(
            link_target("bin/x", Path::new("/build/view/lib/y"), &map).as_deref(),
            Some("../lib/y")
        );
    }
}
