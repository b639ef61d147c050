//! Build paths compiled into the tarball's binaries, and rewriting them where it is unpacked.
//!
//! Slurm compiles its prefix into `libslurmfull.so` as C strings (`SLURM_PREFIX`, `SBINDIR`, the
//! default `PluginDir`); slurmd execs `<SBINDIR>/slurmstepd`, which no slurm.conf setting
//! changes. RPATHs can be made `$ORIGIN`-relative, these strings cannot: they are rewritten in
//! place, which is what the build's install tree is padded to 128 characters for.
//!
//! - When packing ([`Finder`]), every binary (a file with NUL bytes, ELF or not) that names a
//!   build prefix is listed in `data/relocate-binary.txt`, and each build prefix found in them
//!   (a package's padded `<root>/…/<name>-<version>-<hash>`, or the view root) in
//!   `data/build-prefixes.txt`. The bytes are packed as the build wrote them.
//! - When installing (`data/install.sh` runs `data/bin/tarball-publish relocate <root>`,
//!   [`relocate_unpacked`]), every listed prefix becomes `<root>/view` in every listed binary,
//!   through the buildcache installer's engine ([`PrefixMap::replace_binary`], Spack's
//!   `BinaryFilePrefixReplacer` rules: padding with leading `/`, or a shorter NUL-terminated
//!   string where padding would corrupt a shared string tail; never longer).
//! - Moved later and installed again: `data/.installed-prefix` (written by `install.sh` once
//!   everything is relocated) says which view path the binaries name now. [`restore`] puts the
//!   build prefixes back byte for byte (the engine's padding and shortening both leave the
//!   string's original extent recognisable), then the engine relocates from them as on the first
//!   install: the new path may be as long as the build prefix, wherever the tarball was before.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::relocate::BuildPaths;
use crate::paths::no_follow_path;
use crate::relocate::PrefixMap;

/// The binaries that name a build prefix, relative to the tarball root, one per line.
pub const BINARY_LIST: &str = "data/relocate-binary.txt";
/// The build prefixes those binaries name, one per line.
pub const PREFIX_LIST: &str = "data/build-prefixes.txt";
/// The view path the relocated files name now (written by `install.sh`).
pub const STATE: &str = "data/.installed-prefix";
/// Where the tarball carries the binary that relocates it.
pub const RELOCATOR: &str = "data/bin/tarball-publish";

/// What packing found in the view's binaries.
#[derive(Debug, Default)]
pub(crate) struct Found {
    /// Binaries (archive paths) with at least one build prefix.
    pub(crate) binaries: Vec<String>,
    /// The build prefixes named.
    pub(crate) prefixes: BTreeSet<String>,
    /// Binaries with a build-tree path that names no package (left as they are).
    pub(crate) unmapped: Vec<String>,
}

impl Found {
    /// Looks at one file's bytes (`arc`: its archive path). `needles` are the build roots.
    pub(crate) fn scan(&mut self, arc: &str, bytes: &[u8], paths: &BuildPaths) {
        let mut any = false;
        let mut stray = false;
        for needle in paths.needles() {
            for at in memchr::memmem::find_iter(bytes, needle.as_bytes()) {
                let end = bytes[at..]
                    .iter()
                    .position(|&b| !super::relocate::is_path_byte(b))
                    .map_or(bytes.len(), |n| at + n);
                let Ok(text) = std::str::from_utf8(&bytes[at..end]) else {
                    stray = true;
                    continue;
                };
                match paths.map(text) {
                    Some((len, _)) => {
                        self.prefixes.insert(text[..len].to_owned());
                        any = true;
                    }
                    None => stray = true,
                }
            }
        }
        if any {
            self.binaries.push(arc.to_owned());
        }
        if stray {
            self.unmapped.push(arc.to_owned());
        }
    }
}

/// The prefix map that moves binaries from the build prefixes to `new` (the absolute path of
/// `<root>/view`), longest prefix first.
pub fn prefix_map(build_prefixes: &[String], new: &str) -> PrefixMap {
    let mut olds: Vec<&String> = build_prefixes.iter().collect();
    olds.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    PrefixMap::new(
        olds.into_iter()
            .map(|o| (o.clone().into_bytes(), new.as_bytes().to_vec()))
            .collect(),
    )
}

/// Undoes an earlier relocation to the view path `current` in `data`, putting the build
/// prefixes back byte for byte, so the engine can relocate from them again (to a path as long
/// as the build prefix, not only as long as `current`). The engine left two shapes
/// ([`PrefixMap::replace_binary`]): `current` padded with leading `/` to the build prefix's
/// length, and `current` + the string's own tail + NUL, followed by the rest of the original
/// string up to its original NUL. Each is restored only when it fits a build prefix exactly
/// (the padding length, or the leftover bytes); anything else is left alone. Returns how many
/// strings were restored.
pub fn restore(data: &mut [u8], build_prefixes: &[String], current: &str) -> usize {
    let cur = current.as_bytes();
    if cur.is_empty() {
        return 0;
    }
    let hits: Vec<usize> = memchr::memmem::find_iter(data, cur).collect();
    let mut restored = 0;
    let mut done_until = 0;
    for o in hits {
        if o < done_until {
            continue;
        }
        let slashes = data[..o].iter().rev().take_while(|&&b| b == b'/').count();
        if slashes > 0 {
            if let Some(p) = build_prefixes
                .iter()
                .find(|p| p.len() == cur.len() + slashes)
            {
                data[o - slashes..o + cur.len()].copy_from_slice(p.as_bytes());
                restored += 1;
                done_until = o + cur.len();
            }
            continue;
        }
        let after = o + cur.len();
        let Some(n1) = memchr::memchr(0, &data[after..]).map(|n| after + n) else {
            continue;
        };
        let Some(n2) = memchr::memchr(0, &data[n1 + 1..]).map(|n| n1 + 1 + n) else {
            continue;
        };
        let suffix = data[after..n1].to_vec();
        let rest = &data[n1 + 1..n2];
        let original = build_prefixes.iter().find_map(|p| {
            let mut orig = p.clone().into_bytes();
            orig.extend_from_slice(&suffix);
            (p.len() > cur.len()
                && orig.len() == n2 - o
                && orig[cur.len() + suffix.len() + 1..] == *rest)
                .then_some(orig)
        });
        if let Some(orig) = original {
            data[o..n2].copy_from_slice(&orig);
            restored += 1;
            done_until = n2;
        }
    }
    restored
}

/// What [`relocate_unpacked`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// The view path the binaries name now.
    pub view: String,
    /// Binaries rewritten.
    pub rewritten: usize,
    /// Binaries listed.
    pub listed: usize,
}

fn read_list(root: &Path, rel: &str) -> Result<Vec<String>> {
    let p = no_follow_path(root, Path::new(rel))?;
    match std::fs::read_to_string(&p) {
        Ok(t) => Ok(t
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", p.display()))),
    }
}

/// Rewrites the build prefixes in the binaries of the tarball unpacked at `root` (an absolute
/// path, as `install.sh` computes it) to `<root>/view`, with the buildcache installer's engine.
/// Idempotent: run again in place, it changes nothing. Does not write [`STATE`].
pub fn relocate_unpacked(root: &Path) -> Result<Unpacked> {
    if !root.is_absolute() {
        bail!(
            "{} is not an absolute path; pass the directory the tarball was unpacked into",
            root.display()
        );
    }
    let view = root.join("view");
    if !std::fs::symlink_metadata(&view).is_ok_and(|m| m.is_dir()) {
        bail!(
            "{} is not a directory: {} is not an unpacked slurm-factory tarball",
            view.display(),
            root.display()
        );
    }
    let new = view
        .to_str()
        .context("the install path is not UTF-8; unpack the tarball somewhere else")?
        .to_owned();
    let binaries = read_list(root, BINARY_LIST)?;
    let prefixes = read_list(root, PREFIX_LIST)?;
    if let Some(bad) = prefixes.iter().find(|p| !p.starts_with('/')) {
        bail!(
            "{PREFIX_LIST} names {bad:?}, which is not an absolute path; unpack the tarball again"
        );
    }
    let current = read_list(root, STATE)?.into_iter().next();
    let map = prefix_map(&prefixes, &new);
    let mut rewritten = 0;
    for rel in &binaries {
        if rel.starts_with('/') || rel.split('/').any(|c| c == "..") {
            bail!("{BINARY_LIST} names {rel:?}, outside the tarball; refusing");
        }
        let p: PathBuf = no_follow_path(root, Path::new(rel))
            .with_context(|| format!("{BINARY_LIST} names {rel:?}"))?;
        let m = std::fs::symlink_metadata(&p).with_context(|| {
            format!(
                "{} is listed in {BINARY_LIST} but missing; unpack the tarball again",
                p.display()
            )
        })?;
        if !m.is_file() {
            bail!(
                "{} is not a regular file; refusing to write through it",
                p.display()
            );
        }
        let data = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        let mut pristine = data.clone();
        if let Some(cur) = current.as_deref().filter(|c| *c != new) {
            restore(&mut pristine, &prefixes, cur);
        }
        let out = map
            .replace_binary(&pristine, &p.display().to_string())?
            .unwrap_or(pristine);
        if out != data {
            crate::relocate::rewrite_file(&p, &out)?;
            rewritten += 1;
        }
    }
    Ok(Unpacked {
        view: new,
        rewritten,
        listed: binaries.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "abcdefghijklmnopqrstuvwxyz234567";

    fn build_prefix() -> String {
        let root = format!(
            "/build/install/{}",
            "__spack_path_placeholder__/"
                .repeat(5)
                .trim_end_matches('/')
        );
        format!("{root}/linux-x86_64/slurm-22-05-8-1-{HASH}")
    }

    /// A fake libslurmfull: the prefix as three C strings, one of them with a short suffix.
    fn library(prefix: &str) -> Vec<u8> {
        let mut v = b"\x7fELF junk\0".to_vec();
        for s in ["", "/lib/slurm", "/sbin"] {
            v.extend_from_slice(prefix.as_bytes());
            v.extend_from_slice(s.as_bytes());
            v.push(0);
        }
        v.extend_from_slice(b"tail\0");
        v
    }

    /// The C strings of `b` that end with `suffix` and start with `/`: the relocated ones
    /// (a shortened string leaves the rest of the old one behind it, which does not start so).
    fn ending(b: &[u8], suffix: &str) -> String {
        let found: Vec<String> = b
            .split(|&c| c == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .filter(|s| s.starts_with('/') && s.ends_with(suffix))
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        found.into_iter().next().unwrap()
    }

    #[test]
    fn finds_prefixes_in_binaries() {
        let p = BuildPaths::new("/build/install", &["/build/view".to_owned()]).unwrap();
        let mut f = Found::default();
        f.scan("view/lib/libslurmfull.so", &library(&build_prefix()), &p);
        f.scan("view/lib/other.so", b"\x7fELF\0/build/install/junk\0", &p);
        f.scan("view/bin/x", b"\x7fELF\0/build/view/share\0", &p);
        // Slurm's libslurmfull.so also has `SLURM_PREFIX "<prefix>"` (its config.h): the path
        // ends at the quote.
        let quoted = format!("\x7fELF\0SLURM_PREFIX \"{}\"\0", build_prefix());
        f.scan("view/lib/libslurm.so", quoted.as_bytes(), &p);
        assert_eq!(
            f.binaries,
            [
                "view/lib/libslurmfull.so",
                "view/bin/x",
                "view/lib/libslurm.so"
            ]
        );
        assert_eq!(
            f.prefixes.iter().collect::<Vec<_>>(),
            [&build_prefix(), &"/build/view".to_owned()]
        );
        assert_eq!(f.unmapped, ["view/lib/other.so"]);
    }

    #[test]
    fn relocates_and_moves_again_to_any_path_the_padding_allows() {
        let old = build_prefix();
        let olds = std::slice::from_ref(&old);
        let data = library(&old);
        let once = prefix_map(olds, "/opt/a/view")
            .replace_binary(&data, "lib")
            .unwrap()
            .unwrap();
        assert_eq!(once.len(), data.len());
        assert_eq!(ending(&once, "/view").trim_start_matches('/'), "opt/a/view");
        let plugins = ending(&once, "/lib/slurm");
        assert!(plugins.ends_with("//opt/a/view/lib/slurm") && plugins.len() == old.len() + 10);
        // A short tail cannot be padded: the engine shortened the string in place.
        assert_eq!(ending(&once, "/sbin"), "/opt/a/view/sbin");
        // Restoring gives back the build's bytes exactly.
        let mut back = once.clone();
        assert_eq!(restore(&mut back, olds, "/opt/a/view"), 3);
        assert_eq!(back, data);
        // So a move to a longer path (or one of the same length) works like a first install.
        for new in ["/srv/cluster/software/slurm-22.05/view", "/opt/b/view"] {
            let mut moved = once.clone();
            restore(&mut moved, olds, "/opt/a/view");
            let moved = prefix_map(olds, new)
                .replace_binary(&moved, "lib")
                .unwrap()
                .unwrap();
            let fresh = prefix_map(olds, new)
                .replace_binary(&data, "lib")
                .unwrap()
                .unwrap();
            assert_eq!(moved, fresh, "{new}");
            assert_eq!(ending(&moved, "/sbin"), format!("{new}/sbin"));
            assert!(!String::from_utf8_lossy(&moved).contains("/opt/a/"));
        }
        // Nothing relocated to that path: nothing restored.
        let mut same = data.clone();
        assert_eq!(restore(&mut same, olds, "/opt/a/view"), 0);
        assert_eq!(same, data);
    }

    #[test]
    fn relocates_an_unpacked_tree_and_again_after_a_move() {
        let tmp = tempfile::tempdir().unwrap();
        let old = build_prefix();
        let a = tmp.path().join("a");
        std::fs::create_dir_all(a.join("view/lib")).unwrap();
        std::fs::create_dir_all(a.join("data")).unwrap();
        std::fs::write(a.join("view/lib/libslurmfull.so"), library(&old)).unwrap();
        std::fs::write(a.join(BINARY_LIST), "view/lib/libslurmfull.so\n").unwrap();
        std::fs::write(a.join(PREFIX_LIST), format!("{old}\n")).unwrap();
        let r = relocate_unpacked(&a).unwrap();
        assert_eq!((r.rewritten, r.listed), (1, 1));
        let lib = std::fs::read(a.join("view/lib/libslurmfull.so")).unwrap();
        assert_eq!(ending(&lib, "/sbin"), format!("{}/view/sbin", a.display()));
        // In place again: nothing changes (install.sh records the state afterwards).
        std::fs::write(a.join(STATE), format!("{}/view\n", a.display())).unwrap();
        assert_eq!(relocate_unpacked(&a).unwrap().rewritten, 0);
        let b = tmp.path().join("somewhere/much/longer/than/before");
        std::fs::create_dir_all(b.parent().unwrap()).unwrap();
        std::fs::rename(&a, &b).unwrap();
        assert_eq!(relocate_unpacked(&b).unwrap().rewritten, 1);
        let lib = std::fs::read(b.join("view/lib/libslurmfull.so")).unwrap();
        assert_eq!(ending(&lib, "/sbin"), format!("{}/view/sbin", b.display()));
        assert!(!String::from_utf8_lossy(&lib).contains(&format!("{}/", a.display())));
        assert!(relocate_unpacked(Path::new("relative")).is_err());
    }
}
