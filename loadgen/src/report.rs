//! Results: latency histograms and their summaries, JSON output, the live progress line.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Latencies in microseconds, 1 µs to 1 h, 3 significant digits.
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Default for Latency {
    fn default() -> Self {
        // Bounds are constants within hdrhistogram's limits.
        Latency(Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| unreachable!()))
    }
}

impl Latency {
    pub fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, 3_600_000_000);
        let _ = self.0.record(us);
    }

    pub fn histogram(&self) -> &Histogram<u64> {
        &self.0
    }

    pub fn summary(&self) -> LatencySummary {
        let h = &self.0;
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

impl std::fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |us: u64| us as f64 / 1000.0;
        write!(
            f,
            "n={} p50={:.3}ms p90={:.3}ms p99={:.3}ms p99.9={:.3}ms max={:.3}ms",
            self.count,
            ms(self.p50_us),
            ms(self.p90_us),
            ms(self.p99_us),
            ms(self.p999_us),
            ms(self.max_us)
        )
    }
}

pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

/// A one-line status rewritten in place on a terminal (stderr), silent otherwise.
#[derive(Debug)]
pub struct Progress {
    on: bool,
    last: Instant,
    shown: bool,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            on: std::io::stderr().is_terminal(),
            last: Instant::now(),
            shown: false,
        }
    }

    /// Shows `line()` at most four times a second.
    pub fn tick(&mut self, line: impl FnOnce() -> String) {
        if self.on && self.last.elapsed() >= Duration::from_millis(250) {
            self.last = Instant::now();
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K{}", line());
            let _ = e.flush();
            self.shown = true;
        }
    }

    pub fn finish(&mut self) {
        if self.shown {
            eprintln!();
            self.shown = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_percentiles() {
        let mut l = Latency::default();
        assert_eq!(l.summary().count, 0);
        for ms in 1..=1000u64 {
            l.record(Duration::from_millis(ms));
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        // 3 significant digits: within 0.1 %.
        let near = |got: u64, want: u64| got.abs_diff(want) * 1000 <= want;
        assert!(near(s.p50_us, 500_000), "{s}");
        assert!(near(s.p99_us, 990_000), "{s}");
        assert!(near(s.max_us, 1_000_000), "{s}");
        assert!(s.to_string().contains("p99="));
    }
}
