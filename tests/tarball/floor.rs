//! The glibc floor of a packed tarball: `data/glibc-floor.txt` names the highest `GLIBC_`
//! version the view's gcc-built ELF files need (cross-checked with `readelf -V`), the summary
//! shows it, and `--platform` refuses a tarball whose floor is above the platform's glibc, naming
//! the file and the symbol version (real files built here need GLIBC_2.34 > el8's 2.28; a copy
//! patched to need GLIBC_2.99 is above every platform).

use std::path::Path;
use std::process::Command;

use crate::glibc_patch::patch_glibc_version;
use crate::support::*;

/// The local tarball's name: with `--platform`, the platform is part of it, as in the catalog's keys.
fn name(platform: &str) -> String {
    format!("slurm-25.11-gcc13.4.0-{platform}-software.tar.gz")
}

/// The highest `GLIBC_x.y` `readelf -V` lists for `file`.
fn readelf_glibc_max(file: &Path) -> String {
    let o = Command::new("readelf")
        .arg("-V")
        .arg(file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let mut best: Option<(Vec<u32>, String)> = None;
    for name in text
        .split("Name: ")
        .skip(1)
        .filter_map(|r| r.split_whitespace().next())
    {
        let Some(v) = name.strip_prefix("GLIBC_") else {
            continue;
        };
        let Ok(parts) = v
            .split('.')
            .map(str::parse)
            .collect::<Result<Vec<u32>, _>>()
        else {
            continue;
        };
        if best.as_ref().is_none_or(|b| parts > b.0) {
            best = Some((parts, name.to_owned()));
        }
    }
    best.unwrap().1
}

fn publish(b: &Build, out: &Path, platform: &str) -> (bool, String) {
    let mut c = publish_cmd(b, out);
    c.args(["--platform", platform]);
    let o = c.output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn the_floor_is_recorded_and_a_platform_with_an_older_glibc_is_refused() {
    let Some(b) = build(false) else { return };
    let sinfo = b.view().join("bin/sinfo");
    let want = readelf_glibc_max(&sinfo);

    // ubuntu24.04 (glibc 2.39) takes what this host's gcc built.
    let out = b.tmp.path().join("ok");
    let (ok, log) = publish(&b, &out, "ubuntu24.04");
    assert!(ok, "{log}");
    let unpacked = b.tmp.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let t = Command::new("tar")
        .arg("-xzf")
        .arg(out.join(name("ubuntu24.04")))
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(t.success());
    let floor = std::fs::read_to_string(unpacked.join("data/glibc-floor.txt")).unwrap();
    let version = want.strip_prefix("GLIBC_").unwrap();
    assert!(
        floor.starts_with(&format!("glibc: {version} {want} view/bin/sinfo\n")),
        "{floor}"
    );
    assert!(floor.contains("elf-files: 4\n"), "{floor}");
    let manifest = std::fs::read_to_string(unpacked.join("data/MANIFEST")).unwrap();
    assert!(manifest.contains("data/glibc-floor.txt"), "{manifest}");
    assert!(
        log.contains(&format!("glibc floor {version} ({want}, view/bin/sinfo)"))
            && log.contains("Platform | ubuntu24.04 (Ubuntu 24.04, glibc 2.39)"),
        "{log}"
    );

    // el8 promises glibc 2.28: anything built on glibc >= 2.34 is refused, nothing signed.
    if version != "2.28" {
        let out = b.tmp.path().join("el8");
        let (ok, log) = publish(&b, &out, "el8");
        assert!(!ok, "{log}");
        assert!(
            log.contains(&format!(
                "needs glibc {version} but the catalog promises platform el8 (Rocky Linux 8) runs it with glibc 2.28: view/bin/sinfo needs {want}"
            )),
            "{log}"
        );
        let left: Vec<String> = std::fs::read_dir(&out)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(".tar.gz"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "the refused tarball is removed and nothing is signed: {left:?}"
        );
    }

    // A file patched to need GLIBC_2.99 is above every platform; the file is named.
    patch_glibc_version(&b.view().join("bin/srun"), "GLIBC_2.34", "GLIBC_2.99", true);
    let out = b.tmp.path().join("new");
    let (ok, log) = publish(&b, &out, "ubuntu24.04");
    assert!(!ok, "{log}");
    assert!(
        log.contains("needs glibc 2.99 but the catalog promises platform ubuntu24.04")
            && log.contains("view/bin/srun needs GLIBC_2.99"),
        "{log}"
    );

    // An unknown platform is an error listing the catalog's.
    let (ok, log) = publish(&b, &b.tmp.path().join("x"), "sles15");
    assert!(
        !ok && log.contains("choose one of el8, el9, ubuntu24.04"),
        "{log}"
    );
}
