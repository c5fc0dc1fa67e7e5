//! LVM2, the backend of pools (volume groups) and replicas (logical
//! volumes), as a trait so that the pool logic runs against
//! [`FakeLvm`](super::fake::FakeLvm) in tests and against the real tools
//! (`vgcreate`, `lvs --reportformat json`, ...) in the VM.
//!
//! What the agent makes carries the LVM tag [`TAG`], on the volume group and
//! on each logical volume. A restarted agent finds its pools and replicas by
//! that tag alone: LVM keeps tags in its on-disk metadata, so they survive
//! restarts and reboots with the volumes they mark, and a volume group or
//! volume someone else made on the same machine is never taken for one of
//! ours (its name could be anything; the tag says who made it).
//!
//! Every command gets [`CONFIG`] with `--config`: the VM guest runs the
//! host's tools with the host's `/etc` read-only and no udev, where LVM's
//! defaults fail (see the constant for each setting and why).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cmd::{Cmd, CmdError};

/// The LVM tag on every volume group and logical volume the agent makes.
pub const TAG: &str = "nvmfcheck";

/// Settings given to every LVM command, for hosts without udev and with a
/// read-only `/etc` (the VM guests). Measured in the target VM (Debian 12,
/// lvm2 2.03.16, the host's `/etc` over read-only 9p, `/run` a tmpfs, no
/// udev); LVM's defaults need nothing else there (its lock files go to
/// `/run/lock/lvm`, and it scans `/dev` itself when udev is not running):
/// - `backup/backup=0`, `backup/archive=0`: `lvcreate` archives the old
///   metadata in `/etc/lvm/archive` first and fails (status 5, "Creating
///   directory /etc/lvm/archive") when it cannot; the metadata is on the
///   disk itself, the copies in `/etc` are only for a person repairing it;
/// - `activation/udev_sync=0`, `activation/udev_rules=0`: without them
///   nothing makes `/dev/<vg>/<lv>` (udev's rules would), and `lvcreate`
///   fails to wipe the new volume's start ("not found: device not
///   cleared"); with them LVM makes the device nodes itself and does not
///   wait for udev.
pub const CONFIG: &str = "backup { backup=0 archive=0 } activation { udev_sync=0 udev_rules=0 }";

/// How long one LVM command may take before it is killed.
const DEADLINE: Duration = Duration::from_secs(20);

/// An LVM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LvmError {
    /// The tools are missing (`lvm2` is not installed).
    #[error("LVM2 is not available ({0}); install the lvm2 package on the target to use pools")]
    Missing(String),
    /// A command failed or timed out.
    #[error("{0}")]
    Command(String),
    /// A report could not be read.
    #[error("cannot read the output of `{cmd}`: {reason}")]
    Report {
        /// The command.
        cmd: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The model failed (tests).
    #[error("{0}")]
    Model(String),
}

impl From<CmdError> for LvmError {
    fn from(e: CmdError) -> Self {
        match e {
            CmdError::Spawn { .. } => LvmError::Missing(e.to_string()),
            _ => LvmError::Command(e.to_string()),
        }
    }
}

/// One physical volume of a volume group, as `vgs` reports it (one row a
/// PV).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VgRow {
    /// The volume group's name.
    pub name: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// The physical volume (`/dev/vdb`).
    pub pv: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Free bytes.
    pub free: u64,
    /// The extent size in bytes.
    pub extent_size: u64,
    /// Whether a PV is missing (`vg_attr`'s fourth character `p`).
    pub partial: bool,
}

/// One logical volume, as `lvs` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvRow {
    /// Its name.
    pub name: String,
    /// Its volume group.
    pub vg: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Size in bytes.
    pub size: u64,
    /// Its device (`/dev/<vg>/<lv>`).
    pub path: PathBuf,
    /// Whether it is active (has a device).
    pub active: bool,
}

/// The LVM operations the pools use. Names are checked by the caller.
pub trait Lvm: Send + Sync + 'static {
    /// Whether a pool may be made on `disk` (an existing path): a block
    /// device for LVM; why not otherwise.
    fn check_disk(&self, disk: &Path) -> Result<(), String>;
    /// Every volume group, one row per physical volume.
    fn volume_groups(&self) -> Result<Vec<VgRow>, LvmError>;
    /// Every logical volume.
    fn logical_volumes(&self) -> Result<Vec<LvRow>, LvmError>;
    /// Makes volume group `vg` on `disk`, tagged [`TAG`].
    fn create_vg(&self, vg: &str, disk: &Path) -> Result<(), LvmError>;
    /// Removes volume group `vg` with its volumes, and the PV label from
    /// `disk`, so that the disk is free again.
    fn remove_vg(&self, vg: &str, disk: &Path) -> Result<(), LvmError>;
    /// Makes and activates volume `lv` of `extents` extents in `vg`,
    /// tagged [`TAG`].
    fn create_lv(&self, vg: &str, lv: &str, extents: u64) -> Result<(), LvmError>;
    /// Removes volume `lv` of `vg`.
    fn remove_lv(&self, vg: &str, lv: &str) -> Result<(), LvmError>;
    /// Activates the volumes of `vg` (after a reboot nothing activates
    /// them: no udev).
    fn activate(&self, vg: &str) -> Result<(), LvmError>;
}

/// The real LVM2 tools, run through [`Cmd`] with [`CONFIG`].
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelLvm;

impl KernelLvm {
    fn run(&self, program: &str, args: &[&str]) -> Result<String, LvmError> {
        let cmd = Cmd::new(program)
            .args(["--config", CONFIG])
            .args(args)
            .timeout(DEADLINE);
        Ok(cmd.run_blocking()?.stdout)
    }

    fn report(&self, program: &str, fields: &str) -> Result<String, LvmError> {
        self.run(
            program,
            &[
                "--reportformat",
                "json",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                fields,
            ],
        )
    }
}

const VG_FIELDS: &str = "vg_name,vg_tags,pv_name,vg_size,vg_free,vg_extent_size,vg_attr";
const LV_FIELDS: &str = "lv_name,vg_name,lv_tags,lv_size,lv_path,lv_attr";

impl Lvm for KernelLvm {
    fn check_disk(&self, disk: &Path) -> Result<(), String> {
        use std::os::unix::fs::FileTypeExt;
        match std::fs::metadata(disk) {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            Ok(_) => Err("is not a block device; LVM2 pools are made on disks".into()),
            Err(e) => Err(format!("cannot be read: {e}")),
        }
    }

    fn volume_groups(&self) -> Result<Vec<VgRow>, LvmError> {
        parse_vgs(&self.report("vgs", VG_FIELDS)?)
    }

    fn logical_volumes(&self) -> Result<Vec<LvRow>, LvmError> {
        parse_lvs(&self.report("lvs", LV_FIELDS)?)
    }

    fn create_vg(&self, vg: &str, disk: &Path) -> Result<(), LvmError> {
        let disk = disk.to_string_lossy();
        self.run("vgcreate", &["--addtag", TAG, vg, &disk])?;
        Ok(())
    }

    fn remove_vg(&self, vg: &str, disk: &Path) -> Result<(), LvmError> {
        self.run("vgremove", &["--force", vg])?;
        self.run("pvremove", &[&disk.to_string_lossy()])?;
        Ok(())
    }

    fn create_lv(&self, vg: &str, lv: &str, extents: u64) -> Result<(), LvmError> {
        // `--yes`: LVM asks before wiping a signature an old volume left
        // in the extents; a new replica starts blank.
        let extents = extents.to_string();
        self.run(
            "lvcreate",
            &[
                "--addtag",
                TAG,
                "--name",
                lv,
                "--extents",
                &extents,
                "--yes",
                vg,
            ],
        )?;
        Ok(())
    }

    fn remove_lv(&self, vg: &str, lv: &str) -> Result<(), LvmError> {
        self.run("lvremove", &["--force", &format!("{vg}/{lv}")])?;
        Ok(())
    }

    fn activate(&self, vg: &str) -> Result<(), LvmError> {
        self.run("vgchange", &["--activate", "y", vg])?;
        Ok(())
    }
}

/// `{"report": [{"vg": [...]}]}` or `{"report": [{"lv": [...]}]}`.
#[derive(Deserialize)]
struct Report<T> {
    report: Vec<T>,
}

#[derive(Deserialize)]
struct VgSection {
    vg: Vec<VgJson>,
}

#[derive(Deserialize)]
struct LvSection {
    lv: Vec<LvJson>,
}

#[derive(Deserialize)]
struct VgJson {
    vg_name: String,
    vg_tags: String,
    pv_name: String,
    vg_size: String,
    vg_free: String,
    vg_extent_size: String,
    vg_attr: String,
}

#[derive(Deserialize)]
struct LvJson {
    lv_name: String,
    vg_name: String,
    lv_tags: String,
    lv_size: String,
    lv_path: String,
    lv_attr: String,
}

fn bad(cmd: &str, reason: String) -> LvmError {
    LvmError::Report {
        cmd: cmd.to_string(),
        reason,
    }
}

fn bytes(cmd: &str, field: &str, value: &str) -> Result<u64, LvmError> {
    value
        .parse()
        .map_err(|_| bad(cmd, format!("{field} {value:?} is not a number of bytes")))
}

fn tags(list: &str) -> Vec<String> {
    list.split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parses `vgs --reportformat json --units b --nosuffix -o` [`VG_FIELDS`].
pub fn parse_vgs(text: &str) -> Result<Vec<VgRow>, LvmError> {
    let report: Report<VgSection> =
        serde_json::from_str(text).map_err(|e| bad("vgs", e.to_string()))?;
    let mut rows = Vec::new();
    for vg in report.report.into_iter().flat_map(|s| s.vg) {
        rows.push(VgRow {
            size: bytes("vgs", "vg_size", &vg.vg_size)?,
            free: bytes("vgs", "vg_free", &vg.vg_free)?,
            extent_size: bytes("vgs", "vg_extent_size", &vg.vg_extent_size)?,
            partial: vg.vg_attr.chars().nth(3) == Some('p'),
            tags: tags(&vg.vg_tags),
            pv: PathBuf::from(vg.pv_name),
            name: vg.vg_name,
        });
    }
    Ok(rows)
}

/// Parses `lvs --reportformat json --units b --nosuffix -o` [`LV_FIELDS`].
pub fn parse_lvs(text: &str) -> Result<Vec<LvRow>, LvmError> {
    let report: Report<LvSection> =
        serde_json::from_str(text).map_err(|e| bad("lvs", e.to_string()))?;
    let mut rows = Vec::new();
    for lv in report.report.into_iter().flat_map(|s| s.lv) {
        rows.push(LvRow {
            size: bytes("lvs", "lv_size", &lv.lv_size)?,
            active: lv.lv_attr.chars().nth(4) == Some('a'),
            tags: tags(&lv.lv_tags),
            path: PathBuf::from(lv.lv_path),
            name: lv.lv_name,
            vg: lv.vg_name,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vgs_json() {
        let text = r#"  {
      "report": [
          {
              "vg": [
                  {"vg_name":"pool1", "vg_tags":"nvmfcheck", "pv_name":"/dev/vdb", "vg_size":"532676608", "vg_free":"465567744", "vg_extent_size":"4194304", "vg_attr":"wz--n-"},
                  {"vg_name":"other", "vg_tags":"a,b", "pv_name":"[unknown]", "vg_size":"8388608", "vg_free":"0", "vg_extent_size":"4194304", "vg_attr":"wz-pn-"}
              ]
          }
      ]
  }
"#;
        let rows = parse_vgs(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, "pool1");
        assert_eq!(rows[0].tags, [TAG]);
        assert_eq!(rows[0].pv, Path::new("/dev/vdb"));
        assert_eq!(
            (rows[0].size, rows[0].free, rows[0].extent_size),
            (532676608, 465567744, 4194304)
        );
        assert!(!rows[0].partial);
        assert_eq!(rows[1].tags, ["a", "b"]);
        assert!(rows[1].partial);
    }

    #[test]
    fn reads_lvs_json() {
        let text = r#"{"report":[{"lv":[{"lv_name":"0e9a-x", "vg_name":"pool1", "lv_tags":"nvmfcheck", "lv_size":"67108864", "lv_path":"/dev/pool1/0e9a-x", "lv_attr":"-wi-a-----"},{"lv_name":"off", "vg_name":"pool1", "lv_tags":"", "lv_size":"4194304", "lv_path":"/dev/pool1/off", "lv_attr":"-wi-------"}]}]}"#;
        let rows = parse_lvs(text).unwrap();
        assert_eq!(rows[0].size, 67108864);
        assert!(rows[0].active);
        assert_eq!(rows[0].path, Path::new("/dev/pool1/0e9a-x"));
        assert!(rows[1].tags.is_empty() && !rows[1].active);
    }

    #[test]
    fn a_bad_report_is_an_error_naming_the_command() {
        for text in ["", "{}", r#"{"report":[{"vg":[{"vg_name":"x"}]}]}"#] {
            let e = parse_vgs(text).unwrap_err();
            assert!(e.to_string().contains("`vgs`"), "{e}");
        }
        let text = r#"{"report":[{"lv":[{"lv_name":"a", "vg_name":"v", "lv_tags":"", "lv_size":"1.5", "lv_path":"/dev/v/a", "lv_attr":""}]}]}"#;
        assert!(parse_lvs(text).unwrap_err().to_string().contains("lv_size"));
    }
}
