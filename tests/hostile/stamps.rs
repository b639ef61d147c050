//! Hostile build stamps: a stamp is read only from the text its signature covers, against
//! pinned keys, and every other shape is refused with its own error (tampered text, another
//! key, unsigned, data around the armor, duplicate JSON keys, data after the document, an
//! unknown format, a reformatted document, a huge file). Each signed case is cross-checked
//! with real `gpg --verify` where the refusal is about the signature.

use openpgp::types::HashAlgorithm;
use sequoia_openpgp as openpgp;
use slurm_factory::fingerprint::{self, Sources};
use slurm_factory::pgp::{SigningKey, TrustedKeys, VerifyError};
use slurm_factory::stamp::{self, MAX_STAMP_BYTES, Published, Stamp, StampError};

use super::corpus::*;

fn demo_key() -> SigningKey {
    let sec = std::fs::read(fixtures().join("keys/demo-signer.sec.asc")).unwrap();
    SigningKey::load(&sec, None, None).unwrap()
}

fn pinned() -> TrustedKeys {
    let mut t = TrustedKeys::new();
    t.add_armored(&std::fs::read(fixtures().join("keys/demo-signer.pub.asc")).unwrap())
        .unwrap();
    t
}

fn a_stamp() -> Stamp {
    let c = slurm_factory::catalog::Catalog::embedded();
    let job = slurm_factory::spack::Job::compiler_on(
        &c,
        "13.4.0".parse().unwrap(),
        c.architectures.default.clone(),
        None,
    )
    .unwrap();
    let f = fingerprint::of(&job, false, &Sources::embedded()).unwrap();
    Stamp::new(
        &f,
        Published::Buildcache {
            destination: "s3://bucket/compilers/el8/13.4.0/buildcache".into(),
            mode: "all".into(),
            specs: vec![],
        },
        Some("https://github.com/o/r/actions/runs/7".into()),
    )
}

/// `gpg --verify` of `file` with only the pinned public key imported; `None` without gpg.
fn gpg_verifies(file: &[u8]) -> Option<bool> {
    let gpg = super::common::find_tool("gpg")?;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("gnupg");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(&gpg)
            .env("GNUPGHOME", &home)
            .args(["--batch", "--no-tty"])
            .args(args)
            .output()
            .unwrap()
            .status
            .success()
    };
    let key = fixtures().join("keys/demo-signer.pub.asc");
    assert!(run(&["--import".as_ref(), key.as_os_str()]));
    let f = dir.path().join("stamp.json.sig");
    std::fs::write(&f, file).unwrap();
    Some(run(&["--verify".as_ref(), f.as_os_str()]))
}

/// `text` signed with the fixture key (what a pinned signer would publish).
fn signed(text: &str) -> Vec<u8> {
    demo_key().clearsign(text.as_bytes()).unwrap()
}

#[test]
fn a_stamp_signed_by_the_pinned_key_reads_back() {
    let s = a_stamp();
    let v = stamp::read(&s.sign(&demo_key()).unwrap(), &pinned()).unwrap();
    assert_eq!(v.stamp, s);
    assert_eq!(v.signer.as_str(), FIXTURE_FPR);
}

#[test]
fn hostile_stamps_are_refused_each_with_its_own_error() {
    let s = a_stamp();
    let text = String::from_utf8(s.to_json()).unwrap();
    let good = s.sign(&demo_key()).unwrap();

    // Tampered: one byte of the signed text changed after signing.
    let tampered = String::from_utf8(good.clone()).unwrap().replacen(
        "\"mode\": \"all\"",
        "\"mode\": \"alL\"",
        1,
    );
    assert!(matches!(
        stamp::read(tampered.as_bytes(), &pinned()),
        Err(StampError::Signature(VerifyError::BadSignature(_)))
    ));
    // Real GnuPG, with the pinned key imported, agrees: the good stamp verifies, the tampered
    // one does not.
    if let Some(ok) = gpg_verifies(&good) {
        assert!(ok, "gpg refused a good stamp");
        assert_eq!(gpg_verifies(tampered.as_bytes()), Some(false));
    }

    // Another key: a valid signature by a key nobody pinned.
    let now = now();
    let other = craft(now - DAY, None, None);
    let by_other = clearsign_at(
        &other,
        &signing_fpr(&other),
        text.as_bytes(),
        now,
        HashAlgorithm::SHA512,
    );
    let e = stamp::read(&by_other, &pinned()).unwrap_err();
    assert!(
        matches!(&e, StampError::Signature(VerifyError::UnknownSigner(_))),
        "{e}"
    );
    // Trusting that key's published copy would make it verify: the pin is what refused it.
    let mut theirs = TrustedKeys::new();
    theirs.add_armored(&public(&other)).unwrap();
    assert!(stamp::read(&by_other, &theirs).is_ok());

    // Unsigned, and data before or after the armor.
    assert_eq!(
        stamp::read(text.as_bytes(), &pinned()).unwrap_err(),
        StampError::Signature(VerifyError::Unsigned)
    );
    let mut after = good.clone();
    after.extend_from_slice(b"\n{\"leg\": \"other\"}\n");
    assert!(matches!(
        stamp::read(&after, &pinned()),
        Err(StampError::Signature(VerifyError::Armor(_)))
    ));

    // Signed, but not a stamp this tool writes.
    let dup = text.replacen(
        "\"leg\":",
        "\"leg\": \"gcc-14.2.0-amd64-el8\",\n  \"leg\":",
        1,
    );
    assert_eq!(
        stamp::read(&signed(&dup), &pinned()).unwrap_err(),
        StampError::DuplicateKey("\".leg\"".into())
    );
    let nested = text.replacen(
        "\"mode\": \"all\",",
        "\"mode\": \"all\",\n    \"mode\": \"slurm-only\",",
        1,
    );
    assert_eq!(
        stamp::read(&signed(&nested), &pinned()).unwrap_err(),
        StampError::DuplicateKey("\".published.mode\"".into())
    );
    let trailing = format!("{text}\n{{\"format\": 1}}");
    let e = stamp::read(&signed(&trailing), &pinned()).unwrap_err();
    assert!(matches!(&e, StampError::TrailingData(_)), "{e}");
    assert!(e.to_string().contains("after the JSON document"), "{e}");
    let v9 = text.replacen("\"format\": 1,", "\"format\": 9,", 1);
    let e = stamp::read(&signed(&v9), &pinned()).unwrap_err();
    assert_eq!(e, StampError::UnknownFormat("9".into()));
    assert!(e.to_string().contains("stamp format 9"), "{e}");
    let unknown = text.replacen("\"format\": 1,", "\"format\": 1,\n  \"skip\": true,", 1);
    assert!(matches!(
        stamp::read(&signed(&unknown), &pinned()),
        Err(StampError::Invalid(m)) if m.contains("skip")
    ));
    let reordered = serde_json::to_string(&s).unwrap();
    assert_eq!(
        stamp::read(&signed(&reordered), &pinned()).unwrap_err(),
        StampError::NotCanonical
    );

    // Huge: refused by size before any parsing or verification.
    let mut huge = good.clone();
    huge.resize(MAX_STAMP_BYTES as usize + 1, b' ');
    assert_eq!(
        stamp::read(&huge, &pinned()).unwrap_err(),
        StampError::TooLarge(MAX_STAMP_BYTES + 1)
    );
}
