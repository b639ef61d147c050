//! Snapshots of the generated `spack.yaml` for the compiler job and for Slurm ±GPU, and the
//! versions every catalog entry names.

use std::path::Path;

use slurm_factory::builder::render_environment;
use slurm_factory::catalog::{Arch, Catalog};
use slurm_factory::spack::{Area, Job, Layout, RunId, SlurmJobRequest, repo, spec_name};

fn layout(job: &Job) -> Layout {
    Layout::new(
        Path::new("/srv/out"),
        job.namespace(&RunId::new("1234-1").unwrap()),
    )
    .unwrap()
}

fn slurm(cat: &Catalog, slurm: &str, gcc: &str, gpu: bool) -> Job {
    SlurmJobRequest {
        slurm: slurm.parse().unwrap(),
        gcc: gcc.parse().unwrap(),
        gpu,
        arch: Arch("amd64".into()),
        platform: None,
        compiler_mirror: None,
        slurm_mirror: None,
    }
    .resolve(cat)
    .unwrap()
}

#[test]
fn compiler_environment() {
    let cat = Catalog::embedded();
    let job = Job::compiler(&cat, "13.4.0".parse().unwrap(), Arch("amd64".into())).unwrap();
    let yaml = render_environment(&job, &layout(&job)).unwrap();
    assert!(yaml.contains("gcc@13.4.0 +binutils +piclibs languages=c,c++,fortran"));
    assert!(yaml.contains("padded_length: 128"));
    insta::assert_snapshot!("compiler_13.4.0_amd64", yaml);
}

#[test]
fn slurm_environment_cpu() {
    let cat = Catalog::embedded();
    let job = slurm(&cat, "25.11", "13.4.0", false);
    let yaml = render_environment(&job, &layout(&job)).unwrap();
    assert!(
        yaml.contains(
            "slurm_factory.slurm@25-11-6-1 sysconfdir=/etc/slurm ~nvml ~rsmi %gcc@13.4.0"
        )
    );
    insta::assert_snapshot!("slurm_25.11_gcc13.4.0_cpu_amd64", yaml);
}

#[test]
fn slurm_environment_gpu() {
    let cat = Catalog::embedded();
    let job = slurm(&cat, "25.11", "13.4.0", true);
    let yaml = render_environment(&job, &layout(&job)).unwrap();
    assert!(
        yaml.contains(
            "slurm_factory.slurm@25-11-6-1 sysconfdir=/etc/slurm +nvml +rsmi %gcc@13.4.0"
        )
    );
    insta::assert_snapshot!("slurm_25.11_gcc13.4.0_gpu_amd64", yaml);
}

#[test]
fn slurm_environment_arm64_other_release() {
    let cat = Catalog::embedded();
    let job = SlurmJobRequest {
        slurm: "23.11".parse().unwrap(),
        gcc: "9.5.0".parse().unwrap(),
        gpu: false,
        arch: Arch("arm64".into()),
        platform: None,
        compiler_mirror: Some("file:///mirror/compilers/9.5.0".into()),
        slurm_mirror: Some("file:///mirror/slurm/23.11/9.5.0".into()),
    }
    .resolve(&cat)
    .unwrap();
    let yaml = render_environment(&job, &layout(&job)).unwrap();
    assert!(yaml.contains("target=aarch64"));
    insta::assert_snapshot!("slurm_23.11_gcc9.5.0_cpu_arm64", yaml);
}

/// Every (Slurm, GCC, ±GPU) of the catalog: the specs name the right versions, every path the
/// job writes is under its namespace, and namespaces never collide.
#[test]
fn every_catalog_entry_names_the_right_versions() {
    let cat = Catalog::embedded();
    let mut namespaces = std::collections::HashSet::new();
    let mut summary = String::new();
    for rel in &cat.slurm.releases {
        for gcc in cat.compiler_versions() {
            for gpu in [false, true] {
                let job = slurm(&cat, rel.version.as_str(), gcc.as_str(), gpu);
                let l = layout(&job);
                let env = job.environment(&l).spack;
                let root = &env.specs[0];
                assert!(
                    root.starts_with(&format!("slurm_factory.slurm@{} ", rel.spack)),
                    "{root}"
                );
                assert!(
                    env.specs
                        .iter()
                        .all(|s| s.ends_with(&format!("%gcc@{gcc}")))
                );
                assert_eq!(root.contains("+nvml +rsmi"), gpu);
                assert_eq!(root.contains("~nvml ~rsmi"), !gpu);
                let names: Vec<String> = env.specs.iter().map(|s| spec_name(s)).collect();
                for want in [
                    "slurm",
                    "munge",
                    "pmix",
                    "openmpi",
                    "hdf5",
                    "hwloc",
                    "curl",
                    "openssl",
                    "libjwt",
                    "lua",
                    "readline",
                    "json-c",
                    "http-parser",
                    "libyaml",
                    "librdkafka",
                ] {
                    assert!(names.iter().any(|n| n == want), "{want} missing for {job}");
                }
                let ns = l.container_build_dir();
                assert!(env.config.install_tree.root.starts_with(&ns));
                assert!(env.config.build_stage.iter().all(|s| s.starts_with(&ns)));
                let yaml = yaml_serde::to_string(&env).unwrap();
                assert!(
                    yaml.contains(&format!("{ns}/view")) && yaml.contains(&format!("{ns}/modules"))
                );
                assert!(namespaces.insert(job.namespace(&RunId::new("1").unwrap())));
                summary.push_str(&format!("{job}: {root}\n"));
            }
        }
    }
    insta::assert_snapshot!("catalog_slurm_roots", summary);
    for gcc in cat.compiler_versions() {
        let job = Job::compiler(&cat, gcc.clone(), Arch("amd64".into())).unwrap();
        let env = job.environment(&layout(&job)).spack;
        assert_eq!(
            env.specs,
            [format!(
                "gcc@{gcc} +binutils +piclibs languages=c,c++,fortran"
            )]
        );
        assert!(env.modules.is_none());
    }
}

#[test]
fn rendering_is_deterministic() {
    let cat = Catalog::embedded();
    let job = slurm(&cat, "24.11", "11.5.0", true);
    let l = layout(&job);
    assert_eq!(
        render_environment(&job, &l).unwrap(),
        render_environment(&job, &l).unwrap()
    );
}

/// The `repos:` entry of a Slurm environment points at the directory `repo::write_to` fills.
#[test]
fn repo_path_matches_the_written_repository() {
    let cat = Catalog::embedded();
    let job = slurm(&cat, "25.11", "13.4.0", false);
    let d = tempfile::tempdir().unwrap();
    let l = Layout::new(d.path(), job.namespace(&RunId::new("9").unwrap())).unwrap();
    repo::write_to(&l.host(Area::SpackRepo)).unwrap();
    let env = job.environment(&l).spack;
    let in_container = &env.repos["slurm_factory"];
    let rel = in_container.strip_prefix(&l.container_build_dir()).unwrap();
    let on_host = l.build_dir().join(rel.trim_start_matches('/'));
    assert!(on_host.join("repo.yaml").is_file(), "{}", on_host.display());
    assert!(on_host.join("packages/slurm/package.py").is_file());
}

#[test]
fn unknown_versions_are_refused_with_the_known_ones() {
    let cat = Catalog::embedded();
    let err = SlurmJobRequest {
        slurm: "19.05".parse().unwrap(),
        gcc: "13.4.0".parse().unwrap(),
        gpu: false,
        arch: Arch("amd64".into()),
        platform: None,
        compiler_mirror: None,
        slurm_mirror: None,
    }
    .resolve(&cat)
    .unwrap_err()
    .to_string();
    assert!(err.contains("19.05") && err.contains("25.11"), "{err}");
    let err = Job::compiler(&cat, "13.4.0".parse().unwrap(), Arch("riscv".into()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("riscv") && err.contains("amd64"), "{err}");
}

/// A Slurm job installs its toolchain in a separate environment (compiler buildcache only) at a
/// fixed prefix, and its Slurm environment declares exactly that prefix as an external compiler
/// it may not build; the compiler mirror is not reused into the Slurm environment. (Why: a
/// reused toolchain brings its dependencies built by the image's GCC 13 and Spack 1.0 then
/// bounds every gcc-runtime by 13; see docs/matrix.md.)
#[test]
fn slurm_toolchain_is_an_external_installed_by_the_toolchain_step() {
    let cat = Catalog::embedded();
    let job = slurm(&cat, "23.11", "7.5.0", false);
    let l = layout(&job);
    let toolchain = job.toolchain_environment(&l).expect("a Slurm job has one");
    assert_eq!(
        toolchain.spack.specs,
        ["gcc@7.5.0 +binutils +piclibs languages=c,c++,fortran"]
    );
    assert!(
        toolchain
            .spack
            .mirrors
            .contains_key("slurm-factory-compiler")
    );
    let tree = &toolchain.spack.config.install_tree;
    assert_eq!(tree.padded_length, None);
    assert_eq!(tree.projections["gcc"], "gcc-{version}");
    let prefix = format!("{}/gcc-7.5.0", tree.root);
    assert_eq!(job.toolchain_prefix(&l), prefix);

    let env = job.environment(&l).spack;
    assert!(!env.mirrors.contains_key("slurm-factory-compiler"));
    let gcc = &env.packages["gcc"];
    assert_eq!(gcc.buildable, Some(false));
    assert_eq!(gcc.externals.len(), 1);
    assert_eq!(gcc.externals[0].prefix, prefix);
    assert_eq!(gcc.externals[0].spec, "gcc@7.5.0 languages=c,c++,fortran");
    let compilers = &gcc.externals[0]
        .extra_attributes
        .as_ref()
        .unwrap()
        .compilers;
    assert_eq!(compilers["c"], format!("{prefix}/bin/gcc"));
    assert_eq!(compilers["fortran"], format!("{prefix}/bin/gfortran"));

    // The steps install the toolchain before the Slurm environment is concretized.
    let names: Vec<String> = job.steps(&l).into_iter().map(|s| s.name).collect();
    let at = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert!(at("toolchain") < at("concretize"), "{names:?}");
    let text = slurm_factory::builder::render_toolchain_environment(&job, &l)
        .unwrap()
        .unwrap();
    insta::assert_snapshot!("toolchain_23.11_gcc7.5.0_cpu_amd64", text);

    let compiler = Job::compiler(&cat, "7.5.0".parse().unwrap(), Arch("amd64".into())).unwrap();
    assert!(compiler.toolchain_environment(&layout(&compiler)).is_none());
}
