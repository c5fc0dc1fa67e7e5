//! The benchmark's figures: what one `vm run basic` cost, taken from its
//! report and the runner's measurements, and medians over several runs.
//!
//! Speed is measured here, never asserted in tests: machines are noisy, so
//! the figures are medians of runs made one after another on one host.

use std::time::Duration;

use crate::suite::report::Report;

/// What one run cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// From QEMU start until both VMs were ready (agent answering,
    /// initiator's daemon up).
    pub ready: Duration,
    /// Wall time of the category.
    pub category: Duration,
    /// Time in fio steps.
    pub fio: Duration,
    /// Wall time of the category's case that runs fio (share, discover,
    /// connect, fio, disconnect, unshare).
    pub fio_case: Duration,
    /// Peak RSS of the target's QEMU, in MiB.
    pub target_rss_mib: u64,
    /// Peak RSS of the initiator's QEMU, in MiB.
    pub initiator_rss_mib: u64,
}

impl Sample {
    /// Reads the category's times out of a report; `None` if the report
    /// lacks the category or it has no fio step.
    pub fn new(
        report: &Report,
        category: &str,
        ready: Duration,
        rss_mib: (u64, u64),
    ) -> Option<Self> {
        let cat = report.category(category)?;
        let fio_case = cat
            .cases
            .iter()
            .find(|c| c.steps.iter().any(|s| s.fio.is_some()))?;
        let fio: f64 = cat
            .cases
            .iter()
            .flat_map(|c| &c.steps)
            .filter(|s| s.fio.is_some())
            .map(|s| s.duration_secs)
            .sum();
        Some(Self {
            ready,
            category: Duration::from_secs_f64(cat.duration_secs),
            fio: Duration::from_secs_f64(fio),
            fio_case: Duration::from_secs_f64(fio_case.duration_secs),
            target_rss_mib: rss_mib.0,
            initiator_rss_mib: rss_mib.1,
        })
    }

    /// The category's wall time beyond its fio steps.
    pub fn overhead(&self) -> Duration {
        self.category.saturating_sub(self.fio)
    }

    /// The fio case's wall time beyond its fio step: the cost of the path
    /// itself (share, discover, connect, disconnect, unshare).
    pub fn path_overhead(&self) -> Duration {
        self.fio_case.saturating_sub(self.fio)
    }
}

/// The median of some values (the mean of the middle two for an even
/// count); zero for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// One column of the benchmark table.
struct Column {
    name: &'static str,
    value: fn(&Sample) -> f64,
}

const COLUMNS: [Column; 7] = [
    Column {
        name: "ready_s",
        value: |s| s.ready.as_secs_f64(),
    },
    Column {
        name: "basic_s",
        value: |s| s.category.as_secs_f64(),
    },
    Column {
        name: "fio_s",
        value: |s| s.fio.as_secs_f64(),
    },
    Column {
        name: "overhead_s",
        value: |s| s.overhead().as_secs_f64(),
    },
    Column {
        name: "path_overhead_s",
        value: |s| s.path_overhead().as_secs_f64(),
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

/// The samples as a table, a row per run and a last row of medians (each
/// column's median taken on its own).
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
    out + &line("median", medians)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn overheads_are_what_is_left_beyond_fio() {
        let s = Sample {
            ready: Duration::from_secs(3),
            category: Duration::from_secs(40),
            fio: Duration::from_secs(28),
            fio_case: Duration::from_secs(30),
            target_rss_mib: 300,
            initiator_rss_mib: 350,
        };
        assert_eq!(s.overhead(), Duration::from_secs(12));
        assert_eq!(s.path_overhead(), Duration::from_secs(2));
        let slower = Sample {
            category: Duration::from_secs(50),
            ..s.clone()
        };
        let t = table(&[s.clone(), slower, s]);
        let median = t.lines().last().unwrap();
        assert!(median.starts_with("median"), "{t}");
        // basic_s: 40, 50, 40 → 40; overhead_s: 12, 22, 12 → 12.
        assert!(
            median.contains(" 40.00 ") && median.contains(" 12.00 "),
            "{t}"
        );
    }
}
