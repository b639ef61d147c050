//! Making a Spack view relocatable: build-tree paths become `$ORIGIN`-relative RPATHs in ELF
//! files and the placeholder [`PLACEHOLDER`] in text files (`data/install.sh` puts the real
//! location back after unpacking).
//!
//! A Spack build writes two kinds of absolute paths into what it installs: the package prefixes
//! under the (padded) install tree, `<root>/__spack_path_placeholder__/…/<name>-<version>-<hash>`,
//! and the view root. The view merges every package into one tree (projection `all: "."`), so
//! `<package prefix>/lib/x` and `<view root>/lib/x` are both `view/lib/x` in the tarball.

use std::path::Path;

use anyhow::{Result, bail};

/// What text files say instead of the absolute path of `view/` after unpacking.
pub const PLACEHOLDER: &str = "@SLURM_FACTORY_PREFIX@";

/// The absolute paths of the build that must not survive into the tarball.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuildPaths {
    /// Spack's install tree root as configured (unpadded; the padding follows it).
    install_root: String,
    /// Where the view was generated, when known: the root as configured and, when that is a
    /// symlink (Spack 1.0 points it at `._view/<hash>`), the directory it resolves to.
    view_roots: Vec<String>,
}

impl BuildPaths {
    /// Paths from the install tree root and, optionally, the view root. Both are absolute and
    /// long enough not to match ordinary text by accident.
    pub(crate) fn new(install_root: &str, view_roots: &[String]) -> Result<Self> {
        let clean = |p: &str, what: &str| -> Result<String> {
            let p = p.trim_end_matches('/');
            if !p.starts_with('/') || p.len() < 8 || p.contains(['\n', '\0', ':']) {
                bail!(
                    "the build's {what} {p:?} is not a usable absolute path (at least 8 characters, no ':' or line breaks); pass the install tree root Spack built into with --build-prefix"
                );
            }
            Ok(p.to_owned())
        };
        Ok(BuildPaths {
            install_root: clean(install_root, "install tree root")?,
            view_roots: view_roots
                .iter()
                .map(|v| clean(v, "view root"))
                .collect::<Result<_>>()?,
        })
    }

    /// The install tree root.
    pub(crate) fn install_root(&self) -> &str {
        &self.install_root
    }

    /// The strings whose presence marks a file as naming the build (the roots).
    pub(crate) fn needles(&self) -> Vec<&str> {
        let mut v = vec![self.install_root.as_str()];
        v.extend(self.view_roots.iter().map(String::as_str));
        v
    }

    /// Where an absolute build path lands in the view: `Some("lib/slurm")`, `Some("")` for the
    /// view root, `None` when `path` is not under the build's trees or names no package prefix.
    /// Also returns how many bytes of `path` the build prefix part spans (the part the
    /// placeholder replaces).
    pub(crate) fn map(&self, path: &str) -> Option<(usize, String)> {
        let under = |root: &str| -> Option<usize> {
            let rest = path.strip_prefix(root)?;
            (rest.is_empty() || rest.starts_with('/')).then_some(root.len())
        };
        if let Some(n) = self.view_roots.iter().find_map(|v| under(v)) {
            return Some((n, path[n..].trim_start_matches('/').to_owned()));
        }
        let n = under(&self.install_root)?;
        // The package prefix ends at the first `<name>-<version>-<hash>` component.
        let mut end = n;
        for comp in path[n..].split('/') {
            end += comp.len();
            if is_spack_prefix_dir(comp) {
                let rest = path[end..].trim_start_matches('/').to_owned();
                return Some((end, rest));
            }
            end += 1; // the '/'
        }
        None
    }

    /// Replaces every build path in `text` by [`PLACEHOLDER`] plus its place in the view.
    /// Returns `None` when nothing matched; the second value counts build paths that name no
    /// package (left as they were).
    pub(crate) fn rewrite_text(&self, text: &[u8]) -> (Option<Vec<u8>>, usize) {
        let roots: Vec<&[u8]> = self.needles().into_iter().map(str::as_bytes).collect();
        let mut out: Vec<u8> = Vec::new();
        let mut copied = 0;
        let mut unmapped = 0;
        let mut changed = false;
        let mut i = 0;
        while i < text.len() {
            let Some((start, _)) = roots
                .iter()
                .filter_map(|r| find(&text[i..], r).map(|p| (i + p, r.len())))
                .min()
            else {
                break;
            };
            let mut end = start;
            while end < text.len() && is_path_byte(text[end]) {
                end += 1;
            }
            let candidate = std::str::from_utf8(&text[start..end]).ok();
            match candidate.and_then(|p| self.map(p)) {
                Some((prefix_len, _)) => {
                    out.extend_from_slice(&text[copied..start]);
                    out.extend_from_slice(PLACEHOLDER.as_bytes());
                    copied = start + prefix_len;
                    changed = true;
                }
                None => unmapped += 1,
            }
            i = end.max(start + 1);
        }
        if !changed {
            return (None, unmapped);
        }
        out.extend_from_slice(&text[copied..]);
        (Some(out), unmapped)
    }

    /// The new RPATH of an ELF file at `elf_path` (relative to the view root) whose current
    /// entries are `entries`: build paths become `$ORIGIN/…` relative to the file, `$ORIGIN`
    /// entries and paths outside the build stay, build paths that name no package are dropped.
    pub(crate) fn rewrite_rpath(&self, elf_path: &str, entries: &[String]) -> Vec<String> {
        let dir = Path::new(elf_path)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut out: Vec<String> = Vec::new();
        for e in entries {
            let new = if let Some((_, rel)) = self.map(e) {
                Some(origin_relative(&dir, &rel))
            } else if e.starts_with(&self.install_root)
                || self.view_roots.iter().any(|v| e.starts_with(v.as_str()))
            {
                None
            } else {
                Some(e.clone())
            };
            if let Some(n) = new
                && !out.contains(&n)
            {
                out.push(n);
            }
        }
        out
    }
}

/// Whether `bytes` start like an ELF file.
pub(crate) fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

/// Rewrites the RPATH/RUNPATH of the ELF file `bytes` (at `rel` in the view) in place with
/// [`BuildPaths::rewrite_rpath`]. Returns whether anything changed.
pub(crate) fn relocate_elf(bytes: &mut [u8], rel: &str, paths: &BuildPaths) -> Result<bool> {
    use crate::elf::{Edit, Field};
    let path = Path::new(rel);
    let Some(elf) = crate::elf::parse(path, bytes)? else {
        return Ok(false);
    };
    let mut edits = Vec::new();
    for field in [Field::Rpath, Field::Runpath] {
        let Some(old) = elf.field(field) else {
            continue;
        };
        let text = std::str::from_utf8(&old.value).map_err(|_| {
            anyhow::anyhow!("the {field} of {rel} is not UTF-8; Spack never writes such paths")
        })?;
        let entries: Vec<String> = text
            .split(':')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect();
        let new = paths.rewrite_rpath(rel, &entries).join(":");
        if new.as_bytes() != old.value.as_slice() {
            edits.push(Edit {
                field,
                value: new.into_bytes(),
            });
        }
    }
    Ok(crate::elf::apply_in_memory(path, bytes, &edits)?)
}

/// `$ORIGIN`, `$ORIGIN/../lib`, … : the path of view directory `target` from view directory
/// `from`.
pub(crate) fn origin_relative(from: &str, target: &str) -> String {
    let f: Vec<&str> = from.split('/').filter(|c| !c.is_empty()).collect();
    let t: Vec<&str> = target.split('/').filter(|c| !c.is_empty()).collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut parts = vec!["$ORIGIN".to_owned()];
    parts.extend(std::iter::repeat_n("..".to_owned(), f.len() - common));
    parts.extend(t[common..].iter().map(|s| (*s).to_owned()));
    parts.join("/")
}

/// `<name>-<version>-<hash>`: Spack's install directory of one package, ending in a 32-character
/// base32 DAG hash.
fn is_spack_prefix_dir(comp: &str) -> bool {
    match comp.rsplit_once('-') {
        Some((head, hash)) => {
            !head.is_empty()
                && hash.len() == 32
                && hash
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        }
        None => false,
    }
}

pub(crate) fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"/._-+~@%,=".contains(&b)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        match hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)
        {
            Some(p) => {
                let at = i + p;
                if &hay[at..at + needle.len()] == needle {
                    return Some(at);
                }
                i = at + 1;
            }
            None => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "abcdefghijklmnopqrstuvwxyz234567";

    fn paths() -> BuildPaths {
        BuildPaths::new(
            "/slurm-factory/ns/install",
            &["/slurm-factory/ns/view".to_owned()],
        )
        .unwrap()
    }

    fn pkg(name: &str) -> String {
        format!(
            "/slurm-factory/ns/install/__spack_path_placeholder__/__spack_path_placeholder__/linux-x86_64_v2/{name}-1.0-{HASH}"
        )
    }

    #[test]
    fn maps_package_prefixes_and_the_view_root() {
        let p = paths();
        let lib = format!("{}/lib/slurm", pkg("slurm"));
        assert_eq!(p.map(&lib), Some((pkg("slurm").len(), "lib/slurm".into())));
        assert_eq!(p.map(&pkg("munge")).unwrap().1, "");
        assert_eq!(
            p.map("/slurm-factory/ns/view/share/man").unwrap().1,
            "share/man"
        );
        assert_eq!(p.map("/slurm-factory/ns/install/no-hash/lib"), None);
        assert_eq!(p.map("/slurm-factory/ns/installx/a"), None);
        assert_eq!(p.map("/usr/lib"), None);
    }

    #[test]
    fn rewrites_text_and_counts_what_it_cannot_map() {
        let p = paths();
        let text = format!(
            "#!{}/bin/perl\nLIBS={}/lib:/usr/lib\nodd=/slurm-factory/ns/install/junk\nview=/slurm-factory/ns/view\n",
            pkg("perl"),
            pkg("munge")
        );
        let (new, unmapped) = p.rewrite_text(text.as_bytes());
        assert_eq!(
            String::from_utf8(new.unwrap()).unwrap(),
            "#!@SLURM_FACTORY_PREFIX@/bin/perl\nLIBS=@SLURM_FACTORY_PREFIX@/lib:/usr/lib\nodd=/slurm-factory/ns/install/junk\nview=@SLURM_FACTORY_PREFIX@\n"
        );
        assert_eq!(unmapped, 1);
        assert_eq!(p.rewrite_text(b"nothing here"), (None, 0));
    }

    #[test]
    fn rpaths_become_origin_relative() {
        let p = paths();
        let entries = vec![
            format!("{}/lib", pkg("slurm")),
            format!("{}/lib64", pkg("openssl")),
            format!("{}/lib", pkg("munge")),
            "/usr/lib/x86_64-linux-gnu".to_owned(),
            "/slurm-factory/ns/install/stray".to_owned(),
            "$ORIGIN".to_owned(),
        ];
        assert_eq!(
            p.rewrite_rpath("bin/sinfo", &entries),
            [
                "$ORIGIN/../lib",
                "$ORIGIN/../lib64",
                "/usr/lib/x86_64-linux-gnu",
                "$ORIGIN"
            ]
        );
        assert_eq!(
            p.rewrite_rpath("lib/slurm/auth_munge.so", &entries[..1]),
            ["$ORIGIN/.."]
        );
        assert_eq!(p.rewrite_rpath("lib/libx.so", &entries[..1]), ["$ORIGIN"]);
    }

    #[test]
    fn origin_paths() {
        assert_eq!(origin_relative("bin", "lib"), "$ORIGIN/../lib");
        assert_eq!(origin_relative("", "lib"), "$ORIGIN/lib");
        assert_eq!(origin_relative("lib/slurm", "lib"), "$ORIGIN/..");
        assert_eq!(origin_relative("lib", "lib/slurm"), "$ORIGIN/slurm");
    }

    #[test]
    fn refuses_unusable_roots() {
        assert!(BuildPaths::new("relative/path", &[]).is_err());
        assert!(BuildPaths::new("/a", &[]).is_err());
        assert!(BuildPaths::new("/long/enough:x", &[]).is_err());
        assert!(BuildPaths::new("/long/enough", &["view".to_owned()]).is_err());
    }
}
