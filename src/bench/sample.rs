//! What one `vm run basic` cost, taken from its report and the runner's
//! measurements, and the medians over several runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::median;
use crate::suite::report::{CaseReport, Report};

/// What one run cost. Times are in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// From QEMU start until both VMs were ready (agent answering,
    /// initiator's daemon up).
    pub ready_secs: f64,
    /// Wall time of the category.
    pub category_secs: f64,
    /// Time in fio steps.
    pub fio_secs: f64,
    /// Each case's wall time beyond its fio steps: where the overhead is.
    pub case_overhead_secs: BTreeMap<String, f64>,
    /// Peak RSS of the target's QEMU, in MiB.
    pub target_rss_mib: u64,
    /// Peak RSS of the initiator's QEMU, in MiB.
    pub initiator_rss_mib: u64,
}

impl Sample {
    /// Reads the category's times out of a report; `None` if the report
    /// lacks the category or it has no fio step (it measured nothing).
    pub fn new(
        report: &Report,
        category: &str,
        ready_secs: f64,
        rss_mib: (u64, u64),
    ) -> Option<Self> {
        let cat = report.category(category)?;
        if !cat
            .cases
            .iter()
            .flat_map(|c| &c.steps)
            .any(|s| s.fio.is_some())
        {
            return None;
        }
        let fio_of = |case: &CaseReport| -> f64 {
            case.steps
                .iter()
                .filter(|s| s.fio.is_some())
                .map(|s| s.duration_secs)
                .sum()
        };
        Some(Self {
            ready_secs,
            category_secs: cat.duration_secs,
            fio_secs: cat.cases.iter().map(fio_of).sum(),
            case_overhead_secs: cat
                .cases
                .iter()
                .map(|c| (c.name.clone(), (c.duration_secs - fio_of(c)).max(0.0)))
                .collect(),
            target_rss_mib: rss_mib.0,
            initiator_rss_mib: rss_mib.1,
        })
    }

    /// The category's wall time beyond its fio steps.
    pub fn overhead_secs(&self) -> f64 {
        (self.category_secs - self.fio_secs).max(0.0)
    }
}

/// One column of the runs table.
struct Column {
    name: &'static str,
    value: fn(&Sample) -> f64,
}

const COLUMNS: [Column; 6] = [
    Column {
        name: "ready_s",
        value: |s| s.ready_secs,
    },
    Column {
        name: "basic_s",
        value: |s| s.category_secs,
    },
    Column {
        name: "fio_s",
        value: |s| s.fio_secs,
    },
    Column {
        name: "overhead_s",
        value: Sample::overhead_secs,
    },
    Column {
        name: "target_rss_mib",
        value: |s| s.target_rss_mib as f64,
    },
    Column {
        name: "initiator_rss_mib",
        value: |s| s.initiator_rss_mib as f64,
    },
];

/// The medians of a set of runs, each column's taken on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Medians {
    /// Both VMs ready, in seconds.
    pub ready_secs: f64,
    /// The category's wall time, in seconds.
    pub category_secs: f64,
    /// Its fio steps, in seconds.
    pub fio_secs: f64,
    /// Its wall time beyond the fio steps, in seconds.
    pub overhead_secs: f64,
    /// Each case's wall time beyond its fio steps, in seconds.
    pub case_overhead_secs: BTreeMap<String, f64>,
    /// Peak RSS of the target's QEMU, in MiB.
    pub target_rss_mib: f64,
    /// Peak RSS of the initiator's QEMU, in MiB.
    pub initiator_rss_mib: f64,
}

impl Medians {
    /// The medians of `samples`.
    pub fn of(samples: &[Sample]) -> Self {
        let col = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
        let names: std::collections::BTreeSet<&String> = samples
            .iter()
            .flat_map(|s| s.case_overhead_secs.keys())
            .collect();
        Self {
            ready_secs: col(|s| s.ready_secs),
            category_secs: col(|s| s.category_secs),
            fio_secs: col(|s| s.fio_secs),
            overhead_secs: col(Sample::overhead_secs),
            case_overhead_secs: names
                .into_iter()
                .map(|n| {
                    let values = samples
                        .iter()
                        .filter_map(|s| s.case_overhead_secs.get(n).copied())
                        .collect();
                    (n.clone(), median(values))
                })
                .collect(),
            target_rss_mib: col(|s| s.target_rss_mib as f64),
            initiator_rss_mib: col(|s| s.initiator_rss_mib as f64),
        }
    }
}

/// The samples as a table, a row per run and a last row of medians (each
/// column's median taken on its own), then each case's median overhead.
pub fn table(samples: &[Sample]) -> String {
    let line = |name: &str, values: Vec<f64>| {
        let cells: Vec<String> = COLUMNS
            .iter()
            .zip(values)
            .map(|(c, v)| format!("{v:>w$.2}", w = c.name.len()))
            .collect();
        format!("{name:<6} {}\n", cells.join("  "))
    };
    let heads: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
    let mut out = format!("{:<6} {}\n", "run", heads.join("  "));
    for (i, s) in samples.iter().enumerate() {
        out += &line(
            &(i + 1).to_string(),
            COLUMNS.iter().map(|c| (c.value)(s)).collect(),
        );
    }
    let medians = COLUMNS
        .iter()
        .map(|c| median(samples.iter().map(c.value).collect()))
        .collect();
    out += &line("median", medians);
    out += "overhead beyond fio by case (median s):";
    for (case, secs) in Medians::of(samples).case_overhead_secs {
        out += &format!(" {case} {secs:.2};");
    }
    out.pop();
    out + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(category_secs: f64) -> Sample {
        Sample {
            ready_secs: 3.0,
            category_secs,
            fio_secs: 28.0,
            case_overhead_secs: [
                ("a".to_string(), 2.0),
                ("b".to_string(), category_secs - 30.0),
            ]
            .into(),
            target_rss_mib: 300,
            initiator_rss_mib: 350,
        }
    }

    #[test]
    fn overheads_are_what_is_left_beyond_fio() {
        let s = sample(40.0);
        assert_eq!(s.overhead_secs(), 12.0);
        let t = table(&[s.clone(), sample(50.0), s]);
        let lines: Vec<&str> = t.lines().collect();
        let median = lines[lines.len() - 2];
        assert!(median.starts_with("median"), "{t}");
        // basic_s: 40, 50, 40 → 40; overhead_s: 12, 22, 12 → 12.
        assert!(
            median.contains(" 40.00 ") && median.contains(" 12.00 "),
            "{t}"
        );
        // Case b: 10, 20, 10 → 10.
        assert!(t.ends_with("a 2.00; b 10.00\n"), "{t}");
    }
}
