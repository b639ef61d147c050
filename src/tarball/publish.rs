//! Publishing a tarball: `SHA256SUMS` (`<sha256>  <file name>` lines), the armored detached
//! signature `<tarball>.asc` over the tarball's bytes, and the upload of all three through the
//! buildcache [`Storage`] trait: the tarball first, its signature next, the sums last (merged
//! with the lines other legs published under the same prefix, with a conditional write), so a
//! reader that finds a sums line always finds the file and its signature. The signer's public
//! key goes beside them as `<FPR>.pub.asc` ([`crate::pgp::KeyFingerprint::public_key_file`]), so a consumer holding only
//! the pinned fingerprint (`test-install --tarball … --trusted-fingerprint <FPR>`) can find the
//! key; it trusts the file only because its fingerprint is the pinned one.
//!
//! The destination is opened by the one storage factory
//! ([`crate::buildcache::storage::open`]); an upload is always signed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::buildcache::publish::PublishTarget;
use crate::buildcache::storage::{
    self, Location, Precondition, PreconditionFailed, PutOptions, Storage,
};
use crate::pgp::SigningKey;

/// The name of the checksum file beside the tarball.
pub(crate) const SUMS: &str = "SHA256SUMS";

/// Where a tarball goes: a directory-like location and the object name of the tarball in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Destination {
    /// The location of the directory (`s3://bucket/prefix` or `file:///dir`).
    pub dir_url: String,
    /// The object name of the tarball there.
    pub name: String,
}

impl Destination {
    /// `s3://bucket/dir/` or `file:///dir` (the tarball keeps `default_name`), or the full URL
    /// of the tarball object, ending in `.tar.gz` (as the pipelines pass the catalog's key).
    pub(crate) fn parse(url: &str, default_name: &str) -> Result<Destination> {
        let url = url.trim();
        if !(url.starts_with("s3://") || url.starts_with("file:///")) {
            bail!(
                "destination {url:?} is not s3://bucket/prefix/ or file:///dir: the tarball goes to an S3 bucket (or a local directory for tests)"
            );
        }
        let (dir, name) = match url.rsplit_once('/') {
            Some((dir, last)) if last.ends_with(".tar.gz") => (dir.to_owned(), last.to_owned()),
            _ => (
                url.trim_end_matches('/').to_owned(),
                default_name.to_owned(),
            ),
        };
        if name.len() <= ".tar.gz".len() || name.contains(['\\', ' ']) {
            bail!("destination {url:?} names no usable tarball file");
        }
        Ok(Destination { dir_url: dir, name })
    }
}

/// The fingerprint of the tarball leg `json` (`${{ toJSON(matrix) }}`), recomputed by this binary
/// (with the image context the build used, if not the embedded one) and refused, naming the
/// differing ingredients, when it is not the plan's: what the leg's stamp will record.
pub(crate) fn leg_fingerprint(
    json: &str,
    catalog: &crate::catalog::Catalog,
    docker_context: Option<PathBuf>,
) -> Result<crate::fingerprint::Fingerprint> {
    let sources = crate::fingerprint::Sources::embedded().with_docker_context(docker_context);
    let kinds = [crate::matrix::Kind::Tarball];
    let (_, own) = crate::matrix::MatrixEntry::leg_fingerprint(
        json,
        &kinds,
        catalog,
        &sources,
        "nothing was stamped",
    )?;
    Ok(own)
}

/// The line of `SHA256SUMS` for `name`.
pub(crate) fn sums_line(sha256: &str, name: &str) -> String {
    format!("{sha256}  {name}\n")
}

/// `existing` (another publication's `SHA256SUMS`) with the line of `name` replaced by
/// `sha256`, lines sorted by name. Refuses a file that is not `<64 hex>  <name>` lines, rather
/// than publishing something a verifier would read differently.
pub(crate) fn merge_sums(existing: &str, name: &str, sha256: &str) -> Result<String> {
    let mut lines: Vec<(String, String)> = Vec::new();
    for (i, line) in existing.split('\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let parsed = line.split_once("  ").filter(|(h, n)| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && !n.is_empty()
                && !n.contains(['\r', '/', ' ', '\t'])
        });
        let Some((h, n)) = parsed else {
            bail!(
                "the published {SUMS} has a malformed line {} ({line:?}); expected `<sha256>  <file name>`. Fix or delete that object, then publish again",
                i + 1
            );
        };
        if lines.iter().any(|(_, m)| m == n) {
            bail!("the published {SUMS} lists {n} twice; fix or delete it, then publish again");
        }
        if n != name {
            lines.push((h.to_owned(), n.to_owned()));
        }
    }
    lines.push((sha256.to_owned(), name.to_owned()));
    lines.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(lines.iter().map(|(h, n)| sums_line(h, n)).collect())
}

/// The signature files written beside a tarball.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signed {
    /// `<name>.asc`, the detached armored signature.
    pub signature: PathBuf,
    /// `<FPR>.pub.asc`, the signer's public key ([`crate::pgp::KeyFingerprint::public_key_file`]).
    pub public_key: PathBuf,
}

/// Writes `SHA256SUMS` and, with a key, `<name>.asc` and the public key `<FPR>.pub.asc` beside
/// the tarball. Returns what was signed, `None` when there was no key.
pub(crate) fn write_local(
    tarball: &Path,
    name: &str,
    sha256: &str,
    key: Option<&SigningKey>,
) -> Result<Option<Signed>> {
    let dir = tarball.parent().unwrap_or(Path::new("."));
    write_atomic(&dir.join(SUMS), sums_line(sha256, name).as_bytes())?;
    let Some(key) = key else {
        return Ok(None);
    };
    let f = std::fs::File::open(tarball)
        .with_context(|| format!("cannot read {}", tarball.display()))?;
    let sig = key.detached_sign(std::io::BufReader::new(f))?;
    let signature = dir.join(format!("{name}.asc"));
    write_atomic(&signature, &sig)?;
    let public_key = dir.join(key.fingerprint().public_key_file());
    write_atomic(&public_key, &key.public_key_armored()?)?;
    Ok(Some(Signed {
        signature,
        public_key,
    }))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Uploads the signer's public key, the tarball, its signature and the merged `SHA256SUMS` to
/// `storage` (rooted at the destination directory). Returns the bytes uploaded.
pub(crate) async fn upload(
    storage: &dyn Storage,
    tarball: &Path,
    name: &str,
    sha256: &str,
    signed: &Signed,
) -> Result<u64> {
    let key_name = signed
        .public_key
        .file_name()
        .with_context(|| format!("{} names no file", signed.public_key.display()))?
        .to_string_lossy()
        .into_owned();
    let public_key = std::fs::read(&signed.public_key)
        .with_context(|| format!("cannot read {}", signed.public_key.display()))?;
    let key_len = public_key.len() as u64;
    storage
        .put(
            &key_name,
            public_key,
            PutOptions::typed("application/pgp-keys"),
        )
        .await
        .with_context(|| format!("cannot upload {key_name} to {}", storage.url()))?;
    let signature = &signed.signature;
    // The tarball as checked: read without following links, refused if its bytes changed.
    let file = crate::buildcache::storage::FileBody {
        source: crate::buildcache::LocalDir::new(tarball.parent().unwrap_or(Path::new("."))),
        key: tarball
            .file_name()
            .with_context(|| format!("{} names no file", tarball.display()))?
            .to_string_lossy()
            .into_owned(),
        size: std::fs::metadata(tarball)
            .with_context(|| format!("cannot stat {}", tarball.display()))?
            .len(),
        sha256: crate::buildcache::Sha256Hex::parse(sha256)?,
        parts: Vec::new(),
        part_size: 0,
    };
    let tar_meta = storage
        .put_file(name, &file, PutOptions::typed("application/gzip"))
        .await
        .with_context(|| format!("cannot upload {name} to {}", storage.url()))?;
    let sig =
        std::fs::read(signature).with_context(|| format!("cannot read {}", signature.display()))?;
    let sig_len = sig.len() as u64;
    storage
        .put(
            &format!("{name}.asc"),
            sig,
            PutOptions::typed("application/pgp-signature"),
        )
        .await
        .with_context(|| format!("cannot upload {name}.asc to {}", storage.url()))?;
    for _ in 0..8 {
        let (text, precondition) = match storage.get(SUMS).await? {
            Some(o) => (
                String::from_utf8(o.bytes)
                    .with_context(|| format!("the published {SUMS} is not UTF-8"))?,
                o.etag.map_or(Precondition::None, Precondition::IfMatch),
            ),
            None => (String::new(), Precondition::IfAbsent),
        };
        let merged = merge_sums(&text, name, sha256)?;
        let n = merged.len() as u64;
        let opts = PutOptions {
            content_type: Some("text/plain; charset=utf-8".into()),
            cache_control: Some("no-cache".into()),
            precondition,
        };
        match storage.put(SUMS, merged.into_bytes(), opts).await {
            Ok(_) => return Ok(key_len + tar_meta.size + sig_len + n),
            Err(e) if e.downcast_ref::<PreconditionFailed>().is_some() => continue,
            Err(e) => return Err(e.context(format!("cannot upload {SUMS}"))),
        }
    }
    bail!("{SUMS} kept changing while we merged our line into it (8 attempts); run the step again")
}

/// Where the view comes from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// build-slurm's output directory (one build namespace inside, or the namespace itself).
    BuildDir(PathBuf),
    /// A view directory, with Spack's modules directory optionally.
    View {
        /// The view.
        view: PathBuf,
        /// Spack's generated modules.
        modules: Option<PathBuf>,
    },
}

/// One `tarball-publish` run, its inputs checked by the caller's parser.
#[derive(Debug)]
pub(crate) struct Request {
    /// The build to pack.
    pub source: Source,
    /// The build's spack.lock (found next to the view when not given).
    pub spack_lock: Option<PathBuf>,
    /// The install tree root the build used (read from env/spack.yaml when not given).
    pub build_prefix: Option<String>,
    /// Slurm release.
    pub slurm: crate::catalog::SlurmVersion,
    /// GCC toolchain.
    pub gcc: crate::catalog::GccVersion,
    /// Output directory (default: `<build dir>/tarball`).
    pub output: Option<PathBuf>,
    /// Upload to this target (its destination, signing key and S3 settings); `None`: pack
    /// locally only (signed with `local_key`, if given).
    pub publish: Option<PublishTarget>,
    /// The key that signs a tarball packed locally only (when `publish` is `None`).
    pub local_key: Option<SigningKey>,
    /// Build, sign and report, but upload nothing.
    pub dry_run: bool,
    /// The leg's fingerprint (checked against the plan's by the caller): a signed build stamp
    /// is written beside the tarball, last, after an upload. `None`: no stamp.
    pub stamp: Option<crate::fingerprint::Fingerprint>,
    /// The catalog platform the build ran on: its glibc caps the tarball's floor. `None`:
    /// the floor is recorded but not checked (with a warning).
    pub platform: Option<crate::catalog::Platform>,
}

/// Runs a request: checks the destination, key and bucket first, packs, writes `SHA256SUMS`
/// and the signature, uploads, and writes the outputs `url` and `sha256` and the job summary.
pub(crate) async fn run(runner: &crate::gha::Runner, req: Request) -> Result<()> {
    use super::spack_build::{self, BuildDir};
    let (build, modules_override) = match &req.source {
        Source::BuildDir(d) => (BuildDir::find(d)?, None),
        Source::View { view, modules } => (BuildDir::of_view(view), modules.clone()),
    };
    let (install_root, view_root) = match (&req.build_prefix, &build.spack_yaml) {
        (Some(p), y) => (
            p.clone(),
            y.as_deref()
                .map(spack_build::roots)
                .transpose()?
                .and_then(|r| r.1),
        ),
        (None, Some(y)) => spack_build::roots(y)?,
        (None, None) => bail!(
            "cannot tell which install tree the view was built from: no env/spack.yaml next to {}; pass --build-prefix (Spack's install_tree root)",
            build.view.display()
        ),
    };
    let output = match (&req.output, &req.source) {
        (Some(o), _) => o.clone(),
        (None, Source::BuildDir(d)) => d.join("tarball"),
        (None, Source::View { .. }) => bail!("no output directory: pass --output <dir>"),
    };
    let name = super::file_name(&req.slurm, &req.gcc, req.platform.as_ref().map(|p| &p.name));
    let dest = req
        .publish
        .as_ref()
        .map(|t| Destination::parse(&t.destination, &name))
        .transpose()?;
    // An upload is always signed: its target carries the key, loaded by the caller.
    let key = req
        .publish
        .as_ref()
        .map(|t| &t.key)
        .or(req.local_key.as_ref());
    if key.is_none() {
        runner.warning(
            "NOT SIGNED: no signing key was given, so the tarball gets no .asc and test-install will refuse it; fine for a local try, never for publishing",
        );
    }
    // The bucket is checked before hours of packing could be wasted.
    let store = match (&dest, &req.publish) {
        (Some(d), Some(t)) => Some(open_destination(runner, &d.dir_url, &t.s3).await?),
        _ => None,
    };
    let opts = super::PackOptions {
        view: build.view.clone(),
        modules: modules_override.or(build.modules.clone()),
        spack_lock: req.spack_lock.clone().or(build.spack_lock.clone()),
        install_root,
        view_root,
        // The tarball carries this very program to rewrite compiled-in build prefixes where it
        // is unpacked (`tarball-publish relocate`, run by data/install.sh): the same engine as
        // the buildcache installer, and always at hand wherever a tarball is packed.
        relocator: std::env::current_exe().ok(),
        slurm: req.slurm.clone(),
        gcc: req.gcc.clone(),
        output,
        // The local file is named as it is published: SHA256SUMS and the .asc name it so.
        name: Some(dest.as_ref().map_or(name.clone(), |d| d.name.clone())),
        source_date_epoch: source_date_epoch(runner)?,
        level: 6,
        threads: None,
    };
    let packed = {
        let _g = runner.group(&format!("Pack {}", build.view.display()));
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || super::pack(&opts)).await??
    };
    check_packed(runner, &packed, req.platform.as_ref())?;
    let dest_name = dest.as_ref().map_or(name.as_str(), |d| d.name.as_str());
    let sig = write_local(&packed.path, dest_name, &packed.sha256, key)?;
    let url = match (&dest, &store, &sig) {
        (Some(d), Some((store, base)), Some(signed)) => {
            let url = format!("{base}/{}", d.name);
            if req.dry_run {
                runner.notice(&format!(
                    "dry run: would upload {} and its signature to {url}",
                    d.name
                ));
            } else {
                let n = upload(
                    store.as_ref(),
                    &packed.path,
                    &d.name,
                    &packed.sha256,
                    signed,
                )
                .await?;
                runner.notice(&format!("published {url} ({n} bytes uploaded)"));
                if let (Some(f), Some(t)) = (&req.stamp, &req.publish) {
                    crate::stamp::stamp_tarball(
                        runner,
                        store.as_ref(),
                        &d.name,
                        packed.size,
                        &packed.sha256,
                        &t.key,
                        f,
                    )
                    .await?;
                }
            }
            url
        }
        (Some(_), _, _) => unreachable!("a destination is opened and signed for, or refused above"),
        (None, _, _) => format!("file://{}", packed.path.display()),
    };
    println!("{url}");
    runner.set_outputs(&[("url", &url), ("sha256", &packed.sha256)])?;
    runner.append_summary(&summary(
        &packed,
        &url,
        key,
        req.dry_run,
        req.platform.as_ref(),
    ))?;
    Ok(())
}

/// Reports what was packed (warnings for build paths nothing could map) and refuses, removing
/// the tarball, a floor above `platform`'s glibc.
fn check_packed(
    runner: &crate::gha::Runner,
    packed: &super::Packed,
    platform: Option<&crate::catalog::Platform>,
) -> Result<()> {
    runner.info(&format!(
        "{}: {} bytes ({} uncompressed), sha256 {}; {} view files, {} ELF RPATHs and {} text files relocated, {} binaries with compiled-in build prefixes (data/install.sh rewrites them where the tarball is unpacked)",
        packed.path.display(), packed.size, packed.uncompressed, packed.sha256,
        packed.view_files, packed.elf_relocated, packed.text_relocated, packed.binary_relocated
    ));
    for f in &packed.binary_with_build_path {
        runner.warning(&format!(
            "{f} is a binary that names a build-tree path outside every package prefix and the view; install.sh cannot map it, so it keeps naming the build tree"
        ));
    }
    if packed.text_unmapped > 0 {
        runner.warning(&format!(
            "{} build-tree path(s) in text files name no package and were left as they were",
            packed.text_unmapped
        ));
    }
    runner.info(&format!(
        "{}: {}",
        packed.file_name,
        packed.floor.describe()
    ));
    match platform {
        Some(p) => {
            if let Err(e) = p.check_floor(&packed.floor, &packed.file_name) {
                let _ = std::fs::remove_file(&packed.path);
                return Err(e.context("nothing was signed or uploaded"));
            }
        }
        // The generated workflows always pass the leg's platform; a hand-run pack without one
        // records the floor and shows it.
        None => runner.notice(&format!(
            "no --platform: the glibc floor of {} is recorded in data/glibc-floor.txt but not checked against a catalog platform",
            packed.file_name
        )),
    }
    Ok(())
}

fn summary(
    p: &super::Packed,
    url: &str,
    key: Option<&SigningKey>,
    dry_run: bool,
    platform: Option<&crate::catalog::Platform>,
) -> String {
    let mut s = format!(
        "### Slurm tarball\n\n| | |\n|---|---|\n| Download | <{url}>{} |\n| SHA-256 | `{}` |\n| Size | {} bytes |\n| Signed by | {} |\n| Relocated | {} ELF RPATHs, {} text files; {} binaries at install |\n| Modules | {} |\n",
        if dry_run {
            " (dry run: not uploaded)"
        } else {
            ""
        },
        p.sha256,
        p.size,
        key.map_or("not signed".to_owned(), |k| format!(
            "`{}`",
            k.fingerprint()
        )),
        p.elf_relocated,
        p.text_relocated,
        p.binary_relocated,
        p.modulefiles.join(", ")
    );
    s.push_str(&format!(
        "| glibc floor | {} |\n| Platform | {} |\n",
        p.floor.describe(),
        platform.map_or("not given (floor not checked)".to_owned(), |x| format!(
            "{} ({}, glibc {})",
            x.name, x.os, x.glibc
        ))
    ));
    s.push_str(&format!(
        "\n~~~sh\ncurl -fLO {url}\ncurl -fLO {url}.asc\ngpg --verify {0}.asc {0}\n~~~\n",
        p.file_name
    ));
    s
}

/// `SOURCE_DATE_EPOCH` (seconds), or 0 when unset.
fn source_date_epoch(runner: &crate::gha::Runner) -> Result<u64> {
    match runner.var("SOURCE_DATE_EPOCH").map(str::trim) {
        None | Some("") => Ok(0),
        Some(v) => v.parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970")
        }),
    }
}

/// The destination at `dir_url`, opened writable by the one storage factory (on S3 the
/// bucket is checked first), and the public base URL of its objects ([`public_base_url`]).
async fn open_destination(
    runner: &crate::gha::Runner,
    dir_url: &str,
    s3: &crate::s3::S3Settings,
) -> Result<(Box<dyn Storage>, String)> {
    let location = Location::parse(dir_url)?;
    if let Location::Http(u) = &location {
        bail!("{u}: HTTP(S) is read-only; publish to s3://");
    }
    let opts = storage::OpenOptions {
        writable: true,
        s3: s3.clone(),
        ..storage::OpenOptions::default()
    };
    let store = storage::open(&location, &opts, runner).await?;
    let base = public_base_url(&location, store.as_ref());
    Ok((store, base))
}

/// The URL consumers download from: under the catalog's `publish.tarball_url` for its tarball
/// bucket on AWS itself, otherwise the store's own public URL (the S3 endpoint's HTTP URL,
/// or `file://`).
pub(crate) fn public_base_url(location: &Location, store: &dyn Storage) -> String {
    let public = store.public_url();
    let catalog = crate::catalog::Catalog::embedded();
    match location {
        // `https://<bucket>.s3.<region>.amazonaws.com/...` is AWS, not an S3-compatible endpoint.
        Location::S3 { bucket, prefix }
            if *bucket == catalog.publish.tarball_bucket
                && public.starts_with(&format!("https://{bucket}.s3."))
                && public.contains(".amazonaws.com") =>
        {
            let base = catalog.publish.tarball_url.trim_end_matches('/');
            if prefix.is_empty() {
                base.to_owned()
            } else {
                format!("{base}/{prefix}")
            }
        }
        _ => public,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn destinations() {
        let d = Destination::parse("s3://b/slurm-factory/25.11/13.4.0/", "x.tar.gz").unwrap();
        assert_eq!(d.dir_url, "s3://b/slurm-factory/25.11/13.4.0");
        assert_eq!(d.name, "x.tar.gz");
        let d = Destination::parse(
            "s3://b/p/slurm-25.11-gcc13.4.0-software-arm64.tar.gz",
            "x.tar.gz",
        )
        .unwrap();
        assert_eq!(
            (d.dir_url.as_str(), d.name.as_str()),
            ("s3://b/p", "slurm-25.11-gcc13.4.0-software-arm64.tar.gz")
        );
        assert!(Destination::parse("https://x/y", "x.tar.gz").is_err());
        assert!(Destination::parse("s3://b/p/.tar.gz", "x.tar.gz").is_err());
    }

    fn s3_store(
        bucket: &str,
        prefix: &str,
        endpoint: Option<&str>,
    ) -> (Location, Box<dyn Storage>) {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("eu-west-1"))
            .build();
        let url = crate::s3::S3Url::new(bucket, prefix).unwrap();
        let store = crate::buildcache::S3Store::new(aws_sdk_s3::Client::from_conf(conf), url)
            .with_public_endpoint(endpoint.map(str::to_owned), "eu-west-1".into());
        (
            Location::parse(&format!("s3://{bucket}/{prefix}")).unwrap(),
            Box::new(store),
        )
    }

    #[test]
    fn public_base_urls() {
        // The catalog's tarball bucket on AWS: its public URL.
        let (loc, st) = s3_store("vantage-public-assets", "slurm-factory/25.11/13.4.0", None);
        assert_eq!(
            public_base_url(&loc, st.as_ref()),
            "https://vantage-public-assets.s3.amazonaws.com/slurm-factory/25.11/13.4.0"
        );
        // The same bucket name on an S3-compatible server: that server's URL.
        let (loc, st) = s3_store("vantage-public-assets", "x", Some("http://127.0.0.1:9000"));
        assert_eq!(
            public_base_url(&loc, st.as_ref()),
            "http://127.0.0.1:9000/vantage-public-assets/x"
        );
        // Another bucket on AWS: its regional virtual-hosted URL.
        let (loc, st) = s3_store("site-mirror", "slurm", None);
        assert_eq!(
            public_base_url(&loc, st.as_ref()),
            "https://site-mirror.s3.eu-west-1.amazonaws.com/slurm"
        );
        // A directory: its file:// URL.
        let d = tempfile::tempdir().unwrap();
        let loc = Location::Local(d.path().to_owned());
        let st = crate::buildcache::LocalDir::new(d.path());
        assert_eq!(
            public_base_url(&loc, &st),
            format!("file://{}", d.path().display())
        );
    }

    #[test]
    fn sums_merge_keeps_other_legs_and_refuses_garbage() {
        let merged = merge_sums(&sums_line(B, "z.tar.gz"), "a.tar.gz", A).unwrap();
        assert_eq!(merged, format!("{A}  a.tar.gz\n{B}  z.tar.gz\n"));
        // Re-publishing replaces our own line.
        assert_eq!(
            merge_sums(&merged, "a.tar.gz", B).unwrap(),
            format!("{B}  a.tar.gz\n{B}  z.tar.gz\n")
        );
        for bad in [
            format!("{A} a.tar.gz\n"),
            format!("{A}  a.tar.gz\r\n"),
            format!("{}  a.tar.gz\n", &A[1..]),
            format!("{A}  ../a.tar.gz\n"),
            format!("{A}  a.tar.gz\n{B}  a.tar.gz\n"),
            "   \n".to_owned(),
        ] {
            assert!(merge_sums(&bad, "n.tar.gz", A).is_err(), "{bad:?} accepted");
        }
    }
}
