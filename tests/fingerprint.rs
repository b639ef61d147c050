//! `slurm-factory fingerprint` (issue 25, item 1): the real binary prints a leg's input
//! fingerprint with every ingredient, as text and JSON; a Slurm recipe edited in a checkout
//! changes only the Slurm legs' `spack-repo` ingredient, and a change to the toolchain's leg
//! changes the Slurm legs' `toolchain`; bad input is refused with a clear error.

mod common;

use std::process::Command;

fn fingerprint(args: &[&str]) -> (bool, String) {
    let out = Command::new(common::bin("slurm-factory"))
        .arg("fingerprint")
        .args(args)
        .env_remove("SLURM_FACTORY_CATALOG")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn json(args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let (ok, out) = fingerprint(&a);
    assert!(ok, "{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn prints_every_ingredient_as_text_and_json() {
    let (ok, text) = fingerprint(&["--slurm-version", "25.11", "--compiler-version", "13.4.0"]);
    assert!(ok, "{text}");
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("slurm-25.11-gcc13.4.0-cpu-amd64-el8  sha256:"),
        "{text}"
    );
    let j = json(&["--slurm-version", "25.11", "--compiler-version", "13.4.0"]);
    assert_eq!(
        first.split_whitespace().nth(1).unwrap(),
        j["fingerprint"].as_str().unwrap()
    );
    for name in [
        "tool",
        "leg",
        "environment",
        "spack-repo",
        "docker",
        "spack",
        "spack-packages",
        "toolchain",
    ] {
        let i = &j["ingredients"][name];
        assert_eq!(i["sha256"].as_str().unwrap().len(), 64, "{name}: {j}");
        assert!(
            text.contains(&format!("  {name} ")),
            "{name} missing from:\n{text}"
        );
    }
    // Deterministic, and the kinds and variants differ.
    assert_eq!(
        j,
        json(&["--slurm-version", "25.11", "--compiler-version", "13.4.0"])
    );
    let gpu = json(&[
        "--slurm-version",
        "25.11",
        "--compiler-version",
        "13.4.0",
        "--gpu",
    ]);
    let tarball = json(&[
        "--kind",
        "tarball",
        "--slurm-version",
        "25.11",
        "--compiler-version",
        "13.4.0",
    ]);
    let compiler = json(&["--kind", "compiler", "--compiler-version", "13.4.0"]);
    // A Slurm leg's toolchain is the compiler leg it installs GCC from; a toolchain has none.
    assert_eq!(
        format!(
            "sha256:{}",
            j["ingredients"]["toolchain"]["sha256"].as_str().unwrap()
        ),
        compiler["fingerprint"].as_str().unwrap()
    );
    assert!(compiler["ingredients"]["toolchain"].is_null(), "{compiler}");
    let el9 = json(&[
        "--slurm-version",
        "25.11",
        "--compiler-version",
        "13.4.0",
        "--platform",
        "el9",
    ]);
    assert_eq!(el9["leg"], "slurm-25.11-gcc13.4.0-cpu-amd64-el9");
    assert_ne!(el9["ingredients"]["docker"], j["ingredients"]["docker"]);
    let all = [&j, &gpu, &tarball, &compiler, &el9]
        .map(|v| v["fingerprint"].as_str().unwrap().to_owned());
    let unique: std::collections::BTreeSet<_> = all.iter().collect();
    assert_eq!(unique.len(), 5, "{all:?}");
}

#[test]
fn a_recipe_edited_in_a_checkout_changes_the_legs_whose_dag_or_toolchain_holds_it() {
    let t = tempfile::tempdir().unwrap();
    let st = Command::new("cp")
        .arg("-R")
        .arg(common::repo_root().join("spack-repo"))
        .arg(common::repo_root().join("docker"))
        .arg(t.path())
        .status()
        .unwrap();
    assert!(st.success());
    let dir = t.path().to_str().unwrap();
    let args = [
        "--slurm-version",
        "24.11",
        "--compiler-version",
        "12.5.0",
        "--source-dir",
        dir,
    ];
    let before = json(&args);
    let embedded = json(&args[..4]);
    assert_eq!(
        before["fingerprint"], embedded["fingerprint"],
        "the checkout is what the binary embeds"
    );
    let recipe = t
        .path()
        .join("spack-repo/spack_repo/slurm_factory/packages/slurm/package.py");
    let mut text = std::fs::read_to_string(&recipe).unwrap();
    text.push_str("\n# one more line\n");
    std::fs::write(&recipe, text).unwrap();
    let compiler_args = [
        "--kind",
        "compiler",
        "--compiler-version",
        "12.5.0",
        "--source-dir",
        dir,
    ];
    let compiler_before = json(&compiler_args);
    let after = json(&args);
    assert_ne!(before["fingerprint"], after["fingerprint"]);
    let changed = |before: &serde_json::Value, after: &serde_json::Value| -> Vec<String> {
        let names = before["ingredients"].as_object().unwrap().keys();
        names
            .filter(|n| before["ingredients"][n] != after["ingredients"][n])
            .cloned()
            .collect()
    };
    // A Slurm-only recipe: the Slurm leg's own DAG, not its toolchain, and no compiler leg.
    assert_eq!(changed(&before, &after), ["spack-repo"]);
    assert_eq!(json(&compiler_args), compiler_before);
    // The gcc recipe changes the compiler leg, and so the toolchain of every Slurm leg built
    // with it (besides the Slurm leg's own DAG, which holds gcc too).
    let recipe = t
        .path()
        .join("spack-repo/spack_repo/slurm_factory/packages/gcc/package.py");
    let mut text = std::fs::read_to_string(&recipe).unwrap();
    text.push_str("\n# one more line\n");
    std::fs::write(&recipe, text).unwrap();
    let compiler_after = json(&compiler_args);
    assert_eq!(changed(&compiler_before, &compiler_after), ["spack-repo"]);
    let toolchain_changed = json(&args);
    assert_eq!(
        changed(&after, &toolchain_changed),
        ["spack-repo", "toolchain"]
    );
    assert_eq!(
        toolchain_changed["ingredients"]["toolchain"]["sha256"]
            .as_str()
            .map(|h| format!("sha256:{h}")),
        compiler_after["fingerprint"].as_str().map(str::to_owned)
    );
}

#[test]
fn bad_input_is_refused_with_what_to_do() {
    let (ok, out) = fingerprint(&["--kind", "bogus"]);
    assert!(!ok && out.contains("compiler, slurm, tarball"), "{out}");
    let (ok, out) = fingerprint(&["--slurm-version", "19.05"]);
    assert!(!ok && out.contains("19.05"), "{out}");
    let (ok, out) = fingerprint(&["--kind", "compiler", "--gpu"]);
    assert!(!ok && out.contains("--gpu"), "{out}");
    let (ok, out) = fingerprint(&["--source-dir", "/nonexistent-checkout"]);
    assert!(!ok && out.contains("/nonexistent-checkout"), "{out}");
}
