//! The corpus against real GnuPG and sqv: for every case with a signed manifest, `gpg --verify`
//! (what Spack runs) judges the file with the case's trusted keys imported; for the key cases,
//! `sqv` judges a detached signature made with the same key at the same time. Wherever they
//! reject, we must reject too (we also reject cases they accept: CRLF armor, keys expired or
//! revoked since signing, ...).

use std::path::Path;
use std::process::Command;

use slurm_factory::buildcache::signed::read_manifest;
use slurm_factory::pgp::TrustedKeys;

use super::common;
use super::corpus::*;

fn gpg_verify(gpg: &Path, dir: &Path, keys: &[Vec<u8>], file: &[u8]) -> (bool, String) {
    let home = dir.join("gnupg");
    std::fs::create_dir_all(&home).unwrap();
    let mut perms = std::fs::metadata(&home).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
    std::fs::set_permissions(&home, perms).unwrap();
    for (i, k) in keys.iter().enumerate() {
        let p = dir.join(format!("k{i}.asc"));
        std::fs::write(&p, k).unwrap();
        let out = Command::new(gpg)
            .env("GNUPGHOME", &home)
            .args(["--batch", "--no-tty", "--import"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let f = dir.join("manifest.json");
    std::fs::write(&f, file).unwrap();
    let out = Command::new(gpg)
        .env("GNUPGHOME", &home)
        .args(["--batch", "--no-tty", "--verify"])
        .arg(&f)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sqv_verify(sqv: &Path, dir: &Path, keys: &[Vec<u8>], sig: &[u8], data: &[u8]) -> bool {
    let mut c = Command::new(sqv);
    for (i, k) in keys.iter().enumerate() {
        let p = dir.join(format!("k{i}.asc"));
        std::fs::write(&p, k).unwrap();
        c.arg("--keyring").arg(p);
    }
    std::fs::write(dir.join("sig.asc"), sig).unwrap();
    std::fs::write(dir.join("data"), data).unwrap();
    c.arg(dir.join("sig.asc")).arg(dir.join("data"));
    c.output().unwrap().status.success()
}

#[test]
fn no_case_gnupg_or_sqv_rejects_is_accepted() {
    let Some(gpg) = common::require_tool("gpg") else {
        return;
    };
    let Some(sqv) = common::require_tool("sqv") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let all: Vec<Case> = super::armor::cases()
        .into_iter()
        .chain(super::keys::cases())
        .chain(super::blobs::cases())
        .collect();
    let mut table = Vec::new();
    let mut gpg_rejected = 0;
    for case in &all {
        let dir = t.path().join(&case.name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut trusted = TrustedKeys::new();
        for k in &case.keys {
            trusted.add_armored(k).unwrap();
        }
        if let Some(m) = &case.manifest
            && let Some((_, bytes)) = case.files.iter().find(|(p, _)| p == m)
        {
            let (gpg_ok, gpg_err) = gpg_verify(&gpg, &dir, &case.keys, bytes);
            let ours = read_manifest(bytes, m, &trusted);
            if !gpg_ok {
                gpg_rejected += 1;
                assert!(
                    ours.is_err(),
                    "{}: gpg rejects it ({gpg_err}) but we accepted it",
                    case.name
                );
            }
            table.push(format!(
                "{:<48} gpg {:<6} ours {}",
                case.name,
                if gpg_ok { "ok" } else { "REJECT" },
                match &ours {
                    Ok(_) => "ok (refused later for its content)".to_string(),
                    Err(e) => format!("REJECT: {}", e.problem),
                }
            ));
        }
        if let Some((sig, data)) = &case.detached {
            let sqv_ok = sqv_verify(&sqv, &dir, &case.keys, sig, data);
            let ours = trusted.verify_detached(sig, data);
            if !sqv_ok {
                assert!(
                    ours.is_err(),
                    "{}: sqv rejects the detached signature but we accepted it",
                    case.name
                );
            }
            table.push(format!(
                "{:<48} sqv {:<6} ours {}",
                case.name,
                if sqv_ok { "ok" } else { "REJECT" },
                if ours.is_ok() { "ok" } else { "REJECT" }
            ));
        }
    }
    eprintln!("{}", table.join("\n"));
    assert!(
        gpg_rejected > 5,
        "the corpus exercises gpg refusals: {table:#?}"
    );
}
