//! The guest kernel: Debian's `linux-image-amd64`, fetched with
//! `apt-get download` into a cache dir and unpacked in Rust, or files given
//! on the command line.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{bzimage, deb, io_error, Progress, VmError};
use crate::atomic_file;
use crate::cmd::Cmd;

/// The Debian metapackage that names the current kernel package.
pub const META_PACKAGE: &str = "linux-image-amd64";

/// A guest kernel ready to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestKernel {
    /// `uname -r` of the guest, e.g. `6.1.0-56-amd64`.
    pub version: String,
    /// The uncompressed ELF kernel (PVH entry), passed to `-kernel`.
    pub vmlinux: PathBuf,
    /// Its modules dir (`…/lib/modules/<version>`).
    pub modules: PathBuf,
}

/// Where the guest kernel comes from.
#[derive(Debug, Clone)]
pub enum KernelSource {
    /// Debian's current kernel package, cached below this dir.
    Debian {
        /// The cache dir (`$XDG_CACHE_HOME/nvmfcheck` by default).
        cache: PathBuf,
    },
    /// Files given by the user.
    Files {
        /// A vmlinux or bzImage.
        kernel: PathBuf,
        /// The matching modules dir.
        modules: PathBuf,
        /// Where a vmlinux extracted from a bzImage is kept.
        cache: PathBuf,
    },
}

/// The default cache dir: `$XDG_CACHE_HOME/nvmfcheck` or `~/.cache/nvmfcheck`.
pub fn default_cache_dir() -> PathBuf {
    super::hostfs::xdg_dir("XDG_CACHE_HOME", ".cache", "nvmfcheck")
}

/// The versioned kernel package named by `apt-cache depends` output.
pub fn package_from_depends(apt_cache_output: &str) -> Option<String> {
    apt_cache_output.lines().find_map(|l| {
        let dep = l.trim().strip_prefix("Depends:")?.trim();
        let version = dep.strip_prefix("linux-image-")?;
        version
            .starts_with(|c: char| c.is_ascii_digit())
            .then(|| dep.to_string())
    })
}

impl KernelSource {
    /// Makes the kernel ready: fetches and unpacks it when it is not cached.
    pub async fn resolve(&self, progress: &Progress) -> Result<GuestKernel, VmError> {
        match self {
            KernelSource::Debian { cache } => debian(cache, progress).await,
            KernelSource::Files {
                kernel,
                modules,
                cache,
            } => files(kernel, modules, cache),
        }
    }
}

fn files(kernel: &Path, modules: &Path, cache: &Path) -> Result<GuestKernel, VmError> {
    let version = modules
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|_| modules.is_dir())
        .ok_or_else(|| {
            VmError::Invalid(format!(
                "--modules {}: not a directory; pass the kernel's …/lib/modules/<version>",
                modules.display()
            ))
        })?
        .to_string();
    let image = std::fs::read(kernel).map_err(io_error(format!(
        "--kernel {}: cannot read it",
        kernel.display()
    )))?;
    if image.starts_with(b"\x7fELF") {
        return Ok(GuestKernel {
            version,
            vmlinux: kernel.to_path_buf(),
            modules: modules.to_path_buf(),
        });
    }
    let key = content_key(&[&image]);
    let vmlinux = cache.join("kernel").join(format!("custom-{key}.vmlinux"));
    if !vmlinux.exists() {
        let elf = bzimage::vmlinux(&image).map_err(|e| match e {
            VmError::Kernel(m) => VmError::Invalid(format!("--kernel {}: {m}", kernel.display())),
            e => e,
        })?;
        atomic_file::replace(&vmlinux, &elf)
            .map_err(io_error(format!("cannot write {}", vmlinux.display())))?;
    }
    Ok(GuestKernel {
        version,
        vmlinux,
        modules: modules.to_path_buf(),
    })
}

/// A short stable key for cached content: what names a cached file
/// after the content it was made from.
pub fn content_key(parts: &[&[u8]]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

async fn current_package() -> Result<String, VmError> {
    let out = Cmd::new("apt-cache")
        .args(["depends", META_PACKAGE])
        .timeout(Duration::from_secs(60))
        .output()
        .await
        .map_err(|e| match e {
            crate::cmd::CmdError::Spawn { .. } => VmError::Kernel(format!(
                "`apt-cache` is not available, so Debian's kernel cannot be fetched; pass \
                 --kernel <vmlinux|bzImage> --modules <dir> ({e})"
            )),
            e => e.into(),
        })?;
    package_from_depends(&out.stdout).ok_or_else(|| {
        VmError::Kernel(format!(
            "`apt-cache depends {META_PACKAGE}` names no kernel package; run `apt-get update` \
             first (it said: {})",
            out.stderr.trim()
        ))
    })
}

fn cached(dir: &Path, version: &str) -> Option<GuestKernel> {
    let k = GuestKernel {
        version: version.to_string(),
        vmlinux: dir.join("vmlinux"),
        modules: dir.join("modules"),
    };
    (k.vmlinux.is_file() && k.modules.is_dir()).then_some(k)
}

/// apt's package lists; `apt-get update` changes this dir.
const APT_LISTS: &str = "/var/lib/apt/lists";

fn mtime(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The kernel package, remembered in `cache/kernel/current` because asking
/// apt-cache takes ~0.7 s; asked again once apt's lists have changed.
async fn package(cache: &Path, progress: &Progress) -> Result<String, VmError> {
    let memo = cache.join("kernel").join("current");
    let remembered = std::fs::read_to_string(&memo)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let fresh = match (mtime(&memo), mtime(Path::new(APT_LISTS))) {
        (Some(m), Some(lists)) => m >= lists,
        (Some(_), None) => true,
        _ => false,
    };
    match remembered {
        Some(p) if fresh => Ok(p),
        remembered => match current_package().await {
            Ok(p) => {
                atomic_file::replace(&memo, p.as_bytes())
                    .map_err(io_error(format!("cannot write {}", memo.display())))?;
                Ok(p)
            }
            Err(e) => {
                let Some(p) = remembered else { return Err(e) };
                progress.say(format!("using the cached {p}: {e}"));
                Ok(p)
            }
        },
    }
}

async fn debian(cache: &Path, progress: &Progress) -> Result<GuestKernel, VmError> {
    let package = package(cache, progress).await?;
    let version = package
        .strip_prefix("linux-image-")
        .unwrap_or(&package)
        .to_string();
    let dir = cache.join("kernel").join(&version);
    if let Some(k) = cached(&dir, &version) {
        return Ok(k);
    }
    progress.say(format!(
        "fetching guest kernel {package} into {} (once; ~70 MB) …",
        dir.display()
    ));
    let partial = cache
        .join("kernel")
        .join(format!(".{version}.partial-{}", std::process::id()));
    let result = fetch_into(&package, &version, &partial, progress).await;
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    // Another runner may have finished first; either copy is good.
    if std::fs::rename(&partial, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    cached(&dir, &version).ok_or_else(|| {
        VmError::Kernel(format!(
            "{} is incomplete; remove it and retry",
            dir.display()
        ))
    })
}

async fn fetch_into(
    package: &str,
    version: &str,
    dir: &Path,
    progress: &Progress,
) -> Result<(), VmError> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(io_error(format!("cannot create {}", dir.display())))?;
    // apt-get download writes into the current dir; Cmd has no working dir.
    Cmd::new("sh")
        .args(["-c", "cd \"$1\" && exec apt-get download \"$2\"", "sh"])
        .arg(dir)
        .arg(package)
        .timeout(Duration::from_secs(600))
        .run()
        .await?;
    let deb = std::fs::read_dir(dir)
        .map_err(io_error(format!("cannot list {}", dir.display())))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| {
            VmError::Kernel(format!(
                "apt-get download left no .deb in {}",
                dir.display()
            ))
        })?;
    progress.say(format!("unpacking {}", deb.display()));
    let root = dir.join("root");
    let (deb2, root2) = (deb.clone(), root.clone());
    tokio::task::spawn_blocking(move || deb::unpack(&deb2, &root2))
        .await
        .map_err(|e| VmError::Kernel(format!("unpacking panicked: {e}")))??;
    let bz = root.join("boot").join(format!("vmlinuz-{version}"));
    let image =
        std::fs::read(&bz).map_err(io_error(format!("the package has no {}", bz.display())))?;
    progress.say("extracting vmlinux from the bzImage");
    let elf = tokio::task::spawn_blocking(move || bzimage::vmlinux(&image))
        .await
        .map_err(|e| VmError::Kernel(format!("extraction panicked: {e}")))??;
    let vmlinux = dir.join("vmlinux");
    atomic_file::replace(&vmlinux, &elf)
        .map_err(io_error(format!("cannot write {}", vmlinux.display())))?;
    let modules = root.join("lib/modules").join(version);
    std::fs::rename(&modules, dir.join("modules")).map_err(io_error(format!(
        "the package has no {}",
        modules.display()
    )))?;
    std::fs::remove_dir_all(&root)
        .map_err(io_error(format!("cannot remove {}", root.display())))?;
    std::fs::remove_file(&deb).map_err(io_error(format!("cannot remove {}", deb.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_keys_differ_with_content() {
        assert_eq!(content_key(&[b"a"]), content_key(&[b"a"]));
        assert_ne!(content_key(&[b"a"]), content_key(&[b"b"]));
    }

    #[test]
    fn finds_the_versioned_package() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n";
        assert_eq!(
            package_from_depends(out).as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        assert_eq!(package_from_depends("linux-image-amd64\n"), None);
        assert_eq!(
            package_from_depends("  Depends: linux-image-amd64-signed\n"),
            None
        );
    }

    #[test]
    fn files_accepts_an_elf_and_rejects_a_bad_modules_dir() {
        let dir = tempfile::tempdir().unwrap();
        let elf = dir.path().join("vmlinux");
        std::fs::write(&elf, b"\x7fELF...").unwrap();
        let modules = dir.path().join("6.1.0-test");
        std::fs::create_dir(&modules).unwrap();
        let k = files(&elf, &modules, dir.path()).unwrap();
        assert_eq!(k.version, "6.1.0-test");
        assert_eq!(k.vmlinux, elf);
        let err = files(&elf, &dir.path().join("nope"), dir.path()).unwrap_err();
        assert!(err.to_string().contains("--modules"), "{err}");
    }
}
