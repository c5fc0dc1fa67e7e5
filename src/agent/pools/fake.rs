//! An in-memory model of LVM2, for tests of the pool logic (the real tools
//! are run by the agent in the VM). A disk is a regular file; its volume
//! group has one 4 MiB extent per 4 MiB of the file after the first MiB
//! (LVM's metadata area). An active logical volume is a sparse file
//! `<dir>/<vg>/<lv>` of its size, so that nvmet's model can export it.
//! Like LVM's, the volumes outlive the agent: a restarted agent on the same
//! model finds them. [`FakeLvm::reboot`] deactivates them all, as a reboot
//! of a machine without udev does, and [`FakeLvm::fail_next`] makes one
//! operation fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::lvm::{LvRow, Lvm, LvmError, VgRow, TAG};

/// The extent size of every modelled volume group (LVM's default).
pub const EXTENT: u64 = 4 << 20;

#[derive(Debug, Default)]
struct Model {
    vgs: BTreeMap<String, Vg>,
    /// An operation (`create_vg`, `create_lv`, ...) to fail once.
    fail: Option<&'static str>,
}

#[derive(Debug)]
struct Vg {
    disk: PathBuf,
    tags: Vec<String>,
    extents: u64,
    lvs: BTreeMap<String, Lv>,
}

#[derive(Debug)]
struct Lv {
    extents: u64,
    tags: Vec<String>,
    active: bool,
}

/// The model; see the module documentation.
#[derive(Debug)]
pub struct FakeLvm {
    dir: PathBuf,
    model: Mutex<Model>,
}

impl FakeLvm {
    /// A machine without volume groups whose volume devices live in `dir`
    /// (which must exist).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            model: Mutex::default(),
        }
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the next call of `op` (a method name of [`Lvm`]) fail.
    pub fn fail_next(&self, op: &'static str) {
        self.model().fail = Some(op);
    }

    /// Adds a volume group someone else made on `disk`, untagged, with
    /// untagged volumes `lvs` of one extent each.
    pub fn add_foreign(&self, vg: &str, disk: &Path, lvs: &[&str]) {
        let mut model = self.model();
        let lvs = lvs
            .iter()
            .map(|name| {
                let lv = Lv {
                    extents: 1,
                    tags: Vec::new(),
                    active: false,
                };
                (name.to_string(), lv)
            })
            .collect();
        model.vgs.insert(
            vg.to_string(),
            Vg {
                disk: disk.to_path_buf(),
                tags: Vec::new(),
                extents: 2,
                lvs,
            },
        );
    }

    /// Deactivates every volume, removing its device, as a reboot does.
    pub fn reboot(&self) {
        let mut model = self.model();
        for (vg, group) in &mut model.vgs {
            for (lv, volume) in &mut group.lvs {
                volume.active = false;
                let _ = std::fs::remove_file(self.dir.join(vg).join(lv));
            }
        }
    }

    fn device(&self, vg: &str, lv: &str) -> PathBuf {
        self.dir.join(vg).join(lv)
    }

    fn make_device(&self, vg: &str, lv: &str, extents: u64) -> Result<(), LvmError> {
        let io = |e: std::io::Error| LvmError::Model(format!("device of {vg}/{lv}: {e}"));
        std::fs::create_dir_all(self.dir.join(vg)).map_err(io)?;
        std::fs::File::create(self.device(vg, lv))
            .and_then(|f| f.set_len(extents * EXTENT))
            .map_err(io)
    }

    /// Takes an injected failure of `op`, if one is due.
    fn check(model: &mut Model, op: &'static str) -> Result<(), LvmError> {
        if model.fail == Some(op) {
            model.fail = None;
            return Err(LvmError::Command(format!("{op} failed (injected)")));
        }
        Ok(())
    }
}

fn missing(what: String) -> LvmError {
    LvmError::Command(format!("{what} not found"))
}

impl Lvm for FakeLvm {
    fn check_disk(&self, disk: &Path) -> Result<(), String> {
        match std::fs::metadata(disk) {
            Ok(m) if m.is_file() => Ok(()),
            _ => Err("is not a regular file (the model's disks are files)".into()),
        }
    }

    fn volume_groups(&self) -> Result<Vec<VgRow>, LvmError> {
        let mut model = self.model();
        Self::check(&mut model, "volume_groups")?;
        Ok(model
            .vgs
            .iter()
            .map(|(name, vg)| {
                let used: u64 = vg.lvs.values().map(|l| l.extents).sum();
                VgRow {
                    name: name.clone(),
                    tags: vg.tags.clone(),
                    pv: vg.disk.clone(),
                    size: vg.extents * EXTENT,
                    free: (vg.extents - used) * EXTENT,
                    extent_size: EXTENT,
                    partial: false,
                }
            })
            .collect())
    }

    fn logical_volumes(&self) -> Result<Vec<LvRow>, LvmError> {
        let mut model = self.model();
        Self::check(&mut model, "logical_volumes")?;
        let mut rows = Vec::new();
        for (vg, group) in &model.vgs {
            for (name, lv) in &group.lvs {
                rows.push(LvRow {
                    name: name.clone(),
                    vg: vg.clone(),
                    tags: lv.tags.clone(),
                    size: lv.extents * EXTENT,
                    path: self.device(vg, name),
                    active: lv.active,
                });
            }
        }
        Ok(rows)
    }

    fn create_vg(&self, vg: &str, disk: &Path) -> Result<(), LvmError> {
        let mut model = self.model();
        Self::check(&mut model, "create_vg")?;
        if model.vgs.contains_key(vg) || model.vgs.values().any(|g| g.disk == disk) {
            return Err(LvmError::Command(format!(
                "{vg} or {} in use",
                disk.display()
            )));
        }
        let len = std::fs::metadata(disk)
            .map_err(|e| LvmError::Command(format!("{}: {e}", disk.display())))?
            .len();
        let extents = len.saturating_sub(1 << 20) / EXTENT;
        if extents == 0 {
            return Err(LvmError::Command(format!(
                "{} is too small",
                disk.display()
            )));
        }
        model.vgs.insert(
            vg.to_string(),
            Vg {
                disk: disk.to_path_buf(),
                tags: vec![TAG.to_string()],
                extents,
                lvs: BTreeMap::new(),
            },
        );
        Ok(())
    }

    fn remove_vg(&self, vg: &str, _disk: &Path) -> Result<(), LvmError> {
        let mut model = self.model();
        Self::check(&mut model, "remove_vg")?;
        model
            .vgs
            .remove(vg)
            .ok_or_else(|| missing(format!("volume group {vg}")))?;
        let _ = std::fs::remove_dir_all(self.dir.join(vg));
        Ok(())
    }

    fn create_lv(&self, vg: &str, lv: &str, extents: u64) -> Result<(), LvmError> {
        let mut model = self.model();
        Self::check(&mut model, "create_lv")?;
        let group = model
            .vgs
            .get_mut(vg)
            .ok_or_else(|| missing(format!("volume group {vg}")))?;
        let used: u64 = group.lvs.values().map(|l| l.extents).sum();
        if group.lvs.contains_key(lv) || used + extents > group.extents {
            return Err(LvmError::Command(format!("cannot make {vg}/{lv}")));
        }
        self.make_device(vg, lv, extents)?;
        let tags = vec![TAG.to_string()];
        group.lvs.insert(
            lv.to_string(),
            Lv {
                extents,
                tags,
                active: true,
            },
        );
        Ok(())
    }

    fn remove_lv(&self, vg: &str, lv: &str) -> Result<(), LvmError> {
        let mut model = self.model();
        Self::check(&mut model, "remove_lv")?;
        model
            .vgs
            .get_mut(vg)
            .and_then(|g| g.lvs.remove(lv))
            .ok_or_else(|| missing(format!("volume {vg}/{lv}")))?;
        let _ = std::fs::remove_file(self.device(vg, lv));
        Ok(())
    }

    fn activate(&self, vg: &str) -> Result<(), LvmError> {
        let mut model = self.model();
        Self::check(&mut model, "activate")?;
        let group = model
            .vgs
            .get_mut(vg)
            .ok_or_else(|| missing(format!("volume group {vg}")))?;
        for (name, lv) in &mut group.lvs {
            if !lv.active {
                self.make_device(vg, name, lv.extents)?;
                lv.active = true;
            }
        }
        Ok(())
    }
}
