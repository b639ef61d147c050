//! The `slurm_factory` Spack repository parses (`python3 -m py_compile`) and its Slurm recipe
//! has every catalog version, each with a real-looking sha256 or an explicit CHECKSUM-MISSING
//! marker (never an invented checksum).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use slurm_factory::catalog::Catalog;
use slurm_factory::spack::repo;

use crate::common::{repo_root, require_tool};

fn packages() -> Vec<PathBuf> {
    repo::FILES
        .iter()
        .filter(|(p, _)| p.ends_with("package.py"))
        .map(|(p, _)| repo_root().join("spack-repo").join(p))
        .collect()
}

#[test]
fn every_package_py_compiles() {
    let Some(python) = require_tool("python3") else {
        return;
    };
    let pkgs = packages();
    assert!(pkgs.len() >= 2, "{pkgs:?}");
    for p in pkgs {
        let out = Command::new(&python)
            .args(["-m", "py_compile"])
            .arg(&p)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env(
                "PYTHONPYCACHEPREFIX",
                std::env::temp_dir().join("sf-pycache"),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Extracts `version(...)` calls of a recipe with Python's `ast`: {version: sha256 or null},
/// and the versions preceded by a `# CHECKSUM-MISSING` comment.
const EXTRACT: &str = r#"
import ast, json, sys
src = open(sys.argv[1]).read()
tree = ast.parse(src)
lines = src.splitlines()
versions, missing_marked = {}, []
for node in ast.walk(tree):
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "version":
        v = node.args[0].value
        kw = {k.arg: k.value for k in node.keywords}
        versions[v] = kw["sha256"].value if "sha256" in kw else None
        above = lines[max(0, node.lineno - 4):node.lineno - 1]
        if any("CHECKSUM-MISSING" in l for l in above):
            missing_marked.append(v)
classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
funcs = [f.name for n in tree.body if isinstance(n, ast.ClassDef) for f in n.body if isinstance(f, ast.FunctionDef)]
print(json.dumps({"versions": versions, "marked": missing_marked, "classes": classes, "methods": funcs}))
"#;

fn extract(python: &PathBuf, pkg: &str) -> serde_json::Value {
    let path = repo_root()
        .join("spack-repo/spack_repo/slurm_factory/packages")
        .join(pkg)
        .join("package.py");
    let out = Command::new(python)
        .args(["-c", EXTRACT])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn slurm_recipe_covers_the_catalog_with_checksums() {
    let Some(python) = require_tool("python3") else {
        return;
    };
    let info = extract(&python, "slurm");
    assert_eq!(info["classes"], serde_json::json!(["Slurm"]));
    let methods: Vec<&str> = info["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for m in [
        "url_for_version",
        "configure_args",
        "install",
        "add_origin_rpaths",
    ] {
        assert!(methods.contains(&m), "Slurm recipe lacks {m}: {methods:?}");
    }
    let versions: BTreeMap<String, Option<String>> =
        serde_json::from_value(info["versions"].clone()).unwrap();
    let marked: Vec<String> = serde_json::from_value(info["marked"].clone()).unwrap();
    let cat = Catalog::embedded();
    let mut unverified = Vec::new();
    for rel in &cat.slurm.releases {
        let v = rel.spack.as_str();
        let Some(sum) = versions.get(v) else {
            panic!(
                "catalog Slurm {} ({v}) has no version() in the recipe; have {versions:?}",
                rel.version
            )
        };
        match sum {
            Some(s) => assert!(
                s.len() == 64
                    && s.bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                "{v}: {s:?} is not a sha256"
            ),
            None => {
                assert!(
                    marked.contains(&v.to_owned()),
                    "{v} has no checksum and no CHECKSUM-MISSING marker"
                );
                unverified.push(v.to_owned());
            }
        }
    }
    // Checksums must be unique: a copy-pasted checksum is a wrong one.
    let sums: Vec<&String> = versions.values().flatten().collect();
    let unique: std::collections::HashSet<_> = sums.iter().collect();
    assert_eq!(
        unique.len(),
        sums.len(),
        "duplicate checksums in the Slurm recipe"
    );
    if !unverified.is_empty() {
        eprintln!(
            "note: catalog versions without a checksum (Spack will refuse to fetch them): {unverified:?}"
        );
    }
    // Every release the catalog builds must be fetchable. (26-05-0-1 stays in the recipe,
    // marked CHECKSUM-MISSING, but the catalog builds 26.05 at 26-05-1-1.)
    assert!(
        unverified.is_empty(),
        "catalog versions without a checksum: {unverified:?}"
    );
}

#[test]
fn slurm_recipe_encodes_the_field_notes() {
    let text = std::fs::read_to_string(
        repo_root().join("spack-repo/spack_repo/slurm_factory/packages/slurm/package.py"),
    )
    .unwrap();
    for needle in [
        "from spack_repo.builtin.build_systems.autotools import AutotoolsPackage",
        "from spack.package import *",
        "https://download.schedmd.com/slurm/slurm-{0}.tar.bz2",
        "depends_on(\"pmix@:5\"",
        "depends_on(\"s2n-tls\", when=\"@25-11:\")",
        "\"--with-libhttp-parser\" if spec.satisfies(\"@26-05:\") else \"--with-http-parser\"",
        "make(\"-C\", \"contribs/pmi2\", \"install\")",
        "make(\"-C\", \"contribs/nss_slurm\", \"install\")",
        "$ORIGIN/../lib",
        "variant(\"nvml\"",
        "variant(\"rsmi\"",
        "\"sysconfdir\"",
    ] {
        assert!(text.contains(needle), "Slurm recipe lacks {needle:?}");
    }
    let repo_yaml =
        std::fs::read_to_string(repo_root().join("spack-repo/spack_repo/slurm_factory/repo.yaml"))
            .unwrap();
    let v: serde_json::Value = yaml_serde::from_str(&repo_yaml).unwrap();
    assert_eq!(v["repo"]["namespace"], "slurm_factory");
    assert!(v["repo"]["api"].as_str().unwrap().starts_with("v2"));
}

#[test]
fn s2n_tls_recipe_has_checksums() {
    let Some(python) = require_tool("python3") else {
        return;
    };
    let info = extract(&python, "s2n_tls");
    let versions: BTreeMap<String, Option<String>> =
        serde_json::from_value(info["versions"].clone()).unwrap();
    assert!(!versions.is_empty());
    for (v, s) in versions {
        let s = s.unwrap_or_else(|| panic!("s2n-tls {v} has no checksum"));
        assert_eq!(s.len(), 64, "{v}");
    }
}
