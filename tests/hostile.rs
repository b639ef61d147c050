//! A hostile corpus against `slurm-factory verify`: every case is built from the real Spack
//! buildcache in tests/fixtures/spack-v3 (byte surgery, keys crafted with sequoia and real
//! gpg), one file per attack class. Each case must be refused with a message naming the
//! manifest, and `gpg_crosscheck` runs every signed manifest of the corpus through real
//! `gpg --verify` (and `sqv` where a detached signature applies): no case GnuPG rejects may be
//! accepted by us.

#[path = "hostile/armor.rs"]
mod armor;
#[path = "hostile/blobs.rs"]
mod blobs;
mod common;
#[path = "hostile/corpus.rs"]
mod corpus;
#[path = "hostile/crosscheck.rs"]
mod crosscheck;
#[path = "hostile/keys.rs"]
mod keys;
#[path = "hostile/pinning.rs"]
mod pinning;
#[path = "hostile/stamps.rs"]
mod stamps;
