//! A local Spack v3 buildcache, read and checked before anything is published.
//!
//! Layout (Spack 1.0, `url_buildcache.py`): `blobs/sha256/<2 hex>/<64 hex>` (content-addressed),
//! `v3/manifests/spec/<name>/<name>-<version>-<hash>.spec.manifest.json` (optionally OpenPGP
//! cleartext-signed), `v3/manifests/key/<FPR>.key.manifest.json`,
//! `v3/manifests/key/keys.manifest.json`, `v3/manifests/index/index.manifest.json` and
//! `v3/layout.json`. Every manifest is `{"version":3,"data":[records]}`, each record naming a
//! blob by its SHA-256.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Relative path of the index manifest.
pub const INDEX_MANIFEST: &str = "v3/manifests/index/index.manifest.json";
/// Relative path of the key index manifest.
pub const KEYS_MANIFEST: &str = "v3/manifests/key/keys.manifest.json";
/// Relative path of the layout file.
pub const LAYOUT: &str = "v3/layout.json";
/// Media type of the index database blob.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.spack.db.v8+json";
/// Media type of the key index blob.
pub const KEYS_MEDIA_TYPE: &str = "application/vnd.spack.keyindex.v1+json";

const SIGNED_HEADER: &str = "-----BEGIN PGP SIGNED MESSAGE-----";

/// A SHA-256 digest as 64 lower-case hex characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    /// Parses 64 lower-case hex characters.
    pub fn parse(s: &str) -> Result<Self> {
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            bail!("{s:?} is not a SHA-256 digest (64 lower-case hex characters)");
        }
        Ok(Sha256Hex(s.to_owned()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Hex(hex::encode(Sha256::digest(bytes)))
    }

    /// The hex string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digest as S3 wants it in `x-amz-checksum-sha256`: base64 of the 32 bytes.
    pub fn to_base64(&self) -> String {
        let raw = hex::decode(&self.0).expect("validated hex");
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    /// The blob's path relative to the buildcache root: `blobs/sha256/<2 hex>/<64 hex>`.
    pub fn blob_path(&self) -> String {
        format!("blobs/sha256/{}/{}", &self.0[..2], self.0)
    }
}

impl std::fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One record of a v3 manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Size of the blob in bytes.
    pub content_length: u64,
    /// Media type.
    pub media_type: String,
    /// `none` or `gzip`.
    pub compression: String,
    /// Always `sha256`.
    pub checksum_algorithm: String,
    /// Hex digest of the blob.
    pub checksum: String,
}

/// A v3 manifest: `{"version":3,"data":[...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Manifest {
    /// Layout version (3).
    pub version: u32,
    /// The records.
    pub data: Vec<Record>,
}

impl Manifest {
    /// Parses a manifest, unwrapping an OpenPGP cleartext signature if there is one
    /// (the signature itself is not verified here).
    pub fn parse(text: &str) -> Result<Self> {
        let json = strip_clearsign(text)?;
        let m: Manifest = serde_json::from_str(&json).context("not a Spack v3 manifest")?;
        if m.version != 3 {
            bail!("manifest version {} is not 3", m.version);
        }
        for r in &m.data {
            if r.checksum_algorithm != "sha256" {
                bail!("unsupported checksum algorithm {:?}", r.checksum_algorithm);
            }
            Sha256Hex::parse(&r.checksum)?;
        }
        Ok(m)
    }

    /// A manifest with one record, written the way Spack writes it (one JSON token per line).
    pub fn single(record: Record) -> Self {
        Manifest {
            version: 3,
            data: vec![record],
        }
    }

    /// The bytes Spack would write (`json.dumps(indent=0, separators=(",", ":"))`: one JSON
    /// token per line, fields in Spack's order).
    pub fn to_spack_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, Indent0::default());
        serde::Serialize::serialize(self, &mut ser).expect("serializable");
        out
    }
}

/// A `serde_json` formatter that writes like Python's `json.dumps(indent=0,
/// separators=(",", ":"))`.
#[derive(Default)]
struct Indent0 {
    has_value: bool,
}

impl serde_json::ser::Formatter for Indent0 {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.has_value = false;
        w.write_all(b"[")
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        if self.has_value {
            w.write_all(b"\n")?;
        }
        self.has_value = true;
        w.write_all(b"]")
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        w.write_all(if first { b"\n" } else { b",\n" })
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.has_value = false;
        w.write_all(b"{")
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        if self.has_value {
            w.write_all(b"\n")?;
        }
        self.has_value = true;
        w.write_all(b"}")
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        w.write_all(if first { b"\n" } else { b",\n" })
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b":")
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// The JSON text inside an OpenPGP cleartext-signed message, or `text` itself when unsigned.
pub fn strip_clearsign(text: &str) -> Result<String> {
    let t = text.trim_start();
    if !t.starts_with(SIGNED_HEADER) {
        return Ok(text.to_owned());
    }
    let body = t
        .split_once("\n\n")
        .or_else(|| t.split_once("\r\n\r\n"))
        .map(|(_, b)| b)
        .context("cleartext-signed manifest without a blank line after its headers")?;
    let end = body
        .find("\n-----BEGIN PGP SIGNATURE-----")
        .context("cleartext-signed manifest without a signature block")?;
    // Dash-escaping (RFC 4880 §7.1) never applies to JSON lines, but undo it anyway.
    Ok(body[..end]
        .lines()
        .map(|l| l.strip_prefix("- ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Whether a manifest's text is OpenPGP cleartext-signed.
pub fn is_clearsigned(text: &str) -> bool {
    text.trim_start().starts_with(SIGNED_HEADER)
}

/// A local file to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// Path relative to the buildcache root (`/`-separated).
    pub rel: String,
    /// Absolute path on disk.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
}

/// A local content-addressed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalBlob {
    /// The digest its name claims.
    pub digest: Sha256Hex,
    /// The file.
    pub file: LocalFile,
}

/// A local buildcache, scanned and structurally checked.
#[derive(Debug, Clone)]
pub struct LocalCache {
    /// The root directory.
    pub root: PathBuf,
    /// Content-addressed blobs, by digest.
    pub blobs: BTreeMap<Sha256Hex, LocalBlob>,
    /// Spec manifests with their parsed records and the DAG hash from their file name.
    pub spec_manifests: Vec<(LocalFile, Manifest, String)>,
    /// Per-key manifests (`<FPR>.key.manifest.json`).
    pub key_manifests: Vec<(LocalFile, Manifest)>,
    /// The key index manifest, if any.
    pub keys_manifest: Option<(LocalFile, Manifest)>,
    /// The index manifest, if any.
    pub index_manifest: Option<(LocalFile, Manifest)>,
    /// `v3/layout.json`, if any.
    pub layout: Option<LocalFile>,
    /// Whether every spec manifest is cleartext-signed.
    pub all_signed: bool,
}

impl LocalCache {
    /// Scans `root`. Fails on files that do not belong to a v3 buildcache and on manifests
    /// that do not parse.
    pub fn scan(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            bail!(
                "the buildcache directory {} does not exist or is not a directory",
                root.display()
            );
        }
        if !root.join("v3").is_dir() {
            bail!(
                "{} is not a Spack v3 buildcache: it has no v3/ directory (push it with Spack ≥ 1.0)",
                root.display()
            );
        }
        let mut files = Vec::new();
        walk(root, root, &mut files)?;
        let mut cache = LocalCache {
            root: root.to_owned(),
            blobs: BTreeMap::new(),
            spec_manifests: Vec::new(),
            key_manifests: Vec::new(),
            keys_manifest: None,
            index_manifest: None,
            layout: None,
            all_signed: true,
        };
        let mut unknown = Vec::new();
        for f in files {
            let parts: Vec<&str> = f.rel.split('/').collect();
            match parts.as_slice() {
                ["blobs", "sha256", shard, name] => {
                    let digest = Sha256Hex::parse(name)
                        .with_context(|| format!("blob {} is not named by its SHA-256", f.rel))?;
                    if &name[..2] != *shard {
                        bail!("blob {} is in the wrong shard directory", f.rel);
                    }
                    cache
                        .blobs
                        .insert(digest.clone(), LocalBlob { digest, file: f });
                }
                ["v3", "layout.json"] => cache.layout = Some(f),
                ["v3", "manifests", "index", "index.manifest.json"] => {
                    let m = read_manifest(&f)?;
                    cache.index_manifest = Some((f, m));
                }
                ["v3", "manifests", "key", "keys.manifest.json"] => {
                    let m = read_manifest(&f)?;
                    cache.keys_manifest = Some((f, m));
                }
                ["v3", "manifests", "key", name] if name.ends_with(".key.manifest.json") => {
                    let m = read_manifest(&f)?;
                    cache.key_manifests.push((f, m));
                }
                ["v3", "manifests", "spec", _, name] if name.ends_with(".spec.manifest.json") => {
                    let stem = name.trim_end_matches(".spec.manifest.json");
                    let hash = stem.rsplit('-').next().unwrap_or_default().to_owned();
                    if hash.len() != 32 {
                        bail!(
                            "spec manifest {} does not end in a 32-character DAG hash",
                            f.rel
                        );
                    }
                    let text = std::fs::read_to_string(&f.path)
                        .with_context(|| format!("cannot read {}", f.path.display()))?;
                    cache.all_signed &= is_clearsigned(&text);
                    let m = Manifest::parse(&text)
                        .with_context(|| format!("invalid spec manifest {}", f.rel))?;
                    cache.spec_manifests.push((f, m, hash));
                }
                _ => unknown.push(f.rel),
            }
        }
        if !unknown.is_empty() {
            bail!(
                "{} holds files that are not part of a Spack v3 buildcache: {}. Remove them or point --source at the buildcache root",
                root.display(),
                unknown.join(", ")
            );
        }
        Ok(cache)
    }

    /// Every blob digest a manifest of this cache refers to, with the manifest that does.
    pub fn referenced_blobs(&self) -> BTreeMap<Sha256Hex, String> {
        let mut out = BTreeMap::new();
        let all = self
            .spec_manifests
            .iter()
            .map(|(f, m, _)| (f, m))
            .chain(self.key_manifests.iter().map(|(f, m)| (f, m)))
            .chain(self.keys_manifest.iter().map(|(f, m)| (f, m)))
            .chain(self.index_manifest.iter().map(|(f, m)| (f, m)));
        for (f, m) in all {
            for r in &m.data {
                out.entry(Sha256Hex(r.checksum.clone()))
                    .or_insert_with(|| f.rel.clone());
            }
        }
        out
    }

    /// The DAG hashes of the spec manifests.
    pub fn spec_hashes(&self) -> BTreeSet<String> {
        self.spec_manifests
            .iter()
            .map(|(_, _, h)| h.clone())
            .collect()
    }

    /// Reads and parses the JSON blob a single-record manifest points at, from the local tree.
    pub fn read_pointed_json(&self, m: &Manifest) -> Result<serde_json::Value> {
        let r = m.data.first().context("manifest without records")?;
        let digest = Sha256Hex::parse(&r.checksum)?;
        let blob = self.blobs.get(&digest).with_context(|| {
            format!(
                "the blob {} a local manifest points at is missing",
                digest.blob_path()
            )
        })?;
        let bytes = std::fs::read(&blob.file.path)
            .with_context(|| format!("cannot read {}", blob.file.path.display()))?;
        if Sha256Hex::of(&bytes) != digest {
            bail!(
                "local blob {} is corrupt: its SHA-256 does not match its name",
                blob.file.rel
            );
        }
        serde_json::from_slice(&bytes)
            .with_context(|| format!("blob {} is not JSON", blob.file.rel))
    }
}

fn read_manifest(f: &LocalFile) -> Result<Manifest> {
    let text = std::fs::read_to_string(&f.path)
        .with_context(|| format!("cannot read {}", f.path.display()))?;
    Manifest::parse(&text).with_context(|| format!("invalid manifest {}", f.rel))
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<LocalFile>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for e in entries {
        let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = e.path();
        let ft = e.file_type()?;
        if ft.is_dir() {
            walk(root, &path, out)?;
        } else if ft.is_file() {
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let size = e.metadata()?.len();
            out.push(LocalFile { rel, path, size });
        } else {
            bail!(
                "{} is neither a file nor a directory (symlinks are not published)",
                path.display()
            );
        }
    }
    Ok(())
}

/// SHA-256 of a whole file, and of each `part_size` slice of it when `part_size` is set.
pub fn hash_file(path: &Path, part_size: Option<u64>) -> Result<(Sha256Hex, Vec<Sha256Hex>)> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut whole = Sha256::new();
    let mut part = Sha256::new();
    let mut in_part = 0u64;
    let mut parts = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        whole.update(chunk);
        if let Some(ps) = part_size {
            while !chunk.is_empty() {
                let take = ((ps - in_part) as usize).min(chunk.len());
                part.update(&chunk[..take]);
                in_part += take as u64;
                chunk = &chunk[take..];
                if in_part == ps {
                    parts.push(Sha256Hex(hex::encode(part.finalize_reset())));
                    in_part = 0;
                }
            }
        }
    }
    if part_size.is_some() && in_part > 0 {
        parts.push(Sha256Hex(hex::encode(part.finalize())));
    }
    Ok((Sha256Hex(hex::encode(whole.finalize())), parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(which: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/spack-v3")
            .join(which)
    }

    #[test]
    fn scans_the_spack_fixtures() {
        let signed = LocalCache::scan(&fixture("signed")).unwrap();
        assert_eq!(signed.blobs.len(), 7);
        assert_eq!(signed.spec_manifests.len(), 2);
        assert!(signed.all_signed);
        assert_eq!(signed.key_manifests.len(), 1);
        assert!(signed.keys_manifest.is_some() && signed.index_manifest.is_some());
        let refs = signed.referenced_blobs();
        assert!(refs.keys().all(|d| signed.blobs.contains_key(d)));
        assert_eq!(
            signed.spec_hashes().into_iter().collect::<Vec<_>>(),
            [
                "or7dti47ajgrd2y5bgs2dujuath2dz3p",
                "resh3sdm7oulbae23jllsxfemfp24cba"
            ]
        );
        let unsigned = LocalCache::scan(&fixture("unsigned")).unwrap();
        assert!(!unsigned.all_signed);
        let db = signed
            .read_pointed_json(&signed.index_manifest.as_ref().unwrap().1)
            .unwrap();
        assert_eq!(db["database"]["version"], "8");
    }

    #[test]
    fn writes_manifests_like_spack() {
        let path = fixture("signed").join(INDEX_MANIFEST);
        let text = std::fs::read_to_string(&path).unwrap();
        let m = Manifest::parse(&text).unwrap();
        assert_eq!(
            String::from_utf8(m.to_spack_json()).unwrap(),
            text.trim_end_matches('\n')
        );
    }

    #[test]
    fn hashes_whole_files_and_parts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let (whole, parts) = hash_file(&p, Some(1_000_000)).unwrap();
        assert_eq!(whole, Sha256Hex::of(&data));
        assert_eq!(parts.len(), 3);
        for (i, h) in parts.iter().enumerate() {
            assert_eq!(*h, Sha256Hex::of(&data[i * 1_000_000..(i + 1) * 1_000_000]));
        }
        let (_, parts) = hash_file(&p, Some(2_000_000)).unwrap();
        assert_eq!(parts[1], Sha256Hex::of(&data[2_000_000..]));
    }
}
