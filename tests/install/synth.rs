//! Synthetic signed Spack v3 buildcaches, for what the Spack-written fixture does not hold
//! (compilers recorded as dependencies, scripts that run through sbang): real gzip'd tar
//! packages laid out as `spack buildcache push` lays them out (padded build prefix,
//! `.spack/binary_distribution`, `.spack/spec.json`), spec blobs, manifests clearsigned with the
//! fixture key, the DB v8 index and `layout.json`, written with the library's layout code.
#![allow(dead_code)]

use std::path::Path;

use serde_json::{Value, json};
use slurm_factory::buildcache::index::Index;
use slurm_factory::buildcache::layout::{self, BlobRecord, Manifest, SpecNode};
use slurm_factory::pgp::SigningKey;

use crate::buildcache::fixtures;

/// The store root of the synthetic build (`sbang` lived in its `bin/`).
pub const STORE: &str = "/tmp/synthetic/store";
/// The padded install root of the synthetic build.
pub const BUILDPATH: &str = "/tmp/synthetic/store/__spack_path_placeholder__/__spack_path_placeholder__/__spack_path_placeholder__/__spack_path_placeholder__";
/// `<platform>-<target>` of every synthetic node.
pub const ARCH: &str = "linux-x86_64_v3";

/// A node of the synthetic DAG.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub version: String,
    pub hash: String,
    /// Dependency entries as Spack 1.0 writes them.
    pub deps: Vec<Value>,
    /// Extra top-level fields (`external`, the legacy `compiler`).
    pub extra: serde_json::Map<String, Value>,
}

impl Node {
    pub fn new(name: &str, version: &str, hash: &str) -> Node {
        assert_eq!(hash.len(), 32);
        Node {
            name: name.into(),
            version: version.into(),
            hash: hash.into(),
            deps: Vec::new(),
            extra: Default::default(),
        }
    }

    /// An external (e.g. the system gcc), as Spack 1.0 records a compiler it did not build.
    pub fn external(mut self, path: &str) -> Node {
        self.extra
            .insert("external".into(), json!({"path": path, "module": null}));
        self
    }

    /// Built with `compiler` providing `c` and `cxx` (a build dependency).
    pub fn built_with(mut self, compiler: &Node) -> Node {
        self.deps.push(json!({
            "name": compiler.name, "hash": compiler.hash,
            "parameters": {"deptypes": ["build"], "virtuals": ["c", "cxx"]}
        }));
        self
    }

    /// The node JSON.
    pub fn json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "version": self.version,
            "arch": {"platform": "linux", "platform_os": "debian12", "target": "x86_64_v3"},
            "namespace": "builtin",
            "parameters": {"build_system": "generic"},
            "hash": self.hash,
        });
        if !self.deps.is_empty() {
            v["dependencies"] = Value::Array(self.deps.clone());
        }
        for (k, x) in &self.extra {
            v[k] = x.clone();
        }
        v
    }

    pub fn rel_prefix(&self) -> String {
        format!("{ARCH}/{}-{}-{}", self.name, self.version, self.hash)
    }

    pub fn old_prefix(&self) -> String {
        format!("{BUILDPATH}/{}", self.rel_prefix())
    }
}

/// A binary package: its node, the other nodes of its DAG (compilers, dependencies), and its
/// files relative to its prefix (`(path, bytes, mode)`), of which `text` are listed for text
/// relocation.
pub struct Package {
    pub node: Node,
    pub dag: Vec<Node>,
    pub files: Vec<(String, Vec<u8>, u32)>,
    pub text: Vec<String>,
}

fn spec_json(nodes: &[&Node]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "spec": {"_meta": {"version": 5}, "nodes": nodes.iter().map(|n| n.json()).collect::<Vec<_>>()}
    }))
    .unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut e, bytes).unwrap();
    e.finish().unwrap()
}

/// The install tarball Spack would push for `p`.
fn tarball(p: &Package) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, path: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(
            &mut h,
            format!("{}/", path.trim_start_matches('/')),
            std::io::empty(),
        )
        .unwrap();
    };
    let prefix = p.node.old_prefix();
    let mut acc = String::new();
    for c in prefix.trim_start_matches('/').split('/') {
        acc.push('/');
        acc.push_str(c);
        dir(&mut b, &acc);
    }
    let buildinfo = json!({
        "sbang_install_path": format!("{STORE}/bin/sbang"),
        "buildpath": BUILDPATH,
        "relative_prefix": p.node.rel_prefix(),
        "hardlinks_deduped": true,
        "hash_to_prefix": {p.node.hash.clone(): prefix.clone()},
        "relocate_binaries": [],
        "relocate_links": [],
        "relocate_textfiles": p.text,
    });
    let mut nodes = vec![&p.node];
    nodes.extend(p.dag.iter());
    let mut files: Vec<(String, Vec<u8>, u32)> = vec![
        (
            ".spack/binary_distribution".into(),
            serde_json::to_vec(&buildinfo).unwrap(),
            0o644,
        ),
        (".spack/spec.json".into(), spec_json(&nodes), 0o644),
    ];
    files.extend(p.files.iter().cloned());
    let mut made = std::collections::BTreeSet::new();
    for (rel, bytes, mode) in &files {
        let parts: Vec<&str> = rel.split('/').collect();
        for i in 1..parts.len() {
            let d = format!("{prefix}/{}", parts[..i].join("/"));
            if made.insert(d.clone()) {
                dir(&mut b, &d);
            }
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(*mode);
        h.set_size(bytes.len() as u64);
        b.append_data(
            &mut h,
            format!("{}/{rel}", prefix.trim_start_matches('/')),
            bytes.as_slice(),
        )
        .unwrap();
    }
    gzip(&b.into_inner().unwrap())
}

fn put_blob(root: &Path, bytes: &[u8], media: &str, compression: &str) -> BlobRecord {
    let rec = BlobRecord::for_bytes(bytes, media, compression);
    let p = root.join(rec.key().unwrap());
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
    rec
}

/// Writes a buildcache holding `packages` at `root`, spec manifests clearsigned with the
/// fixture key.
pub fn write_cache(root: &Path, packages: &[Package]) {
    let key = SigningKey::load(
        &std::fs::read(fixtures().join("keys/demo-signer.sec.asc")).unwrap(),
        None,
        None,
    )
    .unwrap();
    let mut published = Vec::new();
    for p in packages {
        let tar = put_blob(root, &tarball(p), layout::TARBALL_MEDIA_TYPE, "gzip");
        let mut nodes = vec![&p.node];
        nodes.extend(p.dag.iter());
        let spec = serde_json::to_vec(&json!({
            "spec": {"_meta": {"version": 5}, "nodes": nodes.iter().map(|n| n.json()).collect::<Vec<_>>()},
            "buildcache_layout_version": 2
        }))
        .unwrap();
        let spec_rec = put_blob(root, &gzip(&spec), layout::SPEC_MEDIA_TYPE, "gzip");
        let manifest = Manifest::new(vec![tar, spec_rec]).to_spack_json();
        let id = layout::SpecId {
            name: p.node.name.clone(),
            version: p.node.version.clone(),
            hash: p.node.hash.clone(),
        };
        let mp = root.join(id.manifest_key());
        std::fs::create_dir_all(mp.parent().unwrap()).unwrap();
        std::fs::write(mp, key.clearsign(&manifest).unwrap()).unwrap();
        published.push(
            nodes
                .iter()
                .map(|n| {
                    SpecNode::from_raw(
                        serde_json::value::RawValue::from_string(n.json().to_string()).unwrap(),
                    )
                    .unwrap()
                })
                .collect::<Vec<_>>(),
        );
    }
    let mut index = Index::new();
    index.merge_published(&published).unwrap();
    let db = put_blob(root, &index.to_json(), layout::INDEX_MEDIA_TYPE, "none");
    let ip = root.join(layout::INDEX_MANIFEST);
    std::fs::create_dir_all(ip.parent().unwrap()).unwrap();
    std::fs::write(ip, Manifest::new(vec![db]).to_spack_json()).unwrap();
    std::fs::write(root.join(layout::LAYOUT_JSON), layout::LAYOUT_JSON_BYTES).unwrap();
}
