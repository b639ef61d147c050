//! Signing, publishing and verifying Spack buildcaches, cross-checked with real GnuPG and sqv
//! against buildcaches written by real Spack 1.0.0 (tests/fixtures/spack-v3).

mod common;
#[path = "signing/keys.rs"]
mod keys;
#[path = "signing/publish.rs"]
mod publish;
#[path = "signing/secrets.rs"]
mod secrets;
#[path = "signing/support.rs"]
mod support;
#[path = "signing/tamper.rs"]
mod tamper;
