//! The Spack-free verifying installer (`test-install`): ELF reading and in-place rewriting,
//! hardened extraction, Spack-style relocation against the real Spack 1.0 fixture buildcache,
//! tarball installs and smoke checks. Binaries are compiled by the tests with the host's gcc.

#[path = "install/buildcache.rs"]
mod buildcache;
mod common;
#[path = "install/elf.rs"]
mod elf;
#[path = "install/extract.rs"]
mod extract;
#[path = "install/floor.rs"]
mod floor;
#[path = "common/glibc_patch.rs"]
mod glibc_patch;
#[path = "s3/harness.rs"]
mod harness;
#[path = "install/ldso.rs"]
mod ldso;
#[path = "install/relocate.rs"]
mod relocate;
#[path = "install/remote.rs"]
mod remote;
#[path = "install/selection.rs"]
mod selection;
#[path = "install/smoke.rs"]
mod smoke;
#[path = "install/support.rs"]
mod support;
#[path = "install/synth.rs"]
mod synth;
#[path = "install/tarball.rs"]
mod tarball;
