//! Latency figures of a series of timed calls.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// p50, p99 and max of a series, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// How many were timed.
    pub calls: u32,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latency {
    /// The figures of `times`; all zero for none.
    pub fn of(times: &[Duration]) -> Self {
        let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        Self {
            calls: u32::try_from(ms.len()).unwrap_or(u32::MAX),
            p50_ms: super::median(ms.clone()),
            p99_ms: nearest_rank(&ms, 0.99),
            max_ms: ms.last().copied().unwrap_or(0.0),
        }
    }
}

/// The nearest-rank percentile `p` (0..=1) of sorted values; 0 for none.
fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // The smallest value with at least p of the values at or below it.
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let times: Vec<Duration> = (1..=200).rev().map(Duration::from_millis).collect();
        let l = Latency::of(&times);
        assert_eq!(l.calls, 200);
        assert_eq!(l.p50_ms, 100.5);
        assert_eq!(l.p99_ms, 198.0);
        assert_eq!(l.max_ms, 200.0);
        let one = Latency::of(&[Duration::from_millis(7)]);
        assert_eq!((one.p50_ms, one.p99_ms, one.max_ms), (7.0, 7.0, 7.0));
        assert_eq!(Latency::of(&[]).calls, 0);
    }
}
