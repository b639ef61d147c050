//! The engine's unit tests (through [`publish`] only).

use anyhow::Result;
use futures::future::BoxFuture;

use super::*;
use crate::buildcache::storage::{
    Capabilities, Existing, FileBody, Object, ObjectMeta, PutOptions, WriteMode,
};
use crate::s3::progress::ProgressMode;

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/spack-v3");

/// A directory that vouches for its objects' SHA-256 the way S3 does for single-part
/// objects with a stored checksum (`lookup`). A stand-in: the S3 servers the tests
/// run (moto) keep no checksums, so this path is otherwise exercised only by the bench.
#[derive(Debug)]
struct Vouching(LocalDir, std::sync::Mutex<Vec<String>>);

impl Vouching {
    fn new(dir: &std::path::Path) -> Self {
        Vouching(LocalDir::new(dir), Default::default())
    }

    /// The prefixes listed since the last call.
    fn listed(&self) -> Vec<String> {
        std::mem::take(&mut *self.1.lock().unwrap())
    }
}

impl Storage for Vouching {
    fn url(&self) -> String {
        self.0.url()
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    fn write_mode<'a>(&'a self) -> BoxFuture<'a, Result<WriteMode>> {
        self.0.write_mode()
    }
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Object>>> {
        self.0.get(key)
    }
    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectMeta>>> {
        self.0.head(key)
    }
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        opts: PutOptions,
    ) -> BoxFuture<'a, Result<ObjectMeta>> {
        self.0.put(key, bytes, opts)
    }
    fn put_file<'a>(
        &'a self,
        key: &'a str,
        file: &'a FileBody,
        opts: PutOptions,
    ) -> BoxFuture<'a, Result<ObjectMeta>> {
        self.0.put_file(key, file, opts)
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        self.0.delete(key)
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectMeta>>> {
        self.1.lock().unwrap().push(prefix.to_owned());
        self.0.list(prefix)
    }
    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Existing>>> {
        Box::pin(async move {
            Ok(self.0.digest(key).await?.map(|(d, size)| Existing {
                size,
                sha256: Some(d),
                ..Existing::default()
            }))
        })
    }
}

fn copy(from: &std::path::Path, to: &std::path::Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(from).unwrap();
        if e.file_type().is_dir() {
            std::fs::create_dir_all(to.join(rel)).unwrap();
        } else {
            std::fs::copy(e.path(), to.join(rel)).unwrap();
        }
    }
}

fn flip_a_byte(path: &std::path::Path) {
    let mut b = std::fs::read(path).unwrap();
    b[100] ^= 0xff;
    std::fs::write(path, b).unwrap();
}

/// The largest blob of a buildcache directory (a tarball), relative to it.
fn largest_blob(root: &std::path::Path) -> String {
    walkdir::WalkDir::new(root.join("blobs"))
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .max_by_key(|e| e.metadata().unwrap().len())
        .map(|e| e.path().strip_prefix(root).unwrap().display().to_string())
        .unwrap()
}

/// The unsigned fixture copied to `src`, to publish to an empty vouching `dst`.
struct Fixture {
    _dir: tempfile::TempDir,
    runner: Runner,
    src: std::path::PathBuf,
    dst: std::path::PathBuf,
    source: LocalDir,
    dest: Vouching,
    opts: PublishOptions,
}

impl Fixture {
    fn new() -> Self {
        let runner = Runner::from_vars([("NO_COLOR", "1")]).with_sink(Box::new(std::io::sink()));
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        copy(std::path::Path::new(&format!("{FIX}/unsigned")), &src);
        Fixture {
            runner,
            source: LocalDir::new(&src),
            dest: Vouching::new(&dst),
            opts: PublishOptions {
                allow_unsigned: true,
                progress: ProgressMode::Quiet,
                ..PublishOptions::default()
            },
            _dir: dir,
            src,
            dst,
        }
    }
}

#[tokio::test]
async fn blobs_are_listed_only_when_a_manifest_is_missing() {
    let f = Fixture::new();
    let (runner, source, dest, opts) = (&f.runner, &f.source, &f.dest, &f.opts);
    let dst = f.dst.clone();
    // An empty destination: every manifest is missing, so the blobs are listed (and none
    // is looked up one by one).
    let first = publish(runner, source, dest, None, opts).await.unwrap();
    assert!(first.blobs_uploaded > 0);
    assert_eq!(dest.listed(), ["v3/", "blobs/"]);

    // A re-run: every manifest is there, so its blobs are looked up, not listed.
    let again = publish(runner, source, dest, None, opts).await.unwrap();
    assert_eq!(again.objects_uploaded, 0, "{:?}", again.objects);
    assert_eq!(dest.listed(), ["v3/"]);

    // A blob deleted behind a present manifest is still found missing (by its lookup)
    // and uploaded again.
    let blob = largest_blob(&dst);
    std::fs::remove_file(dst.join(&blob)).unwrap();
    let healed = publish(runner, source, dest, None, opts).await.unwrap();
    assert_eq!(dest.listed(), ["v3/"]);
    assert!(
        healed
            .objects
            .iter()
            .any(|o| o.key == blob && o.change == Change::New),
        "{:?}",
        healed.objects
    );
    assert!(dst.join(&blob).is_file());

    // A missing manifest: the blobs are listed again, and only the manifest is written.
    let manifest = walkdir::WalkDir::new(dst.join("v3/manifests/spec"))
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .find(|p| p.is_file())
        .unwrap();
    std::fs::remove_file(&manifest).unwrap();
    let restored = publish(runner, source, dest, None, opts).await.unwrap();
    assert_eq!(dest.listed(), ["v3/", "blobs/"]);
    assert_eq!(restored.blobs_uploaded, 0, "{:?}", restored.objects);
    assert!(manifest.is_file());
}

#[tokio::test]
async fn what_the_destination_vouches_for_is_kept_and_anything_else_is_replaced() {
    let f = Fixture::new();
    let (runner, source, dest, opts) = (&f.runner, &f.source, &f.dest, &f.opts);
    let (src, dst) = (f.src.clone(), f.dst.clone());
    let first = publish(runner, source, dest, None, opts).await.unwrap();
    assert!(first.blobs_uploaded > 0);
    let blob = largest_blob(&dst);
    let good = std::fs::read(dst.join(&blob)).unwrap();

    // A re-run: nothing is written.
    let again = publish(runner, source, dest, None, opts).await.unwrap();
    assert_eq!(again.objects_uploaded, 0, "{:?}", again.objects);

    // A bucket writer puts other bytes of the same size under the blob's key: the store
    // vouches for *their* digest, which is not the recorded one, so the blob is replaced.
    flip_a_byte(&dst.join(&blob));
    let fixed = publish(runner, source, dest, None, opts).await.unwrap();
    assert!(
        fixed
            .objects
            .iter()
            .any(|o| o.key == blob && o.change == Change::Update),
        "{:?}",
        fixed.objects
    );
    assert_eq!(std::fs::read(dst.join(&blob)).unwrap(), good);

    // A source blob whose bytes the destination already vouches for is not read: nothing
    // of it would be published (the key names its digest). A corrupt one is not noticed...
    flip_a_byte(&src.join(&blob));
    let kept = publish(runner, source, dest, None, opts).await.unwrap();
    assert_eq!(kept.objects_uploaded, 0, "{:?}", kept.objects);
    assert_eq!(std::fs::read(dst.join(&blob)).unwrap(), good);
    // ...until it would be uploaded: then it is hashed and refused, and nothing is written.
    std::fs::remove_file(dst.join(&blob)).unwrap();
    let e = publish(runner, source, dest, None, opts).await.unwrap_err();
    assert!(format!("{e:#}").contains("has sha256"), "{e:#}");
    assert!(!dst.join(&blob).exists(), "a corrupt blob was published");
}
