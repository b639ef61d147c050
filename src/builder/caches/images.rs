//! Build images that survive: after a build, the image is saved (`docker save`, through the
//! engine API) into the image cache as `<context digest>.tar`, the digest that also names its
//! tag ([`crate::docker::BuildContext::image_tag`]), so the key is exactly the image's inputs.
//! Before a build, when the engine lacks the image but the cache has it, the archive is
//! loaded instead of building (after checking that it names only that tag, so an archive
//! cannot re-tag other images on load). `no_cache` bypasses both. Failures are warnings: the
//! build then builds the image as it would without a cache.

use std::io::Read as _;

use anyhow::{Context, Result, bail};

use super::{CacheDir, Inserted, human_bytes};
use crate::docker::{BuildContext, Engine};
use crate::gha::Runner;

/// The cache entry of a build context's image.
pub fn entry_name(ctx: &BuildContext) -> String {
    format!("{}.tar", ctx.digest())
}

/// Checks that the image archive `file` (a `docker save` tar) tags exactly `tag` and nothing
/// else: its `manifest.json` lists one image whose `RepoTags` is `[tag]`, and its
/// `repositories` (when present) names only that tag.
pub fn check_archive(file: std::fs::File, tag: &str) -> Result<()> {
    let (repo, version) = tag.rsplit_once(':').context("an image tag has a ':'")?;
    let mut archive = tar::Archive::new(file);
    let mut manifest_seen = false;
    for entry in archive.entries().context("not a tar archive")? {
        let mut entry = entry.context("not a tar archive")?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let path = path.trim_start_matches("./");
        if path != "manifest.json" && path != "repositories" {
            continue;
        }
        if entry.size() > 1 << 20 {
            bail!("its {path} is larger than 1 MiB");
        }
        let mut text = String::new();
        entry.read_to_string(&mut text)?;
        if path == "manifest.json" {
            #[derive(serde::Deserialize)]
            struct Image {
                #[serde(rename = "RepoTags")]
                repo_tags: Option<Vec<String>>,
            }
            let images: Vec<Image> =
                serde_json::from_str(&text).context("its manifest.json is not a manifest")?;
            let tags: Vec<Vec<String>> = images
                .into_iter()
                .map(|i| i.repo_tags.unwrap_or_default())
                .collect();
            if tags != [vec![tag.to_owned()]] {
                bail!("it tags {tags:?}, not exactly [{tag:?}]");
            }
            manifest_seen = true;
        } else {
            let repos: std::collections::BTreeMap<
                String,
                std::collections::BTreeMap<String, String>,
            > = serde_json::from_str(&text).context("its repositories file is not JSON")?;
            let ok = repos.len() == 1
                && repos
                    .get(repo)
                    .is_some_and(|t| t.len() == 1 && t.contains_key(version));
            if !ok {
                bail!("its repositories file names other tags than {tag}");
            }
        }
    }
    if !manifest_seen {
        bail!("it has no manifest.json");
    }
    Ok(())
}

/// Before a build: when the engine lacks `ctx`'s image and the cache has it, loads it. Returns
/// whether the image is now in the engine from the cache. Never fails the build.
pub async fn load_if_cached(
    engine: &Engine,
    ctx: &BuildContext,
    cache: &CacheDir,
    runner: &Runner,
) -> bool {
    let tag = ctx.image_tag();
    match engine.has_image(&tag).await {
        Ok(true) => return false,
        Ok(false) => {}
        Err(e) => {
            runner.warning(&format!("cannot ask the engine for {tag}: {e:#}"));
            return false;
        }
    }
    let name = entry_name(ctx);
    let path = cache.path().join(&name);
    let result = async {
        let Some(file) = cache.open_entry(&name)? else {
            return Ok(false);
        };
        check_archive(file, &tag)
            .with_context(|| format!("{} is not an archive of {tag}", path.display()))?;
        let file = cache
            .open_entry(&name)?
            .with_context(|| format!("{} vanished", path.display()))?;
        engine.load_image(file).await?;
        if !engine.has_image(&tag).await? {
            bail!("loading {} did not give {tag}", path.display());
        }
        cache.touch(&name)?;
        Ok::<bool, anyhow::Error>(true)
    }
    .await;
    match result {
        Ok(true) => {
            runner.info(&format!(
                "Loaded the build image {tag} from the image cache ({}); it was not rebuilt",
                path.display()
            ));
            true
        }
        Ok(false) => false,
        Err(e) => {
            runner.warning(&format!(
                "the cached build image could not be used, so it is built: {e:#}"
            ));
            // A bad archive would fail every leg the same way: drop it (never a link).
            if cache.entry_kind(&name).ok().flatten() == Some("a regular file") {
                let _ = std::fs::remove_file(&path);
            }
            false
        }
    }
}

/// After a build: saves `ctx`'s image into the cache unless it is there (then marks it
/// used), and prunes. Never fails the build.
pub async fn save(engine: &Engine, ctx: &BuildContext, cache: &CacheDir, runner: &Runner) {
    let name = entry_name(ctx);
    let tag = ctx.image_tag();
    let result = async {
        if cache.touch(&name)? {
            return Ok(None);
        }
        let mut pending = cache.begin(&name)?;
        let bytes = engine.save_image(&tag, pending.file()).await?;
        Ok::<_, anyhow::Error>(match pending.commit()? {
            Inserted::New => Some(bytes),
            Inserted::Existed => None,
        })
    }
    .await;
    match result {
        Ok(Some(bytes)) => runner.info(&format!(
            "Saved the build image {tag} to the image cache ({}, {})",
            cache.path().join(&name).display(),
            human_bytes(bytes)
        )),
        Ok(None) => {}
        Err(e) => runner.warning(&format!(
            "the build image {tag} could not be saved to the image cache {}: {e:#}",
            cache.path().display()
        )),
    }
    cache.prune_reported("image", runner);
}
