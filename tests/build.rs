//! Integration tests of issue 6: the generated Spack environments (snapshots), the
//! `slurm_factory` Spack repository, the `build-compiler` / `build-slurm` command lines, and the
//! build orchestration against the real Docker engine with a stand-in image.

mod common;

#[path = "build/caches.rs"]
mod caches;
#[path = "build/cli.rs"]
mod cli;
#[path = "build/engine.rs"]
mod engine;
#[path = "build/env.rs"]
mod env;
#[path = "build/repo.rs"]
mod repo;
