//! Installing the relocatable Slurm tarball (`slurm-{slurm}-gcc{gcc}-software.tar.gz`) the way a
//! site without Spack would, but verified: the detached signature `<tarball>.asc` against trusted
//! keys, the tarball's line in `SHA256SUMS` beside it, then hardened extraction into the prefix
//! and `sh <prefix>/data/install.sh`, which resolves the `@SLURM_FACTORY_PREFIX@` placeholder in
//! the files listed in `data/relocate-text.txt` from its own location.
//!
//! The archive's top level is `view/` (the merged install tree), `modules/` (Lmod modulefiles,
//! `module use <prefix>/modules; module load slurm`) and `data/` (install script, templates,
//! `MANIFEST`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::extract::{self, Limits, Options, remove_tree};
use crate::buildcache::Storage;
use crate::buildcache::layout::Sha256Hex;
use crate::buildcache::storage::{HttpStore, LocalDir};
use crate::pgp::{KeyFingerprint, TrustedKeys};
use crate::tarball::publish::SUMS;

/// The three top-level directories of the tarball.
pub const TOP_LEVEL: [&str; 3] = ["view", "modules", "data"];
/// The install script, relative to the prefix.
pub const INSTALL_SCRIPT: &str = "data/install.sh";

/// The tarball and the two files published beside it.
#[derive(Debug)]
pub struct Download {
    /// The tarball's file name (the name `SHA256SUMS` lists).
    pub file_name: String,
    /// The tarball, copied into a private temporary file as it was read (removed on drop).
    pub tarball: tempfile::NamedTempFile,
    /// The tarball's sha256, computed while it was copied.
    pub sha256: Sha256Hex,
    /// Its size.
    pub size: u64,
    /// `SHA256SUMS`.
    pub sums: Vec<u8>,
    /// `<tarball>.asc`.
    pub signature: Vec<u8>,
}

fn file_name_of(s: &str) -> Result<String> {
    let name = s.rsplit('/').next().unwrap_or(s);
    if name.is_empty() || name == "." || name == ".." {
        bail!("{s:?} does not end in a tarball file name");
    }
    Ok(name.to_owned())
}

/// The directory a tarball was published in, opened as a read-only store: its siblings
/// (`SHA256SUMS`, `<tarball>.asc`, the signer's `<FPR>.pub.asc`) are read from the same place,
/// through the storage layer's HTTPS reader ([`HttpStore`]) or from the local directory
/// ([`LocalDir`]: regular files only, never through a symlink).
struct Origin {
    store: Box<dyn Storage>,
}

impl Origin {
    /// The origin of `source` (a path, `file://` or `https://` URL; `http://` only to a loopback
    /// host or with `allow_http`) and the tarball's file name.
    fn of(source: &str, allow_http: bool) -> Result<(Origin, String)> {
        let file_name = file_name_of(source)?;
        if source.starts_with("https://") || source.starts_with("http://") {
            if source.starts_with("http://") && !crate::net::plain_http_allowed(source, allow_http)
            {
                bail!(
                    "{source} is plain http://; use https:// (or pass --allow-insecure-http for a private mirror; the signature is checked either way)"
                );
            }
            let dir = &source[..source.len() - file_name.len()];
            let store = Box::new(HttpStore::new(dir, allow_http)?);
            return Ok((Origin { store }, file_name));
        }
        if let Some((scheme, _)) = source.split_once("://")
            && scheme != "file"
        {
            bail!(
                "unsupported tarball URL scheme {scheme:?} in {source:?}: use a path, file:// or https://"
            );
        }
        let path = PathBuf::from(source.strip_prefix("file://").unwrap_or(source));
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let store = Box::new(LocalDir::new(dir));
        Ok((Origin { store }, file_name))
    }

    /// Where `name` is, for messages.
    fn show(&self, name: &str) -> String {
        format!("{}/{name}", self.store.url().trim_end_matches('/'))
    }

    /// The bytes of `name`, or `None` when there is no such file; a file larger than `max`, or
    /// one that is not a regular file, is refused before more than `max` bytes are read.
    async fn read(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>> {
        use std::io::{Read, Seek};
        let mut tmp = tempfile::tempfile().context("cannot create a temporary file")?;
        if self.store.copy_to(name, &mut tmp, max).await?.is_none() {
            return Ok(None);
        }
        let mut b = Vec::new();
        tmp.seek(std::io::SeekFrom::Start(0))?;
        tmp.read_to_end(&mut b)?;
        Ok(Some(b))
    }

    /// [`Origin::read`] up to `max` bytes, with a missing file an error naming what it is.
    async fn need(&self, name: &str, what: &str, max: u64) -> Result<Vec<u8>> {
        self.read(name, max)
            .await?
            .with_context(|| self.missing(name, what))
    }

    fn missing(&self, name: &str, what: &str) -> String {
        format!(
            "{what} {} is missing; the tarball, SHA256SUMS and <tarball>.asc must be in the same directory",
            self.show(name)
        )
    }
}

/// The largest `SHA256SUMS` and `<tarball>.asc` read: far above any real one (a few hundred
/// bytes), far below what would exhaust memory.
pub const MAX_SIDECAR_BYTES: u64 = 1 << 20;

/// Fetches the tarball at `source` (a path, `file://` or `https://` URL; `http://` only with
/// `allow_http`) with its `SHA256SUMS` and `.asc` from the same directory. The tarball streams
/// into a private temporary file while it is hashed, so memory stays bounded whatever its size.
/// Each file is read up to a cap, checked before and while it is read: `max_tarball` bytes for
/// the tarball, [`MAX_SIDECAR_BYTES`] for the others. A larger file is refused, not truncated.
pub async fn download(source: &str, allow_http: bool, max_tarball: u64) -> Result<Download> {
    let (origin, file_name) = Origin::of(source, allow_http)?;
    let sums = origin
        .need(SUMS, "the checksum file", MAX_SIDECAR_BYTES)
        .await?;
    let signature = origin
        .need(
            &format!("{file_name}.asc"),
            "the signature",
            MAX_SIDECAR_BYTES,
        )
        .await?;
    let mut tarball = tempfile::Builder::new()
        .prefix("slurm-factory-download-")
        .tempfile()
        .context("cannot create a private temporary file for the download")?;
    let (sha256, size) = origin
        .store
        .copy_to(&file_name, tarball.as_file_mut(), max_tarball)
        .await?
        .with_context(|| origin.missing(&file_name, "the tarball"))?;
    Ok(Download {
        file_name,
        tarball,
        sha256,
        size,
        sums,
        signature,
    })
}

/// The key published beside the tarball at `source` for the pinned `fpr`: the file
/// `<FPR>.pub.asc` that `tarball-publish` writes there, of which only the certificate whose
/// primary fingerprint is exactly `fpr` is taken ([`crate::buildcache::trust::pinned_cert`]).
/// Returns it ASCII-armored, public parts only.
pub async fn published_key(
    source: &str,
    fpr: &KeyFingerprint,
    allow_http: bool,
) -> Result<Vec<u8>> {
    let (origin, _) = Origin::of(source, allow_http)?;
    let name = fpr.public_key_file();
    let max = crate::buildcache::trust::MAX_KEY_BLOB_BYTES;
    let bytes = origin.read(&name, max).await?.with_context(|| {
        format!(
            "{} is missing: the tarball's directory publishes no key {fpr}; get the public key out of band and pass it with --trusted-key <file>",
            origin.show(&name)
        )
    })?;
    crate::buildcache::trust::pinned_cert(&bytes, fpr, &format!("in {}", origin.show(&name)))
}

/// The digest `SHA256SUMS` lists for `file_name`. Every line must be `<sha256>  <name>` (or
/// `<sha256> *<name>`); a name listed twice is refused.
pub fn listed_digest(sums: &[u8], file_name: &str) -> Result<Sha256Hex> {
    let text = std::str::from_utf8(sums).context("SHA256SUMS is not UTF-8 text")?;
    let mut found: Option<Sha256Hex> = None;
    for (i, line) in text.split('\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let (hex, name) = line
            .split_once("  ")
            .or_else(|| line.split_once(" *"))
            .with_context(|| {
                format!(
                    "SHA256SUMS line {} is not `<sha256>  <file name>`: {line:?}",
                    i + 1
                )
            })?;
        let sha = Sha256Hex::parse(hex).with_context(|| format!("SHA256SUMS line {}", i + 1))?;
        if name == file_name {
            if found.is_some() {
                bail!(
                    "SHA256SUMS lists {file_name} more than once; refusing an ambiguous checksum file"
                );
            }
            found = Some(sha);
        }
    }
    found.with_context(|| format!("SHA256SUMS does not list {file_name}"))
}

/// What [`install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarballInstall {
    /// Who signed the tarball.
    pub signer: KeyFingerprint,
    /// Its sha256.
    pub sha256: Sha256Hex,
    /// Entries extracted.
    pub entries: u64,
    /// The install script's output.
    pub script_output: String,
    /// The glibc floor of what was unpacked.
    pub floor: crate::glibc_floor::Floor,
}

/// Verifies `dl` against `trusted` and `SHA256SUMS`, extracts it into `prefix` (which must not
/// exist, or be an empty directory) and runs its install script. On failure, what was extracted
/// is removed again.
pub fn install(
    dl: &Download,
    trusted: &TrustedKeys,
    prefix: &Path,
    limits: Limits,
) -> Result<TarballInstall> {
    if trusted.is_empty() {
        bail!(
            "no trusted keys: pass --trusted-key <file> to verify {}.asc",
            dl.file_name
        );
    }
    if !prefix.is_absolute() {
        bail!("--prefix {} must be an absolute path", prefix.display());
    }
    // The signature over the private copy, then the checksum computed while it was copied:
    // the bytes checked are the bytes extracted.
    let open = || -> Result<std::io::BufReader<std::fs::File>> {
        Ok(std::io::BufReader::with_capacity(
            1 << 20,
            dl.tarball
                .reopen()
                .with_context(|| format!("cannot read the downloaded {}", dl.file_name))?,
        ))
    };
    let verified = trusted
        .verify_detached_reader(&dl.signature, open()?)
        .map_err(|e| {
            anyhow::anyhow!("{}.asc does not verify {}: {e}", dl.file_name, dl.file_name)
        })?;
    let want = listed_digest(&dl.sums, &dl.file_name)?;
    let sha = dl.sha256.clone();
    if sha != want {
        bail!(
            "{} has sha256 {sha} but SHA256SUMS lists {want}; the download is damaged or the files do not belong together",
            dl.file_name
        );
    }
    // The glibc floor, read from the verified bytes before anything is written.
    let floor =
        crate::glibc_floor::scan_tar(flate2::read::GzDecoder::new(open()?), limits.max_bytes)
            .with_context(|| format!("{}: cannot compute its glibc floor", dl.file_name))?;
    if floor.glibc.is_some() {
        crate::glibc_floor::check_host(&floor, &crate::glibc_floor::host_glibc()?, &dl.file_name)?;
    }
    // An existing empty directory is fine (a fresh mount point); anything else is refused.
    if let Ok(mut rd) = std::fs::read_dir(prefix) {
        if rd.next().is_some() {
            bail!(
                "{} is not empty; install the tarball into a new or empty directory",
                prefix.display()
            );
        }
        std::fs::remove_dir(prefix)?;
    }
    let x = extract::extract_fresh(
        flate2::read::GzDecoder::new(open()?),
        prefix,
        &Options {
            limits,
            ..Options::default()
        },
    )
    .with_context(|| dl.file_name.clone())?;
    let finish = || -> Result<String> {
        for d in TOP_LEVEL {
            let m = std::fs::symlink_metadata(prefix.join(d));
            if !m.is_ok_and(|m| m.is_dir()) {
                bail!(
                    "{} has no top-level {d}/ directory; it is not a slurm-factory tarball",
                    dl.file_name
                );
            }
        }
        let script = extract::no_follow_path(prefix, Path::new(INSTALL_SCRIPT))?;
        if !std::fs::symlink_metadata(&script).is_ok_and(|m| m.is_file()) {
            bail!("{} has no {INSTALL_SCRIPT}", dl.file_name);
        }
        let out = Command::new("sh")
            .arg(&script)
            .current_dir(prefix)
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .context("cannot run sh")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            bail!("{INSTALL_SCRIPT} failed ({}): {}", out.status, text.trim());
        }
        Ok(text)
    };
    match finish() {
        Ok(script_output) => Ok(TarballInstall {
            signer: verified.signer,
            sha256: sha,
            entries: x.entries,
            script_output,
            floor,
        }),
        Err(e) => {
            remove_tree(prefix);
            Err(e)
        }
    }
}
