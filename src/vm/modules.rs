//! Kernel modules: reading a module's dependencies from its `.modinfo`
//! section and ordering a set of modules with everything they need.
//!
//! Debian's kernel package ships no `modules.dep` (depmod writes it at
//! install time), so dependencies are read from the `.ko` files themselves.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::{io_error, VmError};

/// The kernel's module names use `_` and `-` interchangeably.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The `depends=` entries of a module's `.modinfo` section.
pub fn depends(ko: &[u8]) -> Result<Vec<String>, String> {
    let info = section(ko, ".modinfo")?.ok_or("no .modinfo section")?;
    Ok(info
        .split(|&b| b == 0)
        .filter_map(|kv| kv.strip_prefix(b"depends="))
        .flat_map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .filter(|d| !d.is_empty())
                .map(normalize)
                .collect::<Vec<_>>()
        })
        .collect())
}

const SIG_MAGIC: &[u8] = b"~Module signature appended~\n";
/// `struct module_signature`: 8 bytes of fields, then the signature's
/// length as a big-endian u32.
const SIG_INFO_LEN: usize = 12;

/// Drops a module's appended signature. The guest kernel does not enforce
/// signatures, and verifying them (RSA on an emulated CPU) slowed module
/// loading down measurably under TCG.
pub fn strip_signature(ko: &mut Vec<u8>) {
    let Some(body) = ko.len().checked_sub(SIG_MAGIC.len()) else {
        return;
    };
    if &ko[body..] != SIG_MAGIC || body < SIG_INFO_LEN {
        return;
    }
    let len_at = body - 4;
    let sig_len = u32::from_be_bytes([ko[len_at], ko[len_at + 1], ko[len_at + 2], ko[len_at + 3]]);
    if let Some(end) = (body - SIG_INFO_LEN).checked_sub(sig_len as usize) {
        ko.truncate(end);
    }
}

fn uint(data: &[u8], at: usize, len: usize) -> Result<u64, String> {
    let bytes = data
        .get(at..at + len)
        .ok_or_else(|| format!("truncated ELF file (field at {at:#x})"))?;
    Ok(bytes
        .iter()
        .rev()
        .fold(0, |acc, &b| (acc << 8) | u64::from(b)))
}

/// The contents of the section called `name` in a little-endian ELF64 file.
fn section<'a>(elf: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, String> {
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return Err("not a little-endian 64-bit ELF file".into());
    }
    let shoff = uint(elf, 0x28, 8)? as usize;
    let shentsize = uint(elf, 0x3a, 2)? as usize;
    let shnum = uint(elf, 0x3c, 2)? as usize;
    let shstrndx = uint(elf, 0x3e, 2)? as usize;
    let header = |i: usize| -> Result<(u64, &'a [u8]), String> {
        let at = shoff + i * shentsize;
        let name = uint(elf, at, 4)?;
        let offset = uint(elf, at + 0x18, 8)? as usize;
        let size = uint(elf, at + 0x20, 8)? as usize;
        let data = elf
            .get(offset..offset.saturating_add(size))
            .ok_or("section beyond the end of the file")?;
        Ok((name, data))
    };
    let (_, names) = header(shstrndx)?;
    for i in 0..shnum {
        let (name_at, data) = header(i)?;
        let Some(rest) = names.get(name_at as usize..) else {
            continue;
        };
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        if &rest[..end] == name.as_bytes() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// The modules of one kernel, found by file name below its modules dir.
#[derive(Debug, Clone)]
pub struct ModuleIndex {
    paths: BTreeMap<String, PathBuf>,
    /// Modules built into the kernel (`modules.builtin`): present without
    /// a file, so never loaded. Another kernel than Debian 12's (6.12
    /// builds `virtio_pci` in, for one) needs this.
    builtin: HashSet<String>,
}

impl ModuleIndex {
    /// Indexes every `*.ko` below `dir` (e.g. `/lib/modules/<version>`).
    pub fn scan(dir: &Path) -> Result<Self, VmError> {
        let mut paths = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let entries =
                std::fs::read_dir(&d).map_err(io_error(format!("cannot list {}", d.display())))?;
            for entry in entries {
                let entry = entry.map_err(io_error(format!("cannot list {}", d.display())))?;
                let path = entry.path();
                let kind = entry
                    .file_type()
                    .map_err(io_error(format!("cannot stat {}", path.display())))?;
                if kind.is_dir() {
                    stack.push(path);
                } else if let Some(stem) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".ko"))
                {
                    paths.insert(normalize(stem), path);
                }
            }
        }
        if paths.is_empty() {
            return Err(VmError::Kernel(format!(
                "no kernel modules (*.ko) below {}; pass the modules dir of the guest kernel \
                 (…/lib/modules/<version>) with --modules (decompress *.ko.xz first)",
                dir.display()
            )));
        }
        let builtin = std::fs::read_to_string(dir.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit('/').next()?.strip_suffix(".ko"))
            .map(normalize)
            .collect();
        Ok(Self { paths, builtin })
    }

    /// `wanted` and everything they depend on, dependencies first, each
    /// once, as `(name, path)`.
    pub fn closure(&self, wanted: &[&str]) -> Result<Vec<(String, PathBuf)>, VmError> {
        self.closure_with(wanted, |path| {
            let ko =
                std::fs::read(path).map_err(io_error(format!("cannot read {}", path.display())))?;
            depends(&ko).map_err(|e| VmError::Kernel(format!("{}: {e}", path.display())))
        })
    }

    fn closure_with(
        &self,
        wanted: &[&str],
        mut deps_of: impl FnMut(&Path) -> Result<Vec<String>, VmError>,
    ) -> Result<Vec<(String, PathBuf)>, VmError> {
        let mut order = Vec::new();
        let mut done = HashSet::new();
        // Depth-first post-order; `visiting` catches dependency cycles.
        let mut stack: Vec<(String, bool)> =
            wanted.iter().rev().map(|w| (normalize(w), false)).collect();
        let mut visiting = HashSet::new();
        while let Some((name, expanded)) = stack.pop() {
            if done.contains(&name) || self.builtin.contains(&name) {
                continue;
            }
            let path = self.paths.get(&name).ok_or_else(|| {
                VmError::Kernel(format!(
                    "the guest kernel has no module `{name}` (looked for {name}.ko)"
                ))
            })?;
            if expanded {
                visiting.remove(&name);
                done.insert(name.clone());
                order.push((name, path.clone()));
                continue;
            }
            if !visiting.insert(name.clone()) {
                return Err(VmError::Kernel(format!(
                    "kernel module dependency cycle at `{name}`"
                )));
            }
            stack.push((name, true));
            for dep in deps_of(path)?.into_iter().rev() {
                if !done.contains(&dep) {
                    stack.push((dep, false));
                }
            }
        }
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with a `.modinfo` section holding `info`.
    pub(crate) fn fake_ko(info: &[u8]) -> Vec<u8> {
        let shstr = b"\0.modinfo\0.shstrtab\0";
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let info_at = elf.len();
        elf.extend_from_slice(info);
        let shstr_at = elf.len();
        elf.extend_from_slice(shstr);
        let shoff = elf.len();
        let sh = |name: u32, off: usize, size: usize| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            h
        };
        elf.extend(sh(0, 0, 0));
        elf.extend(sh(1, info_at, info.len()));
        elf.extend(sh(10, shstr_at, shstr.len()));
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        elf
    }

    #[test]
    fn strips_an_appended_signature_only() {
        let body = fake_ko(b"depends=\0");
        let mut signed = body.clone();
        signed.extend_from_slice(&[0xaa; 5]);
        signed.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
        signed.extend_from_slice(SIG_MAGIC);
        strip_signature(&mut signed);
        assert_eq!(signed, body);
        let mut unsigned = body.clone();
        strip_signature(&mut unsigned);
        assert_eq!(unsigned, body);
    }

    #[test]
    fn reads_depends_from_modinfo() {
        let ko = fake_ko(b"license=GPL\0depends=nvme-core,nvme-fabrics\0name=nvme_tcp\0");
        assert_eq!(depends(&ko).unwrap(), ["nvme_core", "nvme_fabrics"]);
        assert!(depends(&fake_ko(b"depends=\0")).unwrap().is_empty());
        assert!(depends(b"not elf").is_err());
    }

    fn index(deps: &[(&str, &[&str])]) -> (ModuleIndex, BTreeMap<PathBuf, Vec<String>>) {
        let mut paths = BTreeMap::new();
        let mut graph = BTreeMap::new();
        for (name, d) in deps {
            let p = PathBuf::from(format!("/m/{name}.ko"));
            paths.insert(normalize(name), p.clone());
            graph.insert(p, d.iter().map(|s| normalize(s)).collect());
        }
        let builtin = HashSet::new();
        (ModuleIndex { paths, builtin }, graph)
    }

    fn names(order: Vec<(String, PathBuf)>) -> Vec<String> {
        order.into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn closure_puts_dependencies_first_once() {
        let (idx, g) = index(&[
            ("nvme-tcp", &["nvme-core", "nvme-fabrics"]),
            ("nvme-fabrics", &["nvme-core"]),
            ("nvme-core", &[]),
            ("virtio_blk", &["virtio", "virtio_ring"]),
            ("virtio", &[]),
            ("virtio_ring", &[]),
        ]);
        let order = idx
            .closure_with(&["virtio_blk", "nvme_tcp"], |p| Ok(g[p].clone()))
            .unwrap();
        assert_eq!(
            names(order),
            [
                "virtio",
                "virtio_ring",
                "virtio_blk",
                "nvme_core",
                "nvme_fabrics",
                "nvme_tcp"
            ]
        );
    }

    #[test]
    fn closure_names_a_missing_module_and_a_cycle() {
        let (idx, g) = index(&[("a", &["b"]), ("b", &["a"]), ("c", &["zz"])]);
        let err = idx.closure_with(&["c"], |p| Ok(g[p].clone())).unwrap_err();
        assert!(err.to_string().contains("`zz`"), "{err}");
        let err = idx.closure_with(&["a"], |p| Ok(g[p].clone())).unwrap_err();
        assert!(err.to_string().contains("cycle"), "{err}");
    }

    /// A modules dir holding `kernel/drivers/nvme-tcp.ko`, which depends on
    /// nvme-core.
    fn modules_dir_with_nvme_tcp() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("kernel/drivers");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("nvme-tcp.ko"), fake_ko(b"depends=nvme-core\0")).unwrap();
        dir
    }

    #[test]
    fn scans_a_tree_and_reads_real_files() {
        let dir = modules_dir_with_nvme_tcp();
        let sub = dir.path().join("kernel/drivers");
        std::fs::write(sub.join("nvme-core.ko"), fake_ko(b"depends=\0")).unwrap();
        let idx = ModuleIndex::scan(dir.path()).unwrap();
        assert_eq!(
            names(idx.closure(&["nvme-tcp"]).unwrap()),
            ["nvme_core", "nvme_tcp"]
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(ModuleIndex::scan(empty.path()).is_err());
    }

    #[test]
    fn built_in_modules_need_no_file() {
        let dir = modules_dir_with_nvme_tcp();
        std::fs::write(
            dir.path().join("modules.builtin"),
            "kernel/drivers/nvme/host/nvme-core.ko\nkernel/drivers/virtio/virtio_pci.ko\n",
        )
        .unwrap();
        let idx = ModuleIndex::scan(dir.path()).unwrap();
        assert_eq!(
            names(idx.closure(&["virtio_pci", "nvme-tcp"]).unwrap()),
            ["nvme_tcp"]
        );
    }
}
