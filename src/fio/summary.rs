//! fio's JSON output (`--output-format=json`), parsed into a summary.
//!
//! Field names are those of fio 3.33's `stat.c` (`show_thread_status_json`,
//! `add_ddir_status_json`, `add_ddir_lat_json`). Latency percentiles come
//! from `clat_ns` (completion latency): fio computes percentiles for it by
//! default (`clat_percentiles=1`), whereas `lat_ns` has them only with
//! `lat_percentiles=1`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What one fio run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FioSummary {
    /// One entry per job (a job with `numjobs` > 1 appears that many times).
    pub jobs: Vec<JobSummary>,
    /// fio's version, e.g. `fio-3.33`.
    pub fio_version: String,
    /// Wall time of the fio process, in seconds in JSON.
    #[serde(with = "seconds")]
    pub elapsed: Duration,
    /// The fio command line that ran, to repeat it by hand.
    pub command_line: String,
}

/// The result of one fio job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    /// The job's name.
    pub name: String,
    /// fio's error number for the job: 0 when it succeeded, 84 (EILSEQ)
    /// after a verify failure.
    pub error: i32,
    /// Reads (verify reads included).
    pub read: IoStats,
    /// Writes.
    pub write: IoStats,
}

/// Statistics of one direction of a job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IoStats {
    /// Bytes transferred.
    pub io_bytes: u64,
    /// I/O operations per second.
    pub iops: f64,
    /// Bandwidth in bytes per second.
    pub bw_bytes: u64,
    /// Median completion latency in nanoseconds (0 without samples).
    pub lat_p50_ns: u64,
    /// 99th percentile completion latency in nanoseconds (0 without samples).
    pub lat_p99_ns: u64,
}

#[derive(Deserialize)]
struct RawOutput {
    #[serde(rename = "fio version")]
    fio_version: String,
    jobs: Vec<RawJob>,
}

#[derive(Deserialize)]
struct RawJob {
    jobname: String,
    error: i32,
    read: RawDir,
    write: RawDir,
}

#[derive(Deserialize)]
struct RawDir {
    io_bytes: u64,
    iops: f64,
    bw_bytes: u64,
    clat_ns: RawLat,
}

#[derive(Deserialize)]
struct RawLat {
    // Absent when the direction had no samples.
    #[serde(default)]
    percentile: BTreeMap<String, u64>,
}

impl RawLat {
    /// fio's keys are `format!("{:f}", p)`: "50.000000", "99.000000".
    fn at(&self, p: f64) -> u64 {
        self.percentile
            .iter()
            .find(|(k, _)| k.parse::<f64>().is_ok_and(|k| (k - p).abs() < 1e-6))
            .map_or(0, |(_, v)| *v)
    }
}

impl From<RawDir> for IoStats {
    fn from(d: RawDir) -> Self {
        Self {
            io_bytes: d.io_bytes,
            iops: d.iops,
            bw_bytes: d.bw_bytes,
            lat_p50_ns: d.clat_ns.at(50.0),
            lat_p99_ns: d.clat_ns.at(99.0),
        }
    }
}

/// Parses fio's stdout. fio prints some errors on stdout before the JSON
/// (e.g. `fio: pid=..., err=84/...` after a verify failure), so the JSON is
/// taken from the first line that opens an object.
pub(super) fn parse(
    stdout: &str,
    elapsed: Duration,
    command_line: String,
) -> Result<FioSummary, String> {
    let start = if stdout.starts_with('{') {
        0
    } else {
        stdout
            .find("\n{")
            .map(|i| i + 1)
            .ok_or("it printed no JSON object")?
    };
    let mut de = serde_json::Deserializer::from_str(&stdout[start..]);
    let raw = RawOutput::deserialize(&mut de).map_err(|e| format!("unexpected JSON: {e}"))?;
    Ok(FioSummary {
        jobs: raw
            .jobs
            .into_iter()
            .map(|j| JobSummary {
                name: j.jobname,
                error: j.error,
                read: j.read.into(),
                write: j.write.into(),
            })
            .collect(),
        fio_version: raw.fio_version,
        elapsed,
        command_line,
    })
}

/// A `Duration` as a number of seconds.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from fio 3.33 (`fio --output-format=json --eta=never --name=a
    // --filename=... --rw=randrw --bs=4096 --size=4M --ioengine=psync
    // --verify=crc32`), trimmed to the fields stat.c's
    // `add_ddir_status_json()` writes that matter here, plus one field it
    // writes that we ignore (`job options`).
    const OUTPUT: &str = r#"{
  "fio version" : "fio-3.33",
  "timestamp" : 1795616322,
  "jobs" : [
    {
      "jobname" : "a",
      "groupid" : 0,
      "error" : 0,
      "job options" : { "name" : "a", "rw" : "randrw" },
      "read" : {
        "io_bytes" : 4194304,
        "bw_bytes" : 87381333,
        "iops" : 85333.333333,
        "clat_ns" : {
          "min" : 300, "max" : 40000, "mean" : 800.5, "stddev" : 10.0, "N" : 1024,
          "percentile" : { "1.000000" : 310, "50.000000" : 724, "99.000000" : 2008, "99.990000" : 39000 }
        },
        "lat_ns" : { "min" : 310, "max" : 41000, "mean" : 900.1, "stddev" : 11.0, "N" : 1024 }
      },
      "write" : {
        "io_bytes" : 0,
        "bw_bytes" : 0,
        "iops" : 0.000000,
        "clat_ns" : { "min" : 0, "max" : 0, "mean" : 0.0, "stddev" : 0.0, "N" : 0 },
        "lat_ns" : { "min" : 0, "max" : 0, "mean" : 0.0, "stddev" : 0.0, "N" : 0 }
      }
    }
  ]
}
"#;

    #[test]
    fn parses_jobs_stats_and_percentiles() {
        let s = parse(OUTPUT, Duration::from_millis(350), "fio ...".into()).unwrap();
        assert_eq!(s.fio_version, "fio-3.33");
        assert_eq!(s.jobs.len(), 1);
        let j = &s.jobs[0];
        assert_eq!(j.name, "a");
        assert_eq!(j.error, 0);
        assert_eq!(j.read.io_bytes, 4_194_304);
        assert_eq!(j.read.bw_bytes, 87_381_333);
        assert!((j.read.iops - 85_333.333_333).abs() < 1e-6);
        assert_eq!((j.read.lat_p50_ns, j.read.lat_p99_ns), (724, 2008));
        // No samples: fio writes no "percentile" object.
        assert_eq!(j.write, IoStats::default());
    }

    #[test]
    fn skips_what_fio_prints_before_the_json() {
        let out = format!(
            "fio: pid=15473, err=84/file:io_u.c:2152, func=io_u_sync_complete, error=Invalid or \
             incomplete multibyte or wide character\n{OUTPUT}"
        );
        let s = parse(&out, Duration::ZERO, String::new()).unwrap();
        assert_eq!(s.jobs[0].name, "a");
    }

    #[test]
    fn rejects_output_without_a_summary() {
        let err = parse("", Duration::ZERO, String::new()).unwrap_err();
        assert!(err.contains("no JSON"), "{err}");
        let err = parse("{\"jobs\":[]}", Duration::ZERO, String::new()).unwrap_err();
        assert!(err.contains("fio version"), "{err}");
    }

    #[test]
    fn serializes_elapsed_as_seconds() {
        let s = parse(OUTPUT, Duration::from_millis(1500), "fio x".into()).unwrap();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["elapsed"], 1.5);
        assert_eq!(json["jobs"][0]["read"]["lat_p99_ns"], 2008);
        let back: FioSummary = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
    }

    /// Properties over generated fio output (see `crate::props`).
    mod props {
        use proptest::prelude::*;
        use serde_json::{json, Value};

        use super::*;
        use crate::props::{assert_one_line, config, json_output, json_with, text};

        /// The percentiles fio reports by default; its keys are C's `%f` of
        /// them ("50.000000").
        const PERCENTILES: [f64; 9] = [1.0, 5.0, 10.0, 50.0, 90.0, 95.0, 99.0, 99.5, 99.99];

        /// One direction of a job: its stats and fio's JSON for them
        /// (no percentile object when it had no samples).
        fn direction() -> impl Strategy<Value = (IoStats, Value)> {
            (
                any::<u64>(),
                0..u64::MAX / 2,
                any::<u64>(),
                prop::option::of(any::<[u64; 9]>()),
            )
                .prop_map(|(io_bytes, micro_iops, bw_bytes, lat)| {
                    let iops = micro_iops as f64 / 1e6;
                    let mut clat = json!({ "min": 0, "max": 0, "mean": 0.0, "N": 0 });
                    let (mut p50, mut p99) = (0, 0);
                    if let Some(lat) = lat {
                        let keys = PERCENTILES.iter().map(|p| format!("{p:.6}"));
                        clat["percentile"] = keys
                            .clone()
                            .zip(lat.map(Value::from))
                            .collect::<serde_json::Map<_, _>>()
                            .into();
                        (p50, p99) = (lat[3], lat[6]);
                    }
                    let stats = IoStats {
                        io_bytes,
                        iops,
                        bw_bytes,
                        lat_p50_ns: p50,
                        lat_p99_ns: p99,
                    };
                    let raw = json!({
                        "io_bytes": io_bytes, "bw_bytes": bw_bytes, "iops": iops,
                        "clat_ns": clat, "lat_ns": { "min": 0, "N": 0 },
                    });
                    (stats, raw)
                })
        }

        /// A job and fio's JSON for it.
        fn job() -> impl Strategy<Value = (JobSummary, Value)> {
            (text(12), any::<i32>(), direction(), direction()).prop_map(
                |(name, error, (read, r), (write, w))| {
                    let raw = json!({
                        "jobname": name, "groupid": 0, "error": error,
                        "job options": { "name": name }, "read": r, "write": w,
                    });
                    (
                        JobSummary {
                            name,
                            error,
                            read,
                            write,
                        },
                        raw,
                    )
                },
            )
        }

        /// iops goes through a decimal number: equal to the last few bits.
        fn same_stats(got: &IoStats, want: &IoStats) -> bool {
            let iops = (got.iops - want.iops).abs() <= want.iops * 1e-12;
            iops && IoStats {
                iops: want.iops,
                ..got.clone()
            } == *want
        }

        proptest! {
            #![proptest_config(config(256))]

            #[test]
            fn any_output_is_parsed_or_refused(
                out in prop_oneof![
                    json_output(&["fio version", "jobs"], OUTPUT),
                    proptest::collection::vec(json_with(&["jobname", "error", "read", "write"]), 0..3)
                        .prop_map(|jobs| json!({ "fio version": "fio-3.33", "jobs": jobs }).to_string()),
                ]
            ) {
                if let Err(reason) = parse(&out, Duration::ZERO, String::new()) {
                    assert_one_line(&reason);
                }
            }

            /// fio's output, after whatever lines it printed before it,
            /// gives the jobs it was made from.
            #[test]
            fn output_gives_its_jobs(
                jobs in proptest::collection::vec(job(), 0..4),
                version in text(10),
                before in proptest::collection::vec("[^{\n][^\n]{0,30}", 0..3),
            ) {
                let raw: Vec<&Value> = jobs.iter().map(|(_, raw)| raw).collect();
                let doc = json!({ "fio version": version, "timestamp": 1, "jobs": raw });
                let mut out: String = before.iter().map(|l| format!("{l}\n")).collect();
                out.push_str(&serde_json::to_string_pretty(&doc).unwrap());
                let s = parse(&out, Duration::from_millis(7), "fio x".into()).unwrap();
                prop_assert_eq!((&s.fio_version, s.elapsed, s.command_line.as_str()), (&version, Duration::from_millis(7), "fio x"));
                prop_assert_eq!(s.jobs.len(), jobs.len());
                for (got, (want, _)) in s.jobs.iter().zip(&jobs) {
                    prop_assert_eq!((&got.name, got.error), (&want.name, want.error));
                    prop_assert!(same_stats(&got.read, &want.read), "{:?} {:?}", got.read, want.read);
                    prop_assert!(same_stats(&got.write, &want.write), "{:?} {:?}", got.write, want.write);
                }
            }
        }
    }
}
