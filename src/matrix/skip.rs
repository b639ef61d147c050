//! Skip what is built: for each leg of a plan, look up the build stamp it would have written
//! ([`crate::stamp`]), verify it against the pinned keys, check that the objects it names are
//! still there, and compare its fingerprint with the leg's. A leg is dropped from the matrix
//! only when all of that holds; every other outcome builds, with its reason:
//!
//! - `build (forced)`, `build (stamp lookup off)`, `build (publish none: ...)`;
//! - `build (no pinned key)`: nothing can be trusted, so nothing is skipped;
//! - `build (no stamp)`: the stamp is not there (the only lookup failure that is not reported
//!   as one);
//! - `build (stamp not verified: <why>)`: bad or unknown signature, a stamp of another leg,
//!   a refused document ([`crate::stamp::StampError`]);
//! - `build (changed: <ingredients>)`;
//! - `build (objects missing: <key>)`, `build (published <mode>; this run publishes all)`;
//! - `build (lookup failed: <error>)`: any other error reading the bucket or the URL.
//!
//! and `skip (unchanged since <run URL or time>)`.

use std::fmt;

use anyhow::{Context, Result};

use super::{Kind, Matrix, MatrixEntry};
use crate::buildcache::publish::PublishMode;
use crate::buildcache::storage::{self, Location, OpenOptions, Storage};
use crate::buildcache::trust::{Pins, pinned_cert};
use crate::catalog::Catalog;
use crate::fingerprint::Fingerprint;
use crate::gha::Runner;
use crate::pgp::TrustedKeys;
use crate::stamp::{self, BUILDCACHE_STAMP, MAX_STAMP_BYTES, Published};

/// Where stamps are read from.
#[derive(Debug, Clone)]
pub enum StampSource {
    /// The buckets themselves (`s3://`), with these settings (credentials available).
    S3(Box<crate::s3::S3Settings>),
    /// The public URLs of the catalog (`publish.cdn_url`, `publish.tarball_url`).
    Public,
}

impl StampSource {
    /// From the `stamps_from` setting (default `auto`), with `auto` choosing S3 when the runner
    /// has AWS credentials ([`StampSource::choose`]).
    pub fn from_setting(
        setting: Option<&str>,
        s3: crate::s3::S3Settings,
        runner: &crate::gha::Runner,
    ) -> Result<Self> {
        let has_credentials = matches!(
            s3.credentials,
            crate::s3::CredentialSource::GithubOidc { .. }
        ) || [
            "AWS_ACCESS_KEY_ID",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        ]
        .iter()
        .any(|v| runner.var(v).is_some_and(|x| !x.trim().is_empty()));
        Self::choose(setting.unwrap_or("auto"), s3, has_credentials)
    }

    /// From the `stamps_from` setting: `auto` (S3 when `has_credentials`, else public), `s3`
    /// or `public`.
    pub fn choose(setting: &str, s3: crate::s3::S3Settings, has_credentials: bool) -> Result<Self> {
        Ok(match setting.trim() {
            "s3" => StampSource::S3(Box::new(s3)),
            "auto" if has_credentials => StampSource::S3(Box::new(s3)),
            "public" | "auto" => StampSource::Public,
            other => anyhow::bail!("stamps_from {other:?} is not one of auto, s3, public"),
        })
    }
}

/// How a plan decides what to skip.
#[derive(Debug, Clone)]
pub struct SkipRequest {
    /// Look stamps up at all (`skip_built`).
    pub lookup: bool,
    /// Build everything (`force`).
    pub force: bool,
    /// What this run publishes (buildcache legs).
    pub publish: PublishMode,
    /// The keys a stamp must be signed by.
    pub pins: Pins,
    /// Where to read stamps.
    pub source: StampSource,
}

/// Why a leg builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// `force`.
    Forced,
    /// Stamp lookup is off.
    LookupOff,
    /// This run publishes nothing, so nothing it builds is what a stamp vouches for.
    PublishNone,
    /// No key is pinned: no stamp can be trusted.
    NoPinnedKey,
    /// No stamp.
    NoStamp,
    /// The stamp was refused.
    NotVerified(String),
    /// Ingredients changed.
    Changed(Vec<String>),
    /// An object the stamp names is gone (or differs).
    Missing(String),
    /// The stamp is for a narrower publish mode.
    OtherMode(String),
    /// Reading failed for another reason than "not found".
    LookupFailed(String),
}

/// What a plan does with one leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Build it.
    Build(Why),
    /// Skip it: a verified stamp vouches for it; since that run (or time).
    Skip {
        /// The stamp's run URL, else its time.
        since: String,
    },
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Skip { since } => write!(f, "skip (unchanged since {since})"),
            Decision::Build(w) => match w {
                Why::Forced => f.write_str("build (forced)"),
                Why::LookupOff => f.write_str("build (stamp lookup off)"),
                Why::PublishNone => f.write_str(
                    "build (publish none: nothing is published, so no stamp can stand in for it)",
                ),
                Why::NoPinnedKey => f.write_str("build (no pinned key)"),
                Why::NoStamp => f.write_str("build (no stamp)"),
                Why::NotVerified(e) => write!(f, "build (stamp not verified: {e})"),
                Why::Changed(i) => write!(f, "build (changed: {})", i.join(", ")),
                Why::Missing(k) => write!(f, "build (objects missing: {k})"),
                Why::OtherMode(m) => {
                    write!(f, "build (published {m}; this run publishes all)")
                }
                Why::LookupFailed(e) => write!(f, "build (lookup failed: {e})"),
            },
        }
    }
}

/// One leg and what the plan does with it.
#[derive(Debug, Clone)]
pub struct LegDecision {
    /// The leg.
    pub entry: MatrixEntry,
    /// Build or skip.
    pub decision: Decision,
}

/// The plan after the lookup: every leg with its decision.
#[derive(Debug, Clone)]
pub struct SkipPlan {
    /// The kind of the plan.
    pub kind: Kind,
    /// Every leg, in matrix order.
    pub legs: Vec<LegDecision>,
    /// Why nothing could be skipped at all, when that is so for a reason the user can fix.
    pub note: Option<String>,
}

impl SkipPlan {
    /// Writes the plan where a workflow reads it: the outputs `matrix` and `count`, the job
    /// summary (every leg's decision, then the matrix's table) and one log line per leg.
    pub fn report(&self, runner: &crate::gha::Runner) -> Result<()> {
        let matrix = self.matrix();
        let count = matrix.len().to_string();
        runner.set_outputs(&[("matrix", &matrix.to_json()), ("count", &count)])?;
        runner.append_summary(&self.summary_markdown())?;
        if !matrix.is_empty() {
            runner.append_summary(&matrix.summary_markdown())?;
        }
        for l in &self.legs {
            runner.info(&format!("{}: {}", l.entry.name, l.decision));
        }
        let jobs = if matrix.len() == 1 { "job" } else { "jobs" };
        runner.info(&format!(
            "{} matrix: {count} {jobs} ({} skipped as built)",
            self.kind,
            self.legs.len() - matrix.len()
        ));
        Ok(())
    }

    /// The legs to build, as a matrix (empty when every leg is skipped).
    pub fn matrix(&self) -> Matrix {
        Matrix {
            include: self
                .legs
                .iter()
                .filter(|l| matches!(l.decision, Decision::Build(_)))
                .map(|l| l.entry.clone())
                .collect(),
        }
    }

    /// The job summary: every leg, build or skip, with the reason.
    pub fn summary_markdown(&self) -> String {
        let n = self.legs.len();
        let build = self.matrix().len();
        let mut md = format!(
            "### Skip what is built: {build} of {n} {} leg{} to build, {} skipped\n\n",
            self.kind,
            if n == 1 { "" } else { "s" },
            n - build
        );
        if let Some(note) = &self.note {
            md.push_str(&format!("> {note}\n\n"));
        }
        md.push_str("| Leg | Fingerprint | Decision |\n|---|---|---|\n");
        for l in &self.legs {
            let fp = l.entry.fingerprint.as_deref().unwrap_or("");
            md.push_str(&format!(
                "| {} | `{}` | {} |\n",
                super::cell(&l.entry.name),
                &fp[..fp.len().min(19)],
                super::cell(&l.decision.to_string())
            ));
        }
        md
    }
}

/// Every leg of `matrix` with its input fingerprint computed from `sources` (and recorded in
/// the entry, where the publish steps check it).
pub fn fingerprinted(
    matrix: Matrix,
    catalog: &Catalog,
    sources: &crate::fingerprint::Sources,
) -> Result<Vec<(MatrixEntry, Fingerprint)>> {
    matrix
        .include
        .into_iter()
        .map(|mut e| {
            let f = e.compute_fingerprint(catalog, sources)?;
            e.set_fingerprint(&f);
            Ok((e, f))
        })
        .collect()
}

/// Decides, for every leg of `matrix` (whose entries carry their fingerprints, computed as
/// `fingerprints`, in the same order), whether to build it.
pub async fn decide(
    catalog: &Catalog,
    kind: Kind,
    legs: Vec<(MatrixEntry, Fingerprint)>,
    req: &SkipRequest,
    runner: &Runner,
) -> SkipPlan {
    let everything = |why: Why, note: Option<String>| SkipPlan {
        kind,
        legs: legs
            .iter()
            .map(|(e, _)| LegDecision {
                entry: e.clone(),
                decision: Decision::Build(why.clone()),
            })
            .collect(),
        note,
    };
    if req.force {
        return everything(Why::Forced, None);
    }
    if !req.lookup {
        return everything(Why::LookupOff, None);
    }
    if kind != Kind::Tarball && req.publish == PublishMode::None {
        return everything(Why::PublishNone, None);
    }
    if req.pins.is_empty() {
        return everything(
            Why::NoPinnedKey,
            Some(
                "No signing key is pinned, so no build stamp can be trusted and every leg builds. Set the repository variable `SLURM_FACTORY_SIGNING_FINGERPRINTS` (or the catalog's `publish.signing_fingerprints`) to the fingerprint of the key that signs what the pipelines publish."
                    .into(),
            ),
        );
    }
    let futs = legs.iter().map(|(e, f)| async move {
        let decision = match leg(catalog, e, f, req, runner).await {
            Ok(d) => d,
            Err(err) => Decision::Build(Why::LookupFailed(format!("{err:#}"))),
        };
        LegDecision {
            entry: e.clone(),
            decision,
        }
    });
    let out = futures::StreamExt::collect::<Vec<_>>(futures::StreamExt::buffered(
        futures::stream::iter(futs),
        8,
    ))
    .await;
    SkipPlan {
        kind,
        legs: out,
        note: None,
    }
}

/// Where a leg's stamp lives: the store (rooted at the leg's prefix or the tarball's
/// directory), the stamp's key there, and what the stamp must say it published.
struct Place {
    store: Box<dyn Storage>,
    stamp_key: String,
    destination: String,
    tarball_name: Option<String>,
}

async fn place(
    catalog: &Catalog,
    e: &MatrixEntry,
    req: &SkipRequest,
    runner: &Runner,
) -> Result<Place> {
    let p = &catalog.publish;
    let (s3_url, public_url, stamp_key, tarball_name) = match e.kind {
        Kind::Compiler | Kind::Slurm => (
            format!("s3://{}/{}", p.buildcache_bucket, e.buildcache_prefix),
            e.buildcache_url.clone(),
            BUILDCACHE_STAMP.to_owned(),
            None,
        ),
        Kind::Tarball => {
            let key = e
                .tarball_key
                .as_deref()
                .context("a tarball leg has no key")?;
            let url = e
                .tarball_url
                .as_deref()
                .context("a tarball leg has no URL")?;
            let (dir, name) = key
                .rsplit_once('/')
                .with_context(|| format!("tarball key {key} has no directory"))?;
            let public_dir = url
                .rsplit_once('/')
                .map(|(d, _)| d.to_owned())
                .with_context(|| format!("tarball URL {url} has no directory"))?;
            (
                format!("s3://{}/{dir}", p.tarball_bucket),
                public_dir,
                stamp::tarball_stamp_name(name),
                Some(name.to_owned()),
            )
        }
    };
    let (url, s3) = match &req.source {
        StampSource::S3(s) => (s3_url.clone(), (**s).clone()),
        StampSource::Public => (public_url, crate::s3::S3Settings::default()),
    };
    let opts = OpenOptions {
        allow_insecure_http: false,
        writable: false,
        s3,
    };
    let store = storage::open(&Location::parse(&url)?, &opts, runner).await?;
    Ok(Place {
        store,
        stamp_key,
        destination: s3_url,
        tarball_name,
    })
}

async fn trusted(pins: &Pins, place: &Place) -> Result<TrustedKeys> {
    let store = place.store.as_ref();
    match &place.tarball_name {
        None => pins.resolve(store).await,
        Some(_) => {
            pins.trusted_keys(|fpr| async move {
                let name = fpr.public_key_file();
                let obj = store
                    .get(&name)
                    .await?
                    .with_context(|| format!("{} publishes no key {name}", store.url()))?;
                pinned_cert(&obj.bytes, &fpr, &format!("{}/{name}", store.url()))
            })
            .await
        }
    }
}

async fn leg(
    catalog: &Catalog,
    e: &MatrixEntry,
    f: &Fingerprint,
    req: &SkipRequest,
    runner: &Runner,
) -> Result<Decision> {
    let place = place(catalog, e, req, runner).await?;
    let store = place.store.as_ref();
    let key = &place.stamp_key;
    let Some(meta) = store.head(key).await? else {
        return Ok(Decision::Build(Why::NoStamp));
    };
    if meta.size > MAX_STAMP_BYTES {
        return Ok(Decision::Build(Why::NotVerified(
            stamp::StampError::TooLarge(meta.size).to_string(),
        )));
    }
    // Read bounded: a store whose HEAD understated the size cannot make us hold more.
    let mut file = tempfile::tempfile().context("cannot create a temporary file")?;
    let Some((_, n)) = store.copy_to(key, &mut file, MAX_STAMP_BYTES).await? else {
        return Ok(Decision::Build(Why::NoStamp));
    };
    let mut bytes = Vec::with_capacity(n as usize);
    std::io::Seek::rewind(&mut file)?;
    std::io::Read::read_to_end(&mut file, &mut bytes)?;
    let keys = match trusted(&req.pins, &place).await {
        Ok(k) => k,
        Err(err) => {
            return Ok(Decision::Build(Why::NotVerified(format!(
                "no pinned key could be resolved: {err:#}"
            ))));
        }
    };
    let s = match stamp::read(&bytes, &keys) {
        Ok(v) => v.stamp,
        Err(err) => return Ok(Decision::Build(Why::NotVerified(err.to_string()))),
    };
    if s.leg != f.leg {
        return Ok(Decision::Build(Why::NotVerified(format!(
            "it is the stamp of leg {}, not {}",
            s.leg, f.leg
        ))));
    }
    match (&s.published, &place.tarball_name) {
        (
            Published::Buildcache {
                destination,
                mode,
                specs,
            },
            None,
        ) => {
            if *destination != place.destination {
                return Ok(Decision::Build(Why::NotVerified(format!(
                    "it vouches for {destination}, not {}",
                    place.destination
                ))));
            }
            if req.publish == PublishMode::All && mode != "all" {
                return Ok(Decision::Build(Why::OtherMode(mode.clone())));
            }
            if s.fingerprint.fingerprint != f.fingerprint {
                return Ok(Decision::Build(Why::Changed(changed(&s, f))));
            }
            if specs.is_empty() {
                return Ok(Decision::Build(Why::Missing(
                    "the stamp names no spec".into(),
                )));
            }
            let heads = specs
                .iter()
                .map(|sp| async move { (sp.manifest.as_str(), store.head(&sp.manifest).await) });
            for (k, h) in futures::future::join_all(heads).await {
                if h?.is_none() {
                    return Ok(Decision::Build(Why::Missing(k.to_owned())));
                }
            }
        }
        (
            Published::Tarball {
                destination,
                name,
                size,
                ..
            },
            Some(want),
        ) => {
            if *destination != place.destination || name != want {
                return Ok(Decision::Build(Why::NotVerified(format!(
                    "it vouches for {destination}/{name}, not {}/{want}",
                    place.destination
                ))));
            }
            if s.fingerprint.fingerprint != f.fingerprint {
                return Ok(Decision::Build(Why::Changed(changed(&s, f))));
            }
            match store.head(name).await? {
                None => return Ok(Decision::Build(Why::Missing(name.clone()))),
                Some(m) if m.size != *size => {
                    return Ok(Decision::Build(Why::Missing(format!(
                        "{name} is {} bytes, the stamp says {size}",
                        m.size
                    ))));
                }
                Some(_) => {}
            }
        }
        _ => {
            return Ok(Decision::Build(Why::NotVerified(
                "it records another kind of publication than this leg's".into(),
            )));
        }
    }
    Ok(Decision::Skip {
        since: s.since().to_owned(),
    })
}

fn changed(s: &stamp::Stamp, f: &Fingerprint) -> Vec<String> {
    let c = s.changed_ingredients(f);
    if c.is_empty() {
        vec!["fingerprint".into()]
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legs(kind: Kind) -> (Catalog, Vec<(MatrixEntry, Fingerprint)>) {
        let c = Catalog::embedded();
        let mut r = super::super::Request::new(kind);
        r.compiler_versions = Some("13.4.0".into());
        r.slurm_versions = Some("25.11".into());
        let m = super::super::plan(&c, &r).unwrap();
        let l = fingerprinted(m, &c, &crate::fingerprint::Sources::embedded()).unwrap();
        (c, l)
    }

    fn request(pins: Pins) -> SkipRequest {
        SkipRequest {
            lookup: true,
            force: false,
            publish: PublishMode::All,
            pins,
            source: StampSource::Public,
        }
    }

    /// The decisions made before any lookup: each builds every leg, with its reason, and the
    /// matrix keeps every leg.
    #[tokio::test]
    async fn force_lookup_off_publish_none_and_no_pin_build_everything_with_the_reason() {
        let runner =
            Runner::from_vars(Vec::<(String, String)>::new()).with_sink(Box::new(std::io::sink()));
        let pin = Pins {
            key_files: vec![],
            fingerprints: vec!["1A00B8893F4FAE1A76DB389DE145321FBC9F04BD".parse().unwrap()],
        };
        let (c, l) = legs(Kind::Slurm);
        assert!(
            l[0].0
                .fingerprint
                .as_deref()
                .unwrap()
                .starts_with("sha256:")
        );
        let cases = [
            (
                SkipRequest {
                    force: true,
                    ..request(pin.clone())
                },
                "build (forced)",
            ),
            (
                SkipRequest {
                    lookup: false,
                    ..request(pin.clone())
                },
                "build (stamp lookup off)",
            ),
            (
                SkipRequest {
                    publish: PublishMode::None,
                    ..request(pin.clone())
                },
                "build (publish none: nothing is published, so no stamp can stand in for it)",
            ),
            (request(Pins::default()), "build (no pinned key)"),
        ];
        for (req, want) in cases {
            let p = decide(&c, Kind::Slurm, l.clone(), &req, &runner).await;
            assert_eq!(p.matrix().len(), l.len());
            for leg in &p.legs {
                assert_eq!(leg.decision.to_string(), want);
            }
            let md = p.summary_markdown();
            assert!(md.contains(&format!("| {want} |")), "{md}");
            assert_eq!(
                md.contains("SLURM_FACTORY_SIGNING_FINGERPRINTS"),
                want == "build (no pinned key)",
                "{md}"
            );
        }
        assert_eq!(
            Decision::Build(Why::Changed(vec!["spack-repo".into(), "leg".into()])).to_string(),
            "build (changed: spack-repo, leg)"
        );
        assert_eq!(
            Decision::Build(Why::OtherMode("slurm-only".into())).to_string(),
            "build (published slurm-only; this run publishes all)"
        );
        assert_eq!(
            Decision::Skip {
                since: "https://github.com/o/r/actions/runs/1".into()
            }
            .to_string(),
            "skip (unchanged since https://github.com/o/r/actions/runs/1)"
        );
        assert!(StampSource::choose("public", Default::default(), true).is_ok());
        assert!(matches!(
            StampSource::choose("auto", Default::default(), false),
            Ok(StampSource::Public)
        ));
        assert!(matches!(
            StampSource::choose("auto", Default::default(), true),
            Ok(StampSource::S3(_))
        ));
        let e = StampSource::choose("ftp", Default::default(), true).unwrap_err();
        assert!(e.to_string().contains("auto, s3, public"), "{e}");
    }

    /// An empty plan is a valid, empty matrix.
    #[test]
    fn an_all_skipped_plan_is_an_empty_matrix() {
        let (_, l) = legs(Kind::Compiler);
        let p = SkipPlan {
            kind: Kind::Compiler,
            legs: l
                .into_iter()
                .map(|(entry, _)| LegDecision {
                    entry,
                    decision: Decision::Skip {
                        since: "2026-12-07T21:41:03Z".into(),
                    },
                })
                .collect(),
            note: None,
        };
        let m = p.matrix();
        assert!(m.is_empty());
        assert_eq!(m.to_json(), r#"{"include":[]}"#);
        assert!(
            p.summary_markdown()
                .contains("0 of 1 compiler leg to build, 1 skipped"),
            "{}",
            p.summary_markdown()
        );
    }
}
