//! The Spack source cache shared by legs and runs.
//!
//! Spack keeps downloaded sources in its *source cache* (`config:source_cache`) at the path of
//! its mirror layout (`spack.mirrors.layout.default_mirror_layout`): a source with a checksum at
//! `_source-cache/archive/<first 2 hex>/<digest>.<ext>`, others at their human-readable path. A
//! source mirror has the same layout, so the shared cache is given to every build, read-only,
//! as the source mirror [`crate::spack::SOURCE_MIRROR_NAME`] (Spack looks there before downloading), while the build
//! writes into a source cache of its own (in its namespace). Spack stores every source it
//! fetched there, from the mirror or from the network, so after the build [`promote`] finds in
//! it exactly what the leg used: new files are added to the shared cache (temporary name +
//! link without replacing, see [`super::CacheDir`]), files it already had are marked used.
//!
//! A file named by a SHA-256 digest is added only when its bytes have that digest (a build
//! stopped while Spack copied a file leaves it partial). Other files are added only after a
//! successful build. Links and special files are never followed or added.

use std::io::Read as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::{CacheDir, Inserted, open_dir, open_regular, walk};
use crate::gha::Runner;

/// What [`promote`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Promotion {
    /// Files added to the shared cache.
    pub added: Vec<String>,
    /// Files the shared cache had already (marked used).
    pub reused: Vec<String>,
    /// Files not added, with the reason.
    pub skipped: Vec<(String, String)>,
}

/// The SHA-256 a cache path names, if its file name is `<64 hex>` or `<64 hex>.<ext>`.
pub fn named_sha256(rel: &str) -> Option<&str> {
    let name = rel.rsplit('/').next()?;
    let stem = name.split('.').next()?;
    (stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit())).then_some(stem)
}

/// Offers every source the leg's own cache `leg` holds to the shared cache (see the module
/// documentation); `build_ok`: the build succeeded.
pub fn promote(leg: &Path, shared: &CacheDir, build_ok: bool) -> Result<Promotion> {
    let mut out = Promotion::default();
    let Some(root) = open_dir(leg)? else {
        return Ok(out);
    };
    let found = walk(root, leg)?;
    for (rel, what) in found.refused {
        out.skipped.push((rel, format!("it is {what}")));
    }
    let root = open_dir(leg)?.with_context(|| format!("{} is gone", leg.display()))?;
    for f in found.files {
        let rel = f.rel;
        if shared.touch(&rel)? {
            out.reused.push(rel);
            continue;
        }
        if let Some(k) = shared.entry_kind(&rel)? {
            out.skipped
                .push((rel, format!("the shared cache has {k} at that path")));
            continue;
        }
        let want = named_sha256(&rel).map(str::to_ascii_lowercase);
        if want.is_none() && !build_ok {
            out.skipped.push((
                rel,
                "it is not named by a digest, and the build did not succeed".to_owned(),
            ));
            continue;
        }
        let Some(mut src) = open_regular(&root, &rel)? else {
            out.skipped
                .push((rel, "it changed into something else".to_owned()));
            continue;
        };
        match copy_in(&mut src, shared, &rel, want.as_deref()) {
            Ok(Inserted::New) => out.added.push(rel),
            Ok(Inserted::Existed) => {
                shared.touch(&rel)?;
                out.reused.push(rel);
            }
            Err(e) => out.skipped.push((rel, format!("{e:#}"))),
        }
    }
    Ok(out)
}

/// Copies `src` into the shared cache as `rel`, checking its SHA-256 against `want`.
fn copy_in(
    src: &mut std::fs::File,
    shared: &CacheDir,
    rel: &str,
    want: Option<&str>,
) -> Result<Inserted> {
    let mut pending = shared.begin(rel)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf).context("cannot read the leg's copy")?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        pending.file().write_all(&buf[..n])?;
    }
    let got = hex::encode(hasher.finalize());
    if let Some(want) = want
        && got != want
    {
        bail!("its SHA-256 is {got}, not the {want} its name says (a partial copy?)");
    }
    pending.commit()
}

/// Promotes and reports it in the log; failures are warnings.
pub fn promote_reported(leg: &Path, shared: &CacheDir, build_ok: bool, runner: &Runner) {
    match promote(leg, shared, build_ok) {
        Ok(p) => {
            runner.info(&format!(
                "Source cache: {} new file(s) added to {}, {} already there",
                p.added.len(),
                shared.path().display(),
                p.reused.len()
            ));
            for (rel, why) in &p.skipped {
                runner.warning(&format!(
                    "source cache: {} was not added to the shared cache: {why}",
                    leg.join(rel).display()
                ));
            }
            shared.prune_reported("source", runner);
        }
        Err(e) => runner.warning(&format!(
            "the sources this build downloaded could not be added to the shared cache {}: {e:#}",
            shared.path().display()
        )),
    }
}
