//! The build steps' check of the leg they build: given the leg as the plan recorded it
//! (`leg: ${{ toJSON(matrix) }}`), `build-compiler` and `build-slurm` recompute its fingerprint
//! with the same check the publish steps run ([`MatrixEntry::leg_fingerprint`]) and refuse,
//! before any Docker or Spack work, a leg whose fingerprint differs from the plan's (naming the
//! differing ingredients) or that is not the job the step was asked to build. A leg refused
//! here would otherwise build for hours and be refused only at the publish step.

use anyhow::{Result, bail};

use crate::catalog::Catalog;
use crate::fingerprint::{Fingerprint, Sources};
use crate::matrix::{Kind, MatrixEntry};
use crate::spack::Job;

/// What a refused build step did not do.
const REFUSED: &str = "nothing was built";

/// [`check`] of the `leg` input when one is given (a build step without it checks nothing), with
/// the image context the build uses (`--docker-context`, else the embedded one); says so in the
/// log when the leg is the plan's.
pub fn check_given(
    json: Option<&str>,
    job: &Job,
    catalog: &Catalog,
    docker_context: Option<std::path::PathBuf>,
    runner: &crate::gha::Runner,
) -> Result<()> {
    if let Some(json) = json {
        let sources = Sources::embedded().with_docker_context(docker_context);
        let f = check(json, job, catalog, &sources)?;
        runner.info(&format!(
            "leg {}: fingerprint {} is the plan's",
            f.leg, f.fingerprint
        ));
    }
    Ok(())
}

/// Checks the leg `json` against `job` (what this step builds) and the fingerprint this binary
/// computes from `sources`; returns that fingerprint.
pub fn check(json: &str, job: &Job, catalog: &Catalog, sources: &Sources) -> Result<Fingerprint> {
    let kinds: &[Kind] = match job {
        Job::Compiler(_) => &[Kind::Compiler],
        Job::Slurm(_) => &[Kind::Slurm, Kind::Tarball],
    };
    let (leg, fingerprint) = MatrixEntry::leg_fingerprint(json, kinds, catalog, sources, REFUSED)?;
    let (planned, _) = leg.job(catalog)?;
    if planned.fingerprint() != job.fingerprint() {
        bail!(
            "the `leg` input is {}, but this step builds {}: pass the leg's own versions, architecture and platform (the generated pipelines pass `${{{{ toJSON(matrix) }}}}` with the matrix's values); {REFUSED}",
            planned.label(),
            job.label()
        );
    }
    Ok(fingerprint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::{Request, plan, skip::fingerprinted};

    fn leg(kind: Kind, c: &Catalog) -> MatrixEntry {
        let mut r = Request::new(kind);
        r.compiler_versions = Some("13.4.0".into());
        r.slurm_versions = Some("25.11".into());
        let m = plan(c, &r).unwrap();
        let mut legs = fingerprinted(m, c, &Sources::embedded()).unwrap();
        legs.remove(0).0
    }

    fn compiler(c: &Catalog, gcc: &str) -> Job {
        Job::compiler_on(
            c,
            gcc.parse().unwrap(),
            c.architectures.default.clone(),
            None,
        )
        .unwrap()
    }

    fn slurm(c: &Catalog, version: &str) -> Job {
        crate::spack::SlurmJobRequest {
            slurm: version.parse().unwrap(),
            gcc: "13.4.0".parse().unwrap(),
            gpu: false,
            arch: c.architectures.default.clone(),
            platform: None,
            compiler_mirror: None,
            slurm_mirror: None,
        }
        .resolve(c)
        .unwrap()
    }

    #[test]
    fn the_plans_leg_passes_and_returns_the_fingerprint_the_plan_recorded() {
        let c = Catalog::embedded();
        for (kind, job) in [
            (Kind::Compiler, compiler(&c, "13.4.0")),
            (Kind::Slurm, slurm(&c, "25.11")),
            (Kind::Tarball, slurm(&c, "25.11")),
        ] {
            let l = leg(kind, &c);
            let json = serde_json::to_string(&l).unwrap();
            let f = check(&json, &job, &c, &Sources::embedded()).unwrap();
            assert_eq!(Some(f.fingerprint), l.fingerprint, "{kind}");
        }
    }

    #[test]
    fn a_leg_whose_fingerprint_differs_is_refused_naming_the_ingredient() {
        let c = Catalog::embedded();
        let mut l = leg(Kind::Slurm, &c);
        l.fingerprint = Some(format!("sha256:{}", "0".repeat(64)));
        l.ingredients.insert("toolchain".into(), "0".repeat(64));
        let json = serde_json::to_string(&l).unwrap();
        let e = format!(
            "{:#}",
            check(&json, &slurm(&c, "25.11"), &c, &Sources::embedded()).unwrap_err()
        );
        assert!(e.contains("(differing ingredients: toolchain)"), "{e}");
        assert!(e.ends_with("nothing was built"), "{e}");
        // A plan of an older prepare-matrix carries no fingerprint.
        l.fingerprint = None;
        let json = serde_json::to_string(&l).unwrap();
        let e = check(&json, &slurm(&c, "25.11"), &c, &Sources::embedded()).unwrap_err();
        assert!(e.to_string().contains("carries no fingerprint"), "{e}");
    }

    #[test]
    fn a_leg_of_another_job_or_kind_is_refused() {
        let c = Catalog::embedded();
        let json = serde_json::to_string(&leg(Kind::Slurm, &c)).unwrap();
        let e = check(&json, &slurm(&c, "24.11"), &c, &Sources::embedded()).unwrap_err();
        assert!(
            e.to_string().contains("the `leg` input is slurm-25.11-gcc13.4.0-cpu-amd64-el8, but this step builds slurm-24.11-"),
            "{e}"
        );
        let e = check(&json, &compiler(&c, "13.4.0"), &c, &Sources::embedded()).unwrap_err();
        assert!(
            e.to_string()
                .contains("is a slurm leg; this step takes compiler legs"),
            "{e}"
        );
        let e = check(
            "{\"not\":\"a leg\"}",
            &compiler(&c, "13.4.0"),
            &c,
            &Sources::embedded(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("toJSON(matrix)"), "{e}");
    }
}
