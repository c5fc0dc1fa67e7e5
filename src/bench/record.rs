//! `bench.json`: everything one `vm bench` measured, its table, the goals
//! it is held to, and its comparison with an earlier record.
//!
//! The schema (version [`SCHEMA`]), all times in seconds unless a field's
//! name says `_ms` or `_us`:
//!
//! - `schema`, `profile` (the binary's cargo profile), `accel` (`kvm` or
//!   `tcg`).
//! - `runs`: one [`Sample`] per `vm run basic`: `ready_secs`,
//!   `category_secs`, `fio_secs`, `case_overhead_secs` (case → seconds
//!   beyond its fio steps), `target_rss_mib`, `initiator_rss_mib`.
//! - `medians`: the same, each the median over the runs, and
//!   `overhead_secs` (category beyond fio).
//! - `data_path`: per job a [`Row`]: `local` and `fabric` figures (`job`,
//!   `iops`, `mib_per_sec`, `p50_us`, `p99_us`) and `iops_ratio`,
//!   `p50_ratio`, `p99_ratio` (fabric / local).
//! - `control`: `list`, `create_share`, `unshare_destroy`, each `calls`,
//!   `p50_ms`, `p99_ms`, `max_ms`.
//! - `scale`: `up` (`bdevs`, `share_secs`, `per_share`, `last_first_ratio`,
//!   `discover_secs`, `discovered`, `connect_secs`), `agent_rss_mib` (while
//!   all are shared), `down` (`bdevs`, `disconnect_secs`,
//!   `unshare_destroy_secs`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::control::ControlPath;
use super::data_path::{ratio, Row};
use super::sample::{table as runs_table, Medians, Sample};
use super::{scale, BenchError};

/// The version of `bench.json`'s layout.
pub const SCHEMA: u32 = 1;

/// The scale bench's halves and the agent's memory between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    /// Shares, discovery, connects.
    pub up: scale::Up,
    /// The agent's resident memory while all were shared, MiB.
    pub agent_rss_mib: f64,
    /// Disconnects, unshares, destroys.
    pub down: scale::Down,
}

/// One `vm bench`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRecord {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The binary's cargo profile.
    pub profile: String,
    /// `kvm` or `tcg`.
    pub accel: String,
    /// One per run of `basic`.
    pub runs: Vec<Sample>,
    /// Their medians.
    pub medians: Medians,
    /// Local vs fabric, per job.
    pub data_path: Vec<Row>,
    /// Call latencies.
    pub control: ControlPath,
    /// Many bdevs.
    pub scale: Scale,
}

/// Whether a figure is better lower or higher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Times, memory.
    Lower,
    /// Rates.
    Higher,
}

/// A goal of the benchmark: a figure and its bound.
struct Goal {
    figure: &'static str,
    bound: f64,
    unit: &'static str,
}

/// The goals `vm bench` reports on (the README's Benchmark section).
const GOALS: [Goal; 4] = [
    Goal {
        figure: "ready_secs",
        bound: 1.5,
        unit: "s",
    },
    Goal {
        figure: "overhead_secs",
        bound: 1.5,
        unit: "s",
    },
    Goal {
        figure: "control.list.p50_ms",
        bound: 5.0,
        unit: "ms",
    },
    Goal {
        figure: "scale.share_secs",
        bound: 10.0,
        unit: "s",
    },
];

impl BenchRecord {
    /// Reads a record written by [`BenchRecord::write`].
    pub fn load(path: &Path) -> Result<Self, BenchError> {
        let bad = |reason: String| BenchError::Record {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        match value.get("schema").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(SCHEMA) => {}
            other => {
                return Err(bad(format!(
                    "schema {other:?}, this nvmfcheck reads schema {SCHEMA}: compare with a \
                     bench.json this version wrote"
                )))
            }
        }
        serde_json::from_value(value).map_err(|e| bad(format!("not a bench record: {e}")))
    }

    /// Writes it as `bench.json` in `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), BenchError> {
        let path = dir.join("bench.json");
        let bad = |reason: String| BenchError::Record {
            path: path.clone(),
            reason,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| bad(e.to_string()))?;
        crate::atomic_file::replace(&path, text.as_bytes()).map_err(|e| bad(e.to_string()))
    }

    /// Its headline figures by name, each with the way it is better.
    pub fn figures(&self) -> Vec<(String, f64, Better)> {
        use Better::{Higher, Lower};
        let m = &self.medians;
        let mut f = vec![
            ("ready_secs".to_string(), m.ready_secs, Lower),
            ("basic_secs".into(), m.category_secs, Lower),
            ("fio_secs".into(), m.fio_secs, Lower),
            ("overhead_secs".into(), m.overhead_secs, Lower),
        ];
        for (case, secs) in &m.case_overhead_secs {
            f.push((format!("overhead_secs.{case}"), *secs, Lower));
        }
        f.push(("target_rss_mib".into(), m.target_rss_mib, Lower));
        f.push(("initiator_rss_mib".into(), m.initiator_rss_mib, Lower));
        for row in &self.data_path {
            let job = &row.local.job;
            f.push((format!("{job}.fabric_iops"), row.fabric.iops, Higher));
            f.push((format!("{job}.iops_ratio"), row.iops_ratio, Higher));
            f.push((format!("{job}.p50_ratio"), row.p50_ratio, Lower));
            f.push((format!("{job}.p99_ratio"), row.p99_ratio, Lower));
        }
        for (call, l) in [
            ("list", &self.control.list),
            ("create_share", &self.control.create_share),
            ("unshare_destroy", &self.control.unshare_destroy),
        ] {
            f.push((format!("control.{call}.p50_ms"), l.p50_ms, Lower));
            f.push((format!("control.{call}.p99_ms"), l.p99_ms, Lower));
        }
        let s = &self.scale;
        f.extend([
            ("scale.share_secs".to_string(), s.up.share_secs, Lower),
            (
                "scale.last_first_ratio".into(),
                s.up.last_first_ratio,
                Lower,
            ),
            ("scale.discover_secs".into(), s.up.discover_secs, Lower),
            ("scale.connect_secs".into(), s.up.connect_secs, Lower),
            ("scale.agent_rss_mib".into(), s.agent_rss_mib, Lower),
            (
                "scale.disconnect_secs".into(),
                s.down.disconnect_secs,
                Lower,
            ),
            (
                "scale.unshare_destroy_secs".into(),
                s.down.unshare_destroy_secs,
                Lower,
            ),
        ]);
        f
    }

    fn figure(&self, name: &str) -> Option<f64> {
        self.figures()
            .into_iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| v)
    }

    /// Everything as the tables `vm bench` prints.
    pub fn table(&self) -> String {
        let accel = self.accel.to_uppercase();
        let mut out = format!(
            "boot and overhead: {} runs of `vm run basic` ({} binary, {accel})\n{}\n",
            self.runs.len(),
            self.profile,
            runs_table(&self.runs)
        );
        out += &format!(
            "data path: the same fio jobs ({accel}: both sides emulated, read the ratios)\n\
             {:<17} {:>10} {:>11} {:>6}  {:>17} {:>17} {:>6} {:>6}\n",
            "job",
            "local_iops",
            "fabric_iops",
            "ratio",
            "local_p50/p99_us",
            "fabric_p50/p99_us",
            "p50_x",
            "p99_x"
        );
        for r in &self.data_path {
            out += &format!(
                "{:<17} {:>10.0} {:>11.0} {:>6.2}  {:>17} {:>17} {:>6.2} {:>6.2}\n",
                r.local.job,
                r.local.iops,
                r.fabric.iops,
                r.iops_ratio,
                format!("{:.0}/{:.0}", r.local.p50_us, r.local.p99_us),
                format!("{:.0}/{:.0}", r.fabric.p50_us, r.fabric.p99_us),
                r.p50_ratio,
                r.p99_ratio
            );
        }
        let c = &self.control;
        out += &format!(
            "\ncontrol path: {} calls each, one at a time, from the initiator over the VM link\n\
             {:<17} {:>8} {:>8} {:>8}\n",
            c.list.calls, "call", "p50_ms", "p99_ms", "max_ms"
        );
        for (call, l) in [
            ("List", &c.list),
            ("Create+Share", &c.create_share),
            ("Unshare+Destroy", &c.unshare_destroy),
        ] {
            out += &format!(
                "{call:<17} {:>8.2} {:>8.2} {:>8.2}\n",
                l.p50_ms, l.p99_ms, l.max_ms
            );
        }
        let s = &self.scale;
        out += &format!(
            "\nscale: {} malloc bdevs\n\
             create+share all {:.2} s (each p50 {:.1} ms, p99 {:.1} ms; last {ENDS} / first \
             {ENDS} {:.2}); discover {:.2} s ({} listed); connect all {:.2} s; agent RSS {:.1} \
             MiB; disconnect all {:.2} s; unshare+destroy all {:.2} s\n",
            s.up.bdevs,
            s.up.share_secs,
            s.up.per_share.p50_ms,
            s.up.per_share.p99_ms,
            s.up.last_first_ratio,
            s.up.discover_secs,
            s.up.discovered,
            s.up.connect_secs,
            s.agent_rss_mib,
            s.down.disconnect_secs,
            s.down.unshare_destroy_secs,
            ENDS = scale::ENDS,
        );
        out += "\ngoals:\n";
        for g in &GOALS {
            let value = self.figure(g.figure).unwrap_or(f64::NAN);
            let verdict = if value <= g.bound {
                "met".to_string()
            } else {
                format!("missed by {:.2} {}", value - g.bound, g.unit)
            };
            out += &format!(
                "  {} <= {} {}: {value:.2} {} ({verdict})\n",
                g.figure, g.bound, g.unit, g.unit
            );
        }
        out
    }
}

/// The figures of `new` against those of `old`: each ratio new / old, and
/// whether the change is for the better. Figures only one of them has are
/// left out.
pub fn compare(old: &BenchRecord, new: &BenchRecord) -> String {
    let mut out = format!(
        "{:<34} {:>10} {:>10} {:>8}\n",
        "figure", "old", "new", "new/old"
    );
    let olds = old.figures();
    for (name, value, better) in new.figures() {
        let Some((_, was, _)) = olds.iter().find(|(n, _, _)| *n == name) else {
            continue;
        };
        let r = ratio(value, *was);
        // Within 5% is noise on a shared host.
        let verdict = match better {
            _ if (r - 1.0).abs() < 0.05 || r == 0.0 => "",
            Better::Lower if r < 1.0 => "better",
            Better::Higher if r > 1.0 => "better",
            _ => "worse",
        };
        out += &format!("{name:<34} {was:>10.2} {value:>10.2} {r:>8.2} {verdict}\n");
    }
    out
}

/// A made-up record for tests: one run whose ready time is `ready_secs`,
/// `List` at `list_ms`, every other figure fixed.
#[cfg(any(test, feature = "fakes"))]
pub fn example(ready_secs: f64, list_ms: f64) -> BenchRecord {
    use std::collections::BTreeMap;

    use crate::bench::data_path::Figures;
    use crate::bench::Latency;
    let sample = Sample {
        ready_secs,
        category_secs: 40.0,
        fio_secs: 30.0,
        case_overhead_secs: BTreeMap::from([("bad-input".to_string(), 5.0)]),
        target_rss_mib: 300,
        initiator_rss_mib: 350,
    };
    let latency = |ms: f64| Latency {
        calls: 1000,
        p50_ms: ms,
        p99_ms: ms * 2.0,
        max_ms: ms * 3.0,
    };
    let figures = |iops: f64| Figures {
        job: "randread-4k-qd1".into(),
        iops,
        mib_per_sec: iops / 256.0,
        p50_us: 1e6 / iops,
        p99_us: 2e6 / iops,
    };
    BenchRecord {
        schema: SCHEMA,
        profile: "release".into(),
        accel: "tcg".into(),
        medians: Medians::of(std::slice::from_ref(&sample)),
        runs: vec![sample],
        data_path: crate::bench::data_path::rows(&[figures(2000.0)], &[figures(1000.0)]),
        control: ControlPath {
            list: latency(list_ms),
            create_share: latency(20.0),
            unshare_destroy: latency(15.0),
        },
        scale: Scale {
            up: scale::Up {
                bdevs: 256,
                share_secs: 12.0,
                per_share: latency(40.0),
                last_first_ratio: 1.1,
                discover_secs: 0.5,
                discovered: 256,
                connect_secs: 30.0,
            },
            agent_rss_mib: 20.0,
            down: scale::Down {
                bdevs: 256,
                disconnect_secs: 5.0,
                unshare_destroy_secs: 8.0,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ready_secs: f64, list_ms: f64) -> BenchRecord {
        example(ready_secs, list_ms)
    }

    #[test]
    fn round_trips_through_bench_json() {
        let dir = tempfile::tempdir().unwrap();
        let r = record(2.0, 4.0);
        r.write(dir.path()).unwrap();
        assert_eq!(
            BenchRecord::load(&dir.path().join("bench.json")).unwrap(),
            r
        );
    }

    #[test]
    fn refuses_another_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.json");
        std::fs::write(&path, r#"{"schema": 2}"#).unwrap();
        let err = BenchRecord::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("schema Some(2), this nvmfcheck reads schema 1"),
            "{err}"
        );
    }

    #[test]
    fn table_says_which_goals_were_missed() {
        let t = record(2.0, 4.0).table();
        assert!(
            t.contains("ready_secs <= 1.5 s: 2.00 s (missed by 0.50 s)"),
            "{t}"
        );
        assert!(
            t.contains("control.list.p50_ms <= 5 ms: 4.00 ms (met)"),
            "{t}"
        );
        assert!(
            t.contains("scale.share_secs <= 10 s: 12.00 s (missed by 2.00 s)"),
            "{t}"
        );
        assert!(t.contains("randread-4k-qd1"), "{t}");
    }

    #[test]
    fn compare_gives_ratios_and_says_which_way() {
        let c = compare(&record(2.0, 4.0), &record(1.0, 4.1));
        let line = |name: &str| {
            c.lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} in {c}"))
                .to_string()
        };
        assert!(line("ready_secs").ends_with("0.50 better"), "{c}");
        // 2.5% slower is within the noise.
        assert!(line("control.list.p50_ms").ends_with("1.02 "), "{c}");
        assert!(line("scale.share_secs").contains("1.00"), "{c}");
    }
}
