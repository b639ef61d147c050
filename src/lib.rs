//! slurm-factory: build relocatable Slurm packages and GCC toolchains with Spack inside Docker,
//! sign the resulting Spack buildcaches with OpenPGP and publish them to S3, from GitHub Actions
//! or a workstation.
//!
//! The crate is a library plus thin binaries, one per composite action (`prepare-matrix`,
//! `build-compiler`, `build-slurm`, `sign-and-upload`, `test-install`, `tarball-publish`) and the
//! umbrella `slurm-factory` CLI. Every binary is a `clap` front end over a module here:
//!
//! - [`gha`]: the GitHub Actions runner protocol (inputs, file commands, workflow commands,
//!   job summary, OIDC), with a readable terminal fallback outside Actions.
//! - [`catalog`]: the version catalog (`catalog.yaml`), the single source of truth for what can
//!   be built and where it is published.
//! - [`matrix`]: turning user input into a validated build matrix.
//! - [`spack`]: the Spack environments, namespaces and build steps of a job.
//! - [`docker`]: the build container (image build, step execution, cancellation) on bollard.
//! - [`builder`]: the build engine of `build-compiler` and `build-slurm`: the plan of a
//!   dry run, or the build itself (namespace, image, steps, outputs, then publishing).
//! - [`workflows`]: the generator of `.github/workflows` and `actions/` from `workflows-src/`.
//! - [`buildcache`]: the Spack layout-v3 buildcache model, storage, signing, index merge and
//!   verification.
//! - [`elf`]: reading and in-place rewriting of ELF RPATH/RUNPATH/interpreter strings.
//! - [`glibc_floor`]: the oldest glibc an install tree or archive runs on, from its ELF
//!   files' version-needed sections, and the check against the host's glibc.
//! - [`install`]: the Spack-free verifying installer behind `test-install` (hardened
//!   extraction, Spack-style relocation, smoke checks).
//! - [`relocate`]: Spack 1.0's relocation of an extracted binary package (prefix map from
//!   `.spack/binary_distribution`; ELF RPATHs, symlinks, text files, embedded C strings), shared
//!   by the installer and the tarball packer.
//! - [`pgp`]: OpenPGP signing and verification (sequoia, no gpg).
//! - [`s3`]: publishing buildcaches to S3: OIDC→STS credentials, the upload engine and the
//!   race-free index merge.
//! - [`preflight`]: the checks a build leg runs before building (key, role, bucket, writes).
//! - [`report`]: one matrix table and one Slack message for a whole pipeline run (octocrab).
//! - [`tarball`]: relocatable, reproducible Slurm tarballs with Lmod modules, and their
//!   signed publication.
//! - [`cluster`]: the cluster smoke test of an installed Slurm (a throwaway single-host
//!   cluster: controller, node daemon, `srun` and `sbatch`).
//! - [`stamp`]: signed build stamps: what a leg published, from which input fingerprint,
//!   written last beside it; what lets a plan skip a leg that is already built.
//! - [`cli`]: the argument surfaces and entry points shared by the binaries.

// What `pub` marks is the API; anything else is `pub(crate)`.
#![warn(unreachable_pub)]

pub mod buildcache;
pub mod builder;
pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod docker;
pub mod elf;
pub mod fingerprint;
pub mod gha;
pub mod glibc_floor;
pub mod install;
pub mod matrix;
pub(crate) mod net;
pub(crate) mod paths;
pub mod pgp;
pub mod preflight;
pub mod relocate;
pub mod report;
pub mod s3;
pub mod spack;
pub mod stamp;
pub mod tarball;
pub mod workflows;
