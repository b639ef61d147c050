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
use crate::buildcache::layout::Sha256Hex;
use crate::pgp::{KeyFingerprint, TrustedKeys};

/// The three top-level directories of the tarball.
pub const TOP_LEVEL: [&str; 3] = ["view", "modules", "data"];
/// The install script, relative to the prefix.
pub const INSTALL_SCRIPT: &str = "data/install.sh";

/// The tarball and the two files published beside it.
#[derive(Debug, Clone)]
pub struct Download {
    /// The tarball's file name (the name `SHA256SUMS` lists).
    pub file_name: String,
    /// The tarball bytes.
    pub tarball: Vec<u8>,
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

async fn http_get(client: &reqwest::Client, url: &str) -> Result<Vec<u8>> {
    let r = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot download {url}"))?;
    if !r.status().is_success() {
        bail!("cannot download {url}: HTTP {}", r.status());
    }
    Ok(r.bytes().await?.to_vec())
}

/// Fetches the tarball at `source` (a path, `file://` or `https://` URL; `http://` only with
/// `allow_http`) with its `SHA256SUMS` and `.asc` from the same directory.
pub async fn download(source: &str, allow_http: bool) -> Result<Download> {
    let file_name = file_name_of(source)?;
    if source.starts_with("https://") || source.starts_with("http://") {
        if source.starts_with("http://") && !allow_http {
            bail!(
                "{source} is plain http://; use https:// (or pass --allow-insecure-http for a private mirror; the signature is checked either way)"
            );
        }
        let base = &source[..source.len() - file_name.len()];
        let client = reqwest::Client::builder()
            .build()
            .context("cannot build the HTTP client")?;
        return Ok(Download {
            tarball: http_get(&client, source).await?,
            sums: http_get(&client, &format!("{base}SHA256SUMS")).await?,
            signature: http_get(&client, &format!("{source}.asc")).await?,
            file_name,
        });
    }
    if let Some((scheme, _)) = source.split_once("://")
        && scheme != "file"
    {
        bail!(
            "unsupported tarball URL scheme {scheme:?} in {source:?}: use a path, file:// or https://"
        );
    }
    let path = PathBuf::from(source.strip_prefix("file://").unwrap_or(source));
    let dir = path.parent().unwrap_or(Path::new("."));
    let read = |p: &Path, what: &str| {
        std::fs::read(p).with_context(|| {
            format!(
                "cannot read {what} {}; the tarball, SHA256SUMS and <tarball>.asc must be in the same directory",
                p.display()
            )
        })
    };
    let mut asc = path.as_os_str().to_owned();
    asc.push(".asc");
    Ok(Download {
        tarball: read(&path, "the tarball")?,
        sums: read(&dir.join("SHA256SUMS"), "the checksum file")?,
        signature: read(Path::new(&asc), "the signature")?,
        file_name,
    })
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
    let verified = trusted
        .verify_detached(&dl.signature, &dl.tarball)
        .map_err(|e| {
            anyhow::anyhow!("{}.asc does not verify {}: {e}", dl.file_name, dl.file_name)
        })?;
    let want = listed_digest(&dl.sums, &dl.file_name)?;
    let sha = Sha256Hex::of(&dl.tarball);
    if sha != want {
        bail!(
            "{} has sha256 {sha} but SHA256SUMS lists {want}; the download is damaged or the files do not belong together",
            dl.file_name
        );
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
        flate2::read::GzDecoder::new(dl.tarball.as_slice()),
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
        }),
        Err(e) => {
            remove_tree(prefix);
            Err(e)
        }
    }
}
