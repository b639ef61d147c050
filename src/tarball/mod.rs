//! Relocatable Slurm tarballs: a build's view, Lmod modules and install data packed into one
//! reproducible `slurm-{slurm}-gcc{gcc}-software.tar.gz` that runs from wherever it is
//! unpacked, without `LD_LIBRARY_PATH`.
//!
//! Layout of the archive (entries in this order, each part depth first with names sorted):
//!
//! - `view/`: the merged Spack view, minus what a runtime does not need ([`view`]). Every ELF
//!   file's RPATH/RUNPATH is rewritten in place to `$ORIGIN`-relative entries, and text files
//!   name the view through the placeholder `@SLURM_FACTORY_PREFIX@` ([`relocate`]).
//! - `modules/`: `slurm/<v>.lua`, plus `openmpi/<v>.lua` when the view has Open MPI
//!   ([`modulefile`]).
//! - `data/`: `install.sh` (resolves the placeholder; `sh <prefix>/data/install.sh`),
//!   `relocate-text.txt` (the files it rewrites, relative to the archive root), the
//!   `slurm.conf`/`cgroup.conf` templates of the release ([`install_script`]), the build's
//!   `spack.lock` when given, and last `MANIFEST`: the versions, toolchain, Spack specs and
//!   every other file's SHA-256. It comes last because it describes the relocated bytes.
//!
//! Reproducible: owner/group 0/root, modes 0755/0644, every mtime `SOURCE_DATE_EPOCH`, fixed
//! order, and gzip whose bytes do not depend on the thread count ([`archive`]). The archive is
//! written to a temporary file in the output directory and renamed into place only when
//! complete, so a failure leaves nothing behind.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::catalog::{GccVersion, PlatformName, SlurmVersion};

pub(crate) mod archive;
pub(crate) mod install_script;
pub(crate) mod modulefile;
pub mod prefixes;
pub(crate) mod publish;
pub(crate) mod relocate;
pub(crate) mod spack_build;
pub(crate) mod view;

pub use relocate::PLACEHOLDER;

/// The Slurm commands of which the view must have at least one in `bin/`.
const SLURM_COMMANDS: &[&str] = &["sinfo", "srun", "scontrol", "sbatch", "squeue"];

/// The file name of the tarball of `slurm` built with `gcc`, on `platform` when it is known
/// (`slurm-25.11-gcc13.4.0-el8-software.tar.gz`, as the catalog's keys name it; without a
/// platform `slurm-25.11-gcc13.4.0-software.tar.gz`). A tarball published to a full key takes
/// that key's name instead ([`PackOptions::name`]).
pub fn file_name(
    slurm: &SlurmVersion,
    gcc: &GccVersion,
    platform: Option<&PlatformName>,
) -> String {
    match platform {
        Some(p) => format!("slurm-{slurm}-gcc{gcc}-{p}-software.tar.gz"),
        None => format!("slurm-{slurm}-gcc{gcc}-software.tar.gz"),
    }
}

/// What to pack.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// The merged Spack view.
    pub view: PathBuf,
    /// Spack's generated modules directory, if any (read for package versions only; the
    /// tarball ships its own relocatable modulefiles).
    pub modules: Option<PathBuf>,
    /// The build's `spack.lock`, if known (copied into `data/`; its specs go to the manifest).
    pub spack_lock: Option<PathBuf>,
    /// The install tree root the build used (as configured, without padding).
    pub install_root: String,
    /// Where the view was generated, if known (as configured; a symlink is resolved too).
    pub view_root: Option<String>,
    /// The program `data/install.sh` runs to rewrite build prefixes compiled into binaries
    /// (`<it> relocate <root>`; `tarball-publish` passes itself). Needed only when the view
    /// has such binaries; the tarball carries it as `data/bin/tarball-publish`.
    pub relocator: Option<PathBuf>,
    /// The Slurm release.
    pub slurm: SlurmVersion,
    /// The GCC toolchain.
    pub gcc: GccVersion,
    /// The directory the tarball is written to.
    pub output: PathBuf,
    /// The tarball's file name there (default: [`file_name`] without a platform). It is the
    /// name `SHA256SUMS` and the signature give it, so it is the name it is published under.
    pub name: Option<String>,
    /// Every timestamp in the archive.
    pub source_date_epoch: u64,
    /// gzip level (6, as gzip and pigz default to).
    pub level: u32,
    /// Compression threads (all cores when `None`).
    pub threads: Option<usize>,
}

/// What [`pack`] wrote.
#[derive(Debug, Clone)]
pub struct Packed {
    /// The tarball.
    pub path: PathBuf,
    /// Its file name.
    pub file_name: String,
    /// SHA-256 of the tarball, hex.
    pub sha256: String,
    /// Size of the tarball in bytes.
    pub size: u64,
    /// Size of the uncompressed tar stream.
    pub uncompressed: u64,
    /// Files (not directories or links) in `view/`.
    pub view_files: usize,
    /// ELF files whose RPATH/RUNPATH was rewritten.
    pub elf_relocated: usize,
    /// Text files that got the placeholder.
    pub text_relocated: usize,
    /// Build-tree paths left in text files because they name no package (a warning).
    pub text_unmapped: usize,
    /// Binaries whose compiled-in build prefixes `data/install.sh` rewrites where the tarball
    /// is unpacked ([`prefixes`]).
    pub binary_relocated: usize,
    /// Binaries with a build-tree path that names no package prefix or the view (left as they
    /// are: a warning).
    pub binary_with_build_path: Vec<String>,
    /// Files and directories left out of the view, by reason.
    pub dropped: BTreeMap<&'static str, usize>,
    /// Modulefiles shipped (paths under `modules/`).
    pub modulefiles: Vec<String>,
    /// The glibc floor of the packed files (recorded as `data/glibc-floor.txt`).
    pub floor: crate::glibc_floor::Floor,
}

/// Packs the view into a reproducible, relocatable tarball in `opts.output` (see the module
/// documentation). Checks every input before writing anything.
pub fn pack(opts: &PackOptions) -> Result<Packed> {
    let (view_dir, view_roots) = view_dir_and_roots(opts)?;
    let paths = relocate::BuildPaths::new(&opts.install_root, &view_roots)?;
    let absolute_link = |t: &str| paths.map(t).map(|(_, rel)| rel);
    let selection = view::select(&view_dir, &absolute_link)?;
    let lock = match &opts.spack_lock {
        Some(p) => Some(spack_build::Lock::read(p)?),
        None => None,
    };
    let modulefiles = modulefiles_for(opts, &selection, lock.as_ref())?;
    let lock_bytes = match &opts.spack_lock {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?),
        None => None,
    };

    let output = Output::prepare(&opts.output)?;
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| file_name(&opts.slurm, &opts.gcc, None));
    if name.contains(['/', '\\']) || name.starts_with('.') || !name.ends_with(".tar.gz") {
        bail!("{name:?} is not a tarball file name (no path, no leading dot, ending in .tar.gz)");
    }
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempfile_in(&opts.output)
        .with_context(|| {
            format!(
                "cannot create a file in {}; pass a writable --output directory",
                opts.output.display()
            )
        })?;
    let file = tmp
        .as_file()
        .try_clone()
        .context("cannot reopen the temporary tarball")?;
    let threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let hashing = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let gz = archive::ParGzWriter::new(hashing, opts.level, threads)?;
    let mut tar = archive::TarWriter::new(
        gz,
        archive::Normalised {
            mtime: opts.source_date_epoch,
        },
    );

    let mut packed = Packed {
        path: opts.output.join(&name),
        file_name: name.clone(),
        sha256: String::new(),
        size: 0,
        uncompressed: 0,
        view_files: 0,
        elf_relocated: 0,
        text_relocated: 0,
        text_unmapped: 0,
        binary_relocated: 0,
        binary_with_build_path: Vec::new(),
        dropped: selection.dropped.clone(),
        modulefiles: modulefiles.iter().map(|m| m.path.clone()).collect(),
        floor: crate::glibc_floor::Floor::default(),
    };
    let mut collected = Collected::default();

    pack_view(
        &mut tar,
        &selection,
        &view_dir,
        &paths,
        &mut packed,
        &mut collected,
    )?;
    let Collected {
        mut manifest,
        mut relocate_list,
        mut found,
    } = collected;

    tar.dir("modules")?;
    let mut dirs_done = Vec::new();
    for m in &modulefiles {
        let dir = m.path.split('/').next().unwrap_or_default().to_owned();
        if !dirs_done.contains(&dir) {
            tar.dir(&format!("modules/{dir}"))?;
            dirs_done.push(dir);
        }
        let arc = format!("modules/{}", m.path);
        manifest.file(&arc, false, m.text.as_bytes());
        tar.file(&arc, false, m.text.as_bytes())?;
    }

    tar.dir("data")?;
    relocate_list.push("data/slurm.conf".to_owned());
    packed.binary_relocated = found.binaries.len();
    packed.binary_with_build_path = std::mem::take(&mut found.unmapped);
    if !found.binaries.is_empty() {
        tar.dir("data/bin")?;
    }
    let data = data_files(opts, &packed.floor, &found, &relocate_list, lock_bytes)?;
    for (arc, exec, bytes) in &data {
        manifest.file(arc, *exec, bytes);
        tar.file(arc, *exec, bytes)?;
    }
    let text = manifest.render(opts, &paths, lock.as_ref());
    tar.file("data/MANIFEST", false, text.as_bytes())?;

    let gz = tar.finish()?;
    let (hashing, uncompressed) = gz.finish()?;
    let (buf, sha, size) = hashing.finish();
    buf.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .context("cannot write the tarball")?;
    packed.sha256 = sha;
    packed.size = size;
    packed.uncompressed = uncompressed;
    tmp.persist(&packed.path)
        .with_context(|| format!("cannot move the tarball to {}", packed.path.display()))?;
    output.keep();
    Ok(packed)
}

/// What packing the view collects for the data files: the manifest's entries, the text files
/// that got the placeholder, and the binaries with compiled-in build prefixes.
#[derive(Default)]
struct Collected {
    manifest: Manifest,
    relocate_list: Vec<String>,
    found: prefixes::Found,
}

/// The directory to walk (Spack 1.0 writes the view root as a symlink to `._view/<hash>`: what
/// it points at) and every name of the view that relocation must map (`view_root`, the view as
/// given, and what their links resolve to).
fn view_dir_and_roots(opts: &PackOptions) -> Result<(PathBuf, Vec<String>)> {
    let is_link = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
    let view_dir = if is_link(&opts.view) {
        std::fs::canonicalize(&opts.view).with_context(|| {
            format!(
                "the view {} is a symlink that does not resolve; pass the view of a finished build",
                opts.view.display()
            )
        })?
    } else {
        opts.view.clone()
    };
    let mut view_roots: Vec<String> = opts.view_root.iter().cloned().collect();
    // The view as given is a view root too: without env/spack.yaml nothing else names it, and
    // an RPATH or a text file pointing into it must become `$ORIGIN`-relative (or the
    // placeholder), not be dropped. Too short a path to be told from ordinary text is left out.
    if let Ok(abs) = std::path::absolute(&opts.view)
        && let Some(a) = abs.to_str()
    {
        let a = a.trim_end_matches('/');
        if a.len() >= 8 && !a.contains(['\n', '\0', ':']) && !view_roots.iter().any(|v| v == a) {
            view_roots.push(a.to_owned());
        }
    }
    for p in std::iter::once(opts.view.as_path()).chain(opts.view_root.as_deref().map(Path::new)) {
        if is_link(p)
            && let Ok(r) = std::fs::canonicalize(p)
            && let Some(r) = r.to_str()
            && !view_roots.iter().any(|v| v == r)
        {
            view_roots.push(r.to_owned());
        }
    }
    Ok((view_dir, view_roots))
}

/// The modulefiles the view needs: Slurm's (the view must have Slurm commands) and, with Open
/// MPI in the view, one for it (its version from the lock or Spack's modules).
fn modulefiles_for(
    opts: &PackOptions,
    selection: &view::Selection,
    lock: Option<&spack_build::Lock>,
) -> Result<Vec<modulefile::Modulefile>> {
    let has_slurm = SLURM_COMMANDS.iter().any(|c| {
        selection
            .entries
            .iter()
            .any(|e| e.path() == format!("bin/{c}") && !matches!(e, view::Entry::Dir(_)))
    });
    if !has_slurm {
        bail!(
            "the view {} has no Slurm commands (none of bin/{}); pass the view of a Slurm build (build-slurm's view_path)",
            opts.view.display(),
            SLURM_COMMANDS.join(", bin/")
        );
    }
    let mut modulefiles = vec![modulefile::slurm(&opts.slurm, &opts.gcc)];
    let has_mpi = selection
        .entries
        .iter()
        .any(|e| e.path() == "bin/mpirun" || e.path() == "bin/mpiexec");
    if has_mpi {
        let version = lock.and_then(|l| l.version_of("openmpi")).or_else(|| {
            opts.modules
                .as_deref()
                .and_then(|m| spack_build::module_version(m, "openmpi"))
        });
        match version {
            Some(v) => modulefiles.push(modulefile::openmpi(&v, &opts.gcc)),
            None => bail!(
                "the view has Open MPI (bin/mpirun) but its version is unknown: pass --spack-lock or --modules (Spack's generated modules) so the openmpi module can be named"
            ),
        }
    }
    Ok(modulefiles)
}

/// Writes the view's entries under `view/`: ELF files with relocatable RPATHs, text files with
/// build paths replaced by the placeholder, binaries with compiled-in build prefixes listed for
/// `data/install.sh`; each file's floor is added to `packed`.
fn pack_view<W: Write>(
    tar: &mut archive::TarWriter<W>,
    selection: &view::Selection,
    view_dir: &Path,
    paths: &relocate::BuildPaths,
    packed: &mut Packed,
    collected: &mut Collected,
) -> Result<()> {
    let finders: Vec<memchr::memmem::Finder<'_>> = paths
        .needles()
        .iter()
        .map(|n| memchr::memmem::Finder::new(n.as_bytes()).into_owned())
        .collect();
    tar.dir("view")?;
    for entry in &selection.entries {
        let arc = format!("view/{}", entry.path());
        match entry {
            view::Entry::Dir(_) => tar.dir(&arc)?,
            view::Entry::Symlink { target, .. } => {
                collected.manifest.link(&arc, target);
                tar.symlink(&arc, target)?;
            }
            view::Entry::File { path, executable } => {
                let disk = view_dir.join(path);
                let mut bytes = std::fs::read(&disk)
                    .with_context(|| format!("cannot read {}", disk.display()))?;
                packed.view_files += 1;
                if relocate::is_elf(&bytes) {
                    packed.floor.add(&disk, Path::new(&arc), &bytes)?;
                    if relocate::relocate_elf(&mut bytes, path, paths)
                        .with_context(|| format!("cannot make {} relocatable", disk.display()))?
                    {
                        packed.elf_relocated += 1;
                    }
                    if finders.iter().any(|f| f.find(&bytes).is_some()) {
                        collected.found.scan(&arc, &bytes, paths);
                    }
                } else if finders.iter().any(|f| f.find(&bytes).is_some()) {
                    if memchr::memchr(0, &bytes).is_some() {
                        collected.found.scan(&arc, &bytes, paths);
                    } else {
                        let (new, unmapped) = paths.rewrite_text(&bytes);
                        packed.text_unmapped += unmapped;
                        if let Some(new) = new {
                            bytes = new;
                            packed.text_relocated += 1;
                            collected.relocate_list.push(arc.clone());
                        }
                    }
                }
                collected.manifest.file(&arc, *executable, &bytes);
                tar.file(&arc, *executable, &bytes)?;
            }
        }
    }

    Ok(())
}

/// The files under `data/`, in archive order: the relocator and its lists when binaries name
/// the build tree, the cluster configuration, the glibc floor, the install script, the text
/// relocation list and the build's `spack.lock`.
fn data_files(
    opts: &PackOptions,
    floor: &crate::glibc_floor::Floor,
    found: &prefixes::Found,
    relocate_list: &[String],
    lock_bytes: Option<Vec<u8>>,
) -> Result<Vec<(&'static str, bool, Vec<u8>)>> {
    let slurm_conf = install_script::slurm_conf(&opts.slurm);
    let cgroup_conf = install_script::cgroup_conf(&opts.slurm);
    let mut data: Vec<(&'static str, bool, Vec<u8>)> = Vec::new();
    if !found.binaries.is_empty() {
        let Some(relocator) = &opts.relocator else {
            bail!(
                "{} binaries of the view name the build tree (e.g. {}) and must be rewritten where the tarball is unpacked, but no relocator was given to carry in the tarball",
                found.binaries.len(),
                found.binaries[0]
            );
        };
        let exe = std::fs::read(relocator)
            .with_context(|| format!("cannot read the relocator {}", relocator.display()))?;
        data.push((prefixes::RELOCATOR, true, exe));
        data.push((
            prefixes::PREFIX_LIST,
            false,
            found
                .prefixes
                .iter()
                .map(|p| format!("{p}\n"))
                .collect::<String>()
                .into_bytes(),
        ));
    }
    data.extend([
        ("data/cgroup.conf", false, cgroup_conf.into_bytes()),
        ("data/glibc-floor.txt", false, floor.to_text().into_bytes()),
        (
            "data/install.sh",
            true,
            install_script::INSTALL_SH.as_bytes().to_vec(),
        ),
        (
            "data/relocate-text.txt",
            false,
            lines(relocate_list).into_bytes(),
        ),
        ("data/slurm.conf", false, slurm_conf.into_bytes()),
    ]);
    if !found.binaries.is_empty() {
        // Before relocate-text.txt: the archive's entries stay sorted.
        let at = data.len() - 2;
        data.insert(
            at,
            (
                prefixes::BINARY_LIST,
                false,
                lines(&found.binaries).into_bytes(),
            ),
        );
    }
    if let Some(b) = lock_bytes {
        data.push(("data/spack.lock", false, b));
    }
    Ok(data)
}

fn lines(items: &[String]) -> String {
    items.iter().map(|l| format!("{l}\n")).collect()
}

/// The output directory; created when missing and removed again if packing fails.
struct Output {
    created: Option<PathBuf>,
}

impl Output {
    fn prepare(dir: &Path) -> Result<Output> {
        if dir.is_dir() {
            return Ok(Output { created: None });
        }
        if dir.exists() {
            bail!("--output {} exists and is not a directory", dir.display());
        }
        std::fs::create_dir(dir).with_context(|| {
            format!(
                "cannot create the output directory {}; its parent must exist and be writable",
                dir.display()
            )
        })?;
        Ok(Output {
            created: Some(dir.to_owned()),
        })
    }

    fn keep(mut self) {
        self.created = None;
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(d) = self.created.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A writer that hashes and counts what passes through.
struct HashingWriter<W: Write> {
    inner: W,
    hash: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hash: Sha256::new(),
            size: 0,
        }
    }

    fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hash.finalize()), self.size)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `data/MANIFEST`: line-based, one record per line, paths never contain line breaks.
#[derive(Debug, Default)]
struct Manifest {
    records: Vec<String>,
}

impl Manifest {
    fn file(&mut self, path: &str, executable: bool, bytes: &[u8]) {
        let mode = if executable { "0755" } else { "0644" };
        self.records.push(format!(
            "file {} {mode} {path}",
            hex::encode(Sha256::digest(bytes))
        ));
    }

    fn link(&mut self, path: &str, target: &str) {
        self.records.push(format!("link {path} -> {target}"));
    }

    fn render(
        &self,
        opts: &PackOptions,
        paths: &relocate::BuildPaths,
        lock: Option<&spack_build::Lock>,
    ) -> String {
        let mut out = String::from("# slurm-factory tarball manifest, format 1\n");
        out.push_str(&format!("slurm {}\n", opts.slurm));
        out.push_str(&format!("toolchain gcc@{}\n", opts.gcc));
        out.push_str(&format!("source-date-epoch {}\n", opts.source_date_epoch));
        out.push_str(&format!("placeholder {PLACEHOLDER}\n"));
        out.push_str(&format!("build-install-root {}\n", paths.install_root()));
        match lock {
            Some(l) => {
                out.push_str("spack-lock data/spack.lock\n");
                for s in l.specs() {
                    out.push_str(&format!("spec {s}\n"));
                }
            }
            None => out.push_str("spack-lock none (not given to tarball-publish)\n"),
        }
        for r in &self.records {
            out.push_str(r);
            out.push('\n');
        }
        out
    }
}
