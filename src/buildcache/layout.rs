//! The Spack layout-v3 buildcache model: object keys, media types, blob records, manifests and
//! spec identities, matching Spack 1.0.0's `url_buildcache.py`.
//!
//! Keys are relative to the mirror root and use `/`: `blobs/sha256/<2>/<64>`,
//! `v3/manifests/spec/<name>/<name>-<version>-<hash>.spec.manifest.json`,
//! `v3/manifests/index/index.manifest.json`, `v3/manifests/key/<FPR>.key.manifest.json`,
//! `v3/manifests/key/keys.manifest.json`, `v3/layout.json`.

use std::fmt;
use std::io::Read;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::pgp;

/// The default cap on the decompressed size of a spec blob (64 MiB). A real spec file is a
/// few KiB to a few MiB; anything larger is refused before it is fully inflated.
pub const SPEC_JSON_MAX_BYTES: u64 = 64 << 20;

/// The layout version this module reads and writes.
pub const LAYOUT_VERSION: u32 = 3;
/// Key of `layout.json`.
pub const LAYOUT_JSON: &str = "v3/layout.json";
/// The bytes Spack writes to `layout.json` (`json.dump({"signing": "gpg"})`).
pub const LAYOUT_JSON_BYTES: &[u8] = br#"{"signing": "gpg"}"#;
/// Prefix of spec manifests.
pub const SPEC_PREFIX: &str = "v3/manifests/spec/";
/// Prefix of key manifests and the key index manifest.
pub const KEY_PREFIX: &str = "v3/manifests/key/";
/// Key of the index manifest.
pub const INDEX_MANIFEST: &str = "v3/manifests/index/index.manifest.json";
/// Key of the key index manifest.
pub const KEY_INDEX_MANIFEST: &str = "v3/manifests/key/keys.manifest.json";
/// Suffix of spec manifests.
pub const SPEC_SUFFIX: &str = ".spec.manifest.json";
/// Suffix of key manifests.
pub const KEY_SUFFIX: &str = ".key.manifest.json";

/// Media type of an install tarball.
pub const TARBALL_MEDIA_TYPE: &str = "application/vnd.spack.install.v2.tar+gzip";
/// Media type of the spec JSON (spec file format v5, Spack 1.0).
pub const SPEC_MEDIA_TYPE: &str = "application/vnd.spack.spec.v5+json";
/// Media type of the DB v8 index blob.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.spack.db.v8+json";
/// Media type of an armored public key blob.
pub const KEY_MEDIA_TYPE: &str = "application/pgp-keys";
/// Media type of the key index blob.
pub const KEY_INDEX_MEDIA_TYPE: &str = "application/vnd.spack.keyindex.v1+json";

/// A lower-case hex SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    /// Parses a 64-hex-digit digest (lower case, as Spack writes it).
    pub fn parse(s: &str) -> Result<Self> {
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            bail!("{s:?} is not a lower-case hex SHA-256 digest");
        }
        Ok(Sha256Hex(s.to_owned()))
    }
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Hex(hex::encode(Sha256::digest(bytes)))
    }
    /// The digest of everything `r` yields, and its length.
    pub fn of_reader(mut r: impl Read) -> std::io::Result<(Self, u64)> {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0u64;
        loop {
            let k = r.read(&mut buf)?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            n += k as u64;
        }
        Ok((Sha256Hex(hex::encode(h.finalize())), n))
    }
    /// The hex string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key of the blob with digest `sha`: `blobs/sha256/<2>/<64>`.
pub fn blob_key(sha: &Sha256Hex) -> String {
    format!("blobs/sha256/{}/{}", &sha.0[..2], sha.0)
}

/// The key of the key manifest of certificate `fpr`.
pub fn key_manifest_key(fpr: &pgp::KeyFingerprint) -> String {
    format!("{KEY_PREFIX}{fpr}{KEY_SUFFIX}")
}

/// One entry of a manifest's `data` list (Spack's `BlobRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobRecord {
    /// Size of the blob in bytes.
    pub content_length: u64,
    /// What the blob is.
    pub media_type: String,
    /// `gzip` or `none`.
    pub compression: String,
    /// Always `sha256` in layout v3.
    pub checksum_algorithm: String,
    /// Hex digest of the blob bytes.
    pub checksum: String,
}

impl BlobRecord {
    /// A record for `bytes`.
    pub fn for_bytes(bytes: &[u8], media_type: &str, compression: &str) -> Self {
        BlobRecord {
            content_length: bytes.len() as u64,
            media_type: media_type.into(),
            compression: compression.into(),
            checksum_algorithm: "sha256".into(),
            checksum: Sha256Hex::of(bytes).0,
        }
    }

    /// The digest, validated.
    pub fn sha256(&self) -> Result<Sha256Hex> {
        if self.checksum_algorithm != "sha256" {
            bail!(
                "blob checksum algorithm {:?} is not supported (layout v3 uses sha256)",
                self.checksum_algorithm
            );
        }
        Sha256Hex::parse(&self.checksum)
    }

    /// The key of the blob.
    pub fn key(&self) -> Result<String> {
        Ok(blob_key(&self.sha256()?))
    }
}

/// A buildcache manifest: `{"version":3,"data":[BlobRecord...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Manifest {
    /// Layout version (3).
    pub version: u32,
    /// The blobs.
    pub data: Vec<BlobRecord>,
}

impl Manifest {
    /// A v3 manifest over `data`.
    pub fn new(data: Vec<BlobRecord>) -> Self {
        Manifest {
            version: LAYOUT_VERSION,
            data,
        }
    }

    /// Parses manifest JSON (not signed).
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let m: Manifest =
            serde_json::from_slice(bytes).context("the manifest is not valid manifest JSON")?;
        if m.version != LAYOUT_VERSION {
            bail!(
                "the manifest has layout version {}, expected {LAYOUT_VERSION}",
                m.version
            );
        }
        Ok(m)
    }

    /// The first record of `media_type`.
    pub fn blob(&self, media_type: &str) -> Option<&BlobRecord> {
        self.data.iter().find(|r| r.media_type == media_type)
    }

    /// The spec JSON record (any `application/vnd.spack.spec.v*+json`).
    pub fn spec_blob(&self) -> Option<&BlobRecord> {
        self.data.iter().find(|r| {
            r.media_type.starts_with("application/vnd.spack.spec.v")
                && r.media_type.ends_with("+json")
        })
    }

    /// Serializes as Spack does: `json.dump(m, f, indent=0, separators=(",", ":"))`, one JSON
    /// token per line, no trailing newline.
    pub fn to_spack_json(&self) -> Vec<u8> {
        let mut s = format!("{{\n\"version\":{},\n\"data\":[", self.version);
        if self.data.is_empty() {
            s.push_str("]\n}");
            return s.into_bytes();
        }
        for (i, r) in self.data.iter().enumerate() {
            s.push_str(if i == 0 { "\n{\n" } else { ",\n{\n" });
            s.push_str(&format!("\"contentLength\":{},\n", r.content_length));
            s.push_str(&format!("\"mediaType\":{},\n", py_json_str(&r.media_type)));
            s.push_str(&format!(
                "\"compression\":{},\n",
                py_json_str(&r.compression)
            ));
            s.push_str(&format!(
                "\"checksumAlgorithm\":{},\n",
                py_json_str(&r.checksum_algorithm)
            ));
            s.push_str(&format!("\"checksum\":{}\n}}", py_json_str(&r.checksum)));
        }
        s.push_str("\n]\n}");
        s.into_bytes()
    }
}

/// A JSON string literal as Python's `json.dumps` writes it (`ensure_ascii=True`).
pub fn py_json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// The identity of a spec, from its manifest's key: name, version and 32-char DAG hash.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpecId {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// DAG hash (32 base32 characters).
    pub hash: String,
}

impl SpecId {
    /// Parses a spec manifest key `v3/manifests/spec/<name>/<name>-<version>-<hash>.spec.manifest.json`.
    pub fn from_manifest_key(key: &str) -> Result<Self> {
        let rest = key
            .strip_prefix(SPEC_PREFIX)
            .and_then(|r| r.strip_suffix(SPEC_SUFFIX))
            .with_context(|| format!("{key} is not a spec manifest key"))?;
        let (dir, file) = rest
            .split_once('/')
            .with_context(|| format!("{key}: expected <name>/<name>-<version>-<hash>"))?;
        let (head, hash) = file
            .rsplit_once('-')
            .with_context(|| format!("{key}: no hash in the file name"))?;
        let version = head
            .strip_prefix(dir)
            .and_then(|v| v.strip_prefix('-'))
            .with_context(|| format!("{key}: file name does not start with {dir}-"))?;
        if hash.len() != 32 || !hash.bytes().all(|b| b.is_ascii_alphanumeric()) {
            bail!("{key}: {hash:?} is not a 32-character DAG hash");
        }
        Ok(SpecId {
            name: dir.into(),
            version: version.into(),
            hash: hash.into(),
        })
    }

    /// The manifest key of this spec.
    pub fn manifest_key(&self) -> String {
        format!(
            "{SPEC_PREFIX}{0}/{0}-{1}-{2}{SPEC_SUFFIX}",
            self.name, self.version, self.hash
        )
    }
}

impl fmt::Display for SpecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}/{}", self.name, self.version, &self.hash[..7])
    }
}

/// One node of a spec file (`spec.nodes[]`), kept verbatim plus the fields we need.
#[derive(Debug, Clone)]
pub struct SpecNode {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// DAG hash.
    pub hash: String,
    /// Hashes of direct dependencies.
    pub dependencies: Vec<String>,
    /// Hashes of the direct dependencies needed at run time (link or run edges, see
    /// [`is_runtime_edge`]): what `spack install --cache-only` installs with the spec.
    pub runtime_dependencies: Vec<String>,
    /// The node JSON exactly as Spack wrote it.
    pub raw: Box<RawValue>,
}

#[derive(Deserialize)]
struct NodeFields {
    name: String,
    #[serde(default)]
    version: serde_json::Value,
    hash: String,
    #[serde(default)]
    dependencies: Vec<DepField>,
}

#[derive(Deserialize)]
struct DepField {
    hash: String,
    #[serde(default)]
    parameters: Option<DepParams>,
}

#[derive(Deserialize)]
struct DepParams {
    #[serde(default)]
    deptypes: Vec<String>,
}

/// Whether a dependency edge with `deptypes` is needed at run time: a `link` or `run` edge, or
/// one that names no types (older spec formats). Build-only and test-only edges are not: Spack
/// installs only link/run dependencies of a spec it takes from a buildcache
/// (`installer.py`, `BuildRequest.get_depflags` with `cache_only`).
pub fn is_runtime_edge(deptypes: &[String]) -> bool {
    deptypes.is_empty() || deptypes.iter().any(|t| t == "link" || t == "run")
}

impl SpecNode {
    /// Parses a node from its raw JSON.
    pub fn from_raw(raw: Box<RawValue>) -> Result<Self> {
        let f: NodeFields = serde_json::from_str(raw.get())
            .context("spec node lacks name/hash or has malformed dependencies")?;
        let version = match f.version {
            serde_json::Value::String(s) => s,
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        };
        let runtime_dependencies = f
            .dependencies
            .iter()
            .filter(|d| {
                d.parameters
                    .as_ref()
                    .is_none_or(|p| is_runtime_edge(&p.deptypes))
            })
            .map(|d| d.hash.clone())
            .collect();
        Ok(SpecNode {
            name: f.name,
            version,
            hash: f.hash,
            dependencies: f.dependencies.into_iter().map(|d| d.hash).collect(),
            runtime_dependencies,
            raw,
        })
    }
}

#[derive(Deserialize)]
struct SpecFile {
    spec: SpecFileSpec,
}

#[derive(Deserialize)]
struct SpecFileSpec {
    nodes: Vec<Box<RawValue>>,
}

/// Parses a spec blob (gzip-compressed or plain spec JSON) into its nodes, root first, with
/// the default decompression cap ([`SPEC_JSON_MAX_BYTES`]).
pub fn parse_spec_blob(bytes: &[u8], compression: &str) -> Result<Vec<SpecNode>> {
    parse_spec_blob_capped(bytes, compression, SPEC_JSON_MAX_BYTES)
}

/// Parses a spec blob into its nodes, root first. The spec JSON (after decompression) may be
/// at most `max_json` bytes: a gzip bomb is refused after inflating at most `max_json + 1`
/// bytes, never allocating more.
pub fn parse_spec_blob_capped(
    bytes: &[u8],
    compression: &str,
    max_json: u64,
) -> Result<Vec<SpecNode>> {
    let too_big = || {
        anyhow::anyhow!(
            "the spec JSON is larger than {max_json} bytes{}; a real spec is far smaller (a decompression bomb?). Raise the limit (--max-spec-bytes) only if you trust the cache",
            if compression == "gzip" {
                " once decompressed"
            } else {
                ""
            }
        )
    };
    let json = match compression {
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(bytes)
                .take(max_json.saturating_add(1))
                .read_to_end(&mut out)
                .context("the spec blob is not valid gzip")?;
            out
        }
        "none" => bytes.to_vec(),
        other => bail!("unsupported spec blob compression {other:?}"),
    };
    if json.len() as u64 > max_json {
        return Err(too_big());
    }
    let f: SpecFile = serde_json::from_slice(&json).context("the spec blob is not spec JSON")?;
    if f.spec.nodes.is_empty() {
        bail!("the spec blob has no nodes");
    }
    f.spec.nodes.into_iter().map(SpecNode::from_raw).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/spack-v3");

    #[test]
    fn manifests_roundtrip_byte_for_byte() {
        for rel in [
            "unsigned/v3/manifests/spec/demo-lib/demo-lib-1.0-or7dti47ajgrd2y5bgs2dujuath2dz3p.spec.manifest.json",
            "unsigned/v3/manifests/spec/demo-app/demo-app-2.0-resh3sdm7oulbae23jllsxfemfp24cba.spec.manifest.json",
            "unsigned/v3/manifests/index/index.manifest.json",
            "signed/v3/manifests/key/keys.manifest.json",
            "signed/v3/manifests/key/1A00B8893F4FAE1A76DB389DE145321FBC9F04BD.key.manifest.json",
        ] {
            let bytes = std::fs::read(format!("{FIX}/{rel}")).unwrap();
            let m = Manifest::from_json(&bytes).unwrap();
            assert_eq!(
                String::from_utf8(m.to_spack_json()).unwrap(),
                String::from_utf8(bytes).unwrap(),
                "{rel}"
            );
        }
        assert_eq!(
            String::from_utf8(Manifest::new(vec![]).to_spack_json()).unwrap(),
            "{\n\"version\":3,\n\"data\":[]\n}"
        );
    }

    #[test]
    fn spec_blob_decompression_is_capped() {
        use std::io::Write;
        let blob = std::fs::read(format!(
            "{FIX}/signed/blobs/sha256/b2/b21f87a953e1e24a549e3b7dfe885b14afafbd689a87ccd704e6bb633488f518"
        ))
        .unwrap();
        let nodes = parse_spec_blob(&blob, "gzip").unwrap();
        assert_eq!(nodes[0].name, "demo-lib");
        // The real blob inflates to a few hundred bytes: a cap below that refuses it.
        let err = parse_spec_blob_capped(&blob, "gzip", 100).unwrap_err();
        assert!(
            format!("{err:#}").contains("larger than 100 bytes"),
            "{err:#}"
        );
        // 8 MiB of zeros compress to ~8 KiB; a 1 MiB cap stops inflating at 1 MiB + 1 byte.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 8 << 20]).unwrap();
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 64 << 10);
        let err = parse_spec_blob_capped(&bomb, "gzip", 1 << 20).unwrap_err();
        assert!(format!("{err:#}").contains("decompression bomb"), "{err:#}");
    }

    #[test]
    fn spec_ids() {
        let k = "v3/manifests/spec/demo-lib/demo-lib-1.0-or7dti47ajgrd2y5bgs2dujuath2dz3p.spec.manifest.json";
        let id = SpecId::from_manifest_key(k).unwrap();
        assert_eq!(id.name, "demo-lib");
        assert_eq!(id.version, "1.0");
        assert_eq!(id.to_string(), "demo-lib@1.0/or7dti4");
        assert_eq!(id.manifest_key(), k);
        assert!(
            SpecId::from_manifest_key("v3/manifests/spec/x/y-1-abc.spec.manifest.json").is_err()
        );
        assert_eq!(py_json_str("a\"é😀"), "\"a\\\"\\u00e9\\ud83d\\ude00\"");
    }
}
