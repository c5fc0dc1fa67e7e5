//! A typed fio job: its options, their validation, and the command-line
//! options fio is given for it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::FioError;

/// Options set through typed fields, which `extra` may not repeat.
const TYPED_OPTIONS: &[&str] = &[
    "name",
    "filename",
    "rw",
    "readwrite",
    "bs",
    "blocksize",
    "iodepth",
    "size",
    "offset",
    "numjobs",
    "verify",
    "verify_pattern",
    "direct",
    "buffered",
    "ioengine",
    "fsync",
    "verify_only",
    "do_verify",
    "runtime",
    "time_based",
    "thread",
    "verify_state_save",
    "output-format",
    "output",
    "eta",
];

/// fio's `rw`: the I/O pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rw {
    /// Sequential reads.
    Read,
    /// Sequential writes.
    Write,
    /// Random reads.
    RandRead,
    /// Random writes.
    RandWrite,
    /// Mixed sequential reads and writes.
    ReadWrite,
    /// Mixed random reads and writes.
    RandRw,
}

impl Rw {
    fn writes(self) -> bool {
        !matches!(self, Rw::Read | Rw::RandRead)
    }
}

impl fmt::Display for Rw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rw::Read => "read",
            Rw::Write => "write",
            Rw::RandRead => "randread",
            Rw::RandWrite => "randwrite",
            Rw::ReadWrite => "readwrite",
            Rw::RandRw => "randrw",
        })
    }
}

impl FromStr for Rw {
    type Err = FioError;

    /// fio's names: read, write, randread, randwrite, readwrite (or rw), randrw.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "read" => Rw::Read,
            "write" => Rw::Write,
            "randread" => Rw::RandRead,
            "randwrite" => Rw::RandWrite,
            "readwrite" | "rw" => Rw::ReadWrite,
            "randrw" => Rw::RandRw,
            _ => {
                return Err(FioError::InvalidJob {
                    job: "-".into(),
                    reason: format!(
                    "unknown rw `{s}`: use read, write, randread, randwrite, readwrite or randrw"
                ),
                })
            }
        })
    }
}

/// fio's `verify`: how written blocks are checked when read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verify {
    /// CRC32 of each block, kept in a header in the block.
    Crc32,
    /// CRC32C (Castagnoli).
    Crc32c,
    /// MD5.
    Md5,
    /// SHA-256.
    Sha256,
    /// A fixed pattern written into every block, as hex: `0xdeadbeef`.
    Pattern(String),
}

impl fmt::Display for Verify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verify::Crc32 => f.write_str("crc32"),
            Verify::Crc32c => f.write_str("crc32c"),
            Verify::Md5 => f.write_str("md5"),
            Verify::Sha256 => f.write_str("sha256"),
            Verify::Pattern(p) => write!(f, "pattern:{p}"),
        }
    }
}

impl FromStr for Verify {
    type Err = FioError;

    /// `crc32`, `crc32c`, `md5`, `sha256` or `pattern:0x<hex>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = match s {
            "crc32" => Verify::Crc32,
            "crc32c" => Verify::Crc32c,
            "md5" => Verify::Md5,
            "sha256" => Verify::Sha256,
            _ => match s.strip_prefix("pattern:") {
                Some(p) => Verify::Pattern(p.to_string()),
                None => {
                    return Err(FioError::InvalidJob {
                        job: "-".into(),
                        reason: format!(
                        "unknown verify `{s}`: use crc32, crc32c, md5, sha256 or pattern:0x<hex>"
                    ),
                    })
                }
            },
        };
        v.check().map_err(|reason| FioError::InvalidJob {
            job: "-".into(),
            reason,
        })?;
        Ok(v)
    }
}

impl Verify {
    fn check(&self) -> Result<(), String> {
        let Verify::Pattern(p) = self else {
            return Ok(());
        };
        let hex = p.strip_prefix("0x").unwrap_or_default();
        // fio keeps at most 512 pattern bytes (MAX_PATTERN_SIZE).
        if hex.is_empty()
            || !hex.len().is_multiple_of(2)
            || hex.len() > 1024
            || !hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(format!(
                "verify pattern `{p}` must be 0x followed by 1 to 512 bytes in hex, e.g. 0xdeadbeef"
            ));
        }
        Ok(())
    }
}

/// One fio job. Build it with [`FioJob::new`] or [`FioJob::verify_randrw`]
/// and the setters; [`run`](super::run) validates it before starting fio.
#[derive(Debug, Clone, PartialEq)]
pub struct FioJob {
    /// Job name (fio's `--name`); unique within one run.
    pub name: String,
    /// The file or block device.
    pub filename: PathBuf,
    /// I/O pattern.
    pub rw: Rw,
    /// Block size in bytes: a power of two, at least 512.
    pub bs: u32,
    /// Queue depth, at least 1.
    pub iodepth: u32,
    /// Bytes of the region the job covers: a multiple of `bs`, not 0.
    pub size: u64,
    /// Start of the region, a multiple of `bs`.
    pub offset: u64,
    /// Copies of the job running at once.
    pub numjobs: u32,
    /// How to verify what was written; `None`: no verification.
    pub verify: Option<Verify>,
    /// O_DIRECT I/O (bypasses the page cache; not supported by tmpfs).
    pub direct: bool,
    /// I/O engine, e.g. `libaio`, `psync`.
    pub ioengine: String,
    /// fsync after this many writes.
    pub fsync: Option<u32>,
    /// Only verify what an earlier run with the same options wrote.
    pub verify_only: bool,
    /// Run the verify phase after writing (fio's default).
    pub do_verify: bool,
    /// Run for this long, repeating the workload (time_based); not allowed
    /// with `verify`.
    pub runtime: Option<Duration>,
    /// Further fio options as `(name, value)`, passed as `--name=value`.
    pub extra: Vec<(String, String)>,
}

impl FioJob {
    /// A job over `size` bytes of `filename`, named after its pattern, with
    /// 4 KiB blocks, queue depth 1, libaio and O_DIRECT, no verification.
    pub fn new(filename: impl Into<PathBuf>, rw: Rw, size: u64) -> Self {
        Self {
            name: rw.to_string(),
            filename: filename.into(),
            rw,
            bs: 4096,
            iodepth: 1,
            size,
            offset: 0,
            numjobs: 1,
            verify: None,
            direct: true,
            ioengine: "libaio".to_string(),
            fsync: None,
            verify_only: false,
            do_verify: true,
            runtime: None,
            extra: Vec::new(),
        }
    }

    /// Random reads and writes over `size` bytes, every written block
    /// checked with CRC32: the basic data-integrity job.
    pub fn verify_randrw(filename: impl Into<PathBuf>, size: u64) -> Self {
        Self::new(filename, Rw::RandRw, size).verify(Verify::Crc32)
    }

    /// Sets the job name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the block size in bytes.
    pub fn bs(mut self, bs: u32) -> Self {
        self.bs = bs;
        self
    }

    /// Sets the queue depth.
    pub fn iodepth(mut self, iodepth: u32) -> Self {
        self.iodepth = iodepth;
        self
    }

    /// Sets the start of the region in bytes.
    pub fn offset(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }

    /// Sets the number of copies of the job.
    pub fn numjobs(mut self, numjobs: u32) -> Self {
        self.numjobs = numjobs;
        self
    }

    /// Verifies written blocks with `verify`.
    pub fn verify(mut self, verify: Verify) -> Self {
        self.verify = Some(verify);
        self
    }

    /// Turns O_DIRECT on or off.
    pub fn direct(mut self, direct: bool) -> Self {
        self.direct = direct;
        self
    }

    /// Sets the I/O engine.
    pub fn ioengine(mut self, ioengine: impl Into<String>) -> Self {
        self.ioengine = ioengine.into();
        self
    }

    /// fsyncs after every `writes` writes.
    pub fn fsync(mut self, writes: u32) -> Self {
        self.fsync = Some(writes);
        self
    }

    /// Only verifies, without writing: the data must have been written by an
    /// earlier job with the same region, pattern and verify method.
    pub fn verify_only(mut self, on: bool) -> Self {
        self.verify_only = on;
        self
    }

    /// Whether to run the verify phase after writing (default on).
    pub fn do_verify(mut self, on: bool) -> Self {
        self.do_verify = on;
        self
    }

    /// Runs for `runtime`, repeating the workload (not with verify).
    pub fn runtime(mut self, runtime: Duration) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Adds a fio option not covered by a typed setter.
    pub fn extra(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    /// Checks the job on its own; [`run`](super::run) also checks jobs against each other.
    pub fn validate(&self) -> Result<(), FioError> {
        self.problem().map_or(Ok(()), |reason| {
            Err(FioError::InvalidJob {
                job: self.name.clone(),
                reason,
            })
        })
    }

    fn problem(&self) -> Option<String> {
        let verifies = self.verify.is_some();
        let checks: &[(bool, &dyn Fn() -> String)] = &[
            (
                self.name.trim().is_empty() || self.name.contains(['\n', '\0']),
                &|| "the name must be non-empty, on one line".into(),
            ),
            (self.filename.as_os_str().is_empty(), &|| {
                "filename is empty: give a file or block device".into()
            }),
            // fio splits filename on ':' into several files.
            (self.filename.to_string_lossy().contains(':'), &|| {
                format!(
                    "filename {} contains ':', which fio reads as a list of files",
                    self.filename.display()
                )
            }),
            (self.bs < 512 || !self.bs.is_power_of_two(), &|| {
                format!("bs {} must be a power of two of at least 512", self.bs)
            }),
            (
                self.size == 0 || !self.size.is_multiple_of(u64::from(self.bs)),
                &|| {
                    format!(
                        "size {} must be a non-zero multiple of bs {}",
                        self.size, self.bs
                    )
                },
            ),
            (!self.offset.is_multiple_of(u64::from(self.bs)), &|| {
                format!(
                    "offset {} must be a multiple of bs {}",
                    self.offset, self.bs
                )
            }),
            (self.iodepth == 0, &|| "iodepth must be at least 1".into()),
            (self.numjobs == 0, &|| "numjobs must be at least 1".into()),
            (self.fsync == Some(0), &|| {
                "fsync must be at least 1 write; leave it unset for none".into()
            }),
            (
                self.ioengine.is_empty()
                    || !self
                        .ioengine
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                &|| {
                    format!(
                        "ioengine `{}` is not an engine name such as libaio or psync",
                        self.ioengine
                    )
                },
            ),
            (verifies && self.runtime.is_some(), &|| {
                "runtime (time_based) cuts fio's verify phase short: bound a verify job by size instead".into()
            }),
            (self.verify_only && !verifies, &|| {
                "verify_only needs a verify method".into()
            }),
            (self.verify_only && !self.do_verify, &|| {
                "verify_only without do_verify verifies nothing: keep do_verify on".into()
            }),
            (verifies && self.numjobs > 1 && self.writes(), &|| {
                "numjobs > 1 makes the copies write the same blocks, so verify fails: \
                 use several jobs with distinct offsets instead"
                    .into()
            }),
            (self.runtime.is_some_and(|r| r.as_millis() == 0), &|| {
                "runtime must be at least 1 ms".into()
            }),
        ];
        if let Some((_, reason)) = checks.iter().find(|(bad, _)| *bad) {
            return Some(reason());
        }
        if let Some(Err(reason)) = self.verify.as_ref().map(Verify::check) {
            return Some(reason);
        }
        self.extra.iter().find_map(|(name, value)| {
            let key = name.trim_start_matches('-');
            if key.is_empty() || key.contains(['=', ' ']) || value.contains(['\n', '\0']) {
                Some(format!("extra option `{name}={value}` is not a fio option"))
            } else if TYPED_OPTIONS.contains(&key) {
                Some(format!(
                    "extra option `{key}` is set through a typed field of FioJob: use that"
                ))
            } else if verifies && key == "continue_on_error" {
                Some("continue_on_error would let a verify job pass over verify errors".into())
            } else {
                None
            }
        })
    }

    /// Whether the job writes to its region.
    pub(super) fn writes(&self) -> bool {
        self.rw.writes() && !self.verify_only
    }

    /// fio command-line options for this job, starting with `--name`.
    pub(super) fn args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--name={}", self.name),
            format!("--filename={}", self.filename.display()),
            format!("--rw={}", self.rw),
            format!("--bs={}", self.bs),
            format!("--iodepth={}", self.iodepth),
            format!("--size={}", self.size),
            format!("--offset={}", self.offset),
            format!("--numjobs={}", self.numjobs),
            format!("--direct={}", u8::from(self.direct)),
            format!("--ioengine={}", self.ioengine),
        ];
        match &self.verify {
            Some(Verify::Pattern(p)) => {
                args.push("--verify=pattern".into());
                args.push(format!("--verify_pattern={p}"));
            }
            Some(v) => args.push(format!("--verify={v}")),
            None => {}
        }
        if self.verify.is_some() {
            args.push(format!("--do_verify={}", u8::from(self.do_verify)));
            args.push(format!("--verify_only={}", u8::from(self.verify_only)));
        }
        if let Some(n) = self.fsync {
            args.push(format!("--fsync={n}"));
        }
        if let Some(r) = self.runtime {
            args.push("--time_based=1".into());
            args.push(format!("--runtime={}ms", r.as_millis()));
        }
        args.extend(
            self.extra
                .iter()
                .map(|(k, v)| format!("--{}={v}", k.trim_start_matches('-'))),
        );
        args
    }

    pub(super) fn region(&self) -> (u64, u64) {
        (self.offset, self.offset.saturating_add(self.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(job: &FioJob) -> String {
        match job.validate() {
            Err(FioError::InvalidJob { reason, .. }) => reason,
            other => panic!("expected an invalid job, got {other:?}"),
        }
    }

    #[test]
    fn builder_makes_the_basic_verify_job() {
        let job = FioJob::verify_randrw("/dev/nvme0n1", 32 << 20)
            .bs(4096)
            .iodepth(1)
            .verify(Verify::Crc32);
        job.validate().unwrap();
        assert_eq!(
            job.args(),
            [
                "--name=randrw",
                "--filename=/dev/nvme0n1",
                "--rw=randrw",
                "--bs=4096",
                "--iodepth=1",
                "--size=33554432",
                "--offset=0",
                "--numjobs=1",
                "--direct=1",
                "--ioengine=libaio",
                "--verify=crc32",
                "--do_verify=1",
                "--verify_only=0",
            ]
        );
    }

    #[test]
    fn setters_reach_the_command_line() {
        let job = FioJob::new("/tmp/f", Rw::Write, 1 << 20)
            .name("w1")
            .bs(8192)
            .iodepth(8)
            .offset(1 << 20)
            .direct(false)
            .ioengine("psync")
            .fsync(4)
            .verify(Verify::Pattern("0xdeadbeef".into()))
            .do_verify(false)
            .extra("randseed", "7");
        job.validate().unwrap();
        let args = job.args().join(" ");
        for part in [
            "--name=w1",
            "--bs=8192",
            "--iodepth=8",
            "--offset=1048576",
            "--direct=0",
            "--ioengine=psync",
            "--fsync=4",
            "--verify=pattern --verify_pattern=0xdeadbeef",
            "--do_verify=0",
            "--randseed=7",
        ] {
            assert!(args.contains(part), "{part} missing from {args}");
        }
        let timed = FioJob::new("/tmp/f", Rw::RandRead, 4096).runtime(Duration::from_secs(2));
        assert!(timed
            .args()
            .join(" ")
            .ends_with("--time_based=1 --runtime=2000ms"));
    }

    #[test]
    fn bad_jobs_are_refused_with_the_reason() {
        let base = || FioJob::verify_randrw("/dev/nvme0n1", 1 << 20);
        for (job, says) in [
            (base().bs(1000), "power of two"),
            (base().bs(256), "at least 512"),
            (base().bs(0), "power of two"),
            (FioJob::new("/f", Rw::Read, 0), "non-zero multiple"),
            (FioJob::new("/f", Rw::Read, 4097), "non-zero multiple"),
            (base().offset(100), "offset 100"),
            (base().iodepth(0), "iodepth"),
            (base().numjobs(0), "numjobs must"),
            (base().numjobs(2), "same blocks"),
            (
                base().runtime(Duration::from_secs(5)),
                "cuts fio's verify phase short",
            ),
            (
                FioJob::new("/f", Rw::Read, 4096).verify_only(true),
                "needs a verify",
            ),
            (
                base().verify_only(true).do_verify(false),
                "verifies nothing",
            ),
            (FioJob::new("", Rw::Read, 4096), "filename is empty"),
            (FioJob::new("/a:b", Rw::Read, 4096), "list of files"),
            (base().name(" "), "name"),
            (base().fsync(0), "fsync"),
            (base().ioengine("lib aio"), "ioengine"),
            (
                base().verify(Verify::Pattern("deadbeef".into())),
                "0x followed",
            ),
            (
                base().verify(Verify::Pattern("0xabc".into())),
                "0x followed",
            ),
            (base().extra("runtime", "10"), "typed field"),
            (base().extra("--time_based", "1"), "typed field"),
            (
                base().extra("continue_on_error", "all"),
                "continue_on_error",
            ),
            (base().extra("a=b", "1"), "not a fio option"),
        ] {
            let r = reason(&job);
            assert!(r.contains(says), "{says:?} not in {r:?}");
        }
        // Several copies are fine when nothing is verified.
        FioJob::new("/f", Rw::RandRead, 4096)
            .numjobs(4)
            .validate()
            .unwrap();
    }

    #[test]
    fn rw_and_verify_parse_from_fio_names() {
        for rw in [
            Rw::Read,
            Rw::Write,
            Rw::RandRead,
            Rw::RandWrite,
            Rw::ReadWrite,
            Rw::RandRw,
        ] {
            assert_eq!(rw.to_string().parse::<Rw>().unwrap(), rw);
        }
        assert_eq!("rw".parse::<Rw>().unwrap(), Rw::ReadWrite);
        assert!("random"
            .parse::<Rw>()
            .unwrap_err()
            .to_string()
            .contains("randrw"));
        for v in ["crc32", "crc32c", "md5", "sha256", "pattern:0x00ff"] {
            assert_eq!(v.parse::<Verify>().unwrap().to_string(), v);
        }
        assert!("pattern:zz".parse::<Verify>().is_err());
        assert!("xxhash"
            .parse::<Verify>()
            .unwrap_err()
            .to_string()
            .contains("crc32c"));
    }
}
