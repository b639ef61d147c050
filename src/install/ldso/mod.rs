//! The library check in-process: which file each `DT_NEEDED` of an ELF file resolves to, found
//! the way glibc's dynamic loader finds it (`elf/dl-load.c`, `_dl_map_object`), for every object
//! loaded, transitively, without running `ldd` or the loader.
//!
//! For each needed name, in this order (glibc 2.28–2.41):
//! 1. a name with a `/` is a path (relative to the working directory), after DST expansion;
//! 2. an object already loaded under that name, or whose `DT_SONAME` it is (the loader itself is
//!    loaded first, so `ld-linux-x86-64.so.2` is never searched for);
//! 3. unless the requesting object has `DT_RUNPATH`: the `DT_RPATH` of the requesting object,
//!    then of the object that loaded it, and on up to the main program (an object's `DT_RPATH`
//!    counts only when it has no `DT_RUNPATH`);
//! 4. `LD_LIBRARY_PATH` (split at `:` and `;`, an empty element is the working directory), when
//!    the caller passes one;
//! 5. the requesting object's `DT_RUNPATH`;
//! 6. unless it has `DF_1_NODEFLIB`: `/etc/ld.so.cache` ([`cache`]), then the default directories
//!    of the host's glibc for the ELF class and machine (`/lib/x86_64-linux-gnu`, `/usr/lib/…`
//!    on Debian's multiarch layout; `/lib64`, `/usr/lib64` on Red Hat's).
//!
//! In every directory the `glibc-hwcaps/<level>` subdirectories this CPU supports are tried first
//! (glibc ≥ 2.33). `$ORIGIN` is the directory of the object as it was found (not following
//! symlinks), `$LIB` the host's library directory name (`lib/x86_64-linux-gnu` or `lib64`),
//! `$PLATFORM` the loader's platform string (`haswell` on an AVX2 x86-64 under glibc < 2.37, else
//! the machine). An element with a DST that has no value is dropped. A candidate of another ELF
//! class or machine is passed over, as the loader passes over it.
//!
//! Not modelled (none is used by what we install): the legacy hwcap subdirectories that glibc
//! < 2.37 also searches (`tls/`, `haswell/`, `x86_64/`), `LD_PRELOAD` and `/etc/ld.so.preload`,
//! and the restrictions of secure (setuid) mode.

pub mod cache;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::elf::ElfFile;
use cache::Cache;

const EM_386: u16 = 3;
const EM_PPC64: u16 = 21;
const EM_S390: u16 = 22;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const EM_RISCV: u16 = 243;

/// What kind of ELF object the loader accepts: class, byte order and machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Abi {
    /// `ELFCLASS64`.
    pub is_64: bool,
    /// `ELFDATA2LSB`.
    pub little_endian: bool,
    /// `e_machine`.
    pub machine: u16,
}

impl Abi {
    fn of(e: &ElfFile) -> Self {
        Abi {
            is_64: e.is_64,
            little_endian: e.little_endian,
            machine: e.machine,
        }
    }

    /// The `ld.so.cache` entry flags the loader of this ABI accepts (`_dl_cache_check_flags`).
    fn cache_flags(self) -> Vec<i32> {
        const LIBC6: i32 = 0x0003;
        match (self.machine, self.is_64) {
            (EM_X86_64, true) => vec![LIBC6 | 0x0300],
            (EM_X86_64, false) => vec![LIBC6 | 0x0800],
            (EM_AARCH64, true) => vec![LIBC6 | 0x0a00],
            (EM_PPC64, true) => vec![LIBC6 | 0x0500],
            (EM_S390, true) => vec![LIBC6 | 0x0400],
            (EM_RISCV, true) => vec![LIBC6 | 0x1000],
            (EM_386, false) => vec![LIBC6],
            _ => vec![1, LIBC6],
        }
    }

    /// The GNU triplet of Debian's multiarch directories.
    fn multiarch(self) -> Option<&'static str> {
        Some(match (self.machine, self.is_64) {
            (EM_X86_64, true) => "x86_64-linux-gnu",
            (EM_X86_64, false) => "x86_64-linux-gnux32",
            (EM_386, false) => "i386-linux-gnu",
            (EM_AARCH64, true) => "aarch64-linux-gnu",
            (EM_PPC64, true) => "powerpc64le-linux-gnu",
            (EM_S390, true) => "s390x-linux-gnu",
            (EM_RISCV, true) => "riscv64-linux-gnu",
            _ => return None,
        })
    }

    /// The loader `ldd` runs for a shared library of this ABI (glibc's `RTLDLIST`).
    fn default_interpreter(self) -> Option<&'static str> {
        Some(match (self.machine, self.is_64) {
            (EM_X86_64, true) => "/lib64/ld-linux-x86-64.so.2",
            (EM_X86_64, false) => "/libx32/ld-linux-x32.so.2",
            (EM_386, false) => "/lib/ld-linux.so.2",
            (EM_AARCH64, true) => "/lib/ld-linux-aarch64.so.1",
            (EM_PPC64, true) => "/lib64/ld64.so.2",
            (EM_S390, true) => "/lib/ld64.so.1",
            (EM_RISCV, true) => "/lib/ld-linux-riscv64-lp64d.so.1",
            _ => return None,
        })
    }

    /// The machine name `$PLATFORM` falls back to.
    fn machine_name(self) -> &'static str {
        match (self.machine, self.is_64) {
            (EM_X86_64, _) => "x86_64",
            (EM_386, _) => "i686",
            (EM_AARCH64, _) => "aarch64",
            (EM_PPC64, _) => "powerpc64le",
            (EM_S390, _) => "s390x",
            (EM_RISCV, _) => "riscv64",
            _ => "unknown",
        }
    }
}

/// The host's loader configuration for one ABI: where it looks by default and what its DSTs
/// expand to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The default directories, in order.
    pub default_dirs: Vec<PathBuf>,
    /// `$LIB`.
    pub lib: String,
    /// `$PLATFORM`.
    pub platform: String,
    /// The `glibc-hwcaps` subdirectories searched, most preferred first.
    pub hwcaps: Vec<&'static str>,
}

/// The `glibc-hwcaps` levels this x86-64 CPU supports, best first (glibc's
/// `sysdeps/x86/dl-hwcaps-subdirs.c`).
fn x86_64_hwcaps() -> Vec<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let v2 = has!("cmpxchg16b")
            && has!("popcnt")
            && has!("sse3")
            && has!("sse4.1")
            && has!("sse4.2")
            && has!("ssse3");
        let v3 = v2
            && has!("avx")
            && has!("avx2")
            && has!("bmi1")
            && has!("bmi2")
            && has!("f16c")
            && has!("fma")
            && has!("lzcnt")
            && has!("movbe")
            && has!("xsave");
        let v4 = v3
            && has!("avx512f")
            && has!("avx512bw")
            && has!("avx512cd")
            && has!("avx512dq")
            && has!("avx512vl");
        let mut out = Vec::new();
        if v4 {
            out.push("x86-64-v4");
        }
        if v3 {
            out.push("x86-64-v3");
        }
        if v2 {
            out.push("x86-64-v2");
        }
        out
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Vec::new()
    }
}

/// glibc < 2.37 on x86-64 names the platform `haswell` when the CPU has AVX2 and its companions
/// (`sysdeps/x86/cpu-features.c`), which `$PLATFORM` then expands to.
fn x86_64_legacy_platform() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        (has!("avx2")
            && has!("bmi1")
            && has!("bmi2")
            && has!("lzcnt")
            && has!("movbe")
            && has!("popcnt"))
        .then_some("haswell")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// A resolver with the host's configuration: its `ld.so.cache`, its glibc's version and layout,
/// and the `LD_LIBRARY_PATH` given. Parsed ELF files are remembered across calls (by device and
/// inode), so checking many files of one install reads each library once. `Sync`: resolve
/// files from several threads at once.
#[derive(Debug)]
pub struct Loader {
    cache: Option<Cache>,
    cache_error: Option<String>,
    glibc: Option<crate::glibc_floor::Version>,
    ld_library_path: Option<Vec<u8>>,
    cwd: PathBuf,
    parsed: Mutex<HashMap<(u64, u64), Arc<ElfFile>>>,
    layouts: Mutex<HashMap<Abi, Arc<Layout>>>,
}

/// One object the loader would load for a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// The `DT_NEEDED` name it was first asked for by.
    pub name: String,
    /// Where it was found (the path as the loader builds it, `ldd`'s `=>` column), `None` when
    /// it was not found.
    pub path: Option<PathBuf>,
    /// The object whose `DT_NEEDED` asked for it first.
    pub needed_by: PathBuf,
}

/// What the loader would do with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The file checked.
    pub file: PathBuf,
    /// The program interpreter: its `PT_INTERP`, or for a shared library the loader `ldd`
    /// would use once an object needs it (`None` while nothing does).
    pub interpreter: Option<PathBuf>,
    /// Every object loaded besides the file and the interpreter, in load order.
    pub libraries: Vec<Library>,
    /// What would stop the loader outright (a missing interpreter, a malformed ELF file found
    /// by a search, a file that cannot be read).
    pub errors: Vec<String>,
}

impl Resolution {
    /// The libraries that were not found.
    pub fn missing(&self) -> impl Iterator<Item = &Library> {
        self.libraries.iter().filter(|l| l.path.is_none())
    }
    /// Whether everything resolves.
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && self.missing().next().is_none()
    }
}

/// A loaded object during one resolution.
struct Obj {
    path: PathBuf,
    id: (u64, u64),
    names: Vec<Vec<u8>>,
    elf: Arc<ElfFile>,
    loader: Option<usize>,
}

/// A library found: its path and its identity (device, inode).
type Hit = (PathBuf, (u64, u64));

/// What a candidate path turned out to be.
enum Candidate {
    Missing,
    OtherAbi,
    Found((u64, u64)),
    Fatal(String),
}

impl Loader {
    /// The host's loader: `/etc/ld.so.cache` (a damaged one is ignored, as glibc ignores it;
    /// [`Loader::cache_error`] says why), the running glibc's version, and `ld_library_path` as
    /// the user's `LD_LIBRARY_PATH` (`None`: unset).
    pub fn host(ld_library_path: Option<&OsStr>) -> Self {
        let (cache, cache_error) = match Cache::read(Path::new("/etc/ld.so.cache")) {
            Ok(c) => (Some(c), None),
            Err(e) if e.reason.starts_with("cannot open it") => (None, None),
            Err(e) => (None, Some(e.to_string())),
        };
        let glibc = crate::glibc_floor::host_glibc().ok().map(|h| h.version);
        Loader {
            cache_error,
            ..Self::with(cache, glibc, ld_library_path)
        }
    }

    /// A loader with the given cache and glibc version (for tests of other hosts).
    pub fn with(
        cache: Option<Cache>,
        glibc: Option<crate::glibc_floor::Version>,
        ld_library_path: Option<&OsStr>,
    ) -> Self {
        Loader {
            cache,
            cache_error: None,
            glibc,
            ld_library_path: ld_library_path.map(|p| p.as_bytes().to_vec()),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            parsed: Mutex::new(HashMap::new()),
            layouts: Mutex::new(HashMap::new()),
        }
    }

    /// Why `/etc/ld.so.cache` was ignored, when it was damaged.
    pub fn cache_error(&self) -> Option<&str> {
        self.cache_error.as_deref()
    }

    fn glibc_at_least(&self, major: u32, minor: u32) -> bool {
        self.glibc
            .as_ref()
            .is_none_or(|v| v.0.as_slice() >= [major, minor].as_slice())
    }

    /// The host's layout for `abi`: Debian's multiarch when its directory exists and the cache
    /// puts that ABI's `libc.so.6` there, else the upstream default (`/lib64`, `/usr/lib64` for
    /// 64-bit x86-64, ppc64 and s390x; `/lib`, `/usr/lib` otherwise).
    pub fn layout(&self, abi: Abi) -> Arc<Layout> {
        if let Some(l) = self.layouts.lock().expect("poisoned").get(&abi) {
            return l.clone();
        }
        let flags = abi.cache_flags();
        let libc_dir = self
            .cache
            .as_ref()
            .and_then(|c| c.lookup(b"libc.so.6", &flags, &[]))
            .and_then(Path::parent)
            .map(Path::to_owned);
        let multiarch = abi.multiarch().filter(|t| {
            let usr = PathBuf::from("/usr/lib").join(t);
            usr.is_dir()
                && libc_dir
                    .as_deref()
                    .is_none_or(|d| d == Path::new("/lib").join(t) || d == usr)
        });
        let (default_dirs, lib) = match multiarch {
            Some(t) => (
                vec![
                    PathBuf::from("/lib").join(t),
                    PathBuf::from("/usr/lib").join(t),
                    PathBuf::from("/lib"),
                    PathBuf::from("/usr/lib"),
                ],
                format!("lib/{t}"),
            ),
            None if abi.is_64 && matches!(abi.machine, EM_X86_64 | EM_PPC64 | EM_S390) => (
                vec![PathBuf::from("/lib64"), PathBuf::from("/usr/lib64")],
                "lib64".to_owned(),
            ),
            None => (
                vec![PathBuf::from("/lib"), PathBuf::from("/usr/lib")],
                "lib".to_owned(),
            ),
        };
        let x86_64 = abi.machine == EM_X86_64 && abi.is_64;
        let platform = if x86_64 && !self.glibc_at_least(2, 37) {
            x86_64_legacy_platform().unwrap_or("x86_64")
        } else {
            abi.machine_name()
        };
        let hwcaps = if x86_64 && self.glibc_at_least(2, 33) {
            x86_64_hwcaps()
        } else {
            Vec::new()
        };
        let l = Arc::new(Layout {
            default_dirs,
            lib,
            platform: platform.to_owned(),
            hwcaps,
        });
        self.layouts
            .lock()
            .expect("poisoned")
            .insert(abi, l.clone());
        l
    }

    /// Opens `path` the way `open_verify` does: missing, of another ABI, or an ELF file of
    /// `abi` (identified by device and inode).
    fn probe(&self, path: &Path, abi: Abi) -> Candidate {
        use std::io::Read;
        let Ok(mut f) = std::fs::File::open(path) else {
            return Candidate::Missing;
        };
        let Ok(m) = f.metadata() else {
            return Candidate::Missing;
        };
        if !m.is_file() {
            return Candidate::Fatal(format!("{}: not a regular file", path.display()));
        }
        let mut head = [0u8; 20];
        if f.read_exact(&mut head).is_err() || !crate::elf::is_elf(&head) {
            return Candidate::Fatal(format!("{}: invalid ELF header", path.display()));
        }
        let is_64 = head[4] == 2;
        let little_endian = head[5] == 1;
        let machine = if little_endian {
            u16::from_le_bytes([head[18], head[19]])
        } else {
            u16::from_be_bytes([head[18], head[19]])
        };
        if (Abi {
            is_64,
            little_endian,
            machine,
        }) != abi
        {
            return Candidate::OtherAbi;
        }
        Candidate::Found((m.dev(), m.ino()))
    }

    /// The parsed ELF file `path` with identity `id`, read once per loader.
    fn parse(&self, path: &Path, id: (u64, u64)) -> Result<Arc<ElfFile>, String> {
        if let Some(e) = self.parsed.lock().expect("poisoned").get(&id) {
            return Ok(e.clone());
        }
        let e = crate::elf::read(path)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{}: invalid ELF header", path.display()))?;
        let e = Arc::new(e);
        self.parsed.lock().expect("poisoned").insert(id, e.clone());
        Ok(e)
    }

    /// Expands the DSTs of `s` for an object in `origin`; `None` when it names one without a
    /// value (the loader then drops the element).
    fn expand(s: &[u8], origin: &Path, layout: &Layout) -> Option<Vec<u8>> {
        if !s.contains(&b'$') {
            return Some(s.to_vec());
        }
        let mut out = Vec::with_capacity(s.len() + 64);
        let mut i = 0;
        while i < s.len() {
            if s[i] != b'$' {
                out.push(s[i]);
                i += 1;
                continue;
            }
            let rest = &s[i + 1..];
            let mut hit = None;
            for (name, value) in [
                ("ORIGIN", origin.as_os_str().as_bytes()),
                ("PLATFORM", layout.platform.as_bytes()),
                ("LIB", layout.lib.as_bytes()),
            ] {
                let n = name.as_bytes();
                // `$NAME` must end at a character that cannot continue a name; `${NAME}` at `}`.
                let plain = rest.starts_with(n)
                    && rest
                        .get(n.len())
                        .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'));
                let braced = rest.first() == Some(&b'{')
                    && rest[1..].starts_with(n)
                    && rest.get(1 + n.len()) == Some(&b'}');
                if plain {
                    hit = Some((value, n.len()));
                } else if braced {
                    hit = Some((value, n.len() + 2));
                }
                if hit.is_some() {
                    break;
                }
            }
            match hit {
                Some((value, used)) => {
                    if value.is_empty() {
                        return None;
                    }
                    out.extend_from_slice(value);
                    i += 1 + used;
                }
                None => {
                    out.push(b'$');
                    i += 1;
                }
            }
        }
        Some(out)
    }

    /// The directories of a search path string (`DT_RPATH`, `DT_RUNPATH`, `LD_LIBRARY_PATH`),
    /// DST-expanded for an object in `origin`; an empty element is the working directory.
    fn dirs(s: &[u8], seps: &[u8], origin: &Path, layout: &Layout) -> Vec<PathBuf> {
        s.split(|b| seps.contains(b))
            .filter_map(|e| Self::expand(e, origin, layout))
            .map(|e| {
                let mut e = e.as_slice();
                while e.len() > 1 && e.ends_with(b"/") {
                    e = &e[..e.len() - 1];
                }
                if e.is_empty() {
                    PathBuf::from(".")
                } else {
                    PathBuf::from(OsStr::from_bytes(e))
                }
            })
            .collect()
    }

    /// The directory an object at `path` has as `$ORIGIN` (absolute, symlinks not followed).
    fn origin(&self, path: &Path) -> PathBuf {
        let abs = if path.is_absolute() {
            path.to_owned()
        } else {
            self.cwd.join(path)
        };
        abs.parent().map(Path::to_owned).unwrap_or_default()
    }

    /// Searches `dirs` (with their hwcaps subdirectories) for `name`.
    fn search(
        &self,
        dirs: &[PathBuf],
        name: &[u8],
        abi: Abi,
        layout: &Layout,
        other_abi: &mut bool,
    ) -> Result<Option<Hit>, String> {
        let name = OsStr::from_bytes(name);
        for d in dirs {
            let hw = d.join("glibc-hwcaps");
            let subdirs: Vec<PathBuf> = if !layout.hwcaps.is_empty() && hw.is_dir() {
                layout.hwcaps.iter().map(|h| hw.join(h)).collect()
            } else {
                Vec::new()
            };
            for dir in subdirs.iter().chain(std::iter::once(d)) {
                let p = dir.join(name);
                match self.probe(&p, abi) {
                    Candidate::Missing => {}
                    Candidate::OtherAbi => *other_abi = true,
                    Candidate::Found(id) => return Ok(Some((p, id))),
                    Candidate::Fatal(e) => return Err(e),
                }
            }
        }
        Ok(None)
    }

    /// Resolves every library `file` needs, transitively, as the loader would when running it
    /// (or, for a shared library, as `ldd` would when listing it).
    pub fn resolve(&self, file: &Path) -> Resolution {
        let mut res = Resolution {
            file: file.to_owned(),
            interpreter: None,
            libraries: Vec::new(),
            errors: Vec::new(),
        };
        let main_id = match std::fs::metadata(file) {
            Ok(m) => (m.dev(), m.ino()),
            Err(e) => {
                res.errors.push(format!("{}: {e}", file.display()));
                return res;
            }
        };
        let main = match self.parse(file, main_id) {
            Ok(e) => e,
            Err(e) => {
                res.errors.push(e);
                return res;
            }
        };
        let abi = Abi::of(&main);
        let layout = self.layout(abi);
        let mut objs: Vec<Obj> = vec![Obj {
            path: file.to_owned(),
            id: main_id,
            names: vec![file.as_os_str().as_bytes().to_vec()],
            elf: main.clone(),
            loader: None,
        }];
        // The loader itself is loaded before any dependency.
        self.load_interpreter(file, &main, abi, &mut objs, &mut res);
        let env_dirs = self
            .ld_library_path
            .as_ref()
            .map(|p| Self::dirs(p, b":;", &self.origin(file), &layout));
        // Breadth first, as `_dl_map_object_deps` loads.
        let mut next = 0;
        while next < objs.len() {
            let cur = next;
            next += 1;
            if objs[cur].loader.is_none() && cur != 0 {
                continue; // the interpreter's own needs are already met
            }
            let needed = objs[cur].elf.needed.clone();
            for name in needed {
                let nb = name.as_bytes();
                let origin = self.origin(&objs[cur].path);
                let nb = match Self::expand(nb, &origin, &layout) {
                    Some(n) => n,
                    None => {
                        res.libraries.push(Library {
                            name: name.clone(),
                            path: None,
                            needed_by: objs[cur].path.clone(),
                        });
                        continue;
                    }
                };
                if let Some(i) = objs.iter().position(|o| {
                    o.names.contains(&nb)
                        || o.elf.soname.as_deref().map(str::as_bytes) == Some(nb.as_slice())
                }) {
                    if i != 0 && objs[i].loader.is_none() {
                        res.interpreter = Some(objs[i].path.clone());
                    }
                    continue;
                }
                if res
                    .libraries
                    .iter()
                    .any(|l| l.path.is_none() && l.name == name)
                {
                    continue; // reported once, as ldd does
                }
                let found = self.find(&objs, cur, &nb, abi, &layout, env_dirs.as_deref());
                let (path, id) = match found {
                    Ok(Some(hit)) => hit,
                    Ok(None) => {
                        res.libraries.push(Library {
                            name: name.clone(),
                            path: None,
                            needed_by: objs[cur].path.clone(),
                        });
                        continue;
                    }
                    Err(e) => {
                        res.errors.push(format!(
                            "{} (needed by {}): {e}",
                            name,
                            objs[cur].path.display()
                        ));
                        continue;
                    }
                };
                // The same file under another name is the same object.
                if let Some(o) = objs.iter_mut().find(|o| o.id == id) {
                    o.names.push(nb);
                    continue;
                }
                let elf = match self.parse(&path, id) {
                    Ok(e) => e,
                    Err(e) => {
                        res.errors.push(e);
                        continue;
                    }
                };
                res.libraries.push(Library {
                    name: name.clone(),
                    path: Some(path.clone()),
                    needed_by: objs[cur].path.clone(),
                });
                objs.push(Obj {
                    path,
                    id,
                    names: vec![nb],
                    elf,
                    loader: Some(cur),
                });
            }
        }
        res
    }

    /// Loads the program interpreter of `main` (its `PT_INTERP`, or the ABI's default loader
    /// for a shared library, counted once something needs it) into `objs`.
    fn load_interpreter(
        &self,
        file: &Path,
        main: &ElfFile,
        abi: Abi,
        objs: &mut Vec<Obj>,
        res: &mut Resolution,
    ) {
        let interp = match &main.interpreter {
            Some(i) => Some(PathBuf::from(OsStr::from_bytes(&i.value))),
            None => abi.default_interpreter().map(PathBuf::from),
        };
        if let Some(ip) = &interp {
            // A program's interpreter is always loaded; for a shared library, the default one
            // counts once something needs it.
            if main.interpreter.is_some() {
                res.interpreter = Some(ip.clone());
            }
            match std::fs::metadata(ip) {
                Ok(m) => match self.parse(ip, (m.dev(), m.ino())) {
                    Ok(elf) => {
                        let mut names = vec![ip.as_os_str().as_bytes().to_vec()];
                        if let Some(s) = &elf.soname {
                            names.push(s.as_bytes().to_vec());
                        }
                        objs.push(Obj {
                            path: ip.clone(),
                            id: (m.dev(), m.ino()),
                            names,
                            elf,
                            loader: None,
                        });
                    }
                    Err(e) => res.errors.push(format!("the program interpreter {e}")),
                },
                Err(e) if main.interpreter.is_some() => res.errors.push(format!(
                    "{}: its program interpreter {} cannot be used: {e}",
                    file.display(),
                    ip.display()
                )),
                Err(_) => {}
            }
        }
    }

    /// Finds `name`, needed by `objs[by]`, along the loader's search order.
    fn find(
        &self,
        objs: &[Obj],
        by: usize,
        name: &[u8],
        abi: Abi,
        layout: &Layout,
        env_dirs: Option<&[PathBuf]>,
    ) -> Result<Option<Hit>, String> {
        let mut other_abi = false;
        if name.contains(&b'/') {
            let p = PathBuf::from(OsStr::from_bytes(name));
            return match self.probe(&p, abi) {
                Candidate::Found(id) => Ok(Some((p, id))),
                Candidate::Fatal(e) => Err(e),
                _ => Ok(None),
            };
        }
        let loader = &objs[by];
        let rpath_of = |o: &Obj| -> Option<Vec<PathBuf>> {
            if o.elf.runpath.is_some() {
                return None;
            }
            let r = o.elf.rpath.as_ref()?;
            Some(Self::dirs(&r.value, b":", &self.origin(&o.path), layout))
        };
        if loader.elf.runpath.is_none() {
            let mut l = Some(by);
            let mut did_main = false;
            while let Some(i) = l {
                if let Some(dirs) = rpath_of(&objs[i])
                    && let Some(hit) = self.search(&dirs, name, abi, layout, &mut other_abi)?
                {
                    return Ok(Some(hit));
                }
                did_main |= i == 0;
                l = objs[i].loader;
            }
            if !did_main
                && let Some(dirs) = rpath_of(&objs[0])
                && let Some(hit) = self.search(&dirs, name, abi, layout, &mut other_abi)?
            {
                return Ok(Some(hit));
            }
        }
        if let Some(dirs) = env_dirs
            && let Some(hit) = self.search(dirs, name, abi, layout, &mut other_abi)?
        {
            return Ok(Some(hit));
        }
        if let Some(r) = &loader.elf.runpath {
            let dirs = Self::dirs(&r.value, b":", &self.origin(&loader.path), layout);
            if let Some(hit) = self.search(&dirs, name, abi, layout, &mut other_abi)? {
                return Ok(Some(hit));
            }
        }
        if loader.elf.nodeflib {
            return Ok(None);
        }
        if let Some(c) = &self.cache
            && let Some(p) = c.lookup(name, &abi.cache_flags(), &layout.hwcaps)
            && let Candidate::Found(id) = self.probe(p, abi)
        {
            return Ok(Some((p.to_owned(), id)));
        }
        self.search(&layout.default_dirs, name, abi, layout, &mut other_abi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            default_dirs: vec![],
            lib: "lib64".into(),
            platform: "haswell".into(),
            hwcaps: vec![],
        }
    }

    #[test]
    fn dsts_expand_as_glibc_expands_them() {
        let o = Path::new("/opt/app/bin");
        let l = layout();
        let x =
            |s: &str| Loader::expand(s.as_bytes(), o, &l).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(x("$ORIGIN/../lib").as_deref(), Some("/opt/app/bin/../lib"));
        assert_eq!(x("${ORIGIN}/x").as_deref(), Some("/opt/app/bin/x"));
        assert_eq!(x("/usr/$LIB").as_deref(), Some("/usr/lib64"));
        assert_eq!(x("/p/${PLATFORM}/q").as_deref(), Some("/p/haswell/q"));
        // Not a DST: kept as written.
        assert_eq!(x("/a/$ORIGINAL").as_deref(), Some("/a/$ORIGINAL"));
        assert_eq!(x("/a/$HOME/b").as_deref(), Some("/a/$HOME/b"));
        assert_eq!(x("/a/${ORIGIN").as_deref(), Some("/a/${ORIGIN"));
        assert_eq!(x("$").as_deref(), Some("$"));
        // A DST without a value drops the element.
        let empty = Layout {
            platform: String::new(),
            ..layout()
        };
        assert_eq!(Loader::expand(b"/x/$PLATFORM", o, &empty), None);
    }

    #[test]
    fn search_paths_split_trim_and_default_to_the_working_directory() {
        let o = Path::new("/o");
        let d = Loader::dirs(b"/a/:$ORIGIN/lib::/b//", b":", o, &layout());
        assert_eq!(
            d,
            vec![
                PathBuf::from("/a"),
                PathBuf::from("/o/lib"),
                PathBuf::from("."),
                PathBuf::from("/b")
            ]
        );
        let d = Loader::dirs(b"/a;/b", b":;", o, &layout());
        assert_eq!(d, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
    }
}
