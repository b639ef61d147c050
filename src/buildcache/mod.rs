//! Spack layout-v3 buildcaches: the typed layout ([`layout`]), where they are stored
//! ([`storage`]), the DB v8 index and key index and their one compare-and-swap loop
//! ([`index`]), signing ([`sign`]), the one publish engine ([`publish`]) and verification
//! ([`verify`]).
//!
//! Everything here matches what Spack 1.0.0 writes and reads (`url_buildcache.py`,
//! `binary_distribution.py`), checked against real buildcaches in `tests/fixtures/spack-v3`.

use anyhow::{Context, Result};

pub mod index;
pub mod layout;
pub mod publish;
pub mod sign;
pub mod signed;
pub mod storage;
pub(crate) mod trust;
pub(crate) mod verify;

pub use index::{Index, KeyIndex, MergeStats};
pub use layout::{BlobRecord, Manifest, Sha256Hex, SpecId, SpecNode};
pub use storage::{HttpStore, LocalDir, Location, S3Store, Storage};

/// A spec manifest read from a buildcache.
#[derive(Debug, Clone)]
pub struct SpecEntry {
    /// Which spec, from the manifest's key.
    pub id: SpecId,
    /// The manifest's key.
    pub key: String,
    /// The manifest bytes as stored (clearsigned or plain).
    pub stored: Vec<u8>,
    /// The manifest JSON text (an unsigned manifest: the stored bytes).
    pub text: Vec<u8>,
    /// The parsed manifest.
    pub manifest: Manifest,
}

impl SpecEntry {
    /// Whether the stored manifest is cleartext-signed.
    pub fn is_signed(&self) -> bool {
        crate::pgp::is_clearsigned(&self.stored)
    }
}

/// Reads and parses the unsigned spec manifest at `key`. A clearsigned manifest is refused
/// here: read it with [`signed::read_manifest`] against trusted keys.
pub async fn read_spec_entry(storage: &dyn Storage, key: &str) -> Result<SpecEntry> {
    let id = SpecId::from_manifest_key(key)?;
    let stored = storage
        .get(key)
        .await?
        .with_context(|| format!("{id}: manifest {key} disappeared"))?
        .bytes;
    let manifest = signed::read_unsigned_manifest(&stored, key).with_context(|| format!("{id}"))?;
    let text = stored.clone();
    Ok(SpecEntry {
        id,
        key: key.to_owned(),
        stored,
        text,
        manifest,
    })
}

/// Why a blob does not match its manifest record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobProblem {
    /// The record itself is malformed.
    #[error("bad blob record: {0}")]
    BadRecord(String),
    /// No object at the blob's key.
    #[error("blob {0} ({1}) is missing")]
    Missing(String, String),
    /// The size differs.
    #[error("blob {key} ({media_type}) is {actual} bytes, the manifest says {expected}")]
    Size {
        /// Blob key.
        key: String,
        /// What the blob is.
        media_type: String,
        /// Size in the manifest.
        expected: u64,
        /// Size found.
        actual: u64,
    },
    /// The digest differs.
    #[error("blob {key} ({media_type}) has sha256 {actual}, the manifest says {expected}")]
    Digest {
        /// Blob key.
        key: String,
        /// What the blob is.
        media_type: String,
        /// Digest in the manifest.
        expected: String,
        /// Digest found.
        actual: String,
    },
}

/// Checks that the blob of `record` exists and has the recorded size and SHA-256.
pub async fn check_blob(
    storage: &dyn Storage,
    record: &BlobRecord,
) -> Result<std::result::Result<(), BlobProblem>> {
    let sha = match record.sha256() {
        Ok(s) => s,
        Err(e) => return Ok(Err(BlobProblem::BadRecord(e.to_string()))),
    };
    let key = layout::blob_key(&sha);
    // The size first, from metadata: a huge (or sparse) file is refused without reading it.
    let Some(meta) = storage.head(&key).await? else {
        return Ok(Err(BlobProblem::Missing(key, record.media_type.clone())));
    };
    if meta.size != record.content_length {
        return Ok(Err(BlobProblem::Size {
            key,
            media_type: record.media_type.clone(),
            expected: record.content_length,
            actual: meta.size,
        }));
    }
    let Some((actual, size)) = storage.digest(&key).await? else {
        return Ok(Err(BlobProblem::Missing(key, record.media_type.clone())));
    };
    if size != record.content_length {
        return Ok(Err(BlobProblem::Size {
            key,
            media_type: record.media_type.clone(),
            expected: record.content_length,
            actual: size,
        }));
    }
    if actual != sha {
        return Ok(Err(BlobProblem::Digest {
            key,
            media_type: record.media_type.clone(),
            expected: sha.to_string(),
            actual: actual.to_string(),
        }));
    }
    Ok(Ok(()))
}

/// Reads the spec blob of `entry` (checking its digest) and parses its nodes, root first, and
/// checks that the root is the spec the manifest's key names (a manifest moved to another
/// spec's key is caught here). The spec JSON is capped at [`layout::SPEC_JSON_MAX_BYTES`].
pub async fn read_spec_nodes(storage: &dyn Storage, entry: &SpecEntry) -> Result<Vec<SpecNode>> {
    spec_nodes(
        storage,
        &entry.id,
        &entry.key,
        &entry.manifest,
        layout::SPEC_JSON_MAX_BYTES,
    )
    .await
}

/// Reads the spec blob `manifest` names for spec `id` (manifest at `key`): its size is checked
/// before it is read, its sha256 after, its decompressed JSON is capped at `max_json` bytes,
/// and its root node must be `id`.
pub async fn spec_nodes(
    storage: &dyn Storage,
    id: &SpecId,
    key: &str,
    manifest: &Manifest,
    max_json: u64,
) -> Result<Vec<SpecNode>> {
    let rec = manifest
        .spec_blob()
        .with_context(|| format!("{id}: manifest {key} lists no spec JSON blob"))?;
    let bkey = rec.key().with_context(|| format!("{id}: manifest {key}"))?;
    let size = storage
        .head(&bkey)
        .await?
        .with_context(|| format!("{id}: spec blob {bkey} is missing"))?
        .size;
    if size != rec.content_length {
        anyhow::bail!(
            "{id}: spec blob {bkey} is {size} bytes, manifest {key} says {}",
            rec.content_length
        );
    }
    if size > max_json {
        anyhow::bail!(
            "{id}: spec blob {bkey} is {size} bytes, over the {max_json}-byte limit for spec JSON"
        );
    }
    let bytes = storage
        .get(&bkey)
        .await?
        .with_context(|| format!("{id}: spec blob {bkey} is missing"))?
        .bytes;
    let sha = Sha256Hex::of(&bytes);
    if sha.as_str() != rec.checksum || bytes.len() as u64 != rec.content_length {
        anyhow::bail!("{id}: spec blob {bkey} does not match its record in manifest {key}");
    }
    let nodes = layout::parse_spec_blob_capped(&bytes, &rec.compression, max_json)
        .with_context(|| format!("{id}: spec blob {bkey} of manifest {key}"))?;
    let root = &nodes[0];
    if root.hash != id.hash || root.name != id.name || root.version != id.version {
        anyhow::bail!(
            "{id}: the manifest describes {}@{}/{} but is stored under {key} (a swapped or misplaced manifest)",
            root.name,
            root.version,
            root.hash.get(..7).unwrap_or(&root.hash),
        );
    }
    Ok(nodes)
}

/// Reads the index (manifest and DB blob) with the manifest's version tag, or `None` when the
/// buildcache has no index yet.
pub async fn read_index(storage: &dyn Storage) -> Result<Option<(Index, Option<String>)>> {
    Ok(index::read_pointer::<Index>(storage)
        .await?
        .map(|c| (c.doc, c.etag)))
}
