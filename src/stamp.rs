//! Build stamps: a small clearsigned JSON document a leg writes beside what it published,
//! last, after everything it vouches for is uploaded, saying which inputs built it.
//!
//! A stamp holds its format version, the leg's label, the leg's full input fingerprint
//! ([`crate::fingerprint::Fingerprint`]: the fingerprint and every ingredient with its hash, so a
//! plan can tell which ingredient changed), what was published (a buildcache: its destination,
//! the publish mode and every spec manifest it published; a tarball: its object key, size and
//! SHA-256), the run that published it (absent outside Actions) and the time.
//!
//! Where (names Spack and the tarball readers ignore):
//! - a buildcache leg: [`BUILDCACHE_STAMP`] at the root of the leg's buildcache prefix (beside
//!   `v3/`, which is all Spack reads);
//! - a tarball leg: `<tarball name>.stamp.json.sig` beside the tarball ([`tarball_stamp_name`]).
//!
//! Reading goes only through the text the signature covers ([`read`]): a stamp that does not
//! verify against a pinned key, that is larger than [`MAX_STAMP_BYTES`], that repeats a JSON
//! key, carries data after the document, names an unknown format version or field, or is not
//! in the canonical form the writer produces, is refused with an error saying which.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::buildcache::storage::{PutOptions, Storage};
use crate::fingerprint::{Fingerprint, Ingredient};
use crate::pgp::{KeyFingerprint, SigningKey, TrustedKeys, VerifyError};

/// The stamp format this tool writes and the only one it reads.
pub const FORMAT_VERSION: u64 = 1;

/// The stamp's name at the root of a buildcache prefix. Spack reads only `v3/` (and the
/// legacy `build_cache/`) under a mirror, so it never sees this file.
pub const BUILDCACHE_STAMP: &str = "slurm-factory.stamp.json.sig";

/// A stamp larger than this is refused before it is read (a real one is a few KiB).
pub const MAX_STAMP_BYTES: u64 = 256 * 1024;

/// The stamp's name beside the tarball `name`: `<name>.stamp.json.sig` (the tarball readers
/// read only the tarball, its `.asc`, `SHA256SUMS` and the `<FPR>.pub.asc`).
pub fn tarball_stamp_name(name: &str) -> String {
    format!("{name}.stamp.json.sig")
}

/// The fingerprint a stamp records: [`Fingerprint`] with owned ingredient names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StampedFingerprint {
    /// `sha256:<hex>`.
    pub fingerprint: String,
    /// Every ingredient by name.
    pub ingredients: BTreeMap<String, Ingredient>,
}

impl From<&Fingerprint> for StampedFingerprint {
    fn from(f: &Fingerprint) -> Self {
        StampedFingerprint {
            fingerprint: f.fingerprint.clone(),
            ingredients: f
                .ingredients
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }
    }
}

/// One spec manifest a buildcache leg published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StampedSpec {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// DAG hash.
    pub hash: String,
    /// The manifest's key under the buildcache prefix (`v3/manifests/spec/...`).
    pub manifest: String,
}

/// What a leg published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Published {
    /// A buildcache (compiler and Slurm legs).
    Buildcache {
        /// The destination, `s3://bucket/prefix`.
        destination: String,
        /// The publish mode: `all` or `slurm-only`.
        mode: String,
        /// Every spec manifest published, by key order.
        specs: Vec<StampedSpec>,
    },
    /// A tarball (tarball legs).
    Tarball {
        /// The destination directory, `s3://bucket/dir`.
        destination: String,
        /// The tarball's object name there.
        name: String,
        /// Its size in bytes.
        size: u64,
        /// Its SHA-256, hex.
        sha256: String,
    },
}

/// A build stamp (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stamp {
    /// [`FORMAT_VERSION`].
    pub format: u64,
    /// The leg's label (`slurm-25.11-gcc13.4.0-cpu-amd64`).
    pub leg: String,
    /// The leg's input fingerprint, with every ingredient.
    pub fingerprint: StampedFingerprint,
    /// What the leg published.
    pub published: Published,
    /// The run that published it (`https://github.com/<repo>/actions/runs/<id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_url: Option<String>,
    /// When, RFC 3339 UTC.
    pub time: String,
}

impl Stamp {
    /// A stamp of `fingerprint`'s leg, published as `published`, now.
    pub fn new(fingerprint: &Fingerprint, published: Published, run_url: Option<String>) -> Self {
        Stamp {
            format: FORMAT_VERSION,
            leg: fingerprint.leg.clone(),
            fingerprint: fingerprint.into(),
            published,
            run_url,
            time: crate::pgp::rfc3339(SystemTime::now()),
        }
    }

    /// The canonical text: pretty JSON, no trailing newline (what is signed, and the only
    /// form [`read`] accepts).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a stamp always serializes")
    }

    /// The clearsigned stamp.
    pub fn sign(&self, key: &SigningKey) -> Result<Vec<u8>> {
        key.clearsign(&self.to_json())
    }

    /// The ingredients whose hash differs from `current`'s (or that only one has).
    pub fn changed_ingredients(&self, current: &Fingerprint) -> Vec<String> {
        let mut out: Vec<String> = current
            .ingredients
            .iter()
            .filter(|(n, i)| {
                self.fingerprint.ingredients.get(**n).map(|o| &o.sha256) != Some(&i.sha256)
            })
            .map(|(n, _)| (*n).to_owned())
            .collect();
        for n in self.fingerprint.ingredients.keys() {
            if !current.ingredients.contains_key(n.as_str()) {
                out.push(n.clone());
            }
        }
        out
    }

    /// Where the stamp came from, for a summary: the run URL, else the time.
    pub fn since(&self) -> &str {
        self.run_url.as_deref().unwrap_or(&self.time)
    }
}

/// Why a stamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    /// Larger than [`MAX_STAMP_BYTES`].
    #[error("the stamp is {0} bytes, over the limit of {MAX_STAMP_BYTES}; a stamp is a few KiB")]
    TooLarge(u64),
    /// The signature (or the armor around it) did not verify.
    #[error("{0}")]
    Signature(#[from] VerifyError),
    /// A JSON object repeats a key (readers could disagree on which value counts).
    #[error("the signed text repeats the JSON key {0}")]
    DuplicateKey(String),
    /// Data after the JSON document.
    #[error("the signed text has data after the JSON document ({0})")]
    TrailingData(String),
    /// A format version this tool does not read.
    #[error(
        "stamp format {0} is not the format {FORMAT_VERSION} this slurm-factory reads; a newer tool wrote it (it is treated as no stamp)"
    )]
    UnknownFormat(String),
    /// Not a stamp (missing or unknown fields, wrong types, not JSON).
    #[error("the signed text is not a stamp: {0}")]
    Invalid(String),
    /// Valid, but not byte for byte the form the writer produces.
    #[error(
        "the signed text is not in the canonical form slurm-factory writes (reformatted or reordered)"
    )]
    NotCanonical,
}

/// A stamp whose signature verified against a pinned key.
#[derive(Debug, Clone)]
pub struct VerifiedStamp {
    /// The signer's primary fingerprint.
    pub signer: KeyFingerprint,
    /// The stamp, parsed from the verified text only.
    pub stamp: Stamp,
}

/// Verifies the clearsigned stamp `stored` against `trusted` and parses the stamp from the
/// verified text only (see the module documentation for what is refused).
pub fn read(stored: &[u8], trusted: &TrustedKeys) -> Result<VerifiedStamp, StampError> {
    if stored.len() as u64 > MAX_STAMP_BYTES {
        return Err(StampError::TooLarge(stored.len() as u64));
    }
    let v = trusted.verify_cleartext(stored)?;
    let stamp = parse(&v.text)?;
    Ok(VerifiedStamp {
        signer: v.signer,
        stamp,
    })
}

/// Parses verified stamp text (see [`read`]).
fn parse(text: &[u8]) -> Result<Stamp, StampError> {
    let mut de = serde_json::Deserializer::from_slice(text);
    match Walk(String::new()).deserialize(&mut de) {
        Ok(()) => {}
        Err(e) => {
            let m = e.to_string();
            return Err(match m.strip_prefix(DUP) {
                Some(rest) => StampError::DuplicateKey(
                    rest.split_once(" at line ")
                        .map_or(rest, |(k, _)| k)
                        .to_owned(),
                ),
                None => StampError::Invalid(m),
            });
        }
    }
    if let Err(e) = de.end() {
        return Err(StampError::TrailingData(e.to_string()));
    }
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| StampError::Invalid(e.to_string()))?;
    match value.get("format") {
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(FORMAT_VERSION) => {}
        Some(other) => return Err(StampError::UnknownFormat(other.to_string())),
        None => return Err(StampError::Invalid("no `format` field".into())),
    }
    let stamp: Stamp =
        serde_json::from_value(value).map_err(|e| StampError::Invalid(e.to_string()))?;
    if stamp.to_json() != text {
        return Err(StampError::NotCanonical);
    }
    Ok(stamp)
}

const DUP: &str = "duplicate key ";

/// Walks a JSON document, refusing a repeated key in any object.
struct Walk(String);

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(Walk(format!("{}[{i}]", self.0)))?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            let path = format!("{}.{k}", self.0);
            if !seen.insert(k) {
                return Err(serde::de::Error::custom(format!("{DUP}{path:?}")));
            }
            map.next_value_seed(Walk(path))?;
        }
        Ok(())
    }
}

/// Writes the stamp of a buildcache leg whose publication `done` finished: every spec
/// manifest it published, its destination and mode, at [`BUILDCACHE_STAMP`] (last: call it
/// after the index is written).
pub async fn stamp_buildcache(
    runner: &crate::gha::Runner,
    done: &crate::buildcache::publish::Done,
    fingerprint: &Fingerprint,
) -> Result<()> {
    let mut specs: Vec<StampedSpec> = done
        .report
        .specs
        .iter()
        .map(|o| StampedSpec {
            name: o.id.name.clone(),
            version: o.id.version.clone(),
            hash: o.id.hash.clone(),
            manifest: o.id.manifest_key(),
        })
        .collect();
    specs.sort_by(|a, b| a.manifest.cmp(&b.manifest));
    let stamp = Stamp::new(
        fingerprint,
        Published::Buildcache {
            destination: done.dest.url(),
            mode: done.mode.to_string(),
            specs,
        },
        runner.run_url(),
    );
    let n = write(done.dest.as_ref(), BUILDCACHE_STAMP, &stamp, &done.key).await?;
    stamped(
        runner,
        &format!("{}/{BUILDCACHE_STAMP}", done.dest.url()),
        &stamp,
        n,
    )
}

/// Writes the stamp of a tarball leg beside the tarball `name` in `storage` (the tarball's
/// directory), after the tarball, its signature and `SHA256SUMS` are uploaded.
pub async fn stamp_tarball(
    runner: &crate::gha::Runner,
    storage: &dyn Storage,
    name: &str,
    size: u64,
    sha256: &str,
    key: &SigningKey,
    fingerprint: &Fingerprint,
) -> Result<()> {
    let stamp = Stamp::new(
        fingerprint,
        Published::Tarball {
            destination: storage.url(),
            name: name.to_owned(),
            size,
            sha256: sha256.to_owned(),
        },
        runner.run_url(),
    );
    let at = tarball_stamp_name(name);
    let n = write(storage, &at, &stamp, key).await?;
    stamped(runner, &format!("{}/{at}", storage.url()), &stamp, n)
}

fn stamped(runner: &crate::gha::Runner, url: &str, stamp: &Stamp, n: u64) -> Result<()> {
    runner.notice(&format!(
        "build stamp {url} ({n} bytes): leg {} at {}",
        stamp.leg, stamp.fingerprint.fingerprint
    ));
    runner.append_summary(&format!(
        "\nBuild stamp: `{url}` (leg `{}`, fingerprint `{}`); a later plan skips this leg while its inputs stay the same.\n",
        stamp.leg, stamp.fingerprint.fingerprint
    ))
}

/// Signs `stamp` and writes it at `key` of `storage` (no-cache: a plan must see the newest).
pub async fn write(
    storage: &dyn Storage,
    key: &str,
    stamp: &Stamp,
    signing_key: &SigningKey,
) -> Result<u64> {
    let signed = stamp.sign(signing_key)?;
    let n = signed.len() as u64;
    let opts = PutOptions {
        content_type: Some("text/plain; charset=utf-8".into()),
        cache_control: Some("no-cache".into()),
        ..PutOptions::default()
    };
    storage
        .put(key, signed, opts)
        .await
        .with_context(|| format!("cannot write the build stamp {key} to {}", storage.url()))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> Fingerprint {
        let c = crate::catalog::Catalog::embedded();
        let job = crate::spack::Job::compiler_on(
            &c,
            "13.4.0".parse().unwrap(),
            c.architectures.default.clone(),
            None,
        )
        .unwrap();
        crate::fingerprint::of(&job, false, &crate::fingerprint::Sources::embedded()).unwrap()
    }

    #[test]
    fn canonical_text_parses_back_and_everything_else_is_refused_by_name() {
        let s = Stamp::new(
            &fp(),
            Published::Tarball {
                destination: "s3://b/d".into(),
                name: "x.tar.gz".into(),
                size: 3,
                sha256: "00".repeat(32),
            },
            Some("https://github.com/o/r/actions/runs/1".into()),
        );
        let text = s.to_json();
        assert_eq!(parse(&text).unwrap(), s);
        assert!(s.changed_ingredients(&fp()).is_empty());
        let t = String::from_utf8(text.clone()).unwrap();
        let dup = t.replacen("\"leg\":", "\"leg\": \"other\",\n  \"leg\":", 1);
        assert!(
            matches!(parse(dup.as_bytes()), Err(StampError::DuplicateKey(k)) if k == "\".leg\""),
            "{dup}"
        );
        let trailing = format!("{t}\n{{}}");
        assert!(matches!(
            parse(trailing.as_bytes()),
            Err(StampError::TrailingData(_))
        ));
        let v2 = t.replacen("\"format\": 1", "\"format\": 2", 1);
        assert!(matches!(
            parse(v2.as_bytes()),
            Err(StampError::UnknownFormat(v)) if v == "2"
        ));
        let extra = t.replacen("\"format\": 1,", "\"format\": 1,\n  \"extra\": true,", 1);
        assert!(matches!(
            parse(extra.as_bytes()),
            Err(StampError::Invalid(m)) if m.contains("extra")
        ));
        let compact = serde_json::to_vec(&s).unwrap();
        assert_eq!(parse(&compact), Err(StampError::NotCanonical));
        assert_eq!(
            crate::pgp::rfc3339(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_399)),
            "1970-01-01T23:59:59Z"
        );
    }
}
