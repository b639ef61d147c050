//! The one publish engine: a local Spack v3 buildcache (what `spack buildcache push` wrote)
//! to any writable [`Storage`] (`file://` or `s3://`), signed on the way. One file per step:
//!
//! 1. **Check the source, all of it, before anything is written** ([`source`]). Every file is
//!    walked without following links (a link or a FIFO is refused by name) and must belong to
//!    a v3 buildcache. A clearsigned spec manifest is accepted only if it verifies against a
//!    trusted key (the options' keys or the signing key), and only the text the signature
//!    covers is used from then on; an unsigned one is accepted when a signing key will sign
//!    it (or, without a key, only with [`PublishOptions::allow_unsigned`]). The publish mode
//!    selects the specs to publish.
//! 2. **Keys** ([`keys`]). The key index names only the signing key, the keys that signed the
//!    published manifests (trusted by the caller) and fingerprints listed in
//!    [`PublishOptions::publish_key_fingerprints`]; of those the engine publishes the keys it
//!    has (the signing key, and key manifests in the source). A destination key index that
//!    already names another fingerprint is refused, because Spack users may trust every key it
//!    lists, unless [`PublishOptions::accept_unknown_keys`].
//! 3. **Check every blob and plan against the destination** ([`check`], [`plan`]). Every blob
//!    a published manifest names is checked: its size first (from `fstat`, before reading),
//!    then its SHA-256; every spec blob must describe the spec its manifest key names. One
//!    listing of `v3/` (and of `blobs/` when a manifest is missing); a blob that is there is
//!    compared by SHA-256, never by size alone: a blob with other bytes under its digest's key
//!    is **replaced** by the checked source bytes, so the published cache verifies.
//! 4. **Sign** what needs signing ([`manifests`]): the verified text, never unverified bytes,
//!    in parallel. A destination spec manifest that already verifies with the signing key over
//!    the same text is kept (a new signature would differ only in its time), so a re-run writes
//!    nothing.
//! 5. **Write** ([`write`]), so a reader never sees a manifest or an index that points at a
//!    missing object: blobs (bounded parallelism; large files as parallel multipart uploads
//!    where the store does that; every upload carries the checked SHA-256 and is refused if the
//!    file changed since), then spec and key manifests and `layout.json` (when absent), then
//!    the key index and, last, the index, each through the one compare-and-swap loop
//!    ([`crate::buildcache::index::update_pointer`]) that merges again when another publisher
//!    won.
//!
//! Nothing is written when any check of steps 1–3 fails, and a dry run writes nothing.
//! [`Publisher`] prepares a publication before the work that produces its source.

use std::time::Instant;

use anyhow::{Result, bail};
use futures::StreamExt;
use futures::future::BoxFuture;

use crate::buildcache::storage::{LocalDir, Storage};
use crate::gha::Runner;
use crate::pgp::SigningKey;

mod check;
mod keys;
mod manifests;
mod options;
mod plan;
mod publisher;
mod remote;
mod report;
mod source;
mod write;

pub use options::{PublishMode, PublishOptions};
pub use publisher::{Done, PublishTarget, Publisher};
pub use report::{Change, ObjectChange, PublishReport, SpecOutcome, write_outputs};

/// Source files read at a time (local reads: a few per core keep the blocking pool busy).
const SOURCE_READS: usize = 16;

/// Requests in flight while planning (HEADs and small GETs; uploads use the store's own
/// concurrency). Planning is latency-bound: a no-change re-run is mostly these.
const PLAN_REQUESTS: usize = 64;

/// Runs `futs` with at most `limit` in flight; results in order.
async fn bounded<'a, T: 'a>(futs: Vec<BoxFuture<'a, T>>, limit: usize) -> Vec<T> {
    futures::stream::iter(futs)
        .buffered(limit.max(1))
        .collect()
        .await
}

/// Signs and publishes the buildcache at `source` to `dest` (see the module documentation).
/// With `key`, unsigned manifests are signed with it; without, manifests are published as
/// they are (signed ones verified, unsigned ones only with `allow_unsigned`).
pub async fn publish(
    runner: &Runner,
    source: &LocalDir,
    dest: &dyn Storage,
    key: Option<&SigningKey>,
    opts: &PublishOptions,
) -> Result<PublishReport> {
    let t0 = Instant::now();
    let mut report = PublishReport {
        url: dest.url(),
        public_url: dest.public_url(),
        fingerprint: key.map(SigningKey::fingerprint),
        dry_run: opts.dry_run,
        ..PublishReport::default()
    };
    if opts.mode == PublishMode::None {
        return Ok(report);
    }
    if !dest.capabilities().write {
        bail!(
            "{} cannot be written; publish to its s3:// or file:// location",
            dest.url()
        );
    }

    // 1. The source (the destination is listed meanwhile; a source error is reported first).
    let mut trusted = opts.trusted.clone();
    if let Some(k) = key {
        trusted.add_cert(k.public_cert().clone());
    }
    let (loaded, listed) = tokio::join!(
        source::load_source(source, &trusted, key.is_some(), opts.allow_unsigned),
        remote::Remote::read(dest)
    );
    let (all, source_files) = loaded?;
    let (mut selected, skipped) =
        source::select(runner, source, all, opts.mode, &opts.slurm_package)?;
    report.skipped = skipped;

    // 2. The keys.
    let keys = keys::KeyPlan::gather(source, &source_files, key, opts, &selected).await?;

    // 3. Every blob checked, the destination read; then every write planned (after step 4).
    let mut remote = listed?;
    let check::Checked {
        files,
        owner,
        existing,
    } = check::check_all(source, dest, &mut remote, key, &mut selected, &keys).await?;

    // 4. The spec manifests, signed where needed.
    let manifests = manifests::sign_manifests(key, &selected, existing)?;
    let plan = plan::Plan::make(dest, &remote, files, &keys, &selected, manifests).await?;
    plan.account(&selected, &owner, &mut report);

    // 5. The writes.
    let published: Vec<_> = selected.iter().map(|s| s.nodes.clone()).collect();
    write::write_plan(runner, dest, opts, &plan, &keys, &published, &mut report).await?;
    report.elapsed = t0.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests;
